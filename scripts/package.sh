#!/usr/bin/env bash
# scripts/package.sh: build the Debian package postgresql-15-chunkbatch from
# this tree, with dpkg-buildpackage -us -uc -b (debian/, pg_buildext), in a
# private copy of the tree.  As root on Debian bookworm it installs the
# build dependencies first.
#
#   bash scripts/package.sh [OUTDIR]     (default OUTDIR: ./dist)
#
# Prints the path of the .deb as its last line.  The build skips the
# package's own installcheck (DEB_BUILD_OPTIONS=nocheck): that needs a
# server preloading chunkbatch, which debian/tests/installcheck
# (autopkgtest) and scripts/package-test.sh provide.

set -euo pipefail

. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup.sh"

OUT=$(mkdir -p "${1:-$CB_ROOT/dist}" && cd "${1:-$CB_ROOT/dist}" && pwd)
BUILD_DEPS=(debhelper dpkg-dev build-essential fakeroot postgresql-server-dev-all
            postgresql-server-dev-$CB_PG_MAJOR)

missing=()
for p in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    cb_is_root || cb_die "missing packages: ${missing[*]}"
    cb_log "packages: installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

version=$(dpkg-parsechangelog -l "$CB_ROOT/debian/changelog" -S Version)
work=$(mktemp -d /tmp/chunkbatch-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src="$work/chunkbatch-$version"
mkdir "$src"
tar -C "$CB_ROOT" --exclude=./.git --exclude=./dist --exclude=./tmp_check \
    --exclude=./tmp_check_iso --exclude=./results --exclude=./output_iso \
    --exclude=./bench/work --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
    -cf - . | tar -C "$src" -xf -

cb_log "building postgresql-$CB_PG_MAJOR-chunkbatch $version in $src"
(cd "$src" && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b)
deb=$(ls "$work"/postgresql-"$CB_PG_MAJOR"-chunkbatch_"$version"_*.deb)
cp "$deb" "$OUT/"
cb_log "built $(basename "$deb")"
echo "$OUT/$(basename "$deb")"
