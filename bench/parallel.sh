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
. "$BENCH_DIR/lib.sh"
bench_cluster_script parallel PAR '^## Result' '^## Every run' "$@"
