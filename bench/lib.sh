# bench/lib.sh: what bench/run.sh and bench/migration.sh share, sourced by
# them after scripts/setup.sh: the exit trap (logs of a failed run, the
# scratch directories), the version measured, the copy of the tree, the
# build and installation (unless --installed), and the work directory the
# postgres OS user runs the benchmark in.
#
#   bench_prepare NAME KEEP BUILD
#     NAME   the script's name, for messages and the work directory
#     KEEP   1: keep the work directory (the cluster's data and logs)
#     BUILD  1: build and install the tree; 0: measure the installed build
#   sets TREE, WORK, GIT (a description of the version measured)

# bench_args NAME ARGS...: the options every benchmark script takes;
# sets SMOKE (1: --smoke) and BUILD (0: --installed), exits 2 on others.
bench_args() {
    local name=$1 arg
    shift
    SMOKE=0
    BUILD=1
    for arg in "$@"; do
        case "$arg" in
            --smoke) SMOKE=1 ;;
            --installed) BUILD=0 ;;
            *) echo "usage: bash bench/$name.sh [--smoke] [--installed]" >&2; exit 2 ;;
        esac
    done
}

bench_prepare() {
    BENCH_NAME=$1
    BENCH_KEEP_WORK=$2
    BENCH_START=$(date +%s)
    TREE=""
    WORK=""
    trap bench_cleanup EXIT

    # the version measured (the checkout may change while the benchmark runs)
    GIT="git $(git -C "$CB_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    local dirty
    dirty=$(git -C "$CB_ROOT" status --porcelain -- src 'chunkbatch*.sql' Makefile 2>/dev/null | wc -l)
    [ "$dirty" -gt 0 ] && GIT="$GIT with $dirty uncommitted change(s) in src/, the SQL scripts or the Makefile"
    TREE=$(cb_copy_tree)
    if [ "$3" = 1 ]; then
        cb_install_packages
        cb_stop_main_cluster
        cb_build_install "$TREE" > "$TREE/build.log" 2>&1 || {
            cat "$TREE/build.log"
            cb_die "build or installation failed"
        }
        cb_log "chunkbatch built and installed"
    else
        GIT="the installed build (not built by this run; checkout: $GIT)"
    fi

    WORK=$(mktemp -d "/tmp/chunkbatch-$BENCH_NAME.XXXXXX")
    chmod 711 "$WORK"
    cb_give_to_pg "$WORK"
}

bench_cleanup() {
    local rc=$?
    set +e
    if [ -n "$WORK" ]; then
        if [ "$rc" -ne 0 ]; then
            for f in "$WORK"/tmp_check/log/*.log; do
                [ -f "$f" ] || continue
                echo "----- last lines of $f -----" >&2
                tail -n 40 "$f" >&2
            done
        fi
        if [ "$BENCH_KEEP_WORK" = 1 ] || [ "$rc" -ne 0 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
    fi
    [ -n "$TREE" ] && rm -rf "$TREE"
    echo "bench/$BENCH_NAME.sh: $(( ($(date +%s) - BENCH_START) / 60 )) min, exit status $rc" >&2
    exit "$rc"
}

# bench_cluster_script NAME PREFIX SHOW_FROM SHOW_TO ARGS...: the body of
# bench/NAME.sh for a benchmark bench/NAME.pl that runs on a throwaway
# cluster of its own (migration.sh, parallel.sh).
#   NAME       migration, parallel: bench/NAME.pl writes results.json and
#              NAME-in-capitals.md in the work directory
#   PREFIX     of its settings (MIG, PAR): PREFIX_* variables are passed on,
#              PREFIX_KEEP=1 keeps the cluster, PREFIX_OUT=FILE the report
#   SHOW_FROM, SHOW_TO   the lines of the report printed at the end (sed
#              addresses; the SHOW_TO line itself is not printed)
#   ARGS       the script's arguments: --smoke, --installed
# Writes bench/results/NAME-<UTC stamp>.json and bench/NAME-in-capitals.md
# (--smoke: bench/work/NAME-smoke.json and bench/work/NAME-in-capitals-smoke.md);
# a run whose results are incomplete leaves bench/work/NAME-incomplete.json
# and fails.  A failed verification makes NAME.pl exit non-zero after
# finishing: the results and the report are kept all the same, then this
# fails.
bench_cluster_script() {
    local name=$1 prefix=$2 show_from=$3 show_to=$4
    shift 4
    local report
    report=$(echo "$name" | tr '[:lower:]' '[:upper:]').md
    local smoke build
    bench_args "$name" "$@"
    smoke=$SMOKE build=$BUILD
    local keepvar=${prefix}_KEEP outvar=${prefix}_OUT
    local results out
    if [ "$smoke" = 1 ]; then
        results=$BENCH_DIR/work/$name-smoke.json
        out=${!outvar:-$BENCH_DIR/work/${report%.md}-smoke.md}
    else
        results=$BENCH_DIR/results/$name-$(date -u +%Y%m%d-%H%M).json
        out=${!outvar:-$BENCH_DIR/$report}
    fi

    bench_prepare "$name" "${!keepvar:-0}" "$build"
    local pgxs_src
    pgxs_src=$(dirname "$(dirname "$("$CB_PG_CONFIG" --pgxs)")")   # .../lib/pgxs/src
    local args=(--out "$WORK/results.json" --md "$WORK/$report" --git "$GIT"
                --command "bash bench/$name.sh${*:+ $*}")
    [ "$smoke" = 1 ] && args+=(--smoke)
    local envs=(TESTDIR="$WORK" PERL5LIB="$pgxs_src/test/perl"
                PG_REGRESS="$pgxs_src/test/regress/pg_regress")
    local v
    for v in $(compgen -e | grep "^${prefix}_" || true); do envs+=("$v=${!v}"); done
    [ "${!keepvar:-0}" = 1 ] && envs+=(PG_TEST_NOCLEAN=1)
    local rc=0
    (cd "$WORK" && cb_as_pg env "${envs[@]}" perl "$TREE/bench/$name.pl" "${args[@]}") || rc=$?
    if ! grep -q '"complete" : true' "$WORK/results.json" 2>/dev/null; then
        mkdir -p "$BENCH_DIR/work"
        cp "$WORK/results.json" "$BENCH_DIR/work/$name-incomplete.json" 2>/dev/null &&
            cb_log "incomplete results: bench/work/$name-incomplete.json"
        [ "$rc" -ne 0 ] || rc=1
        exit "$rc"
    fi
    mkdir -p "$(dirname "$results")" "$(dirname "$out")"
    cp "$WORK/results.json" "$results"
    cp "$WORK/$report" "$out"
    cb_log "wrote ${results#$CB_ROOT/} and ${out#$CB_ROOT/}"
    sed -n "/$show_from/,/$show_to/p" "$out" | sed '$d'
    exit "$rc"
}
