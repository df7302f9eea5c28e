# Copyright (c) 2026, chunkbatch developers
#
# Parallel slices: a range-mode run with parallel => N is one run whose
# keys are split into slices, each with its own checkpoint and worker.
#
# - parallel => 4 (a job setting) over 200,000 rows: four live workers are
#   seen on four slices at once (chunkbatch.slice_status; the run's own
#   worker and three helpers in pg_stat_activity); status_detail shows 4
#   slices and the workers, chunkbatch.status one line 'running xN'; every
#   row is processed exactly once (a per-row counter that the filter does
#   not look at, so a key done twice would show); there is one runs row,
#   whose rows_done and chunks_done are the sums of its slices; each
#   slice's rows_done is exactly the number of keys of its range;
# - work stealing: with all matching rows in the last quarter of the key
#   space, the 4 slices fall in that quarter and more than one worker
#   processes it; with the rows of the last quarter slow to process
#   (run_and_wait(..., parallel => 4) on a job with parallel 1), the
#   workers that finish early take over the upper half of the rest of a
#   running slice as new slices (slice_no >= 4, server log), the slow
#   quarter is processed by more than one worker, every row exactly once;
#   with a key of a domain type whose CHECK calls the owner's function,
#   stealing (which compares a victim's checkpoint with its split) never
#   runs that function as another role than the job's owner;
# - SIGKILL of a worker of a run (alternately one of its helpers and its
#   own worker, at random moments, 10 kills over runs queued with
#   run(..., parallel => 4) and a filter on the run's parameters): the
#   server restarts, the runs resume by themselves and succeed, every row
#   is processed exactly once, each slice's rows_done equals the keys of
#   its range, and killed slices were taken again by new workers;
# - pause: the run is paused within 5 s (chunks take 0.15 s), no chunk
#   begins after the pause (at most one per worker as the pause came), no
#   worker and no running slice is left, nothing moves while paused;
#   resume continues each slice right after its own checkpoint, by several
#   workers, to every row exactly once; without a range_filter the last
#   slice has no end; cancel ends the run within 5 s with all its workers,
#   no row done twice;
# - with chunkbatch.max_workers = 2 (a restart), a parallel => 4 run of one
#   role gets one worker (max_workers_per_role defaults to max_workers - 1)
#   that processes all 4 slices, exactly once, while another role's run
#   starts and ends meanwhile; with max_workers_per_role = 2 a parallel
#   => 4 run uses 2 workers at most, and finishes;
# - a slice that fails (an error for one row, in a slice a helper takes)
#   fails the run with its SQLSTATE and error, stops the other slices
#   (pending, checkpoints kept), leaves no worker and never passes through
#   'interrupted'; after the cause is fixed, resume reopens the failed
#   slice and finishes every row exactly once;
# - throttle_sql is evaluated only by the run's own worker; while it
#   holds, no worker of the run processes rows; then every row once.
#
# Set CHUNKBATCH_PARALLEL_SEED to replay the random kill moments.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode qw($FINAL_STATES);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $seed = $ENV{CHUNKBATCH_PARALLEL_SEED} // (int(time() * 1000) % 1000000000);
srand($seed);
note "random seed $seed";
my $script_start = time();

my $node = ChunkbatchNode->create('parallel',
	conf => [ 'restart_after_crash = on', 'chunkbatch.max_workers = 6' ],
	extension_in => ['postgres']);
$node->sql(
	q{CREATE ROLE app LOGIN;
CREATE ROLE app_b LOGIN;
GRANT CREATE ON SCHEMA public TO app, app_b;});

# A table of app's with keys 1 .. $rows and a per-row counter n and the
# pid w of the process that last updated the row.
sub make_table
{
	my ($tbl, $rows) = @_;
	$node->sql(
		qq{CREATE TABLE $tbl (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, w int);
INSERT INTO $tbl (id) SELECT generate_series(1, $rows);},
		role => 'app');
	return;
}

# 'rows|rows whose counter is $n' of a table (restricted by $where).
sub counted
{
	my ($tbl, $n, $where) = @_;
	$where //= 'true';
	return $node->sql(
		"SELECT count(*) || '|' || count(*) FILTER (WHERE n = $n) FROM $tbl WHERE $where");
}

# The slices of run $run, in key order, each cover the keys after the end
# of the one before (the first from its range_first): 'slices|slices whose
# rows_done is exactly the number of keys of $tbl in their range that
# match $filter|slices with a range_first'.
sub slice_check
{
	my ($run, $tbl, $filter) = @_;
	$filter //= 'true';
	return $node->sql(
		qq{SELECT count(*) || '|'
       || count(*) FILTER (WHERE s.rows_done =
              (SELECT count(*) FROM $tbl t WHERE t.id > s.lo AND t.id <= s.hi AND ($filter))) || '|'
       || count(*) FILTER (WHERE s.range_first IS NOT NULL)
  FROM (SELECT x.rows_done, x.range_first, x.hi,
               COALESCE(lag(x.hi) OVER (ORDER BY x.hi), x.range_first::bigint - 1) AS lo
          FROM (SELECT rows_done, range_first,
                       COALESCE(range_last::bigint, 9223372036854775807) AS hi
                  FROM chunkbatch.slices WHERE run_id = $run) x) s});
}

