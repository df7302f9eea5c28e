# Copyright (c) 2026, chunkbatch developers
#
# monitoring/postgres_exporter_queries.yaml, read by the real
# prometheus-postgres-exporter (Debian package prometheus-postgres-exporter;
# the script fails when /usr/bin/prometheus-postgres-exporter, or the
# program named by $PG_EXPORTER, is missing), connected as a LOGIN role that
# is only a member of pg_monitor, to a server with chunkbatch.max_workers = 2
# running:
#
#   a failed run (job fails), a finished run with 2 dead letters (job
#   poison, on_error => 'isolate'), a slow keyset run (job slow, group items,
#   count_sql set), a throttled run (job held, throttle_sql 'SELECT true'),
#   a run waiting for group items (job later) and a run left queued for
#   lack of a worker (job other).
#
# - /metrics answers and the exporter loaded the queries file without error
#   (pg_exporter_user_queries_load_error 0, pg_exporter_last_scrape_error 0);
# - every chunkbatch metric of the file is exported, with HELP and TYPE
#   gauge, none as an "Unknown metric", each with the label datname;
# - chunkbatch_queued_runs 1 and chunkbatch_queued_oldest_age_seconds > 0;
# - chunkbatch_active_runs by state: running 1, throttled 1, waiting 1,
#   interrupted 0, paused 0;
# - chunkbatch_run_* (labels run_id and job) exist exactly for the running
#   and the throttled run; the slow run has rows done > 0, rows per second
#   > 0, batch size 10 and a percent between 0 and 100, and its rows done
#   grow from one scrape to the next (the per-run query is not cached);
# - chunkbatch_finished_runs: failed 1, succeeded 1, cancelled 0, skipped 0,
#   stopped 0; chunkbatch_failures: 1 failed run, 1 in the last hour, the
#   timestamp of its finished_at;
# - chunkbatch_group_waits: 1 run waits, for more than 0 s;
#   chunkbatch_lock_group for group items: held, 1 pending run;
# - chunkbatch_throttle: 1 throttled run, pause_all 0;
# - chunkbatch_dead_letters: 2 keys in 1 run, as many as the superuser sees
#   in chunkbatch.dead_letters (which the pg_monitor role cannot read).
# The chunkbatch lines of /metrics are printed (diag).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $exporter_bin = $ENV{PG_EXPORTER} // '/usr/bin/prometheus-postgres-exporter';
my $queries = "$FindBin::Bin/../monitoring/postgres_exporter_queries.yaml";

ok(-r $queries, "the queries file $queries exists");
if (!ok(-x $exporter_bin, "$exporter_bin is installed"))
{
	diag('install the Debian package prometheus-postgres-exporter');
	done_testing();
	exit 1;
}

my $exporter;
END
{
	local $?;
	if ($exporter && $exporter->pumpable)
	{
		$exporter->signal('TERM');
		$exporter->kill_kill(grace => 2);
	}
}

my $node = ChunkbatchNode->create(
	'exporter',
	conf => [ 'chunkbatch.max_workers = 2', 'chunkbatch.max_workers_per_role = 2' ],
	extension_in => ['postgres']);

$node->sql(q{CREATE ROLE monitor LOGIN IN ROLE pg_monitor});

# A failed run.
$node->sql(q{SELECT chunkbatch.create_job('fails', 'SELECT 1 / 0 WHERE $1 > 0')});
my $failed = $node->queue_run('fails');
is($node->final_state($failed, '30s'), 'failed', 'a run of job fails failed');

