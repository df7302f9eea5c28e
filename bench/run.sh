#!/usr/bin/env bash
# bench/run.sh: chunkbatch against the alternatives; regenerates bench/RESULTS.md.
#
#   bash bench/run.sh              full run (as root on Debian 12), ~12 min at 1M rows
#   BENCH_SIZES="1000000 10000000" BENCH_LARGE_REPS=1 bash bench/run.sh
#                                  adds cb_keyset_1000 on a 10M-row table
#   bash bench/run.sh --smoke      tiny sizes, 1 repetition, a few minutes; writes
#                                  bench/work/results-smoke.json and
#                                  bench/work/RESULTS-smoke.md, never bench/RESULTS.md
#   add --installed                benchmark the chunkbatch already installed
#                                  (no package check, no build, no installation)
#
# Like scripts/demo.sh it installs the missing packages, copies the tree to
# /tmp, builds and installs the extension.  Then bench/bench.pl, as the
# postgres OS user, runs the measurements on a throwaway cluster of
# PostgreSQL::Test::Cluster (its own port and unix socket directory) and
# writes bench/results/<UTC date>-<time>.json, from which bench/report.pl
# writes bench/RESULTS.md.  Settings: BENCH_* variables, see bench/README.md.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/../scripts/setup.sh"
. "$BENCH_DIR/lib.sh"
bench_args run "$@"

STAMP=$(date -u +%Y%m%d-%H%M)
if [ "$SMOKE" = 1 ]; then
    RESULTS=$BENCH_DIR/work/results-smoke.json
    OUT=${BENCH_OUT:-$BENCH_DIR/work/RESULTS-smoke.md}
else
    RESULTS=$BENCH_DIR/results/$STAMP.json
    OUT=${BENCH_OUT:-$BENCH_DIR/RESULTS.md}
fi

bench_prepare run "${BENCH_KEEP:-0}" "$BUILD"
PGXS_SRC=$(dirname "$(dirname "$("$CB_PG_CONFIG" --pgxs)")")   # .../lib/pgxs/src
ARGS=(--out "$WORK/results.json" --git "$GIT" --command "bash bench/run.sh${*:+ $*}")
[ "$SMOKE" = 1 ] && ARGS+=(--smoke)
ENVS=(TESTDIR="$WORK" PERL5LIB="$PGXS_SRC/test/perl" PG_REGRESS="$PGXS_SRC/test/regress/pg_regress")
[ "${BENCH_KEEP:-0}" = 1 ] && ENVS+=(PG_TEST_NOCLEAN=1)
# A failed check makes bench.pl exit non-zero after finishing the run: the
# report is written all the same (it marks the check), then we fail.  A run
# that stopped half-way leaves its results in bench/work/ and no report.
RC=0
(cd "$WORK" && cb_as_pg env "${ENVS[@]}" perl "$TREE/bench/bench.pl" "${ARGS[@]}") || RC=$?
if ! grep -q '"complete": true' "$WORK/results.json" 2>/dev/null; then
    mkdir -p "$BENCH_DIR/work"
    cp "$WORK/results.json" "$BENCH_DIR/work/results-incomplete.json" 2>/dev/null &&
        cb_log "incomplete results: bench/work/results-incomplete.json"
    [ "$RC" -ne 0 ] || RC=1
    exit "$RC"
fi

mkdir -p "$(dirname "$RESULTS")"
cp "$WORK/results.json" "$RESULTS"
perl "$BENCH_DIR/report.pl" --out "$OUT" "$RESULTS"
if [ "$SMOKE" = 1 ]; then
    sed -n '/^## Headline/,/^## Throughput/p' "$OUT"
fi
exit "$RC"
