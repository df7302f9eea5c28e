--
-- 07_run_control: pause(), resume() and cancel() of runs, and the failure
-- settings of jobs (max_retries, lock_timeout, statement_timeout,
-- max_runtime, on_error, keys_sql, max_dead_letters).
--
-- Bad input fails with its SQLSTATE and leaves the catalog unchanged.  A
-- run paused while it waits for its group stays paused after the group is
-- free, and resume() finishes it; a paused run can be cancelled; with
-- on_error => 'isolate' poison rows go to chunkbatch.dead_letters and every
-- other row is committed.
--
SELECT wait_idle();

CREATE TABLE cb_ctl (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO cb_ctl (id) SELECT g FROM generate_series(1, 100) g;
CREATE TABLE cb_ctl_owned (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO cb_ctl_owned (id) SELECT g FROM generate_series(1, 20) g;
GRANT SELECT, UPDATE ON cb_ctl_owned TO regress_cb_owner;
-- 0.1 s per chunk of 10 rows
CREATE TABLE cb_ctl_slow (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO cb_ctl_slow (id) SELECT g FROM generate_series(1, 300) g;
CREATE FUNCTION cb_ctl_slow_chunk(n int, after_id bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.1);
    RETURN QUERY
        UPDATE cb_ctl_slow SET counter = counter + 1
         WHERE id IN (SELECT s.id FROM cb_ctl_slow s
                       WHERE after_id IS NULL OR s.id > after_id
                       ORDER BY s.id LIMIT n)
        RETURNING cb_ctl_slow.id;
END
$$;
-- two poison rows: their update violates the CHECK constraint
CREATE TABLE cb_ctl_poison (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                            poison boolean NOT NULL DEFAULT false,
                            CONSTRAINT cb_ctl_not_poison CHECK (NOT poison OR counter = 0));
INSERT INTO cb_ctl_poison (id) SELECT g FROM generate_series(1, 50) g;
UPDATE cb_ctl_poison SET poison = true WHERE id IN (17, 33);

SELECT chunkbatch.create_job('regress_ctl',
    $$UPDATE cb_ctl SET counter = counter + 1 WHERE id IN (SELECT id FROM cb_ctl WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1) RETURNING id$$,
    batch_size => 10, cursor_type => 'bigint') > 0 AS created;
SELECT chunkbatch.create_job('regress_ctl_slow', 'SELECT * FROM cb_ctl_slow_chunk($1, $2)',
    batch_size => 10, cursor_type => 'bigint') > 0 AS created;

-- the defaults of the failure settings
SELECT max_retries, lock_timeout, statement_timeout, max_runtime, on_error,
       keys_sql, max_dead_letters
  FROM chunkbatch.jobs WHERE job_name = 'regress_ctl';

-- A finished run.
SELECT chunkbatch.run('regress_ctl') AS done_run \gset
SELECT chunkbatch.wait(:done_run, '60 s') AS state;

-- Runs of another role: one finished, one paused while it waits for its
-- group, which this session holds.
SET ROLE regress_cb_owner;
SELECT chunkbatch.create_job('regress_ctl_owned',
    $$UPDATE cb_ctl_owned SET counter = counter + 1 WHERE id IN (SELECT id FROM cb_ctl_owned WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1) RETURNING id$$,
    batch_size => 10, cursor_type => 'bigint') > 0 AS created;
SELECT chunkbatch.run('regress_ctl_owned') AS owner_done_run \gset
SELECT chunkbatch.wait(:owner_done_run, '60 s') AS state;
RESET ROLE;
SELECT pg_advisory_lock(chunkbatch.group_lock_key('regress_ctl_owned'));
SET ROLE regress_cb_owner;
SELECT chunkbatch.run('regress_ctl_owned') AS owner_run \gset
RESET ROLE;
SELECT wait_until(format($$SELECT state = 'waiting' FROM chunkbatch.runs WHERE run_id = %s$$, :owner_run));
SET ROLE regress_cb_owner;
SELECT chunkbatch.pause(:owner_run) AS paused;
SELECT state, started_at IS NULL AS never_started FROM chunkbatch.runs WHERE run_id = :owner_run;
RESET ROLE;

--
-- Bad input for pause, resume and cancel.
--
SELECT catalog_digest() AS before \gset
SELECT expect_error($$SELECT chunkbatch.pause(NULL)$$);
SELECT expect_error($$SELECT chunkbatch.resume(NULL)$$);
SELECT expect_error($$SELECT chunkbatch.cancel(NULL)$$);
-- runs that do not exist
SELECT expect_error($$SELECT chunkbatch.pause(0)$$);
SELECT expect_error($$SELECT chunkbatch.resume(-1)$$);
SELECT expect_error($$SELECT chunkbatch.cancel(9223372036854775807)$$);
SELECT expect_error($$SELECT chunkbatch.pause(9223372036854775807)$$);
SELECT expect_error($$SELECT chunkbatch.resume(9223372036854775807)$$);
-- a finished run
SELECT expect_error(format('SELECT chunkbatch.pause(%s)', :done_run));
SELECT expect_error(format('SELECT chunkbatch.resume(%s)', :done_run));
SELECT expect_error(format('SELECT chunkbatch.cancel(%s)', :done_run));
-- another role's runs, finished or paused
SET ROLE regress_cb_other;
SELECT expect_error(format('SELECT chunkbatch.pause(%s)', :owner_done_run));
SELECT expect_error(format('SELECT chunkbatch.resume(%s)', :owner_done_run));
SELECT expect_error(format('SELECT chunkbatch.cancel(%s)', :owner_done_run));
SELECT expect_error(format('SELECT chunkbatch.pause(%s)', :owner_run));
SELECT expect_error(format('SELECT chunkbatch.resume(%s)', :owner_run));
SELECT expect_error(format('SELECT chunkbatch.cancel(%s)', :owner_run));
RESET ROLE;
-- the paused run cannot be paused again
SELECT expect_error(format('SELECT chunkbatch.pause(%s)', :owner_run));
SELECT catalog_digest() = :'before' AS catalog_unchanged;

-- The owner cancels its paused run; then it is finished.
SET ROLE regress_cb_owner;
SELECT chunkbatch.cancel(:owner_run) AS cancelled;
SELECT state, finished_at IS NOT NULL AS finished, rows_done
  FROM chunkbatch.runs WHERE run_id = :owner_run;
SELECT expect_error(format('SELECT chunkbatch.cancel(%s)', :owner_run));
SELECT expect_error(format('SELECT chunkbatch.resume(%s)', :owner_run));
SELECT expect_error(format('SELECT chunkbatch.pause(%s)', :owner_run));
RESET ROLE;
SELECT pg_advisory_unlock(chunkbatch.group_lock_key('regress_ctl_owned'));
SELECT counter, count(*) FROM cb_ctl_owned GROUP BY counter;

--
-- A running run cannot be resumed; paused at a chunk boundary it keeps a
-- checkpoint that matches the table; it cannot be paused twice, and can be
-- cancelled.
--
SELECT chunkbatch.run('regress_ctl_slow') AS slow_run \gset
SELECT wait_until(format($$SELECT state = 'running' AND rows_done > 0 FROM chunkbatch.runs WHERE run_id = %s$$, :slow_run));
SELECT expect_error(format('SELECT chunkbatch.resume(%s)', :slow_run));
SELECT chunkbatch.pause(:slow_run) AS paused;
SELECT chunkbatch.wait(:slow_run, '30 s') AS state;
SELECT state, rows_done BETWEEN 1 AND 299 AS in_the_middle,
       rows_done = (SELECT sum(counter) FROM cb_ctl_slow) AS checkpoint_matches_table,
       cursor::bigint = rows_done AS cursor_matches, worker_pid IS NULL AS no_worker,
       finished_at IS NULL AS not_finished
  FROM chunkbatch.runs WHERE run_id = :slow_run;
SELECT expect_error(format('SELECT chunkbatch.pause(%s)', :slow_run));
SELECT chunkbatch.cancel(:slow_run) AS cancelled;
SELECT state, rows_done = (SELECT sum(counter) FROM cb_ctl_slow) AS checkpoint_kept,
       finished_at IS NOT NULL AS finished
  FROM chunkbatch.runs WHERE run_id = :slow_run;
SELECT expect_error(format('SELECT chunkbatch.resume(%s)', :slow_run));

-- max_runtime stops a run at a chunk boundary, keeping its checkpoint; a
-- stopped run cannot be paused, and cancel() ends it.
UPDATE cb_ctl_slow SET counter = 0;
SELECT chunkbatch.alter_job('regress_ctl_slow', max_runtime => '1 s');
SELECT chunkbatch.run('regress_ctl_slow') AS stopped_run \gset
SELECT chunkbatch.wait(:stopped_run, '30 s') AS state;
SELECT state, reason, rows_done BETWEEN 1 AND 299 AS in_the_middle,
       rows_done = (SELECT sum(counter) FROM cb_ctl_slow) AS checkpoint_matches_table,
       finished_at IS NOT NULL AS finished, sqlstate
  FROM chunkbatch.runs WHERE run_id = :stopped_run;
SELECT expect_error(format('SELECT chunkbatch.pause(%s)', :stopped_run));
SELECT chunkbatch.cancel(:stopped_run) AS cancelled;
SELECT state, finished_at IS NOT NULL AS finished
  FROM chunkbatch.runs WHERE run_id = :stopped_run;

--
-- Pause a run that waits for its group (held by this session): it stays
-- paused after the group is free, and resume() finishes it.
--
SELECT pg_advisory_lock(chunkbatch.group_lock_key('regress_ctl'));
SELECT chunkbatch.run('regress_ctl') AS held_run \gset
SELECT wait_until(format($$SELECT state = 'waiting' FROM chunkbatch.runs WHERE run_id = %s$$, :held_run));
SELECT expect_error(format('SELECT chunkbatch.resume(%s)', :held_run));
SELECT chunkbatch.pause(:held_run) AS paused;
SELECT state FROM chunkbatch.runs WHERE run_id = :held_run;
SELECT pg_advisory_unlock(chunkbatch.group_lock_key('regress_ctl'));
SELECT pg_sleep(1.5);
SELECT state, started_at IS NULL AS never_started, rows_done
  FROM chunkbatch.runs WHERE run_id = :held_run;
SELECT chunkbatch.wait(:held_run, '1 s') AS state;
SELECT chunkbatch.resume(:held_run) AS resumed;
SELECT chunkbatch.wait(:held_run, '60 s') AS state;
SELECT state, rows_done, cursor, started_at IS NOT NULL AS started
  FROM chunkbatch.runs WHERE run_id = :held_run;
-- the finished run and the resumed one processed every row once each
SELECT counter, count(*) FROM cb_ctl GROUP BY counter;

-- A run paused in the transaction that queued it never starts.
BEGIN;
SELECT chunkbatch.run('regress_ctl') AS queued_run \gset
SELECT chunkbatch.pause(:queued_run) AS paused;
COMMIT;
SELECT pg_sleep(1.5);
SELECT state, started_at IS NULL AS never_started FROM chunkbatch.runs WHERE run_id = :queued_run;
SELECT chunkbatch.cancel(:queued_run) AS cancelled;
SELECT state FROM chunkbatch.runs WHERE run_id = :queued_run;
SELECT counter, count(*) FROM cb_ctl GROUP BY counter;

--
-- Bad values for the failure settings.
--
SELECT catalog_digest() AS before \gset
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', max_retries => -1)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', max_retries => NULL)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', lock_timeout => '-1 s')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', lock_timeout => '30 days')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', statement_timeout => '-0.5 s')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', statement_timeout => '1 mon')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', max_runtime => '-1 min')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', on_error => 'skip')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', on_error => 'ISOLATE')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', on_error => NULL)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT 1 WHERE false', max_dead_letters => -1)$$);
-- isolate needs a keyset job with keys_sql
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT id FROM cb_ctl WHERE id > $2 LIMIT $1', cursor_type => 'bigint', on_error => 'isolate')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'DELETE FROM cb_ctl WHERE id <= $1', on_error => 'isolate', keys_sql => 'SELECT id FROM cb_ctl ORDER BY id LIMIT $1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT id FROM cb_ctl WHERE id > $2 LIMIT $1', cursor_type => 'bigint', on_error => 'isolate', keys_sql => '')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT id FROM cb_ctl WHERE id > $2 LIMIT $1', cursor_type => 'bigint', keys_sql => E' \n\t')$$);
-- keys_sql that cannot list the keys
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT id FROM cb_ctl WHERE id > $2 LIMIT $1', cursor_type => 'bigint', on_error => 'isolate', keys_sql => 'SELECT id::int FROM cb_ctl WHERE id > $2 ORDER BY id LIMIT $1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT id FROM cb_ctl WHERE id > $2 LIMIT $1', cursor_type => 'bigint', on_error => 'isolate', keys_sql => 'SELECT FROM cb_ctl WHERE id > $2 LIMIT $1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT id FROM cb_ctl WHERE id > $2 LIMIT $1', cursor_type => 'bigint', on_error => 'isolate', keys_sql => 'SELECT nosuchcolumn FROM cb_ctl')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT id FROM cb_ctl WHERE id > $2 LIMIT $1', cursor_type => 'bigint', on_error => 'isolate', keys_sql => 'SELECT 1::bigint; SELECT 2::bigint')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT id FROM cb_ctl WHERE id > $2 LIMIT $1', cursor_type => 'bigint', on_error => 'isolate', keys_sql => 'VACUUM cb_ctl')$$);
-- keys_sql lists keys: a statement that writes is refused too (in a
-- transaction rolled back, should it be accepted)
BEGIN;
SELECT expect_error($$SELECT chunkbatch.create_job('regress_ctl_x', 'SELECT id FROM cb_ctl WHERE id > $2 LIMIT $1', cursor_type => 'bigint', on_error => 'isolate', keys_sql => 'DELETE FROM cb_ctl WHERE id > $2 RETURNING id')$$) <> 'no error' AS refused;
ROLLBACK;
-- alter_job
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl', max_retries => -5)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl', lock_timeout => '-1 ms')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl', statement_timeout => '-1 h')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl', max_runtime => '-1 day')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl', on_error => 'retry')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl', on_error => 'isolate')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl', keys_sql => '')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl', max_dead_letters => -1)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl', on_error => 'isolate', keys_sql => 'SELECT id::text FROM cb_ctl WHERE id > $2 ORDER BY id LIMIT $1')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl_slow', keys_sql => 'SELECT id FROM cb_ctl_slow WHERE id > $2 ORDER BY id LIMIT $1', on_error => 'isolate', cursor_type => 'int')$$);
SELECT catalog_digest() = :'before' AS catalog_unchanged;

