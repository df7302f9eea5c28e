# Copyright (c) 2026, chunkbatch developers
#
# pg_cron schedules, with a real pg_cron (1.4, minute granularity).
#
# - chunkbatch.schedule('job', '* * * * *') creates the cron job
#   'chunkbatch:job', which queues a run at the next minute (trigger
#   'pg_cron ...'); the cron job itself returns at once and succeeds; the
#   cron commands name their job by id (chunkbatch.job_name_of(id));
# - a failing job scheduled with wait => true shows 'failed' in
#   cron.job_run_details, with the run's error, while the run is failed with
#   SQLSTATE 23514;
# - unschedule('job') removes the cron job and returns true (false when there
#   is nothing to remove); drop_job removes the job's schedules;
# - in a database without pg_cron, schedule() and unschedule() fail with
#   SQLSTATE 55000 and a hint.
#
# Both jobs are scheduled at once and fire at the same minute, so the script
# waits for pg_cron only once (at most about 60 s).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

# pg_cron runs its jobs in background workers (no libpq connection to
# cron.host, so no password or host setup).
my $node = ChunkbatchNode->create(
	'pg_cron',
	preload => 'pg_cron,chunkbatch',
	max_worker_processes => 32,
	conf => [
		"cron.database_name = 'postgres'",
		'cron.use_background_workers = on'
	]);

my $db = 'postgres';

# The output of a query whose failure is one of the test's findings: on an
# error, report it and return what psql printed (so the assertion fails and
# the script goes on).
sub val
{
	my ($query) = @_;
	my ($ret, $stdout, $stderr) = $node->psql($db, $query);
	diag("query failed: $query\n$stderr") if $ret != 0;
	return $stdout;
}

