#!/usr/bin/env bash
# bench/run.sh: chunkbatch against the alternatives; regenerates bench/RESULTS.md.
#
#   bash bench/run.sh            full run (as root on Debian 12), ~12 min at 1M rows
#   BENCH_SIZES="1000000 10000000" BENCH_LARGE_REPS=1 bash bench/run.sh
#                                what produced RESULTS.md: adds cb_keyset_1000 on a
#                                10M-row table (~3 min more)
#   bash bench/run.sh --smoke    tiny sizes, 1 repetition, < 2 min (for CI); writes
#                                its report to bench/work/RESULTS-smoke.md, never to
#                                bench/RESULTS.md
#
# Like scripts/demo.sh it installs the missing packages, copies the tree to
# /tmp, builds and installs the extension, and runs a throwaway PostgreSQL 15
# cluster as the postgres OS user (unix socket only, in a temporary
# directory), removed on exit, also on failure.
#
# Workloads (table events: id bigint PK, created_at (unique, increasing with
# id), status, retries, payload; indexes on created_at and on status; half
# the rows are INIT/FAIL, the other half COMPLETE):
#   purge  delete the older half, found through the created_at index
#   flip   INIT/FAIL -> COMPLETE, retries + 1 (half the rows)
# Methods: see METHODS_ALL below and RESULTS.md.  Every batch measurement runs
# on a freshly rebuilt table (then VACUUM ANALYZE, CHECKPOINT) while pgbench
# runs 4 clients at a fixed rate updating rows of the batch's target set plus
# a point read; the per-transaction log gives p50/p99/max latency.
#
# Environment:
#   BENCH_SIZES="1000000"          table sizes; the first size runs every method,
#                                  the others BENCH_LARGE_METHODS only
#   BENCH_REPS=3                   repetitions (medians are reported)
#   BENCH_METHODS=all              methods for the first size (space separated ids)
#   BENCH_WORKLOADS="purge flip"
#   BENCH_LARGE_METHODS="cb_keyset_1000"   methods at the other sizes (no
#                                  no-batch baseline there)
#   BENCH_LARGE_REPS=$BENCH_REPS   repetitions at the other sizes
#   BENCH_LARGE_WORKLOADS=$BENCH_WORKLOADS
#   BENCH_OLTP_RATE=200            pgbench -R (4 clients)
#   BENCH_BASELINE_SECS=10         length of each no-batch OLTP window
#   BENCH_CLIENT_LOOP_ROWS=50000   the psql-per-chunk loop stops after this many rows
#   BENCH_FIRST_CHUNK_RUNS=20      run() -> first committed chunk samples
#   BENCH_PROBE_ROWS="1000000 10000000"  rows processed by the worker-memory probe
#   BENCH_OUT=bench/RESULTS.md     report path
#   BENCH_PORT=54391  BENCH_KEEP=1 (keep the work directory)

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/../scripts/setup.sh"

SMOKE=0
case "${1:-}" in
    --smoke) SMOKE=1 ;;
    "") ;;
    *) echo "usage: bash bench/run.sh [--smoke]" >&2; exit 2 ;;
esac

METHODS_ALL="stmt plpgsql_1000 plpgsql_10000 client_1000 cb_keyset_1000 cb_keyset_10000 cb_repeat_1000 cb_repeat_10000 cb_adaptive_50ms cb_keyset_1000_sync cb_adaptive_50ms_in cb_repeat_1000_wait"

if [ "$SMOKE" = 1 ]; then
    SIZES=${BENCH_SIZES:-20000}
    REPS=${BENCH_REPS:-1}
    BASELINE_SECS=${BENCH_BASELINE_SECS:-2}
    CLIENT_LOOP_ROWS=${BENCH_CLIENT_LOOP_ROWS:-3000}
    FC_RUNS=${BENCH_FIRST_CHUNK_RUNS:-3}
    PROBE_ROWS=${BENCH_PROBE_ROWS:-"10000 100000"}
    SETTLE=0.3
    OUT=${BENCH_OUT:-$BENCH_DIR/work/RESULTS-smoke.md}
else
    SIZES=${BENCH_SIZES:-1000000}
    REPS=${BENCH_REPS:-3}
    BASELINE_SECS=${BENCH_BASELINE_SECS:-10}
    CLIENT_LOOP_ROWS=${BENCH_CLIENT_LOOP_ROWS:-50000}
    FC_RUNS=${BENCH_FIRST_CHUNK_RUNS:-20}
    PROBE_ROWS=${BENCH_PROBE_ROWS:-"1000000 10000000"}
    SETTLE=1
    OUT=${BENCH_OUT:-$BENCH_DIR/RESULTS.md}
fi
METHODS=${BENCH_METHODS:-all}
[ "$METHODS" = all ] && METHODS=$METHODS_ALL
LARGE_METHODS=${BENCH_LARGE_METHODS:-"cb_keyset_1000"}
WORKLOADS=${BENCH_WORKLOADS:-"purge flip"}
LARGE_REPS=${BENCH_LARGE_REPS:-$REPS}
LARGE_WORKLOADS=${BENCH_LARGE_WORKLOADS:-$WORKLOADS}
RATE=${BENCH_OLTP_RATE:-200}
CLIENTS=4
PORT=${BENCH_PORT:-54391}
ADAPTIVE_TARGET_MS=50

START=$(date +%s)
TREE=""
WORK=""
PGB_PID=""

cleanup() {
    local rc=$?
    set +e
    [ -n "$PGB_PID" ] && kill "$PGB_PID" 2>/dev/null
    if [ -n "$WORK" ] && [ -f "$WORK/data/postmaster.pid" ]; then
        if [ "$rc" -ne 0 ] && [ -f "$WORK/server.log" ]; then
            echo "----- last lines of the server log -----" >&2
            tail -n 40 "$WORK/server.log" >&2
        fi
        cb_as_pg pg_ctl -D "$WORK/data" -m fast -w -t 60 stop >/dev/null ||
            cb_as_pg pg_ctl -D "$WORK/data" -m immediate -w stop >/dev/null
    fi
    if [ -n "$WORK" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
    fi
    [ -n "$TREE" ] && rm -rf "$TREE"
    echo "bench/run.sh: $(( ($(date +%s) - START) / 60 )) min, exit status $rc" >&2
    exit "$rc"
}
trap cleanup EXIT

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
now() { date +%s.%N; }

# psql as ROLE (default bench_app) on the bench database, run by root: the
# socket directory is root-accessible and authentication is trust.
PSQL=/usr/lib/postgresql/15/bin/psql
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
q() {   # q [-U role] SQL -> unaligned, tuples only
    local role=bench_app
    if [ "$1" = -U ]; then role=$2; shift 2; fi
    "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U "$role" -d bench -c "$1"
}
qf() {  # qf ROLE < script
    "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U "$1" -d bench "${@:2}"
}

# ---------------------------------------------------------------------------
log "set-up"
cb_install_packages
cb_stop_main_cluster
# the version built (the tree may change while the benchmark runs)
COMMIT_ID=$(git -C "$CB_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$CB_ROOT" status --porcelain -- src chunkbatch--1.0.sql Makefile 2>/dev/null | wc -l)
TREE=$(cb_copy_tree)
cb_build_install "$TREE" > "$TREE/build.log" 2>&1 || {
    cat "$TREE/build.log"
    cb_die "build or installation failed"
}
log "chunkbatch built and installed"

mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d /tmp/chunkbatch-bench.XXXXXX)
chmod 711 "$WORK"
mkdir -p "$WORK/pgb" "$WORK/tmp"
cb_give_to_pg "$WORK"
cb_as_pg initdb -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    > "$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log"; cb_die "initdb failed"; }
SETTINGS="listen_addresses = ''
port = $PORT
unix_socket_directories = '$WORK'
shared_preload_libraries = 'chunkbatch'
chunkbatch.naptime = 1
max_worker_processes = 16
shared_buffers = 1GB
max_wal_size = 4GB
autovacuum = on
track_commit_timestamp = on
log_line_prefix = '%m [%p] %q%a: '"
printf '\n# chunkbatch bench\n%s\n' "$SETTINGS" >> "$WORK/data/postgresql.conf"
cb_as_pg pg_ctl -D "$WORK/data" -l "$WORK/server.log" -w -t 60 start > /dev/null
"$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres -d postgres \
    -c 'CREATE DATABASE bench'
