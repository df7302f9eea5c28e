#!/usr/bin/env bash
# scripts/demo.sh: chunkbatch end to end, on a throwaway server.
#
#   bash scripts/demo.sh
#
# Installs what is missing and the extension (like scripts/test.sh), starts
# a temporary PostgreSQL 15 server with chunkbatch preloaded (unix socket
# only, in a temporary directory), loads 1,000,000 rows into "events" and
# runs two jobs owned by the LOGIN role demo_app at the same time:
#
#   purge_old_events  repeat mode: delete the rows older than 6 months,
#                     10,000 per chunk, until a chunk deletes nothing
#   complete_events   keyset mode: set INIT and FAIL rows to COMPLETE in id
#                     order, 5,000 per chunk, until a chunk returns no id
#
# It shows chunkbatch.status every second while they run, then the finished
# runs, checks the result and removes the server (also on failure).
#
# Environment: CHUNKBATCH_DEMO_PORT (54329), CHUNKBATCH_DEMO_ROWS (1000000),
# CHUNKBATCH_DEMO_TIMEOUT (300 seconds to wait for the runs).

set -euo pipefail

. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup.sh"

PORT=${CHUNKBATCH_DEMO_PORT:-54329}
ROWS=${CHUNKBATCH_DEMO_ROWS:-1000000}
TIMEOUT=${CHUNKBATCH_DEMO_TIMEOUT:-300}
TREE=""
DEMO=""

cleanup() {
    local rc=$?
    set +e
    if [ -n "$DEMO" ] && [ -f "$DEMO/data/postmaster.pid" ]; then
        if [ "$rc" -ne 0 ] && [ -f "$DEMO/server.log" ]; then
            echo "----- last lines of the server log -----"
            tail -n 40 "$DEMO/server.log"
        fi
        echo "stopping the demo server"
        cb_as_pg pg_ctl -D "$DEMO/data" -m fast -w -t 60 stop >/dev/null ||
            cb_as_pg pg_ctl -D "$DEMO/data" -m immediate -w stop >/dev/null
    fi
    [ -n "$DEMO" ] && rm -rf "$DEMO"
    [ -n "$TREE" ] && rm -rf "$TREE"
    exit "$rc"
}
trap cleanup EXIT

step() { printf '\n===== %s =====\n' "$*"; }

# psql on the demo server: psql_as ROLE [psql arguments...]
psql_as() {
    local role=$1
    shift
    cb_as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$DEMO" -p "$PORT" -U "$role" -d demo "$@"
}

step "set-up"
cb_install_packages
cb_stop_main_cluster
TREE=$(cb_copy_tree)
cb_build_install "$TREE" > "$TREE/build.log" 2>&1 || {
    cat "$TREE/build.log"
    cb_die "build or installation failed"
}
cb_log "chunkbatch built and installed"

DEMO=$(mktemp -d /tmp/chunkbatch-demo.XXXXXX)
chmod 700 "$DEMO"
cb_give_to_pg "$DEMO"
cb_as_pg initdb -D "$DEMO/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    > "$DEMO/initdb.log" 2>&1 || { cat "$DEMO/initdb.log"; cb_die "initdb failed"; }
cat >> "$DEMO/data/postgresql.conf" <<EOF

# chunkbatch demo
listen_addresses = ''
port = $PORT
unix_socket_directories = '$DEMO'
shared_preload_libraries = 'chunkbatch'
chunkbatch.naptime = 1
shared_buffers = 256MB
max_wal_size = 4GB
log_line_prefix = '%m [%p] %q%a: '
EOF
cb_as_pg pg_ctl -D "$DEMO/data" -l "$DEMO/server.log" -w -t 60 start > /dev/null
cb_log "demo server running: psql -h $DEMO -p $PORT -U postgres demo"
cb_as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$DEMO" -p "$PORT" -U postgres -d postgres \
    -c 'CREATE DATABASE demo'

step "load $ROWS rows into events (half older than 6 months)"
t0=$(date +%s)
psql_as postgres -v rows="$ROWS" <<'SQL'
CREATE EXTENSION chunkbatch;
-- Jobs run as their owner, which must be a LOGIN role, not a superuser.
CREATE ROLE demo_app LOGIN;

CREATE TABLE events (
    id          bigint PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    status      text NOT NULL,
    retries     int NOT NULL DEFAULT 0,
    payload     text
);
INSERT INTO events
SELECT i,
       CASE WHEN i % 2 = 0
            THEN now() - interval '200 days' - (i % 100000) * interval '5 minutes'
            ELSE now() - (i % 100000) * interval '2 minutes' END,
       (ARRAY['INIT', 'FAIL', 'COMPLETE'])[1 + i % 3],
       0,
       md5(i::text)
  FROM generate_series(1, :rows) AS i;
