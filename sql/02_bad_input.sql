--
-- 02_bad_input: every wrong call fails with a proper SQLSTATE (never
-- XX000, never a crash) and leaves chunkbatch.jobs and chunkbatch.runs
-- exactly as they were.
--
\set VERBOSITY terse

-- A valid job to aim the calls at, and one finished run of it.
SELECT chunkbatch.create_job('regress_bad_target',
                             'UPDATE cb_events SET old = old WHERE false') > 0 AS created;
SELECT chunkbatch.run('regress_bad_target') > 0 AS queued;
SELECT chunkbatch.wait(last_run('regress_bad_target'), '60 s') AS state;
SELECT wait_idle();

SELECT catalog_digest() AS digest_before \gset

--
-- create_job
--
-- NULL for each argument that has no NULL meaning
SELECT expect_error($$SELECT chunkbatch.create_job(NULL, 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', NULL)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1', batch_size => NULL)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1', sleep_ms => NULL)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1', synchronous_commit => NULL)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1', validate => NULL)$$);
-- names: empty, too long (64 and 500 bytes), quotes, injection, blanks
SELECT expect_error($$SELECT chunkbatch.create_job('', 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job(repeat('x', 64), 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job(repeat('x', 500), 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('x''; DROP TABLE cb_events; --', 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress"bad', 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('"regress_bad"', 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress bad', 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job(E'regress\nbad', 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job(E'regress_bad\t', 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('-regress_bad', 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress/bad', 'SELECT 1')$$);
-- lock_group names follow the same rules
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1', lock_group => '')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1', lock_group => 'a''; DROP TABLE cb_events; --')$$);
-- chunk SQL: empty, no statement, bad syntax, unknown objects, wrong types,
-- several statements, utility statements
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', '')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', E' \n\t ')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', '-- only a comment')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'DELET FROM cb_events')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'DELETE FROM cb_no_such_table')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'DELETE FROM cb_events WHERE no_such_column')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT $4')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT $3 + 1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'DELETE FROM cb_events WHERE id < 0; DROP TABLE cb_events')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1; SELECT 2')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'VACUUM cb_events')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'COMMIT')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'CREATE TABLE cb_new (id int)')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SET ROLE regress_cb_owner')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'EXPLAIN DELETE FROM cb_events')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'COPY cb_events TO STDOUT')$$);
-- sizes and sleeps
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1', batch_size => 0)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1', batch_size => -5)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1', sleep_ms => -1)$$);
-- cursor types without a default btree ordering, pseudo and unknown types
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT $2', cursor_type => 'point')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT $2', cursor_type => 'json')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT $2', cursor_type => 'anyelement')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT $2', cursor_type => 'pg_node_tree')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT $2', cursor_type => 'cb_no_such_type')$$);
-- a schedule whose job is gone (schedules name their job by id)
SELECT expect_error($$SELECT chunkbatch.job_name_of(-1)$$);
-- keyset chunk SQL that returns no key column, or keys of the wrong type
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'UPDATE cb_items SET counter = counter WHERE id > $2', cursor_type => 'bigint')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT FROM cb_items WHERE id > $2 LIMIT $1', cursor_type => 'bigint')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'UPDATE cb_items SET counter = counter WHERE id > $2 RETURNING id::int', cursor_type => 'bigint')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT id::text FROM cb_items WHERE id > $2 LIMIT $1', cursor_type => 'bigint')$$);
-- a duplicate name
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_target', 'SELECT 1')$$);
-- a NOLOGIN role cannot own a job: its run workers could not connect
SET ROLE regress_cb_nologin;
SELECT expect_error($$SELECT chunkbatch.create_job('regress_bad_new', 'SELECT 1')$$);
RESET ROLE;

--
-- alter_job
--
SELECT expect_error($$SELECT chunkbatch.alter_job(NULL, batch_size => 10)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_missing', batch_size => 10)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('x''; DROP TABLE cb_events; --', batch_size => 10)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', validate => NULL)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', batch_size => 0)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', batch_size => -1)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', sleep_ms => -1)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', lock_group => 'no spaces')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', chunk_sql => '')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', chunk_sql => 'UPDATE cb_events SET')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', chunk_sql => 'TRUNCATE cb_events')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', cursor_type => 'point')$$);
-- becoming a keyset job: the unchanged SQL returns no keys
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', cursor_type => 'bigint')$$);
-- a good setting does not slip through with a bad one
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_bad_target', batch_size => 7, sleep_ms => -7)$$);