log "server running: psql -h $WORK -p $PORT -U postgres bench"

qf postgres <<'SQL'
CREATE EXTENSION chunkbatch;
CREATE ROLE bench_app LOGIN;
GRANT CREATE ON SCHEMA public TO bench_app;
GRANT pg_checkpoint TO bench_app;
SET ROLE bench_app;
CREATE TABLE bench_stop (stop boolean NOT NULL);
INSERT INTO bench_stop VALUES (false);
-- every measurement
CREATE TABLE results (
    size bigint, workload text, method text, rep int,
    rows bigint, secs float8, exec_secs float8, t0 float8, t1 float8,
    chunks bigint, avg_chunk_ms float8, max_chunk_ms float8, final_batch int,
    hwm_kb bigint, anon_kb bigint, extrapolated boolean, checked text);
-- pgbench per-transaction log lines: start = end - latency (with -R the
-- latency counts from the scheduled start, so queueing behind a lock counts)
CREATE TABLE oltp (tag text, lat_us bigint, end_s float8);
CREATE TABLE oltp_windows (tag text, size bigint, workload text, method text,
                           rep int, t0 float8, t1 float8);
CREATE TABLE first_chunk (i int, t0 float8, commit_s float8);
CREATE TABLE fc_log (i int, at timestamptz);
CREATE TABLE probe (mode text, rows bigint, chunks bigint, avg_chunk_ms float8, secs float8,
                    hwm_kb bigint, anon_kb bigint);

-- The hand-written alternative: a procedure that runs the job's chunk SQL
-- (the same text, the same $1 $2 $3) in a keyset loop, COMMIT after each chunk.
CREATE PROCEDURE keyset_loop(chunk_sql text, batch int, start anyelement,
                             INOUT total bigint DEFAULT 0, INOUT chunks bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    last start%TYPE := start;
    n bigint;
    q text := 'WITH c(k) AS (' || chunk_sql || ') SELECT count(*), max(k) FROM c';
BEGIN
    LOOP
        EXECUTE q INTO n, last USING batch, last, '{}'::jsonb;
        EXIT WHEN n = 0;
        total := total + n;
        chunks := chunks + 1;
        COMMIT;
    END LOOP;
END
$$;
SQL

# ---------------------------------------------------------------------------
# chunk SQL: $1 chunk size, $2 keyset cursor, $3 params.  CUTOFF is set per size.
chunk_sql() {   # chunk_sql WORKLOAD MODE(keyset|repeat)
    case "$1/$2" in
        purge/keyset) echo "DELETE FROM events WHERE created_at < $CUTOFF AND (\$2 IS NULL OR created_at > \$2) AND created_at <= (SELECT max(created_at) FROM (SELECT created_at FROM events WHERE created_at < $CUTOFF AND (\$2 IS NULL OR created_at > \$2) ORDER BY created_at LIMIT \$1) s) RETURNING created_at" ;;
        purge/keyset_in) echo "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < $CUTOFF AND (\$2 IS NULL OR created_at > \$2) ORDER BY created_at LIMIT \$1) RETURNING created_at" ;;
        flip/keyset_in)  echo "UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE id IN (SELECT id FROM events WHERE (\$2 IS NULL OR id > \$2) AND status IN ('INIT', 'FAIL') ORDER BY id LIMIT \$1) RETURNING id" ;;
        purge/repeat) echo "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < $CUTOFF ORDER BY created_at LIMIT \$1)" ;;
        flip/keyset)  echo "UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE (\$2 IS NULL OR id > \$2) AND status IN ('INIT', 'FAIL') AND id <= (SELECT max(id) FROM (SELECT id FROM events WHERE (\$2 IS NULL OR id > \$2) AND status IN ('INIT', 'FAIL') ORDER BY id LIMIT \$1) s) RETURNING id" ;;
        flip/repeat)  echo "UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE id IN (SELECT id FROM events WHERE status IN ('INIT', 'FAIL') LIMIT \$1)" ;;
    esac
}
one_statement() {
    case "$1" in
        purge) echo "DELETE FROM events WHERE created_at < $CUTOFF" ;;
        flip)  echo "UPDATE events SET status = 'COMPLETE', retries = retries + 1 WHERE status IN ('INIT', 'FAIL')" ;;
    esac
}
cursor_type() { case "$1" in purge) echo timestamptz ;; flip) echo bigint ;; esac; }
remaining_sql() {
    case "$1" in
        purge) echo "SELECT count(*) FROM events WHERE created_at < $CUTOFF" ;;
        flip)  echo "SELECT count(*) FROM events WHERE status IN ('INIT', 'FAIL')" ;;
    esac
}

make_template() {   # make_template SIZE
    local n=$1
    CUTOFF="to_timestamp($((1577836800 + n / 2 + 1)))"
    qf bench_app <<SQL
DROP TABLE IF EXISTS events_tpl;
CREATE TABLE events_tpl AS
SELECT i::bigint AS id,
       to_timestamp(1577836800 + i) AS created_at,
       (CASE i % 4 WHEN 0 THEN 'INIT' WHEN 1 THEN 'FAIL' ELSE 'COMPLETE' END) AS status,
       0 AS retries,
       md5(i::text) AS payload
  FROM generate_series(1, $n) AS i;
-- Vacuumed now, so that autovacuum has nothing to do on it during the
-- measurements that follow.
VACUUM (FREEZE, ANALYZE) events_tpl;
SQL
}

reset_table() {
    qf bench_app <<'SQL'
DROP TABLE IF EXISTS events;
CREATE TABLE events (id bigint NOT NULL, created_at timestamptz NOT NULL,
                     status text NOT NULL, retries int NOT NULL DEFAULT 0, payload text);
INSERT INTO events SELECT * FROM events_tpl;
ALTER TABLE events ADD PRIMARY KEY (id);
CREATE INDEX events_created_at_idx ON events (created_at);
CREATE INDEX events_status_idx ON events (status);
VACUUM (ANALYZE) events;
CHECKPOINT;
SQL
}