-- Settings are stored; zero timeouts mean none.
SELECT chunkbatch.create_job('regress_ctl_settings', 'SELECT 1 WHERE false',
    max_retries => 0, lock_timeout => '250 ms', statement_timeout => '2 s',
    max_runtime => '1 hour', max_dead_letters => 0) > 0 AS created;
SELECT max_retries, lock_timeout, statement_timeout, max_runtime, on_error,
       keys_sql, max_dead_letters
  FROM chunkbatch.jobs WHERE job_name = 'regress_ctl_settings';
SELECT chunkbatch.alter_job('regress_ctl_settings', max_retries => 3,
    lock_timeout => '0', statement_timeout => '0 s', max_runtime => '0 min');
SELECT max_retries, lock_timeout, statement_timeout, max_runtime, on_error,
       keys_sql, max_dead_letters
  FROM chunkbatch.jobs WHERE job_name = 'regress_ctl_settings';
SELECT chunkbatch.create_job('regress_ctl_zero', 'SELECT 1 WHERE false',
    lock_timeout => '0', statement_timeout => '0', max_runtime => '0') > 0 AS created;
SELECT lock_timeout, statement_timeout, max_runtime
  FROM chunkbatch.jobs WHERE job_name = 'regress_ctl_zero';

--
-- Poison rows: on_error => 'isolate' over 50 rows in chunks of 10, with
-- two rows whose update fails.
--
SELECT chunkbatch.create_job('regress_ctl_isolate',
    $$UPDATE cb_ctl_poison SET counter = counter + 1 WHERE id IN (SELECT id FROM cb_ctl_poison WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1) RETURNING id$$,
    batch_size => 10, cursor_type => 'bigint', on_error => 'isolate',
    keys_sql => $$SELECT id FROM cb_ctl_poison WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1$$) > 0 AS created;
