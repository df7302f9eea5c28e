# Copyright (c) 2026, chunkbatch developers
#
# The emergency stop (pause_all / resume_all) and the other operator
# safeguards of 1.1.
#
# - pause_all('maintenance') during three running runs in two databases
#   (two in db1 in different groups, one in db2): within about a second
#   every run is 'throttled' with throttle_reason 'all runs paused by
#   chunkbatch.pause_all() ...: maintenance', and no chunk commits for 2 s;
#   a run queued meanwhile stays queued and chunkbatch.status_detail shows the
#   pause as its throttle_reason; pause_all_state() says who paused and why.
#   After resume_all() every run, the queued one too, succeeds and every row
#   is processed exactly once;
# - the stop survives a restart: a run queued after the restart stays
#   queued until resume_all();
# - EXECUTE on pause_all() and resume_all() is revoked from PUBLIC (42501)
#   and can be granted;
# - DROP EXTENSION chunkbatch (and DROP SCHEMA chunkbatch CASCADE) in a
#   database with a running run fails with 55006 and the run succeeds;
#   afterwards DROP EXTENSION works;
# - a run worker with sleep_ms = 0 applies a configuration reload between
#   chunks: later chunks of the same worker see the new value of a custom
#   setting;
# - chunkbatch.max_workers = 0 keeps the server from starting, and ALTER
#   SYSTEM refuses to write it.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create(
	'estop',
	conf => [
		'chunkbatch.max_workers = 4',
		"chunkbatch_test.flag = 'before'"
	]);

my $paused_like = q{'all runs paused by chunkbatch.pause_all()%'};

# A database with chunkbatch, three tables of 200 rows and a slow keyset job
# on each (groups ga, gb, gq): 40 chunks of 5 rows, each chunk sleeping
# 0.15 s and logging itself in chunk_log, in the chunk's own transaction.
sub setup_database
{
	my ($db) = @_;
	$node->create_database($db);
	foreach my $g ('a', 'b', 'q')
	{
		$node->create_slow_job(
			db => $db,
			job => "slow_$g",
			table => "work_$g",
			rows => 200,
			sleep => 0.15,
			batch_size => 5,
			lock_group => "g$g");
	}
	return;
}

setup_database('db1');
setup_database('db2');

# ---------------------------------------------------------------------------
# 1. pause_all() during three running runs in two databases.
# ---------------------------------------------------------------------------
my $run_1a = $node->queue_run('slow_a', db => 'db1');
my $run_1b = $node->queue_run('slow_b', db => 'db1');
my $run_2a = $node->queue_run('slow_a', db => 'db2');