create_jobs() {   # (re)create the chunkbatch jobs for the current CUTOFF
    local w
    q "SELECT chunkbatch.drop_job(job_name) FROM chunkbatch.jobs WHERE job_name LIKE 'b\_%'" >/dev/null
    for w in $WORKLOADS; do
        local ks rs ct
        ks=$(chunk_sql "$w" keyset); rs=$(chunk_sql "$w" repeat); ct=$(cursor_type "$w")
        qf bench_app -v ks="$ks" -v rs="$rs" -v ct="$ct" -v w="$w" -v tgt="$ADAPTIVE_TARGET_MS" \
           -v ki="$(chunk_sql "$w" keyset_in)" <<'SQL' >/dev/null
SELECT chunkbatch.create_job('b_' || :'w' || '_keyset_1000', :'ks', batch_size => 1000, cursor_type => :'ct');
SELECT chunkbatch.create_job('b_' || :'w' || '_keyset_10000', :'ks', batch_size => 10000, cursor_type => :'ct');
SELECT chunkbatch.create_job('b_' || :'w' || '_repeat_1000', :'rs', batch_size => 1000);
SELECT chunkbatch.create_job('b_' || :'w' || '_repeat_10000', :'rs', batch_size => 10000);
SELECT chunkbatch.create_job('b_' || :'w' || '_adaptive_50ms', :'ks', batch_size => 1000, cursor_type => :'ct', target_chunk_ms => :tgt);
SELECT chunkbatch.create_job('b_' || :'w' || '_keyset_1000_sync', :'ks', batch_size => 1000, cursor_type => :'ct', synchronous_commit => true);
SELECT chunkbatch.create_job('b_' || :'w' || '_adaptive_50ms_in', :'ki', batch_size => 1000, cursor_type => :'ct', target_chunk_ms => :tgt);
SELECT chunkbatch.create_job('b_' || :'w' || '_repeat_1000_wait', :'rs', batch_size => 1000);
SQL
    done
}

# --- pgbench ----------------------------------------------------------------
write_pgbench_scripts() {
    cat > "$WORK/oltp_purge.sql" <<'EOF'
\set id random(1, :half)
\set id2 random(1, :n)
UPDATE events SET payload = md5(payload) WHERE id = :id;
SELECT (SELECT payload FROM events WHERE id = :id2), 1 / (SELECT CASE WHEN stop THEN 0 ELSE 1 END FROM bench_stop);
EOF
    cat > "$WORK/oltp_flip.sql" <<'EOF'
\set k random(1, :quarter)
\set id 4 * :k
\set id2 random(1, :n)
UPDATE events SET payload = md5(payload) WHERE id = :id;
SELECT (SELECT payload FROM events WHERE id = :id2), 1 / (SELECT CASE WHEN stop THEN 0 ELSE 1 END FROM bench_stop);
EOF
}

pgbench_start() {   # pgbench_start WORKLOAD SIZE TAG
    q "UPDATE bench_stop SET stop = false"
    (cd "$WORK/pgb" && exec "$PGBENCH" -n -h "$WORK" -p "$PORT" -U bench_app \
        -c "$CLIENTS" -j 1 -R "$RATE" -T 3600 -f "$WORK/oltp_$1.sql" \
        -D n="$2" -D half=$(($2 / 2)) -D quarter=$(($2 / 4)) \
        -l --log-prefix="$WORK/pgb/$3" bench > "$WORK/pgb/$3.out" 2>&1) &
    PGB_PID=$!
    sleep "$SETTLE"
}

pgbench_stop() {    # pgbench_stop TAG: stop the clients, load the log
    local tag=$1 i
    sleep "$SETTLE"
    q "UPDATE bench_stop SET stop = true"
    for i in $(seq 1 300); do
        kill -0 "$PGB_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$PGB_PID" 2>/dev/null; then
        log "pgbench did not stop; killing it"
        kill "$PGB_PID" 2>/dev/null || true
    fi
    wait "$PGB_PID" 2>/dev/null || true
    PGB_PID=""
    # client_id transaction_no time script_no time_epoch time_us schedule_lag
    cat "$WORK/pgb/$tag".* 2>/dev/null |
        awk -v tag="$tag" '$3 ~ /^[0-9]+$/ { printf "%s,%s,%s.%06d\n", tag, $3, $5, $6 }' \
        > "$WORK/pgb/$tag.csv"
    qf bench_app -c "\\copy oltp FROM '$WORK/pgb/$tag.csv' WITH (FORMAT csv)"
    rm -f "$WORK/pgb/$tag".[0-9]*
}

# --- worker memory sampler ---------------------------------------------------
# sample_worker COND OUTFILE: wait for the worker pid of the run that
# matches COND (SQL on chunkbatch.runs), then read its
# /proc status every 0.1 s until it exits; writes "peak_VmHWM_kB peak_RssAnon_kB".
sample_worker() {
    local cond=$1 out=$2 pid="" hwm=0 anon=0 v k i
    for i in $(seq 1 200); do
        pid=$(q "SELECT worker_pid FROM chunkbatch.runs WHERE $cond AND worker_pid IS NOT NULL
                 UNION ALL SELECT -1 FROM chunkbatch.runs WHERE $cond AND finished_at IS NOT NULL LIMIT 1" 2>/dev/null || true)
        [ -n "$pid" ] && break
        sleep 0.02
    done
    if [ -n "$pid" ] && [ "$pid" != -1 ]; then
        while [ -r "/proc/$pid/status" ]; do
            while read -r k v _; do
                case $k in
                    VmHWM:) [ "$v" -gt "$hwm" ] && hwm=$v ;;
                    RssAnon:) [ "$v" -gt "$anon" ] && anon=$v ;;
                esac
            done < "/proc/$pid/status" 2>/dev/null || true
            sleep 0.1
        done
    fi
    [ "$hwm" = 0 ] && hwm=NULL
    [ "$anon" = 0 ] && anon=NULL
    echo "$hwm $anon" > "$out"
}

# --- one measurement -------------------------------------------------------
# Each method prints: rows secs exec_secs t0 t1 chunks avg_ms max_ms final_batch hwm anon extrapolated
run_stmt() {   # WORKLOAD
    local sql out
    sql=$(one_statement "$1")
    out=$(qf bench_app <<SQL
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
$sql;
\set rows :ROW_COUNT
SELECT :rows, extract(epoch FROM clock_timestamp()) - :t0, :t0, extract(epoch FROM clock_timestamp());
SQL
)
    IFS='|' read -r rows secs t0 t1 <<< "$out"
    echo "$rows $secs $secs $t0 $t1 1 NULL NULL NULL NULL NULL false"
}


run_plpgsql() {   # WORKLOAD BATCH
    local out ks ct rows secs t0 t1 chunks
    ks=$(chunk_sql "$1" keyset); ct=$(cursor_type "$1")
    out=$(qf bench_app -v ks="$ks" -v ct="$ct" -v b="$2" <<'SQL'
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
CALL keyset_loop(:'ks', :b, CAST(NULL AS :ct)) \gset
SELECT :total, extract(epoch FROM clock_timestamp()) - :t0, :t0, extract(epoch FROM clock_timestamp()), :chunks;
SQL
)
    IFS='|' read -r rows secs t0 t1 chunks <<< "$out"
    echo "$rows $secs $secs $t0 $t1 $chunks NULL NULL $2 NULL NULL false"
}

