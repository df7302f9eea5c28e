-- bench/sql/workloads.sql: the two workloads, as SQL text kept in a table
-- (read through bench_sql(workload, what), see setup.sql).
--
-- In the texts, %1$s stands for the purge cutoff, an expression
-- to_timestamp(<epoch>) that depends on the table size (bench_cutoff());
-- $1 is the chunk size, $2 the keyset cursor (NULL on the first chunk) and
-- $3 the run's parameters, as chunkbatch passes them to a job's chunk SQL.
-- (A literal % would be written %%: the texts go through format().)
--
--   purge  delete the older half (created_at below the cutoff), found
--          through the created_at index
--   flip   status INIT/FAIL -> COMPLETE, retries + 1 (half the rows)
CREATE TABLE bench_workload (
    workload    text PRIMARY KEY,
    cursor_type regtype NOT NULL,   -- of the keyset chunk SQL's $2
    stmt        text NOT NULL,      -- the whole job in one statement
    remaining   text NOT NULL,      -- target rows left (0 once done)
    keyset      text NOT NULL,      -- key-range chunk SQL: one index range scan per chunk
    keyset_in   text NOT NULL,      -- the common WHERE id IN (SELECT id ... LIMIT $1) form
    repeat      text NOT NULL       -- repeat mode (chunkbatch only)
);

INSERT INTO bench_workload VALUES (
'purge', 'timestamptz',
$q$DELETE FROM events WHERE created_at < %1$s$q$,
$q$SELECT count(*) FROM events WHERE created_at < %1$s$q$,
$q$DELETE FROM events WHERE created_at < %1$s AND ($2 IS NULL OR created_at > $2) AND created_at <= (SELECT max(created_at) FROM (SELECT created_at FROM events WHERE created_at < %1$s AND ($2 IS NULL OR created_at > $2) ORDER BY created_at LIMIT $1) s) RETURNING created_at$q$,
$q$DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < %1$s AND ($2 IS NULL OR created_at > $2) ORDER BY created_at LIMIT $1) RETURNING created_at$q$,
$q$DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < %1$s ORDER BY created_at LIMIT $1)$q$);

INSERT INTO bench_workload VALUES (
'flip', 'bigint',
$q$UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE status IN ('INIT', 'FAIL')$q$,
$q$SELECT count(*) FROM events WHERE status IN ('INIT', 'FAIL')$q$,
$q$UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE ($2 IS NULL OR id > $2) AND status IN ('INIT', 'FAIL') AND id <= (SELECT max(id) FROM (SELECT id FROM events WHERE ($2 IS NULL OR id > $2) AND status IN ('INIT', 'FAIL') ORDER BY id LIMIT $1) s) RETURNING id$q$,
$q$UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE id IN (SELECT id FROM events WHERE ($2 IS NULL OR id > $2) AND status IN ('INIT', 'FAIL') ORDER BY id LIMIT $1) RETURNING id$q$,
$q$UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE id IN (SELECT id FROM events WHERE status IN ('INIT', 'FAIL') LIMIT $1)$q$);