CREATE INDEX events_created_at_idx ON events (created_at);
VACUUM ANALYZE events;
GRANT SELECT, UPDATE, DELETE ON events TO demo_app;
SQL
echo "loaded in $(( $(date +%s) - t0 )) s"
psql_as postgres <<'SQL'
SELECT created_at < now() - interval '6 months' AS older_than_6_months,
       status, count(*)
  FROM events GROUP BY 1, 2 ORDER BY 1, 2;
SQL

step "create the jobs and queue their runs (as demo_app)"
psql_as demo_app -e <<'SQL'
SELECT chunkbatch.create_job(
    job_name   => 'purge_old_events',
    chunk_sql  => $$DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < now() - interval '6 months' LIMIT $1)$$,
    batch_size => 10000);

SELECT chunkbatch.create_job(
    job_name    => 'complete_events',
    chunk_sql   => $$UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE id IN (SELECT id FROM events WHERE ($2 IS NULL OR id > $2) AND status IN ('INIT', 'FAIL') AND created_at >= now() - interval '6 months' ORDER BY id LIMIT $1) RETURNING id$$,
    batch_size  => 5000,
    cursor_type => 'bigint');
SQL
PURGE_RUN=$(psql_as demo_app -At -c "SELECT chunkbatch.run('purge_old_events')")
FLIP_RUN=$(psql_as demo_app -At -c "SELECT chunkbatch.run('complete_events')")
echo "queued run $PURGE_RUN (purge_old_events) and run $FLIP_RUN (complete_events)"

step "chunkbatch.status every second until both runs end"
START=$(date +%s)
while :; do
    active=$(psql_as demo_app -At -c "SELECT count(*) FROM chunkbatch.runs
        WHERE run_id IN ($PURGE_RUN, $FLIP_RUN)
          AND state IN ('queued', 'waiting', 'running', 'paused', 'interrupted')")
    [ "$active" -eq 0 ] && break
    elapsed=$(( $(date +%s) - START ))
    if [ "$elapsed" -ge "$TIMEOUT" ]; then
        psql_as postgres -c "SELECT * FROM chunkbatch.runs ORDER BY run_id"
        cb_die "the runs did not finish within $TIMEOUT s"
    fi
    echo "--- ${elapsed}s"
    psql_as demo_app -P footer=off -c "SELECT * FROM chunkbatch.status"
    sleep 1
done

step "finished runs"
psql_as demo_app <<'SQL'
SELECT run_id, job_name, state, rows_done, chunks_done,
       round(avg_chunk_ms::numeric, 1) AS avg_ms,
       round(max_chunk_ms::numeric, 1) AS max_ms,
       finished_at - started_at AS duration,
       round(rows_done / extract(epoch FROM finished_at - started_at)) AS rows_per_s
  FROM chunkbatch.runs ORDER BY run_id;
SELECT job_name, runs, succeeded, failed, total_rows, median_duration, mean_rows_per_sec
  FROM chunkbatch.job_stats;
SQL
grep -E 'chunkbatch run [0-9]+ of job' "$DEMO/server.log" | sed 's/^/server log: /' || true

step "check the result"
failed=0
check() {
    local what=$1 sql=$2 want=$3 got
    got=$(psql_as postgres -At -c "$sql")
    if [ "$got" = "$want" ]; then
        printf 'ok    %s (%s)\n' "$what" "$got"
    else
        printf 'FAIL  %s: got %s, expected %s\n' "$what" "$got" "$want"
        failed=1
    fi
}
check "purge run succeeded" "SELECT chunkbatch.wait($PURGE_RUN, '10 seconds')" succeeded
check "status run succeeded" "SELECT chunkbatch.wait($FLIP_RUN, '10 seconds')" succeeded
check "no row older than 6 months" \
    "SELECT count(*) FROM events WHERE created_at < now() - interval '6 months'" 0
check "the recent rows are all kept" "SELECT count(*) FROM events" $((ROWS - ROWS / 2))
check "no INIT or FAIL row left" \
    "SELECT count(*) FROM events WHERE status IN ('INIT', 'FAIL')" 0
check "purge rows_done = rows deleted" \
    "SELECT rows_done FROM chunkbatch.runs WHERE run_id = $PURGE_RUN" $((ROWS / 2))
check "updated rows counted once each" \
    "SELECT (SELECT rows_done FROM chunkbatch.runs WHERE run_id = $FLIP_RUN)
            = (SELECT count(*) FROM events WHERE retries = 1)
        AND NOT EXISTS (SELECT FROM events WHERE retries > 1)" t

if [ "$failed" -ne 0 ]; then
    cb_die "the demo's checks failed"
fi
echo
echo "demo finished: all checks passed"
