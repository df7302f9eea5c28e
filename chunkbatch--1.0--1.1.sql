/* chunkbatch--1.0--1.1.sql: update from 1.0 to 1.1 (ALTER EXTENSION chunkbatch UPDATE) */

\echo Use "ALTER EXTENSION chunkbatch UPDATE TO '1.1'" to load this file. \quit

/*
 * Owners by name and OID.  1.0 kept them as regrole, which a restore into
 * a cluster without the role could not load at all.  The policies that
 * name the column go first and come back on the new column.
 */
DROP POLICY jobs_visible ON chunkbatch.jobs;
DROP POLICY runs_visible ON chunkbatch.runs;
DROP POLICY dead_letters_visible ON chunkbatch.dead_letters;

ALTER TABLE chunkbatch.jobs ADD COLUMN owner_oid oid;
UPDATE chunkbatch.jobs SET owner_oid = owner::oid;
ALTER TABLE chunkbatch.jobs ALTER COLUMN owner_oid SET NOT NULL;
ALTER TABLE chunkbatch.jobs ALTER COLUMN owner TYPE name USING owner::text;

ALTER TABLE chunkbatch.runs ADD COLUMN owner_oid oid;
ALTER TABLE chunkbatch.runs ADD COLUMN origin_db oid;
ALTER TABLE chunkbatch.runs ADD COLUMN origin_system bigint;
UPDATE chunkbatch.runs
   SET owner_oid = owner::oid,
       origin_db = (SELECT d.oid FROM pg_catalog.pg_database d
                     WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()),
       origin_system = (SELECT c.system_identifier FROM pg_catalog.pg_control_system() c);
ALTER TABLE chunkbatch.runs ALTER COLUMN owner_oid SET NOT NULL;
ALTER TABLE chunkbatch.runs ALTER COLUMN origin_db SET NOT NULL;
ALTER TABLE chunkbatch.runs ALTER COLUMN origin_system SET NOT NULL;
ALTER TABLE chunkbatch.runs ALTER COLUMN owner TYPE name USING owner::text;
ALTER TABLE chunkbatch.runs ALTER COLUMN queued_by TYPE name USING queued_by::text;

/*
 * The scheduler's queue scans: each owner's oldest runs, and whether an
 * older run of a group is not over yet; running runs.  They keep a
 * scheduler pass as cheap with a hundred thousand queued runs as with ten.
 */
DROP INDEX chunkbatch.runs_active_idx;
CREATE INDEX runs_owner_queue_idx ON chunkbatch.runs (owner_oid, run_id)
    WHERE state IN ('queued', 'waiting', 'running', 'throttled', 'interrupted');
CREATE INDEX runs_group_queue_idx ON chunkbatch.runs (lock_group, run_id)
    WHERE state IN ('queued', 'waiting', 'running', 'throttled', 'interrupted');
CREATE INDEX runs_executing_idx ON chunkbatch.runs (run_id)
    WHERE state IN ('running', 'throttled');

ALTER TABLE chunkbatch.dead_letters ADD COLUMN owner_oid oid;
UPDATE chunkbatch.dead_letters SET owner_oid = owner::oid;
ALTER TABLE chunkbatch.dead_letters ALTER COLUMN owner_oid SET NOT NULL;
ALTER TABLE chunkbatch.dead_letters ALTER COLUMN owner TYPE name USING owner::text;

CREATE POLICY jobs_visible ON chunkbatch.jobs FOR SELECT
    USING (pg_catalog.pg_has_role(owner_oid, 'USAGE'));
CREATE POLICY runs_visible ON chunkbatch.runs FOR SELECT
    USING (pg_catalog.pg_has_role(owner_oid, 'USAGE')
           OR pg_catalog.pg_has_role('pg_monitor', 'USAGE'));
CREATE POLICY dead_letters_visible ON chunkbatch.dead_letters FOR SELECT
    USING (pg_catalog.pg_has_role(owner_oid, 'USAGE'));

/*
 * Owners are kept by name (owner) and by OID (owner_oid, what privileges
 * are checked against).  A row restored from a dump of another cluster, or
 * after the role was dropped, carries an OID that names another role or
 * none: on insert it is resolved again by name, 0 when no role of that name
 * exists (the job then refuses to run until the role exists again).
 */
CREATE FUNCTION chunkbatch.resolve_owner()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                    WHERE r.oid = NEW.owner_oid AND r.rolname = NEW.owner) THEN
        NEW.owner_oid := COALESCE((SELECT r.oid FROM pg_catalog.pg_roles r
                                    WHERE r.rolname = NEW.owner), 0);
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION chunkbatch.resolve_owner() FROM PUBLIC;