ok( $node->poll_query_until(
		'db1',
		"SELECT count(*) = 2 FROM chunkbatch.runs
          WHERE run_id IN ($run_1a, $run_1b) AND state = 'running'
            AND chunks_done >= 2"),
	'db1: both runs are running and have committed chunks');
ok( $node->poll_run(
		$run_2a,
		"state = 'running' AND chunks_done >= 2",
		db => 'db2'),
	'db2: the run is running and has committed chunks');

my $paused_at = time;
is($node->safe_psql('db1', q{SELECT chunkbatch.pause_all('maintenance')}),
	't', 'pause_all() turns the emergency stop on');

# State and reason of the three runs, db1's first.
my $held_sql_1 = qq{
SELECT string_agg(state || ':' || COALESCE((throttle_reason LIKE $paused_like
                                            AND throttle_reason LIKE '%: maintenance')::text, 'null'),
                  ',' ORDER BY run_id)
  FROM chunkbatch.runs WHERE run_id IN ($run_1a, $run_1b)};
my $held_sql_2 = qq{
SELECT state || ':' || COALESCE((throttle_reason LIKE $paused_like
                                 AND throttle_reason LIKE '%: maintenance')::text, 'null')
  FROM chunkbatch.runs WHERE run_id = $run_2a};
my ($held_1, $held_2);
for (;;)
{
	$held_1 = $node->safe_psql('db1', $held_sql_1);
	$held_2 = $node->safe_psql('db2', $held_sql_2);
	last
	  if ($held_1 eq 'throttled:true,throttled:true'
		&& $held_2 eq 'throttled:true')
	  || time - $paused_at > 10;
	usleep(50_000);
}
is("$held_1|$held_2", 'throttled:true,throttled:true|throttled:true',
	'every run is throttled with the pause_all() reason');
# Measured by the server: from pause_all() to each run's throttled_since,
# at most one second plus one chunk (0.15 s).
my $delay_sql = qq{
SELECT round(max(extract(epoch FROM r.throttled_since - s.paused_at))::numeric, 3)
  FROM chunkbatch.runs r CROSS JOIN chunkbatch.pause_all_state() s
 WHERE r.run_id IN (%s)};
foreach my $d ([ 'db1', "$run_1a, $run_1b" ], [ 'db2', $run_2a ])
{
	my $delay = $node->safe_psql($d->[0], sprintf($delay_sql, $d->[1]));
	ok($delay ne '' && $delay >= 0 && $delay < 1.15,
		"$d->[0]: the runs were held within a second of pause_all()")
	  or diag("held $delay s after pause_all()");
}

is( $node->safe_psql(
		'db2',
		q{SELECT paused, paused_at IS NOT NULL, paused_by = current_user, reason
            FROM chunkbatch.pause_all_state()}),
	't|t|t|maintenance',
	'pause_all_state() in the other database shows the stop, when, by whom and why');

# A run queued while everything is paused, with a free worker slot.
my $run_2q = $node->queue_run('slow_q', db => 'db2');

my $progress_sql = q{SELECT (SELECT count(*) FROM chunk_log) || '/' ||
                            (SELECT sum(chunks_done) FROM chunkbatch.runs)};
my $before_1 = $node->safe_psql('db1', $progress_sql);
my $before_2 = $node->safe_psql('db2', $progress_sql);
sleep 2;
is($node->safe_psql('db1', $progress_sql),
	$before_1, 'db1: no chunk committed for 2 s while paused');
is($node->safe_psql('db2', $progress_sql),
	$before_2, 'db2: no chunk committed for 2 s while paused');
is($node->safe_psql('db1', $held_sql_1),
	'throttled:true,throttled:true', 'db1: the runs are still throttled');
is( $node->safe_psql(
		'db2',
		"SELECT r.state, r.started_at IS NULL, s.throttle_reason LIKE $paused_like
           FROM chunkbatch.runs r JOIN chunkbatch.status_detail s USING (run_id)
          WHERE run_id = $run_2q"),
	'queued|t|t',
	'the run queued during the pause stays queued, status shows the pause');
is( $node->safe_psql(
		'db2',
		"SELECT count(*) FROM chunk_log WHERE tbl = 'work_q'"),
	'0', 'the queued run executed no chunk');

is($node->safe_psql('db2', q{SELECT chunkbatch.resume_all()}),
	't', 'resume_all() turns the emergency stop off');
is( $node->safe_psql(
		'db1', q{SELECT paused, paused_by IS NULL, reason IS NULL
                        FROM chunkbatch.pause_all_state()}),
	'f|t|t',
	'pause_all_state() shows no stop after resume_all()');

foreach my $r ([ 'db1', $run_1a, 'work_a' ],
	[ 'db1', $run_1b, 'work_b' ],
	[ 'db2', $run_2a, 'work_a' ],
	[ 'db2', $run_2q, 'work_q' ])
{
	my ($db, $run, $tbl) = @$r;
	is($node->final_state($run, '60s', db => $db),
		'succeeded', "$db: run $run on $tbl succeeds after resume_all()");
	is( $node->once_count($tbl, db => $db),
		'200|200',
		"$db: every row of $tbl processed exactly once");
}

# ---------------------------------------------------------------------------
# 2. The stop survives a restart.
# ---------------------------------------------------------------------------
# 50 rows this time: 10 chunks.
$node->safe_psql('db1', 'DELETE FROM work_q WHERE id > 50; UPDATE work_q SET counter = 0');
is($node->safe_psql('db1', q{SELECT chunkbatch.pause_all('restart test')}),
	't', 'pause_all() before the restart');
$node->restart;
is( $node->safe_psql(
		'db1', q{SELECT paused, reason FROM chunkbatch.pause_all_state()}),
	't|restart test',
	'the stop is still on after the restart');

my $run_r = $node->queue_run('slow_q', db => 'db1');
my $still_queued = 1;
my $queued_at = time;
while (time - $queued_at < 3)
{
	my $s = $node->safe_psql('db1',
		"SELECT state FROM chunkbatch.runs WHERE run_id = $run_r");
	if ($s ne 'queued')
	{
		$still_queued = 0;
		diag("run $run_r is $s after the restart while paused");
		last;
	}
	usleep(200_000);
}
ok($still_queued, 'a run queued after the restart stays queued for 3 s');
is($node->safe_psql('db1', "SELECT count(*) FROM chunk_log WHERE tbl = 'work_q'"),
	'0', 'it executed no chunk');

is($node->safe_psql('db1', q{SELECT chunkbatch.resume_all()}),
	't', 'resume_all() after the restart');
is($node->final_state($run_r, '60s', db => 'db1'),
	'succeeded', 'the run queued during the stop succeeds after resume_all()');
is( $node->once_count('work_q', db => 'db1'),
	'50|50',
	'it processed every row exactly once');

# ---------------------------------------------------------------------------
# 3. Privileges.
# ---------------------------------------------------------------------------
$node->safe_psql('db1', 'CREATE ROLE operator1 LOGIN');
is( $node->sqlstate_of(
		q{SELECT chunkbatch.pause_all('by operator1')},
		db => 'db1',
		role => 'operator1',
		timeout => 30),
	'42501',
	'a non-superuser cannot call pause_all()');
is($node->safe_psql('db1', 'SELECT paused FROM chunkbatch.pause_all_state()'),
	'f', 'the refused call paused nothing');
$node->safe_psql('db1',
	'GRANT EXECUTE ON FUNCTION chunkbatch.pause_all(text) TO operator1');
is( $node->sql(
		q{SELECT chunkbatch.pause_all('by operator1')},
		db => 'db1',
		role => 'operator1'),
	't',
	'after GRANT EXECUTE it can');
is( $node->safe_psql(
		'db1', 'SELECT paused, paused_by, reason FROM chunkbatch.pause_all_state()'),
	't|operator1|by operator1',
	'pause_all_state() names the non-superuser');
is( $node->sqlstate_of(
		q{SELECT chunkbatch.resume_all()},
		db => 'db1',
		role => 'operator1',
		timeout => 30),
	'42501',
	'resume_all() needs its own grant');
is($node->safe_psql('db1', 'SELECT chunkbatch.resume_all()'),
	't', 'a superuser resumes');

# ---------------------------------------------------------------------------
# 4. DROP EXTENSION while a run is active.
# ---------------------------------------------------------------------------
# 100 rows this time: 20 chunks, 3 s.
$node->safe_psql('db2', 'DELETE FROM work_b WHERE id > 100; UPDATE work_b SET counter = 0');
my $run_d = $node->queue_run('slow_b', db => 'db2');
ok( $node->poll_run(
		$run_d,
		"state = 'running' AND chunks_done >= 1",
		db => 'db2'),
	'db2: a run is running');
is( $node->sqlstate_of(
		'DROP EXTENSION chunkbatch', db => 'db2', timeout => 30),
	'55006', 'DROP EXTENSION with a running run fails with 55006');
is( $node->sqlstate_of(
		'DROP SCHEMA chunkbatch CASCADE', db => 'db2', timeout => 30),
	'55006', 'so does DROP SCHEMA chunkbatch CASCADE');
is($node->final_state($run_d, '60s', db => 'db2'),
	'succeeded', 'the run goes on and succeeds');
is( $node->once_count('work_b', db => 'db2'),
	'100|100',
	'it processed every row exactly once');
is( $node->sqlstate_of(
		'DROP EXTENSION chunkbatch', db => 'db2', timeout => 30),
	'', 'DROP EXTENSION succeeds once the run has ended');
is( $node->safe_psql(
		'db2', q{SELECT count(*) FROM pg_extension WHERE extname = 'chunkbatch'}),
	'0', 'the extension is gone from db2');

# ---------------------------------------------------------------------------
# 5. A configuration reload reaches a run worker between chunks
#    (sleep_ms = 0: no sleep in which it would otherwise notice).
# ---------------------------------------------------------------------------
$node->safe_psql(
	'db1', q{
CREATE TABLE flag_items (id bigint PRIMARY KEY);
INSERT INTO flag_items SELECT generate_series(1, 80);
CREATE TABLE flag_log (seq bigserial PRIMARY KEY, pid int NOT NULL, flag text);
CREATE FUNCTION flag_chunk(n int, after_id bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO flag_log (pid, flag)
    VALUES (pg_backend_pid(), current_setting('chunkbatch_test.flag', true));
  PERFORM pg_sleep(0.1);
  RETURN QUERY
    SELECT f.id FROM flag_items f
     WHERE after_id IS NULL OR f.id > after_id
     ORDER BY f.id LIMIT n;
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'flag',
  chunk_sql => 'SELECT * FROM flag_chunk($1, $2)',
  batch_size => 2,
  sleep_ms => 0,
  cursor_type => 'bigint');
});
my $run_f = $node->queue_run('flag', db => 'db1');
ok($node->poll_query_until('db1', 'SELECT count(*) >= 3 FROM flag_log'),
	'the flag run has committed chunks');
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET chunkbatch_test.flag = 'after'});
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok( $node->poll_query_until(
		'db1', q{SELECT count(*) > 0 FROM flag_log WHERE flag = 'after'}),
	'a later chunk sees the reloaded setting');
