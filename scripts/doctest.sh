#!/usr/bin/env bash
# scripts/doctest.sh: run the SQL examples of the documentation against the
# chunkbatch INSTALLED on this machine (it builds and installs nothing).
#
#   bash scripts/doctest.sh              README.md, docs/guide-*.md, docs/operations.md
#   bash scripts/doctest.sh FILE...      only these files (paths from the tree's root)
#
# As root on Debian (the PostgreSQL steps run as the postgres OS user, like
# scripts/test.sh), or as a user who can run initdb.  It creates a throwaway
# cluster under /tmp (initdb; unix socket only, in the cluster's directory,
# on a port no one listens on) with
#
#   shared_preload_libraries = 'pg_cron,chunkbatch'
#   cron.database_name = 'app'        chunkbatch.naptime = 1
#   max_worker_processes = 16
#
# and, for each file in order (README.md, docs/guide-*.md sorted,
# docs/operations.md):
#
#   1. creates a fresh, empty database named "app" (the name the examples
#      use; pg_cron schedules only there).  It does NOT create the
#      extension: each file does that itself, with CREATE EXTENSION
#      chunkbatch in its first blocks, as a reader would;
#   2. extracts the file's ```sql blocks and runs them in order, each in a
#      new psql session (psql -X -v ON_ERROR_STOP=1 -v VERBOSITY=verbose)
#      connected to "app" as the bootstrap superuser "postgres": a block
#      that should act as another role starts with SET ROLE;
#   3. prints "ok FILE block N" or "not ok FILE block N: <error>" (then
#      "#" lines with the block's line in the file and psql's messages);
#   4. drops the database, and every role the file created (roles are
#      cluster-wide); an emergency stop left on is lifted (and reported).
#
# It ends with the line   doctest: N passed, N failed
# and exits non-zero if any block failed (or none ran).
#
# Conventions for the documentation:
#
# - Every ```sql block is run.  Anything that is not SQL to paste into psql
#   uses another fence: ```ini (postgresql.conf lines), ```shell (commands),
#   ```text (output, messages).
# - A block whose first line is
#       -- doctest: error XXXXX
#   must fail with SQLSTATE XXXXX: it is run with ON_ERROR_STOP=0, at least
#   one statement must fail, and every statement that fails must fail with
#   that SQLSTATE (psql errors without one, e.g. of \gset, count as wrong).
# - A block whose first line is
#       -- doctest: skip <reason>
#   is not run.  Only for what cannot run in one throwaway server (it needs
#   a standby, a restart, another cluster); keep them rare.
# - Blocks of a file share the database but not the session: psql
#   variables (\gset) and SET ROLE do not carry over to the next block.
#   Blocks must not hard-code run ids (use \gset or subqueries), must create
#   every table and role they use, must not create a job name twice in a
#   file without dropping it first, and must finish in seconds: small
#   tables, chunkbatch.wait() for runs, never \watch.
#
# Environment: CHUNKBATCH_KEEP=1 keeps the cluster's directory (server log
# in it); CHUNKBATCH_DOCTEST_TIMEOUT (seconds, default 60) bounds a block.

set -euo pipefail

. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup.sh"

BLOCK_TIMEOUT=${CHUNKBATCH_DOCTEST_TIMEOUT:-60}
PASSED=0
FAILED=0
SKIPPED=0
WORK=""
PGDATA_DIR=""
PORT=""
DB=app

