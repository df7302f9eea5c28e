--
-- Parallel slices: the parallel setting and run argument (bad values, and
-- jobs that are not in range mode, each a clear error that leaves the
-- catalog as it was), what dry_run says of the slices, and a run split
-- into slices: one runs row, every row processed once, the slices'
-- checkpoints covering the keys, and the slices seen only by those who
-- see the run.
--
SELECT wait_idle();

CREATE TABLE cb_par (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0, n int NOT NULL DEFAULT 0);
INSERT INTO cb_par (id) SELECT g * 2 FROM generate_series(1, 3000) g;
UPDATE cb_par SET v = 1 WHERE id % 3 = 0;
GRANT SELECT ON cb_par TO regress_cb_other;

SELECT chunkbatch.create_update('regress_par', 'cb_par', 'v = 1, n = n + 1', 'v = 0',
    batch_size => 600, parallel => 3) > 0 AS created;
SELECT chunkbatch.create_job('regress_par_keyset', 'SELECT 1 WHERE false', batch_size => 10) > 0 AS created;
SELECT job_name, parallel FROM chunkbatch.jobs WHERE job_name LIKE 'regress\_par%' ORDER BY 1;

SELECT catalog_digest() AS before \gset
SELECT expect_error($$SELECT chunkbatch.create_update('regress_x', 'cb_par', 'n = 1', 'true', parallel => 0)$$);
SELECT expect_error($$SELECT chunkbatch.create_update('regress_x', 'cb_par', 'n = 1', 'true', parallel => 65)$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_x', 'SELECT 1', parallel => 2)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_par', parallel => -1)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_par_keyset', parallel => 4)$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_par', parallel => 0)$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_par_keyset', parallel => 2)$$);
SELECT catalog_digest() = :'before' AS unchanged;

-- parallel => 1 is no slices, for any job
SELECT chunkbatch.run('regress_par_keyset', wait => true, parallel => 1) > 0 AS ran;

SELECT item, detail FROM chunkbatch.dry_run('regress_par') WHERE item = 'slices';

