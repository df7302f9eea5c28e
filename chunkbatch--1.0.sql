/* chunkbatch--1.0.sql: catalog tables, views and the SQL interface */

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
    owner               regrole NOT NULL,
    chunk_sql           text NOT NULL,
    cursor_type         regtype,
    batch_size          integer NOT NULL CHECK (batch_size > 0),
    lock_group          text NOT NULL,
    sleep_ms            integer NOT NULL DEFAULT 0 CHECK (sleep_ms >= 0),
    synchronous_commit  boolean NOT NULL DEFAULT false,
    search_path         text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    altered_at          timestamptz
);

CREATE TABLE chunkbatch.runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          bigint NOT NULL,
    job_name        text NOT NULL,
    owner           regrole NOT NULL,
    lock_group      text NOT NULL,
    params          jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'waiting', 'running', 'paused',
                                     'succeeded', 'failed', 'cancelled',
                                     'skipped', 'interrupted')),
    queued_by       regrole NOT NULL,
    trigger         text NOT NULL DEFAULT 'sql',
    queued_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
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
    error_chunk     bigint
);

CREATE INDEX runs_active_idx ON chunkbatch.runs (run_id)
    WHERE state IN ('queued', 'waiting', 'running', 'interrupted');
CREATE INDEX runs_job_idx ON chunkbatch.runs (job_id);

/*
 * Rows are written only by the functions below (as the extension owner);
 * users read the jobs and runs of roles whose privileges they have.
 * pg_monitor members see every run, but not other roles' job SQL.
 */
ALTER TABLE chunkbatch.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE chunkbatch.runs ENABLE ROW LEVEL SECURITY;

CREATE POLICY jobs_visible ON chunkbatch.jobs FOR SELECT
    USING (pg_catalog.pg_has_role(owner::oid, 'USAGE'));
CREATE POLICY runs_visible ON chunkbatch.runs FOR SELECT
    USING (pg_catalog.pg_has_role(owner::oid, 'USAGE')
           OR pg_catalog.pg_has_role('pg_monitor', 'USAGE'));

REVOKE ALL ON chunkbatch.jobs, chunkbatch.runs FROM PUBLIC;
GRANT SELECT ON chunkbatch.jobs, chunkbatch.runs TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('chunkbatch.jobs', '');

/* SQL interface, implemented in C (src/api.c) */

CREATE FUNCTION chunkbatch.create_job(
    job_name            text,
    chunk_sql           text,
    batch_size          integer DEFAULT 1000,
    lock_group          text DEFAULT NULL,
    cursor_type         regtype DEFAULT NULL,
    sleep_ms            integer DEFAULT 0,
    synchronous_commit  boolean DEFAULT false,
    validate            boolean DEFAULT true)
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
    validate            boolean DEFAULT true)
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
    wait        boolean DEFAULT false)
RETURNS bigint
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_run';

CREATE FUNCTION chunkbatch.wait(run_id bigint, timeout interval DEFAULT NULL)
RETURNS text
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_wait';

CREATE FUNCTION chunkbatch.cancel(run_id bigint)
RETURNS boolean
LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_cancel';

CREATE FUNCTION chunkbatch.group_lock_key(lock_group text)
RETURNS bigint
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'chunkbatch_group_lock_key';

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
    OUT chunk_started_at timestamptz)
RETURNS SETOF record
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'chunkbatch_progress';

/*
 * What a DBA looks at first: queued and active runs with live progress.
 * security_invoker: the caller sees only the runs the runs table shows it.
 */
CREATE VIEW chunkbatch.status WITH (security_invoker = true) AS
SELECT r.run_id,
       r.job_name,
       CASE WHEN p.phase = 'waiting' THEN 'waiting'
            WHEN p.phase IS NOT NULL AND r.state = 'queued' THEN 'starting'
            ELSE r.state END AS state,
       r.lock_group,
       COALESCE(p.rows_done, r.rows_done) AS rows_done,
       COALESCE(p.chunks_done, r.chunks_done) AS chunks_done,
       COALESCE(p.batch_size, r.batch_size) AS batch_size,
       CASE WHEN p.rows_this_worker > 0
            THEN pg_catalog.round((p.rows_this_worker /
                 GREATEST(extract(epoch FROM pg_catalog.clock_timestamp()
                                             OPERATOR(pg_catalog.-) p.worker_started_at),
                                     0.001))::numeric, 0)
       END AS rows_per_sec,
       CASE WHEN p.chunk_started_at IS NOT NULL
            THEN pg_catalog.round((extract(epoch FROM pg_catalog.clock_timestamp()
                 OPERATOR(pg_catalog.-) p.chunk_started_at) OPERATOR(pg_catalog.*) 1000)::numeric, 1)
       END AS current_chunk_ms,
       r.avg_chunk_ms,
       r.max_chunk_ms,
       r.cursor,
       r.queued_at,
       r.started_at,
       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
           COALESCE(r.started_at, r.queued_at) AS elapsed,
       p.pid AS worker_pid,
       r.retries,
       r.params
  FROM chunkbatch.runs r
  LEFT JOIN chunkbatch.progress() p ON p.run_id OPERATOR(pg_catalog.=) r.run_id
 WHERE r.state IN ('queued', 'waiting', 'running', 'paused', 'interrupted')
 ORDER BY r.run_id;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA chunkbatch FROM PUBLIC;
GRANT USAGE ON SCHEMA chunkbatch TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    chunkbatch.create_job(text, text, integer, text, regtype, integer, boolean, boolean),
    chunkbatch.alter_job(text, text, integer, text, regtype, integer, boolean, boolean),
    chunkbatch.drop_job(text),
    chunkbatch.run(text, jsonb, boolean),
    chunkbatch.wait(bigint, interval),
    chunkbatch.cancel(bigint),
    chunkbatch.group_lock_key(text),
    chunkbatch.progress()
    TO PUBLIC;
GRANT SELECT ON chunkbatch.status TO PUBLIC;
