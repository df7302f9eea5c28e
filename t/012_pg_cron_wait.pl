# Copyright (c) 2026, chunkbatch developers
#
# pg_cron schedules with wait => true, in both of pg_cron's modes: libpq
# connections (the default, to cron.host) and background workers
# (cron.use_background_workers = on), each on its own node.
#
# For each mode:
# - chunkbatch.schedule(job, '* * * * *', wait => true) makes the cron job
#   command a CALL chunkbatch.run_and_wait(...);
# - while the scheduled slow run executes (about 4 s), the backend that runs
#   that CALL (a client backend with libpq, pg_cron's own background worker
#   otherwise) does not hold one snapshot for the whole run: sampled every
#   50 ms, its backend_xmin is NULL at times or changes;
# - cron.job_run_details shows 'succeeded' for the slow job, whose run
#   succeeded and did all its work, and 'failed', with the run's error
#   (division by zero), for a job whose second chunk fails;
# - unschedule() removes both cron jobs.
#
# The installed pg_cron (1.4) schedules by the minute only, so both nodes are
# started, set up and scheduled together and fire at the same minute: the
# script waits for pg_cron only once (at most about 60 s).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run;
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my @modes = ('libpq', 'bgworker');
my %node;

my $db = 'postgres';
my $t0 = time;

