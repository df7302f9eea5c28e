-- bench/sql/setup.sql: the benchmark's own objects, run once as bench_app
-- after setup_superuser.sql.

-- pgbench's clients stop when this flag is set: their read statement then
-- divides by zero, so every client ends after a complete transaction.
CREATE TABLE bench_stop (stop boolean NOT NULL);
INSERT INTO bench_stop VALUES (false);

-- The size of the current template table (size.sql) and the purge cutoff
-- it implies: the older half of the rows.
CREATE TABLE bench_size (n bigint NOT NULL);
CREATE FUNCTION bench_cutoff() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT format('to_timestamp(%s)', 1577836800 + n / 2 + 1) FROM bench_size $$;

\ir workloads.sql

-- One SQL text of a workload (what: a column of bench_workload), with the
-- current cutoff written in.
CREATE FUNCTION bench_sql(workload text, what text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    t text;
BEGIN
    SELECT to_jsonb(w) ->> what INTO t FROM bench_workload w WHERE w.workload = bench_sql.workload;
    IF t IS NULL OR what IN ('workload', 'cursor_type') THEN
        RAISE EXCEPTION 'no SQL "%" for workload "%"', what, workload;
    END IF;
    RETURN format(t, bench_cutoff());
END
$$;

-- A declarative (range-mode) chunkbatch job b_<workload>_<suffix> on
-- events: create_purge (purge) or create_update (flip) with the workload's
-- where_sql (and set_sql); the other settings at their defaults.
CREATE FUNCTION bench_decl_job(workload text, suffix text, batch int, target_ms int, count_all boolean)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF workload = 'purge' THEN
        RETURN chunkbatch.create_purge('b_' || workload || '_' || suffix, 'events',
                                       bench_sql(workload, 'where_sql'), batch_size => batch,
                                       target_chunk_ms => target_ms, count_rows => count_all);
    END IF;
    RETURN chunkbatch.create_update('b_' || workload || '_' || suffix, 'events',
                                    bench_sql(workload, 'set_sql'), bench_sql(workload, 'where_sql'),
                                    batch_size => batch, target_chunk_ms => target_ms,
                                    count_rows => count_all);
END
$$;

-- The hand-written alternative, EXECUTE variant: a procedure that runs the job's chunk SQL
-- (the same text, the same $1 $2 $3) in a keyset loop, COMMIT after each chunk.
CREATE PROCEDURE keyset_loop(chunk_sql text, batch int, start anyelement,
                             INOUT total bigint DEFAULT 0, INOUT chunks bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    last start%TYPE := start;
    n bigint;
    q text := 'WITH c(k) AS (' || chunk_sql || ') SELECT count(*), max(k) FROM c';
BEGIN
    LOOP
        EXECUTE q INTO n, last USING batch, last, '{}'::jsonb;
        EXIT WHEN n = 0;
        total := total + n;
        chunks := chunks + 1;
        COMMIT;
    END LOOP;
END
$$;

-- run() -> first committed chunk: the first chunk inserts one row (whose
-- commit time track_commit_timestamp records) and returns key 1; the second
-- chunk returns nothing.
CREATE TABLE fc_log (i int, at timestamptz);
SELECT chunkbatch.create_job('b_fc',
    $$INSERT INTO fc_log SELECT ($3->>'i')::int, clock_timestamp() WHERE $2 IS NULL RETURNING 1::bigint$$,
    cursor_type => 'bigint');

-- Per-chunk time and worker memory against rows processed, independent of
-- any table: a keyset job that SELECTs the next $1 integers up to params n.
SELECT chunkbatch.create_job('b_probe',
    $$SELECT g FROM generate_series(coalesce($2, 0) + 1, least(coalesce($2, 0) + $1, ($3->>'n')::bigint)) AS g$$,
    batch_size => 1000, cursor_type => 'bigint');
