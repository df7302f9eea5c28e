--
-- 04_privileges: jobs run with the privileges of their owner, never more;
-- only the owner (a member of the owner role, a superuser) can see and act
-- on a job; pg_monitor members see its runs.
--
\set VERBOSITY terse

--
-- A non-superuser LOGIN owner.  Its run workers connect as the owner:
-- both current_user and session_user are the owner in the chunk SQL.
--
SET ROLE regress_cb_owner;
SELECT current_user;
SELECT chunkbatch.create_job('regress_priv_whoami',
    $$INSERT INTO cb_whoami (job, cu, su)
      SELECT $3->>'tag', current_user, session_user
       WHERE NOT EXISTS (SELECT 1 FROM cb_whoami WHERE job = $3->>'tag')$$) > 0 AS created;
SELECT chunkbatch.create_job('regress_priv_slow',
    'UPDATE cb_owned SET v = v + 1 FROM pg_sleep(0.2) WHERE id = 1',
    batch_size => 1) > 0 AS created;
SELECT job_name, owner FROM chunkbatch.jobs ORDER BY job_name;
SELECT chunkbatch.run('regress_priv_whoami', '{"tag": "by owner"}') AS owner_run \gset
SELECT chunkbatch.wait(:owner_run, '60 s') AS state;
SELECT job_name, state, owner, queued_by, rows_done, sqlstate, error
  FROM chunkbatch.runs WHERE run_id = :owner_run;
SELECT job, cu, su FROM cb_whoami ORDER BY job;

