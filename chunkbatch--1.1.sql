/* chunkbatch--1.1.sql: catalog tables, views and the SQL interface (full install of 1.1) */

\echo Use "CREATE EXTENSION chunkbatch" to load this file. \quit

/*
 * The schema is created by CREATE EXTENSION.  Refuse to install into a
 * schema that somebody else created beforehand: its owner could replace
 * our objects later.
 */
DO $$
BEGIN
    IF (SELECT n.nspowner FROM pg_catalog.pg_namespace n
         WHERE n.nspname OPERATOR(pg_catalog.=) 'chunkbatch')
       OPERATOR(pg_catalog.<>)
       (SELECT r.oid FROM pg_catalog.pg_roles r
         WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN
        RAISE EXCEPTION 'schema "chunkbatch" already exists and is owned by another role'
            USING ERRCODE = '42P06',
                  HINT = 'Drop or rename that schema, then create the extension again.';
    END IF;
END
$$;

CREATE TABLE chunkbatch.jobs (
    job_id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_name            text NOT NULL UNIQUE,
    owner               name NOT NULL,
    chunk_sql           text NOT NULL,
    cursor_type         regtype,
    batch_size          integer NOT NULL CHECK (batch_size > 0),
    lock_group          text NOT NULL,
    sleep_ms            integer NOT NULL DEFAULT 0 CHECK (sleep_ms >= 0),
    synchronous_commit  boolean NOT NULL DEFAULT false,
    search_path         text NOT NULL,
    on_group_busy       text NOT NULL DEFAULT 'wait'
                        CHECK (on_group_busy IN ('wait', 'skip')),
    group_wait_timeout  interval,
    max_retries         integer NOT NULL DEFAULT 10 CHECK (max_retries >= 0),
    lock_timeout        interval,
    statement_timeout   interval,
    max_runtime         interval,
    on_error            text NOT NULL DEFAULT 'fail'
                        CHECK (on_error IN ('fail', 'isolate')),
    keys_sql            text,
    max_dead_letters    integer CHECK (max_dead_letters >= 0),
    target_chunk_ms     integer CHECK (target_chunk_ms > 0),
    min_batch_size      integer NOT NULL DEFAULT 1 CHECK (min_batch_size > 0),
    max_batch_size      integer NOT NULL DEFAULT 1000000 CHECK (max_batch_size > 0),
    sleep_ratio         double precision NOT NULL DEFAULT 0 CHECK (sleep_ratio >= 0),
    max_replica_lag     interval,
    max_replica_lag_bytes bigint CHECK (max_replica_lag_bytes > 0),
    throttle_sql        text,
    count_sql           text,
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    altered_at          timestamptz,
    owner_oid           oid NOT NULL,
    range_table         text,
    range_key           text,
    range_filter        text,
    priority            integer NOT NULL DEFAULT 0
                        CHECK (priority BETWEEN -1000 AND 1000),
    before_sql          text[],
    after_sql           text[],
    rebuild_indexes     boolean NOT NULL DEFAULT false,
    analyze_after       boolean NOT NULL DEFAULT false,
    vacuum_after        boolean NOT NULL DEFAULT false,
    parallel            integer NOT NULL DEFAULT 1
                        CHECK (parallel BETWEEN 1 AND 64),
    CHECK (range_table IS NOT NULL OR (range_key IS NULL AND range_filter IS NULL))
);

CREATE TABLE chunkbatch.runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          bigint NOT NULL,
    job_name        text NOT NULL,
    owner           name NOT NULL,
    lock_group      text NOT NULL,
    params          jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'waiting', 'running', 'paused',
                                     'succeeded', 'failed', 'cancelled',
                                     'skipped', 'interrupted', 'stopped',
                                     'throttled')),
    queued_by       name NOT NULL,
    trigger         text NOT NULL DEFAULT 'sql',
    queued_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    waiting_since   timestamptz,
    group_wait_ms   double precision,
    started_at      timestamptz,
    finished_at     timestamptz,
    cursor          text,
    rows_done       bigint NOT NULL DEFAULT 0,
    chunks_done     bigint NOT NULL DEFAULT 0,
    batch_size      integer NOT NULL,
    retries         integer NOT NULL DEFAULT 0,
    avg_chunk_ms    double precision,
    max_chunk_ms    double precision,
    last_chunk_at   timestamptz,
    worker_pid      integer,
    sqlstate        text,
    error           text,
    error_detail    text,
    error_chunk     bigint,
    reason          text,
    start_attempts  integer NOT NULL DEFAULT 0,
    dead_letters    bigint NOT NULL DEFAULT 0,
    lock_waiters_seen bigint NOT NULL DEFAULT 0,
    throttled_since timestamptz,
    throttle_reason text,
    throttled_ms    double precision NOT NULL DEFAULT 0,
    total_estimate  bigint,
    owner_oid       oid NOT NULL,
    origin_db       oid NOT NULL,
    origin_system   bigint NOT NULL,
    recent_chunk_ms real[],
    priority        integer NOT NULL DEFAULT 0,
    queued_with     bigint,
    steps           text[],
    steps_before    integer,
    steps_done      integer NOT NULL DEFAULT 0,
    statement_timeout interval,
    lock_timeout    interval,
    range_first     text,
    range_last      text,
    parallel        integer NOT NULL DEFAULT 1,
    cursor_kind     text
);

CREATE INDEX runs_job_idx ON chunkbatch.runs (job_id);
CREATE INDEX runs_finished_idx ON chunkbatch.runs (finished_at);
/*
 * The scheduler's queue scans: each owner's oldest runs, and whether an
 * older run of a group is not over yet; running runs.  They keep a
 * scheduler pass as cheap with a hundred thousand queued runs as with ten.
 */
CREATE INDEX runs_owner_queue_idx ON chunkbatch.runs (owner_oid, run_id)
    WHERE state IN ('queued', 'waiting', 'running', 'throttled', 'interrupted');
CREATE INDEX runs_group_queue_idx
    ON chunkbatch.runs (lock_group, (COALESCE(queued_with, run_id)), priority DESC, run_id)
    WHERE state IN ('queued', 'waiting', 'running', 'throttled', 'interrupted');
CREATE INDEX runs_executing_idx ON chunkbatch.runs (run_id)
    WHERE state IN ('running', 'throttled');

/* Keys that a run with on_error => 'isolate' could not process. */
CREATE TABLE chunkbatch.dead_letters (
    run_id      bigint NOT NULL REFERENCES chunkbatch.runs ON DELETE CASCADE,
    job_name    text NOT NULL,
    owner       name NOT NULL,
    key         text NOT NULL,
    sqlstate    text NOT NULL,
    error       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    owner_oid   oid NOT NULL
);
CREATE INDEX dead_letters_run_idx ON chunkbatch.dead_letters (run_id);

/*
 * Rows are written only by the functions below (as the extension owner);
 * users read the jobs and runs of roles whose privileges they have.
 * pg_monitor members see every run, but not other roles' job SQL.
 */
ALTER TABLE chunkbatch.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE chunkbatch.runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE chunkbatch.dead_letters ENABLE ROW LEVEL SECURITY;

CREATE POLICY jobs_visible ON chunkbatch.jobs FOR SELECT
    USING (pg_catalog.pg_has_role(owner_oid, 'USAGE'));
CREATE POLICY runs_visible ON chunkbatch.runs FOR SELECT
    USING (pg_catalog.pg_has_role(owner_oid, 'USAGE')
           OR pg_catalog.pg_has_role('pg_monitor', 'USAGE'));

CREATE POLICY dead_letters_visible ON chunkbatch.dead_letters FOR SELECT
    USING (pg_catalog.pg_has_role(owner_oid, 'USAGE'));

REVOKE ALL ON chunkbatch.jobs, chunkbatch.runs, chunkbatch.dead_letters FROM PUBLIC;
GRANT SELECT ON chunkbatch.jobs, chunkbatch.runs, chunkbatch.dead_letters TO PUBLIC;

/*
 * The slices of a run with parallel > 1 (see the reference, "Parallel
 * slices"): each a range of the key with its own checkpoint, written in
 * the transaction of each of its chunks.  The first slice begins at
 * range_first; every other begins after the range_last of the one before
 * it, which is its first cursor.  Rows are written only by chunkbatch's
 * workers; users see the slices of the runs they see.
 */
CREATE TABLE chunkbatch.slices (
    run_id          bigint NOT NULL REFERENCES chunkbatch.runs ON DELETE CASCADE,
    slice_no        integer NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'done', 'failed')),
    range_first     text,
    range_last      text,
    cursor          text,
    rows_done       bigint NOT NULL DEFAULT 0,
    chunks_done     bigint NOT NULL DEFAULT 0,
    batch_size      integer,
    avg_chunk_ms    double precision,
    max_chunk_ms    double precision,
    retries         integer NOT NULL DEFAULT 0,
    dead_letters    bigint NOT NULL DEFAULT 0,
    lock_waiters_seen bigint NOT NULL DEFAULT 0,
    worker_pid      integer,
    workers         integer NOT NULL DEFAULT 0,
    started_at      timestamptz,
    last_chunk_at   timestamptz,
    finished_at     timestamptz,
    sqlstate        text,
    error           text,
    PRIMARY KEY (run_id, slice_no)
);
ALTER TABLE chunkbatch.slices ENABLE ROW LEVEL SECURITY;
CREATE POLICY slices_visible ON chunkbatch.slices FOR SELECT
    USING (EXISTS (SELECT 1 FROM chunkbatch.runs r
                    WHERE r.run_id OPERATOR(pg_catalog.=) slices.run_id));
REVOKE ALL ON chunkbatch.slices FROM PUBLIC;
GRANT SELECT ON chunkbatch.slices TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('chunkbatch.jobs', '');

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
    ON chunkbatch.jobs FOR EACH ROW EXECUTE FUNCTION chunkbatch.jobs_changed();

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
/* Dumped with the runs: a restored run resumes each slice from its checkpoint. */
SELECT pg_catalog.pg_extension_config_dump('chunkbatch.slices', '');

/* SQL interface, implemented in C (src/api.c) */

CREATE FUNCTION chunkbatch.create_job(
    job_name            text,
    chunk_sql           text,
    batch_size          integer DEFAULT 1000,
    lock_group          text DEFAULT NULL,
    cursor_type         regtype DEFAULT NULL,
    sleep_ms            integer DEFAULT 0,
    synchronous_commit  boolean DEFAULT false,
    validate            boolean DEFAULT true,
    on_group_busy       text DEFAULT 'wait',
    group_wait_timeout  interval DEFAULT NULL,
    max_retries         integer DEFAULT 10,
    lock_timeout        interval DEFAULT NULL,
    statement_timeout   interval DEFAULT NULL,
    max_runtime         interval DEFAULT NULL,
    on_error            text DEFAULT 'fail',
    keys_sql            text DEFAULT NULL,
    max_dead_letters    integer DEFAULT NULL,
    target_chunk_ms     integer DEFAULT NULL,
    min_batch_size      integer DEFAULT 1,
    max_batch_size      integer DEFAULT 1000000,
    sleep_ratio         double precision DEFAULT 0,
    max_replica_lag     interval DEFAULT NULL,
    max_replica_lag_bytes bigint DEFAULT NULL,
    throttle_sql        text DEFAULT NULL,
    count_sql           text DEFAULT NULL,
    range_table         text DEFAULT NULL,
    range_key           text DEFAULT NULL,
    range_filter        text DEFAULT NULL,
    priority            integer DEFAULT 0,
    before_sql          text[] DEFAULT NULL,
    after_sql           text[] DEFAULT NULL,
    rebuild_indexes     boolean DEFAULT false,
    analyze_after       boolean DEFAULT false,
    vacuum_after        boolean DEFAULT false,
    parallel            integer DEFAULT 1)
