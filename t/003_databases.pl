# Copyright (c) 2026, chunkbatch developers
#
# One launcher serves every database of the cluster.
#
# - runs of two databases execute at the same time, each database with its
#   own scheduler;
# - a database created after the server started gets its runs served: run()
#   wakes the launcher (its periodic probe of all databases is far slower
#   than the timeout used here), also with wait => true;
# - so does a database whose scheduler exited when it became idle.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create('databases',
	conf => ['chunkbatch.scheduler_idle_exit = 2']);

# dblink lets one query look at the runs of both databases at once.
$node->safe_psql('postgres', 'CREATE EXTENSION dblink');

# A database with chunkbatch and a slow keyset job named 'slow' over the
# table work: 20 chunks of 5 rows, each chunk sleeping 0.25 s and logging
# when it ran.
sub setup_database
{
	my ($db) = @_;
	$node->create_database($db);
	$node->create_slow_job(
		db => $db,
		job => 'slow',
		table => 'work',
		rows => 100,
		sleep => 0.25,
		batch_size => 5);
	return;
}

setup_database('db1');
setup_database('db2');

my $run1 = $node->queue_run('slow', db => 'db1');
my $run2 = $node->queue_run('slow', db => 'db2');

my $cs1 = $node->connstr('db1');
my $cs2 = $node->connstr('db2');
$cs1 =~ s/'/''/g;
$cs2 =~ s/'/''/g;

# One snapshot of pg_stat_activity (taken once per transaction) and the two
# runs' states, read within a few milliseconds of each other.
ok( $node->poll_query_until(
		'postgres', qq{
SELECT (SELECT count(DISTINCT datname) FROM pg_stat_activity
         WHERE backend_type = 'chunkbatch run worker'
           AND datname IN ('db1', 'db2')) = 2
   AND (SELECT state FROM dblink('$cs1',
          'SELECT state FROM chunkbatch.runs WHERE run_id = $run1')
          AS t(state text)) = 'running'
   AND (SELECT state FROM dblink('$cs2',
          'SELECT state FROM chunkbatch.runs WHERE run_id = $run2')
          AS t(state text)) = 'running'
}),
	'the runs of db1 and db2 are running at the same moment');

ok( $node->poll_query_until(
		'postgres', q{
SELECT count(DISTINCT datname) = 2 FROM pg_stat_activity
 WHERE backend_type = 'chunkbatch scheduler' AND datname IN ('db1', 'db2')
}),
	'a scheduler runs in each of db1 and db2');

is($node->final_state($run1, '60s', db => 'db1'),
	'succeeded', 'the run of db1 succeeds');
is($node->final_state($run2, '60s', db => 'db2'),
	'succeeded', 'the run of db2 succeeds');

foreach my $db ('db1', 'db2')
{
	is( $node->once_count('work', db => $db),
		'100|100',
		"$db: every row processed exactly once");
}

# The chunks of the two runs interleaved in time.
my $span = q{SELECT extract(epoch FROM min(at)) || '|' || extract(epoch FROM max(at))
               FROM chunk_log};
my ($start1, $end1) = split /\|/, $node->safe_psql('db1', $span);
my ($start2, $end2) = split /\|/, $node->safe_psql('db2', $span);
ok( $start1 < $end2 && $start2 < $end1,
	'the chunks of db1 and db2 ran during overlapping periods')
  or diag("db1: $start1 .. $end1, db2: $start2 .. $end2");

# ---------------------------------------------------------------------------
# A database created now, long after the launcher's start-up probe.
# ---------------------------------------------------------------------------
$node->create_database('db3');
$node->safe_psql(
	'db3', q{
CREATE TABLE items (id bigint PRIMARY KEY);
INSERT INTO items SELECT generate_series(1, 1000);
SELECT chunkbatch.create_job(
  job_name => 'purge',
  chunk_sql => 'DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT $1)',
  batch_size => 100);
});
my $run3 = $node->queue_run('purge', db => 'db3');
is($node->final_state($run3, '15s', db => 'db3'),
	'succeeded', 'a run in a database created after start-up is served');
is($node->safe_psql('db3', 'SELECT count(*) FROM items'),
	'0', 'db3: the run did its work');

# run(..., wait => true) as the very first chunkbatch call of a new database:
# the request must reach a scheduler that does not exist yet.
$node->create_database('db4');
$node->safe_psql(
	'db4', q{
CREATE TABLE items (id bigint PRIMARY KEY);
INSERT INTO items SELECT generate_series(1, 1000);
SELECT chunkbatch.create_job(
  job_name => 'purge',
  chunk_sql => 'DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT $1)',
  batch_size => 100);
});
my $timed_out = 0;
my ($ret, $stdout, $stderr) = $node->psql(
	'db4',
	q{SELECT chunkbatch.run('purge', wait => true)},
	timeout => 15,
	timed_out => \$timed_out);
like($stdout // '', qr/^\d+$/,
	'run(wait => true) in a new database returns its run id')
  or diag("ret $ret, timed out: $timed_out, stderr: " . ($stderr // ''));
is($node->safe_psql('db4', 'SELECT count(*) FROM items'),
	'0', 'db4: the run did its work');

# ---------------------------------------------------------------------------
# A database whose scheduler has exited (chunkbatch.scheduler_idle_exit = 2):
# run() must wake the launcher again.
# ---------------------------------------------------------------------------
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE backend_type = 'chunkbatch scheduler' AND datname = 'db1'
}),
	'the idle scheduler of db1 exits');
$node->safe_psql('db1', 'UPDATE work SET counter = 0');
$run1 = $node->queue_run('slow', db => 'db1');
is($node->final_state($run1, '15s', db => 'db1'),
	'succeeded', 'a new run of db1 is served after its scheduler exited');
is( $node->once_count('work', db => 'db1'),
	'100|100',
	'db1: the new run processed every row exactly once');

$node->stop;
done_testing();
