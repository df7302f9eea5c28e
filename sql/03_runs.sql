--
-- 03_runs: jobs run end to end in the regression database.
--
\set VERBOSITY terse

--
-- Repeat mode: purge the 5,000 old rows of 10,000, 1,000 per chunk.  The
-- run ends with the first chunk that deletes nothing, so it counts five
-- full chunks and one empty one.
--
SELECT chunkbatch.create_job('regress_purge',
    'DELETE FROM cb_events WHERE id IN (SELECT id FROM cb_events WHERE old LIMIT $1)',
    batch_size => 1000) > 0 AS created;
SELECT job_name, owner = current_user AS owned_by_me, cursor_type,
       batch_size, lock_group, sleep_ms, synchronous_commit, altered_at
  FROM chunkbatch.jobs WHERE job_name = 'regress_purge';

SELECT chunkbatch.run('regress_purge') AS purge_run \gset
SELECT chunkbatch.wait(:purge_run, '60 s') AS state;
SELECT state, rows_done, chunks_done, batch_size, lock_group, cursor, params,
       retries, sqlstate, error, error_chunk, worker_pid
  FROM chunkbatch.runs WHERE run_id = :purge_run;
SELECT queued_by = current_user AS queued_by_me, trigger,
       queued_at <= started_at AND started_at <= finished_at AS times_in_order,
       last_chunk_at IS NOT NULL AS has_last_chunk_at,
       avg_chunk_ms >= 0 AND max_chunk_ms >= avg_chunk_ms AS chunk_times
  FROM chunkbatch.runs WHERE run_id = :purge_run;
SELECT count(*) AS remaining, count(*) FILTER (WHERE old) AS old_remaining,
       count(*) FILTER (WHERE id % 2 = 1) AS odd_remaining
  FROM cb_events;
-- a finished run leaves the status view
SELECT count(*) AS active FROM chunkbatch.status_detail;

--
-- Keyset mode over bigint keys with gaps (3, 6, ..., 7500): every row is
-- processed exactly once; the cursor ends at the greatest key.
--
SELECT chunkbatch.create_job('regress_keyset',
    $$UPDATE cb_items SET counter = counter + 1
       WHERE id IN (SELECT id FROM cb_items
                     WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1)
      RETURNING id$$,
    batch_size => 1000, cursor_type => 'bigint') > 0 AS created;
SELECT chunkbatch.run('regress_keyset') AS keyset_run \gset
SELECT chunkbatch.wait(:keyset_run, '60 s') AS state;
SELECT state, rows_done, chunks_done, batch_size, lock_group, cursor, error
  FROM chunkbatch.runs WHERE run_id = :keyset_run;
SELECT counter, count(*) FROM cb_items GROUP BY counter ORDER BY counter;
-- one transaction per chunk that changed rows
SELECT count(DISTINCT xmin::text) AS transactions FROM cb_items;

-- Keyset mode over text keys.
SELECT chunkbatch.create_job('regress_words',
    $$UPDATE cb_words SET counter = counter + 1
       WHERE word IN (SELECT word FROM cb_words
                       WHERE $2 IS NULL OR word > $2 ORDER BY word LIMIT $1)
      RETURNING word$$,
    batch_size => 10, cursor_type => 'text') > 0 AS created;
SELECT chunkbatch.run('regress_words') AS words_run \gset
SELECT chunkbatch.wait(:words_run, '60 s') AS state;
SELECT state, rows_done, chunks_done, cursor
  FROM chunkbatch.runs WHERE run_id = :words_run;
SELECT counter, count(*) FROM cb_words GROUP BY counter ORDER BY counter;

--
-- Parameters: $3 is the run's params, $1 the batch size.
--
SELECT chunkbatch.create_job('regress_params',
    $$INSERT INTO cb_param_log (tag, n, batch)
      SELECT coalesce($3->>'tag', 'no tag'), ($3->>'n')::int, $1
       WHERE NOT EXISTS (SELECT 1 FROM cb_param_log
                          WHERE tag = coalesce($3->>'tag', 'no tag'))$$,
    batch_size => 17) > 0 AS created;
SELECT chunkbatch.run('regress_params', '{"tag": "first", "n": 42}') AS params_run \gset
SELECT chunkbatch.wait(:params_run, '60 s') AS state;
SELECT state, rows_done, chunks_done, params
  FROM chunkbatch.runs WHERE run_id = :params_run;