RETURNS bigint
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_create_job';

CREATE FUNCTION chunkbatch.alter_job(
    job_name            text,
    chunk_sql           text DEFAULT NULL,
    batch_size          integer DEFAULT NULL,
    lock_group          text DEFAULT NULL,
    cursor_type         regtype DEFAULT NULL,
    sleep_ms            integer DEFAULT NULL,
    synchronous_commit  boolean DEFAULT NULL,
    validate            boolean DEFAULT true,
    on_group_busy       text DEFAULT NULL,
    group_wait_timeout  interval DEFAULT NULL,
    max_retries         integer DEFAULT NULL,
    lock_timeout        interval DEFAULT NULL,
    statement_timeout   interval DEFAULT NULL,
    max_runtime         interval DEFAULT NULL,
    on_error            text DEFAULT NULL,
    keys_sql            text DEFAULT NULL,
    max_dead_letters    integer DEFAULT NULL,
    target_chunk_ms     integer DEFAULT NULL,
    min_batch_size      integer DEFAULT NULL,
    max_batch_size      integer DEFAULT NULL,
    sleep_ratio         double precision DEFAULT NULL,
    max_replica_lag     interval DEFAULT NULL,
    max_replica_lag_bytes bigint DEFAULT NULL,
    throttle_sql        text DEFAULT NULL,
    count_sql           text DEFAULT NULL,
    range_table         text DEFAULT NULL,
    range_key           text DEFAULT NULL,
    range_filter        text DEFAULT NULL,
    priority            integer DEFAULT NULL,
    before_sql          text[] DEFAULT NULL,
    after_sql           text[] DEFAULT NULL,
    rebuild_indexes     boolean DEFAULT NULL,
    analyze_after       boolean DEFAULT NULL,
    vacuum_after        boolean DEFAULT NULL,
    parallel            integer DEFAULT NULL,
    reset               text[] DEFAULT NULL)
RETURNS void
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_alter_job';

CREATE FUNCTION chunkbatch.drop_job(job_name text)
RETURNS void
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_drop_job';

CREATE FUNCTION chunkbatch.run(
    job_name    text,
    params      jsonb DEFAULT '{}',
    wait        boolean DEFAULT false,
    trigger     text DEFAULT NULL,
    parallel    integer DEFAULT NULL)
RETURNS bigint
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_run';

/*
 * Queue a run and wait for it, committing between looks at it: the caller
 * holds no snapshot while the run executes (unlike run(..., wait => true)).
 */
CREATE PROCEDURE chunkbatch.run_and_wait(
    job_name    text,
    params      jsonb DEFAULT '{}',
    trigger     text DEFAULT NULL,
    parallel    integer DEFAULT NULL,
    INOUT run_id bigint DEFAULT NULL)
LANGUAGE C
AS 'MODULE_PATHNAME', 'chunkbatch_run_and_wait';

CREATE FUNCTION chunkbatch.wait(run_id bigint, timeout interval DEFAULT NULL)
RETURNS text
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_wait';

CREATE FUNCTION chunkbatch.cancel(run_id bigint)
RETURNS boolean
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_cancel';

CREATE FUNCTION chunkbatch.pause(run_id bigint)
RETURNS boolean
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_pause';

CREATE FUNCTION chunkbatch.resume(run_id bigint)
RETURNS boolean
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_resume';

CREATE FUNCTION chunkbatch.group_lock_key(lock_group text)
RETURNS bigint
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'chunkbatch_group_lock_key';

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

/* Live state of the run workers of this database, from shared memory. */
CREATE FUNCTION chunkbatch.progress(
    OUT run_id bigint,
    OUT pid integer,
    OUT phase text,
    OUT worker_started_at timestamptz,
    OUT rows_done bigint,
    OUT chunks_done bigint,
    OUT rows_this_worker bigint,
    OUT batch_size integer,
    OUT chunk_started_at timestamptz,
    OUT recent_rows_per_sec double precision,
    OUT throttled_since timestamptz)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_progress';

/*
 * The backend that holds a group's advisory lock in this database, if any:
 * a run worker, or an outside session that joined the group with
 * pg_advisory_lock(chunkbatch.group_lock_key(...)).
 */
CREATE FUNCTION chunkbatch.group_holder_pid(lock_group text)
RETURNS integer
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.pid
      FROM pg_catalog.pg_locks l
     WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory'
       AND l.granted
       AND l.objsubid OPERATOR(pg_catalog.=) 1
       AND l.database OPERATOR(pg_catalog.=)
           (SELECT d.oid FROM pg_catalog.pg_database d
             WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
       AND l.classid OPERATOR(pg_catalog.=)
           ((chunkbatch.group_lock_key($1) OPERATOR(pg_catalog.>>) 32)
            OPERATOR(pg_catalog.&) 4294967295)::oid
       AND l.objid OPERATOR(pg_catalog.=)
           (chunkbatch.group_lock_key($1) OPERATOR(pg_catalog.&) 4294967295)::oid
     LIMIT 1
$$;

/*
 * Queued, active and paused runs with live progress, everything known
 * about them (chunkbatch.status below is the short form).
 * security_invoker: the caller sees only the runs the runs table shows it.
 * A waiting run names what it waits for: the run holding its group (or
 * the run ahead of it in the group's queue), or the pid of an outside
 * session holding the group's lock.
 */
CREATE VIEW chunkbatch.status_detail WITH (security_invoker = true) AS
SELECT r.run_id,
       r.job_name,
       CASE WHEN p.phase = 'waiting' THEN 'waiting'
            WHEN p.phase IS NOT NULL AND r.state IN ('queued', 'waiting') THEN 'starting'
            ELSE r.state END AS state,
       r.lock_group,
       COALESCE(sl.rows_done, p.rows_done, r.rows_done) AS rows_done,
       COALESCE(sl.chunks_done, p.chunks_done, r.chunks_done) AS chunks_done,
       COALESCE(p.batch_size, r.batch_size) AS batch_size,
       pg_catalog.round(COALESCE(sl.rate, p.recent_rows_per_sec)::numeric, 0) AS rows_per_sec,
       r.total_estimate,
       e.percent,
       CASE WHEN e.percent IS NOT NULL
            THEN '[' OPERATOR(pg_catalog.||)
                 pg_catalog.rpad(pg_catalog.repeat('#', (e.percent OPERATOR(pg_catalog./) 5)::int),
                                 20, '.') OPERATOR(pg_catalog.||) ']'
       END AS progress,
       CASE WHEN COALESCE(sl.rate, p.recent_rows_per_sec) OPERATOR(pg_catalog.>) 0
             AND r.total_estimate OPERATOR(pg_catalog.>) COALESCE(sl.rows_done, p.rows_done, r.rows_done)
             AND (r.total_estimate OPERATOR(pg_catalog.-) COALESCE(sl.rows_done, p.rows_done, r.rows_done))
                 OPERATOR(pg_catalog./) COALESCE(sl.rate, p.recent_rows_per_sec) OPERATOR(pg_catalog.<) 1e9
            THEN pg_catalog.make_interval(secs => pg_catalog.round(
                 (r.total_estimate OPERATOR(pg_catalog.-) COALESCE(sl.rows_done, p.rows_done, r.rows_done))
                 OPERATOR(pg_catalog./) COALESCE(sl.rate, p.recent_rows_per_sec)))
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
       CASE WHEN r.state OPERATOR(pg_catalog.=) 'paused'
            THEN COALESCE(r.last_chunk_at, r.started_at, r.queued_at)
            ELSE pg_catalog.clock_timestamp() END
           OPERATOR(pg_catalog.-) COALESCE(r.started_at, r.queued_at) AS elapsed,
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
              WHERE a.pid OPERATOR(pg_catalog.=) w.holder_pid) END AS waiting_for_role,
       r.recent_chunk_ms[pg_catalog.cardinality(r.recent_chunk_ms)] AS last_chunk_ms,
       r.recent_chunk_ms,
       r.statement_timeout,
       r.lock_timeout,
       sl.slices,
       sl.workers
  FROM chunkbatch.runs r
  CROSS JOIN chunkbatch.pause_all_state() ps
  LEFT JOIN chunkbatch.progress() p ON p.run_id OPERATOR(pg_catalog.=) r.run_id
       AND (r.parallel OPERATOR(pg_catalog.=) 1 OR p.pid IS NOT DISTINCT FROM r.worker_pid)
  LEFT JOIN LATERAL (
       SELECT pg_catalog.sum(s.rows_done)::bigint AS rows_done,
              pg_catalog.sum(s.chunks_done)::bigint AS chunks_done,
              pg_catalog.count(*)::integer AS slices,
              (SELECT pg_catalog.count(*)::integer FROM chunkbatch.progress() x
                WHERE x.run_id OPERATOR(pg_catalog.=) r.run_id) AS workers,
              (SELECT pg_catalog.sum(x.recent_rows_per_sec) FROM chunkbatch.progress() x
                WHERE x.run_id OPERATOR(pg_catalog.=) r.run_id) AS rate
         FROM chunkbatch.slices s
        WHERE s.run_id OPERATOR(pg_catalog.=) r.run_id
       HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0) sl ON true
  LEFT JOIN LATERAL (
       SELECT CASE WHEN r.total_estimate OPERATOR(pg_catalog.>) 0
                   THEN LEAST(100, pg_catalog.round(COALESCE(sl.rows_done, p.rows_done, r.rows_done)
                        OPERATOR(pg_catalog.*) 100.0
                        OPERATOR(pg_catalog./) r.total_estimate, 1))
              END AS percent) e ON true
  LEFT JOIN LATERAL (
       SELECT chunkbatch.group_holder_pid(r.lock_group) AS holder_pid,
              (SELECT a.run_id FROM chunkbatch.runs a
                WHERE a.lock_group OPERATOR(pg_catalog.=) r.lock_group
                  AND a.state IN ('queued', 'waiting', 'running', 'throttled', 'interrupted')
                  AND (COALESCE(a.queued_with, a.run_id), OPERATOR(pg_catalog.-) a.priority, a.run_id)
                      OPERATOR(pg_catalog.<)
                      (COALESCE(r.queued_with, r.run_id), OPERATOR(pg_catalog.-) r.priority, r.run_id)
                ORDER BY COALESCE(a.queued_with, a.run_id), a.priority DESC, a.run_id
                LIMIT 1) AS ahead_run
        WHERE r.state IN ('queued', 'waiting') OR p.phase = 'waiting') w ON true
  LEFT JOIN chunkbatch.progress() hr ON hr.pid OPERATOR(pg_catalog.=) w.holder_pid
 WHERE r.state IN ('queued', 'waiting', 'running', 'throttled', 'paused', 'interrupted')
 ORDER BY r.run_id;

/*
 * The last chunk durations as a sparkline (one block per chunk, scaled to
 * the longest), for the status view.
 */
CREATE FUNCTION chunkbatch.sparkline(ms real[])
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.string_agg(pg_catalog.substr('▁▂▃▄▅▆▇█',
               1 OPERATOR(pg_catalog.+) LEAST(7, pg_catalog.floor(
                   COALESCE(u.v OPERATOR(pg_catalog./) NULLIF(m.top, 0), 0)
                   OPERATOR(pg_catalog.*) 8)::int), 1), '' ORDER BY u.i)
      FROM pg_catalog.unnest(ms) WITH ORDINALITY AS u(v, i),
           (SELECT pg_catalog.max(x) AS top FROM pg_catalog.unnest(ms) AS x) m
$$;

/*
 * What a DBA watches with \watch 1: one short line per queued, active or
 * paused run (at most about 120 characters for a typical run).  Everything
 * else is in status_detail.
 */
