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
. "$BENCH_DIR/lib.sh"
bench_cluster_script migration MIG '^## Result' '^### The application' "$@"