-- run(..., wait => true) returns the id of the run once it has succeeded.
SELECT chunkbatch.run('regress_params', '{"tag": "second", "n": 7}', wait => true) AS waited_run \gset
SELECT :waited_run = last_run('regress_params') AS is_last_run, state, rows_done,
       chunks_done, params
  FROM chunkbatch.runs WHERE run_id = :waited_run;
-- the default params are an empty object
SELECT chunkbatch.run('regress_params', wait => true) = last_run('regress_params') AS default_params_run;
SELECT state, rows_done, params FROM chunkbatch.runs WHERE run_id = last_run('regress_params');
SELECT tag, n, batch FROM cb_param_log ORDER BY tag;

--
-- The settings of a chunk: the search_path saved when the job was created,
-- asynchronous commit unless the job asks for synchronous_commit, no
-- parallel workers, no JIT.
--
SET search_path = cb_schema, public;
SELECT chunkbatch.create_job('regress_settings',
    $$INSERT INTO cb_settings_log (tag, sync, search_path, parallel_workers, jit)
      SELECT $3->>'tag', current_setting('synchronous_commit'),
             current_setting('search_path'),
             current_setting('max_parallel_workers_per_gather'),
             current_setting('jit')
       WHERE NOT EXISTS (SELECT 1 FROM cb_settings_log WHERE tag = $3->>'tag')$$) > 0 AS created;
SELECT chunkbatch.create_job('regress_search_path',
    'UPDATE cb_hidden SET done = true WHERE id IN (SELECT id FROM cb_hidden WHERE NOT done LIMIT $1)',
    batch_size => 10) > 0 AS created;
RESET search_path;
SELECT job_name, search_path, synchronous_commit FROM chunkbatch.jobs
 WHERE job_name IN ('regress_settings', 'regress_search_path') ORDER BY job_name;
SELECT chunkbatch.run('regress_settings', '{"tag": "default"}') AS settings_run \gset
SELECT chunkbatch.wait(:settings_run, '60 s') AS state;
SELECT chunkbatch.alter_job('regress_settings', synchronous_commit => true);
SELECT chunkbatch.run('regress_settings', '{"tag": "synchronous"}') AS settings_run \gset
SELECT chunkbatch.wait(:settings_run, '60 s') AS state;
SELECT tag, sync, search_path, parallel_workers, jit FROM cb_settings_log ORDER BY tag;
SELECT chunkbatch.run('regress_search_path') AS search_path_run \gset
SELECT chunkbatch.wait(:search_path_run, '60 s') AS state;
SELECT state, rows_done, chunks_done FROM chunkbatch.runs WHERE run_id = :search_path_run;
SELECT count(*) FILTER (WHERE done) AS done_rows FROM cb_schema.cb_hidden;

--
-- A failing job: the third chunk violates a CHECK constraint (row 150
-- would reach 100).  The run fails with the error's SQLSTATE and text and
-- keeps the checkpoint of its last good chunk; that chunk's rows stay
-- changed, the failed chunk's are rolled back.
--
SELECT chunkbatch.create_job('regress_failing',
    $$UPDATE cb_checked SET v = v + 1
       WHERE id IN (SELECT id FROM cb_checked
                     WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1)
      RETURNING id$$,
    batch_size => 50, cursor_type => 'integer') > 0 AS created;
SELECT chunkbatch.run('regress_failing') AS failing_run \gset
SELECT chunkbatch.wait(:failing_run, '60 s') AS state;
SELECT state, sqlstate, error, error_detail, error_chunk, rows_done,
       chunks_done, cursor, worker_pid, finished_at IS NOT NULL AS finished
  FROM chunkbatch.runs WHERE run_id = :failing_run;
SELECT v, count(*), min(id), max(id) FROM cb_checked GROUP BY v ORDER BY v;
-- With wait => true the failure is raised, with the job's SQLSTATE.
SELECT expect_error($$SELECT chunkbatch.run('regress_failing', wait => true)$$);
SELECT state, sqlstate, error_chunk, rows_done, chunks_done, cursor
  FROM chunkbatch.runs WHERE run_id = last_run('regress_failing');
SELECT v, count(*), min(id), max(id) FROM cb_checked GROUP BY v ORDER BY v;