CREATE TRIGGER jobs_resolve_owner BEFORE INSERT ON chunkbatch.jobs
    FOR EACH ROW EXECUTE FUNCTION chunkbatch.resolve_owner();
CREATE TRIGGER runs_resolve_owner BEFORE INSERT ON chunkbatch.runs
    FOR EACH ROW EXECUTE FUNCTION chunkbatch.resolve_owner();
CREATE TRIGGER dead_letters_resolve_owner BEFORE INSERT ON chunkbatch.dead_letters
    FOR EACH ROW EXECUTE FUNCTION chunkbatch.resolve_owner();

/*
 * Jobs depend on their owner role as PostgreSQL objects do: this trigger
 * keeps one pg_shdepend entry per distinct job owner (see DROP ROLE in the
 * reference).
 */
CREATE FUNCTION chunkbatch.jobs_changed()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'chunkbatch_jobs_changed';
REVOKE EXECUTE ON FUNCTION chunkbatch.jobs_changed() FROM PUBLIC;
CREATE TRIGGER jobs_owner_dependency AFTER INSERT OR UPDATE OF owner_oid OR DELETE
    ON chunkbatch.jobs FOR EACH STATEMENT EXECUTE FUNCTION chunkbatch.jobs_changed();
-- Record the owners of the jobs that 1.0 made.
UPDATE chunkbatch.jobs SET owner_oid = owner_oid WHERE false;

/*
 * Everything a database's users defined or ran is dumped with it.  Runs
 * restored elsewhere (or copied by CREATE DATABASE ... TEMPLATE) keep the
 * database and cluster they were queued in (origin_db, origin_system):
 * there they rest as paused until somebody resumes them.
 */