-- a run of three slices: one runs row; every matching row once (each
-- slice holds 1000 keys, less than two chunks' worth: no stealing)
SELECT chunkbatch.run('regress_par', wait => true) AS run_id \gset
SELECT state, rows_done, parallel FROM chunkbatch.runs WHERE run_id = :run_id;
SELECT count(*) AS runs FROM chunkbatch.runs WHERE job_name = 'regress_par';
SELECT n, count(*) FROM cb_par GROUP BY n ORDER BY n;
SELECT count(*) AS slices, count(*) FILTER (WHERE state = 'done') AS done,
       sum(rows_done) AS rows_done
  FROM chunkbatch.slices WHERE run_id = :run_id;
-- the first slice begins at the first matching key; each other begins
-- after the last key of the one before it; the last ends at the last one
SELECT slice_no, state, range_first, range_last, cursor, rows_done
  FROM chunkbatch.slices WHERE run_id = :run_id ORDER BY slice_no;
SELECT count(*) AS slice_rows FROM chunkbatch.slice_status WHERE run_id = :run_id;

-- a run of one slice, asked for by run(): no slices, one worker
UPDATE cb_par SET v = 0 WHERE id <= 600;
SELECT chunkbatch.run('regress_par', wait => true, parallel => 1) AS run1 \gset
SELECT state, rows_done, parallel FROM chunkbatch.runs WHERE run_id = :run1;
SELECT count(*) AS slices FROM chunkbatch.slices WHERE run_id = :run1;

-- another role sees neither the run nor its slices
SET ROLE regress_cb_other;
SELECT count(*) AS runs_seen FROM chunkbatch.runs WHERE run_id = :run_id;
SELECT count(*) AS slices_seen FROM chunkbatch.slices WHERE run_id = :run_id;
SELECT count(*) AS slice_status_seen FROM chunkbatch.slice_status WHERE run_id = :run_id;
RESET ROLE;

-- a failing slice fails the run; its range_filter cannot change while it
-- is not over (the slices were split by the keys the filter matched), its
-- statement can; resume() then finishes every row once.  Each of the two
-- slices holds 1500 keys, less than two chunks' worth: no worker steals
-- part of the other's, so the failing key stays in slice 0
CREATE TABLE cb_par_flag (bad boolean NOT NULL);
INSERT INTO cb_par_flag VALUES (true);
CREATE FUNCTION cb_par_check(k bigint) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF k = 3000 AND (SELECT bad FROM cb_par_flag) THEN
        RAISE EXCEPTION 'key % is bad', k USING ERRCODE = 'U0001';
    END IF;
    RETURN 0;
END $$;
UPDATE cb_par SET v = 0, n = 0;
SELECT chunkbatch.create_update('regress_par_fail', 'cb_par', 'v = 1, n = n + 1 + cb_par_check(id)',
    'v = 0', batch_size => 1000, parallel => 2) > 0 AS created;
SELECT chunkbatch.run('regress_par_fail') AS run2 \gset
SELECT chunkbatch.wait(:run2);
SELECT state, sqlstate, error FROM chunkbatch.runs WHERE run_id = :run2;
SELECT slice_no, state, sqlstate, error FROM chunkbatch.slices
 WHERE run_id = :run2 AND state = 'failed';
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_par_fail', range_filter => 'v < 1')$$);
SELECT chunkbatch.alter_job('regress_par_fail', chunk_sql => replace(chunk_sql, 'n = n + 1', 'n = n + 1 '))
  FROM chunkbatch.jobs WHERE job_name = 'regress_par_fail';
UPDATE cb_par_flag SET bad = false;
SELECT chunkbatch.resume(:run2);
SELECT chunkbatch.wait(:run2);
SELECT state, rows_done, sqlstate FROM chunkbatch.runs WHERE run_id = :run2;
SELECT n, count(*) FROM cb_par GROUP BY n ORDER BY n;

-- max_dead_letters counts the dead letters of the whole run: 3 poison
-- rows in each of two slices, a limit of 3: the run fails (54000), though
-- neither slice alone goes above it (the first slice's early in it, the
-- second's at its end, so that the run's own worker is not isolating
-- when another worker's slice fails)
UPDATE cb_par SET v = 0, n = 0;
CREATE FUNCTION cb_par_poison(k bigint) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF k IN (200, 800, 1400, 5400, 5700, 6000) THEN
        RAISE EXCEPTION 'key % is poison', k USING ERRCODE = 'U0002';
    END IF;
    RETURN 0;
END $$;
SELECT chunkbatch.create_update('regress_par_dead', 'cb_par', 'v = 1, n = n + 1 + cb_par_poison(id)',
    'v = 0', batch_size => 200, parallel => 2, on_error => 'isolate',
    max_dead_letters => 3) > 0 AS created;
SELECT chunkbatch.run('regress_par_dead') AS run3 \gset
SELECT chunkbatch.wait(:run3);
SELECT state, sqlstate FROM chunkbatch.runs WHERE run_id = :run3;
SELECT bool_and(dead_letters <= 3) AS each_slice_within_the_limit
  FROM chunkbatch.slices WHERE run_id = :run3;

-- a run split into slices has begun, though its row counts no chunk
-- until it ends: after a crash (simulated: the run's row as a killed
-- worker leaves it, interrupted and without totals), a session holding its
-- group past group_wait_timeout makes it wait, not end as skipped
UPDATE cb_par SET v = 0, n = 0;
SELECT chunkbatch.create_update('regress_par_gw', 'cb_par', 'v = 1, n = n + 1', 'v = 0',
    batch_size => 200, sleep_ms => 200, parallel => 2, lock_group => 'regress_par_gw',
    group_wait_timeout => '1 second') > 0 AS created;
SELECT chunkbatch.run('regress_par_gw') AS run4 \gset
SELECT wait_until(format('SELECT sum(chunks_done) >= 2 FROM chunkbatch.slices WHERE run_id = %s', :run4));
SELECT chunkbatch.pause(:run4);
SELECT wait_until(format('SELECT state = ''paused'' FROM chunkbatch.runs WHERE run_id = %s', :run4));
SELECT pg_advisory_lock(chunkbatch.group_lock_key('regress_par_gw'));
UPDATE chunkbatch.runs SET state = 'interrupted', rows_done = 0, chunks_done = 0
 WHERE run_id = :run4;
-- (a run of another job wakes the database's scheduler, as a restart does)
SELECT chunkbatch.run('regress_par_keyset') > 0 AS queued;
SELECT pg_sleep(3);
SELECT state <> 'skipped' AS not_skipped FROM chunkbatch.runs WHERE run_id = :run4;
SELECT pg_advisory_unlock(chunkbatch.group_lock_key('regress_par_gw'));
SELECT chunkbatch.wait(:run4);
SELECT state, rows_done FROM chunkbatch.runs WHERE run_id = :run4;
SELECT n, count(*) FROM cb_par GROUP BY n ORDER BY n;

SELECT chunkbatch.drop_job('regress_par_gw');
SELECT chunkbatch.drop_job('regress_par_dead');
SELECT chunkbatch.drop_job('regress_par_fail');
SELECT chunkbatch.drop_job('regress_par');
SELECT chunkbatch.drop_job('regress_par_keyset');
DROP TABLE cb_par, cb_par_flag;
DROP FUNCTION cb_par_check(bigint), cb_par_poison(bigint);