is($node->final_state($run_f, '60s', db => 'db1'),
	'succeeded', 'the flag run succeeds');
is( $node->safe_psql(
		'db1', q{
SELECT count(DISTINCT pid),
       (SELECT flag FROM flag_log ORDER BY seq LIMIT 1),
       count(*) FILTER (WHERE flag IS DISTINCT FROM 'before'
                          AND flag IS DISTINCT FROM 'after'),
       count(*) FILTER (WHERE flag = 'after') > 0,
       coalesce(max(seq) FILTER (WHERE flag = 'before'), 0)
         < min(seq) FILTER (WHERE flag = 'after'),
       count(*) FILTER (WHERE flag = 'after') >= 2
  FROM flag_log}),
	'1|before|0|t|t|t',
	'one worker ran every chunk: first "before", then only "after"');

# ---------------------------------------------------------------------------
# 6. chunkbatch.max_workers = 0 is refused at start-up.
# ---------------------------------------------------------------------------
my $bad_node = ChunkbatchNode->create(
	'estop_bad',
	naptime => undef,
	conf => ['chunkbatch.max_workers = 0'],
	start => 0);
ok(!$bad_node->start(fail_ok => 1),
	'a server with chunkbatch.max_workers = 0 does not start');
ok( $bad_node->log_contains(qr/chunkbatch\.max_workers must be at least 1/),
	'its log says chunkbatch.max_workers must be at least 1');

# Nor can a running server be told to use 0 at its next start.
my (undef, $stderr) =
  $node->sql_error('ALTER SYSTEM SET chunkbatch.max_workers = 0');
like($stderr, qr/22023: invalid value for parameter "chunkbatch\.max_workers": 0/,
	'ALTER SYSTEM SET chunkbatch.max_workers = 0 is refused (22023)');
unlike(slurp_file($node->data_dir . '/postgresql.auto.conf'),
	qr/max_workers/, '... and nothing was written to postgresql.auto.conf');

$node->stop;
done_testing();