if [ $# -gt 0 ]; then
    FILES=("$@")
else
    FILES=(README.md)
    shopt -s nullglob
    for f in "$CB_ROOT"/docs/guide-*.md; do FILES+=("docs/$(basename "$f")"); done
    shopt -u nullglob
    FILES+=(docs/operations.md)
fi

cleanup() {
    local rc=$?
    trap - EXIT
    set +e
    if [ -n "$PGDATA_DIR" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        cb_as_pg pg_ctl -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            cb_as_pg pg_ctl -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ -n "$WORK" ]; then
        if [ "${CHUNKBATCH_KEEP:-0}" = 1 ]; then
            echo "kept $WORK (server log: $WORK/server.log)"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT

# A TCP port nobody listens on (the cluster listens on its own socket only,
# but a port that is free everywhere keeps its lock file names unique).
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
           [ ! -e "/tmp/.s.PGSQL.$p" ]; then
            echo "$p"
            return 0
        fi
    done
    cb_die "no free port found"
}

# psql as the bootstrap superuser, on the throwaway cluster.
pg_psql() {
    cb_as_pg psql -X -q -h "$WORK" -p "$PORT" -U postgres "$@"
}

# Extract the ```sql blocks of markdown file $1 into directory $2 as
# 1.sql, 2.sql, ... and print one line per block: "N LINE" (the line of
# its opening fence).  Indented fences (in list items) are unindented.
extract_blocks() {
    awk -v out="$2" '
        function fence_lang(s) { sub(/^[ \t]*```[ \t]*/, "", s); sub(/[ \t]+$/, "", s); return s }
        state == 0 && /^[ \t]*```/ {
            lang = fence_lang($0)
            if (lang == "sql") {
                n++; state = 1; file = out "/" n ".sql"
                match($0, /^[ \t]*/); indent = RLENGTH
                printf "" > file
                print n, NR
            } else {
                state = 2
            }
            next
        }
        state != 0 && /^[ \t]*```[ \t]*$/ {
            if (state == 1) close(file)
            state = 0
            next
        }
        state == 1 {
            line = $0
            if (indent > 0 && substr(line, 1, indent) ~ /^[ \t]*$/) line = substr(line, indent + 1)
            print line >> file
        }
        END { if (state == 1) print "unterminated", NR }
    ' "$1"
}

# ---------------------------------------------------------------------------
cb_is_root || [ -x "$CB_PG_BIN/initdb" ] || cb_die "PostgreSQL $CB_PG_MAJOR is not installed"
for f in "${FILES[@]}"; do
    [ -f "$CB_ROOT/$f" ] || cb_die "no such file: $f"
done
[ -f "$("$CB_PG_CONFIG" --sharedir)/extension/chunkbatch.control" ] ||
    cb_die "chunkbatch is not installed (bash scripts/setup.sh installs it)"

WORK=$(mktemp -d /tmp/chunkbatch-doctest.XXXXXX)
chmod 755 "$WORK"
PGDATA_DIR=$WORK/data
PORT=$(free_port)
cb_give_to_pg "$WORK"

cb_as_pg initdb -D "$PGDATA_DIR" -U postgres --auth=trust --no-sync >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log"; cb_die "initdb failed"; }
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# scripts/doctest.sh
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
shared_preload_libraries = 'pg_cron,chunkbatch'
cron.database_name = '$DB'
cron.host = '$WORK'
chunkbatch.naptime = 1
max_worker_processes = 16
fsync = off
EOF
cb_as_pg pg_ctl -D "$PGDATA_DIR" -l "$WORK/server.log" -w -t 60 start >/dev/null ||
    { tail -n 30 "$WORK/server.log"; cb_die "the server did not start"; }
echo "# throwaway cluster in $WORK, port $PORT, chunkbatch $(pg_psql -d postgres -Atc \
    "SELECT default_version FROM pg_available_extensions WHERE name = 'chunkbatch'")"

# cb_as_pg as a command prefix, for timeout(1)
if cb_is_root; then
    AS_PG=(runuser -u postgres -- env PATH="$CB_PG_BIN:/usr/local/bin:/usr/bin:/bin"
           HOME=/var/lib/postgresql LANG="${LANG:-C.UTF-8}")
else
    AS_PG=(env PATH="$CB_PG_BIN:$PATH")
fi

BASE_ROLES=$(pg_psql -d postgres -Atc "SELECT string_agg(quote_literal(rolname), ',') FROM pg_roles")

# Drop database "app" (whatever is connected to it) and the roles made since.
reset_cluster() {
    local file=$1 i role
    if pg_psql -d "$DB" -Atc "SELECT 1 FROM pg_extension WHERE extname = 'chunkbatch'" 2>/dev/null | grep -q 1 &&
       pg_psql -d "$DB" -Atc "SELECT paused FROM chunkbatch.pause_all_state()" 2>/dev/null | grep -q t; then
        echo "# $file left the emergency stop on; lifted"
        pg_psql -d "$DB" -Atc "SELECT chunkbatch.resume_all()" >/dev/null
    fi
    for i in 1 2 3 4 5; do
        pg_psql -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>"$WORK/drop.err" && break
        sleep 1
    done
    [ ! -s "$WORK/drop.err" ] || [ "$i" -lt 5 ] || { cat "$WORK/drop.err"; cb_die "cannot drop database $DB"; }
    pg_psql -d postgres -Atc "SELECT quote_ident(rolname) FROM pg_roles WHERE rolname NOT IN ($BASE_ROLES)" |
    while read -r role; do
        pg_psql -d postgres -c "DROP OWNED BY $role" >/dev/null 2>&1 || true
        pg_psql -d postgres -c "DROP ROLE $role" >/dev/null 2>"$WORK/drop.err" ||
            echo "# could not drop role $role: $(head -n 1 "$WORK/drop.err")"
    done
}

for file in "${FILES[@]}"; do
    dir=$WORK/blocks/${file//\//_}
    mkdir -p "$dir"
    index=$(extract_blocks "$CB_ROOT/$file" "$dir")
    cb_give_to_pg "$dir"
    if grep -q '^unterminated' <<<"$index"; then
        echo "not ok $file: a \`\`\`sql block is not closed"
        FAILED=$((FAILED + 1))
        continue
    fi
    reset_cluster "$file"
    pg_psql -d postgres -c "CREATE DATABASE $DB" || cb_die "cannot create database $DB"
    [ -n "$index" ] || { echo "# $file: no sql blocks"; continue; }

    while read -r n line; do
        block=$dir/$n.sql
        first=$(head -n 1 "$block")
        out=$dir/$n.out
        err=$dir/$n.err
        if [[ $first =~ ^--\ doctest:\ skip[[:space:]]*(.*)$ ]]; then
            echo "skip $file block $n: ${BASH_REMATCH[1]:-no reason given}"
            SKIPPED=$((SKIPPED + 1))
            continue
        fi
        if sed 's/--.*$//' "$block" | grep -q '\\watch'; then
            echo "not ok $file block $n: \\watch in a block would never end"
            echo "#   $file:$line"
            FAILED=$((FAILED + 1))
            continue
        fi
        expect=""
        stop=1
        if [[ $first =~ ^--\ doctest:\ error\ ([0-9A-Z]{5})[[:space:]]*$ ]]; then
            expect=${BASH_REMATCH[1]}
            stop=0
        elif [[ $first =~ ^--\ doctest: ]]; then
            echo "not ok $file block $n: unknown doctest directive: $first"
            echo "#   $file:$line"
            FAILED=$((FAILED + 1))
            continue
        fi
        rc=0
        timeout --kill-after=5 "$BLOCK_TIMEOUT" "${AS_PG[@]}" psql -X -h "$WORK" -p "$PORT" \
            -U postgres -d "$DB" -v ON_ERROR_STOP=$stop -v VERBOSITY=verbose -P pager=off \
            -f "$block" \
            >"$out" 2>"$err" || rc=$?
        problem=""
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            problem="timed out after ${BLOCK_TIMEOUT}s"
        elif [ -z "$expect" ]; then
            if [ "$rc" -ne 0 ]; then
                problem=$(grep -m 1 -E 'ERROR|FATAL|error:' "$err" | sed -E 's/^psql:[^ ]*:[0-9]+: //')
                problem=${problem:-psql exited with status $rc}
            fi
        else
            errors=$(grep -E 'ERROR:|FATAL:|: error:' "$err" || true)
            if [ "$rc" -ne 0 ]; then
                problem="psql exited with status $rc"
            elif [ -z "$errors" ]; then
                problem="expected SQLSTATE $expect, but no statement failed"
            elif wrong=$(grep -v -E "ERROR:  $expect:" <<<"$errors" | head -n 1) && [ -n "$wrong" ]; then
                problem="expected SQLSTATE $expect, got: $(sed -E 's/^psql:[^ ]*:[0-9]+: //' <<<"$wrong")"
            fi
        fi
        if [ -z "$problem" ]; then
            echo "ok $file block $n"
            PASSED=$((PASSED + 1))
        else
            echo "not ok $file block $n: $problem"
            echo "#   $file:$line"
            sed -E 's/^/#   /' "$err" | head -n 20
            FAILED=$((FAILED + 1))
        fi
    done <<<"$index"
done
reset_cluster "the last file"

[ "$SKIPPED" -eq 0 ] || echo "# $SKIPPED block(s) skipped"
echo "doctest: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