$node->sql(q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION chunkbatch;

CREATE TABLE items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO items (id) SELECT generate_series(1, 200);
SELECT chunkbatch.create_job(
  job_name => 'job',
  chunk_sql => $$UPDATE items SET counter = counter + 1
                 WHERE id IN (SELECT id FROM items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 50,
  cursor_type => 'bigint');

-- the third chunk violates a CHECK constraint
CREATE TABLE chk_items (id bigint PRIMARY KEY,
                        v int NOT NULL DEFAULT 0 CONSTRAINT v_small CHECK (v <= 1));
INSERT INTO chk_items (id) SELECT generate_series(1, 100);
UPDATE chk_items SET v = 1 WHERE id = 25;
SELECT chunkbatch.create_job(
  job_name => 'cron_fail',
  chunk_sql => $$UPDATE chk_items SET v = v + 1
                 WHERE id IN (SELECT id FROM chk_items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 10,
  cursor_type => 'bigint');

-- a plain pg_cron job, to tell a pg_cron problem from a chunkbatch one
CREATE TABLE cron_ping (at timestamptz NOT NULL);
SELECT cron.schedule('control_ping', '* * * * *', 'INSERT INTO cron_ping VALUES (now())');
});

# ---------------------------------------------------------------------------
# Schedule both jobs.
# ---------------------------------------------------------------------------
my $t0 = time;
my $job_cron_id = $node->sql(q{SELECT chunkbatch.schedule('job', '* * * * *')});
like($job_cron_id, qr/^\d+$/, 'schedule() returns the pg_cron job id');
my $fail_cron_id = $node->sql(
	q{SELECT chunkbatch.schedule('cron_fail', '* * * * *', wait => true)});
like($fail_cron_id, qr/^\d+$/, 'schedule(..., wait => true) returns the pg_cron job id');

is( $node->sql(
		q{SELECT jobid, schedule, database, active,
                 command LIKE '%chunkbatch.run(%'
            FROM cron.job WHERE jobname = 'chunkbatch:job'}),
	"$job_cron_id|* * * * *|postgres|t|t",
	'cron.job has the job chunkbatch:job, calling chunkbatch.run()');
is( $node->sql(
		q{SELECT jobid, command LIKE 'CALL chunkbatch.run_and_wait(%'
            FROM cron.job WHERE jobname = 'chunkbatch:cron_fail'}),
	"$fail_cron_id|t",
	'cron.job has chunkbatch:cron_fail, waiting with CALL run_and_wait()');
note('cron command: '
	  . $node->sql(q{SELECT command FROM cron.job WHERE jobname = 'chunkbatch:cron_fail'}));
is( $node->sql(
		q{SELECT bool_and(c.command LIKE '%chunkbatch.job_name_of(' || j.job_id || ')%')
            FROM cron.job c JOIN chunkbatch.jobs j ON c.jobname = 'chunkbatch:' || j.job_name
           WHERE j.job_name IN ('job', 'cron_fail')}),
	't', 'the cron commands name their job by id');

my ($sqlstate, $stderr) = $node->sql_error(
	q{SELECT chunkbatch.schedule('no_such_job', '* * * * *');});
is($sqlstate, '42704', 'schedule() of an unknown job fails with 42704')
  or diag($stderr);

# ---------------------------------------------------------------------------
# Wait for pg_cron to fire both (the next minute).
# ---------------------------------------------------------------------------
# Each poll also ends when the cron job itself failed, so that a broken
# cron command fails the test at once instead of after the poll's timeout.
my $details = q{SELECT string_agg(jobid || ' ' || status || ' '
                                  || coalesce(return_message, ''), E'\n' ORDER BY runid)
                  FROM cron.job_run_details};
my $ok_run = $node->poll_query_until(
	$db, qq{
SELECT EXISTS (SELECT FROM chunkbatch.runs
                WHERE job_name = 'job' AND trigger LIKE 'pg_cron%')
    OR EXISTS (SELECT FROM cron.job_run_details
                WHERE jobid = $job_cron_id AND status = 'failed')
});
my $run_secs = time - $t0;
is( val(
		q{SELECT count(*) > 0 FROM chunkbatch.runs
           WHERE job_name = 'job' AND trigger LIKE 'pg_cron%'}),
	't',
	'pg_cron queued a run of the scheduled job')
  or diag("poll ok: $ok_run\nruns: "
	  . val(q{SELECT string_agg(run_id || ' ' || job_name || ' ' || trigger, ', ')
                FROM chunkbatch.runs})
	  . "\ncron_ping rows: "
	  . val(q{SELECT count(*) FROM cron_ping})
	  . "\njob_run_details:\n"
	  . val($details));
note(sprintf('pg_cron started a run of "job" %.1f s after schedule()', $run_secs));

my $ok_fail = $node->poll_query_until(
	$db,
	"SELECT count(*) > 0 FROM cron.job_run_details
      WHERE jobid = $fail_cron_id AND status IN ('failed', 'succeeded')");
my $fail_secs = time - $t0;
my $fail_run = val(
	q{SELECT min(run_id) FROM chunkbatch.runs
       WHERE job_name = 'cron_fail' AND trigger LIKE 'pg_cron%'});
$fail_run = 0 if $fail_run eq '';
my $fail_msg = val(
	"SELECT return_message FROM cron.job_run_details
      WHERE jobid = $fail_cron_id AND status = 'failed'
      ORDER BY runid LIMIT 1");
like($fail_msg, qr/run $fail_run of job "cron_fail" failed/,
	'the failing job scheduled with wait => true shows failed in cron.job_run_details, with the run\'s error'
) or diag("poll ok: $ok_fail\njob_run_details:\n" . val($details));
note(sprintf('cron.job_run_details showed the failure %.1f s after schedule()',
		$fail_secs));
note("cron return_message: $fail_msg");

# Stop both schedules before the next minute.
is($node->sql(q{SELECT chunkbatch.unschedule('job')}),
	't', 'unschedule() returns true');
is($node->sql(q{SELECT count(*) FROM cron.job WHERE jobname = 'chunkbatch:job'}),
	'0', 'unschedule() removed the cron job');
is($node->sql(q{SELECT chunkbatch.unschedule('cron_fail')}),
	't', 'unschedule() of the failing job returns true');
is($node->sql(q{SELECT chunkbatch.unschedule('job')}),
	'f', 'unschedule() of a job without a schedule returns false');
is( $node->sql(
		q{SELECT string_agg(jobname, ',' ORDER BY jobname) FROM cron.job}),
	'control_ping',
	'only the unrelated cron job is left');

# ---------------------------------------------------------------------------
# What the runs and the cron history show.
# ---------------------------------------------------------------------------
my $run = val(
	q{SELECT min(run_id) FROM chunkbatch.runs
       WHERE job_name = 'job' AND trigger LIKE 'pg_cron%'});
$run = 0 if $run eq '';
is(val("SELECT chunkbatch.wait($run, '30s')"),
	'succeeded', 'the scheduled run succeeds');
is( val(
		"SELECT rows_done, trigger LIKE '%chunkbatch:job%'
           FROM chunkbatch.runs WHERE run_id = $run"),
	'200|t', 'the scheduled run did its work; its trigger names the cron job');
note('trigger: ' . val("SELECT trigger FROM chunkbatch.runs WHERE run_id = $run"));
is(val(q{SELECT count(*) FILTER (WHERE counter >= 1) FROM items}),
	'200', 'every row was processed');
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) > 0 FROM cron.job_run_details
          WHERE jobid = $job_cron_id AND status IN ('succeeded', 'failed')"),
	'the cron job of the run without wait ended');
is( val(
		"SELECT status, end_time - start_time < interval '10s'
           FROM cron.job_run_details WHERE jobid = $job_cron_id
          ORDER BY runid LIMIT 1"),
	'succeeded|t',
	'the cron job of the run without wait returned at once and succeeded');

is( val(
		"SELECT state, sqlstate, rows_done
           FROM chunkbatch.runs WHERE run_id = $fail_run"),
	'failed|23514|20',
	'the scheduled failing run failed with SQLSTATE 23514 at its third chunk');

# ---------------------------------------------------------------------------
# A database without pg_cron.
# ---------------------------------------------------------------------------
$node->create_database('nocron');
$node->sql(q{
CREATE TABLE items (id bigint PRIMARY KEY);
SELECT chunkbatch.create_job(
  job_name => 'job',
  chunk_sql => 'DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT $1)');
}, db => 'nocron');
($sqlstate, $stderr) = $node->sql_error(
	q{SELECT chunkbatch.schedule('job', '* * * * *');}, db => 'nocron');
is($sqlstate, '55000',
	'schedule() in a database without pg_cron fails with 55000')
  or diag($stderr);
like($stderr, qr/HINT:.*pg_cron/, 'the error has a hint about pg_cron');
($sqlstate, $stderr) = $node->sql_error(
	q{SELECT chunkbatch.unschedule('job');}, db => 'nocron');
is($sqlstate, '55000',
	'unschedule() in a database without pg_cron fails with 55000')
  or diag($stderr);
like($stderr, qr/HINT:/, 'the error has a hint');

# drop_job removes the job's schedules (whoever made them): a later job of
# the same name (another role's, say) is never started by them.
$node->sql(q{
CREATE TABLE drop_items (id bigint PRIMARY KEY);
SELECT chunkbatch.create_job('to_drop',
  'DELETE FROM drop_items WHERE id IN (SELECT id FROM drop_items LIMIT $1)');
SELECT chunkbatch.schedule('to_drop', '0 3 * * *');
});
is($node->sql(q{SELECT count(*) FROM cron.job WHERE jobname = 'chunkbatch:to_drop'}),
	'1', 'the job to drop has a schedule');
$node->sql(q{SELECT chunkbatch.drop_job('to_drop')});
is($node->sql(q{SELECT count(*) FROM cron.job WHERE jobname = 'chunkbatch:to_drop'}),
	'0', 'drop_job removed its schedule');

note(sprintf('pg_cron test: %.1f s in all', time - $t0));

$node->stop;
done_testing();