# The processes executing run $run (its own worker and its helpers), by
# their application_name.
sub run_backends
{
	my ($run) = @_;
	return "SELECT count(*) FROM pg_stat_activity
             WHERE application_name ~ '^chunkbatch run $run( slices)?: '";
}

# Wait until run $run has no process left; true if so.
sub no_workers_left
{
	my ($run) = @_;
	return defined $node->poll_for(run_backends($run), qr/^0$/, 30);
}

# The live workers of run $run on its slices: 'slices running with a live
# worker|distinct live worker pids'.
sub live_slices
{
	my ($run) = @_;
	return "SELECT count(*) || '|' || count(DISTINCT worker_pid)
              FROM chunkbatch.slice_status
             WHERE run_id = $run AND state = 'running' AND worker_pid IS NOT NULL";
}

# ---------------------------------------------------------------------------
# 1. parallel => 4 over 200,000 rows.
# ---------------------------------------------------------------------------
{
	make_table('t_all', 200000);
	$node->sql(
		q{SELECT chunkbatch.create_update('all4', 't_all', 'n = n + 1, w = pg_backend_pid()', 'true',
                                   batch_size => 2000, sleep_ms => 100, parallel => 4)},
		role => 'app');
	is($node->sql(q{SELECT parallel FROM chunkbatch.jobs WHERE job_name = 'all4'}),
		'4', 'all4: the job has parallel 4');
	my $run = $node->queue_run('all4', role => 'app');
	ok(defined $node->poll_for(live_slices($run), qr/^4\|4$/, 90),
		'all4: four slices are worked on at once by four live workers');
	is( $node->sql(
			qq{SELECT d.slices || '|' || (d.workers >= 2) || '|' || (s.state LIKE 'running x%')
                 || '|' || (SELECT count(*) FROM chunkbatch.status WHERE job = 'all4')
                 FROM chunkbatch.status_detail d JOIN chunkbatch.status s USING (run_id)
                WHERE d.run_id = $run}),
		'4|true|true|1',
		'all4: status_detail shows 4 slices and the workers, status one line "running xN"');
	is( $node->sql(
			qq{SELECT count(*) FILTER (WHERE application_name = 'chunkbatch run $run: all4') || '|'
                   || count(*) FILTER (WHERE application_name = 'chunkbatch run $run slices: all4')
                 FROM pg_stat_activity}),
		'1|3', 'all4: the run\'s own worker and three helpers are in pg_stat_activity');
	is($node->final_state($run, '120s'), 'succeeded', 'all4: the run succeeds');
	is(counted('t_all', 1), '200000|200000', 'all4: every row processed exactly once');
	is($node->sql(q{SELECT count(DISTINCT w) >= 4 FROM t_all}),
		't', 'all4: by four processes or more');
	is( $node->sql(
			qq{SELECT count(*) FROM chunkbatch.runs WHERE job_name = 'all4'}),
		'1', 'all4: one runs row');
	is( $node->sql(
			qq{SELECT r.state || '|' || r.parallel || '|' || r.rows_done || '|'
                   || (r.chunks_done = (SELECT sum(chunks_done) FROM chunkbatch.slices s
                                         WHERE s.run_id = r.run_id))
                 FROM chunkbatch.runs r WHERE r.run_id = $run}),
		'succeeded|4|200000|true',
		'all4: the run\'s rows_done and chunks_done are the sums of its slices');
	is( $node->sql(
			qq{SELECT count(*) FILTER (WHERE slice_no < 4) || '|' || count(*) FILTER (WHERE state <> 'done')
                 FROM chunkbatch.slices WHERE run_id = $run}),
		'4|0', 'all4: the run was split into 4 slices (and more by stealing), all done');
	my ($n) = split /\|/, slice_check($run, 't_all');
	is(slice_check($run, 't_all'), "$n|$n|1",
		'all4: each slice processed exactly the keys of its range');
}

