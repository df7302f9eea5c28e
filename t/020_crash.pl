# Copyright (c) 2026, chunkbatch developers
#
# Crash safety: nothing lost, nothing done twice.
#
# - the run worker of a keyset job that increments a per-row counter is
#   killed with SIGKILL at 20 random moments (0.05-0.6 s after a worker of
#   the run appears, 5 per run, over 4 or more runs of 20,000 rows each);
#   the postmaster restarts everything each time and the runs resume by
#   themselves: every counter ends at exactly 1, every run 'succeeded', the
#   committed chunks add up to exactly 20,000 rows per run;
# - an immediate shutdown mid-run, then start: the run resumes by itself and
#   every row is processed exactly once;
# - a fast shutdown mid-run: the worker records the run 'interrupted' (server
#   log) before it exits, the run resumes after the start, every row once;
# - pg_terminate_backend() of the worker mid-run: the run is recorded
#   'interrupted', resumes and completes, every row once;
# - a run whose worker is killed 3 times before it commits any chunk ends
#   'failed' (SQLSTATE 55000, crash loop) instead of restarting forever.
#
# Set CHUNKBATCH_CRASH_SEED to replay the random kill moments of a run.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode qw($FINAL_STATES);

my $seed = $ENV{CHUNKBATCH_CRASH_SEED} // (time() * 1000 % 1000000000);
srand($seed);
note "random seed $seed";

# The server restarts after each SIGKILL of a worker.
my $node = ChunkbatchNode->create('crash',
	conf => ['restart_after_crash = on'],
	extension_in => ['postgres']);

my $db = 'postgres';
my $script_start = time();

# How many times the scheduler found run $run 'running' without a worker
# (after a crash) and marked it interrupted, from $offset in the server log.
sub interrupted_marks
{
	my ($run, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset // 0);
	my @m = $log =~
	  /chunkbatch run $run of job "[^"]+" was interrupted; it resumes from its checkpoint/g;
	return scalar @m;
}

# The pid of a live worker executing run $run other than $not_pid, or 'done'
# once the run is in a final state (undef on timeout).
sub next_worker
{
	my ($run, $not_pid, $timeout) = @_;
	return $node->poll_for(
		"SELECT CASE WHEN r.state IN $FINAL_STATES THEN 'done'
                     WHEN s.state = 'running' AND s.worker_pid <> $not_pid
                     THEN s.worker_pid::text END
           FROM chunkbatch.runs r
           LEFT JOIN chunkbatch.status_detail s USING (run_id)
          WHERE r.run_id = $run",
		qr/^(done|\d+)$/, $timeout);
}

# Per-row counters: r = run number (a separate key range per run).  Every
# chunk sleeps 0.03 s and logs, in its own transaction, the process that
# executed it and how many rows it updated.
$node->safe_psql(
	$db, q{
CREATE TABLE crash_items (r int NOT NULL, id bigint NOT NULL,
                          n int NOT NULL DEFAULT 0, PRIMARY KEY (r, id));
CREATE TABLE chunk_log (r int NOT NULL, pid int NOT NULL, n bigint NOT NULL);
SELECT chunkbatch.create_job(
  job_name => 'crash_touch',
  chunk_sql => $$WITH pause AS MATERIALIZED (SELECT pg_sleep(0.03)),
                 u AS (UPDATE crash_items c SET n = c.n + 1
                         FROM pause
                        WHERE c.r = ($3->>'r')::int
                          AND c.id IN (SELECT i.id FROM crash_items i
                                        WHERE i.r = ($3->>'r')::int
                                          AND ($2 IS NULL OR i.id > $2)
                                        ORDER BY i.id LIMIT $1)
                       RETURNING c.id),
                 l AS (INSERT INTO chunk_log
                       SELECT ($3->>'r')::int, pg_backend_pid(), count(*) FROM u)
                 SELECT id FROM u$$,
  batch_size => 200,
  cursor_type => 'bigint');
});

my $rows = 20000;

