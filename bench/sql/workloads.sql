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
--
-- static_proc is the procedure a DBA writes by hand: static statements
-- (planned once and cached by PL/pgSQL), the chunk's upper key found by
-- an index scan in key order, then the DELETE/UPDATE of that key range,
-- COMMIT, until no key is left.  jobs.sql creates it with the cutoff of
-- the current size written in (as a literal, like the jobs' where_sql).
CREATE TABLE bench_workload (
    workload    text PRIMARY KEY,
    cursor_type regtype NOT NULL,   -- of the keyset chunk SQL's $2
    stmt        text NOT NULL,      -- the whole job in one statement
    remaining   text NOT NULL,      -- target rows left (0 once done)
    keyset      text NOT NULL,      -- key-range chunk SQL: one index range scan per chunk
    keyset_in   text NOT NULL,      -- the common WHERE id IN (SELECT id ... LIMIT $1) form
    repeat      text NOT NULL,      -- repeat mode (chunkbatch only)
    where_sql   text NOT NULL,      -- the target rows' condition (declarative jobs)
    set_sql     text,               -- the SET list (declarative update jobs; NULL: purge)
    static_proc text NOT NULL       -- the hand-written procedure <workload>_static(batch):
                                    -- static statements, COMMIT after each chunk
);

INSERT INTO bench_workload VALUES (
'purge', 'timestamptz',
$q$DELETE FROM events WHERE created_at < %1$s$q$,
$q$SELECT count(*) FROM events WHERE created_at < %1$s$q$,
$q$DELETE FROM events WHERE created_at < %1$s AND ($2 IS NULL OR created_at > $2) AND created_at <= (SELECT max(created_at) FROM (SELECT created_at FROM events WHERE created_at < %1$s AND ($2 IS NULL OR created_at > $2) ORDER BY created_at LIMIT $1) s) RETURNING created_at$q$,
$q$DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < %1$s AND ($2 IS NULL OR created_at > $2) ORDER BY created_at LIMIT $1) RETURNING created_at$q$,
$q$DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < %1$s ORDER BY created_at LIMIT $1)$q$,
$q$created_at < %1$s$q$,
NULL,
$q$CREATE OR REPLACE PROCEDURE purge_static(batch int, INOUT total bigint DEFAULT 0, INOUT chunks bigint DEFAULT 0)
LANGUAGE plpgsql AS $p$
DECLARE
    last bigint := 0;
    hi bigint;
    n bigint;
BEGIN
    LOOP
        SELECT max(id) INTO hi
          FROM (SELECT id FROM events WHERE id > last AND created_at < %1$s ORDER BY id LIMIT batch) s;
        EXIT WHEN hi IS NULL;
        DELETE FROM events WHERE id > last AND id <= hi AND created_at < %1$s;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        chunks := chunks + 1;
        last := hi;
        COMMIT;
    END LOOP;
END
$p$$q$);

INSERT INTO bench_workload VALUES (
'flip', 'bigint',
$q$UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE status IN ('INIT', 'FAIL')$q$,
$q$SELECT count(*) FROM events WHERE status IN ('INIT', 'FAIL')$q$,
$q$UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE ($2 IS NULL OR id > $2) AND status IN ('INIT', 'FAIL') AND id <= (SELECT max(id) FROM (SELECT id FROM events WHERE ($2 IS NULL OR id > $2) AND status IN ('INIT', 'FAIL') ORDER BY id LIMIT $1) s) RETURNING id$q$,
$q$UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE id IN (SELECT id FROM events WHERE ($2 IS NULL OR id > $2) AND status IN ('INIT', 'FAIL') ORDER BY id LIMIT $1) RETURNING id$q$,
$q$UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE id IN (SELECT id FROM events WHERE status IN ('INIT', 'FAIL') LIMIT $1)$q$,
$q$status IN ('INIT', 'FAIL')$q$,
$q$status = 'COMPLETE', retries = retries + 1$q$,
$q$CREATE OR REPLACE PROCEDURE flip_static(batch int, INOUT total bigint DEFAULT 0, INOUT chunks bigint DEFAULT 0)
LANGUAGE plpgsql AS $p$
DECLARE
    last bigint := 0;
    hi bigint;
    n bigint;
BEGIN
    LOOP
        SELECT max(id) INTO hi
          FROM (SELECT id FROM events WHERE id > last AND status IN ('INIT', 'FAIL') ORDER BY id LIMIT batch) s;
        EXIT WHEN hi IS NULL;
        UPDATE events SET status = 'COMPLETE', retries = retries + 1
         WHERE id > last AND id <= hi AND status IN ('INIT', 'FAIL');
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        chunks := chunks + 1;
        last := hi;
        COMMIT;
    END LOOP;
END
$p$$q$);
