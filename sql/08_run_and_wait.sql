--
-- CALL chunkbatch.run_and_wait(): queue, commit and wait, committing
-- between looks at the run; its outcome like run(..., wait => true).
--
SELECT wait_idle();

CREATE TABLE cb_rw (id int PRIMARY KEY, v int NOT NULL DEFAULT 0 CHECK (v < 2));
INSERT INTO cb_rw (id) SELECT g FROM generate_series(1, 300) g;
SELECT chunkbatch.create_job('regress_rw',
    $$UPDATE cb_rw SET v = v + 1 WHERE id IN (SELECT id FROM cb_rw WHERE id > COALESCE($2, 0) ORDER BY id LIMIT $1) RETURNING id$$,
    batch_size => 50, cursor_type => 'int') > 0 AS created;

-- success: the run id comes back, the run has succeeded by then
CALL chunkbatch.run_and_wait('regress_rw', trigger => 'regress call') \gset
SELECT state, rows_done, chunks_done, trigger FROM chunkbatch.runs WHERE run_id = :run_id;
SELECT v, count(*) FROM cb_rw GROUP BY v;

-- failure: the second run violates the CHECK in its first chunk; the error
-- carries the run's SQLSTATE
\set VERBOSITY sqlstate
CALL chunkbatch.run_and_wait('regress_rw');
\set VERBOSITY default
SELECT state, sqlstate, rows_done FROM chunkbatch.runs
 WHERE job_name = 'regress_rw' ORDER BY run_id DESC LIMIT 1;

-- only with CALL outside a transaction block
BEGIN;
\set VERBOSITY terse
CALL chunkbatch.run_and_wait('regress_rw');
\set VERBOSITY default
ROLLBACK;
SELECT expect_error($$CALL chunkbatch.run_and_wait('regress_rw')$$);
\set VERBOSITY sqlstate
CALL chunkbatch.run_and_wait('regress_no_such_job');
CALL chunkbatch.run_and_wait('regress_rw', params => '[1]');
\set VERBOSITY default
SELECT count(*) AS runs FROM chunkbatch.runs WHERE job_name = 'regress_rw';