SELECT pg_catalog.pg_extension_config_dump('chunkbatch.jobs_job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('chunkbatch.runs', '');
SELECT pg_catalog.pg_extension_config_dump('chunkbatch.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('chunkbatch.dead_letters', '');

/*
 * The emergency stop of the whole cluster: running runs hold at their next
 * chunk boundary (state 'throttled'), no queued run starts, until
 * resume_all().  It survives restarts.  Only superusers may call these
 * unless EXECUTE is granted.
 */
CREATE FUNCTION chunkbatch.pause_all(reason text DEFAULT NULL)
RETURNS boolean
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_pause_all';

CREATE FUNCTION chunkbatch.resume_all()
RETURNS boolean
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_resume_all';

CREATE FUNCTION chunkbatch.pause_all_state(
    OUT paused boolean,
    OUT paused_at timestamptz,
    OUT paused_by text,
    OUT reason text)
RETURNS record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_pause_all_state';

/*
 * Every run state, with the sets chunkbatch reasons with: active (queued
 * or active: started or continued by chunkbatch itself), resting (until
 * somebody resumes it), final, resumable.
 */
CREATE FUNCTION chunkbatch.run_states(
    OUT state text,
    OUT active boolean,
    OUT resting boolean,
    OUT final boolean,
    OUT resumable boolean)
RETURNS SETOF record
LANGUAGE C STRICT IMMUTABLE
AS 'MODULE_PATHNAME', 'chunkbatch_run_states';

REVOKE ALL ON FUNCTION chunkbatch.pause_all(text), chunkbatch.resume_all(),
    chunkbatch.pause_all_state(), chunkbatch.run_states() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION chunkbatch.pause_all_state(), chunkbatch.run_states()
    TO PUBLIC;

/* The status view names the emergency stop as what holds a queued run. */
CREATE OR REPLACE VIEW chunkbatch.status WITH (security_invoker = true) AS
SELECT r.run_id,
       r.job_name,
       CASE WHEN p.phase = 'waiting' THEN 'waiting'
            WHEN p.phase IS NOT NULL AND r.state IN ('queued', 'waiting') THEN 'starting'
            ELSE r.state END AS state,
       r.lock_group,
       COALESCE(p.rows_done, r.rows_done) AS rows_done,
       COALESCE(p.chunks_done, r.chunks_done) AS chunks_done,
       COALESCE(p.batch_size, r.batch_size) AS batch_size,
       pg_catalog.round(p.recent_rows_per_sec::numeric, 0) AS rows_per_sec,
       r.total_estimate,
       e.percent,
       CASE WHEN e.percent IS NOT NULL
            THEN '[' OPERATOR(pg_catalog.||)
                 pg_catalog.rpad(pg_catalog.repeat('#', (e.percent OPERATOR(pg_catalog./) 5)::int),
                                 20, '.') OPERATOR(pg_catalog.||) ']'
       END AS progress,
       CASE WHEN p.recent_rows_per_sec OPERATOR(pg_catalog.>) 0
             AND r.total_estimate OPERATOR(pg_catalog.>) COALESCE(p.rows_done, r.rows_done)
             AND (r.total_estimate OPERATOR(pg_catalog.-) COALESCE(p.rows_done, r.rows_done))
                 OPERATOR(pg_catalog./) p.recent_rows_per_sec OPERATOR(pg_catalog.<) 1e9
            THEN pg_catalog.make_interval(secs => pg_catalog.round(
                 (r.total_estimate OPERATOR(pg_catalog.-) COALESCE(p.rows_done, r.rows_done))
                 OPERATOR(pg_catalog./) p.recent_rows_per_sec))
       END AS eta,
       CASE WHEN p.chunk_started_at IS NOT NULL
            THEN pg_catalog.round((extract(epoch FROM pg_catalog.clock_timestamp()
                 OPERATOR(pg_catalog.-) p.chunk_started_at) OPERATOR(pg_catalog.*) 1000)::numeric, 1)
       END AS current_chunk_ms,
       r.avg_chunk_ms,
       r.max_chunk_ms,
       COALESCE(r.throttle_reason,
                CASE WHEN ps.paused AND r.state IN ('queued', 'waiting', 'interrupted')
                     THEN 'all runs paused by chunkbatch.pause_all()' END) AS throttle_reason,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) r.throttled_since AS throttled_for,
       r.lock_waiters_seen,
       r.cursor,
       r.queued_at,
       r.started_at,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
           COALESCE(r.started_at, r.queued_at) AS elapsed,
       CASE WHEN w.holder_pid IS NOT NULL OR w.ahead_run IS NOT NULL
            THEN COALESCE(hr.run_id, w.ahead_run) END AS waiting_for_run,
       CASE WHEN hr.run_id IS NULL THEN w.holder_pid END AS waiting_for_pid,
       CASE WHEN r.started_at IS NULL AND r.waiting_since IS NOT NULL
            THEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) r.waiting_since
            ELSE pg_catalog.make_interval(secs => COALESCE(r.group_wait_ms, 0)
                                          OPERATOR(pg_catalog./) 1000)
       END AS group_wait,
       p.pid AS worker_pid,
       r.retries,
       r.trigger,
       r.params,
       CASE WHEN hr.run_id IS NULL THEN
            (SELECT a.usename FROM pg_catalog.pg_stat_activity a
              WHERE a.pid OPERATOR(pg_catalog.=) w.holder_pid) END AS waiting_for_role
  FROM chunkbatch.runs r
  CROSS JOIN chunkbatch.pause_all_state() ps
  LEFT JOIN chunkbatch.progress() p ON p.run_id OPERATOR(pg_catalog.=) r.run_id
  LEFT JOIN LATERAL (
       SELECT CASE WHEN r.total_estimate OPERATOR(pg_catalog.>) 0
                   THEN LEAST(100, pg_catalog.round(COALESCE(p.rows_done, r.rows_done)
                        OPERATOR(pg_catalog.*) 100.0
                        OPERATOR(pg_catalog./) r.total_estimate, 1))
              END AS percent) e ON true
  LEFT JOIN LATERAL (
       SELECT chunkbatch.group_holder_pid(r.lock_group) AS holder_pid,
              (SELECT a.run_id FROM chunkbatch.runs a
                WHERE a.lock_group OPERATOR(pg_catalog.=) r.lock_group
                  AND a.run_id OPERATOR(pg_catalog.<) r.run_id
                  AND a.state IN ('queued', 'waiting', 'running', 'throttled', 'interrupted')
                ORDER BY a.run_id LIMIT 1) AS ahead_run
        WHERE r.state IN ('queued', 'waiting') OR p.phase = 'waiting') w ON true
  LEFT JOIN chunkbatch.progress() hr ON hr.pid OPERATOR(pg_catalog.=) w.holder_pid
 WHERE r.state IN ('queued', 'waiting', 'running', 'throttled', 'paused', 'interrupted')
 ORDER BY r.run_id;

