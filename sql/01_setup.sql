--
-- 01_setup: the extension, the roles and tables the other tests use, and
-- the test helpers.
--
-- Outputs never show pids, timestamps, durations or run ids: the helpers
-- below return SQLSTATEs, masked messages and relative facts.
--
CREATE EXTENSION chunkbatch;

SELECT extname, extversion, nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'chunkbatch';

-- Roles (cluster-wide, hence the regress_cb_ prefix).
--   regress_cb_owner:   a LOGIN role that owns jobs in 04_privileges
--   regress_cb_nologin: a NOLOGIN role, which cannot own jobs
--   regress_cb_other:   a LOGIN role with no claim on the owner's jobs
--   regress_cb_member:  a LOGIN member of regress_cb_owner
--   regress_cb_monitor: a LOGIN member of pg_monitor
CREATE ROLE regress_cb_owner LOGIN;
CREATE ROLE regress_cb_nologin NOLOGIN;
CREATE ROLE regress_cb_other LOGIN;
CREATE ROLE regress_cb_member LOGIN IN ROLE regress_cb_owner;
CREATE ROLE regress_cb_monitor LOGIN IN ROLE pg_monitor;

--
-- Helpers
--

-- Run a statement that must fail; return its SQLSTATE and message.  Run
-- ids in messages are masked, newlines and tabs shown as \n and \t.
CREATE FUNCTION expect_error(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st  text;
    msg text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    msg := regexp_replace(msg, '\mrun \d+', 'run N', 'g');
    RETURN st || ': ' || replace(replace(msg, E'\n', '\n'), E'\t', '\t');
END
$$;

-- Poll until the query cond returns true or the timeout passes.  Each
-- poll sees the changes committed by the workers so far.
CREATE FUNCTION wait_until(cond text, timeout interval DEFAULT '60 s')
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    ok       boolean;
BEGIN
    LOOP
        EXECUTE cond INTO ok;
        IF ok THEN
            RETURN 'ok';
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN 'timed out waiting for: ' || cond;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

-- Wait until no run of this database is queued or active.
CREATE FUNCTION wait_idle(timeout interval DEFAULT '60 s') RETURNS text
LANGUAGE sql AS $$
    SELECT wait_until($q$SELECT NOT EXISTS (SELECT 1 FROM chunkbatch.runs
                         WHERE state IN ('queued', 'waiting', 'running',
                                         'paused', 'interrupted'))$q$,
                      timeout)
$$;

-- The number of rows and a checksum of chunkbatch.jobs and chunkbatch.runs
-- (read as superuser, so row level security hides nothing): compare
-- before and after a series of failing calls.  A run that is executing
-- meanwhile (its checkpoint moves) can be left out of the checksum.
CREATE FUNCTION catalog_digest(moving_run bigint DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
    SELECT format('jobs %s %s, runs %s %s',
                  (SELECT count(*) FROM chunkbatch.jobs),
                  (SELECT md5(coalesce(string_agg(j::text, E'\n' ORDER BY j.job_id), ''))
                     FROM chunkbatch.jobs j),
                  (SELECT count(*) FROM chunkbatch.runs),
                  (SELECT md5(coalesce(string_agg(r::text, E'\n' ORDER BY r.run_id), ''))
                     FROM chunkbatch.runs r
                    WHERE r.run_id IS DISTINCT FROM moving_run))
$$;

-- The last run of a job.
CREATE FUNCTION last_run(job text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT max(run_id) FROM chunkbatch.runs WHERE job_name = job
$$;

--
-- Tables
--

-- 03_runs: a purge of half of 10,000 events (every even id is old).
CREATE TABLE cb_events (id int PRIMARY KEY, old boolean NOT NULL);
INSERT INTO cb_events SELECT g, g % 2 = 0 FROM generate_series(1, 10000) g;

-- 03_runs: keyset runs over a table with gaps in its keys, counting how
-- often each row is processed.
CREATE TABLE cb_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO cb_items (id) SELECT g * 3 FROM generate_series(1, 2500) g;

-- 03_runs: a keyset run over text keys.
CREATE TABLE cb_words (word text PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO cb_words (word) SELECT 'word-' || lpad(g::text, 3, '0')
  FROM generate_series(1, 25) g;

-- 03_runs: what the chunk SQL received as $1 and $3.
CREATE TABLE cb_param_log (tag text PRIMARY KEY, n int, batch int);

-- 03_runs: a job that fails in its third chunk (row 150 reaches 100).
CREATE TABLE cb_checked (id int PRIMARY KEY, v int NOT NULL CHECK (v < 100));
INSERT INTO cb_checked SELECT g, CASE WHEN g = 150 THEN 99 ELSE 0 END
  FROM generate_series(1, 250) g;

-- 03_runs: a job that never ends by itself (one row per chunk, forever).
CREATE TABLE cb_slow (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO cb_slow VALUES (1, 0), (2, 0);

-- 03_runs: the settings a chunk runs with.
CREATE TABLE cb_settings_log (tag text PRIMARY KEY, sync text, search_path text,
                              parallel_workers text, jit text);

-- 03_runs: a table found through the search_path saved with the job.
CREATE SCHEMA cb_schema;
CREATE TABLE cb_schema.cb_hidden (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false);
INSERT INTO cb_schema.cb_hidden (id) SELECT g FROM generate_series(1, 30) g;

-- 05_run_time_errors: keys for keyset jobs that go wrong at run time, and
-- tables that a bad job must leave untouched.
CREATE TABLE cb_keys (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO cb_keys (id) SELECT g FROM generate_series(1, 100) g;
CREATE TABLE cb_first (id int PRIMARY KEY);
INSERT INTO cb_first SELECT g FROM generate_series(1, 20) g;
CREATE TABLE cb_second (id int PRIMARY KEY);
INSERT INTO cb_second SELECT g FROM generate_series(1, 20) g;
CREATE TABLE cb_doomed (id int PRIMARY KEY);

-- 04_privileges: what a job sees of its identity.
CREATE TABLE cb_whoami (job text PRIMARY KEY, cu text, su text);
GRANT SELECT, INSERT ON cb_whoami TO regress_cb_owner;

-- 04_privileges: a table the owner may update, and one it may not touch.
CREATE TABLE cb_owned (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO cb_owned SELECT g, 0 FROM generate_series(1, 100) g;
GRANT SELECT, UPDATE ON cb_owned TO regress_cb_owner;
CREATE TABLE cb_secret (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO cb_secret SELECT g, 0 FROM generate_series(1, 100) g;

-- Nothing is queued yet.
SELECT catalog_digest() = format('jobs 0 %s, runs 0 %s', md5(''), md5('')) AS empty_catalog;
