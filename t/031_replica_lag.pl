# Copyright (c) 2026, chunkbatch developers
#
# Throttling on replica lag, with a real streaming standby.
#
# - max_replica_lag_bytes => 1000000: replay is paused on the standby, a run
#   that writes some 20 MB of WAL (about 200 kB per chunk, below the limit)
#   becomes 'throttled' with a reason naming the standby and a lag over the
#   limit, and rows_done does not move for 1.5 s; once replay resumes, the
#   run finishes 'succeeded', runs.throttled_ms counts the hold, and the
#   standby replays every row;
# - max_replica_lag => '1s': the same with the time lag (replay_lag of
#   pg_stat_replication, which keeps growing while replay is paused; the
#   reason shows it rounded to 0.1 s).
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

# Two tables of 20,000 rows with some padding, so that a run writes some
# 20 MB of WAL (full-page images included); one job per kind of limit.
$primary->sql(q{
CREATE TABLE rb_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                       pad text NOT NULL);
INSERT INTO rb_items (id, pad)
SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
CREATE TABLE rt_items (LIKE rb_items INCLUDING ALL);
INSERT INTO rt_items SELECT * FROM rb_items;
SELECT chunkbatch.create_job(
  job_name => 'lag_bytes',
  chunk_sql => $$UPDATE rb_items SET counter = counter + 1
                 WHERE id IN (SELECT id FROM rb_items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 200,
  cursor_type => 'bigint',
  max_replica_lag_bytes => 1000000);
SELECT chunkbatch.create_job(
  job_name => 'lag_time',
  chunk_sql => $$UPDATE rt_items SET counter = counter + 1
                 WHERE id IN (SELECT id FROM rt_items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 200,
  cursor_type => 'bigint',
  sleep_ms => 50,
  max_replica_lag => '1s');
});

my $standby = $primary->create_standby('standby');
is( $primary->sql(q{SELECT count(*) FROM pg_stat_replication
           WHERE application_name = 'standby' AND state = 'streaming'}),
	'1', 'the standby streams from the primary');
is($standby->safe_psql($db, 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');
note(sprintf('setup: %.1f s', time - $script_start));

# Pause replay on the standby, run the job, see it throttled and frozen,
# resume replay, see it finish.  Returns the run id.
sub throttled_by_lag
{
	my ($job, $tbl, $what, $over_limit) = @_;

	$standby->safe_psql($db, 'SELECT pg_wal_replay_pause()');
	ok( $standby->poll_query_until(
			$db, q{SELECT pg_get_wal_replay_pause_state() = 'paused'}),
		"$what: replay is paused on the standby");

	my $t0 = time;
	my $run = $primary->queue_run($job);
	# Until the run is throttled or has ended (a failure must not look like
	# a long wait).
	ok( $primary->poll_run(
			$run, "state NOT IN ('queued', 'waiting', 'running')"),
		"$what: the run leaves the running state");
	my $t_throttled = time - $t0;
	my ($state, $rows, $error) = split /\|/,
	  $primary->sql("SELECT state, rows_done, COALESCE(sqlstate || ': ' || error, '')
             FROM chunkbatch.runs WHERE run_id = $run");
	is($state, 'throttled', "$what: the run is throttled while replay is paused")
	  or diag("run $run: $state $error");
	my ($reason, $for_ok) = split /\|/,
	  $primary->sql("SELECT throttle_reason, throttled_for > '0'
             FROM chunkbatch.status_detail WHERE run_id = $run");
	$reason //= '';
	$for_ok //= '';
	like($reason, qr/^replica lag: standby standby is /,
		"$what: chunkbatch.status_detail gives replica lag as the reason");
	is($for_ok, 't', "$what: chunkbatch.status_detail shows throttled_for");
	my $lag = $primary->sql(q{SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)
                           || ' bytes, replay_lag ' || COALESCE(replay_lag::text, 'NULL')
                      FROM pg_stat_replication WHERE application_name = 'standby'});
	my ($secs, $bytes) = $reason =~
	  /^replica lag: standby standby is ([\d.]+) s and (\d+) bytes behind$/;
	ok(defined $bytes && $over_limit->($secs, $bytes),
		"$what: the reason gives a lag over the limit: $reason");
	usleep(1_500_000);
	is( $primary->sql("SELECT state, rows_done, worker_pid IS NOT NULL
               FROM chunkbatch.status_detail WHERE run_id = $run"),
		"throttled|$rows|t",
		"$what: rows_done stays at $rows for 1.5 s while replay is paused");
	cmp_ok($rows, '<', 20000, "$what: the throttled run is not finished");

	$standby->safe_psql($db, 'SELECT pg_wal_replay_resume()');
	my $t_resume = time;
	is($primary->final_state($run, '60s'), 'succeeded',
		"$what: after replay resumes the run succeeds");
	my $after = time - $t_resume;
	my $throttled_ms = $primary->sql(
		"SELECT round(throttled_ms) FROM chunkbatch.runs WHERE run_id = $run");
	cmp_ok($throttled_ms, '>=', 1500,
		"$what: runs.throttled_ms counts the hold ($throttled_ms ms)");
	is( $primary->sql("SELECT rows_done, throttle_reason IS NULL FROM chunkbatch.runs
              WHERE run_id = $run"),
		'20000|t', "$what: 20000 rows done, the reason cleared");

	$primary->wait_for_catchup($standby);
	is( $standby->once_count($tbl),
		'20000|20000',
		"$what: the standby replayed every row, each processed once");
	note(sprintf(
			"%s: throttled %.2f s after run() at %d rows (%s; primary saw %s), "
			  . "throttled_ms %s, run done %.2f s after replay resumed",
			$what, $t_throttled, $rows, $reason, $lag, $throttled_ms, $after));
	return $run;
}

# ---------------------------------------------------------------------------
# 1. max_replica_lag_bytes => 1000000
# ---------------------------------------------------------------------------
throttled_by_lag('lag_bytes', 'rb_items', 'lag bytes',
	sub { my ($secs, $bytes) = @_; return $bytes > 1000000; });

# ---------------------------------------------------------------------------
# 2. max_replica_lag => '1s'
# ---------------------------------------------------------------------------
throttled_by_lag('lag_time', 'rt_items', 'lag time',
	sub { my ($secs, $bytes) = @_; return $secs >= 1.0; });

note(sprintf('replica lag test: %.1f s in all', time - $script_start));

$standby->stop;
$primary->stop;
done_testing();
