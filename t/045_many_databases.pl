# Copyright (c) 2026, chunkbatch developers
#
# More databases than the launcher's 64 database entries.
#
# After a restart the launcher visits every connectable database once; with
# more databases than entries it visits them in turns, as entries free up.
# A run left 'running' by an immediate shutdown in the database created
# last (the one least likely to get an entry first) resumes by itself
# after the restart, and a run queued in it afterwards is served too.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $ndb = 70;
my $node = ChunkbatchNode->create(
	'many_databases',
	max_worker_processes => 24,
	conf => ['fsync = off']);

# Every database has the extension (so each visit is a real one); the last
# one also has a slow keyset job over 100 rows with a per-row counter.
$node->safe_psql('postgres', 'CREATE EXTENSION chunkbatch');
for my $i (1 .. $ndb)
{
	$node->safe_psql('postgres', "CREATE DATABASE db$i TEMPLATE postgres");
}
my $last = "db$ndb";
$node->create_slow_job(
	db => $last,
	job => 'slow',
	table => 'items',
	rows => 100,
	sleep => 0.1,
	batch_size => 5,
	log => 0);

my $run = $node->queue_run('slow', db => $last);
ok( $node->poll_run(
		$run,
		"state = 'running' AND chunks_done >= 2",
		db => $last),
	"the run in $last is running");

my $log_offset = -s $node->logfile;
$node->stop('immediate');
$node->start;

ok( $node->wait_for_log(qr/databases wait for a scheduler visit/, $log_offset),
	'the launcher says some databases wait for a free entry');
ok( $node->poll_run($run, "state = 'succeeded'", db => $last),
	"the interrupted run in $last resumes by itself and succeeds");
is( $node->safe_psql(
		$last,
		'SELECT count(*) FILTER (WHERE counter = 1) FROM items'),
	'100', '... every row exactly once');

$node->safe_psql($last, 'UPDATE items SET counter = 0');
my $run2 = $node->queue_run('slow', db => $last);
is($node->final_state($run2, '60s', db => $last),
	'succeeded', "a new run in $last is served");

$node->stop;
done_testing();
