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