SELECT on_error, keys_sql IS NOT NULL AS has_keys_sql, max_dead_letters
  FROM chunkbatch.jobs WHERE job_name = 'regress_ctl_isolate';
SELECT chunkbatch.run('regress_ctl_isolate') AS iso_run \gset
SELECT chunkbatch.wait(:iso_run, '60 s') AS state;
SELECT state, rows_done, chunks_done, dead_letters, cursor, sqlstate, retries
  FROM chunkbatch.runs WHERE run_id = :iso_run;
SELECT key, sqlstate, job_name, owner = current_user AS owner_ok,
       error ~ 'cb_ctl_not_poison' AS names_constraint
  FROM chunkbatch.dead_letters WHERE run_id = :iso_run ORDER BY key::bigint;
SELECT poison, counter, count(*) FROM cb_ctl_poison GROUP BY poison, counter ORDER BY poison, counter;
-- other roles do not see the dead letters of the superuser's job
SET ROLE regress_cb_other;
SELECT count(*) AS visible_dead_letters FROM chunkbatch.dead_letters;
RESET ROLE;

-- More dead letters than max_dead_letters fail the run in the chunk of the
-- second poison row; the chunks before it stay committed, with the first
-- dead letter.
UPDATE cb_ctl_poison SET counter = 0;
SELECT chunkbatch.alter_job('regress_ctl_isolate', max_dead_letters => 1);
SELECT chunkbatch.run('regress_ctl_isolate') AS iso_run2 \gset
SELECT chunkbatch.wait(:iso_run2, '60 s') AS state;
SELECT state, sqlstate, regexp_replace(error, 'run \d+', 'run N') AS error,
       error_chunk, rows_done, chunks_done, dead_letters, cursor
  FROM chunkbatch.runs WHERE run_id = :iso_run2;
