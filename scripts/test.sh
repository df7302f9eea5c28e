#!/usr/bin/env bash
# scripts/test.sh: build chunkbatch and run all its test suites.  This is the
# test command of the README and what CI runs (.ci/run).
#
#   bash scripts/test.sh
#
# 1. installs the missing packages (scripts/setup.sh; as root on Debian),
# 2. copies the tree to a fresh directory under /tmp, builds it there with
#    warnings as errors and installs the extension,
# 3. runs, as the postgres OS user, each suite against its own temporary
#    server, every suite even when an earlier one failed:
#      regress    sql/*.sql      pg_regress --temp-instance
#      isolation  specs/*.spec   pg_isolation_regress --temp-instance
#      tap        t/*.pl         prove, one script at a time in each of
#                                 CHUNKBATCH_TAP_JOBS lanes (default 2), each
#                                 lane in its own copy of the tree
#      doctest    scripts/doctest.sh: every SQL block of the README and
#                 the guides, in order, in a throwaway cluster
#      package    scripts/package-test.sh (as root): builds the .deb,
#                 installs it, runs make installcheck twice against a
#                 Debian-managed cluster (pg_createcluster)
#    A suite without files is skipped.
# 4. prints the diffs and server logs of what failed, the duration, and as
#    its last line:   chunkbatch: N passed, N failed
#    where N counts regress tests, isolation specs and TAP test points
#    (a TAP script that dies or breaks its plan without a failing test point
#    counts as one failure; so does a suite whose harness fails before any
#    test, and a failed build).
# Exits non-zero if anything failed or if no test ran.
#
# Environment: CHUNKBATCH_KEEP=1 keeps the temporary tree and its logs;
# CHUNKBATCH_TAP_JOBS=N runs the TAP scripts in N lanes (1: one at a time);
# CHUNKBATCH_SKIP_INSTALL=1 builds but tests the chunkbatch already installed
# (for a user who cannot write to the PostgreSQL directories).

set -euo pipefail

. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup.sh"

START=$(date +%s)
PASSED=0
FAILED=0
SKIPPED=0
FAILURES=()
TREE=""
RES=""
DONE=0
LANE_PIDS=()

