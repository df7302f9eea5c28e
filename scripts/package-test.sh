#!/usr/bin/env bash
# scripts/package-test.sh: the Debian package end to end, as a DBA installs
# it (as root on Debian bookworm): build postgresql-15-chunkbatch
# (scripts/package.sh), install the .deb, create a Debian-managed cluster
# (pg_createcluster) that preloads chunkbatch, and run make installcheck
# (the regress and isolation suites) against it twice in a row; then drop
# the cluster.  scripts/test.sh runs it as its last suite.
#
#   bash scripts/package-test.sh
#
# Exits non-zero if any step fails.

set -euo pipefail

. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup.sh"

cb_is_root || cb_die "run as root: it installs a package and creates a cluster"
CLUSTER=cbpkg
PORT=${CHUNKBATCH_PACKAGE_PORT:-54399}

out=$(mktemp -d /tmp/chunkbatch-pkg.XXXXXX)
tree=""
cleanup() {
    pg_dropcluster --stop "$CB_PG_MAJOR" "$CLUSTER" 2>/dev/null || true
    rm -rf "$out" ${tree:+"$tree"}
}
trap cleanup EXIT

deb=$(bash "$CB_ROOT/scripts/package.sh" "$out" | tail -n 1)
cb_log "contents of $(basename "$deb"):"
dpkg -c "$deb" | awk '{print "    " $6}'
DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades "$deb"
dpkg -s "postgresql-$CB_PG_MAJOR-chunkbatch" | grep -E '^(Package|Status|Version):'

pg_dropcluster --stop "$CB_PG_MAJOR" "$CLUSTER" 2>/dev/null || true
pg_createcluster "$CB_PG_MAJOR" "$CLUSTER" -p "$PORT" \
    -o "shared_preload_libraries=chunkbatch" --start
pg_lsclusters

tree=$(cb_copy_tree)
cb_give_to_pg "$tree"
for round in 1 2; do
    cb_log "make installcheck against cluster $CB_PG_MAJOR/$CLUSTER, round $round"
    if ! cb_as_pg env PGHOST=/var/run/postgresql PGPORT="$PORT" PGUSER=postgres \
        make -C "$tree" PG_CONFIG="$CB_PG_CONFIG" installcheck; then
        for f in "$tree/regression.diffs" "$tree/output_iso/regression.diffs"; do
            [ -s "$f" ] && { echo "----- $f -----"; head -n 300 "$f"; }
        done
        echo "----- the cluster's log (last 100 lines) -----"
        tail -n 100 "/var/log/postgresql/postgresql-$CB_PG_MAJOR-$CLUSTER.log" || true
        cb_die "make installcheck failed in round $round"
    fi
done
left=$(cb_as_pg psql -X -At -h /var/run/postgresql -p "$PORT" -d postgres \
    -c "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'regress\\_cb\\_%'")
[ "$left" = 0 ] || cb_die "installcheck left $left roles behind"
# pg_regress's own databases go too: the cluster is as it was.
for db in contrib_regression isolation_regression; do
    cb_as_pg dropdb -h /var/run/postgresql -p "$PORT" --if-exists "$db"
done
cb_log "package test passed"