foreach my $mode (@modes)
{
	my $node = ChunkbatchNode->new("cron_$mode");
	$node{$mode} = $node;
	my @conf = ("cron.database_name = 'postgres'");
	my $max_worker_processes = 16;
	if ($mode eq 'libpq')
	{
		# pg_cron connects to cron.host at the server's port; the test
		# servers listen on a Unix socket directory only (trust auth).
		my $host = $node->host;
		push @conf, 'cron.use_background_workers = off',
		  "cron.host = '$host'";
	}
	else
	{
		push @conf, 'cron.use_background_workers = on';
		$max_worker_processes = 32;
	}
	$node->setup(
		preload => 'pg_cron,chunkbatch',
		max_worker_processes => $max_worker_processes,
		conf => \@conf);

	# 'slow': 200 rows in 20 keyset chunks of 10, 0.2 s apart (about 4 s),
	# plus the final empty chunk.
	# 'divzero': its second chunk (ids 11..20) divides by zero.
	$node->safe_psql(
		$db, q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION chunkbatch;

CREATE TABLE items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO items (id) SELECT generate_series(1, 200);
SELECT chunkbatch.create_job(
  job_name => 'slow',
  chunk_sql => $$UPDATE items SET counter = counter + 1
                 WHERE id IN (SELECT id FROM items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 10,
  sleep_ms => 200,
  cursor_type => 'bigint');

CREATE TABLE dz_items (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO dz_items (id) SELECT generate_series(1, 50);
SELECT chunkbatch.create_job(
  job_name => 'divzero',
  chunk_sql => $$UPDATE dz_items SET v = v + 10 / (CASE WHEN id > 10 THEN 0 ELSE 1 END)
                 WHERE id IN (SELECT id FROM dz_items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 10,
  cursor_type => 'bigint');

-- Waits for the first run of 'slow' and, while it is running, samples every
-- 50 ms the backend that runs pg_cron's CALL of it: backend_xmin, backend_type
-- and application_name, as 'xmin#type#app' joined by ';'.  Each statement of
-- this VOLATILE function reads with a new snapshot; pg_stat_clear_snapshot()
-- makes pg_stat_activity current.
CREATE FUNCTION sample_slow_call(timeout_s float8) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
  t_end timestamptz := clock_timestamp() + timeout_s * interval '1 s';
  st text;
  calls text;
  samples text[] := '{}';
BEGIN
  LOOP
    PERFORM pg_stat_clear_snapshot();
    SELECT r.state INTO st FROM chunkbatch.runs r
     WHERE r.job_name = 'slow' ORDER BY r.run_id LIMIT 1;
    SELECT string_agg(coalesce(a.backend_xmin::text, 'null')
                      || '#' || coalesce(a.backend_type, '')
                      || '#' || coalesce(a.application_name, ''), ';')
      INTO calls
      FROM pg_stat_activity a
     WHERE a.query LIKE 'CALL chunkbatch.run\_and\_wait(chunkbatch.job\_name\_of('
                        || (SELECT j.job_id FROM chunkbatch.jobs j WHERE j.job_name = 'slow')
                        || ')%'
       AND a.pid <> pg_backend_pid();
    IF st = 'running' AND calls IS NOT NULL THEN
      samples := samples || calls;
    END IF;
    EXIT WHEN st IN ('succeeded', 'failed', 'cancelled', 'skipped')
           OR clock_timestamp() > t_end;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN array_to_string(samples, ';');
END
$f$;
});
}
note(sprintf('both nodes set up in %.1f s', time - $t0));

# A schedule made in the last seconds of a minute might be seen by pg_cron
# only after that minute's tick: wait for the next minute then.
{
	my $sec = (localtime(time))[0];
	if ($sec >= 57)
	{
		note("waiting for the next minute (second $sec)");
		usleep((61 - $sec) * 1_000_000);
	}
}

# ---------------------------------------------------------------------------
# Schedule both jobs with wait => true on both nodes.
# ---------------------------------------------------------------------------
my (%slow_cron, %fail_cron);
my $t_sched = time;
foreach my $mode (@modes)
{
	my $node = $node{$mode};
	$slow_cron{$mode} = $node->safe_psql($db,
		q{SELECT chunkbatch.schedule('slow', '* * * * *', wait => true)});
	$fail_cron{$mode} = $node->safe_psql($db,
		q{SELECT chunkbatch.schedule('divzero', '* * * * *', wait => true)});
	like($slow_cron{$mode}, qr/^\d+$/,
		"$mode: schedule(..., wait => true) returns the pg_cron job id");
}

foreach my $mode (@modes)
{
	my $node = $node{$mode};
	is( $node->safe_psql(
			$db, q{
SELECT string_agg(jobname || '|' || schedule || '|' || database || '|' || active
                  || '|' || (command LIKE 'CALL chunkbatch.run\_and\_wait(%'),
                  ',' ORDER BY jobname)
  FROM cron.job}),
		'chunkbatch:divzero|* * * * *|postgres|true|true,'
		  . 'chunkbatch:slow|* * * * *|postgres|true|true',
		"$mode: both cron jobs exist and their command is CALL chunkbatch.run_and_wait(...)"
	);
}
note('cron command: '
	  . $node{libpq}->safe_psql($db,
		q{SELECT command FROM cron.job WHERE jobname = 'chunkbatch:slow'}));

# ---------------------------------------------------------------------------
# Wait for pg_cron to fire, sampling the backend that runs the CALL of the
# slow job while its run executes, until both cron jobs of both nodes ended.
# ---------------------------------------------------------------------------
# psql forks are too slow on a busy machine to sample a 4 s run often, so
# each node samples itself: sample_slow_call() (created above) runs in one
# psql session per node, started in the background on both nodes at once.
# It is read-only (it never gets a transaction id), so it cannot hold back
# the xmin of other backends' snapshots.
my %h;
my %out = map { $_ => '' } @modes;
my %err = map { $_ => '' } @modes;
foreach my $mode (@modes)
{
	$h{$mode} = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1',
			'-d', $node{$mode}->connstr($db),
			'-c', 'SELECT sample_slow_call(80)'
		],
		'>', \$out{$mode}, '2>', \$err{$mode}, IPC::Run::timeout(90));
}
my %samples = map { $_ => [] } @modes;
my %btypes  = map { $_ => {} } @modes;
my %appname = map { $_ => {} } @modes;
foreach my $mode (@modes)
{
	my $ok = eval { $h{$mode}->finish; 1 };
	if (!$ok)
	{
		diag("$mode: sampler failed: $@ $err{$mode}");
		$h{$mode}->kill_kill;
	}
	elsif ($h{$mode}->result != 0)
	{
		diag("$mode: sampler failed: $err{$mode}");
	}
	chomp $out{$mode};
	foreach my $c (split /;/, $out{$mode})
	{
		my ($xmin, $btype, $app) = split /#/, $c, 3;
		push @{ $samples{$mode} }, $xmin;
		$btypes{$mode}{$btype} = 1;
		$appname{$mode}{ $app // '' } = 1;
	}
}
note(sprintf('the slow runs of both nodes ended %.1f s after schedule()',
		time - $t_sched));

my %done;
foreach my $mode (@modes)
{
	$done{$mode} = $node{$mode}->poll_query_until(
		$db, q{
SELECT count(DISTINCT jobid) = 2 FROM cron.job_run_details
 WHERE status IN ('succeeded', 'failed')});
}
note(sprintf('cron jobs of both nodes ended %.1f s after schedule()',
	time - $t_sched));

my $details = q{SELECT string_agg(jobid || ' ' || status || ' '
                                  || coalesce(return_message, ''), E'\n' ORDER BY runid)
                  FROM cron.job_run_details};

foreach my $mode (@modes)
{
	my $node = $node{$mode};

	ok($done{$mode}, "$mode: both cron jobs ran and ended")
	  or diag("$mode job_run_details:\n" . $node->safe_psql($db, $details));

	# (2) the CALL's backend holds no single snapshot for the whole run.
	my @s = @{ $samples{$mode} };
	my %distinct = map { $_ => 1 } @s;
	my $nulls = grep { $_ eq 'null' } @s;
	note("$mode: "
		  . scalar(@s)
		  . " samples of the CALL's backend_xmin while the run executed: "
		  . "$nulls NULL, "
		  . scalar(keys %distinct)
		  . ' distinct; backend_type: '
		  . join(',', sort keys %{ $btypes{$mode} })
		  . '; application_name: '
		  . join(',', sort keys %{ $appname{$mode} }));
	cmp_ok(scalar(@s), '>=', 20,
		"$mode: the CALL's backend was sampled at least 20 times while the run executed");
	ok( scalar(@s) > 0 && ($nulls > 0 || keys(%distinct) > 1),
		"$mode: the CALL's backend_xmin is NULL at times or changes during the run")
	  or diag("$mode samples: @s");
	if ($mode eq 'libpq')
	{
		is( join(',', sort keys %{ $btypes{$mode} }),
			'client backend',
			'libpq: the CALL runs in a client backend');
	}
	else
	{
		my @bt = sort keys %{ $btypes{$mode} };
		ok(@bt == 1 && $bt[0] ne 'client backend' && $bt[0] =~ /cron/,
			'bgworker: the CALL runs in pg_cron\'s background worker')
		  or diag('backend types: ' . join(',', @bt));
	}

	# (3) the cron history shows the runs' outcomes.
	my $slow_run = $node->safe_psql($db,
		q{SELECT coalesce(min(run_id), 0) FROM chunkbatch.runs WHERE job_name = 'slow'});
	my $fail_run = $node->safe_psql($db,
		q{SELECT coalesce(min(run_id), 0) FROM chunkbatch.runs WHERE job_name = 'divzero'});

	# pg_cron records the CALL's result: '1 row' (its INOUT run_id) over
	# libpq, the command tag 'CALL' in a background worker.
	like(
		$node->safe_psql(
			$db,
			"SELECT status || '|' || coalesce(return_message, '')
               FROM cron.job_run_details
              WHERE jobid = $slow_cron{$mode} ORDER BY runid LIMIT 1"),
		qr/^succeeded\|(1 row|CALL)$/,
		"$mode: cron.job_run_details shows the slow job succeeded")
	  or diag("$mode job_run_details:\n" . $node->safe_psql($db, $details));
	is( $node->safe_psql(
			$db,
			"SELECT state, rows_done, chunks_done, trigger
               FROM chunkbatch.runs WHERE run_id = $slow_run"),
		'succeeded|200|21|pg_cron chunkbatch:slow',
		"$mode: the scheduled slow run succeeded and did all its work");
	is($node->safe_psql($db, 'SELECT count(*) FROM items WHERE counter = 1'),
		'200', "$mode: every row was processed once");

	my $fail_row = $node->safe_psql(
		$db,
		"SELECT status || '|' || coalesce(return_message, '')
           FROM cron.job_run_details
          WHERE jobid = $fail_cron{$mode} ORDER BY runid LIMIT 1");
	like(
		$fail_row,
		qr/^failed\|.*run $fail_run of job "divzero" failed: division by zero/,
		"$mode: cron.job_run_details shows the failing job failed, with the run's error"
	) or diag("$mode job_run_details:\n" . $node->safe_psql($db, $details));
	note("$mode: cron return_message: $fail_row");
	is( $node->safe_psql(
			$db,
			"SELECT state, sqlstate, rows_done, cursor
               FROM chunkbatch.runs WHERE run_id = $fail_run"),
		'failed|22012|10|10',
		"$mode: the failing run failed with SQLSTATE 22012 at its second chunk");

	# Unschedule before the next minute.
	is( $node->safe_psql(
			$db,
			q{SELECT chunkbatch.unschedule('slow'), chunkbatch.unschedule('divzero')}),
		't|t',
		"$mode: unschedule() removes both schedules");
	is($node->safe_psql($db, 'SELECT count(*) FROM cron.job'),
		'0', "$mode: no cron job is left");
}

note(sprintf('pg_cron wait test: %.1f s in all', time - $t0));

$node{$_}->stop foreach @modes;
done_testing();
