# Copyright (c) 2026, chunkbatch developers
#
# chunkbatch never stands in the way of a database's own lifecycle, and runs
# copied with a database stay in the database that queued them.
#
# - clones: once the last run of a database with the extension, two jobs
#   and a finished run has ended, 50 CREATE DATABASE ... TEMPLATE of it
#   (each clone dropped again) all succeed: no "being accessed by other
#   users"; a clone holds the jobs and the finished run;
# - DROP DATABASE of a database with the extension succeeds at the first
#   attempt within 1 s of its last run ending; so does ALTER DATABASE ...
#   RENAME;
# - a scheduler terminated with pg_terminate_backend while a run waits for
#   its group behind a slow run is replaced by the launcher, and the waiting
#   run starts within 3 s of the slow run's end;
# - template copy with an unfinished run: a slow keyset run held by
#   pause_all() and then left 'interrupted' (its worker terminated) is
#   copied by CREATE DATABASE ... TEMPLATE; after resume_all() the run
#   resumes and succeeds in the original database (every row once), while in
#   the copy it becomes 'paused' with a reason 'copied from database ...'
#   and no chunk touches the copy's rows for 3 s; chunkbatch.resume() in the
#   copy makes it local and it succeeds there too, every row once.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create('database_lifecycle');

# chunkbatch processes (scheduler, run workers) connected to a database.
sub cb_backends
{
	my ($db) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM pg_stat_activity
 WHERE datname = '$db' AND backend_type LIKE 'chunkbatch%'});
}

# A database with chunkbatch, a table 'items' of $rows rows with a per-row
# counter, a chunk log and a slow keyset job 'slow' (chunks of 10 rows, each
# sleeping $sleep s) plus a fast repeat-mode job 'fast'.
sub setup_database
{
	my ($db, $rows, $sleep, $group) = @_;
	my $lg = defined $group ? "'$group'" : 'NULL';
	$node->create_database($db);
	$node->create_slow_job(
		db => $db,
		job => 'slow',
		table => 'items',
		rows => $rows,
		sleep => $sleep,
		batch_size => 10,
		lock_group => $group);
	$node->safe_psql(
		$db, qq{
CREATE TABLE trash (id bigint PRIMARY KEY);
INSERT INTO trash SELECT generate_series(1, 100);
SELECT chunkbatch.create_job(
  job_name => 'fast',
  chunk_sql => 'DELETE FROM trash WHERE id IN (SELECT id FROM trash LIMIT \$1)',
  lock_group => $lg,
  batch_size => 50);
});
	return;
}

# ---------------------------------------------------------------------------
# 1. Clones of a database whose runs have ended.
# ---------------------------------------------------------------------------
setup_database('tmpl', 30, 0, undef);
my $trun = $node->queue_run('slow', db => 'tmpl');
is($node->final_state($trun, '30s', db => 'tmpl'),
	'succeeded', 'tmpl: a run of the template database succeeded');

my $script = '';
foreach my $i (1 .. 50)
{
	$script .= "CREATE DATABASE clone_$i TEMPLATE tmpl;\n";
	$script .= "DROP DATABASE IF EXISTS clone_$i;\n";
}
my $t0 = time;
my ($ret, $stdout, $stderr) =
  $node->psql('postgres', $script, on_error_stop => 0);
my $loop_s = time - $t0;
my @errors = grep { /ERROR/ } split /\n/, ($stderr // '');
my $accessed = grep { /being accessed by other users/ } @errors;
is(scalar(@errors), 0,
	'50 CREATE DATABASE ... TEMPLATE tmpl (and DROP of each clone): 0 failures')
  or diag(join("\n", @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ]));
is($accessed, 0, 'no "being accessed by other users" error');
note(sprintf('50 clones created and dropped in %.1f s', $loop_s));
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_database WHERE datname LIKE 'clone\_%'}),
	'0',
	'every clone was dropped');