SELECT key, sqlstate FROM chunkbatch.dead_letters WHERE run_id = :iso_run2 ORDER BY key::bigint;
SELECT poison, counter, count(*) FROM cb_ctl_poison GROUP BY poison, counter ORDER BY poison, counter;

-- keys_sql saved with validate => false that returns keys of the wrong
-- type: the chunk with the poison row fails the run with 42804.
UPDATE cb_ctl_poison SET counter = 0;
SELECT chunkbatch.create_job('regress_ctl_bad_keys',
    $$UPDATE cb_ctl_poison SET counter = counter + 1 WHERE id IN (SELECT id FROM cb_ctl_poison WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1) RETURNING id$$,
    batch_size => 10, cursor_type => 'bigint', on_error => 'isolate',
    keys_sql => $$SELECT id::int FROM cb_ctl_poison WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1$$,
    validate => false) > 0 AS created;
SELECT chunkbatch.run('regress_ctl_bad_keys') AS bad_keys_run \gset
SELECT chunkbatch.wait(:bad_keys_run, '60 s') AS state;
SELECT state, sqlstate, error_chunk, rows_done, dead_letters, cursor
  FROM chunkbatch.runs WHERE run_id = :bad_keys_run;
SELECT count(*) AS dead_letters FROM chunkbatch.dead_letters WHERE run_id = :bad_keys_run;
SELECT poison, counter, count(*) FROM cb_ctl_poison GROUP BY poison, counter ORDER BY poison, counter;