CREATE VIEW chunkbatch.status WITH (security_invoker = true) AS
SELECT d.run_id,
       pg_catalog.left(d.job_name, 24) AS job,
       d.state OPERATOR(pg_catalog.||)
           CASE WHEN d.workers OPERATOR(pg_catalog.>) 1
                THEN ' x' OPERATOR(pg_catalog.||) d.workers ELSE '' END AS state,
       CASE WHEN d.percent IS NOT NULL
            THEN pg_catalog.repeat('█', (d.percent OPERATOR(pg_catalog./) 10)::int)
                 OPERATOR(pg_catalog.||)
                 pg_catalog.repeat('░', 10 OPERATOR(pg_catalog.-) (d.percent OPERATOR(pg_catalog./) 10)::int)
                 OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.round(d.percent)::text, 4)
                 OPERATOR(pg_catalog.||) '%'
            ELSE d.rows_done::text OPERATOR(pg_catalog.||) ' rows'
       END AS progress,
       d.rows_per_sec::bigint AS rows_s,
       d.batch_size AS batch,
       pg_catalog.round(d.last_chunk_ms)::bigint::text OPERATOR(pg_catalog.||) ' '
           OPERATOR(pg_catalog.||) chunkbatch.sparkline(d.recent_chunk_ms) AS chunk_ms,
       pg_catalog.date_trunc('second', d.elapsed) AS elapsed,
       pg_catalog.date_trunc('second', d.eta) AS eta,
       pg_catalog.left(
           CASE WHEN d.waiting_for_run IS NOT NULL
                THEN 'run ' OPERATOR(pg_catalog.||) d.waiting_for_run
                WHEN d.waiting_for_pid IS NOT NULL
                THEN 'pid ' OPERATOR(pg_catalog.||) d.waiting_for_pid
                     OPERATOR(pg_catalog.||) COALESCE(' ' OPERATOR(pg_catalog.||) d.waiting_for_role, '')
                ELSE d.throttle_reason
           END, 30) AS waiting_on
  FROM chunkbatch.status_detail d
 ORDER BY d.run_id;

/*
 * The slices of runs with parallel > 1, with the live state of the
 * workers that process them.
 */
CREATE VIEW chunkbatch.slice_status WITH (security_invoker = true) AS
SELECT s.run_id,
       s.slice_no,
       s.state,
       s.range_first,
       s.range_last,
       s.cursor,
       s.rows_done,
       s.chunks_done,
       COALESCE(p.batch_size, s.batch_size) AS batch_size,
       pg_catalog.round(p.recent_rows_per_sec::numeric, 0) AS rows_per_sec,
       CASE WHEN p.chunk_started_at IS NOT NULL
            THEN pg_catalog.round((extract(epoch FROM pg_catalog.clock_timestamp()
                 OPERATOR(pg_catalog.-) p.chunk_started_at) OPERATOR(pg_catalog.*) 1000)::numeric, 1)
       END AS current_chunk_ms,
       s.avg_chunk_ms,
       s.max_chunk_ms,
       s.retries,
       p.pid AS worker_pid,
       s.workers,
       s.started_at,
       s.finished_at,
       s.sqlstate,
       s.error
  FROM chunkbatch.slices s
  LEFT JOIN chunkbatch.progress() p ON p.pid OPERATOR(pg_catalog.=) s.worker_pid
       AND p.run_id OPERATOR(pg_catalog.=) s.run_id
       AND s.state OPERATOR(pg_catalog.=) 'running'
 ORDER BY s.run_id, s.slice_no;
GRANT SELECT ON chunkbatch.slice_status TO PUBLIC;

/* Per group: who holds it, and which runs wait for it, in order. */
CREATE VIEW chunkbatch.groups WITH (security_invoker = true) AS
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
 * Per job, from the runs kept in chunkbatch.runs (chunkbatch.history_retention
 * bounds them): how many runs and how they ended, the last one, the last
 * success and failure, rows, durations and rate.  The jobs are those the
 * caller sees in chunkbatch.jobs or through their runs (pg_monitor members
 * see every run, and so every job that has runs).
 */
CREATE VIEW chunkbatch.job_stats WITH (security_invoker = true) AS
SELECT j.job_name,
       j.owner,
       s.runs,
       s.succeeded,
       s.failed,
       s.cancelled,
       s.active,
       l.state AS last_state,
       l.finished_at AS last_finished_at,
       s.last_success_at,
       f.finished_at AS last_failure_at,
       f.sqlstate AS last_failure_sqlstate,
       s.total_rows,
       s.median_duration,
       s.max_duration,
       pg_catalog.round((s.finished_rows OPERATOR(pg_catalog./)
           NULLIF(s.finished_secs, 0))::numeric, 1) AS mean_rows_per_sec
  FROM (SELECT job_id, job_name, owner FROM chunkbatch.jobs
         UNION
        SELECT job_id, job_name, owner FROM chunkbatch.runs) j
  CROSS JOIN LATERAL (
       SELECT pg_catalog.count(*) AS runs,
              pg_catalog.count(*) FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'succeeded') AS succeeded,
              pg_catalog.count(*) FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'failed') AS failed,
              pg_catalog.count(*) FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'cancelled') AS cancelled,
              pg_catalog.count(*) FILTER (WHERE r.state IN ('queued', 'waiting', 'running',
                                                           'throttled', 'interrupted')) AS active,
              pg_catalog.max(r.finished_at)
                  FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'succeeded') AS last_success_at,
              COALESCE(pg_catalog.sum(r.rows_done), 0)::bigint AS total_rows,
              pg_catalog.percentile_cont(0.5) WITHIN GROUP
                  (ORDER BY r.finished_at OPERATOR(pg_catalog.-) r.started_at)
                  FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'succeeded') AS median_duration,
              pg_catalog.max(r.finished_at OPERATOR(pg_catalog.-) r.started_at)
                  FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'succeeded') AS max_duration,
              pg_catalog.sum(r.rows_done)
                  FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'succeeded')::float8 AS finished_rows,
              pg_catalog.sum(extract(epoch FROM r.finished_at OPERATOR(pg_catalog.-) r.started_at))
                  FILTER (WHERE r.state OPERATOR(pg_catalog.=) 'succeeded')::float8 AS finished_secs
         FROM chunkbatch.runs r
        WHERE r.job_id OPERATOR(pg_catalog.=) j.job_id) s
  LEFT JOIN LATERAL (
       SELECT r.state, r.finished_at FROM chunkbatch.runs r
        WHERE r.job_id OPERATOR(pg_catalog.=) j.job_id
        ORDER BY r.run_id DESC LIMIT 1) l ON true
  LEFT JOIN LATERAL (
       SELECT r.finished_at, r.sqlstate FROM chunkbatch.runs r
        WHERE r.job_id OPERATOR(pg_catalog.=) j.job_id
          AND r.state OPERATOR(pg_catalog.=) 'failed'
        ORDER BY r.run_id DESC LIMIT 1) f ON true
 ORDER BY j.job_name;
GRANT SELECT ON chunkbatch.job_stats TO PUBLIC;


/*
 * The name of job job_id, for the commands of pg_cron schedules: they refer
 * to their job by id, so that a schedule that outlived its job never starts
 * a later job of the same name.
 */