$node->safe_psql('postgres', 'CREATE DATABASE clone_check TEMPLATE tmpl');
is( $node->safe_psql(
		'clone_check', q{
SELECT (SELECT count(*) FROM chunkbatch.jobs) || '|' ||
       (SELECT string_agg(state, ',') FROM chunkbatch.runs)}),
	'2|succeeded',
	'a clone holds both jobs and the finished run');
$node->safe_psql('postgres', 'DROP DATABASE clone_check');

# ---------------------------------------------------------------------------
# 2. DROP DATABASE and ALTER DATABASE ... RENAME right after a run ended.
# ---------------------------------------------------------------------------

# One session of postgres watches the run through dblink (a look every
# 10 ms), then executes the statement at once, then reads the clock: no
# client start-up between the run's end and the statement.
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION dblink;
CREATE FUNCTION wait_succeeded(connstr text, run bigint) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
  st text;
  fin timestamptz;
BEGIN
  FOR i IN 1 .. 3000 LOOP
    SELECT t.state, t.finished_at INTO st, fin
      FROM dblink(connstr, format(
             'SELECT state, finished_at FROM chunkbatch.runs WHERE run_id = %s',
             run)) AS t(state text, finished_at timestamptz);
    IF st = 'succeeded' THEN
      RETURN fin;
    END IF;
    IF st IN ('failed', 'cancelled', 'skipped') THEN
      RAISE EXCEPTION 'run % ended %', run, st;
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RAISE EXCEPTION 'run % did not succeed within 30 s', run;
END
$$;
});

# Queue 'fast' in $db; as soon as it has succeeded, execute $sql (from
# postgres).  Returns whether that first attempt succeeded, the seconds
# between the run's finished_at and the statement's success (retrying, only
# to measure, for up to 5 s) and the first attempt's errors.
sub statement_after_run
{
	my ($db, $sql) = @_;
	my $run = $node->queue_run('fast', db => $db);
	my $cs = $node->connstr($db);
	$cs =~ s/'/''/g;
	my ($r, $out, $err) = $node->psql(
		'postgres', qq{
SELECT wait_succeeded('$cs', $run) AS finished \\gset
\\echo finished=:finished
$sql;
SELECT 'since=' || extract(epoch FROM clock_timestamp() - :'finished'::timestamptz);
},
		on_error_stop => 0);
	$out //= '';
	$err //= '';
	my ($finished) = $out =~ /^finished=(.+)$/m;
	my ($since) = $out =~ /^since=([\d.]+)$/m;
	return (0, undef, "the run did not succeed: $err")
	  unless defined $finished && $finished =~ /^\d/;
	my $first_ok = $err !~ /ERROR/ && defined $since;
	my $deadline = time + 5;
	while (!defined $since && time < $deadline)
	{
		sleep(0.1);
		my ($r2, $o2, $e2) = $node->psql(
			'postgres', qq{
$sql;
SELECT extract(epoch FROM clock_timestamp() - '$finished'::timestamptz);
});
		$since = $o2 if $r2 == 0;
	}
	return ($first_ok, $since, $err);
}

setup_database('dropme', 10, 0, undef);
my ($first_ok, $since, $err) =
  statement_after_run('dropme', 'DROP DATABASE dropme');
ok($first_ok, 'DROP DATABASE right after the run ended: first attempt succeeds')
  or diag($err);
