#!/usr/bin/env bash
# scripts/setup.sh: set-up shared by scripts/test.sh and scripts/demo.sh.
#
#   bash scripts/setup.sh      install what is missing, build the extension
#                              (warnings are errors) and install it
#   . scripts/setup.sh         only define the cb_* functions below
#
# Works on a fresh Debian bookworm as root.  The PostgreSQL steps run as the
# "postgres" OS user in a private copy of the tree under /tmp, because the
# checkout may live where that user cannot read it (e.g. /root/project).
# Run as another user, the packages must already be installed and the
# PostgreSQL directories must be writable for "make install".

CB_PG_MAJOR=15
CB_PG_BIN=/usr/lib/postgresql/$CB_PG_MAJOR/bin
CB_PG_CONFIG=$CB_PG_BIN/pg_config
CB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CB_PACKAGES=(postgresql-$CB_PG_MAJOR postgresql-server-dev-$CB_PG_MAJOR
             postgresql-$CB_PG_MAJOR-cron libipc-run-perl perl make gcc
             procps util-linux prometheus-postgres-exporter)

cb_log() { printf '[chunkbatch] %s\n' "$*"; }
cb_die() { printf '[chunkbatch] ERROR: %s\n' "$*" >&2; exit 1; }
cb_is_root() { [ "$(id -u)" -eq 0 ]; }

# Install the packages that are missing (apt-get runs only if one is).
cb_install_packages() {
    local missing=() p
    for p in "${CB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
            missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        cb_log "packages: all present"
    elif cb_is_root; then
        cb_log "packages: installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    else
        cb_die "missing packages: ${missing[*]}
Run this script as root to install them, or install them with:
  apt-get update && apt-get install -y ${missing[*]}"
    fi
    [ -x "$CB_PG_CONFIG" ] || cb_die "$CB_PG_CONFIG not found"
    perl -MIPC::Run -MTest::More -e 1 2>/dev/null ||
        cb_die "Perl modules IPC::Run and Test::More are needed for the TAP tests"
}

# Debian's package creates and starts a cluster 15/main on port 5432; nothing
# here uses it, so stop it to keep its CPU and memory for the tests.
cb_stop_main_cluster() {
    cb_is_root || return 0
    command -v pg_lsclusters >/dev/null || return 0
    if pg_lsclusters --no-header 2>/dev/null |
            awk -v v="$CB_PG_MAJOR" '$1 == v && $2 == "main" && $4 ~ /online/' | grep -q .; then
        cb_log "stopping the Debian cluster $CB_PG_MAJOR/main (not used)"
        pg_ctlcluster "$CB_PG_MAJOR" main stop || true
    fi
}

# Run a command as the postgres OS user (as root), or as the current user,
# with the PostgreSQL binaries first in PATH.
cb_as_pg() {
    local path="$CB_PG_BIN:/usr/local/bin:/usr/bin:/bin"
    if cb_is_root; then
        # From a directory the postgres user cannot enter (a checkout in
        # /root), PostgreSQL's programs would complain that they cannot
        # change back to it: start them from /tmp then.
        if ! runuser -u postgres -- test -x "$PWD" 2>/dev/null; then
            (cd /tmp && runuser -u postgres -- env PATH="$path" HOME=/var/lib/postgresql \
                LANG="${LANG:-C.UTF-8}" "$@")
            return
        fi
        runuser -u postgres -- env PATH="$path" HOME=/var/lib/postgresql \
            LANG="${LANG:-C.UTF-8}" "$@"
    else
        env PATH="$path:$PATH" "$@"
    fi
}

# Copy the source tree (without git data and test output) into a fresh
# directory under /tmp and print its path.
cb_copy_tree() {
    local dir
    dir=$(mktemp -d /tmp/chunkbatch.XXXXXX)
    chmod 755 "$dir"
    tar -C "$CB_ROOT" --exclude=./.git --exclude=./tmp_check --exclude=./tmp_check_iso \
        --exclude=./results --exclude=./output_iso --exclude=./log \
        --exclude=./regression.diffs --exclude=./regression.out \
        --exclude=./bench/work -cf - . | tar -C "$dir" -xf -
    printf '%s\n' "$dir"
}

# Hand a directory over to the postgres OS user (no-op unless root).
cb_give_to_pg() {
    cb_is_root && chown -R postgres:postgres "$1"
    return 0
}

# Build the extension in directory $1 from scratch (the Makefile makes
# warnings errors) and install it.  Returns non-zero if either step fails.
cb_build_install() {
    local dir=$1 libdir sharedir
    libdir=$("$CB_PG_CONFIG" --pkglibdir)
    sharedir=$("$CB_PG_CONFIG" --sharedir)/extension
    cb_log "building in $dir"
    make -C "$dir" -s PG_CONFIG="$CB_PG_CONFIG" clean >/dev/null || return 1
    make -C "$dir" PG_CONFIG="$CB_PG_CONFIG" || return 1
    if [ "${CHUNKBATCH_SKIP_INSTALL:-0}" = 1 ]; then
        cb_log "CHUNKBATCH_SKIP_INSTALL=1: not installing; the installed chunkbatch is used"
        return 0
    fi
    if ! cb_is_root && { [ ! -w "$libdir" ] || [ ! -w "$sharedir" ]; }; then
        cb_log "cannot install into $libdir and $sharedir as $(id -un): run as root" \
            "(or set CHUNKBATCH_SKIP_INSTALL=1 to test the chunkbatch already installed)"
        return 1
    fi
    cb_log "installing into $libdir and $sharedir"
    make -C "$dir" -s PG_CONFIG="$CB_PG_CONFIG" install || return 1
}

cb_setup_main() {
    set -euo pipefail
    cb_install_packages
    cb_stop_main_cluster
    CB_SETUP_TREE=$(cb_copy_tree)
    trap 'rm -rf "$CB_SETUP_TREE"' EXIT
    cb_build_install "$CB_SETUP_TREE" || cb_die "build or installation failed"
    cb_log "chunkbatch is installed; add shared_preload_libraries = 'chunkbatch' to use it"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    cb_setup_main "$@"
fi