-- The owner cannot read cb_secret, so neither can its jobs.
SELECT expect_error($$SELECT chunkbatch.create_job('regress_priv_secret', 'UPDATE cb_secret SET v = v + 1 WHERE id <= $1')$$);
SELECT expect_error($$SELECT chunkbatch.create_job('regress_priv_secret', 'SELECT id FROM cb_secret WHERE id > $2 LIMIT $1', cursor_type => 'integer')$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_priv_whoami', chunk_sql => 'DELETE FROM cb_secret WHERE id <= $1')$$);
SELECT count(*) AS secret_jobs FROM chunkbatch.jobs WHERE job_name = 'regress_priv_secret';
-- Without validation the job is created, and its run fails with 42501.
SELECT chunkbatch.create_job('regress_priv_secret',
    'UPDATE cb_secret SET v = v + 1 WHERE id IN (SELECT id FROM cb_secret WHERE v = 0 LIMIT $1)',
    validate => false) > 0 AS created;
SELECT chunkbatch.run('regress_priv_secret') AS secret_run \gset
SELECT chunkbatch.wait(:secret_run, '60 s') AS state;
SELECT state, sqlstate, error, error_chunk, rows_done, chunks_done
  FROM chunkbatch.runs WHERE run_id = :secret_run;
-- Nor can a job take another role's identity.
SELECT chunkbatch.create_job('regress_priv_setrole',
    $$SELECT set_config('role', 'regress_cb_other', true) WHERE $1 > 0$$) > 0 AS created;
SELECT chunkbatch.run('regress_priv_setrole') AS setrole_run \gset
SELECT chunkbatch.wait(:setrole_run, '60 s') AS state;
SELECT state, sqlstate, error, rows_done
  FROM chunkbatch.runs WHERE run_id = :setrole_run;
-- Users cannot write chunkbatch's tables directly.
SELECT expect_error(format('UPDATE chunkbatch.runs SET state = %L WHERE run_id = %s', 'succeeded', :secret_run));
SELECT expect_error($$INSERT INTO chunkbatch.jobs (job_name, owner, chunk_sql, batch_size, lock_group, search_path) VALUES ('regress_priv_forged', 'regress_cb_other', 'SELECT 1', 1, 'x', 'public')$$);
SELECT expect_error($$DELETE FROM chunkbatch.runs$$);
RESET ROLE;
SELECT count(*) FILTER (WHERE v <> 0) AS secret_rows_changed FROM cb_secret;

-- A slow run of the owner, for the others to look at.
SET ROLE regress_cb_owner;
SELECT chunkbatch.run('regress_priv_slow') AS slow_run \gset
RESET ROLE;
SELECT wait_until(format($$SELECT state = 'running' FROM chunkbatch.runs
                            WHERE run_id = %s$$, :slow_run));

--
-- Another role sees none of the owner's jobs and runs, and can do nothing
-- with them.
--
SELECT catalog_digest(:slow_run) AS digest_before \gset
SET ROLE regress_cb_other;
SELECT count(*) AS visible_jobs FROM chunkbatch.jobs;
SELECT count(*) AS visible_runs FROM chunkbatch.runs;
SELECT count(*) AS visible_status FROM chunkbatch.status_detail;
SELECT count(*) AS visible_workers FROM chunkbatch.progress();
SELECT expect_error($$SELECT chunkbatch.run('regress_priv_whoami', '{"tag": "by other"}')$$);
SELECT expect_error($$SELECT chunkbatch.run('regress_priv_whoami', '{"tag": "by other"}', wait => true)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_priv_whoami', batch_size => 1)$$);
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_priv_whoami', chunk_sql => 'SELECT 1')$$);
SELECT expect_error($$SELECT chunkbatch.drop_job('regress_priv_whoami')$$);
SELECT expect_error(format('SELECT chunkbatch.cancel(%s)', :slow_run));
SELECT expect_error(format('SELECT chunkbatch.cancel(%s)', :owner_run));
SELECT expect_error(format('SELECT chunkbatch.wait(%s, %L)', :owner_run, '1 s'));
SELECT expect_error($$SELECT chunkbatch.create_job('regress_priv_whoami', 'SELECT 1')$$);
-- Nor join its group: a group belongs to the owner of its oldest job.
SELECT expect_error($$SELECT chunkbatch.create_job('regress_priv_squat', 'SELECT 1', lock_group => 'regress_priv_whoami')$$);
SELECT chunkbatch.create_job('regress_priv_other_job', 'SELECT 1 WHERE $1 < 0') > 0 AS created;
SELECT expect_error($$SELECT chunkbatch.alter_job('regress_priv_other_job', lock_group => 'regress_priv_whoami')$$);
SELECT chunkbatch.drop_job('regress_priv_other_job');
RESET ROLE;
SELECT catalog_digest(:slow_run) = :'digest_before' AS catalog_unchanged;
SELECT state FROM chunkbatch.runs WHERE run_id = :slow_run;
SELECT count(*) AS whoami_rows FROM cb_whoami;

--
-- A member of the owner role can do what the owner can; its runs still
-- execute as the owner.
--
SET ROLE regress_cb_member;
SELECT job_name, owner FROM chunkbatch.jobs ORDER BY job_name;
SELECT count(*) > 0 AS sees_runs FROM chunkbatch.runs WHERE run_id = :owner_run;
SELECT job_name, state FROM chunkbatch.status_detail;
SELECT chunkbatch.run('regress_priv_whoami', '{"tag": "by member"}') AS member_run \gset
SELECT chunkbatch.wait(:member_run, '60 s') AS state;
SELECT state, owner, queued_by FROM chunkbatch.runs WHERE run_id = :member_run;
SELECT chunkbatch.alter_job('regress_priv_whoami', batch_size => 5);
SELECT batch_size FROM chunkbatch.jobs WHERE job_name = 'regress_priv_whoami';
-- A member may put its own job into the owner's group.
SELECT chunkbatch.create_job('regress_priv_member_job', 'SELECT 1 WHERE $1 < 0',
                             lock_group => 'regress_priv_whoami') > 0 AS member_joins_group;
SELECT chunkbatch.drop_job('regress_priv_member_job');
RESET ROLE;
SELECT job, cu, su FROM cb_whoami ORDER BY job;

--
-- A pg_monitor member sees the runs and their status, but not the jobs
-- (nor their SQL), and cannot act on them.
--
SET ROLE regress_cb_monitor;
SELECT count(*) AS visible_jobs FROM chunkbatch.jobs;
SELECT job_name, state FROM chunkbatch.runs
 WHERE job_name LIKE 'regress_priv%' ORDER BY run_id;
SELECT job_name, state FROM chunkbatch.status_detail;
SELECT count(*) AS visible_workers FROM chunkbatch.progress() WHERE run_id = :slow_run;
SELECT expect_error(format('SELECT chunkbatch.cancel(%s)', :slow_run));
SELECT expect_error($$SELECT chunkbatch.run('regress_priv_whoami')$$);
RESET ROLE;

-- The member cancels the owner's slow run.
SET ROLE regress_cb_member;
SELECT chunkbatch.cancel(:slow_run) AS cancelled;
SELECT chunkbatch.wait(:slow_run, '30 s') AS state;
RESET ROLE;
SELECT state, rows_done = (SELECT v FROM cb_owned WHERE id = 1) AS checkpoint_matches_table
  FROM chunkbatch.runs WHERE run_id = :slow_run;

--
-- The owner must still be able to connect when a run is queued.
--
ALTER ROLE regress_cb_owner NOLOGIN;
SELECT expect_error($$SELECT chunkbatch.run('regress_priv_whoami', '{"tag": "nologin"}')$$);
ALTER ROLE regress_cb_owner LOGIN;
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
SELECT left(expect_error($$SELECT chunkbatch.run('regress_priv_whoami', '{"tag": "noconnect"}')$$), 5) AS sqlstate;
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO PUBLIC', current_database());
END
$$;
SELECT count(*) AS runs_not_queued FROM chunkbatch.runs WHERE params->>'tag' IN ('nologin', 'noconnect');

-- The owner drops its jobs.
SET ROLE regress_cb_owner;
SELECT chunkbatch.drop_job(job_name) FROM chunkbatch.jobs
 WHERE job_name LIKE 'regress_priv%' ORDER BY job_name;
SELECT count(*) AS owner_jobs FROM chunkbatch.jobs;
RESET ROLE;

SELECT wait_idle();