# One psql process (one connection) per 1000-row chunk, keyset, same chunk
# SQL with $1 $2 $3 written in as literals; stops after CLIENT_LOOP_ROWS rows.
run_client() {   # WORKLOAD
    local ks ct sql last rows=0 chunks=0 t0 t1 out n k extrap=false
    ks=$(chunk_sql "$1" keyset); ct=$(cursor_type "$1")
    last="CAST(NULL AS $ct)"
    t0=$(now)
    while :; do
        if [ "$rows" -ge "$CLIENT_LOOP_ROWS" ]; then extrap=true; break; fi
        sql=${ks//\$1/1000}
        sql=${sql//\$2/$last}
        sql=${sql//\$3/\'\{\}\'::jsonb}
        out=$("$PSQL" -X -q -At -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U bench_app -d bench \
              -c "WITH c(k) AS ($sql) SELECT count(*), max(k) FROM c")
        IFS='|' read -r n k <<< "$out"
        [ "$n" -eq 0 ] && break
        rows=$((rows + n)); chunks=$((chunks + 1))
        last="CAST('$k' AS $ct)"
    done
    t1=$(now)
    echo "$rows $(awk "BEGIN { printf \"%.6f\", $t1 - $t0 }") $(awk "BEGIN { printf \"%.6f\", $t1 - $t0 }") $t0 $t1 $chunks NULL NULL 1000 NULL NULL $extrap"
}

# Run a chunkbatch job and wait for its end in one session, like the
# PL/pgSQL procedure's CALL.  Mode "call": CALL chunkbatch.run_and_wait(),
# which commits between its looks at the run (no snapshot held during the
# run).  Mode "wait": SELECT chunkbatch.run(), then block in
# chunkbatch.wait(), whose statement snapshot holds back the xmin horizon
# meanwhile.  While the run executes, its worker's memory is sampled.
# Prints "t0|run_id|state|VmHWM kB|RssAnon kB"; t0 is clock_timestamp() just
# before the run was queued, in the same session.
cb_run_sampled() {   # cb_run_sampled JOB PARAMS_JSON MODE
    local prev out sp hwm anon
    prev=$(q "SELECT coalesce(max(run_id), 0) FROM chunkbatch.runs")
    sample_worker "job_name = '$1' AND run_id > $prev" "$WORK/tmp/rss" &
    sp=$!
    if [ "$3" = wait ]; then
        out=$(qf bench_app <<SQL
SELECT extract(epoch FROM clock_timestamp()) AS t0, chunkbatch.run('$1', '$2') AS run_id \gset
SELECT :t0, :run_id, chunkbatch.wait(:run_id);
SQL
)
    else
        out=$(qf bench_app <<SQL
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
CALL chunkbatch.run_and_wait('$1', '$2') \gset
SELECT :t0, :run_id, state FROM chunkbatch.runs WHERE run_id = :run_id;
SQL
)
    fi
    wait "$sp" || true
    read -r hwm anon < "$WORK/tmp/rss"
    echo "$out|$hwm|$anon"
}

run_cb() {   # WORKLOAD JOB_SUFFIX (a suffix ending in _wait waits in chunkbatch.wait())
    local job="b_$1_$2" mode=call t0 run state hwm anon out
    [[ $2 == *_wait ]] && mode=wait
    IFS='|' read -r t0 run state hwm anon <<< "$(cb_run_sampled "$job" '{}' "$mode")"
    if [ "$state" != succeeded ]; then
        q "SELECT * FROM chunkbatch.runs WHERE run_id = $run" >&2
        cb_die "run $run of $job ended $state"
    fi
    out=$(q "SELECT rows_done, extract(epoch FROM finished_at) - $t0,
                    extract(epoch FROM finished_at - started_at), $t0, extract(epoch FROM finished_at),
                    chunks_done, round(avg_chunk_ms::numeric, 3), round(max_chunk_ms::numeric, 3), batch_size
               FROM chunkbatch.runs WHERE run_id = $run")
    IFS='|' read -r rows secs exec t0 t1 chunks avg max fb <<< "$out"
    echo "$rows $secs $exec $t0 $t1 $chunks $avg $max $fb $hwm $anon false"
}

measure() {   # measure SIZE WORKLOAD METHOD REP
    local size=$1 w=$2 m=$3 rep=$4 tag res rem checked
    local rows secs exec t0 t1 chunks avg max fb hwm anon extrap
    tag="${size}_${w}_${m}_${rep}"
    reset_table
    pgbench_start "$w" "$size" "$tag"
    case $m in
        none)
            t0=$(now); sleep "$BASELINE_SECS"; t1=$(now)
            res="0 $(awk "BEGIN { printf \"%.6f\", $t1 - $t0 }") NULL $t0 $t1 NULL NULL NULL NULL NULL NULL false" ;;
        stmt)          res=$(run_stmt "$w") ;;
        plpgsql_1000)  res=$(run_plpgsql "$w" 1000) ;;
        plpgsql_10000) res=$(run_plpgsql "$w" 10000) ;;
        client_1000)   res=$(run_client "$w") ;;
        cb_*)          res=$(run_cb "$w" "${m#cb_}") ;;
        *) cb_die "unknown method $m" ;;
    esac
    pgbench_stop "$tag"
    read -r rows secs exec t0 t1 chunks avg max fb hwm anon extrap <<< "$res"
    rem=$(q "$(remaining_sql "$w")")
    if [ "$m" = none ]; then checked="baseline"
    elif [ "$extrap" = true ]; then checked="partial: $rows done, $rem left (rate extrapolated)"
    elif [ "$rem" = 0 ] && [ "$rows" -eq $((size / 2)) ]; then checked="ok"
    else checked="CHECK FAILED: $rows rows reported, $rem target rows left"
    fi
    q "INSERT INTO results VALUES ($size, '$w', '$m', $rep, $rows, $secs, $exec, $t0, $t1,
         $chunks, $avg, $max, $fb, $hwm, $anon, $extrap, '$checked');
       INSERT INTO oltp_windows VALUES ('$tag', $size, '$w', '$m', $rep, $t0, $t1)"
    log "$(printf '%-8s %-5s %-20s rep %d: %8s rows in %7.2f s  %s' "$size" "$w" "$m" "$rep" "$rows" "$secs" "$checked")"
}

# ---------------------------------------------------------------------------
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
write_pgbench_scripts
first=1
for size in $SIZES; do
    if [ "$first" = 1 ]; then mlist="none $METHODS"; reps=$REPS; wlist=$WORKLOADS
    else mlist=$LARGE_METHODS; reps=$LARGE_REPS; wlist=$LARGE_WORKLOADS; fi
    log "size $size: building the template table"
    make_template "$size"
    reset_table
    create_jobs
    for rep in $(seq 1 "$reps"); do
        for w in $wlist; do
            for m in $mlist; do
                measure "$size" "$w" "$m" "$rep"
            done
        done
    done
    first=0
done
q "DROP TABLE IF EXISTS events; DROP TABLE IF EXISTS events_tpl; CHECKPOINT"

# run() -> first committed chunk.  The chunk inserts a row; its commit time
# comes from track_commit_timestamp (pg_xact_commit_timestamp(xmin)), the
# start from clock_timestamp() evaluated in the same SELECT just before run().
log "run() -> first committed chunk, $FC_RUNS runs"
q "SELECT chunkbatch.create_job('b_fc',
     \$\$INSERT INTO fc_log SELECT (\$3->>'i')::int, clock_timestamp() WHERE \$2 IS NULL RETURNING 1::bigint\$\$,
     cursor_type => 'bigint')" > /dev/null
for i in $(seq 1 "$FC_RUNS"); do
    IFS='|' read -r t0 run <<< "$(q "SELECT extract(epoch FROM clock_timestamp()), chunkbatch.run('b_fc', jsonb_build_object('i', $i))")"
    state=$(q "SELECT chunkbatch.wait($run)")
    [ "$state" = succeeded ] || cb_die "first-chunk run $run ended $state"
    q "INSERT INTO first_chunk SELECT $i, $t0, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM fc_log WHERE i = $i"
    sleep 0.2
done

# Worker memory and per-chunk time against rows processed, independent of
# any table: a keyset job that SELECTs the next 1000 integers of a series.
log "worker memory probe: $PROBE_ROWS rows"
q "SELECT chunkbatch.create_job('b_probe',
     \$\$SELECT g FROM generate_series(coalesce(\$2, 0) + 1, least(coalesce(\$2, 0) + \$1, (\$3->>'n')::bigint)) AS g\$\$,
     batch_size => 1000, cursor_type => 'bigint')" > /dev/null