# ---------------------------------------------------------------------------
# 2. Work stealing.
# ---------------------------------------------------------------------------
{
	# All matching rows in the last quarter of the keys.
	make_table('t_quarter', 20000);
	$node->sql(
		q{SELECT chunkbatch.create_update('quarter', 't_quarter', 'n = n + 1, w = pg_backend_pid()',
                                   'id > 15000', batch_size => 100, sleep_ms => 60, parallel => 4)},
		role => 'app');
	my $run = $node->queue_run('quarter', role => 'app');
	is($node->final_state($run, '120s'), 'succeeded', 'quarter: the run succeeds');
	is( $node->sql(
			qq{SELECT count(*) FILTER (WHERE slice_no < 4) || '|'
                   || bool_and(COALESCE(range_last::bigint, 0) > 15000) || '|'
                   || max(range_first)
                 FROM chunkbatch.slices WHERE run_id = $run}),
		'4|true|15001',
		'quarter: the 4 slices are all in the quarter of the keys that match');
	is(counted('t_quarter', 1, 'id > 15000'), '5000|5000',
		'quarter: every matching row processed exactly once');
	is(counted('t_quarter', 0, 'id <= 15000'), '15000|15000',
		'quarter: no other row touched');
	cmp_ok($node->sql(q{SELECT count(DISTINCT w) FROM t_quarter WHERE id > 15000}),
		'>', 1, 'quarter: more than one worker processed the quarter');

	# The last quarter is slow to process: the others finish early and steal.
	make_table('t_steal', 20000);
	$node->sql(
		q{CREATE FUNCTION slow_row(k bigint) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF k > 15000 THEN
        PERFORM pg_sleep(0.0005);
    END IF;
    RETURN 0;
END $$;
SELECT chunkbatch.create_update('steal', 't_steal', 'n = n + 1 + slow_row(id), w = pg_backend_pid()',
                                'true', batch_size => 200);},
		role => 'app');
	my $log_offset = -s $node->logfile;
	my $t0 = time();
	$run = $node->sql(q{CALL chunkbatch.run_and_wait('steal', parallel => 4)},
		role => 'app');
	note sprintf('steal: run %s took %.1f s', $run, time() - $t0);
	like($run, qr/^\d+$/, 'steal: run_and_wait(..., parallel => 4) returns the run id');
	is( $node->sql(
			qq{SELECT state || '|' || parallel || '|' || rows_done FROM chunkbatch.runs
                WHERE run_id = $run}),
		'succeeded|4|20000', 'steal: the run succeeds with parallel 4 (the run\'s, not the job\'s 1)');
	my $stolen = $node->sql(
		qq{SELECT count(*) FROM chunkbatch.slices WHERE run_id = $run AND slice_no >= 4});
	cmp_ok($stolen, '>=', 1, "steal: new slices were made by stealing ($stolen)");
	ok( $node->log_contains(
			qr/chunkbatch run $run of job "steal": this worker takes over the keys after \d+ as slice [4-9]/,
			$log_offset),
		'steal: the server log says which worker took over which keys');
	is(counted('t_steal', 1), '20000|20000', 'steal: every row processed exactly once');
	cmp_ok($node->sql(q{SELECT count(DISTINCT w) FROM t_steal WHERE id > 15000}),
		'>', 1, 'steal: more than one worker processed the slow quarter');
	my ($n) = split /\|/, slice_check($run, 't_steal');
	is(slice_check($run, 't_steal'), "$n|$n|1",
		'steal: each slice (the stolen ones too) processed exactly the keys of its range');
	note $node->sql(
		qq{SELECT string_agg(slice_no || ': ' || COALESCE(range_first, '') || '..'
                             || COALESCE(range_last, '') || ' ' || rows_done || ' rows', ', '
                             ORDER BY slice_no)
             FROM chunkbatch.slices WHERE run_id = $run});
}

