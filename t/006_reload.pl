# Copyright (c) 2026, chunkbatch developers
#
# Configuration reload (SIGHUP): the launcher and the schedulers survive it
# and apply the new chunkbatch settings.
#
# With restart_after_crash = off a crashing background worker shuts the
# server down, so every wait here also watches whether the server is still
# up, to fail at once instead of at the end of the poll timeout.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create('reload',
	conf => ['chunkbatch.scheduler_idle_exit = 30'],
	extension_in => ['postgres']);

sub server_up
{
	return -f $node->data_dir . '/postmaster.pid';
}

# The output of a query, or undef if it failed.
sub query
{
	my ($sql) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', $sql);
	return $ret == 0 ? $stdout : undef;
}

# Poll a query until it returns $expected, for at most $seconds; give up at
# once if the server went down.
sub poll_up
{
	my ($sql, $expected, $seconds) = @_;
	for (my $i = 0; $i < 10 * $seconds; $i++)
	{
		my $out = query($sql);
		return 1 if defined $out && $out eq $expected;
		return 0 unless server_up();
		usleep(100_000);
	}
	return 0;
}

$node->safe_psql(
	'postgres', q{
CREATE TABLE items (id bigint PRIMARY KEY);
INSERT INTO items SELECT generate_series(1, 1000);
SELECT chunkbatch.create_job(
  job_name => 'purge',
  chunk_sql => 'DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT $1)',
  batch_size => 100);
});

my $launcher_sql = q{SELECT pid FROM pg_stat_activity
                      WHERE backend_type = 'chunkbatch launcher'};
my $launcher_pid = $node->safe_psql('postgres', $launcher_sql);
like($launcher_pid, qr/^\d+$/, 'the launcher runs');

# A run, so that this database has a scheduler when the reload comes.
my $run = $node->queue_run('purge');
is($node->final_state($run, '30s'),
	'succeeded', 'a run before the reload succeeds');
my $sched_sql = q{SELECT count(*) FROM pg_stat_activity
                   WHERE backend_type = 'chunkbatch scheduler'
                     AND datname = 'postgres'};
is($node->safe_psql('postgres', $sched_sql),
	'1', 'the database has an idle scheduler (scheduler_idle_exit = 30 s)');

# Reload with a new scheduler_idle_exit.
my $log_offset = -s $node->logfile;
$node->append_conf('postgresql.conf', 'chunkbatch.scheduler_idle_exit = 0');
$node->reload;

ok( poll_up(
		q{SELECT setting FROM pg_settings
           WHERE name = 'chunkbatch.scheduler_idle_exit'}, '0', 30),
	'the new setting is in effect');

# The idle scheduler applies the new setting and exits, well before the 30 s
# of the old one.
ok(poll_up($sched_sql, '0', 10),
	'the idle scheduler exits after the reload (scheduler_idle_exit = 0)');

# The launcher is still the same process and still serves the database.
$node->safe_psql('postgres', 'INSERT INTO items SELECT generate_series(1, 500)')
  if server_up();
$run = query(q{SELECT chunkbatch.run('purge')});
ok(defined $run && $run =~ /^\d+$/, 'a run can be queued after the reload');
is(query("SELECT chunkbatch.wait($run, '15s')"),
	'succeeded', 'a run queued after the reload is served')
  if defined $run && $run =~ /^\d+$/;
is(query($launcher_sql), $launcher_pid,
	'the launcher survived the reload (same process)');
ok(!$node->log_contains(qr/terminated by signal/, $log_offset),
	'no chunkbatch process crashed')
  or diag(
	join('',
		grep { /terminated by signal|chunkbatch/ && !/statement:/ }
		  split(/^/m, slurp_file($node->logfile, $log_offset))));

ok($node->stop('fast', fail_ok => 1), 'the server is still up and stops cleanly');
done_testing();