CREATE FUNCTION chunkbatch.job_name_of(job_id bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text;
BEGIN
    SELECT j.job_name INTO name FROM chunkbatch.jobs j
     WHERE j.job_id OPERATOR(pg_catalog.=) job_name_of.job_id;
    IF name IS NULL THEN
        RAISE EXCEPTION 'job % does not exist', job_id
            USING ERRCODE = '42704',
                  HINT = 'A schedule that refers to it outlived it: remove it with cron.unschedule().';
    END IF;
    RETURN name;
END
$$;

/*
 * pg_cron schedules.  The cron job only queues a run (returning at once,
 * never holding a pg_cron slot for hours) unless wait => true, which makes
 * the cron job's own outcome the run's outcome in cron.job_run_details.
 */
CREATE FUNCTION chunkbatch.schedule(
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
    id bigint;
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
    SELECT j.job_id INTO id FROM chunkbatch.jobs j
     WHERE j.job_name OPERATOR(pg_catalog.=) schedule.job_name;
    IF id IS NULL THEN
        RAISE EXCEPTION 'job "%" does not exist', job_name USING ERRCODE = '42704';
    END IF;
    cron_job := 'chunkbatch:' OPERATOR(pg_catalog.||) job_name;
    /*
     * The command names the job by id: it never starts another job that
     * takes the name later.  A waiting cron job commits between its looks:
     * it holds no snapshot.
     */
    RETURN cron.schedule(cron_job, cron,
        CASE WHEN wait
             THEN pg_catalog.format('CALL chunkbatch.run_and_wait(chunkbatch.job_name_of(%s), %L::jsonb, trigger => %L)',
                                    id, params,
                                    'pg_cron ' OPERATOR(pg_catalog.||) cron_job)
             ELSE pg_catalog.format('SELECT chunkbatch.run(chunkbatch.job_name_of(%s), %L::jsonb, trigger => %L)',
                                    id, params,
                                    'pg_cron ' OPERATOR(pg_catalog.||) cron_job)
        END);
END
$$;

CREATE FUNCTION chunkbatch.unschedule(job_name text)
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
 * The run that the calling chunk SQL belongs to (all NULL outside a run
 * worker): for statements that record which run wrote a row, or that act
 * on the schedule's tick rather than on now().
 */
CREATE FUNCTION chunkbatch.run_context(
    OUT run_id bigint,
    OUT job_name text,
    OUT queued_at timestamptz,
    OUT trigger text,
    OUT chunk bigint)
RETURNS record
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'chunkbatch_run_context';

/*
 * What a run of a job would do, without doing it: the estimated rows and
 * chunks (count_sql), the first chunk's plan with real parameters at its
 * first size and at the largest adaptive sizing may reach, and warnings
 * (plan changing shape between the sizes, sequential scans of large
 * tables, no statement_timeout, triggers and cascading foreign keys that
 * the chunk fires, the relations it locks and how).  With execute => true,
 * one real chunk is executed and rolled back, for its rows and time.
 * dry_run (C) checks that the caller has the owner's privileges and calls
 * dry_run_steps as the owner, where the job's code cannot take back the
 * caller's identity (SET ROLE is refused), in a subtransaction that it
 * always rolls back; dry_run_steps sets the job's search_path, as a run
 * worker does, and runs as whoever calls it.
 */
CREATE FUNCTION chunkbatch.dry_run_steps(
    job_name text,
    params jsonb DEFAULT '{}',
    execute boolean DEFAULT false)
RETURNS TABLE (item text, detail text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j           record;
    stmt        text := 'chunkbatch_dry_run_' OPERATOR(pg_catalog.||) pg_catalog.pg_backend_pid();
    sizes       integer[];
    sz          integer;
    plan        jsonb;
    shape       text;
    first_shape text;
    total       bigint;
    n           bigint;
    r           record;
    args        text;
    first_args  text;
    lo          text;
    hi          text;
    span_first  text;
    span_last   text;
    bounds      text[];
    planner     text[] := ARRAY[pg_catalog.current_setting('enable_seqscan'),
                                pg_catalog.current_setting('enable_sort'),
                                pg_catalog.current_setting('enable_bitmapscan')];
BEGIN
    IF job_name IS NULL OR params IS NULL OR execute IS NULL THEN
        RAISE EXCEPTION 'job_name, params and execute must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT jb.* INTO j FROM chunkbatch.jobs jb
     WHERE jb.job_name OPERATOR(pg_catalog.=) dry_run_steps.job_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job "%" does not exist', job_name USING ERRCODE = '42704';
    END IF;
    IF NOT pg_catalog.pg_has_role(j.owner_oid, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied for job "%"', job_name USING ERRCODE = '42501',
            DETAIL = 'Only roles with the privileges of the job''s owner can use it.';
    END IF;
    sizes := ARRAY[j.batch_size];
    IF j.target_chunk_ms IS NOT NULL AND j.max_batch_size OPERATOR(pg_catalog.>) j.batch_size THEN
        sizes := sizes OPERATOR(pg_catalog.||) j.max_batch_size;
    END IF;

    /* With the job's search_path, as a run worker would. */
    PERFORM pg_catalog.set_config('search_path', j.search_path, true);
    BEGIN
        EXECUTE pg_catalog.format('PREPARE %I (%s, %s, jsonb) AS %s', stmt,
                                  CASE WHEN j.range_table IS NULL THEN 'integer'
                                       ELSE j.cursor_type::text END,
                                  COALESCE(j.cursor_type::text, 'text'), j.chunk_sql);
        IF j.range_table IS NOT NULL THEN
            /* The key search, planned as the worker plans it. */
            IF j.range_filter IS NOT NULL THEN
                /* The span of keys the filter matches, found as a worker finds it. */
                EXECUTE pg_catalog.format(E'PREPARE %I (integer, %s, jsonb) AS WITH m AS MATERIALIZED (SELECT %I AS k FROM %s WHERE (\n%s\n)) SELECT (SELECT k::text AS t FROM m WHERE k IS NOT NULL ORDER BY k LIMIT 1), (SELECT k::text AS t FROM m WHERE k IS NOT NULL ORDER BY k DESC LIMIT 1)',
                                          stmt OPERATOR(pg_catalog.||) '_span', j.cursor_type,
                                          j.range_key, j.range_table, j.range_filter);
                EXECUTE pg_catalog.format('EXECUTE %I(%s, NULL, %L)', stmt OPERATOR(pg_catalog.||) '_span',
                                          j.batch_size, params) INTO span_first, span_last;
                EXECUTE pg_catalog.format('DEALLOCATE %I', stmt OPERATOR(pg_catalog.||) '_span');
                item := 'key span';
                detail := CASE WHEN span_first IS NULL
                               THEN 'none: range_filter matches no row, a run would end at its first chunk'
                               ELSE pg_catalog.format('keys %s to %s: the keys range_filter matches; the chunks cover only these',
                                                      span_first, span_last) END;
                RETURN NEXT;
            END IF;
            /* The first and last key in key order (uuid, for one, has no min or max). */
            EXECUTE pg_catalog.format('PREPARE %I (integer, %s, jsonb, %s) AS SELECT (a[1])::text, (a[pg_catalog.array_length(a, 1)])::text FROM (SELECT pg_catalog.array_agg(k) AS a FROM (SELECT %I AS k FROM %s WHERE %I IS NOT NULL AND ($2 IS NULL OR %I OPERATOR(pg_catalog.>=) $2) AND ($4 IS NULL OR %I OPERATOR(pg_catalog.<=) $4) ORDER BY %I LIMIT $1) s) t',
                                      stmt OPERATOR(pg_catalog.||) '_keys', j.cursor_type, j.cursor_type,
                                      j.range_key, j.range_table, j.range_key, j.range_key,
                                      j.range_key, j.range_key);
            PERFORM pg_catalog.set_config('enable_seqscan', 'off', true),
                    pg_catalog.set_config('enable_sort', 'off', true),
                    pg_catalog.set_config('enable_bitmapscan', 'off', true);
            EXECUTE pg_catalog.format('EXPLAIN (FORMAT JSON) EXECUTE %I(%s, %L, %L, %L)',
                                      stmt OPERATOR(pg_catalog.||) '_keys', j.batch_size, span_first,
                                      params, span_last) INTO plan;
            PERFORM pg_catalog.set_config('enable_seqscan', planner[1], true),
                    pg_catalog.set_config('enable_sort', planner[2], true),
                    pg_catalog.set_config('enable_bitmapscan', planner[3], true);
            item := 'key search';
            detail := (SELECT pg_catalog.string_agg(v #>> '{}', ' > ')
                         FROM jsonb_path_query(plan,
                                'strict $.** ? (@.type() == "object" && exists(@."Node Type"))."Node Type"') v)
                      OPERATOR(pg_catalog.||) pg_catalog.format(' on %s.%I', j.range_table, j.range_key);
            RETURN NEXT;
            IF j.parallel OPERATOR(pg_catalog.>) 1 THEN
                /* The slices, split at quantiles of the matching keys as a worker splits. */
                EXECUTE pg_catalog.format(E'PREPARE %I (integer, %s, jsonb) AS SELECT (pg_catalog.percentile_disc(ARRAY(SELECT g::float8 OPERATOR(pg_catalog./) %s FROM pg_catalog.generate_series(1, %s) g)) WITHIN GROUP (ORDER BY k))::text[], pg_catalog.count(*) FROM (SELECT %I AS k FROM %s WHERE %I IS NOT NULL AND (\n%s\n) OFFSET 0) s',
                                          stmt OPERATOR(pg_catalog.||) '_slices', j.cursor_type,
                                          j.parallel, j.parallel OPERATOR(pg_catalog.-) 1,
                                          j.range_key, j.range_table, j.range_key,
                                          COALESCE(j.range_filter, 'true'));
                EXECUTE pg_catalog.format('EXECUTE %I(%s, NULL, %L)', stmt OPERATOR(pg_catalog.||) '_slices',
                                          j.batch_size, params) INTO bounds, n;
                EXECUTE pg_catalog.format('DEALLOCATE %I', stmt OPERATOR(pg_catalog.||) '_slices');
                n := CASE WHEN n OPERATOR(pg_catalog.>) 1
                          THEN 1 OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(DISTINCT b)
                                                           FROM pg_catalog.unnest(bounds) b)
                          ELSE 0 END;
                item := 'slices';
                detail := CASE WHEN n OPERATOR(pg_catalog.<) 2
                               THEN pg_catalog.format('none: too few keys to split (parallel => %s)', j.parallel)
                               ELSE pg_catalog.format('%s slices of about as many matching rows each (parallel => %s), split after the keys %s; each gets a worker as slots allow, and a worker without a slice takes over half the rest of the biggest',
                                                      n, j.parallel,
                                                      pg_catalog.array_to_string(ARRAY(SELECT u.b FROM pg_catalog.unnest(bounds) WITH ORDINALITY u(b, i) GROUP BY u.b ORDER BY pg_catalog.min(u.i)), ', '))
                          END;
                RETURN NEXT;
            END IF;
        END IF;

        IF j.count_sql IS NOT NULL THEN
            EXECUTE pg_catalog.format('PREPARE %I (integer, %s, jsonb) AS SELECT (%s)::bigint',
                                      stmt OPERATOR(pg_catalog.||) '_count',
                                      COALESCE(j.cursor_type::text, 'text'), j.count_sql);
            EXECUTE pg_catalog.format('EXECUTE %I(%s, NULL, %L)', stmt OPERATOR(pg_catalog.||) '_count',
                                      j.batch_size, params) INTO total;
            EXECUTE pg_catalog.format('DEALLOCATE %I', stmt OPERATOR(pg_catalog.||) '_count');
            item := 'estimate';
            detail := pg_catalog.format('%s rows (count_sql), about %s chunks of %s rows',
                                        total, pg_catalog.ceil(total::numeric / j.batch_size),
                                        j.batch_size);
            RETURN NEXT;
        ELSE
            item := 'estimate';
            detail := 'none: the job has no count_sql';
            RETURN NEXT;
        END IF;

        FOREACH sz IN ARRAY sizes LOOP
            IF j.range_table IS NULL THEN
                args := pg_catalog.format('%s, NULL, %L', sz, params);
            ELSE
                /* The bounds of a first chunk of sz keys, found as a worker finds them. */
                PERFORM pg_catalog.set_config('enable_seqscan', 'off', true),
                        pg_catalog.set_config('enable_sort', 'off', true),
                        pg_catalog.set_config('enable_bitmapscan', 'off', true);
                EXECUTE pg_catalog.format('EXECUTE %I(%s, %L, %L, %L)',
                                          stmt OPERATOR(pg_catalog.||) '_keys', sz, span_first,
                                          params, span_last)
                   INTO lo, hi;
                PERFORM pg_catalog.set_config('enable_seqscan', planner[1], true),
                        pg_catalog.set_config('enable_sort', planner[2], true),
                        pg_catalog.set_config('enable_bitmapscan', planner[3], true);
                IF lo IS NULL THEN
                    item := pg_catalog.format('plan at %s rows', sz);
                    detail := 'none: the table has no key';
                    RETURN NEXT;
                    EXIT;
                END IF;
                args := pg_catalog.format('%L, %L, %L', lo, hi, params);
            END IF;
            first_args := COALESCE(first_args, args);
            EXECUTE pg_catalog.format('EXPLAIN (FORMAT JSON) EXECUTE %I(%s)',
                                      stmt, args) INTO plan;
            shape := (SELECT pg_catalog.string_agg(v #>> '{}', ' > ')
                        FROM jsonb_path_query(plan,
                               'strict $.** ? (@.type() == "object" && exists(@."Node Type"))."Node Type"') v);
            first_shape := COALESCE(first_shape, shape);
            item := pg_catalog.format('plan at %s rows', sz);
            detail := shape OPERATOR(pg_catalog.||)
                CASE WHEN j.range_table IS NULL THEN ''
                     ELSE pg_catalog.format(' (keys %s to %s)', lo, hi) END;
            RETURN NEXT;
            FOR r IN
                SELECT DISTINCT v #>> '{}' AS rel
                  FROM jsonb_path_query(plan, '$.** ? (@."Node Type" == "Seq Scan")."Relation Name"') v
            LOOP
                IF (SELECT c.reltuples FROM pg_catalog.pg_class c
                     WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.quote_ident(r.rel))) OPERATOR(pg_catalog.>) 10000 THEN
                    item := 'warning';
                    detail := pg_catalog.format('sequential scan of %s (a large table) at %s rows', r.rel, sz);
                    RETURN NEXT;
                END IF;
            END LOOP;
            IF shape OPERATOR(pg_catalog.<>) first_shape THEN
                item := 'warning';
                detail := pg_catalog.format('the plan changes shape between %s and %s rows: the chunk''s cost may not grow with its rows',
                                            sizes[1], sz);
                RETURN NEXT;
            END IF;
            IF sz OPERATOR(pg_catalog.=) sizes[1] THEN
                FOR r IN
                    SELECT DISTINCT v #>> '{}' AS rel
                      FROM jsonb_path_query(plan, '$.** ? (@."Node Type" == "ModifyTable")."Relation Name"') v
                LOOP
                    item := 'locks';
                    detail := pg_catalog.format('%s: ROW EXCLUSIVE, and row locks on the rows it changes', r.rel);
                    RETURN NEXT;
                    FOR item, detail IN
                        SELECT 'warning', pg_catalog.format('trigger %s fires on %s', t.tgname, r.rel)
                          FROM pg_catalog.pg_trigger t
                         WHERE t.tgrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.quote_ident(r.rel))
                           AND NOT t.tgisinternal
                        UNION ALL
                        SELECT 'warning', pg_catalog.format('foreign key %s of %s cascades to it (%s)',
                                   c.conname, c.conrelid::regclass,
                                   CASE c.confdeltype WHEN 'c' THEN 'ON DELETE CASCADE'
                                        WHEN 'n' THEN 'ON DELETE SET NULL'
                                        ELSE 'ON DELETE SET DEFAULT' END)
                          FROM pg_catalog.pg_constraint c
                         WHERE c.contype OPERATOR(pg_catalog.=) 'f'
                           AND c.confrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.quote_ident(r.rel))
                           AND c.confdeltype IN ('c', 'n', 'd')
                    LOOP
                        RETURN NEXT;
                    END LOOP;
                END LOOP;
                FOR r IN
                    SELECT DISTINCT v #>> '{}' AS rel
                      FROM jsonb_path_query(plan, '$.** ? (@."Node Type" != "ModifyTable")."Relation Name"') v
                LOOP
                    item := 'locks';
                    detail := pg_catalog.format('%s: ACCESS SHARE (read)', r.rel);
                    RETURN NEXT;
                END LOOP;
            END IF;
        END LOOP;

        /* The timeouts a chunk gets: the job's, else its owner's session's. */
        FOR r IN
            SELECT x.name, x.job_value::text AS job_value,
                   (SELECT pg_catalog.split_part(c, '=', 2) OPERATOR(pg_catalog.||) ' (ALTER '
                           OPERATOR(pg_catalog.||)
                           CASE WHEN s.setdatabase OPERATOR(pg_catalog.=) 0 THEN 'ROLE'
                                WHEN s.setrole OPERATOR(pg_catalog.=) 0 THEN 'DATABASE'
                                ELSE 'ROLE ... IN DATABASE' END OPERATOR(pg_catalog.||) ')'
                      FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) c
                     WHERE s.setrole IN (j.owner_oid, 0)
                       AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d
                                                  WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()))
                       AND c LIKE x.name OPERATOR(pg_catalog.||) '=%'
                     ORDER BY s.setrole OPERATOR(pg_catalog.<>) 0 AND s.setdatabase OPERATOR(pg_catalog.<>) 0 DESC,
                              s.setrole OPERATOR(pg_catalog.<>) 0 DESC
                     LIMIT 1) AS role_value,
                   (SELECT st.reset_val FROM pg_catalog.pg_settings st
                     WHERE st.name OPERATOR(pg_catalog.=) x.name) AS server_value
              FROM (VALUES ('statement_timeout', j.statement_timeout),
                           ('lock_timeout', j.lock_timeout)) x(name, job_value)
        LOOP
            item := 'timeouts';
            detail := r.name OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||)
                CASE WHEN r.job_value IS NOT NULL THEN r.job_value OPERATOR(pg_catalog.||) ' (the job''s)'
                     WHEN r.role_value IS NOT NULL THEN r.role_value
                     WHEN r.server_value OPERATOR(pg_catalog.<>) '0'
                     THEN r.server_value OPERATOR(pg_catalog.||) ' ms (the server''s)'
                     ELSE 'none' END;
            RETURN NEXT;
            IF r.name OPERATOR(pg_catalog.=) 'statement_timeout' AND r.job_value IS NULL
               AND COALESCE(r.role_value, r.server_value) ~ '^0( |$)' THEN
                item := 'warning';
                detail := 'no statement_timeout: neither the job nor its owner''s session limits a chunk';
                RETURN NEXT;
            END IF;
        END LOOP;

        IF execute AND first_args IS NOT NULL THEN
            BEGIN
                EXECUTE pg_catalog.format('EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE %I(%s)',
                                          stmt, first_args) INTO plan;
                n := CASE WHEN plan #>> '{0,Plan,Node Type}' OPERATOR(pg_catalog.=) 'ModifyTable'
                          THEN (plan #>> '{0,Plan,Plans,0,Actual Rows}')::bigint
                          ELSE (plan #>> '{0,Plan,Actual Rows}')::bigint END;
                item := 'executed';
                detail := pg_catalog.format('the first chunk: %s rows in %s ms, rolled back', n,
                    pg_catalog.round((plan #>> '{0,Execution Time}')::numeric, 1));
                -- roll the chunk back (caught below, never seen by the caller)
                RAISE EXCEPTION USING ERRCODE = 'assert_failure';
            EXCEPTION WHEN assert_failure THEN
                RETURN NEXT;
            END;
        END IF;
        EXECUTE pg_catalog.format('DEALLOCATE %I', stmt);
        IF j.range_table IS NOT NULL THEN
            EXECUTE pg_catalog.format('DEALLOCATE %I', stmt OPERATOR(pg_catalog.||) '_keys');
        END IF;
    EXCEPTION WHEN OTHERS THEN
        BEGIN
            EXECUTE pg_catalog.format('DEALLOCATE %I', stmt);
        EXCEPTION WHEN invalid_sql_statement_name THEN
            NULL;
        END;
        BEGIN
            EXECUTE pg_catalog.format('DEALLOCATE %I', stmt OPERATOR(pg_catalog.||) '_count');
        EXCEPTION WHEN invalid_sql_statement_name THEN
            NULL;
        END;
        BEGIN
            EXECUTE pg_catalog.format('DEALLOCATE %I', stmt OPERATOR(pg_catalog.||) '_keys');
        EXCEPTION WHEN invalid_sql_statement_name THEN
            NULL;
        END;
        BEGIN
            EXECUTE pg_catalog.format('DEALLOCATE %I', stmt OPERATOR(pg_catalog.||) '_span');
        EXCEPTION WHEN invalid_sql_statement_name THEN
            NULL;
        END;
        BEGIN
            EXECUTE pg_catalog.format('DEALLOCATE %I', stmt OPERATOR(pg_catalog.||) '_slices');
        EXCEPTION WHEN invalid_sql_statement_name THEN
            NULL;
        END;
        RAISE;
    END;
END
$$;

CREATE FUNCTION chunkbatch.dry_run(
    job_name text,
    params jsonb DEFAULT '{}',
    execute boolean DEFAULT false)
RETURNS TABLE (item text, detail text)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_dry_run';

/*
 * Declarative jobs: create_purge and create_update write a range-mode job
 * (its statement, filter and count_sql, by range_job_sql) from a table, a
 * condition and, for an update, a SET list, and create it with create_job,
 * as the caller.
 * SECURITY INVOKER and no pinned search_path: the job records the caller's
 * search_path, which its condition may rely on.
 * alter_job recognises the texts range_job_sql writes (src/range.c,
 * written_where and written_count): keep them the same there.
 */
CREATE FUNCTION chunkbatch.range_job_sql(
    action              text,
    table_name          regclass,
    set_sql             text,
    where_sql           text,
    key_column          text,
    count_rows          boolean,
    OUT chunk_sql       text,
    OUT range_table     text,
    OUT range_key       text,
    OUT count_sql       text)
LANGUAGE plpgsql CALLED ON NULL INPUT VOLATILE
AS $$
BEGIN
    IF action IS NULL OR action NOT IN ('delete', 'update') THEN
        RAISE EXCEPTION 'invalid action "%"', action
            USING ERRCODE = '22023', HINT = 'Use ''delete'' or ''update''.';
    END IF;
    IF table_name IS NULL OR where_sql IS NULL OR count_rows IS NULL
       OR (action OPERATOR(pg_catalog.=) 'update' AND set_sql IS NULL) THEN
        IF where_sql IS NULL THEN
            RAISE EXCEPTION 'where_sql must not be null' USING ERRCODE = '22004',
                HINT = 'Use where_sql => ''true'' to process every row.';
        END IF;
        RAISE EXCEPTION '% must not be null',
            CASE WHEN table_name IS NULL THEN 'table_name'
                 WHEN count_rows IS NULL THEN 'count_rows'
                 ELSE 'set_sql' END
            USING ERRCODE = '22004';
    END IF;
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) INTO range_table
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.oid OPERATOR(pg_catalog.=) table_name;
    range_key := key_column;
    IF range_key IS NULL THEN
        SELECT a.attname INTO range_key
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_attribute a
            ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
           AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
         WHERE i.indrelid OPERATOR(pg_catalog.=) table_name AND i.indisprimary
           AND i.indnkeyatts OPERATOR(pg_catalog.=) 1;
        IF range_key IS NULL THEN
            RAISE EXCEPTION 'table % has no single-column primary key', range_table
                USING ERRCODE = '42P10',
                      HINT = 'Name a column that has a unique index of its own with key_column.';
        END IF;
    END IF;
    IF action OPERATOR(pg_catalog.=) 'delete' THEN
        chunk_sql := pg_catalog.format(E'DELETE FROM %s\nWHERE %s.%I BETWEEN $1 AND $2 AND (\n%s\n)',
                                       range_table, range_table, range_key, where_sql);
    ELSE
        chunk_sql := pg_catalog.format(E'UPDATE %s SET\n%s\nWHERE %s.%I BETWEEN $1 AND $2 AND (\n%s\n)',
                                       range_table, set_sql, range_table, range_key, where_sql);
    END IF;
    IF count_rows THEN
        count_sql := pg_catalog.format(E'SELECT pg_catalog.count(*) FROM %s\nWHERE ($2 IS NULL OR %I OPERATOR(pg_catalog.>) $2) AND (\n%s\n)',
                                       range_table, range_key, where_sql);
    END IF;
END
$$;

CREATE FUNCTION chunkbatch.create_purge(
    job_name            text,
    table_name          regclass,
    where_sql           text,
    key_column          text DEFAULT NULL,
    batch_size          integer DEFAULT 1000,
    lock_group          text DEFAULT NULL,
    sleep_ms            integer DEFAULT 0,
    synchronous_commit  boolean DEFAULT false,
    validate            boolean DEFAULT true,
    on_group_busy       text DEFAULT 'wait',
    group_wait_timeout  interval DEFAULT NULL,
    max_retries         integer DEFAULT 10,
    lock_timeout        interval DEFAULT NULL,
    statement_timeout   interval DEFAULT NULL,
    max_runtime         interval DEFAULT NULL,
    on_error            text DEFAULT 'fail',
    max_dead_letters    integer DEFAULT NULL,
    target_chunk_ms     integer DEFAULT NULL,
    min_batch_size      integer DEFAULT 1,
    max_batch_size      integer DEFAULT 1000000,
    sleep_ratio         double precision DEFAULT 0,
    max_replica_lag     interval DEFAULT NULL,
    max_replica_lag_bytes bigint DEFAULT NULL,
    throttle_sql        text DEFAULT NULL,
    count_rows          boolean DEFAULT true,
    priority            integer DEFAULT 0,
    before_sql          text[] DEFAULT NULL,
    after_sql           text[] DEFAULT NULL,
    rebuild_indexes     boolean DEFAULT false,
    analyze_after       boolean DEFAULT false,
    vacuum_after        boolean DEFAULT false,
    parallel            integer DEFAULT 1)
RETURNS bigint
LANGUAGE plpgsql CALLED ON NULL INPUT VOLATILE
AS $$
DECLARE
    d record;
BEGIN
    d := chunkbatch.range_job_sql('delete', table_name, NULL,
                                      where_sql, key_column, count_rows);
    RETURN chunkbatch.create_job(
        job_name => job_name, chunk_sql => d.chunk_sql, batch_size => batch_size,
        lock_group => lock_group, sleep_ms => sleep_ms,
        synchronous_commit => synchronous_commit, validate => validate,
        on_group_busy => on_group_busy, group_wait_timeout => group_wait_timeout,
        max_retries => max_retries, lock_timeout => lock_timeout,
        statement_timeout => statement_timeout, max_runtime => max_runtime,
        on_error => on_error, max_dead_letters => max_dead_letters,
        target_chunk_ms => target_chunk_ms, min_batch_size => min_batch_size,
        max_batch_size => max_batch_size, sleep_ratio => sleep_ratio,
        max_replica_lag => max_replica_lag,
        max_replica_lag_bytes => max_replica_lag_bytes,
        throttle_sql => throttle_sql, count_sql => d.count_sql,
        range_table => d.range_table, range_key => d.range_key,
        range_filter => where_sql, priority => priority,
        before_sql => before_sql, after_sql => after_sql,
        rebuild_indexes => rebuild_indexes, analyze_after => analyze_after,
        vacuum_after => vacuum_after, parallel => parallel);
END
$$;

CREATE FUNCTION chunkbatch.create_update(
    job_name            text,
    table_name          regclass,
    set_sql             text,
    where_sql           text,
    key_column          text DEFAULT NULL,
    batch_size          integer DEFAULT 1000,
    lock_group          text DEFAULT NULL,
    sleep_ms            integer DEFAULT 0,
    synchronous_commit  boolean DEFAULT false,
    validate            boolean DEFAULT true,
    on_group_busy       text DEFAULT 'wait',
    group_wait_timeout  interval DEFAULT NULL,
    max_retries         integer DEFAULT 10,
    lock_timeout        interval DEFAULT NULL,
    statement_timeout   interval DEFAULT NULL,
    max_runtime         interval DEFAULT NULL,
    on_error            text DEFAULT 'fail',
    max_dead_letters    integer DEFAULT NULL,
    target_chunk_ms     integer DEFAULT NULL,
    min_batch_size      integer DEFAULT 1,
    max_batch_size      integer DEFAULT 1000000,
    sleep_ratio         double precision DEFAULT 0,
    max_replica_lag     interval DEFAULT NULL,
    max_replica_lag_bytes bigint DEFAULT NULL,
    throttle_sql        text DEFAULT NULL,
    count_rows          boolean DEFAULT true,
    priority            integer DEFAULT 0,
    before_sql          text[] DEFAULT NULL,
    after_sql           text[] DEFAULT NULL,
    rebuild_indexes     boolean DEFAULT false,
    analyze_after       boolean DEFAULT false,
    vacuum_after        boolean DEFAULT false,
    parallel            integer DEFAULT 1)
RETURNS bigint
LANGUAGE plpgsql CALLED ON NULL INPUT VOLATILE
AS $$
DECLARE
    d record;
BEGIN
    d := chunkbatch.range_job_sql('update', table_name, set_sql,
                                      where_sql, key_column, count_rows);
    RETURN chunkbatch.create_job(
        job_name => job_name, chunk_sql => d.chunk_sql, batch_size => batch_size,
        lock_group => lock_group, sleep_ms => sleep_ms,
        synchronous_commit => synchronous_commit, validate => validate,
        on_group_busy => on_group_busy, group_wait_timeout => group_wait_timeout,
        max_retries => max_retries, lock_timeout => lock_timeout,
        statement_timeout => statement_timeout, max_runtime => max_runtime,
        on_error => on_error, max_dead_letters => max_dead_letters,
        target_chunk_ms => target_chunk_ms, min_batch_size => min_batch_size,
        max_batch_size => max_batch_size, sleep_ratio => sleep_ratio,
        max_replica_lag => max_replica_lag,
        max_replica_lag_bytes => max_replica_lag_bytes,
        throttle_sql => throttle_sql, count_sql => d.count_sql,
        range_table => d.range_table, range_key => d.range_key,
        range_filter => where_sql, priority => priority,
        before_sql => before_sql, after_sql => after_sql,
        rebuild_indexes => rebuild_indexes, analyze_after => analyze_after,
        vacuum_after => vacuum_after, parallel => parallel);
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA chunkbatch FROM PUBLIC;
GRANT USAGE ON SCHEMA chunkbatch TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    chunkbatch.create_job(text, text, integer, text, regtype, integer, boolean,
                          boolean, text, interval, integer, interval, interval,
                          interval, text, text, integer, integer, integer,
                          integer, double precision, interval, bigint, text, text,
                          text, text, text, integer, text[], text[], boolean,
                          boolean, boolean, integer),
    chunkbatch.alter_job(text, text, integer, text, regtype, integer, boolean,
                         boolean, text, interval, integer, interval, interval,
                         interval, text, text, integer, integer, integer,
                         integer, double precision, interval, bigint, text, text,
                         text, text, text, integer, text[], text[], boolean,
                         boolean, boolean, integer, text[]),
    chunkbatch.drop_job(text),
    chunkbatch.run(text, jsonb, boolean, text, integer),
    chunkbatch.group_holder_pid(text),
    chunkbatch.schedule(text, text, jsonb, boolean),
    chunkbatch.unschedule(text),
    chunkbatch.job_name_of(bigint),
    chunkbatch.sparkline(real[]),
    chunkbatch.run_context(),
    chunkbatch.dry_run(text, jsonb, boolean),
    chunkbatch.dry_run_steps(text, jsonb, boolean),
    chunkbatch.wait(bigint, interval),
    chunkbatch.cancel(bigint),
    chunkbatch.pause(bigint),
    chunkbatch.resume(bigint),
    chunkbatch.group_lock_key(text),
    chunkbatch.progress(),
    chunkbatch.pause_all_state(),
    chunkbatch.run_states()
    TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    chunkbatch.range_job_sql(text, regclass, text, text, text, boolean),
    chunkbatch.create_purge(text, regclass, text, text, integer, text, integer, boolean,
                            boolean, text, interval, integer, interval, interval,
                            interval, text, integer, integer, integer, integer,
                            double precision, interval, bigint, text, boolean, integer,
                            text[], text[], boolean, boolean, boolean, integer),
    chunkbatch.create_update(text, regclass, text, text, text, integer, text, integer,
                             boolean, boolean, text, interval, integer, interval,
                             interval, interval, text, integer, integer, integer,
                             integer, double precision, interval, bigint, text,
                             boolean, integer, text[], text[], boolean, boolean, boolean,
                             integer)
    TO PUBLIC;
GRANT EXECUTE ON PROCEDURE chunkbatch.run_and_wait(text, jsonb, text, integer, bigint) TO PUBLIC;
GRANT SELECT ON chunkbatch.status, chunkbatch.status_detail, chunkbatch.groups TO PUBLIC;

/* One line on what each object is for (psql shows them with \d+ and \df+). */
COMMENT ON SCHEMA chunkbatch IS 'chunkbatch: SQL batch jobs run by background workers, one committed chunk at a time';
COMMENT ON TABLE chunkbatch.jobs IS 'Job definitions: chunk SQL, owner, batch size, group and settings (one row per job)';
COMMENT ON COLUMN chunkbatch.jobs.job_id IS 'Identifier of the job';
COMMENT ON COLUMN chunkbatch.jobs.job_name IS 'Name of the job, unique in the database';
COMMENT ON COLUMN chunkbatch.jobs.owner IS 'Role that owns the job; its runs execute as this role';
COMMENT ON COLUMN chunkbatch.jobs.chunk_sql IS 'Statement run once per chunk with $1 = batch size, $2 = cursor, $3 = params';
COMMENT ON COLUMN chunkbatch.jobs.cursor_type IS 'Type of the keyset cursor ($2), or NULL for counting mode';
COMMENT ON COLUMN chunkbatch.jobs.batch_size IS 'Rows per chunk (the starting size when target_chunk_ms is set)';
COMMENT ON COLUMN chunkbatch.jobs.lock_group IS 'Lock group: runs of the same group never overlap';
COMMENT ON COLUMN chunkbatch.jobs.sleep_ms IS 'Pause between chunks, in milliseconds';
COMMENT ON COLUMN chunkbatch.jobs.synchronous_commit IS 'Whether chunk commits wait for the WAL flush';
COMMENT ON COLUMN chunkbatch.jobs.search_path IS 'search_path the job SQL runs with (the creators at create_job)';
COMMENT ON COLUMN chunkbatch.jobs.on_group_busy IS 'What a run does when its group is busy: wait or skip';
COMMENT ON COLUMN chunkbatch.jobs.group_wait_timeout IS 'How long a run may wait for its group before it is skipped';
COMMENT ON COLUMN chunkbatch.jobs.max_retries IS 'Retries of a chunk after a transient error';
COMMENT ON COLUMN chunkbatch.jobs.lock_timeout IS 'lock_timeout of each chunk';
COMMENT ON COLUMN chunkbatch.jobs.statement_timeout IS 'statement_timeout of each chunk';
COMMENT ON COLUMN chunkbatch.jobs.max_runtime IS 'Time after which a run stops at its next chunk boundary';
COMMENT ON COLUMN chunkbatch.jobs.on_error IS 'What a failing chunk does: fail the run, or isolate the bad keys';
COMMENT ON COLUMN chunkbatch.jobs.keys_sql IS 'Query returning the keys of the next chunk, for on_error = isolate';
COMMENT ON COLUMN chunkbatch.jobs.max_dead_letters IS 'Keys a run may isolate before it fails';
COMMENT ON COLUMN chunkbatch.jobs.target_chunk_ms IS 'Chunk duration the adaptive batch size aims at';
COMMENT ON COLUMN chunkbatch.jobs.min_batch_size IS 'Smallest adaptive batch size';
COMMENT ON COLUMN chunkbatch.jobs.max_batch_size IS 'Largest adaptive batch size';
COMMENT ON COLUMN chunkbatch.jobs.sleep_ratio IS 'Pause after each chunk as a fraction of its duration';
COMMENT ON COLUMN chunkbatch.jobs.max_replica_lag IS 'Replay lag of standbys beyond which chunks wait';
COMMENT ON COLUMN chunkbatch.jobs.max_replica_lag_bytes IS 'Replay lag in bytes beyond which chunks wait';
COMMENT ON COLUMN chunkbatch.jobs.throttle_sql IS 'Query run before each chunk; true makes the chunk wait';
COMMENT ON COLUMN chunkbatch.jobs.count_sql IS 'Query estimating the rows a run will process, for percent and ETA';
COMMENT ON COLUMN chunkbatch.jobs.created_at IS 'When the job was created';
COMMENT ON COLUMN chunkbatch.jobs.altered_at IS 'When the job was last altered';
COMMENT ON COLUMN chunkbatch.jobs.owner_oid IS 'OID of the owner role (0 when no role of that name exists)';
COMMENT ON COLUMN chunkbatch.jobs.range_table IS 'Range mode: the driving table (qualified), or NULL';
COMMENT ON COLUMN chunkbatch.jobs.range_key IS 'Range mode: the unique key column of range_table whose ranges the chunks process';
COMMENT ON COLUMN chunkbatch.jobs.range_filter IS 'Range mode: condition on range_tables rows that the chunks process, or NULL for all';
COMMENT ON COLUMN chunkbatch.jobs.priority IS 'Order among runs of one group queued in one transaction: higher starts first';
COMMENT ON COLUMN chunkbatch.jobs.before_sql IS 'Steps run once per run before its first chunk, each one statement';
COMMENT ON COLUMN chunkbatch.jobs.after_sql IS 'Steps run once per run after its last chunk, each one statement';
COMMENT ON COLUMN chunkbatch.jobs.rebuild_indexes IS 'Drop the non-unique secondary indexes of the tables the chunk SQL writes before the chunks, rebuild them concurrently after';
COMMENT ON COLUMN chunkbatch.jobs.analyze_after IS 'Range mode: ANALYZE range_table after the last chunk';
COMMENT ON COLUMN chunkbatch.jobs.vacuum_after IS 'Range mode: VACUUM range_table after the last chunk';
COMMENT ON TABLE chunkbatch.runs IS 'Runs of jobs, queued, active and finished (kept for chunkbatch.history_retention)';
COMMENT ON COLUMN chunkbatch.runs.run_id IS 'Identifier of the run';
COMMENT ON COLUMN chunkbatch.runs.job_id IS 'Job of the run';
COMMENT ON COLUMN chunkbatch.runs.job_name IS 'Name of the job when the run was queued';
COMMENT ON COLUMN chunkbatch.runs.owner IS 'Role the run executes as';
COMMENT ON COLUMN chunkbatch.runs.lock_group IS 'Lock group the run holds while it executes';
COMMENT ON COLUMN chunkbatch.runs.params IS 'JSON object passed to the chunk SQL as $3';
COMMENT ON COLUMN chunkbatch.runs.state IS 'Run state (see chunkbatch.run_states())';
COMMENT ON COLUMN chunkbatch.runs.queued_by IS 'Role that queued the run';
COMMENT ON COLUMN chunkbatch.runs.trigger IS 'What queued the run: sql, pg_cron or a callers label';
COMMENT ON COLUMN chunkbatch.runs.queued_at IS 'When the run was queued';
COMMENT ON COLUMN chunkbatch.runs.waiting_since IS 'Since when the run waits for its group';
COMMENT ON COLUMN chunkbatch.runs.group_wait_ms IS 'Time the run waited for its group before its first chunk';
COMMENT ON COLUMN chunkbatch.runs.started_at IS 'When the run began its first chunk';
COMMENT ON COLUMN chunkbatch.runs.finished_at IS 'When the run ended';
COMMENT ON COLUMN chunkbatch.runs.cursor IS 'Checkpoint: the last committed key (keyset mode), as text';
COMMENT ON COLUMN chunkbatch.runs.rows_done IS 'Rows processed by committed chunks';
COMMENT ON COLUMN chunkbatch.runs.chunks_done IS 'Committed chunks';
COMMENT ON COLUMN chunkbatch.runs.batch_size IS 'Current batch size';
COMMENT ON COLUMN chunkbatch.runs.retries IS 'Chunk retries after transient errors';
COMMENT ON COLUMN chunkbatch.runs.avg_chunk_ms IS 'Mean chunk duration';
COMMENT ON COLUMN chunkbatch.runs.max_chunk_ms IS 'Longest chunk duration';
COMMENT ON COLUMN chunkbatch.runs.last_chunk_at IS 'When the last chunk committed';
COMMENT ON COLUMN chunkbatch.runs.worker_pid IS 'Process of the run worker, while it has one';
COMMENT ON COLUMN chunkbatch.runs.sqlstate IS 'SQLSTATE of the error that ended the run';
COMMENT ON COLUMN chunkbatch.runs.error IS 'Error that ended the run';
COMMENT ON COLUMN chunkbatch.runs.error_detail IS 'Detail of the error that ended the run';
COMMENT ON COLUMN chunkbatch.runs.error_chunk IS 'Chunk number at which the run failed';
COMMENT ON COLUMN chunkbatch.runs.reason IS 'Why the run was skipped, stopped, paused or cancelled';
COMMENT ON COLUMN chunkbatch.runs.start_attempts IS 'Times a worker tried to start the run';
COMMENT ON COLUMN chunkbatch.runs.dead_letters IS 'Keys isolated into chunkbatch.dead_letters';
COMMENT ON COLUMN chunkbatch.runs.lock_waiters_seen IS 'Times other sessions waited for the runs locks';
COMMENT ON COLUMN chunkbatch.runs.throttled_since IS 'Since when the run waits before its next chunk';
COMMENT ON COLUMN chunkbatch.runs.throttle_reason IS 'Why the run waits before its next chunk';
COMMENT ON COLUMN chunkbatch.runs.throttled_ms IS 'Total time the run waited for throttles';
COMMENT ON COLUMN chunkbatch.runs.total_estimate IS 'Rows the run will process, from the jobs count_sql';
COMMENT ON COLUMN chunkbatch.runs.owner_oid IS 'OID of the role the run executes as';
COMMENT ON COLUMN chunkbatch.runs.origin_db IS 'OID of the database where the run was queued';
COMMENT ON COLUMN chunkbatch.runs.origin_system IS 'System identifier of the cluster where the run was queued';
COMMENT ON COLUMN chunkbatch.runs.recent_chunk_ms IS 'Durations of the runs last 8 chunks, in milliseconds';
COMMENT ON COLUMN chunkbatch.runs.priority IS 'Priority of its job when the run was queued';
COMMENT ON COLUMN chunkbatch.runs.queued_with IS 'First run queued in the same transaction (NULL: this one); such runs of a group start by priority';
COMMENT ON COLUMN chunkbatch.runs.steps IS 'The runs steps, fixed at its first start: before steps first (with saved index definitions)';
COMMENT ON COLUMN chunkbatch.runs.steps_before IS 'How many of the steps run before the chunks';
COMMENT ON COLUMN chunkbatch.runs.steps_done IS 'How many steps have completed';
COMMENT ON COLUMN chunkbatch.runs.statement_timeout IS 'statement_timeout of each chunk of the run: the jobs, else its owners sessions (NULL: none)';
COMMENT ON COLUMN chunkbatch.runs.lock_timeout IS 'lock_timeout of each chunk of the run: the jobs, else its owners sessions (NULL: none)';
COMMENT ON COLUMN chunkbatch.runs.range_first IS 'Range mode with a filter: the first key the filter matched at the runs first start; the chunks cover range_first to range_last (NULL: the whole key)';
COMMENT ON COLUMN chunkbatch.runs.range_last IS 'Range mode with a filter: the last key the filter matched at the runs first start';
COMMENT ON COLUMN chunkbatch.jobs.parallel IS 'Range mode: how many slices of the key a run splits into, each processed by its own worker (1: no slices)';
COMMENT ON COLUMN chunkbatch.runs.parallel IS 'Slices the run asked for when it was queued (1: none)';
COMMENT ON COLUMN chunkbatch.runs.cursor_kind IS 'What its checkpoints hold, from its job when it was queued: the cursor type, in range mode with the table and key; resume() refuses a begun run whose job has changed it';
COMMENT ON TABLE chunkbatch.slices IS 'The slices of runs with parallel > 1: a range of the key and its own checkpoint each';
COMMENT ON COLUMN chunkbatch.slices.run_id IS 'Run the slice belongs to';
COMMENT ON COLUMN chunkbatch.slices.slice_no IS 'Number of the slice in its run, from 0, in key order at the split';
COMMENT ON COLUMN chunkbatch.slices.state IS 'pending (no worker), running, done or failed';
COMMENT ON COLUMN chunkbatch.slices.range_first IS 'First key of the first slice; NULL for the others, which begin after the last key of the slice before them';
COMMENT ON COLUMN chunkbatch.slices.range_last IS 'Last key of the slice (NULL: no end, the last slice of a run without a filter)';
COMMENT ON COLUMN chunkbatch.slices.cursor IS 'Checkpoint: the last key done, committed with each chunk (at first the end of the slice before)';
COMMENT ON COLUMN chunkbatch.slices.rows_done IS 'Rows the slice processed';
COMMENT ON COLUMN chunkbatch.slices.chunks_done IS 'Chunks the slice committed';
COMMENT ON COLUMN chunkbatch.slices.batch_size IS 'Batch size of the slice at its last chunk';
COMMENT ON COLUMN chunkbatch.slices.avg_chunk_ms IS 'Mean chunk duration of the slice';
COMMENT ON COLUMN chunkbatch.slices.max_chunk_ms IS 'Longest chunk duration of the slice';
COMMENT ON COLUMN chunkbatch.slices.retries IS 'Chunks of the slice retried after transient errors';
COMMENT ON COLUMN chunkbatch.slices.dead_letters IS 'Keys of the slice isolated as dead letters';
COMMENT ON COLUMN chunkbatch.slices.lock_waiters_seen IS 'Chunks of the slice that made other sessions wait';
COMMENT ON COLUMN chunkbatch.slices.worker_pid IS 'Process that took the slice last';
COMMENT ON COLUMN chunkbatch.slices.workers IS 'How many times a worker took the slice';
COMMENT ON COLUMN chunkbatch.slices.started_at IS 'When a worker first took the slice';
COMMENT ON COLUMN chunkbatch.slices.last_chunk_at IS 'When the last chunk of the slice committed';
COMMENT ON COLUMN chunkbatch.slices.finished_at IS 'When the slice was done, or failed';
COMMENT ON COLUMN chunkbatch.slices.sqlstate IS 'SQLSTATE of the error that failed the slice';
COMMENT ON COLUMN chunkbatch.slices.error IS 'Error that failed the slice';
COMMENT ON COLUMN chunkbatch.status_detail.slices IS 'Slices of a run with parallel > 1 (NULL: none)';
COMMENT ON COLUMN chunkbatch.status_detail.workers IS 'Workers processing the slices of the run';
COMMENT ON VIEW chunkbatch.slice_status IS 'The slices of runs with parallel > 1: key range, checkpoint, state and live worker of each';
COMMENT ON COLUMN chunkbatch.slice_status.run_id IS 'Run the slice belongs to';
COMMENT ON COLUMN chunkbatch.slice_status.slice_no IS 'Number of the slice in its run';
COMMENT ON COLUMN chunkbatch.slice_status.state IS 'pending, running, done or failed';
COMMENT ON COLUMN chunkbatch.slice_status.range_first IS 'First key of the first slice';
COMMENT ON COLUMN chunkbatch.slice_status.range_last IS 'Last key of the slice (NULL: no end)';
COMMENT ON COLUMN chunkbatch.slice_status.cursor IS 'Checkpoint: the last key done';
COMMENT ON COLUMN chunkbatch.slice_status.rows_done IS 'Rows the slice processed';
COMMENT ON COLUMN chunkbatch.slice_status.chunks_done IS 'Chunks the slice committed';
COMMENT ON COLUMN chunkbatch.slice_status.batch_size IS 'Current batch size of the slice';
COMMENT ON COLUMN chunkbatch.slice_status.rows_per_sec IS 'Recent rows per second of its worker';
COMMENT ON COLUMN chunkbatch.slice_status.current_chunk_ms IS 'Duration of the chunk in progress';
COMMENT ON COLUMN chunkbatch.slice_status.avg_chunk_ms IS 'Mean chunk duration';
COMMENT ON COLUMN chunkbatch.slice_status.max_chunk_ms IS 'Longest chunk duration';
COMMENT ON COLUMN chunkbatch.slice_status.retries IS 'Chunks retried after transient errors';
COMMENT ON COLUMN chunkbatch.slice_status.worker_pid IS 'Process working on the slice now';
COMMENT ON COLUMN chunkbatch.slice_status.workers IS 'How many times a worker took the slice';
COMMENT ON COLUMN chunkbatch.slice_status.started_at IS 'When a worker first took the slice';
COMMENT ON COLUMN chunkbatch.slice_status.finished_at IS 'When the slice was done, or failed';
COMMENT ON COLUMN chunkbatch.slice_status.sqlstate IS 'SQLSTATE of the error that failed the slice';
COMMENT ON COLUMN chunkbatch.slice_status.error IS 'Error that failed the slice';
COMMENT ON TABLE chunkbatch.dead_letters IS 'Keys that runs with on_error = isolate could not process, with their errors';
COMMENT ON COLUMN chunkbatch.dead_letters.run_id IS 'Run that isolated the key';
COMMENT ON COLUMN chunkbatch.dead_letters.job_name IS 'Name of the runs job';
COMMENT ON COLUMN chunkbatch.dead_letters.owner IS 'Owner of the run';
COMMENT ON COLUMN chunkbatch.dead_letters.key IS 'The key, as text';
COMMENT ON COLUMN chunkbatch.dead_letters.sqlstate IS 'SQLSTATE of the keys error';
COMMENT ON COLUMN chunkbatch.dead_letters.error IS 'Error of the key';
COMMENT ON COLUMN chunkbatch.dead_letters.at IS 'When the key was isolated';
COMMENT ON COLUMN chunkbatch.dead_letters.owner_oid IS 'OID of the owner of the run';
COMMENT ON FUNCTION chunkbatch.resolve_owner() IS 'Trigger: resolves a restored rows owner by name';
COMMENT ON FUNCTION chunkbatch.jobs_changed() IS 'Trigger: records the jobs owners in pg_shdepend';
COMMENT ON FUNCTION chunkbatch.create_job(text, text, integer, text, regtype, integer, boolean, boolean, text, interval, integer, interval, interval, interval, text, text, integer, integer, integer, integer, double precision, interval, bigint, text, text, text, text, text, integer, text[], text[], boolean, boolean, boolean, integer) IS 'Create a job owned by the current role';
COMMENT ON FUNCTION chunkbatch.alter_job(text, text, integer, text, regtype, integer, boolean, boolean, text, interval, integer, interval, interval, interval, text, text, integer, integer, integer, integer, double precision, interval, bigint, text, text, text, text, text, integer, text[], text[], boolean, boolean, boolean, integer, text[]) IS 'Change settings of a job (reset: back to their default); runs pick them up at their next chunk';
COMMENT ON FUNCTION chunkbatch.drop_job(text) IS 'Drop a job that has no active runs, with its pg_cron schedules';
COMMENT ON FUNCTION chunkbatch.run(text, jsonb, boolean, text, integer) IS 'Queue a run of a job (and wait for it with wait => true; parallel: its slices, if not the jobs); returns the run id';
COMMENT ON PROCEDURE chunkbatch.run_and_wait(text, jsonb, text, integer, bigint) IS 'Queue a run and wait for it, committing while it waits';
COMMENT ON FUNCTION chunkbatch.wait(bigint, interval) IS 'Wait for a run to end or rest; returns its state';
COMMENT ON FUNCTION chunkbatch.cancel(bigint) IS 'Cancel a run at its next chunk boundary';
COMMENT ON FUNCTION chunkbatch.pause(bigint) IS 'Pause a run at its next chunk boundary';
COMMENT ON FUNCTION chunkbatch.resume(bigint) IS 'Resume a paused, failed or stopped run from its checkpoint';
COMMENT ON FUNCTION chunkbatch.group_lock_key(text) IS 'Advisory lock key of a lock group, for pg_advisory_lock';
COMMENT ON FUNCTION chunkbatch.pause_all(text) IS 'Emergency stop: hold every run of the cluster at its next chunk';
COMMENT ON FUNCTION chunkbatch.resume_all() IS 'End the emergency stop';
COMMENT ON FUNCTION chunkbatch.pause_all_state() IS 'Whether the emergency stop is on, since when, by whom and why';
COMMENT ON FUNCTION chunkbatch.run_states() IS 'Run states and the sets they belong to';
COMMENT ON FUNCTION chunkbatch.progress() IS 'Live progress of this databases run workers, from shared memory';
COMMENT ON FUNCTION chunkbatch.group_holder_pid(text) IS 'Process holding a lock groups lock, if any';
COMMENT ON FUNCTION chunkbatch.job_name_of(bigint) IS 'Name of a job by id, for the commands of pg_cron schedules';
COMMENT ON FUNCTION chunkbatch.sparkline(real[]) IS 'Chunk durations as a sparkline, for the status view';
COMMENT ON FUNCTION chunkbatch.dry_run(text, jsonb, boolean) IS 'What a run of a job would do: estimate, plans at its chunk sizes, warnings, locks; optionally one chunk rolled back';
COMMENT ON FUNCTION chunkbatch.dry_run_steps(text, jsonb, boolean) IS 'The work of dry_run(), which calls it as the job''s owner and rolls it back; as the caller when called directly';
COMMENT ON FUNCTION chunkbatch.range_job_sql(text, regclass, text, text, text, boolean) IS 'The statement, range and count_sql of a declarative delete or update job';
COMMENT ON FUNCTION chunkbatch.create_purge(text, regclass, text, text, integer, text, integer, boolean, boolean, text, interval, integer, interval, interval, interval, text, integer, integer, integer, integer, double precision, interval, bigint, text, boolean, integer, text[], text[], boolean, boolean, boolean, integer) IS 'Create a range-mode job that deletes the rows of a table matching a condition';
COMMENT ON FUNCTION chunkbatch.create_update(text, regclass, text, text, text, integer, text, integer, boolean, boolean, text, interval, integer, interval, interval, interval, text, integer, integer, integer, integer, double precision, interval, bigint, text, boolean, integer, text[], text[], boolean, boolean, boolean, integer) IS 'Create a range-mode job that updates the rows of a table matching a condition';
COMMENT ON FUNCTION chunkbatch.run_context() IS 'The run that the calling chunk belongs to: id, job, queued time, trigger, chunk number';
COMMENT ON FUNCTION chunkbatch.schedule(text, text, jsonb, boolean) IS 'Schedule a job with pg_cron';
COMMENT ON FUNCTION chunkbatch.unschedule(text) IS 'Remove a jobs pg_cron schedule';
COMMENT ON VIEW chunkbatch.status IS 'Queued, active and paused runs, one short line each (\watch 1); details in status_detail';
COMMENT ON COLUMN chunkbatch.status.run_id IS 'Identifier of the run';
COMMENT ON COLUMN chunkbatch.status.job IS 'Name of the job (first 24 characters)';
COMMENT ON COLUMN chunkbatch.status.state IS 'Run state; starting while its worker begins';
COMMENT ON COLUMN chunkbatch.status.progress IS 'Progress bar and percent when the total is known, else rows done';
COMMENT ON COLUMN chunkbatch.status.rows_s IS 'Recent rows per second';
COMMENT ON COLUMN chunkbatch.status.batch IS 'Current batch size';
COMMENT ON COLUMN chunkbatch.status.chunk_ms IS 'Duration of the last chunk, and a sparkline of the last 8';
COMMENT ON COLUMN chunkbatch.status.elapsed IS 'Time since the run started, stopped while it is paused';
COMMENT ON COLUMN chunkbatch.status.eta IS 'Estimated time to completion';
COMMENT ON COLUMN chunkbatch.status.waiting_on IS 'What the run waits for: a run of its group, an outside process, or a throttle';
COMMENT ON VIEW chunkbatch.status_detail IS 'Queued, active and paused runs: everything about their progress, waits and throttles';
COMMENT ON COLUMN chunkbatch.status_detail.run_id IS 'Identifier of the run';
COMMENT ON COLUMN chunkbatch.status_detail.job_name IS 'Name of the job';
COMMENT ON COLUMN chunkbatch.status_detail.state IS 'Run state; starting while its worker begins';
COMMENT ON COLUMN chunkbatch.status_detail.lock_group IS 'Lock group of the run';
COMMENT ON COLUMN chunkbatch.status_detail.rows_done IS 'Rows processed so far';
COMMENT ON COLUMN chunkbatch.status_detail.chunks_done IS 'Chunks committed so far';
COMMENT ON COLUMN chunkbatch.status_detail.batch_size IS 'Current batch size';
COMMENT ON COLUMN chunkbatch.status_detail.rows_per_sec IS 'Recent rows per second';
COMMENT ON COLUMN chunkbatch.status_detail.total_estimate IS 'Rows the run will process, from count_sql';
COMMENT ON COLUMN chunkbatch.status_detail.percent IS 'Percent done, when total_estimate is known';
COMMENT ON COLUMN chunkbatch.status_detail.progress IS 'Progress bar, when total_estimate is known';
COMMENT ON COLUMN chunkbatch.status_detail.eta IS 'Estimated time to completion';
COMMENT ON COLUMN chunkbatch.status_detail.current_chunk_ms IS 'Duration of the chunk in progress';
COMMENT ON COLUMN chunkbatch.status_detail.avg_chunk_ms IS 'Mean chunk duration';
COMMENT ON COLUMN chunkbatch.status_detail.max_chunk_ms IS 'Longest chunk duration';
COMMENT ON COLUMN chunkbatch.status_detail.throttle_reason IS 'Why the run waits before its next chunk';
COMMENT ON COLUMN chunkbatch.status_detail.throttled_for IS 'How long the run has waited before its next chunk';
COMMENT ON COLUMN chunkbatch.status_detail.lock_waiters_seen IS 'Times other sessions waited for the runs locks';
COMMENT ON COLUMN chunkbatch.status_detail.cursor IS 'Checkpoint: the last committed key';
COMMENT ON COLUMN chunkbatch.status_detail.queued_at IS 'When the run was queued';
COMMENT ON COLUMN chunkbatch.status_detail.started_at IS 'When the run began its first chunk';
COMMENT ON COLUMN chunkbatch.status_detail.elapsed IS 'Time since the run started (or was queued); stops while it is paused';
COMMENT ON COLUMN chunkbatch.status_detail.waiting_for_run IS 'Run of the same group this run waits for';
COMMENT ON COLUMN chunkbatch.status_detail.waiting_for_pid IS 'Outside process holding the group lock this run waits for';
COMMENT ON COLUMN chunkbatch.status_detail.group_wait IS 'How long the run waited (or waits) for its group';
COMMENT ON COLUMN chunkbatch.status_detail.worker_pid IS 'Process of the run worker';
COMMENT ON COLUMN chunkbatch.status_detail.retries IS 'Chunk retries after transient errors';
COMMENT ON COLUMN chunkbatch.status_detail.trigger IS 'What queued the run';
COMMENT ON COLUMN chunkbatch.status_detail.params IS 'Parameters of the run ($3)';
COMMENT ON COLUMN chunkbatch.status_detail.waiting_for_role IS 'Role of the outside process holding the group lock';
COMMENT ON COLUMN chunkbatch.status_detail.last_chunk_ms IS 'Duration of the last chunk';
COMMENT ON COLUMN chunkbatch.status_detail.recent_chunk_ms IS 'Durations of the last 8 chunks';
COMMENT ON COLUMN chunkbatch.status_detail.statement_timeout IS 'statement_timeout of each chunk (the jobs, else the owners); NULL: none or not started';
COMMENT ON COLUMN chunkbatch.status_detail.lock_timeout IS 'lock_timeout of each chunk (the jobs, else the owners); NULL: none or not started';
COMMENT ON VIEW chunkbatch.groups IS 'Lock groups with queued or active runs: holder and waiting runs';
COMMENT ON COLUMN chunkbatch.groups.lock_group IS 'Name of the lock group';
COMMENT ON COLUMN chunkbatch.groups.holder_run_id IS 'Run holding the group lock';
COMMENT ON COLUMN chunkbatch.groups.holder_pid IS 'Process holding the group lock';
COMMENT ON COLUMN chunkbatch.groups.waiting_run_ids IS 'Runs waiting for the group, in order';
COMMENT ON COLUMN chunkbatch.groups.longest_wait IS 'Longest wait among them';
COMMENT ON COLUMN chunkbatch.groups.holder_role IS 'Role of the process holding the group lock';
COMMENT ON VIEW chunkbatch.job_stats IS 'Per job: runs and how they ended, last run, last success and failure, rows, durations, rate';
COMMENT ON COLUMN chunkbatch.job_stats.job_name IS 'Name of the job';
COMMENT ON COLUMN chunkbatch.job_stats.owner IS 'Owner of the job';
COMMENT ON COLUMN chunkbatch.job_stats.runs IS 'Runs kept in chunkbatch.runs';
COMMENT ON COLUMN chunkbatch.job_stats.succeeded IS 'Runs that succeeded';
COMMENT ON COLUMN chunkbatch.job_stats.failed IS 'Runs that failed';
COMMENT ON COLUMN chunkbatch.job_stats.cancelled IS 'Runs that were cancelled';
COMMENT ON COLUMN chunkbatch.job_stats.active IS 'Runs queued or active now';
COMMENT ON COLUMN chunkbatch.job_stats.last_state IS 'State of the latest run';
COMMENT ON COLUMN chunkbatch.job_stats.last_finished_at IS 'When the latest run ended';
COMMENT ON COLUMN chunkbatch.job_stats.last_success_at IS 'When the latest successful run ended';
COMMENT ON COLUMN chunkbatch.job_stats.last_failure_at IS 'When the latest failed run ended';
COMMENT ON COLUMN chunkbatch.job_stats.last_failure_sqlstate IS 'SQLSTATE of the latest failed run';
COMMENT ON COLUMN chunkbatch.job_stats.total_rows IS 'Rows processed by all kept runs';
COMMENT ON COLUMN chunkbatch.job_stats.median_duration IS 'Median duration of the successful runs';
COMMENT ON COLUMN chunkbatch.job_stats.max_duration IS 'Longest successful run';
COMMENT ON COLUMN chunkbatch.job_stats.mean_rows_per_sec IS 'Rows per second over the successful runs';
