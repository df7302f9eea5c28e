--
-- Lock groups and schedules: bad input for the group settings, the run
-- trigger and the pg_cron wrappers (pg_cron is not installed here), then
-- two jobs of one group queued alternately: they never overlap and start
-- in queue order.
--
SELECT wait_idle();

CREATE TABLE cb_grp (id int PRIMARY KEY, a int NOT NULL DEFAULT 0, b int NOT NULL DEFAULT 0);
INSERT INTO cb_grp (id) SELECT g FROM generate_series(1, 200) g;
SELECT chunkbatch.create_job('regress_grp_a',
    $$UPDATE cb_grp SET a = a + 1 WHERE id IN (SELECT id FROM cb_grp WHERE id > COALESCE($2, 0) ORDER BY id LIMIT $1) RETURNING id$$,
    batch_size => 50, cursor_type => 'int', lock_group => 'regress_grp') > 0 AS created;
SELECT chunkbatch.create_job('regress_grp_b',
    $$UPDATE cb_grp SET b = b + 1 WHERE id IN (SELECT id FROM cb_grp WHERE id > COALESCE($2, 0) ORDER BY id LIMIT $1) RETURNING id$$,
    batch_size => 40, cursor_type => 'int', lock_group => 'regress_grp',
    on_group_busy => 'wait', group_wait_timeout => '10 min') > 0 AS created;

SELECT catalog_digest() AS before \gset
SELECT expect_error($$SELECT chunkbatch.create_job('regress_grp_x', 'SELECT 1 WHERE false', on_group_busy => 'queue')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_grp_x', 'SELECT 1 WHERE false', on_group_busy => NULL)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_grp_x', 'SELECT 1 WHERE false', group_wait_timeout => '0 s')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_grp_x', 'SELECT 1 WHERE false', group_wait_timeout => '-1 min')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_grp_a', on_group_busy => 'SKIP')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_grp_a', group_wait_timeout => '-1 s')$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_grp_a', trigger => '')$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_grp_a', trigger => repeat('t', 200))$$);
SELECT expect_error($$SELECT chunkbatch.schedule('regress_grp_a', '* * * * *')$$);
SELECT expect_error($$SELECT chunkbatch.schedule(NULL, '* * * * *')$$);
SELECT expect_error($$SELECT chunkbatch.schedule('regress_grp_a', NULL)$$);
SELECT expect_error($$SELECT chunkbatch.unschedule('regress_grp_a')$$);
SELECT expect_error($$SELECT chunkbatch.unschedule(NULL)$$);
SELECT catalog_digest() = :'before' AS catalog_unchanged;

-- settings stored
SELECT job_name, lock_group, on_group_busy, group_wait_timeout
  FROM chunkbatch.jobs WHERE job_name LIKE 'regress_grp%' ORDER BY job_name;
SELECT chunkbatch.alter_job('regress_grp_a', on_group_busy => 'skip', group_wait_timeout => '5 s');
SELECT on_group_busy, group_wait_timeout FROM chunkbatch.jobs WHERE job_name = 'regress_grp_a';
SELECT chunkbatch.alter_job('regress_grp_a', on_group_busy => 'wait');

-- six runs queued alternately, each committed on its own
SELECT chunkbatch.run('regress_grp_a', trigger => 'regress') > 0 AS q1;
SELECT chunkbatch.run('regress_grp_b') > 0 AS q2;
SELECT chunkbatch.run('regress_grp_a') > 0 AS q3;
SELECT chunkbatch.run('regress_grp_b') > 0 AS q4;
SELECT chunkbatch.run('regress_grp_a') > 0 AS q5;
SELECT chunkbatch.run('regress_grp_b') > 0 AS q6;
SELECT wait_idle();

SELECT job_name, state, rows_done, trigger FROM chunkbatch.runs
 WHERE job_name LIKE 'regress_grp%' ORDER BY run_id;
-- no two runs of the group overlap
SELECT count(*) AS overlapping_pairs
  FROM chunkbatch.runs x JOIN chunkbatch.runs y ON x.run_id < y.run_id
 WHERE x.lock_group = 'regress_grp' AND y.lock_group = 'regress_grp'
   AND tstzrange(x.started_at, x.finished_at) && tstzrange(y.started_at, y.finished_at);
-- they started in the order they were queued
SELECT array_agg(run_id ORDER BY started_at) = array_agg(run_id ORDER BY run_id) AS fifo
  FROM chunkbatch.runs WHERE lock_group = 'regress_grp';
-- every row was processed three times by each job
SELECT a, b, count(*) FROM cb_grp GROUP BY a, b;
SELECT count(*) AS idle_group_listed FROM chunkbatch.groups WHERE lock_group = 'regress_grp';