# Always end with the duration and the summary line, whatever happened.
on_exit() {
    local rc=$?
    trap - EXIT
    set +e
    if [ "$DONE" -eq 0 ] && [ "$rc" -ne 0 ]; then
        echo "test.sh stopped early (exit status $rc)"
        FAILED=$((FAILED + 1))
        FAILURES+=("test.sh (stopped early, exit status $rc)")
    fi
    # TAP lanes still at work (test.sh was interrupted): stop them and the
    # servers of their trees before the trees go.
    if [ "$DONE" -eq 0 ] && [ ${#LANE_PIDS[@]} -gt 0 ] && [ -n "$TREE" ]; then
        kill "${LANE_PIDS[@]}" 2>/dev/null
        pkill -TERM -f -- "$TREE" 2>/dev/null
        sleep 2
        pkill -KILL -f -- "$TREE" 2>/dev/null
    fi
    if [ -n "$TREE" ]; then
        if [ "${CHUNKBATCH_KEEP:-0}" = 1 ]; then
            echo "kept the test tree and its logs in $TREE (TAP lanes: $TREE.lane*)"
        else
            rm -rf "$TREE" "$TREE".lane*
        fi
    fi
    echo
    if [ ${#FAILURES[@]} -gt 0 ]; then
        echo "Failed:"
        printf '  %s\n' "${FAILURES[@]}"
    fi
    [ "$SKIPPED" -gt 0 ] && echo "($SKIPPED skipped or ignored, not counted)"
    local secs=$(( $(date +%s) - START ))
    printf 'duration: %dm%02ds\n' $((secs / 60)) $((secs % 60))
    echo "chunkbatch: $PASSED passed, $FAILED failed"
    if [ "$FAILED" -gt 0 ] || [ "$PASSED" -eq 0 ]; then
        exit 1
    fi
    exit 0
}
trap on_exit EXIT

section() { printf '\n===== %s =====\n' "$*"; }

# Print a file, at most $2 lines of it (from the end if $3 = tail).
show() {
    local f=$1 max=$2 how=${3:-head} n
    [ -s "$f" ] || return 0
    n=$(wc -l < "$f")
    echo "----- $f ($n lines) -----"
    if [ "$n" -le "$max" ]; then cat "$f"
    elif [ "$how" = tail ]; then echo "[... first $((n - max)) lines not shown ...]"; tail -n "$max" "$f"
    else head -n "$max" "$f"; echo "[... last $((n - max)) lines not shown ...]"
    fi
}

# Run make as the postgres user in the tree, output to stdout and $1.
pg_make() {
    local out=$1 rc
    shift
    set +e
    cb_as_pg make -C "$TREE" --no-print-directory PG_CONFIG="$CB_PG_CONFIG" "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    return "$rc"
}

# Count the "test NAME ... ok|FAILED" lines of pg_regress output $2 for
# suite $1; $3 is the exit status of the run, the other arguments are the
# tests that should have run: those without a result line count as failed.
count_regress() {
    local suite=$1 out=$2 rc=$3 name result ok=0 bad=0 line seen=" "
    shift 3
    while IFS= read -r line; do
        # "test NAME ... ok  12 ms" (or indented, in a parallel group);
        # anything but ok, e.g. "FAILED" or a diff error, is a failure
        [[ $line =~ ^(test[[:space:]]+|[[:space:]]+)([^[:space:]]+)[[:space:]]+\.\.\.(.*)$ ]] || continue
        name=${BASH_REMATCH[2]}
        result=${BASH_REMATCH[3]# }
        seen+="$name "
        case $result in
            ok*) ok=$((ok + 1)) ;;
            "failed (ignored)"*) SKIPPED=$((SKIPPED + 1)) ;;
            *) bad=$((bad + 1)); FAILURES+=("$suite/$name") ;;
        esac
    done < "$out"
    for name in "$@"; do
        if [[ $seen != *" $name "* ]]; then
            bad=$((bad + 1))
            FAILURES+=("$suite/$name (not run: pg_regress stopped before it)")
        fi
    done
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
        FAILURES+=("$suite (pg_regress exited with status $rc before reporting a failed test)")
    fi
    PASSED=$((PASSED + ok))
    FAILED=$((FAILED + bad))
    echo "$suite: $ok passed, $bad failed"
    [ "$bad" -eq 0 ]
}

# Count the top-level test points of one TAP script's verbose prove output.
count_tap() {
    local script=$1 out=$2 rc=$3 ok=0 bad=0 skip=0 line
    while IFS= read -r line; do
        # prove puts the script's name before its first line
        if [[ $line =~ ^t/[^[:space:]]+\ \.+\ (.*)$ ]]; then
            line=${BASH_REMATCH[1]}
        fi
        if [[ $line =~ ^ok\ [0-9]+ ]]; then
            if [[ $line =~ \#[[:space:]]*[Ss][Kk][Ii][Pp] ]]; then skip=$((skip + 1))
            else ok=$((ok + 1)); fi
        elif [[ $line =~ ^not\ ok\ [0-9]+ ]]; then
            if [[ $line =~ \#[[:space:]]*TODO ]]; then skip=$((skip + 1))
            else bad=$((bad + 1)); FAILURES+=("$script: $line"); fi
        elif [[ $line =~ ^Bail\ out! ]]; then
            bad=$((bad + 1)); FAILURES+=("$script: $line")
        fi
    done < "$out"
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
        FAILURES+=("$script (prove failed: the script died, bailed out or ran the wrong number of tests)")
    fi
    PASSED=$((PASSED + ok))
    FAILED=$((FAILED + bad))
    SKIPPED=$((SKIPPED + skip))
    if [ "$skip" -gt 0 ]; then
        echo "$script: $ok passed, $bad failed, $skip skipped or TODO"
    else
        echo "$script: $ok passed, $bad failed"
    fi
    [ "$bad" -eq 0 ]
}

# ---------------------------------------------------------------------------
section "set-up"
cb_install_packages
cb_stop_main_cluster
TREE=$(cb_copy_tree)
RES=$TREE/ci-results
mkdir -p "$RES"
echo "test tree: $TREE"

section "build (warnings are errors) and install"
set +e
cb_build_install "$TREE" 2>&1 | tee "$RES/build.out"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
    FAILED=$((FAILED + 1))
    FAILURES+=("build (make or make install failed, exit status $rc)")
    DONE=1
    exit 1
fi
cb_give_to_pg "$TREE"

cd "$TREE"
shopt -s nullglob
regress_files=(sql/*.sql)
iso_files=(specs/*.spec)
tap_files=(t/*.pl)
shopt -u nullglob

# ---------------------------------------------------------------------------
section "regress: ${#regress_files[@]} test(s)"
if [ ${#regress_files[@]} -eq 0 ]; then
    echo "no sql/*.sql: skipped"
else
    rc=0
    pg_make "$RES/regress.out" installcheck TEMP_INSTANCE=1 ISOLATION= TAP_TESTS= || rc=$?
    mkdir -p "$RES/regress"
    cp -a regression.diffs regression.out tmp_check/log "$RES/regress/" 2>/dev/null || true
    names=("${regress_files[@]#sql/}")
    if ! count_regress regress "$RES/regress.out" "$rc" "${names[@]%.sql}"; then
        show "$RES/regress/regression.diffs" 500
        show "$RES/regress/log/postmaster.log" 80 tail
    fi
fi

# ---------------------------------------------------------------------------
section "isolation: ${#iso_files[@]} spec(s)"
if [ ${#iso_files[@]} -eq 0 ]; then
    echo "no specs/*.spec: skipped"
else
    rc=0
    pg_make "$RES/isolation.out" installcheck TEMP_INSTANCE=1 REGRESS= TAP_TESTS= || rc=$?
    mkdir -p "$RES/isolation"
    cp -a output_iso/regression.diffs output_iso/regression.out tmp_check_iso/log \
        "$RES/isolation/" 2>/dev/null || true
    names=("${iso_files[@]#specs/}")
    if ! count_regress isolation "$RES/isolation.out" "$rc" "${names[@]%.spec}"; then
        show "$RES/isolation/regression.diffs" 500
        show "$RES/isolation/log/postmaster.log" 80 tail
    fi
fi

# ---------------------------------------------------------------------------
# TAP scripts mostly wait (for pg_cron's next minute, a naptime, a restart),
# so they run in lanes: each lane takes scripts one at a time, in its own
# copy of the tree (make installcheck empties the tree's tmp_check), and the
# lanes share one port reservation directory, so that their clusters never
# take the same port.  The pg_cron scripts, which spend most of their
# minute or two waiting for pg_cron's next minute, go to the first lane
# first, so that the busiest scripts run next to them; the others are
# dealt longest first (the seconds below, from earlier runs; 10 for the
# others) to the lane with the least work.
# The output of every script is printed and counted afterwards, in order.
tap_secs() {
    case $1 in
        t/011_*|t/012_*|t/048_*|t/057_*) echo 60 ;;   # (011, 012: see below)
        t/010_*|t/020_*|t/021_*|t/030_*|t/044_*|t/045_*) echo 40 ;;
        t/042_*|t/043_*|t/050_*|t/055_*) echo 22 ;;
        *) echo 10 ;;
    esac
}

# Run the scripts $3... in lane $1 (directory $2); write the output of
# each to $RES/tap-<script>.out and its exit status to $RES/tap-<script>.rc.
tap_lane() {
    local lane=$1 dir=$2 f script rc
    shift 2
    for f in "$@"; do
        script=${f#t/}
        echo "[lane $lane] $f"
        rc=0
        cb_as_pg make -C "$dir" --no-print-directory PG_CONFIG="$CB_PG_CONFIG" installcheck \
            REGRESS= ISOLATION= TAP_TESTS=1 PROVE_TESTS="$f" PROVE_FLAGS=--verbose \
            > "$RES/tap-$script.out" 2>&1 || rc=$?
        echo "$rc" > "$RES/tap-$script.rc.tmp" && mv "$RES/tap-$script.rc.tmp" "$RES/tap-$script.rc"
        mkdir -p "$RES/tap/$script"
        cp -a "$dir/tmp_check/log/." "$RES/tap/$script/" 2>/dev/null || true
    done
}

TAP_JOBS=${CHUNKBATCH_TAP_JOBS:-2}
[[ $TAP_JOBS =~ ^[1-9][0-9]*$ ]] || TAP_JOBS=1
[ "$TAP_JOBS" -le "${#tap_files[@]}" ] || TAP_JOBS=${#tap_files[@]}
section "tap: ${#tap_files[@]} script(s) in ${TAP_JOBS:-0} lane(s)"
if [ ${#tap_files[@]} -eq 0 ]; then
    echo "no t/*.pl: skipped"
else
    export PG_TEST_PORT_DIR="$TREE.lane-ports"
    mkdir -p "$PG_TEST_PORT_DIR"
    cb_give_to_pg "$PG_TEST_PORT_DIR"
    declare -a lane_dir lane_load lane_list
    for ((i = 0; i < TAP_JOBS; i++)); do
        if [ "$i" -eq 0 ]; then
            lane_dir[i]=$TREE
        else
            lane_dir[i]=$TREE.lane$i
            mkdir -p "${lane_dir[i]}"
            tar -C "$TREE" --exclude=./ci-results --exclude=./tmp_check --exclude=./tmp_check_iso \
                -cf - . | tar -C "${lane_dir[i]}" -xf -
            cb_give_to_pg "${lane_dir[i]}"
        fi
        lane_load[i]=0
        lane_list[i]=""
    done
    while read -r secs f; do
        best=0
        if [ "$secs" -ne 1000 ]; then
            for ((i = 1; i < TAP_JOBS; i++)); do
                [ "${lane_load[i]}" -lt "${lane_load[best]}" ] && best=$i
            done
        else
            secs=60
        fi
        lane_load[best]=$((lane_load[best] + secs))
        lane_list[best]+="$f "
    done < <(for f in "${tap_files[@]}"; do
                 case $f in
                     t/011_*|t/012_*) echo "1000 $f" ;;
                     *) echo "$(tap_secs "$f") $f" ;;
                 esac
             done | sort -k1,1nr -k2,2)
    pids=()
    for ((i = 0; i < TAP_JOBS; i++)); do
        # shellcheck disable=SC2086
        tap_lane $((i + 1)) "${lane_dir[i]}" ${lane_list[i]} &
        pids+=($!)
        LANE_PIDS+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || true
    done
    LANE_PIDS=()
    for f in "${tap_files[@]}"; do
        script=${f#t/}
        echo "--- $f"
        rc=$(cat "$RES/tap-$script.rc" 2>/dev/null || echo 1)
        cat "$RES/tap-$script.out" 2>/dev/null || true
        if ! count_tap "$f" "$RES/tap-$script.out" "$rc"; then
            for log in "$RES/tap/$script"/*; do
                show "$log" 60 tail
            done
        fi
    done
fi

# ---------------------------------------------------------------------------
section "doctest: the SQL examples of the README and the guides"
rc=0
bash "$TREE/scripts/doctest.sh" > "$RES/doctest.out" 2>&1 || rc=$?
grep -E '^(ok|not ok|#)' "$RES/doctest.out" | grep -v '^ok' | head -n 60 || true
summary=$(grep -E '^doctest: [0-9]+ passed, [0-9]+ failed' "$RES/doctest.out" | tail -n 1)
if [ -n "$summary" ]; then
    echo "$summary"
    n_ok=$(echo "$summary" | sed -E 's/^doctest: ([0-9]+) passed.*/\1/')
    n_bad=$(echo "$summary" | sed -E 's/.*passed, ([0-9]+) failed.*/\1/')
    PASSED=$((PASSED + n_ok))
    FAILED=$((FAILED + n_bad))
    [ "$n_bad" -eq 0 ] || FAILURES+=("doctest: $n_bad SQL block(s) of the documentation")
fi
if [ -z "$summary" ] || { [ "$rc" -ne 0 ] && [ "${n_bad:-0}" -eq 0 ]; }; then
    FAILED=$((FAILED + 1))
    FAILURES+=("doctest (scripts/doctest.sh, exit status $rc)")
    show "$RES/doctest.out" 80 tail
fi

# ---------------------------------------------------------------------------
section "package: the .deb, installed into a Debian-managed cluster"
if ! cb_is_root; then
    echo "not root: skipped (it installs a package and creates a cluster)"
else
    rc=0
    bash "$TREE/scripts/package-test.sh" > "$RES/package.out" 2>&1 || rc=$?
    grep -E '^\[chunkbatch\]|^    \./|^(Package|Version|Status):|^ok|^not ok|^test |tests passed' \
        "$RES/package.out" | head -n 100 || true
    if [ "$rc" -eq 0 ]; then
        PASSED=$((PASSED + 1))
        echo "package: 1 passed, 0 failed"
    else
        FAILED=$((FAILED + 1))
        FAILURES+=("package test (scripts/package-test.sh, exit status $rc)")
        show "$RES/package.out" 500 tail
    fi
fi

DONE=1