--
-- A job that never ends by itself: each chunk updates one row after 0.2 s.
-- It shows up in the status view and holds its group lock; a second run of
-- the same group waits; both can be cancelled.
--
SELECT chunkbatch.create_job('regress_slow',
    'UPDATE cb_slow SET n = n + 1 FROM pg_sleep(0.2) WHERE id = 1',
    batch_size => 1, lock_group => 'regress-slow') > 0 AS created;
SELECT chunkbatch.run('regress_slow') AS slow_run \gset
SELECT wait_until(format($$SELECT state = 'running' AND chunks_done >= 2
                            FROM chunkbatch.runs WHERE run_id = %s$$, :slow_run));
SELECT job_name, state, lock_group, batch_size, rows_done > 0 AS progressing,
       worker_pid IS NOT NULL AS has_worker, params
  FROM chunkbatch.status_detail WHERE run_id = :slow_run;
SELECT phase IN ('chunk', 'sleeping') AS working, pid IS NOT NULL AS has_pid,
       batch_size, chunks_done > 0 AS progressing
  FROM chunkbatch.progress() WHERE run_id = :slow_run;
-- the worker holds the group's advisory lock, keyed by group_lock_key()
SELECT count(*) AS group_lock_held
  FROM pg_locks l JOIN chunkbatch.status_detail s ON s.worker_pid = l.pid
 WHERE s.run_id = :slow_run AND l.locktype = 'advisory' AND l.granted
   AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = (chunkbatch.group_lock_key('regress-slow') >> 32) & 4294967295
   AND l.objid::bigint = chunkbatch.group_lock_key('regress-slow') & 4294967295;

SELECT chunkbatch.run('regress_slow') AS slow_run2 \gset
SELECT wait_until(format($$SELECT state = 'waiting' FROM chunkbatch.status_detail
                            WHERE run_id = %s$$, :slow_run2));
SELECT run_id = :slow_run AS first, run_id = :slow_run2 AS second, job_name, state
  FROM chunkbatch.status_detail ORDER BY run_id;
SELECT chunkbatch.wait(:slow_run2, '0.5 s') AS still;
-- waiting without a timeout can be interrupted
SET statement_timeout = '300ms';
SELECT chunkbatch.wait(:slow_run2);
RESET statement_timeout;

-- cancel the waiting run, then the running one
SELECT chunkbatch.cancel(:slow_run2) AS cancelled;
SELECT chunkbatch.wait(:slow_run2, '30 s') AS state;
SELECT state, started_at IS NULL AS never_started, rows_done, chunks_done, sqlstate, error
  FROM chunkbatch.runs WHERE run_id = :slow_run2;
SELECT chunkbatch.cancel(:slow_run) AS cancelled;
SELECT chunkbatch.wait(:slow_run, '30 s') AS state;
-- the interrupted chunk was rolled back together with its checkpoint
SELECT state, rows_done = (SELECT n FROM cb_slow WHERE id = 1) AS checkpoint_matches_table,
       chunks_done = rows_done AS one_row_per_chunk, sqlstate, error,
       worker_pid, finished_at IS NOT NULL AS finished
  FROM chunkbatch.runs WHERE run_id = :slow_run;
SELECT count(*) AS active FROM chunkbatch.status_detail;
SELECT wait_until('SELECT NOT EXISTS (SELECT 1 FROM chunkbatch.progress())', '10 s') AS worker_gone;

-- cancel a run that is still queued (by the current transaction)
BEGIN;
SELECT chunkbatch.run('regress_slow') AS slow_run3 \gset
SELECT chunkbatch.cancel(:slow_run3) AS cancelled;
COMMIT;
SELECT chunkbatch.wait(:slow_run3, '30 s') AS state;
SELECT pg_sleep(1.5);
SELECT state, started_at IS NULL AS never_started, rows_done, chunks_done
  FROM chunkbatch.runs WHERE run_id = :slow_run3;
SELECT wait_idle();

--
-- An application joins a group with pg_advisory_lock(group_lock_key()):
-- a run of that group waits until the application lets go.
--
SELECT chunkbatch.alter_job('regress_slow',
    chunk_sql => 'UPDATE cb_slow SET n = n + 1 WHERE id = 2 AND n < 3');
