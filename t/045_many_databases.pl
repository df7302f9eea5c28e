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

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ndb = 70;
my $node = PostgreSQL::Test::Cluster->new('many_databases');

END
{
	local $?;
	$node->stop('immediate', fail_ok => 1) if defined $node;
}

$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'chunkbatch'\n"
	  . "chunkbatch.naptime = 1\n"
	  . "max_worker_processes = 24\n"
	  . "fsync = off\n");
$node->start;

# Every database has the extension (so each visit is a real one); the last
# one also has a slow keyset job over 100 rows with a per-row counter.
$node->safe_psql('postgres', 'CREATE EXTENSION chunkbatch');
for my $i (1 .. $ndb)
{
	$node->safe_psql('postgres', "CREATE DATABASE db$i TEMPLATE postgres");
}
my $last = "db$ndb";
$node->safe_psql(
	$last, q{
CREATE TABLE items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO items (id) SELECT generate_series(1, 100);
CREATE FUNCTION slow_chunk(n int, after_id bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(0.1);
  RETURN QUERY
    UPDATE items SET counter = counter + 1
     WHERE id IN (SELECT i.id FROM items i
                   WHERE after_id IS NULL OR i.id > after_id
                   ORDER BY i.id LIMIT n)
    RETURNING items.id;
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'slow',
  chunk_sql => 'SELECT * FROM slow_chunk($1, $2)',
  batch_size => 5,
  cursor_type => 'bigint');
});

my $run = $node->safe_psql($last, q{SELECT chunkbatch.run('slow')});
ok( $node->poll_query_until(
		$last,
		"SELECT state = 'running' AND chunks_done >= 2
           FROM chunkbatch.runs WHERE run_id = $run"),
	"the run in $last is running");

my $log_offset = -s $node->logfile;
$node->stop('immediate');
$node->start;

ok( $node->wait_for_log(qr/databases wait for a scheduler visit/, $log_offset),
	'the launcher says some databases wait for a free entry');
ok( $node->poll_query_until(
		$last,
		"SELECT state = 'succeeded' FROM chunkbatch.runs WHERE run_id = $run"),
	"the interrupted run in $last resumes by itself and succeeds");
is( $node->safe_psql(
		$last,
		'SELECT count(*) FILTER (WHERE counter = 1) FROM items'),
	'100', '... every row exactly once');

$node->safe_psql($last, 'UPDATE items SET counter = 0');
my $run2 = $node->safe_psql($last, q{SELECT chunkbatch.run('slow')});
is($node->safe_psql($last, "SELECT chunkbatch.wait($run2, '60s')"),
	'succeeded', "a new run in $last is served");

$node->stop;
done_testing();