# A run that succeeds with 2 dead letters.
$node->sql(q{
CREATE TABLE pz (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                 poison boolean NOT NULL DEFAULT false,
                 CONSTRAINT not_poison CHECK (NOT poison OR counter = 0));
INSERT INTO pz (id) SELECT generate_series(1, 100);
UPDATE pz SET poison = true WHERE id IN (17, 71);
SELECT chunkbatch.create_job(
  job_name => 'poison',
  chunk_sql => $$UPDATE pz SET counter = counter + 1
                  WHERE id IN (SELECT id FROM pz WHERE $2 IS NULL OR id > $2
                                ORDER BY id LIMIT $1)
                 RETURNING id$$,
  batch_size => 50, cursor_type => 'bigint', on_error => 'isolate',
  keys_sql => $$SELECT id FROM pz WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1$$);
});
my $poison = $node->queue_run('poison');
is($node->final_state($poison, '30s'), 'succeeded', 'a run of job poison succeeded');
is($node->sql('SELECT count(*) FROM chunkbatch.dead_letters'),
	'2', 'it left 2 dead letters');

# A slow run (about 55 ms a chunk of 10 rows, 10,000 rows: longer than the
# script), a throttled run, a run waiting for the slow run's group and a
# run without a free worker.
$node->create_slow_job(
	job => 'slow',
	table => 'items',
	rows => 10000,
	sleep => 0.05,
	batch_size => 10,
	lock_group => 'items',
	log => 0,
	args => q{count_sql => 'SELECT count(*) FROM items'});
$node->sql(q{
SELECT chunkbatch.create_job('held', 'SELECT 1 WHERE $1 < 0', throttle_sql => 'SELECT true');
SELECT chunkbatch.create_job('later', 'SELECT 1 WHERE $1 < 0', lock_group => 'items');
SELECT chunkbatch.create_job('other', 'SELECT 1 WHERE $1 < 0');
});
my $slow = $node->queue_run('slow');
ok($node->poll_run($slow, "state = 'running' AND chunks_done >= 3"),
	'the slow run is running');
my $held = $node->queue_run('held');
ok($node->poll_run($held, "state = 'throttled'"), 'the held run is throttled');
my $later = $node->queue_run('later');
ok($node->poll_run($later, "state = 'waiting'"),
	'the later run waits for group items');
my $other = $node->queue_run('other');
# The scheduler looks at the new run at once (run() wakes it); give it
# two passes.
sleep 2;
is($node->sql("SELECT state FROM chunkbatch.runs WHERE run_id = $other"),
	'queued', 'the other run stays queued: both workers are busy');

# The exporter, as the pg_monitor member, on a free port.
my $port = PostgreSQL::Test::Cluster::get_free_port();
# (Not 051_exporter_exporter.log: that is the node's server log.)
my $exporter_log =
  "$PostgreSQL::Test::Utils::log_path/051_prometheus-postgres-exporter.log";
{
	local $ENV{DATA_SOURCE_NAME} =
	    'host=' . $node->host
	  . ' port=' . $node->port
	  . ' user=monitor dbname=postgres sslmode=disable';
	$exporter = IPC::Run::start(
		[
			$exporter_bin,
			"--web.listen-address=127.0.0.1:$port",
			"--extend.query-path=$queries",
			'--disable-default-metrics',
			'--disable-settings-metrics',
			'--no-collector.database',
			'--no-collector.bgwriter',
			'--log.level=info'
		],
		'<', \undef, '>', $exporter_log, '2>&1');
}

my $http = HTTP::Tiny->new(timeout => 5);
my $url = "http://127.0.0.1:$port/metrics";