--
-- drop_job
--
SELECT expect_error($$SELECT chunkbatch.drop_job(NULL)$$);
SELECT expect_error($$SELECT chunkbatch.drop_job('regress_bad_missing')$$);
SELECT expect_error($$SELECT chunkbatch.drop_job('')$$);
SELECT expect_error($$SELECT chunkbatch.drop_job('regress_bad_target''; DROP TABLE cb_events; --')$$);

--
-- run
--
SELECT expect_error($$SELECT chunkbatch.run(NULL)$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_missing')$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_missing', wait => true)$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', NULL)$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', '{}', NULL)$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', '[1, 2]')$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', '42')$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', '"text"')$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', 'null')$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', '[]', wait => true)$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', 'null', wait => true)$$);
-- params too large to hand over to the scheduler
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', jsonb_build_object('big', repeat('x', 9000)), wait => true)$$);

--
-- wait
--
SELECT expect_error($$SELECT chunkbatch.wait(NULL)$$);
SELECT expect_error($$SELECT chunkbatch.wait(NULL, '1 s')$$);
SELECT expect_error($$SELECT chunkbatch.wait(-1)$$);
SELECT expect_error($$SELECT chunkbatch.wait(9223372036854775807, '1 s')$$);
SELECT expect_error(format('SELECT chunkbatch.wait(%s, %L)', last_run('regress_bad_target'), '-1 s'));
SELECT expect_error(format('SELECT chunkbatch.wait(%s, %L)', last_run('regress_bad_target'), '-1 day'));
SELECT expect_error(format('SELECT chunkbatch.wait(%s, %L)', last_run('regress_bad_target'), '-1 mon'));

--
-- cancel
--
SELECT expect_error($$SELECT chunkbatch.cancel(NULL)$$);
SELECT expect_error($$SELECT chunkbatch.cancel(0)$$);
SELECT expect_error($$SELECT chunkbatch.cancel(9223372036854775807)$$);
-- a finished run cannot be cancelled
SELECT expect_error(format('SELECT chunkbatch.cancel(%s)', last_run('regress_bad_target')));

--
-- A run queued by the current transaction: nobody can wait for it yet, and
-- its job cannot be dropped.  Rolled back, it leaves no trace.
--
BEGIN;
SELECT chunkbatch.run('regress_bad_target', '{"queued": "here"}') > 0 AS queued;
SELECT expect_error(format('SELECT chunkbatch.wait(%s)', last_run('regress_bad_target')));
SELECT expect_error(format('SELECT chunkbatch.wait(%s, %L)', last_run('regress_bad_target'), '1 s'));
SELECT expect_error($$SELECT chunkbatch.drop_job('regress_bad_target')$$);
SELECT state, params FROM chunkbatch.runs WHERE run_id = last_run('regress_bad_target');
ROLLBACK;

-- Still there, unchanged, after all of the above.
SELECT catalog_digest() = :'digest_before' AS catalog_unchanged;
SELECT count(*) AS jobs, count(*) FILTER (WHERE job_name = 'regress_bad_target') AS target
  FROM chunkbatch.jobs;
SELECT count(*) AS cb_events_rows FROM cb_events;

--
-- Waiting needs a READ COMMITTED transaction: in REPEATABLE READ the run
-- would never be seen to progress.  run(..., wait => true) fails there too,
-- and must not leave a run behind.
--
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT expect_error(format('SELECT chunkbatch.wait(%s, %L)', last_run('regress_bad_target'), '1 s'));
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', '{"isolation": "repeatable read"}', wait => true)$$);
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT expect_error($$SELECT chunkbatch.run('regress_bad_target', '{"isolation": "serializable"}', wait => true)$$);
ROLLBACK;
SELECT catalog_digest() = :'digest_before' AS catalog_unchanged;
SELECT params FROM chunkbatch.runs WHERE params ? 'isolation' ORDER BY run_id;

-- Leave no run behind for the next tests.
SELECT wait_idle();
