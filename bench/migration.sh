#!/usr/bin/env bash
# bench/migration.sh: rebuild_indexes on a migration-shaped workload; writes
# bench/MIGRATION.md and bench/results/migration-<UTC date>-<time>.json.
#
#   bash bench/migration.sh              full run (as root on Debian 12): 1,000,000
#                                        items, 3 repetitions of each variant
#   MIG_ITEMS=300000 bash bench/migration.sh
#                                        a smaller staging table
#   bash bench/migration.sh --smoke      20,000 items, 1 repetition, 1-2 min; writes
#                                        bench/work/migration-smoke.json and
#                                        bench/work/MIGRATION-smoke.md only
#   add --installed                      benchmark the chunkbatch already installed
#                                        (no package check, no build, no installation)
#
# Like bench/run.sh: copies the tree to /tmp, builds and installs chunkbatch
# (not with --installed), then runs bench/migration.pl as the postgres OS
# user on a throwaway PostgreSQL::Test::Cluster.  Settings: MIG_* variables,
# see the header of bench/migration.pl.  MIG_KEEP=1 keeps the cluster's data
# directory and logs.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/../scripts/setup.sh"

SMOKE=0
BUILD=1
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        --installed) BUILD=0 ;;
        *) echo "usage: bash bench/migration.sh [--smoke] [--installed]" >&2; exit 2 ;;
    esac
done

STAMP=$(date -u +%Y%m%d-%H%M)
if [ "$SMOKE" = 1 ]; then
    RESULTS=$BENCH_DIR/work/migration-smoke.json
    OUT=${MIG_OUT:-$BENCH_DIR/work/MIGRATION-smoke.md}
else
    RESULTS=$BENCH_DIR/results/migration-$STAMP.json
    OUT=${MIG_OUT:-$BENCH_DIR/MIGRATION.md}
fi

. "$BENCH_DIR/lib.sh"
bench_prepare migration "${MIG_KEEP:-0}" "$BUILD"
PGXS_SRC=$(dirname "$(dirname "$("$CB_PG_CONFIG" --pgxs)")")   # .../lib/pgxs/src
ARGS=(--out "$WORK/results.json" --md "$WORK/MIGRATION.md" --git "$GIT" --command "bash bench/migration.sh${*:+ $*}")
[ "$SMOKE" = 1 ] && ARGS+=(--smoke)
ENVS=(TESTDIR="$WORK" PERL5LIB="$PGXS_SRC/test/perl" PG_REGRESS="$PGXS_SRC/test/regress/pg_regress")
for v in $(compgen -e | grep '^MIG_' || true); do ENVS+=("$v=${!v}"); done
[ "${MIG_KEEP:-0}" = 1 ] && ENVS+=(PG_TEST_NOCLEAN=1)
# A failed verification makes migration.pl exit non-zero after finishing:
# the results and the report are kept all the same, then we fail.
RC=0
(cd "$WORK" && cb_as_pg env "${ENVS[@]}" perl "$TREE/bench/migration.pl" "${ARGS[@]}") || RC=$?
if ! grep -q '"complete" : true' "$WORK/results.json" 2>/dev/null; then
    mkdir -p "$BENCH_DIR/work"
    cp "$WORK/results.json" "$BENCH_DIR/work/migration-incomplete.json" 2>/dev/null &&
        cb_log "incomplete results: bench/work/migration-incomplete.json"
    [ "$RC" -ne 0 ] || RC=1
    exit "$RC"
fi
mkdir -p "$(dirname "$RESULTS")" "$(dirname "$OUT")"
cp "$WORK/results.json" "$RESULTS"
cp "$WORK/MIGRATION.md" "$OUT"
cb_log "wrote ${RESULTS#$CB_ROOT/} and ${OUT#$CB_ROOT/}"
sed -n '/^## Result/,/^### The application/p' "$OUT"
exit "$RC"