SELECT pg_advisory_lock(chunkbatch.group_lock_key('regress-slow'));
SELECT chunkbatch.run('regress_slow') AS slow_run4 \gset
SELECT wait_until(format($$SELECT state = 'waiting' FROM chunkbatch.status_detail
                            WHERE run_id = %s$$, :slow_run4));
SELECT chunkbatch.wait(:slow_run4, '0.5 s') AS still;
SELECT n FROM cb_slow WHERE id = 2;
SELECT pg_advisory_unlock(chunkbatch.group_lock_key('regress-slow'));
SELECT chunkbatch.wait(:slow_run4, '60 s') AS state;
SELECT state, rows_done, chunks_done FROM chunkbatch.runs WHERE run_id = :slow_run4;
SELECT n FROM cb_slow WHERE id = 2;

--
-- alter_job: NULL arguments leave settings unchanged; a new batch size and
-- group apply to the next run, not to finished ones.
--
SELECT job_name, chunk_sql, cursor_type, batch_size, lock_group, sleep_ms,
       synchronous_commit, altered_at IS NULL AS never_altered
  FROM chunkbatch.jobs WHERE job_name = 'regress_keyset' \gset old_
SELECT chunkbatch.alter_job('regress_keyset', batch_size => 400,
                            lock_group => 'regress-items', sleep_ms => 10);
SELECT chunk_sql = :'old_chunk_sql' AS same_sql, cursor_type, batch_size,
       lock_group, sleep_ms, synchronous_commit, altered_at IS NOT NULL AS altered
  FROM chunkbatch.jobs WHERE job_name = 'regress_keyset';
SELECT chunkbatch.alter_job('regress_keyset', synchronous_commit => true);
SELECT batch_size, lock_group, sleep_ms, synchronous_commit
  FROM chunkbatch.jobs WHERE job_name = 'regress_keyset';
SELECT chunkbatch.run('regress_keyset') AS keyset_run2 \gset
SELECT chunkbatch.wait(:keyset_run2, '60 s') AS state;
SELECT run_id = :keyset_run2 AS second, state, batch_size, lock_group,
       rows_done, chunks_done, cursor
  FROM chunkbatch.runs WHERE job_name = 'regress_keyset' ORDER BY run_id;
SELECT counter, count(*) FROM cb_items GROUP BY counter ORDER BY counter;
SELECT count(DISTINCT xmin::text) AS transactions FROM cb_items;

--
-- drop_job: the job is gone and cannot be run any more.
--
SELECT chunkbatch.drop_job('regress_purge');
SELECT count(*) AS purge_jobs FROM chunkbatch.jobs WHERE job_name = 'regress_purge';
SELECT expect_error($$SELECT chunkbatch.run('regress_purge')$$);
SELECT expect_error($$SELECT chunkbatch.drop_job('regress_purge')$$);
-- the name is free again
SELECT chunkbatch.create_job('regress_purge', 'DELETE FROM cb_events WHERE false') > 0 AS recreated;
SELECT chunkbatch.drop_job('regress_purge');
-- the longest name (63 bytes) and names with '-', '.' and ':' are fine
SELECT chunkbatch.create_job('regress_' || repeat('x', 55), 'DELETE FROM cb_events WHERE false') > 0 AS created;
SELECT chunkbatch.create_job('regress:nightly-purge.v2', 'DELETE FROM cb_events WHERE false',
                             lock_group => '_regress:group-1.x') > 0 AS created;
SELECT length(job_name) AS name_bytes, lock_group FROM chunkbatch.jobs
 WHERE job_name LIKE 'regress_xx%' OR job_name LIKE 'regress:%' ORDER BY job_name;
SELECT chunkbatch.drop_job('regress_' || repeat('x', 55));
SELECT chunkbatch.drop_job('regress:nightly-purge.v2');

--
-- Group lock keys: stable, different between groups; a job without a
-- group is in the group of its own name.
--
SELECT chunkbatch.group_lock_key('regress-a') = chunkbatch.group_lock_key('regress-a') AS stable,
       chunkbatch.group_lock_key('regress-a') <> chunkbatch.group_lock_key('regress-b') AS differs,
       chunkbatch.group_lock_key('regress-a') <> chunkbatch.group_lock_key('regress-A') AS case_sensitive,
       chunkbatch.group_lock_key(NULL) IS NULL AS null_for_null;
SELECT job_name, lock_group FROM chunkbatch.jobs ORDER BY job_name;

SELECT wait_idle();