# Stealing with a key of a domain type: the thief compares the victim's
# checkpoint with its split as the key type, and a domain's CHECK runs the
# owner's code; it must run as the owner, never as chunkbatch's own
# (superuser) identity.
{
	$node->sql(
		q{CREATE TABLE dom_who (who name NOT NULL);
CREATE FUNCTION dom_ok(k bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.dom_who VALUES (current_user);
    RETURN k > 0;
END $$;
CREATE DOMAIN dom_key AS bigint CHECK (dom_ok(VALUE));
CREATE TABLE t_dom (id dom_key PRIMARY KEY, n int NOT NULL DEFAULT 0, w int);
INSERT INTO t_dom (id) SELECT generate_series(1, 20000);
TRUNCATE dom_who;
SELECT chunkbatch.create_update('dom_steal', 't_dom', 'n = n + 1 + slow_row(id), w = pg_backend_pid()',
                                'true', batch_size => 200);},
		role => 'app');
	my $run = $node->sql(q{CALL chunkbatch.run_and_wait('dom_steal', parallel => 4)},
		role => 'app');
	is($node->sql(qq{SELECT state FROM chunkbatch.runs WHERE run_id = $run}),
		'succeeded', 'domain key: the run succeeds');
	cmp_ok(
		$node->sql(
			qq{SELECT count(*) FROM chunkbatch.slices WHERE run_id = $run AND slice_no >= 4}),
		'>=', 1, 'domain key: new slices were made by stealing');
	is(counted('t_dom', 1), '20000|20000', 'domain key: every row processed exactly once');
	is( $node->sql(
			q{SELECT count(*) FILTER (WHERE who = 'app') > 0 AS checked_as_owner,
                     string_agg(DISTINCT who::text, ',') FILTER (WHERE who <> 'app') AS others
                FROM dom_who}),
		't|',
		'domain key: the CHECK of the key type ran, only ever as the job owner');
}

# ---------------------------------------------------------------------------
# 3. SIGKILL of a worker of the run at random moments.
# ---------------------------------------------------------------------------
{
	my $rows = 16000;
	$node->sql(
		q{CREATE TABLE t_kill (id bigint PRIMARY KEY, r int NOT NULL, n int NOT NULL DEFAULT 0, w int);
SELECT chunkbatch.create_update('kill', 't_kill', 'n = n + 1, w = pg_backend_pid()',
                                'r = ($3->>''r'')::int', batch_size => 400, sleep_ms => 150);},
		role => 'app');
	my $target = 10;
	my ($landed, $sent, $helper_kills, $own_kills) = (0, 0, 0, 0);
	my @runs;
	for (my $r = 1; $landed < $target && $r <= 8; $r++)
	{
		$node->sql(
			"INSERT INTO t_kill (id, r) SELECT g, $r FROM generate_series("
			  . (($r - 1) * $rows + 1) . ", " . ($r * $rows) . ") g",
			role => 'app');
		my $run = $node->sql(
			qq{SELECT chunkbatch.run('kill', '{"r": $r}', parallel => 4)}, role => 'app');
		my $here = 0;
		while ($here < 4 && $landed < $target)
		{
			my $helper = ($landed % 2 == 0);
			my $which = $helper
			  ? 's.worker_pid IS DISTINCT FROM r.worker_pid'
			  : 's.worker_pid = r.worker_pid';
			# A live worker of the preferred kind (else any), once two are at
			# work, or 'done'.
			my $pid = $node->poll_for(
				qq{SELECT CASE WHEN r.state IN $FINAL_STATES THEN 'done'
                            WHEN (SELECT count(*) FROM chunkbatch.slice_status s
                                   WHERE s.run_id = r.run_id AND s.worker_pid IS NOT NULL) >= 2
                            THEN (SELECT s.worker_pid::text FROM chunkbatch.slice_status s
                                   WHERE s.run_id = r.run_id AND s.worker_pid IS NOT NULL
                                   ORDER BY $which DESC, random() LIMIT 1) END
                     FROM chunkbatch.runs r WHERE r.run_id = $run},
				qr/^(done|\d+)$/, 60);
			last if !defined $pid || $pid eq 'done';
			my $delay = 0.05 + rand(0.6);
			usleep(int($delay * 1_000_000));
			# Let the random kills never make a crash loop (workers dying
			# three times in a row before a chunk commits).
			if ($node->sql("SELECT start_attempts >= 2 FROM chunkbatch.runs WHERE run_id = $run") eq 't')
			{
				$node->poll_for(
					"SELECT start_attempts < 2 OR state IN $FINAL_STATES FROM chunkbatch.runs
                      WHERE run_id = $run", qr/^t$/, 60);
			}
			my $kind = $node->sql(
				qq{SELECT CASE WHEN s.worker_pid = r.worker_pid THEN 'own' ELSE 'helper' END
                     FROM chunkbatch.slice_status s JOIN chunkbatch.runs r USING (run_id)
                    WHERE s.run_id = $run AND s.worker_pid = $pid AND r.state = 'running'});
			next if $kind eq '';
			my $log_offset = -s $node->logfile;
			$sent++;
			next unless kill 'KILL', $pid;
			if ($node->log_wait(qr/\(PID $pid\) was terminated by signal 9/, $log_offset, 30))
			{
				$landed++;
				$here++;
				$kind eq 'own' ? $own_kills++ : $helper_kills++;
				note sprintf('run %d: SIGKILL to its %s worker %d after %.2f s',
					$run, $kind, $pid, $delay);
			}
		}
		is($node->poll_for("SELECT chunkbatch.wait($run, '90s')", qr/^\w+$/, 100),
			'succeeded', "kill: run $run succeeded after $here SIGKILLs");
		is(counted('t_kill', 1, "r = $r"), "$rows|$rows",
			"kill: run $run processed every row exactly once");
		my ($n) = split /\|/, slice_check($run, 't_kill', "t.r = $r");
		is(slice_check($run, 't_kill', "t.r = $r"), "$n|$n|1",
			"kill: run $run: each slice processed exactly the keys of its range");
		is( $node->sql(
				qq{SELECT rows_done || '|' || (SELECT count(*) FROM chunkbatch.runs WHERE job_name = 'kill'
                                                AND params->>'r' = '$r')
                     FROM chunkbatch.runs WHERE run_id = $run}),
			"$rows|1", "kill: run $run is one runs row with all its rows");
		push @runs, $run;
	}
	is($landed, $target, "kill: $target SIGKILLs landed on workers of runs ($sent sent)");
	ok($helper_kills >= 1 && $own_kills >= 1,
		"kill: helpers ($helper_kills) and the runs' own workers ($own_kills) were killed");
	my $ids = join(',', @runs);
	cmp_ok(
		$node->sql(
			qq{SELECT count(*) FROM chunkbatch.slices WHERE run_id IN ($ids) AND workers > 1}),
		'>=', 1, 'kill: killed slices were taken again by new workers');
	is( $node->sql(
			qq{SELECT count(*) FILTER (WHERE n = 0) || '|' || count(*) FILTER (WHERE n > 1) FROM t_kill}),
		'0|0', 'kill: no row lost, none processed twice');
}

# ---------------------------------------------------------------------------
# 4. Pause, resume, cancel.
# ---------------------------------------------------------------------------
{
	# No range_filter here: the last slice has no end.
	make_table('t_pause', 40000);
	$node->sql(
		q{CREATE TABLE pause_log (pid int NOT NULL, t0 timestamptz NOT NULL, lo bigint, hi bigint);
CREATE FUNCTION pause_chunk(lo bigint, hi bigint) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pause_log VALUES (pg_backend_pid(), clock_timestamp(), lo, hi);
    PERFORM pg_sleep(0.15);
    RETURN QUERY UPDATE t_pause SET n = n + 1, w = pg_backend_pid()
                  WHERE id BETWEEN lo AND hi RETURNING id;
END $$;
SELECT chunkbatch.create_job('pause4', 'SELECT * FROM pause_chunk($1, $2)', batch_size => 500,
                             range_table => 't_pause', range_key => 'id', parallel => 4);},
		role => 'app');
	my $run = $node->queue_run('pause4', role => 'app');
	ok( defined $node->poll_for(
			live_slices($run) . " AND (SELECT count(*) FROM pause_log) >= 8",
			qr/^[34]\|[34]$/, 90),
		'pause: three or more workers are at work');
	my $t0 = time();
	my $paused_at = $node->sql(
		"SELECT clock_timestamp()::text; SELECT chunkbatch.pause($run);");
	($paused_at) = split /\n/, $paused_at;
	is($node->final_state($run, '120s'), 'paused', 'pause: the run is paused');
	my $secs = time() - $t0;
	cmp_ok($secs, '<', 5,
		sprintf('pause: within 5 s of the request, chunks being 0.15 s (%.1f s)', $secs));
	ok(no_workers_left($run), 'pause: no worker of the run is left');
	is( $node->sql(
			qq{SELECT count(*) FILTER (WHERE state = 'running') || '|' || count(worker_pid)
                 FROM chunkbatch.slice_status WHERE run_id = $run}),
		'0|0', 'pause: no slice is running, none has a live worker');
	is( $node->sql(
			qq{SELECT count(*) FILTER (WHERE t0 > '$paused_at'::timestamptz + interval '1 s') || '|'
                   || (COALESCE(max(c), 0) <= 1)
                 FROM (SELECT pid, t0, count(*) FILTER (WHERE t0 > '$paused_at')
                                         OVER (PARTITION BY pid) AS c
                         FROM pause_log) l}),
		'0|true',
		'pause: each worker stopped within one chunk (no chunk began later than just at the pause)');
	my $before = $node->sql(
		qq{SELECT (SELECT sum(n) FROM t_pause) || '|' || (SELECT count(*) FROM pause_log)
                 || '|' || (SELECT sum(rows_done) FROM chunkbatch.slices WHERE run_id = $run)});
	my ($rows_at_pause) = (split /\|/, $before)[0];
	cmp_ok($rows_at_pause, '<', 40000, "pause: paused with $rows_at_pause of 40000 rows done");
	is((split /\|/, $before)[2], $rows_at_pause,
		'pause: the slices\' checkpoints count exactly the rows done');
	sleep 1;
	is( $node->sql(
			qq{SELECT (SELECT sum(n) FROM t_pause) || '|' || (SELECT count(*) FROM pause_log)
                 || '|' || (SELECT sum(rows_done) FROM chunkbatch.slices WHERE run_id = $run)}),
		$before, 'pause: a second later nothing has moved');
	my @cursors = split /\n/, $node->sql(
		qq{SELECT cursor FROM chunkbatch.slices
            WHERE run_id = $run AND state = 'pending' AND cursor IS NOT NULL});
	cmp_ok(scalar(@cursors), '>=', 1, 'pause: slices wait with their checkpoints');

	my $resumed_at = $node->sql(
		"SELECT clock_timestamp()::text; SELECT chunkbatch.resume($run);");
	($resumed_at) = split /\n/, $resumed_at;
	is($node->final_state($run, '120s'), 'succeeded', 'resume: the run succeeds');
	is(counted('t_pause', 1), '40000|40000', 'resume: every row processed exactly once');
	my $list = join(',', @cursors);
	is( $node->sql(
			qq{SELECT count(*) FROM unnest('{$list}'::bigint[]) c
                WHERE EXISTS (SELECT 1 FROM pause_log l
                               WHERE l.t0 > '$resumed_at' AND l.lo = c + 1)}),
		scalar(@cursors), 'resume: each paused slice continued right after its checkpoint');
	cmp_ok(
		$node->sql(
			qq{SELECT count(DISTINCT pid) FROM pause_log WHERE t0 > '$resumed_at'}),
		'>=', 2, 'resume: by several workers');
	my ($n) = split /\|/, slice_check($run, 't_pause');
	is(slice_check($run, 't_pause'), "$n|$n|1",
		'resume: each slice processed exactly the keys of its range');
	is($node->sql(qq{SELECT count(*) FROM chunkbatch.slices WHERE run_id = $run AND range_last IS NULL}),
		'1', 'without a filter the last slice has no end');

	# Cancel.
	make_table('t_cancel', 40000);
	$node->sql(
		q{SELECT chunkbatch.create_update('cancel4', 't_cancel', 'n = n + 1, w = pg_backend_pid()', 'true',
                                   batch_size => 500, sleep_ms => 150, parallel => 4)},
		role => 'app');
	$run = $node->queue_run('cancel4', role => 'app');
	ok( defined $node->poll_for(
			live_slices($run) . " AND (SELECT sum(rows_done) FROM chunkbatch.slices WHERE run_id = $run) >= 2000",
			qr/^[234]\|[234]$/, 90),
		'cancel: several workers are at work');
	$t0 = time();
	$node->sql("SELECT chunkbatch.cancel($run)");
	is($node->final_state($run, '120s'), 'cancelled', 'cancel: the run is cancelled');
	$secs = time() - $t0;
	cmp_ok($secs, '<', 5, sprintf('cancel: within 5 s of the request (%.1f s)', $secs));
	ok(no_workers_left($run), 'cancel: no worker of the run is left');
	is( $node->sql(
			qq{SELECT count(*) FROM chunkbatch.slices WHERE run_id = $run AND state = 'running'}),
		'0', 'cancel: no slice is running');
	my $done = $node->sql(q{SELECT count(*) FILTER (WHERE n = 1) || '|' || count(*) FILTER (WHERE n > 1) FROM t_cancel});
	like($done, qr/^\d+\|0$/, 'cancel: no row processed twice');
	cmp_ok((split /\|/, $done)[0], '<', 40000, 'cancel: the run ended before its last row');
	is( $node->sql(
			qq{SELECT rows_done FROM chunkbatch.runs WHERE run_id = $run}),
		(split /\|/, $done)[0], 'cancel: the run\'s rows_done is the rows done');
	sleep 1;
	is($node->sql(q{SELECT count(*) FILTER (WHERE n = 1) || '|' || count(*) FILTER (WHERE n > 1) FROM t_cancel}),
		$done, 'cancel: a second later nothing has moved');
}


# ---------------------------------------------------------------------------
# 4b. Throttles are checked once for the run, by its own worker; its
#     helpers hold while it holds.
# ---------------------------------------------------------------------------
{
	make_table('t_throttle', 30000);
	$node->sql(
		q{CREATE TABLE gate (hold boolean NOT NULL);
INSERT INTO gate VALUES (false);
CREATE TABLE probe_log (pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION probe() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO probe_log (pid) VALUES (pg_backend_pid());
    RETURN (SELECT hold FROM gate);
END $$;
SELECT chunkbatch.create_update('throttled4', 't_throttle', 'n = n + 1, w = pg_backend_pid()', 'true',
                                batch_size => 200, sleep_ms => 100, parallel => 4,
                                throttle_sql => 'SELECT probe()');},
		role => 'app');
	my $run = $node->queue_run('throttled4', role => 'app');
	ok( defined $node->poll_for(live_slices($run), qr/^[34]\|[34]$/, 90),
		'throttle: three or more workers are at work');
	$node->sql(q{UPDATE gate SET hold = true});
	ok( defined $node->poll_for(
			"SELECT state FROM chunkbatch.runs WHERE run_id = $run", qr/^throttled$/, 30),
		'throttle: the run holds');
	# Chunks in progress as the gate closed end; then nothing moves.
	my $rows_sql = "SELECT sum(rows_done) FROM chunkbatch.slices WHERE run_id = $run";
	my ($r1, $r2) = (-1, -2);
	my $deadline = time() + 30;
	while ($r1 != $r2 && time() < $deadline)
	{
		$r1 = $node->sql($rows_sql);
		sleep 1;
		$r2 = $node->sql($rows_sql);
	}
	is($r1, $r2, "throttle: no worker of the run processes rows while it holds ($r2 rows done)");
	cmp_ok($r2, '<', 30000, 'throttle: held before its last row');
	is( $node->sql(
			qq{SELECT count(DISTINCT pid) || '|' || bool_and(pid = (SELECT worker_pid FROM chunkbatch.runs
                                                                      WHERE run_id = $run))
                 FROM probe_log}),
		'1|true', 'throttle: only the run\'s own worker evaluates throttle_sql');
	$node->sql(q{UPDATE gate SET hold = false});
	is($node->final_state($run, '120s'), 'succeeded', 'throttle: the run succeeds once the gate opens');
	is(counted('t_throttle', 1), '30000|30000', 'throttle: every row processed exactly once');
	cmp_ok($node->sql(qq{SELECT count(DISTINCT w) FROM t_throttle}),
		'>=', 2, 'throttle: by several workers');
}

# ---------------------------------------------------------------------------
# 5. chunkbatch.max_workers = 2: fewer workers than slices, fair share.
# ---------------------------------------------------------------------------
{
	$node->append_conf('postgresql.conf', 'chunkbatch.max_workers = 2');
	$node->restart;
	is($node->sql(q{SHOW chunkbatch.max_workers}), '2', 'few: chunkbatch.max_workers is 2');
	make_table('t_few', 20000);
	$node->sql(
		q{SELECT chunkbatch.create_update('few', 't_few', 'n = n + 1, w = pg_backend_pid()', 'true',
                                   batch_size => 500, sleep_ms => 100, parallel => 4)},
		role => 'app');
	$node->sql(
		q{CREATE TABLE t_b (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO t_b (id) SELECT generate_series(1, 1000);
SELECT chunkbatch.create_update('b_job', 't_b', 'n = n + 1', 'true', batch_size => 100);},
		role => 'app_b');
	my $app_workers = q{SELECT count(*) FROM pg_stat_activity
                         WHERE backend_type = 'chunkbatch run worker' AND usename = 'app'};
	my $run = $node->queue_run('few', role => 'app');
	ok( $node->poll_run(
			$run, "state = 'running' AND (SELECT sum(rows_done) FROM chunkbatch.slices s
                                            WHERE s.run_id = $run) >= 1000"),
		'few: the parallel => 4 run is at work');
	my $b_run = $node->queue_run('b_job', role => 'app_b');
	is($node->final_state($b_run, '60s'), 'succeeded', 'few: a run of another role succeeds meanwhile');
	is($node->sql("SELECT state FROM chunkbatch.runs WHERE run_id = $run"),
		'running', 'few: ... while the parallel run is still running');
	is($node->sql($app_workers), '1', 'few: the parallel run has one worker');
	is($node->final_state($run, '120s'), 'succeeded', 'few: the parallel run succeeds');
	is(counted('t_few', 1), '20000|20000', 'few: every row processed exactly once');
	is( $node->sql(
			qq{SELECT count(*) FILTER (WHERE slice_no < 4) || '|' || count(DISTINCT worker_pid) || '|'
                   || (SELECT count(DISTINCT w) FROM t_few)
                 FROM chunkbatch.slices WHERE run_id = $run}),
		'4|1|1', 'few: its 4 slices were all processed by its one worker');
	my ($n) = split /\|/, slice_check($run, 't_few');
	is(slice_check($run, 't_few'), "$n|$n|1",
		'few: each slice processed exactly the keys of its range');
	is($node->sql(q{SELECT sum(n) FROM t_b}), '1000', 'few: the other role\'s rows are done');

	# Two workers for the role.
	$node->sql(q{ALTER SYSTEM SET chunkbatch.max_workers_per_role = 2; SELECT pg_reload_conf();});
	ok( defined $node->poll_for(q{SHOW chunkbatch.max_workers_per_role}, qr/^2$/, 30),
		'few: chunkbatch.max_workers_per_role = 2 is in effect');
	$run = $node->queue_run('few', role => 'app');
	my $most = 0;
	my $deadline = time() + 120;
	while (time() < $deadline)
	{
		my ($state, $workers) = split /\|/, $node->sql(
			"SELECT state || '|' || ($app_workers) FROM chunkbatch.runs WHERE run_id = $run");
		$most = $workers if $workers > $most;
		last if $state =~ /^(succeeded|failed|cancelled|stopped)$/;
		usleep(100_000);
	}
	is($node->final_state($run, '10s'), 'succeeded', 'few: a second parallel run succeeds');
	is($most, 2, 'few: with max_workers_per_role = 2 it used 2 workers at most');
	is(counted('t_few', 2), '20000|20000', 'few: every row processed exactly once more');
	cmp_ok($node->sql(q{SELECT count(DISTINCT w) FROM t_few}), '>=', 2,
		'few: by two workers or more');
}

# ---------------------------------------------------------------------------
# 6. A failing slice (with workers for every slice again).
# ---------------------------------------------------------------------------
{
	$node->append_conf('postgresql.conf', 'chunkbatch.max_workers = 6');
	$node->sql(q{ALTER SYSTEM RESET chunkbatch.max_workers_per_role});
	$node->restart;
	is($node->sql(q{SHOW chunkbatch.max_workers}) . '|' . $node->sql(q{SHOW chunkbatch.max_workers_per_role}),
		'6|-1', 'fail: chunkbatch.max_workers is 6 again');
	make_table('t_fail', 20000);
	$node->sql(
		q{CREATE TABLE fail_flag (failing boolean NOT NULL);
INSERT INTO fail_flag VALUES (true);
CREATE FUNCTION check_row(k bigint) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF k = 10100 AND (SELECT failing FROM fail_flag) THEN
        RAISE EXCEPTION 'row % is bad', k USING ERRCODE = 'U0001';
    END IF;
    RETURN 0;
END $$;
SELECT chunkbatch.create_update('fail4', 't_fail', 'n = n + 1 + check_row(id), w = pg_backend_pid()',
                                'true', batch_size => 200, sleep_ms => 50, parallel => 4);},
		role => 'app');
	my $log_offset = -s $node->logfile;
	my $run = $node->queue_run('fail4', role => 'app');
	my $state = $node->final_state($run, '30s');
	is($state, 'failed', 'fail: the run fails');
	is( $node->sql(
			qq{SELECT sqlstate || '|' || (error LIKE '%row 10100 is bad%') FROM chunkbatch.runs
                WHERE run_id = $run}),
		'U0001|true', 'fail: with the SQLSTATE and error of the failing slice');
	ok(no_workers_left($run), 'fail: no worker of the run is left');
	# The slice with key 10100, and the one after it (which a worker takes
	# no sooner: slices are taken in order).
	my $slices = $node->sql(
		qq{SELECT string_agg(slice_no || ':' || state || ':' || COALESCE(sqlstate, '-') || ':'
                             || (rows_done < keys)::text, ',' ORDER BY hi)
             FROM (SELECT s.*, (SELECT count(*) FROM t_fail t WHERE t.id > s.lo AND t.id <= s.hi) AS keys
                     FROM (SELECT x.*, COALESCE(lag(x.hi) OVER (ORDER BY x.hi), x.range_first::bigint - 1) AS lo
                             FROM (SELECT slices.*, range_last::bigint AS hi
                                     FROM chunkbatch.slices WHERE run_id = $run) x) s) y});
	note "fail: slices $slices";
	my @slices = split /,/, $slices;
	my ($bad) = $node->sql(
		qq{SELECT slice_no FROM chunkbatch.slices s
            WHERE run_id = $run AND range_last::bigint >= 10100
              AND COALESCE((SELECT max(range_last::bigint) FROM chunkbatch.slices p
                             WHERE p.run_id = $run AND p.range_last::bigint < s.range_last::bigint), 0) < 10100});
	is(scalar(grep { /^$bad:failed:U0001:true$/ } @slices), 1,
		"fail: the slice with the bad row (slice $bad) failed, short of its keys");
	is(scalar(grep { /:running:/ } @slices), 0, 'fail: no slice is running');
	cmp_ok(scalar(grep { /^\d+:pending:-:true$/ } @slices), '>=', 1,
		'fail: the other slices stopped short of their keys (pending)');
	is(scalar(grep { /:failed:/ } @slices), 1, 'fail: only one slice failed');
	ok( $node->log_contains(
			qr/chunkbatch run $run of job "fail4" failed in chunk \d+ of slice $bad: row 10100 is bad/,
			$log_offset),
		'fail: the server log names the slice');
	my $log = slurp_file($node->logfile, $log_offset);
	my ($own) = $log =~ /\[(\d+)\] LOG:  chunkbatch run $run of job "fail4" is split/;
	my ($failer) = $log =~ /\[(\d+)\] LOG:  chunkbatch run $run of job "fail4" failed in chunk/;
	note sprintf('fail: slice %s failed in %s (pid %s; the run\'s own worker is %s)',
		$bad, (($failer // '') eq ($own // '') ? 'the run\'s own worker' : 'a helper'),
		$failer // '?', $own // '?');
	is($node->sql(q{SELECT n FROM t_fail WHERE id = 10100}), '0', 'fail: the bad row is untouched');
	like(
		$node->sql(q{SELECT count(*) FILTER (WHERE n = 1) || '|' || count(*) FILTER (WHERE n > 1) FROM t_fail}),
		qr/^\d+\|0$/, 'fail: no row processed twice');

	ok(!$node->log_contains(qr/chunkbatch run $run of job "fail4" was interrupted/, $log_offset),
		'fail: the run was never left without its worker (interrupted)');

	$node->sql(q{UPDATE fail_flag SET failing = false});
	if ($state ne 'failed')
	{
		fail('fail: resumed after the fix (the run did not fail, it is '
			  . $node->sql("SELECT state FROM chunkbatch.runs WHERE run_id = $run") . ')');
	}
	else
	{
		$node->sql("SELECT chunkbatch.resume($run)");
		is($node->final_state($run, '120s'), 'succeeded', 'fail: resumed after the fix, the run succeeds');
		is(counted('t_fail', 1), '20000|20000', 'fail: every row processed exactly once');
		is( $node->sql(
				qq{SELECT count(*) FILTER (WHERE state <> 'done') || '|' || count(*) FILTER (WHERE sqlstate IS NOT NULL)
                 FROM chunkbatch.slices WHERE run_id = $run}),
			'0|0', 'fail: every slice is done, the failed one too');
		my ($n) = split /\|/, slice_check($run, 't_fail');
		is(slice_check($run, 't_fail'), "$n|$n|1",
			'fail: each slice processed exactly the keys of its range');
		is($node->sql(qq{SELECT rows_done || '|' || (sqlstate IS NULL) FROM chunkbatch.runs WHERE run_id = $run}),
			'20000|true', 'fail: the run counts every row, no error left');
	}
}

note sprintf('script ran %.1f s', time() - $script_start);
$node->stop;
done_testing();