/* groups names the role of an outside holder of a group lock. */
CREATE OR REPLACE VIEW chunkbatch.groups WITH (security_invoker = true) AS
SELECT g.lock_group,
       hr.run_id AS holder_run_id,
       h.holder_pid,
       g.waiting_run_ids,
       g.longest_wait,
       (SELECT a.usename FROM pg_catalog.pg_stat_activity a
         WHERE a.pid OPERATOR(pg_catalog.=) h.holder_pid) AS holder_role
  FROM (SELECT r.lock_group,
               pg_catalog.array_agg(r.run_id ORDER BY r.run_id)
                   FILTER (WHERE r.state IN ('queued', 'waiting', 'interrupted'))
                   AS waiting_run_ids,
               pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
                   pg_catalog.min(COALESCE(r.waiting_since, r.queued_at))
                   FILTER (WHERE r.state IN ('queued', 'waiting', 'interrupted'))
                   AS longest_wait
          FROM chunkbatch.runs r
         WHERE r.state IN ('queued', 'waiting', 'running', 'throttled', 'interrupted')
         GROUP BY r.lock_group) g
  CROSS JOIN LATERAL (SELECT chunkbatch.group_holder_pid(g.lock_group) AS holder_pid) h
  LEFT JOIN chunkbatch.progress() hr ON hr.pid OPERATOR(pg_catalog.=) h.holder_pid
 ORDER BY g.lock_group;

/*
 * pg_cron schedules.  A waiting cron job now uses CALL run_and_wait(),
 * which commits between its looks at the run: it holds no snapshot while
 * the run executes.  Neither works on a standby.
 */
CREATE OR REPLACE FUNCTION chunkbatch.schedule(
    job_name    text,
    cron        text,
    params      jsonb DEFAULT '{}',
    wait        boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_job text;
BEGIN
    IF job_name IS NULL OR cron IS NULL OR params IS NULL OR wait IS NULL THEN
        RAISE EXCEPTION 'job_name, cron, params and wait must not be null'
            USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot schedule a job on a standby server'
            USING ERRCODE = '25006',
                  DETAIL = 'Runs are queued and executed only on the primary server.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                    WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"',
                        pg_catalog.current_database()
            USING ERRCODE = '55000',
                  HINT = 'Preload pg_cron (shared_preload_libraries = ''pg_cron,chunkbatch''), '
                         'set cron.database_name to this database and run CREATE EXTENSION pg_cron.';
    END IF;
    IF pg_catalog.jsonb_typeof(params) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION 'params must be a JSON object' USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM chunkbatch.jobs j
                    WHERE j.job_name OPERATOR(pg_catalog.=) schedule.job_name) THEN
        RAISE EXCEPTION 'job "%" does not exist', job_name USING ERRCODE = '42704';
    END IF;
    cron_job := 'chunkbatch:' OPERATOR(pg_catalog.||) job_name;
    /* A waiting cron job commits between its looks: it holds no snapshot. */
    RETURN cron.schedule(cron_job, cron,
        CASE WHEN wait
             THEN pg_catalog.format('CALL chunkbatch.run_and_wait(%L, %L::jsonb, trigger => %L)',
                                    job_name, params,
                                    'pg_cron ' OPERATOR(pg_catalog.||) cron_job)
             ELSE pg_catalog.format('SELECT chunkbatch.run(%L, %L::jsonb, trigger => %L)',
                                    job_name, params,
                                    'pg_cron ' OPERATOR(pg_catalog.||) cron_job)
        END);
END
$$;

CREATE OR REPLACE FUNCTION chunkbatch.unschedule(job_name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF job_name IS NULL THEN
        RAISE EXCEPTION 'job_name must not be null' USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'cannot unschedule a job on a standby server'
            USING ERRCODE = '25006',
                  DETAIL = 'Runs are queued and executed only on the primary server.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                    WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"',
                        pg_catalog.current_database()
            USING ERRCODE = '55000',
                  HINT = 'Schedules exist only where pg_cron is installed.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM cron.job c
                    WHERE c.jobname OPERATOR(pg_catalog.=)
                          ('chunkbatch:' OPERATOR(pg_catalog.||) job_name)) THEN
        RETURN false;
    END IF;
    RETURN cron.unschedule('chunkbatch:' OPERATOR(pg_catalog.||) job_name);
END
$$;

/*
 * Wake this database's scheduler when the update commits: runs that waited
 * for the update (the 1.1 library does not execute a 1.0 schema) go on.
 */
CREATE FUNCTION chunkbatch.wake_after_update()
RETURNS void
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_wake_after_update';
SELECT chunkbatch.wake_after_update();
DROP FUNCTION chunkbatch.wake_after_update();