ok(defined $since && $since < 1.0,
	'DROP DATABASE succeeded within 1 s of the run ending')
  or diag('seconds since finished_at: ' . ($since // 'never'));
note('DROP DATABASE done ' . ($since // '?') . ' s after finished_at');

setup_database('renameme', 10, 0, undef);
($first_ok, $since, $err) =
  statement_after_run('renameme', 'ALTER DATABASE renameme RENAME TO renamed');
ok($first_ok,
	'ALTER DATABASE ... RENAME right after the run ended: first attempt succeeds')
  or diag($err);
ok(defined $since && $since < 1.0,
	'ALTER DATABASE ... RENAME succeeded within 1 s of the run ending')
  or diag('seconds since finished_at: ' . ($since // 'never'));
note('RENAME done ' . ($since // '?') . ' s after finished_at');
my $newname = $node->safe_psql('postgres',
	q{SELECT datname FROM pg_database WHERE datname IN ('renameme', 'renamed')});
is($newname, 'renamed', 'the database has its new name');
is($node->safe_psql($newname, 'SELECT count(*) FROM chunkbatch.jobs'),
	'2', 'the renamed database keeps its jobs');
$node->safe_psql('postgres', "DROP DATABASE $newname");

# ---------------------------------------------------------------------------
# 3. A terminated scheduler is replaced while a run waits for its group.
# ---------------------------------------------------------------------------
# 'slow': 16 chunks of 0.25 s (about 4 s); 'fast' in the same group.
setup_database('grp', 160, 0.25, 'shared');
my $slow = $node->queue_run('slow', db => 'grp');
ok( $node->poll_run($slow, "state = 'running'", db => 'grp'),
	'grp: the slow run is running');
my $waiter = $node->queue_run('fast', db => 'grp');
ok( $node->poll_run($waiter, "state = 'waiting'", db => 'grp'),
	'grp: the second run of the group waits');
my $sched = $node->safe_psql(
	'postgres', q{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'chunkbatch scheduler' AND datname = 'grp'});
like($sched, qr/^\d+$/, 'grp has one scheduler');
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($sched)"),
	't', 'the scheduler of grp is terminated');
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE backend_type = 'chunkbatch scheduler' AND datname = 'grp'
   AND pid <> $sched}),
	'the launcher starts another scheduler in grp');
is($node->final_state($slow, '30s', db => 'grp'),
	'succeeded', 'grp: the slow run succeeds');
is($node->final_state($waiter, '30s', db => 'grp'),
	'succeeded', 'grp: the waiting run succeeds');
my $gap = $node->safe_psql(
	'grp', qq{
SELECT extract(epoch FROM w.started_at - s.finished_at)
  FROM chunkbatch.runs s, chunkbatch.runs w
 WHERE s.run_id = $slow AND w.run_id = $waiter});
ok($gap ne '' && $gap >= 0 && $gap < 3.0,
	'the waiting run started within 3 s of the slow run ending')
  or diag("started_at - finished_at: '$gap' s");
note("waiting run started $gap s after the slow run ended");
is($node->once_count('items', db => 'grp'), '160|160',
	'grp: the slow run processed every row once');

# ---------------------------------------------------------------------------
# 4. CREATE DATABASE ... TEMPLATE of a database with an interrupted run.
# ---------------------------------------------------------------------------
# 'slow': 200 rows, 20 chunks of 0.15 s.
setup_database('orig', 200, 0.15, undef);
my $run = $node->queue_run('slow', db => 'orig');
ok( $node->poll_run(
		$run,
		"state = 'running' AND chunks_done >= 3",
		db => 'orig'),
	'orig: the slow run is running and has committed some chunks');

is($node->safe_psql('orig', q{SELECT chunkbatch.pause_all('lifecycle test')}),
	't', 'pause_all()');
ok( $node->poll_run(
		$run,
		"state = 'throttled' AND throttle_reason LIKE 'all runs paused by chunkbatch.pause_all()%'",
		db => 'orig'),
	'orig: the run holds at a chunk boundary (throttled)');

# Terminate the held worker: the run is left 'interrupted' with no process,
# and while everything is paused the scheduler of orig leaves.
is( $node->safe_psql(
		'postgres', q{
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE backend_type = 'chunkbatch run worker' AND datname = 'orig'}),
	'1',
	'the run worker of orig is terminated');
ok( $node->poll_run($run, "state = 'interrupted'", db => 'orig'),
	'orig: the run is interrupted');
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE datname = 'orig' AND backend_type LIKE 'chunkbatch%'}),
	'no chunkbatch process stays in orig while everything is paused');

my $attempts = 0;
my $copy_err = '';
while ($attempts < 5)
{
	$attempts++;
	my ($r, $o, $e) =
	  $node->psql('postgres', 'CREATE DATABASE copy TEMPLATE orig');
	last if $r == 0;
	$copy_err .= $e // '';
	sleep(0.5);
}
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_database WHERE datname = 'copy'}),
	'1',
	'CREATE DATABASE copy TEMPLATE orig succeeds')
  or diag($copy_err);