for rep in $(seq 1 "$REPS"); do
    for n in $PROBE_ROWS; do
      for mode in call wait; do
        IFS='|' read -r t0 run state hwm anon <<< "$(cb_run_sampled b_probe "{\"n\": $n}" "$mode")"
        [ "$state" = succeeded ] || cb_die "probe run $run ended $state"
        q "INSERT INTO probe SELECT '$mode', rows_done, chunks_done, avg_chunk_ms,
             extract(epoch FROM finished_at - started_at), $hwm, $anon
             FROM chunkbatch.runs WHERE run_id = $run"
        log "probe $n rows ($mode): $(q "SELECT chunks_done || ' chunks in ' || round(extract(epoch FROM finished_at - started_at)::numeric, 2) || ' s, avg statement ' || round(avg_chunk_ms::numeric, 3) || ' ms' FROM chunkbatch.runs WHERE run_id = $run"), VmHWM $hwm kB, RssAnon $anon kB"
      done
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# RESULTS.md, computed from the tables above
log "writing $OUT"
PG_VERSION=$(q "SELECT version()")
PG_SETTINGS=$(q "SELECT name || ' = ' || setting || coalesce(' ' || unit, '') FROM pg_settings
                 WHERE source = 'configuration file' AND name NOT IN ('port', 'unix_socket_directories', 'listen_addresses', 'log_line_prefix')
                    OR name IN ('synchronous_commit', 'chunkbatch.scheduler_idle_exit', 'chunkbatch.max_workers', 'work_mem', 'checkpoint_timeout', 'wal_level', 'fsync')
                 ORDER BY name")
ELAPSED=$(( $(date +%s) - START ))
FIRST_SIZE=${SIZES%% *}
ORDER="none $METHODS_ALL"

{
cat <<EOF
# chunkbatch benchmark results

Generated by \`bash bench/run.sh$([ "$SMOKE" = 1 ] && echo " --smoke")\` on $(date -u '+%Y-%m-%d %H:%M UTC') in $((ELAPSED / 60)) min $((ELAPSED % 60)) s.
Do not edit by hand: rerun the script.

## Machine and settings

- CPUs (nproc): $(nproc); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
- memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); kernel $(uname -r)
- $PG_VERSION
- chunkbatch: git $COMMIT_ID$([ "$DIRTY" -gt 0 ] && echo " with $DIRTY uncommitted change(s) in src/, the SQL script or the Makefile")
- load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END
- environment: $(env | grep '^BENCH_' | sort | tr '\n' ' ')
- sizes run: $SIZES rows$( [ "$SIZES" = "$FIRST_SIZE" ] && echo " (10M not run: set BENCH_SIZES=\"1000000 10000000\")" ); all methods ($METHODS) at $FIRST_SIZE rows with $REPS repetition(s)$( [ "$SIZES" != "$FIRST_SIZE" ] && echo "; at the larger sizes only $LARGE_METHODS on $LARGE_WORKLOADS, $LARGE_REPS repetition(s), no no-batch baseline")
- OLTP load: pgbench, $CLIENTS clients, 1 thread, fixed rate -R $RATE tx/s; no-batch windows of $BASELINE_SECS s
- server settings (postgresql.conf additions and a few defaults):

\`\`\`
$PG_SETTINGS
\`\`\`

**Noise.** The machine has $(nproc) CPUs and other test suites may have been
running on it at the same time (see the load average above). Absolute times
are therefore not comparable between runs of this script; only ratios of
methods measured side by side in this one run mean something, and even those
carry a few percent of noise (compare the per-repetition figures below).

## Method

- Table \`events(id bigint PK, created_at timestamptz, status text, retries int, payload text)\`
  with indexes on \`created_at\` and on \`status\`; \`created_at\` is unique and increases with
  \`id\`; a quarter of the rows are INIT, a quarter FAIL, half COMPLETE. Every measurement runs
  on a fresh copy of the table (insert from a template, indexes, \`VACUUM ANALYZE\`, \`CHECKPOINT\`),
  as the LOGIN role \`bench_app\` (also the chunkbatch jobs' owner).
- **purge**: delete the older half (created_at below a cutoff), found through the created_at index.
  **flip**: \`status = 'COMPLETE', retries = retries + 1\` for INIT/FAIL (half the rows). Both change
  $((FIRST_SIZE / 2)) rows at $FIRST_SIZE rows; every run is checked (no target row left, rows counted = rows changed).
- Chunk SQL, identical for the PL/pgSQL procedure, the psql loop and chunkbatch keyset jobs
  (fixed and adaptive): a key range, whose upper end is the \$1-th next key (an index-only
  scan), so every chunk is one index range scan whatever its size:
  - purge keyset (cursor timestamptz): \`$(CUTOFF='<cutoff>'; chunk_sql purge keyset)\`
  - flip keyset (cursor bigint): \`$(chunk_sql flip keyset)\`
  - purge repeat (chunkbatch only): \`$(CUTOFF='<cutoff>'; chunk_sql purge repeat)\`
  - flip repeat (chunkbatch only): \`$(chunk_sql flip repeat)\`
- The PL/pgSQL procedure runs \`EXECUTE 'WITH c(k) AS (<chunk SQL>) SELECT count(*), max(k) FROM c' INTO n, last USING size, last, '{}'\`
  and \`COMMIT\` in a loop until a chunk returns no row (custom plans each chunk, like chunkbatch).
  It commits with the server's \`synchronous_commit\` (on); chunkbatch jobs commit chunks with
  \`synchronous_commit = off\` by default (its documented default, safe because the checkpoint is in
  the same transaction), so \`cb_keyset_1000_sync\` repeats keyset 1000 with \`synchronous_commit => true\`.
- The psql loop starts one \`psql -c\` (one connection) per 1000-row chunk with \$1, \$2, \$3 written in
  as literals. It is slow, so it stops after $CLIENT_LOOP_ROWS rows and its rows/s is that sample's rate
  (extrapolated to the whole job; the table below marks it).
- Throughput = rows changed / wall time. One statement and PL/pgSQL: from \`clock_timestamp()\`
  before the statement or \`CALL\` to after it, in the same session. chunkbatch: from
  \`clock_timestamp()\` evaluated in the same \`SELECT\` just before \`run()\` to the run's \`finished_at\`
  (so queueing and worker start-up count); "exec rows/s" uses \`started_at\`..\`finished_at\` instead.
  Ratios are medians of rows/s divided by the one statement's median rows/s, same workload and size.
  Each chunkbatch run is queued and waited for in one session, like the procedure's \`CALL\`:
  \`CALL chunkbatch.run_and_wait(job)\`, which commits between its looks at the run. It does not sit in
  \`chunkbatch.wait()\`, because that call's statement snapshot holds back the xmin horizon for the
  whole run (see \`cb_repeat_1000_wait\` and the probe's \`wait\` mode, which measure that effect).
- Two diagnostic chunkbatch variants: \`cb_adaptive_50ms_in\` is the adaptive job with the common
  \`WHERE id IN (SELECT id ... LIMIT \$1)\` chunk SQL, whose plan switches to a hash semi join over a
  sequential scan of the whole table once \$1 reaches a few thousand rows (a *knee*: adaptive sizing
  grows into it once, then caps the chunk size below it):
  - purge: \`$(CUTOFF='<cutoff>'; chunk_sql purge keyset_in)\`
  - flip: \`$(chunk_sql flip keyset_in)\`

  \`cb_repeat_1000_wait\` is \`cb_repeat_1000\` with the benchmark session blocked in
  \`chunkbatch.wait(run_id)\` during the run.
- OLTP: during every batch measurement pgbench runs $CLIENTS clients at $RATE tx/s in total; a transaction
  is one autocommit \`UPDATE events SET payload = md5(payload) WHERE id = <random row of the batch's
  target set>\` (purge: the old half; flip: the INIT rows) plus a point read of a random row. Latency is
  pgbench's per-transaction log (\`-l\`; with \`-R\` it counts from the scheduled start, so waiting behind a
  lock and the backlog it causes count). A transaction belongs to a window if its scheduled start falls
  between the batch's start and end. pgbench is stopped by a flag the read statement checks (the
  clients abort with a division by zero), so the logs are complete. p50/p99/max are per repetition;
  the tables show the median over repetitions and the worst max. With short batches (the one
  statement purge) a window holds few transactions, so its p99 is close to its max.
- Worker memory: while a chunkbatch run executes, \`/proc/<worker_pid>/status\` is read every 0.1 s:
  VmHWM (peak resident set; it includes the shared memory the process touched: shared buffers of the
  data it reads and the WAL buffers it cycles through, so it grows with the data and WAL a run produces)
  and the peak of RssAnon (the process's private memory: what a leak would grow). The flatness target is
  judged on RssAnon. Runs shorter than one sample interval have no figure.
- At 10M rows the table and its indexes (~2 GB) exceed shared_buffers (1 GB), so chunks there also
  read from the OS page cache; the 10M figures were measured with the repetitions stated above.
EOF

qf bench_app -v order="$ORDER" -v first="$FIRST_SIZE" -v target="$ADAPTIVE_TARGET_MS" \
   -v fc_runs="$FC_RUNS" -v sizes="$SIZES" <<'SQL'
CREATE FUNCTION pg_temp.f(x float8, d int) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN x IS NULL THEN '—' ELSE to_char(round(x::numeric, d), 'FM999,999,999,990' || CASE WHEN d > 0 THEN '.' || repeat('0', d) ELSE '' END) END $$;
CREATE FUNCTION pg_temp.label(m text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT CASE m
  WHEN 'none' THEN 'no batch running'
  WHEN 'stmt' THEN 'one statement, one transaction'
  WHEN 'plpgsql_1000' THEN 'PL/pgSQL procedure, keyset, COMMIT every 1000'
  WHEN 'plpgsql_10000' THEN 'PL/pgSQL procedure, keyset, COMMIT every 10000'
  WHEN 'client_1000' THEN 'client loop, one psql per 1000-row chunk (sampled, extrapolated)'
  WHEN 'cb_keyset_1000' THEN 'chunkbatch keyset, fixed 1000'
  WHEN 'cb_keyset_10000' THEN 'chunkbatch keyset, fixed 10000'
  WHEN 'cb_repeat_1000' THEN 'chunkbatch repeat, fixed 1000'
  WHEN 'cb_repeat_10000' THEN 'chunkbatch repeat, fixed 10000'
  WHEN 'cb_adaptive_50ms' THEN 'chunkbatch keyset, adaptive target_chunk_ms 50'
  WHEN 'cb_keyset_1000_sync' THEN 'chunkbatch keyset, fixed 1000, synchronous_commit on'
  WHEN 'cb_adaptive_50ms_in' THEN 'chunkbatch keyset, adaptive 50 ms, chunk SQL with IN (SELECT ... LIMIT $1)'
  WHEN 'cb_repeat_1000_wait' THEN 'chunkbatch repeat, fixed 1000, caller blocked in chunkbatch.wait()'
  ELSE m END $$;
CREATE TEMP TABLE ord AS SELECT m, i FROM unnest(string_to_array(:'order', ' ')) WITH ORDINALITY AS u(m, i);

CREATE TEMP TABLE s AS
SELECT size, workload, method, count(*) AS reps,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY rows / secs) AS rps,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY rows / exec_secs) AS exec_rps,
       string_agg(pg_temp.f(rows / secs, 0), ' / ' ORDER BY rep) AS rps_each,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY chunks) AS chunks,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY avg_chunk_ms) AS avg_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY max_chunk_ms) AS max_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY final_batch) AS final_batch,
       max(hwm_kb) AS hwm, max(anon_kb) AS anon,
       bool_or(extrapolated) AS extrapolated,
       bool_and(checked = 'ok' OR checked LIKE 'partial%') AS checks_ok,
       NULL::float8 AS ratio
  FROM results WHERE method <> 'none' GROUP BY 1, 2, 3;
UPDATE s SET ratio = s.rps / b.rps FROM s b
 WHERE b.size = s.size AND b.workload = s.workload AND b.method = 'stmt';

CREATE TEMP TABLE lat AS
SELECT w.size, w.workload, w.method, w.rep, count(o.lat_us) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY o.lat_us) / 1000 AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY o.lat_us) / 1000 AS p99,
       max(o.lat_us) / 1000.0 AS mx
  FROM oltp_windows w
  LEFT JOIN oltp o ON o.tag = w.tag AND o.end_s - o.lat_us / 1e6 BETWEEN w.t0 AND w.t1
 GROUP BY 1, 2, 3, 4;
CREATE TEMP TABLE l AS
SELECT size, workload, method,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY n) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p50) AS p50,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p99) AS p99,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY mx) AS mx,
       max(mx) AS worst
  FROM lat GROUP BY 1, 2, 3;
ALTER TABLE l ADD p99_ratio float8;
UPDATE l SET p99_ratio = l.p99 / b.p99 FROM l b
 WHERE b.size = l.size AND b.workload = l.workload AND b.method = 'none';

-- headline, one table per size
\echo
\echo '## Headline'
SELECT format(E'\n### %s rows (%s changed per workload; medians of %s repetitions)\n\n'
              '| method | purge rows/s | purge vs one statement | flip rows/s | flip vs one statement | OLTP p99 during batch (purge / flip) | OLTP max (purge / flip) |\n'
              '|---|---:|---:|---:|---:|---:|---:|',
              pg_temp.f(size, 0), pg_temp.f(size / 2, 0), max(reps))
  FROM s WHERE size = :first GROUP BY size;
SELECT format('| %s | %s | %s | %s | %s | %s ms / %s ms | %s ms / %s ms |',
              pg_temp.label(o.m),
              pg_temp.f(sp.rps, 0), pg_temp.f(sp.ratio, 2),
              pg_temp.f(sf.rps, 0), pg_temp.f(sf.ratio, 2),
              pg_temp.f(lp.p99, 1), pg_temp.f(lf.p99, 1), pg_temp.f(lp.worst, 1), pg_temp.f(lf.worst, 1))
  FROM ord o
  LEFT JOIN s sp ON sp.method = o.m AND sp.workload = 'purge' AND sp.size = :first
  LEFT JOIN s sf ON sf.method = o.m AND sf.workload = 'flip' AND sf.size = :first
  LEFT JOIN l lp ON lp.method = o.m AND lp.workload = 'purge' AND lp.size = :first
  LEFT JOIN l lf ON lf.method = o.m AND lf.workload = 'flip' AND lf.size = :first
 WHERE sp.method IS NOT NULL OR sf.method IS NOT NULL OR lp.method IS NOT NULL OR lf.method IS NOT NULL
 ORDER BY o.i;
\echo
\echo '(OLTP columns: median over repetitions of each window''s p99, and the worst max of any repetition.)'

-- targets
\echo
\echo '## Targets (issue 5)'
\echo
\echo '| target | figure reached | met? |'
\echo '|---|---|---|'
WITH t AS (
  SELECT 1 AS k, format('%s: chunkbatch keyset %s rows/s ≥ 1.0 × PL/pgSQL COMMIT loop (same chunk SQL and size)', c.workload, c.batch) AS target,
         c.rps / p.rps AS v,
         format('%s× (%s vs %s rows/s; exec-only %s×; with synchronous_commit on: %s)',
                pg_temp.f(c.rps / p.rps, 2), pg_temp.f(c.rps, 0), pg_temp.f(p.rps, 0),
                pg_temp.f(c.exec_rps / p.rps, 2),
                CASE WHEN c.batch = 1000 THEN coalesce(pg_temp.f(sy.rps / p.rps, 2) || '×', '—') ELSE 'not measured' END) AS fig,
         c.rps / p.rps >= 1.0 AS met, c.workload AS w, c.batch
    FROM (SELECT s.*, substring(method FROM '\d+$')::int AS batch FROM s
           WHERE method IN ('cb_keyset_1000', 'cb_keyset_10000') AND size = :first) c
    JOIN s p ON p.size = c.size AND p.workload = c.workload AND p.method = 'plpgsql_' || c.batch
    LEFT JOIN s sy ON sy.size = c.size AND sy.workload = c.workload AND sy.method = 'cb_keyset_1000_sync'
  UNION ALL
  SELECT 2, format('%s: adaptive (target_chunk_ms %s) ≥ 0.90 × one statement', workload, :target),
         ratio, format('%s× (%s vs %s rows/s)', pg_temp.f(ratio, 2), pg_temp.f(rps, 0), pg_temp.f(rps / ratio, 0)),
         ratio >= 0.9, workload, 0
    FROM s WHERE method = 'cb_adaptive_50ms' AND size = :first
  UNION ALL
  SELECT 3, format('%s: OLTP p99 during every chunkbatch run ≤ 3 × no-batch p99', workload),
         max(p99_ratio),
         format('worst %s× (%s: p99 %s ms vs %s ms without batch); over the limit: %s',
                pg_temp.f(max(p99_ratio), 2),
                (array_agg(method ORDER BY p99_ratio DESC))[1],
                pg_temp.f((array_agg(p99 ORDER BY p99_ratio DESC))[1], 1),
                pg_temp.f((array_agg(p99 / p99_ratio ORDER BY p99_ratio DESC))[1], 1),
                coalesce(string_agg(format('%s %s×', method, pg_temp.f(p99_ratio, 2)), ', ' ORDER BY p99_ratio DESC)
                         FILTER (WHERE p99_ratio > 3), 'none')),
         max(p99_ratio) <= 3, workload, 0
    FROM l WHERE method LIKE 'cb\_%' AND size = :first GROUP BY workload
  UNION ALL
  SELECT 4, format('%s: OLTP max during every chunkbatch run ≤ 2 × chunk target (%s ms)', workload, 2 * :target),
         max(worst),
         format('worst %s ms (%s); over the limit: %s', pg_temp.f(max(worst), 1), (array_agg(method ORDER BY worst DESC))[1],
                coalesce(string_agg(format('%s %s ms', method, pg_temp.f(worst, 1)), ', ' ORDER BY worst DESC)
                         FILTER (WHERE worst > 2 * :target), 'none')),
         max(worst) <= 2 * :target, workload, 0
    FROM l WHERE method LIKE 'cb\_%' AND size = :first GROUP BY workload
)
SELECT format('| %s | %s | %s |', target, fig, CASE WHEN met THEN 'yes' ELSE '**no**' END)
  FROM t ORDER BY k, w DESC, batch;

-- per-chunk time against table size
SELECT CASE WHEN count(DISTINCT size) < 2 THEN
         format('| keyset per-chunk time at 10M rows ≤ 1.15 × at 1M | not measured: only %s rows run (BENCH_SIZES); see the probe below for per-chunk time against rows processed | — |', :'sizes')
       END
  FROM results WHERE method LIKE 'cb_keyset%' HAVING count(DISTINCT size) < 2;
SELECT format('| %s %s: keyset per-chunk time at %s rows ≤ 1.15 × at %s | %s× (avg chunk %s ms vs %s ms) | %s |',
              b.workload, b.method, pg_temp.f(b.size, 0), pg_temp.f(a.size, 0),
              pg_temp.f(b.avg_ms / NULLIF(a.avg_ms, 0), 2), pg_temp.f(b.avg_ms, 2), pg_temp.f(a.avg_ms, 2),
              CASE WHEN b.avg_ms / NULLIF(a.avg_ms, 0) <= 1.15 THEN 'yes' ELSE '**no**' END)
  FROM s a JOIN s b ON b.workload = a.workload AND b.method = a.method AND b.size > a.size
 WHERE a.size = :first AND a.method IN ('cb_keyset_1000', 'cb_keyset_10000')
 ORDER BY b.workload DESC, b.method, b.size;
-- worker memory
SELECT format('| worker memory flat within 10%% (probe, %s vs %s rows processed) | peak RssAnon (private memory) %s kB vs %s kB: %s×; VmHWM %s kB vs %s kB: %s× (shared memory touched, see below) | %s |',
              pg_temp.f(hi.rows, 0), pg_temp.f(lo.rows, 0),
              pg_temp.f(hi.anon, 0), pg_temp.f(lo.anon, 0), pg_temp.f(hi.anon / NULLIF(lo.anon, 0), 2),
              pg_temp.f(hi.hwm, 0), pg_temp.f(lo.hwm, 0), pg_temp.f(hi.hwm / NULLIF(lo.hwm, 0), 2),
              CASE WHEN hi.anon / NULLIF(lo.anon, 0) IS NULL THEN '— (runs too short to sample)'
                   WHEN hi.anon / NULLIF(lo.anon, 0) <= 1.10 THEN 'yes (RssAnon)' ELSE '**no**' END)
  FROM (SELECT rows, max(anon_kb)::float8 AS anon, max(hwm_kb)::float8 AS hwm FROM probe WHERE mode = 'call' GROUP BY rows ORDER BY rows LIMIT 1) lo,
       (SELECT rows, max(anon_kb)::float8 AS anon, max(hwm_kb)::float8 AS hwm FROM probe WHERE mode = 'call' GROUP BY rows ORDER BY rows DESC LIMIT 1) hi
 WHERE hi.rows > lo.rows;
SELECT format('| %s %s: worker memory at %s vs %s rows | peak RssAnon %s× (%s vs %s kB); VmHWM %s× (%s vs %s kB, includes shared buffers touched) | %s |',
              b.workload, b.method, pg_temp.f(b.size, 0), pg_temp.f(a.size, 0),
              pg_temp.f(b.anon::float8 / NULLIF(a.anon, 0), 2), pg_temp.f(b.anon, 0), pg_temp.f(a.anon, 0),
              pg_temp.f(b.hwm::float8 / NULLIF(a.hwm, 0), 2), pg_temp.f(b.hwm, 0), pg_temp.f(a.hwm, 0),
              CASE WHEN b.anon::float8 / NULLIF(a.anon, 0) <= 1.10 THEN 'yes (RssAnon)' ELSE '**no**' END)
  FROM s a JOIN s b ON b.workload = a.workload AND b.method = a.method AND b.size > a.size
 WHERE a.size = :first AND a.method IN ('cb_keyset_1000', 'cb_keyset_10000')
 ORDER BY b.workload DESC, b.method, b.size;
SELECT format('| median run() → first committed chunk ≤ 50 ms | %s ms (median of %s; min %s, p90 %s, max %s ms) | %s |',
              pg_temp.f(med, 1), n, pg_temp.f(mn, 1), pg_temp.f(p90, 1), pg_temp.f(mx, 1),
              CASE WHEN med <= 50 THEN 'yes' ELSE '**no**' END)
  FROM (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS med,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY ms) AS p90,
               min(ms) AS mn, max(ms) AS mx, count(*) AS n
          FROM (SELECT (commit_s - t0) * 1000 AS ms FROM first_chunk) x) y;

-- details per size and workload
\echo
\echo '## Throughput and OLTP latency, per workload'
SELECT string_agg(block, E'\n' ORDER BY size, workload DESC) FROM (
  SELECT sw.size, sw.workload,
         format(E'\n### %s, %s rows\n\n'
                '| method | rows/s (median) | vs one statement | rows/s each repetition | exec rows/s | chunks | avg chunk ms | max chunk ms | final batch | OLTP tx in window | p50 ms | p99 ms | max ms (median) | worst max ms | p99 vs no batch |\n'
                '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n', sw.workload, pg_temp.f(sw.size, 0))
         || string_agg(format('| %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |',
                pg_temp.label(o.m), CASE WHEN s.checks_ok = false THEN ' (**check failed**)' ELSE '' END,
                pg_temp.f(s.rps, 0), pg_temp.f(s.ratio, 2), coalesce(s.rps_each, '—'),
                CASE WHEN o.m LIKE 'cb\_%' THEN pg_temp.f(s.exec_rps, 0) ELSE '—' END,
                pg_temp.f(s.chunks, 0), pg_temp.f(s.avg_ms, 1), pg_temp.f(s.max_ms, 1), pg_temp.f(s.final_batch, 0),
                pg_temp.f(l.n, 0), pg_temp.f(l.p50, 1), pg_temp.f(l.p99, 1), pg_temp.f(l.mx, 1), pg_temp.f(l.worst, 1),
                pg_temp.f(l.p99_ratio, 2)), E'\n' ORDER BY o.i) AS block
    FROM (SELECT DISTINCT size, workload FROM results) sw
    CROSS JOIN ord o
    LEFT JOIN s ON s.size = sw.size AND s.workload = sw.workload AND s.method = o.m
    LEFT JOIN l ON l.size = sw.size AND l.workload = sw.workload AND l.method = o.m
   WHERE s.method IS NOT NULL OR l.method IS NOT NULL
   GROUP BY sw.size, sw.workload) b;

\echo
\echo '## run() → first committed chunk'
\echo
\echo 'Job `b_fc` (keyset, bigint): its first chunk inserts one row and returns key 1, the second returns nothing.'
\echo 'Start: `clock_timestamp()` evaluated in the same `SELECT` just before `chunkbatch.run()` (autocommit, so the'
\echo 'caller''s commit is included). End: the commit time of the first chunk''s transaction, `pg_xact_commit_timestamp(xmin)`'
\echo 'of the inserted row (`track_commit_timestamp = on`). Runs are sequential, 0.2 s apart, so the database''s'
\echo 'scheduler is already running (it stays `chunkbatch.scheduler_idle_exit` s after its last run); a run worker is'
\echo 'started for each run.'
\echo
SELECT format('Per run (ms): %s', string_agg(pg_temp.f((commit_s - t0) * 1000, 1), ', ' ORDER BY i)) FROM first_chunk;

\echo
\echo '## Per-chunk time and worker memory against rows processed'
\echo
\echo 'Probe job `b_probe` (keyset, 1000 per chunk, no table: `SELECT g FROM generate_series($2 + 1, least($2 + $1, n))`),'
\echo 'so per-chunk time is chunkbatch''s own overhead (transaction, checkpoint row update, commit) and memory growth'
\echo 'can only come from the worker itself.'
\echo
\echo 'Mode `call`: the benchmark waits in `CALL chunkbatch.run_and_wait(...)`, which commits between its looks at the'
\echo 'run (as for every measurement above). Mode `wait`: a session sits in `SELECT chunkbatch.wait(run_id)` meanwhile.'
\echo '"statement ms" is the chunk statement alone (`avg_chunk_ms`); "wall ms per chunk" is the run''s duration / chunks,'
\echo 'so it includes the transaction, checkpoint update and commit.'
\echo
\echo '| rows processed | mode | chunks | statement ms per chunk (median) | wall ms per chunk (median) | rows/s (median) | peak VmHWM kB (max) | peak RssAnon kB (max) | runs |'
\echo '|---:|---|---:|---:|---:|---:|---:|---:|---:|'
SELECT format('| %s | %s | %s | %s | %s | %s | %s | %s | %s |', pg_temp.f(rows, 0), mode, pg_temp.f(percentile_cont(0.5) WITHIN GROUP (ORDER BY chunks), 0),
              pg_temp.f(percentile_cont(0.5) WITHIN GROUP (ORDER BY avg_chunk_ms), 3),
              pg_temp.f(percentile_cont(0.5) WITHIN GROUP (ORDER BY secs * 1000 / chunks), 3),
              pg_temp.f(percentile_cont(0.5) WITHIN GROUP (ORDER BY rows / secs), 0),
              pg_temp.f(max(hwm_kb), 0), pg_temp.f(max(anon_kb), 0), count(*))
  FROM probe GROUP BY rows, mode ORDER BY rows, mode DESC;
\echo
\echo 'Worker memory during the table workloads (max over repetitions):'
\echo
\echo '| size | workload | method | peak VmHWM kB | peak RssAnon kB | avg chunk ms |'
\echo '|---:|---|---|---:|---:|---:|'
SELECT format('| %s | %s | %s | %s | %s | %s |', pg_temp.f(size, 0), workload, method,
              pg_temp.f(hwm, 0), pg_temp.f(anon, 0), pg_temp.f(avg_ms, 2))
  FROM s JOIN ord ON ord.m = s.method WHERE method LIKE 'cb\_%' ORDER BY size, workload DESC, ord.i;

\echo
\echo '## Every measurement'
\echo
\echo '| size | workload | method | rep | rows | secs | exec secs | rows/s | chunks | avg chunk ms | max chunk ms | final batch | VmHWM kB | RssAnon kB | OLTP n | p50 ms | p99 ms | max ms | check |'
\echo '|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|'
SELECT format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |',
              r.size, r.workload, r.method, r.rep, r.rows, pg_temp.f(r.secs, 3), pg_temp.f(r.exec_secs, 3),
              CASE WHEN r.method = 'none' THEN '—' ELSE pg_temp.f(r.rows / r.secs, 0) END,
              coalesce(r.chunks::text, '—'), pg_temp.f(r.avg_chunk_ms, 2), pg_temp.f(r.max_chunk_ms, 1),
              coalesce(r.final_batch::text, '—'), coalesce(r.hwm_kb::text, '—'), coalesce(r.anon_kb::text, '—'),
              lat.n, pg_temp.f(lat.p50, 2), pg_temp.f(lat.p99, 2), pg_temp.f(lat.mx, 2), r.checked)
  FROM results r JOIN ord ON ord.m = r.method
  LEFT JOIN lat ON lat.size = r.size AND lat.workload = r.workload AND lat.method = r.method AND lat.rep = r.rep
 ORDER BY r.size, r.workload DESC, r.rep, ord.i;
SQL
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "wrote $OUT"
if [ "$SMOKE" = 1 ]; then
    sed -n '/^## Headline/,/^## Throughput/p' "$OUT"
fi