sub start_run
{
	my ($r) = @_;
	$node->sql("INSERT INTO crash_items (r, id)
         SELECT $r, g FROM generate_series(1, $rows) g");
	return $node->queue_run('crash_touch', params => qq({"r": $r}));
}

# Every row of run number $r processed exactly once, and the committed
# chunks add up to exactly the rows (no chunk committed twice).
sub check_exactly_once
{
	my ($r, $run, $what) = @_;
	is( $node->sql("SELECT count(*), count(*) FILTER (WHERE n = 1),
                    count(*) FILTER (WHERE n = 0), count(*) FILTER (WHERE n > 1)
               FROM crash_items WHERE r = $r"),
		"$rows|$rows|0|0",
		"$what: every row processed exactly once (none lost, none doubled)");
	is( $node->sql("SELECT state, rows_done, cursor, sqlstate IS NULL
               FROM chunkbatch.runs WHERE run_id = $run"),
		"succeeded|$rows|$rows|t",
		"$what: run $run succeeded with rows_done $rows at the last key");
	is($node->sql("SELECT sum(n) FROM chunk_log WHERE r = $r"),
		$rows, "$what: the committed chunks add up to $rows rows");
}

# ---------------------------------------------------------------------------
# 1. SIGKILL of the run worker at 20 random moments.
# ---------------------------------------------------------------------------
my $target_kills = 20;
my $kills_per_run = 5;
my $max_runs = 8;
my ($kills_sent, $kills_landed, $guard_waits) = (0, 0, 0);
my @kill_runs;    # [r, run_id, kills landed on it]

for (my $r = 1; $kills_landed < $target_kills && $r <= $max_runs; $r++)
{
	my $run = start_run($r);
	my $t0 = time();
	my $run_log_offset = -s $node->logfile;
	my $prev_pid = 0;
	my $landed_here = 0;

	while ($landed_here < $kills_per_run && $kills_landed < $target_kills)
	{
		my $pid = next_worker($run, $prev_pid, 60);
		last if !defined $pid || $pid eq 'done';

		my $delay = 0.05 + rand(0.55);
		usleep(int($delay * 1_000_000));

		# Never let the random kills themselves form a crash loop (3 workers
		# in a row dying before committing a chunk): once two workers in a
		# row died that way, let this one commit a chunk first.
		if ($node->sql("SELECT start_attempts >= 2 FROM chunkbatch.runs
                  WHERE run_id = $run") eq 't')
		{
			$guard_waits++;
			$node->poll_for(
				"SELECT start_attempts < 2 OR state IN $FINAL_STATES
                   FROM chunkbatch.runs WHERE run_id = $run",
				qr/^t$/, 60);
		}

		# Kill only the run's current worker, while the run is running.
		my $cur = $node->sql(
			"SELECT s.worker_pid FROM chunkbatch.status_detail s
              WHERE s.run_id = $run AND s.state = 'running'");
		if ($cur ne $pid)
		{
			$prev_pid = 0;
			next;
		}
		my $log_offset = -s $node->logfile;
		my $sent = kill 'KILL', $pid;
		$kills_sent++;
		$prev_pid = $pid;
		next unless $sent;
		# The postmaster saw it die by SIGKILL and restarts everything.
		if ($node->log_wait(qr/\(PID $pid\) was terminated by signal 9/,
				$log_offset, 30))
		{
			$kills_landed++;
			$landed_here++;
			note sprintf("run %d: SIGKILL %d to worker %d after %.2f s", $run,
				$landed_here, $pid, $delay);
		}
	}

	is($node->poll_for("SELECT chunkbatch.wait($run, '90s')", qr/^\w+$/, 100),
		'succeeded', "run $run (number $r) succeeded after $landed_here SIGKILLs");
	# Each kill found the run 'running' (checked just before it), so after
	# the restart the scheduler marks it interrupted -- except possibly the
	# last kill, if it hit the worker right after its final commit.
	my $marks = interrupted_marks($run, $run_log_offset);
	ok( $marks <= $landed_here && $marks >= $landed_here - 1,
		"run $run passed through 'interrupted' after the kills ($marks times)");
	push @kill_runs, [ $r, $run, $landed_here ];
	note sprintf("run %d: %d kills landed, %.1f s, %s distinct worker pids committed chunks",
		$run, $landed_here, time() - $t0,
		$node->sql("SELECT count(DISTINCT pid) FROM chunk_log WHERE r = $r AND n > 0"));
}

is($kills_landed, $target_kills,
	"$target_kills SIGKILLs landed on running workers ($kills_sent sent)");
cmp_ok(scalar(@kill_runs), '>=', 4, 'across at least 4 runs');

my $kill_r = join(',', map { $_->[0] } @kill_runs);
my $kill_run_ids = join(',', map { $_->[1] } @kill_runs);
my ($lost, $doubled, $once) = split /\|/,
  $node->sql("SELECT count(*) FILTER (WHERE n = 0), count(*) FILTER (WHERE n > 1),
              count(*) FILTER (WHERE n = 1)
         FROM crash_items WHERE r IN ($kill_r)");
note "SIGKILL: $kills_landed kills landed ($kills_sent sent) over "
  . scalar(@kill_runs)
  . " runs; rows lost (counter 0): $lost; rows doubled (counter > 1): $doubled"
  . "; waits to avoid a crash loop: $guard_waits";
is("$lost|$doubled|$once", '0|0|' . ($rows * scalar(@kill_runs)),
	'after the SIGKILLs every counter is exactly 1');
is( $node->sql("SELECT count(*) FILTER (WHERE state = 'succeeded'),
                count(*) FILTER (WHERE rows_done = $rows AND cursor = '$rows')
           FROM chunkbatch.runs WHERE run_id IN ($kill_run_ids)"),
	scalar(@kill_runs) . '|' . scalar(@kill_runs),
	'every killed run ended succeeded with rows_done and cursor complete');
is( $node->sql("SELECT r, sum(n) FROM chunk_log WHERE r IN ($kill_r)
          GROUP BY r HAVING sum(n) <> $rows"),
	'', 'the committed chunks of every killed run add up to exactly its rows');

# A run in the middle: running, some chunks committed, a few still to go.
sub wait_mid_run
{
	my ($run) = @_;
	return $node->poll_for(
		"SELECT state = 'running' AND chunks_done >= 10
           FROM chunkbatch.runs WHERE run_id = $run",
		qr/^t$/, 60);
}

# ---------------------------------------------------------------------------
# 2a. Immediate shutdown mid-run.
# ---------------------------------------------------------------------------
{
	my $r = 101;
	my $run = start_run($r);
	ok(wait_mid_run($run), 'immediate: the run is in the middle');
	my $before = $node->sql("SELECT chunks_done FROM chunkbatch.runs WHERE run_id = $run");
	my $log_offset = -s $node->logfile;
	$node->stop('immediate');
	$node->start;
	is($node->poll_for("SELECT chunkbatch.wait($run, '60s')", qr/^\w+$/, 70),
		'succeeded', 'immediate: the run resumed by itself and succeeded');
	is(interrupted_marks($run, $log_offset), 1,
		'immediate: the scheduler marked the run interrupted after the start');
	check_exactly_once($r, $run, 'immediate');
	note sprintf("immediate shutdown after %d chunks; %s worker pids committed chunks",
		$before, $node->sql("SELECT count(DISTINCT pid) FROM chunk_log WHERE r = $r AND n > 0"));
}

# ---------------------------------------------------------------------------
# 2b. Fast shutdown mid-run: the worker records 'interrupted' itself.
# ---------------------------------------------------------------------------
{
	my $r = 102;
	my $run = start_run($r);
	ok(wait_mid_run($run), 'fast: the run is in the middle');
	my $log_offset = -s $node->logfile;
	$node->stop('fast');
	ok( $node->log_contains(
			qr/run $run of job "crash_touch" interrupted at \d+ rows in \d+ chunks: its worker was terminated/,
			$log_offset),
		'fast: the worker recorded the run interrupted before the shutdown ended');
	ok( !$node->log_contains(
			qr/run $run of job "crash_touch" (succeeded|failed)/, $log_offset),
		'fast: the run did not end before the shutdown');
	$node->start;
	is($node->poll_for("SELECT chunkbatch.wait($run, '60s')", qr/^\w+$/, 70),
		'succeeded', 'fast: the run resumed by itself and succeeded');
	is(interrupted_marks($run, $log_offset), 0,
		'fast: the run was not left running for the scheduler to find');
	check_exactly_once($r, $run, 'fast');
	cmp_ok($node->sql("SELECT count(DISTINCT pid) FROM chunk_log WHERE r = $r AND n > 0"),
		'>=', 2, 'fast: chunks were committed before and after the restart');
}

# ---------------------------------------------------------------------------
# 3. pg_terminate_backend() of the worker mid-run.
# ---------------------------------------------------------------------------
{
	my $r = 103;
	my $run = start_run($r);
	ok(wait_mid_run($run), 'terminate: the run is in the middle');
	my $pid = $node->sql("SELECT worker_pid FROM chunkbatch.status_detail WHERE run_id = $run");
	like($pid, qr/^\d+$/, 'terminate: chunkbatch.status_detail names the worker');
	my $log_offset = -s $node->logfile;
	is($node->sql("SELECT pg_terminate_backend($pid)"), 't',
		'terminate: pg_terminate_backend() of the worker');
	ok( $node->poll_for(
			"SELECT state = 'interrupted' OR (worker_pid IS NOT NULL AND worker_pid <> $pid)
                    OR state IN $FINAL_STATES
               FROM chunkbatch.runs WHERE run_id = $run",
			qr/^t$/, 30),
		'terminate: the run is interrupted or resumed by another worker');
	ok( $node->log_wait(
			qr/run $run of job "crash_touch" interrupted at \d+ rows in \d+ chunks: its worker was terminated/,
			$log_offset, 30),
		'terminate: the worker recorded the run interrupted');
	is($node->final_state($run, '60s'),
		'succeeded', 'terminate: the run resumed and succeeded');
	ok( !$node->log_contains(qr/\(PID $pid\) was terminated by signal/,
			$log_offset),
		'terminate: the worker exited by itself (no server restart)');
	check_exactly_once($r, $run, 'terminate');
	is( $node->sql("SELECT count(DISTINCT pid) >= 2, bool_or(pid = $pid)
               FROM chunk_log WHERE r = $r AND n > 0"),
		't|t',
		'terminate: the terminated worker and another one committed chunks');
}

# ---------------------------------------------------------------------------
# 4. Crash loop: three workers in a row killed before committing a chunk.
# ---------------------------------------------------------------------------
{
	$node->sql(q{
CREATE TABLE loop_items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO loop_items (id) SELECT generate_series(1, 100);
SELECT chunkbatch.create_job(
  job_name => 'crash_loop',
  chunk_sql => $$WITH pause AS MATERIALIZED (SELECT pg_sleep(5))
                 UPDATE loop_items SET n = n + 1
                   FROM pause
                  WHERE id IN (SELECT id FROM loop_items
                                WHERE $2 IS NULL OR id > $2
                                ORDER BY id LIMIT $1)
                 RETURNING id$$,
  batch_size => 100,
  cursor_type => 'bigint');
});
	my $run = $node->queue_run('crash_loop');
	my $log_offset = -s $node->logfile;
	my $prev_pid = 0;
	my @killed;
	for my $k (1 .. 3)
	{
		my $pid = next_worker($run, $prev_pid, 60);
		if (!defined $pid || $pid eq 'done')
		{
			fail("crash loop: no worker for kill $k");
			last;
		}
		usleep(int((0.05 + rand(0.25)) * 1_000_000));
		ok(kill('KILL', $pid), "crash loop: SIGKILL $k to worker $pid");
		push @killed, $pid;
		$prev_pid = $pid;
		ok($node->log_wait(qr/\(PID $pid\) was terminated by signal 9/, $log_offset, 30),
			"crash loop: the server restarted after kill $k");
	}
	is( $node->poll_for(
			"SELECT state FROM chunkbatch.runs WHERE run_id = $run
                AND state IN $FINAL_STATES",
			qr/^\w+$/, 30),
		'failed',
		'crash loop: the run ends failed after its third worker died');
	is( $node->sql("SELECT state, sqlstate, error LIKE '%without committing a chunk%',
                    chunks_done, rows_done
               FROM chunkbatch.runs WHERE run_id = $run"),
		'failed|55000|t|0|0',
		'crash loop: SQLSTATE 55000, error names the crash loop, nothing committed'
	);
	my $attempts_at_fail =
	  $node->sql("SELECT start_attempts FROM chunkbatch.runs WHERE run_id = $run");
	note "crash loop run: "
	  . $node->sql("SELECT error || ' (start_attempts ' || start_attempts || ')'
               FROM chunkbatch.runs WHERE run_id = $run");
	ok( $node->log_wait(
			qr/run $run of job "crash_loop" failed as a crash loop/, $log_offset, 30),
		'crash loop: the server log says so');
	is(interrupted_marks($run, $log_offset), 3,
		'crash loop: the run was interrupted by each of the 3 crashes');
	is($node->sql("SELECT count(*) FROM loop_items WHERE n <> 0"),
		'0', 'crash loop: no row was touched');
	is( $node->sql("SELECT count(*) FROM chunkbatch.runs WHERE job_name = 'crash_loop'"),
		'1', 'crash loop: one run, not restarted as a new run');
	# It stays failed: a run queued after it starts and ends (so the
	# scheduler has made its passes) while no worker comes back for it.
	$node->sql(q{
CREATE TABLE tick (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO tick (id) SELECT generate_series(1, 10);
SELECT chunkbatch.create_job(
  job_name => 'tick',
  chunk_sql => $$UPDATE tick SET n = n + 1
                  WHERE id IN (SELECT id FROM tick WHERE $2 IS NULL OR id > $2
                                ORDER BY id LIMIT $1)
                 RETURNING id$$,
  batch_size => 5,
  cursor_type => 'bigint');
});
	my $tick = $node->queue_run('tick');
	is($node->final_state($tick, '30s'),
		'succeeded', 'crash loop: a later run of another job runs normally');
	is( $node->sql("SELECT (SELECT state || '|' || start_attempts
                       FROM chunkbatch.runs WHERE run_id = $run),
                    (SELECT count(*) FROM pg_stat_activity
                      WHERE application_name LIKE 'chunkbatch run $run:%')"),
		"failed|$attempts_at_fail|0",
		'crash loop: the run stays failed, no worker started for it again');
}

note sprintf("script ran %.1f s", time() - $script_start);
$node->stop;
done_testing();
