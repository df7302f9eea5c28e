# Copyright (c) 2026, chunkbatch developers
#
# A hot standby never queues or executes anything; a promoted standby
# resumes what the primary was running, exactly once.  With a real
# streaming standby (both servers preload chunkbatch):
#
# - on the standby, run(wait => true) fails with SQLSTATE 25006 ("cannot
#   queue a run on a standby server") in well under 1 s, measured in the
#   server and around psql; so do run(wait => false), CALL run_and_wait(),
#   pause(), cancel(), resume(), create_job(), alter_job(), drop_job(),
#   pause_all(), resume_all(), schedule() and unschedule();  no chunkbatch
#   process runs on the standby;
# - on the standby, wait() on a run queued on the primary returns its final
#   state once replayed, and chunkbatch.status_detail shows the primary's active
#   run (without a local worker);
# - a run(wait => true) attempted on the standby in a session that is then
#   terminated leaves no trace: after the promotion, the runs are exactly
#   those queued on the primary, and for 3 s of the promoted node's
#   launcher no run of that job executes (its side-effect table and
#   chunkbatch.runs do not change); pause_all() on the standby did not
#   pause the promoted node;
# - failover: a slow keyset run (300 rows, 10 per chunk, 0.1 s per chunk)
#   is in the middle on the primary, the standby has replayed some of its
#   chunks, the primary stops with 'immediate' and the standby is promoted:
#   the run resumes by itself on the promoted node and succeeds with every
#   row processed exactly once (chunks lost with the primary are lost
#   together with their checkpoint), with chunks executed on both servers.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $script_start = time;
my $primary = ChunkbatchNode->create(
	'primary',
	init => { allows_streaming => 1 },
	extension_in => ['postgres']);

my $db = 'postgres';

# - items / slow_touch: the failover run, 30 chunks of 10 rows, each chunk
#   sleeping 0.1 s and logging the server (port) and process that executed
#   it in chunk_log, in the chunk's own transaction;
# - j_items / job: a short run (5 chunks of 10 rows), the side effect that
#   must not happen again after the promotion;
# - try_sql(): runs a statement and returns 'ok' or its SQLSTATE, the time
#   it took in ms and the message (plpgsql, so that it also works on the
#   standby).
$primary->create_slow_job(
	job => 'slow_touch',
	table => 'items',
	rows => 300,
	sleep => 0.1,
	batch_size => 10);
