#!/usr/bin/env bash
# bench/parallel.sh: parallel slices (parallel => N) on a migration-shaped
# job, a status flip with the application running, and a skewed flip;
# writes bench/PARALLEL.md and bench/results/parallel-<UTC date>-<time>.json.
#
#   bash bench/parallel.sh               full run (as root on Debian 12): 1,000,000
#                                        items / rows, 3 repetitions of each variant
#   PAR_ITEMS=300000 bash bench/parallel.sh
#                                        a smaller staging table
#   bash bench/parallel.sh --smoke       20,000 items, 200,000 rows, 1 repetition,
#                                        1-3 min; writes bench/work/parallel-smoke.json
#                                        and bench/work/PARALLEL-smoke.md only
#   add --installed                      benchmark the chunkbatch already installed
#                                        (no package check, no build, no installation)
#
# Like bench/migration.sh: copies the tree to /tmp, builds and installs
# chunkbatch (not with --installed), then runs bench/parallel.pl as the
# postgres OS user on a throwaway PostgreSQL::Test::Cluster.  Settings:
# PAR_* variables, see the header of bench/parallel.pl.  PAR_KEEP=1 keeps
# the cluster's data directory and logs; PAR_OUT=FILE writes the report
# there instead.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$BENCH_DIR/../scripts/setup.sh"

SMOKE=0
BUILD=1
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        --installed) BUILD=0 ;;
        *) echo "usage: bash bench/parallel.sh [--smoke] [--installed]" >&2; exit 2 ;;
    esac
done

STAMP=$(date -u +%Y%m%d-%H%M)
if [ "$SMOKE" = 1 ]; then
    RESULTS=$BENCH_DIR/work/parallel-smoke.json
    OUT=${PAR_OUT:-$BENCH_DIR/work/PARALLEL-smoke.md}
else
    RESULTS=$BENCH_DIR/results/parallel-$STAMP.json
    OUT=${PAR_OUT:-$BENCH_DIR/PARALLEL.md}
fi

. "$BENCH_DIR/lib.sh"
bench_prepare parallel "${PAR_KEEP:-0}" "$BUILD"
PGXS_SRC=$(dirname "$(dirname "$("$CB_PG_CONFIG" --pgxs)")")   # .../lib/pgxs/src
ARGS=(--out "$WORK/results.json" --md "$WORK/PARALLEL.md" --git "$GIT" --command "bash bench/parallel.sh${*:+ $*}")
[ "$SMOKE" = 1 ] && ARGS+=(--smoke)
ENVS=(TESTDIR="$WORK" PERL5LIB="$PGXS_SRC/test/perl" PG_REGRESS="$PGXS_SRC/test/regress/pg_regress")
for v in $(compgen -e | grep '^PAR_' || true); do ENVS+=("$v=${!v}"); done
[ "${PAR_KEEP:-0}" = 1 ] && ENVS+=(PG_TEST_NOCLEAN=1)
# A failed verification makes parallel.pl exit non-zero after finishing:
# the results and the report are kept all the same, then we fail.
RC=0
(cd "$WORK" && cb_as_pg env "${ENVS[@]}" perl "$TREE/bench/parallel.pl" "${ARGS[@]}") || RC=$?
if ! grep -q '"complete" : true' "$WORK/results.json" 2>/dev/null; then
    mkdir -p "$BENCH_DIR/work"
    cp "$WORK/results.json" "$BENCH_DIR/work/parallel-incomplete.json" 2>/dev/null &&
        cb_log "incomplete results: bench/work/parallel-incomplete.json"
    [ "$RC" -ne 0 ] || RC=1
    exit "$RC"
fi
mkdir -p "$(dirname "$RESULTS")" "$(dirname "$OUT")"
cp "$WORK/results.json" "$RESULTS"
cp "$WORK/PARALLEL.md" "$OUT"
cb_log "wrote ${RESULTS#$CB_ROOT/} and ${OUT#$CB_ROOT/}"
sed -n '/^## Result/,/^## Every run/p' "$OUT" | sed '$d'
exit "$RC"