SELECT wait_idle();

-- alter_job(..., reset => ...): a run held by its throttle_sql goes on at
-- its next look once the setting is reset to its default (none).
CREATE TABLE cb_ctl_reset (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false);
INSERT INTO cb_ctl_reset (id) SELECT generate_series(1, 30);
SELECT chunkbatch.create_job('regress_ctl_reset',
    $$UPDATE cb_ctl_reset SET done = true WHERE id IN (SELECT id FROM cb_ctl_reset WHERE NOT done ORDER BY id LIMIT $1)$$,
    batch_size => 10, throttle_sql => 'SELECT true', count_sql => 'SELECT 30',
    max_runtime => '1 hour') > 0 AS created;
SELECT chunkbatch.run('regress_ctl_reset') AS reset_run \gset
SELECT wait_until(format('SELECT state = %L FROM chunkbatch.runs WHERE run_id = %s', 'throttled', :reset_run));
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl_reset', reset => ARRAY['no_such_setting'])$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl_reset', reset => ARRAY['batch_size'])$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl_reset', throttle_sql => 'SELECT false', reset => ARRAY['throttle_sql'])$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_ctl_reset', reset => ARRAY[NULL])$$);
SELECT chunkbatch.alter_job('regress_ctl_reset', reset => ARRAY['throttle_sql', 'count_sql', 'max_runtime']);
SELECT throttle_sql, count_sql, max_runtime, lock_group FROM chunkbatch.jobs WHERE job_name = 'regress_ctl_reset';
SELECT chunkbatch.wait(:reset_run, '60 s') AS state;
SELECT rows_done, count(*) FILTER (WHERE done) AS done_rows
  FROM chunkbatch.runs, cb_ctl_reset WHERE run_id = :reset_run GROUP BY rows_done;
-- lock_group goes back to the job's name.
SELECT chunkbatch.alter_job('regress_ctl_reset', lock_group => 'regress_ctl_other_group');
SELECT chunkbatch.alter_job('regress_ctl_reset', reset => ARRAY['lock_group']);
SELECT lock_group FROM chunkbatch.jobs WHERE job_name = 'regress_ctl_reset';

-- Clean up.
SELECT count(*) AS dropped
  FROM (SELECT chunkbatch.drop_job(job_name) FROM chunkbatch.jobs
         WHERE job_name LIKE 'regress_ctl%' AND owner = current_user) d;
SET ROLE regress_cb_owner;
SELECT chunkbatch.drop_job('regress_ctl_owned');
RESET ROLE;
