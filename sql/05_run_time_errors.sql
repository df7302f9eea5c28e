--
-- 05_run_time_errors: bad chunk SQL that only shows when a run executes
-- (wrong keys, data errors, dropped tables, and SQL saved with
-- validate => false).  Each run fails with a proper SQLSTATE (never XX000;
-- the worker never crashes), records the failing chunk and keeps the
-- checkpoint of the last good one; the failed chunk's changes are rolled
-- back.
--
\set VERBOSITY terse

-- Keyset SQL that ignores $2: the second chunk returns the same keys.
SELECT chunkbatch.create_job('regress_rt_no_advance',
    'UPDATE cb_keys SET v = v + 1 WHERE id IN (SELECT id FROM cb_keys ORDER BY id LIMIT $1) RETURNING id',
    batch_size => 10, cursor_type => 'bigint') > 0 AS created;
-- Keyset SQL that returns only NULL keys.
SELECT chunkbatch.create_job('regress_rt_null_keys',
    'UPDATE cb_keys SET v = v + 1 WHERE id IN (SELECT id FROM cb_keys WHERE $2 IS NULL ORDER BY id LIMIT $1) RETURNING NULL::bigint',
    batch_size => 10, cursor_type => 'bigint') > 0 AS created;
-- Unvalidated keyset SQL returning keys of the wrong type, or no column.
SELECT chunkbatch.create_job('regress_rt_wrong_type',
    'UPDATE cb_keys SET v = v + 1 WHERE id IN (SELECT id FROM cb_keys WHERE id > coalesce($2, 0) ORDER BY id LIMIT $1) RETURNING id::int',
    batch_size => 10, cursor_type => 'bigint', validate => false) > 0 AS created;
SELECT chunkbatch.create_job('regress_rt_no_column',
    'SELECT FROM cb_keys WHERE $2 IS NULL LIMIT $1',
    batch_size => 10, cursor_type => 'bigint', validate => false) > 0 AS created;
-- A data error in the first chunk.
SELECT chunkbatch.create_job('regress_rt_div0',
    'UPDATE cb_keys SET v = v / 0 WHERE id <= $1',
    batch_size => 10) > 0 AS created;
-- A table dropped after the job was created.
SELECT chunkbatch.create_job('regress_rt_dropped',
    'DELETE FROM cb_doomed WHERE id IN (SELECT id FROM cb_doomed LIMIT $1)') > 0 AS created;
DROP TABLE cb_doomed;
-- Unvalidated SQL with a syntax error.
SELECT chunkbatch.create_job('regress_rt_syntax', 'DELET FROM cb_keys',
    validate => false) > 0 AS created;

SELECT job, chunkbatch.run(job) > 0 AS queued
  FROM unnest(ARRAY['regress_rt_no_advance', 'regress_rt_null_keys',
                    'regress_rt_wrong_type', 'regress_rt_no_column',
                    'regress_rt_div0', 'regress_rt_dropped',
                    'regress_rt_syntax']) AS job;
SELECT wait_idle();
SELECT job_name, state, sqlstate, error, error_chunk, rows_done, chunks_done,
       cursor, retries, worker_pid
  FROM chunkbatch.runs WHERE job_name LIKE 'regress_rt%' ORDER BY job_name;
-- only the first chunk of regress_rt_no_advance committed
SELECT v, count(*), min(id), max(id) FROM cb_keys GROUP BY v ORDER BY v;

--
-- Chunk SQL saved with validate => false is still one DML statement when it
-- runs: several statements, utility statements and transaction control
-- fail the run, and none of them has any effect.
--
SELECT chunkbatch.create_job('regress_rt_multi',
    'DELETE FROM cb_first WHERE id IN (SELECT id FROM cb_first LIMIT $1); DELETE FROM cb_second WHERE id IN (SELECT id FROM cb_second LIMIT $1)',
    batch_size => 5, validate => false) > 0 AS created;
SELECT chunkbatch.create_job('regress_rt_create',
    'CREATE TABLE cb_created_by_job (id int)', validate => false) > 0 AS created;
SELECT chunkbatch.create_job('regress_rt_commit', 'COMMIT',
    validate => false) > 0 AS created;
SELECT chunkbatch.create_job('regress_rt_vacuum', 'VACUUM cb_keys',
    validate => false) > 0 AS created;
SELECT job, chunkbatch.run(job) > 0 AS queued
  FROM unnest(ARRAY['regress_rt_multi', 'regress_rt_create',
                    'regress_rt_commit', 'regress_rt_vacuum']) AS job;
SELECT wait_idle();
SELECT job_name, state,
       sqlstate IS NOT NULL AND sqlstate <> 'XX000' AS proper_sqlstate,
       error IS NOT NULL AS has_error, rows_done, chunks_done
  FROM chunkbatch.runs
 WHERE job_name IN ('regress_rt_multi', 'regress_rt_create',
                    'regress_rt_commit', 'regress_rt_vacuum')
 ORDER BY job_name;
SELECT (SELECT count(*) FROM cb_first) AS first_rows,
       (SELECT count(*) FROM cb_second) AS second_rows,
       to_regclass('cb_created_by_job') IS NULL AS no_table_created;

-- Clean up.
SELECT count(*) AS dropped
  FROM (SELECT chunkbatch.drop_job(job_name) FROM chunkbatch.jobs
         WHERE job_name LIKE 'regress_rt%') d;