# Scrape: the metrics as { name => [ [ {labels}, value ], ... ] }, the HELP
# and TYPE lines as { name => text }, and the chunkbatch lines.
sub scrape
{
	my $res = $http->get($url);
	return undef unless $res->{success};
	my (%m, %help, %type, @lines);
	foreach my $line (split /\n/, $res->{content})
	{
		if ($line =~ /^# HELP (\S+) (.*)$/) { $help{$1} = $2; next; }
		if ($line =~ /^# TYPE (\S+) (\S+)$/) { $type{$1} = $2; next; }
		next if $line =~ /^#/ || $line eq '';
		my ($name, undef, $labels, $value) =
		  $line =~ /^([A-Za-z_:][\w:]*)(\{(.*)\})?\s+(\S+)/
		  or next;
		my %l;
		$l{$1} = $2 while ($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		push @{ $m{$name} }, [ \%l, $value ];
		push @lines, $line if $name =~ /^chunkbatch_/;
	}
	return { m => \%m, help => \%help, type => \%type, lines => \@lines };
}

# The value of the one series of $name whose labels include %want (undef
# if none; a failure if several).
sub value
{
	my ($s, $name, %want) = @_;
	my @hits = grep {
		my $l = $_->[0];
		!grep { !defined $l->{$_} || $l->{$_} ne $want{$_} } keys %want
	} @{ $s->{m}{$name} // [] };
	fail("$name: " . scalar(@hits) . ' series match') if @hits > 1;
	return @hits ? $hits[0][1] : undef;
}

# Poll until the slow run's rows done are exported and above 0.
my $t0 = time;
my $s;
while (time - $t0 < 30)
{
	$s = scrape();
	last
	  if $s
	  && (value($s, 'chunkbatch_run_rows_done', run_id => $slow) // 0) > 0;
	usleep(200_000);
}
ok($s, sprintf('/metrics answered (%.1f s after the exporter started)', time - $t0))
  or diag(slurp_file($exporter_log));
$s //= { m => {}, help => {}, type => {}, lines => [] };
diag("chunkbatch lines of /metrics:\n" . join("\n", @{ $s->{lines} }));

is(value($s, 'pg_exporter_user_queries_load_error', filename => $queries),
	'0', 'the queries file loaded without error');
is(value($s, 'pg_exporter_last_scrape_error'), '0', 'the scrape had no error')
  or diag(slurp_file($exporter_log));

my @names = qw(
  chunkbatch_queued_runs chunkbatch_queued_oldest_age_seconds
  chunkbatch_active_runs
  chunkbatch_run_rows_done chunkbatch_run_chunks_done
  chunkbatch_run_rows_per_second chunkbatch_run_batch_size
  chunkbatch_run_percent_done
  chunkbatch_finished_runs
  chunkbatch_failures_failed_runs chunkbatch_failures_failed_last_hour
  chunkbatch_failures_last_failure_timestamp_seconds
  chunkbatch_group_waits_runs chunkbatch_group_waits_longest_seconds
  chunkbatch_lock_group_held chunkbatch_lock_group_pending_runs
  chunkbatch_lock_group_longest_pending_seconds
  chunkbatch_throttle_throttled_runs
  chunkbatch_throttle_longest_throttled_seconds chunkbatch_throttle_pause_all
  chunkbatch_dead_letters_keys chunkbatch_dead_letters_runs);
my @missing = grep {
	!$s->{m}{$_}
	  || ($s->{type}{$_} // '') ne 'gauge'
	  || ($s->{help}{$_} // 'Unknown metric') =~ /^Unknown metric/
	  || grep { ($_->[0]{datname} // '') ne 'postgres' } @{ $s->{m}{$_} }
} @names;
is_deeply(\@missing, [],
	'every chunkbatch metric is a described gauge with datname postgres');
my %known = map { $_ => 1 } @names;
is_deeply([ grep { !$known{$_} } sort grep { /^chunkbatch_/ } keys %{ $s->{m} } ],
	[], 'and there is no other chunkbatch metric');

# Queue and active runs.
is(value($s, 'chunkbatch_queued_runs'), '1', 'queued runs: 1');
my $age = value($s, 'chunkbatch_queued_oldest_age_seconds') // -1;
ok($age > 0 && $age < 120, "the oldest queued run is $age s old");
my %active = map { $_ => value($s, 'chunkbatch_active_runs', state => $_) }
  qw(running throttled waiting interrupted paused);
is_deeply(\%active,
	{ running => 1, throttled => 1, waiting => 1, interrupted => 0, paused => 0 },
	'active runs by state: 1 running, 1 throttled, 1 waiting');

# Per-run metrics: only for the running and the throttled run.
is_deeply(
	[ sort { $a <=> $b } map { $_->[0]{run_id} } @{ $s->{m}{chunkbatch_run_rows_done} // [] } ],
	[ sort { $a <=> $b } ($slow, $held) ],
	'per-run metrics exist for the running and the throttled run only');
is(value($s, 'chunkbatch_run_rows_done', run_id => $held, job => 'held'),
	'0', 'the throttled run has done 0 rows');
my $rows1 = value($s, 'chunkbatch_run_rows_done', run_id => $slow, job => 'slow') // 0;
ok($rows1 > 0, "the slow run has done $rows1 rows");
my $rate = value($s, 'chunkbatch_run_rows_per_second', run_id => $slow) // 0;
ok($rate > 0 && $rate < 1000, "at $rate rows/s");
is(value($s, 'chunkbatch_run_batch_size', run_id => $slow), '10', 'in batches of 10');
ok((value($s, 'chunkbatch_run_chunks_done', run_id => $slow) // 0) >= 1,
	'it has committed chunks');
my $pct = value($s, 'chunkbatch_run_percent_done', run_id => $slow) // 'NaN';
ok($pct ne 'NaN' && $pct > 0 && $pct < 100, "and is $pct % done");

# History.
my %finished = map { $_ => value($s, 'chunkbatch_finished_runs', state => $_) }
  qw(succeeded failed cancelled skipped stopped);
is_deeply(\%finished,
	{ succeeded => 1, failed => 1, cancelled => 0, skipped => 0, stopped => 0 },
	'finished runs: 1 succeeded, 1 failed');
is(value($s, 'chunkbatch_failures_failed_runs'), '1', 'failed runs: 1');
is(value($s, 'chunkbatch_failures_failed_last_hour'), '1', 'in the last hour: 1');
my $failed_at = $node->sql(
	"SELECT extract(epoch FROM finished_at) FROM chunkbatch.runs WHERE run_id = $failed");
my $last_failure = value($s, 'chunkbatch_failures_last_failure_timestamp_seconds') // 0;
ok(abs($last_failure - $failed_at) < 0.01,
	"the last failure's timestamp is the failed run's finished_at ($last_failure)");

# Groups, throttling, dead letters.
is(value($s, 'chunkbatch_group_waits_runs'), '1', 'runs waiting for their group: 1');
my $wait = value($s, 'chunkbatch_group_waits_longest_seconds') // 0;
ok($wait > 0 && $wait < 120, "waiting for $wait s");
is(value($s, 'chunkbatch_lock_group_held', lock_group => 'items'),
	'1', 'group items is held');
is(value($s, 'chunkbatch_lock_group_pending_runs', lock_group => 'items'),
	'1', 'with 1 pending run');
ok((value($s, 'chunkbatch_lock_group_longest_pending_seconds', lock_group => 'items') // 0) > 0,
	'which has been waiting for more than 0 s');
is(value($s, 'chunkbatch_throttle_throttled_runs'), '1', 'throttled runs: 1');
ok((value($s, 'chunkbatch_throttle_longest_throttled_seconds') // -1) >= 0,
	'throttled for 0 s or more');
is(value($s, 'chunkbatch_throttle_pause_all'), '0', 'pause_all is off');
is(value($s, 'chunkbatch_dead_letters_keys'), '2', 'dead letters: 2 keys');
is(value($s, 'chunkbatch_dead_letters_runs'), '1', 'in 1 run');

# The per-run metrics move from one scrape to the next.
my $rows2;
$t0 = time;
while (time - $t0 < 10)
{
	usleep(500_000);
	my $s2 = scrape() or next;
	$rows2 = value($s2, 'chunkbatch_run_rows_done', run_id => $slow) // 0;
	last if $rows2 > $rows1;
}
ok(defined $rows2 && $rows2 > $rows1,
	"a later scrape shows more rows done ($rows1, then " . ($rows2 // 'none') . ')');

$exporter->signal('TERM');
$exporter->finish;
$exporter = undef;
$node->sql("SELECT chunkbatch.cancel($slow), chunkbatch.cancel($held)");
$node->stop;
done_testing();