$primary->safe_psql(
	$db, q{
CREATE TABLE j_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO j_items (id) SELECT generate_series(1, 50);
SELECT chunkbatch.create_job(
  job_name => 'job',
  chunk_sql => $$UPDATE j_items SET counter = counter + 1
                 WHERE id IN (SELECT id FROM j_items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 10,
  cursor_type => 'bigint',
  sleep_ms => 50);

CREATE FUNCTION try_sql(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  t0 timestamptz := clock_timestamp();
  st text;
  msg text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
  RETURN st || '|' ||
         round(extract(epoch FROM clock_timestamp() - t0) * 1000)::bigint || '|' ||
         msg;
END
$$;
});

my $standby = $primary->create_standby('standby');
is( $primary->safe_psql(
		$db, q{SELECT count(*) FROM pg_stat_replication
                WHERE application_name = 'standby' AND state = 'streaming'}),
	'1', 'the standby streams from the primary');
is( $standby->safe_psql(
		$db,
		q{SELECT pg_is_in_recovery(), current_setting('shared_preload_libraries'),
                 current_setting('chunkbatch.naptime')}),
	't|chunkbatch|1s',
	'the standby is in recovery and preloads chunkbatch');
note(sprintf('setup: %.1f s', time - $script_start));

# ---------------------------------------------------------------------------
# 1. The standby refuses every writing call at once; reading works.
# ---------------------------------------------------------------------------

# A run queued on the primary: wait() on the standby sees it end.
my $run_a = $primary->queue_run('job');
$primary->wait_for_catchup($standby);
my $t0 = time;
is($standby->final_state($run_a, '30s'),
	'succeeded',
	'standby: wait() on a run queued on the primary returns its final state');
note(sprintf('wait() on the standby returned after %.2f s', time - $t0));
is( $standby->safe_psql(
		$db,
		"SELECT state, rows_done, (SELECT sum(counter) FROM j_items)
           FROM chunkbatch.runs WHERE run_id = $run_a"),
	'succeeded|50|50',
	'standby: the replayed run and its rows');
is($standby->safe_psql($db, 'SELECT count(*) FROM chunkbatch.status_detail'),
	'0', 'standby: chunkbatch.status_detail works (nothing active)');
is( $primary->safe_psql(
		$db, q{SELECT count(*) FROM pg_stat_activity
                WHERE backend_type = 'chunkbatch launcher'}),
	'1', 'primary: the launcher runs');
is( $standby->safe_psql(
		$db, q{SELECT count(*) FROM pg_stat_activity
                WHERE backend_type LIKE 'chunkbatch%'}),
	'0', 'standby: no chunkbatch process runs');

my @refused = (
	[ "SELECT chunkbatch.run('job', wait => true)", 'run(wait => true)',
		qr/^cannot queue a run on a standby server$/ ],
	[ "SELECT chunkbatch.run('job', wait => false)", 'run(wait => false)',
		qr/^cannot queue a run on a standby server$/ ],
	[ "SELECT chunkbatch.run('job')", 'run()',
		qr/^cannot queue a run on a standby server$/ ],
	[ "SELECT chunkbatch.pause($run_a)", 'pause()',
		qr/^cannot pause a run on a standby server$/ ],
	[ "SELECT chunkbatch.cancel($run_a)", 'cancel()',
		qr/^cannot cancel a run on a standby server$/ ],
	[ "SELECT chunkbatch.resume($run_a)", 'resume()',
		qr/^cannot resume a run on a standby server$/ ],
	[ "SELECT chunkbatch.create_job('standby_job', 'SELECT 1')", 'create_job()',
		qr/on a standby server$/ ],
	[ "SELECT chunkbatch.alter_job('job', batch_size => 5)", 'alter_job()',
		qr/on a standby server$/ ],
	[ "SELECT chunkbatch.drop_job('job')", 'drop_job()',
		qr/on a standby server$/ ],
	[ "SELECT chunkbatch.pause_all('from the standby')", 'pause_all()',
		qr/on a standby server$/ ],
	[ "SELECT chunkbatch.resume_all()", 'resume_all()',
		qr/on a standby server$/ ],
	[ "SELECT chunkbatch.schedule('job', '* * * * *')", 'schedule()',
		qr/on a standby server$/ ],
	[ "SELECT chunkbatch.unschedule('job')", 'unschedule()',
		qr/on a standby server$/ ]);
foreach my $case (@refused)
{
	my ($sql, $what, $msg_re) = @$case;
	my $q = $sql =~ s/'/''/gr;
	my ($st, $ms, $msg) = split /\|/,
	  $standby->safe_psql($db, "SELECT try_sql('$q')"), 3;
	$ms //= '';
	$msg //= '';
	is($st, '25006', "standby: $what fails with SQLSTATE 25006")
	  or diag("$sql: $st $msg");
	ok($ms ne '' && $ms < 1000, "standby: $what fails at once ($ms ms)");
	like($msg, $msg_re, "standby: $what says why: $msg");
}

# The same through psql, timed from outside: the error is 25006 and comes
# at once.
foreach my $case (
	[ "SELECT chunkbatch.run('job', wait => true)", 'run(wait => true)' ],
	[ "CALL chunkbatch.run_and_wait('job')", 'CALL run_and_wait()' ])
{
	my ($sql, $what) = @$case;
	my ($out, $err) = ('', '');
	my $t = time;
	my $rc = $standby->psql(
		$db, "\\set VERBOSITY verbose\n$sql",
		on_error_stop => 1,
		stdout => \$out,
		stderr => \$err,
		timeout => 30);
	my $elapsed = time - $t;
	is($rc, 3, "standby (psql): $what stops the script with an error");
	like(
		$err,
		qr/ERROR:\s+25006: cannot queue a run on a standby server/,
		"standby (psql): $what reports SQLSTATE 25006");
	cmp_ok($elapsed, '<', 1.0,
		sprintf("standby (psql): $what returns within 1 s (%.3f s)", $elapsed));
}

is( $standby->safe_psql(
		$db,
		q{SELECT (SELECT count(*) FROM chunkbatch.jobs WHERE job_name = 'job'),
                 (SELECT batch_size FROM chunkbatch.jobs WHERE job_name = 'job'),
                 (SELECT count(*) FROM chunkbatch.jobs WHERE job_name = 'standby_job'),
                 (SELECT paused FROM chunkbatch.pause_all_state())}),
	'1|10|0|f',
	'standby: the refused calls changed nothing');

# ---------------------------------------------------------------------------
# 2. run(wait => true) on the standby in a session that is then terminated.
# ---------------------------------------------------------------------------
my $bg = $standby->background_psql($db, on_error_stop => 0, timeout => 60);
my $bg_pid = $bg->query_safe('SELECT pg_backend_pid()');
$bg->{stdin} .=
  "\\set VERBOSITY verbose\nSELECT chunkbatch.run('job', wait => true);\n";
$bg->{run}->pump_nb;

# Until the call has returned (its session is idle again), at most 5 s.
my $returned = 0;
my $deadline = time + 5;
while (time < $deadline)
{
	if ($standby->safe_psql(
			$db,
			"SELECT count(*) FROM pg_stat_activity
              WHERE pid = $bg_pid AND state = 'idle'
                AND query LIKE '%chunkbatch.run(%'") eq '1')
	{
		$returned = 1;
		last;
	}
	usleep(50_000);
}
ok($returned, 'standby: the session\'s run(wait => true) returned at once');
is($standby->safe_psql($db, "SELECT pg_terminate_backend($bg_pid)"),
	't', 'standby: the session is terminated');
ok( $standby->poll_query_until(
		$db, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $bg_pid"),
	'standby: the terminated session is gone');
$bg->{run}->pump_nb;
like(
	$bg->{stderr},
	qr/ERROR:\s+25006: cannot queue a run on a standby server/,
	'standby: the session got SQLSTATE 25006');
$bg->quit;

# ---------------------------------------------------------------------------
# 3. Failover in the middle of a run.
# ---------------------------------------------------------------------------
my $slow_run = $primary->queue_run('slow_touch');
# Until it has committed 5 chunks or stopped running (a failure must not
# look like a long wait).
$primary->poll_run($slow_run,
	"state NOT IN ('queued', 'waiting', 'running') OR chunks_done >= 5");
is( $primary->safe_psql(
		$db,
		"SELECT state, chunks_done >= 5, COALESCE(error, '')
           FROM chunkbatch.runs WHERE run_id = $slow_run"),
	'running|t|',
	'primary: the slow run is running and has committed some chunks');
$primary->wait_for_catchup($standby);
my ($sb_state, $sb_chunks, $sb_rows) = split /\|/,
  $standby->safe_psql(
	$db,
	"SELECT state, chunks_done,
            (SELECT count(*) FILTER (WHERE counter = 1) FROM items)
       FROM chunkbatch.runs WHERE run_id = $slow_run");
is($sb_state, 'running', 'standby: the replayed slow run is running');
ok( $sb_chunks >= 5 && $sb_chunks < 30 && $sb_rows == 10 * $sb_chunks,
	"standby: $sb_chunks of 30 chunks replayed, with their $sb_rows rows");
is( $standby->safe_psql(
		$db,
		"SELECT count(*), min(run_id), bool_and(state = 'running'),
                bool_and(worker_pid IS NULL)
           FROM chunkbatch.status_detail"),
	"1|$slow_run|t|t",
	'standby: chunkbatch.status_detail shows the primary\'s run, without a local worker');
my $runs_before = $standby->safe_psql($db,
	q{SELECT string_agg(run_id || ':' || job_name, ',' ORDER BY run_id)
        FROM chunkbatch.runs});
is($runs_before, "$run_a:job,$slow_run:slow_touch",
	'standby: the runs are those queued on the primary');
my $primary_port = $primary->port;

$primary->stop('immediate');
my $log_offset = -s $standby->logfile;
my $t_promote = time;
$standby->promote;
note(sprintf('promoted in %.2f s', time - $t_promote));
is($standby->safe_psql($db, 'SELECT pg_is_in_recovery()'),
	'f', 'the standby is promoted');

# The launcher of the promoted node; from now on nobody acts on the runs.
ok( $standby->poll_query_until(
		$db, q{SELECT count(*) = 1 FROM pg_stat_activity
                WHERE backend_type = 'chunkbatch launcher'}),
	'promoted: the launcher runs');
my $t_launcher = time;

ok($standby->poll_final_state($slow_run),
	'promoted: the interrupted run reaches a final state by itself');
note(sprintf('the run ended %.2f s after the promotion', time - $t_promote));
is( $standby->safe_psql(
		$db,
		"SELECT state, rows_done, cursor, sqlstate IS NULL
           FROM chunkbatch.runs WHERE run_id = $slow_run"),
	'succeeded|300|300|t',
	'promoted: the run resumed and succeeded with 300 rows');
ok( $standby->log_contains(qr/run $slow_run\b[^\n]*interrupted/, $log_offset),
	'promoted: the server log reports the run as interrupted after the promotion'
);
is( $standby->once_count('items'),
	'300|300',
	'promoted: every row was processed exactly once across the failover');
my $standby_port = $standby->port;
my ($chunks, $rows, $on_primary, $on_promoted, $elsewhere) = split /\|/,
  $standby->safe_psql(
	$db,
	"SELECT count(*) FILTER (WHERE n > 0), sum(n),
            count(*) FILTER (WHERE n > 0 AND port = $primary_port),
            count(*) FILTER (WHERE n > 0 AND port = $standby_port),
            count(*) FILTER (WHERE port NOT IN ($primary_port, $standby_port))
       FROM chunk_log");
is("$chunks|$rows", '30|300', 'promoted: 30 chunks committed once each');
ok( $on_primary >= $sb_chunks && $on_promoted >= 1 && $elsewhere == 0,
	"promoted: $on_primary chunks kept from the primary, $on_promoted executed after the promotion"
);

# Give the promoted node's launcher at least 3 s in all: no run appears
# and the job tried on the standby never executes again.
my $left = 3 - (time - $t_launcher);
usleep(int($left * 1_000_000)) if $left > 0;
is( $standby->safe_psql(
		$db,
		q{SELECT string_agg(run_id || ':' || job_name, ',' ORDER BY run_id)
            FROM chunkbatch.runs}),
	$runs_before,
	'promoted: after 3 s the runs are still exactly those queued on the primary'
);
is( $standby->once_count('j_items'),
	'50|50',
	'promoted: the job tried on the standby never executed again');
is( $standby->safe_psql(
		$db,
		q{SELECT count(*) FROM chunkbatch.status_detail}),
	'0', 'promoted: nothing is active');
is($standby->safe_psql($db, 'SELECT paused FROM chunkbatch.pause_all_state()'),
	'f', 'promoted: pause_all() tried on the standby did not pause anything');

note(sprintf('standby test: %.1f s in all', time - $script_start));

$standby->stop;
done_testing();