is($attempts, 1, 'CREATE DATABASE copy TEMPLATE orig: at the first attempt')
  or diag($copy_err);

# What the copy holds at copy time (nothing ran since the pause).
my $state_sql = qq{
SELECT r.state, r.rows_done, r.chunks_done, r.cursor,
       (SELECT count(*) FILTER (WHERE counter = 0) || '/' ||
               count(*) FILTER (WHERE counter = 1) || '/' ||
               count(*) FILTER (WHERE counter > 1) FROM items),
       (SELECT count(*) || '/' || coalesce(sum(n), 0) FROM chunk_log)
  FROM chunkbatch.runs r WHERE r.run_id = $run};
my $at_copy = $node->safe_psql('copy', $state_sql);
my ($c_state, $c_rows, $c_chunks, $c_cursor, $c_items, $c_log) =
  split /\|/, $at_copy;
is($c_state, 'interrupted', 'copy: the run was copied as interrupted');
ok($c_rows >= 30 && $c_rows < 200 && $c_items eq (200 - $c_rows) . "/$c_rows/0",
	'copy: the copied rows match the copied checkpoint (done once or not at all)')
  or diag($at_copy);

is($node->safe_psql('orig', q{SELECT chunkbatch.resume_all()}),
	't', 'resume_all()');

ok( $node->poll_run(
		$run,
		"state = 'paused' AND reason LIKE 'copied from database%'",
		db => 'copy'),
	'copy: the copied run becomes paused, copied from another database');
my $paused_at = time;

is($node->final_state($run, '30s', db => 'orig'),
	'succeeded', 'orig: the interrupted run resumes and succeeds');
is( $node->safe_psql(
		'orig',
		"SELECT state, rows_done, cursor FROM chunkbatch.runs WHERE run_id = $run"),
	'succeeded|200|200',
	'orig: the run went to the end');
is($node->once_count('items', db => 'orig'), '200|200',
	'orig: every row processed exactly once');
is( $node->safe_psql(
		'orig',
		q{SELECT count(*) FILTER (WHERE n > 0), sum(n), count(DISTINCT pid) FROM chunk_log}),
	'20|200|2',
	'orig: 20 chunks, by the terminated worker and one after resume_all()');

# The copy stays untouched for at least 3 s after it was paused.
my $left = 3 - (time - $paused_at);
sleep($left) if $left > 0;
my $copy_after = $node->safe_psql('copy', $state_sql);
is( $copy_after,
	join('|', 'paused', $c_rows, $c_chunks, $c_cursor, $c_items, $c_log),
	'copy: no chunk ran for 3 s; rows, log and checkpoint as at copy time');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE datname = 'copy' AND backend_type = 'chunkbatch run worker'}),
	'0',
	'copy: no run worker');

is($node->safe_psql('copy', "SELECT chunkbatch.resume($run)"),
	't', 'copy: chunkbatch.resume() of the copied run');
is($node->final_state($run, '30s', db => 'copy'),
	'succeeded', 'copy: the resumed run succeeds');
is( $node->safe_psql(
		'copy', qq{
SELECT state, rows_done, cursor,
       origin_db = (SELECT oid FROM pg_database WHERE datname = current_database())
  FROM chunkbatch.runs WHERE run_id = $run}),
	'succeeded|200|200|t',
	'copy: the run went to the end and now belongs to copy');
is($node->once_count('items', db => 'copy'), '200|200',
	'copy: every row processed exactly once');
is($node->safe_psql('copy', q{SELECT sum(n) FROM chunk_log}),
	'200', 'copy: the chunks in copy processed the remaining rows only');
is($node->once_count('items', db => 'orig'), '200|200',
	'orig: still every row exactly once');

$node->stop;
done_testing();
