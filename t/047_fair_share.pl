# Copyright (c) 2026, chunkbatch developers
#
# Workers and the queue are shared fairly between owner roles.
#
# - with chunkbatch.max_workers = 4, five never-ending runs of role A (each
#   in its own group) hold at most 3 workers (max_workers_per_role defaults
#   to max_workers - 1), and a run of role B starts within 2 s, in the same
#   database and in another one;
# - chunkbatch.max_workers_per_role, changed by a reload, lets A use all 4
#   once B's runs are gone;
# - chunkbatch.max_queued_runs_per_role: queuing beyond it fails with 54000
#   and a hint, and nothing already queued is dropped.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = ChunkbatchNode->create('fair_share',
	conf => ['chunkbatch.max_workers = 4'],
	extension_in => [ 'postgres', 'other' ]);
$node->sql(q{CREATE ROLE role_a LOGIN; CREATE ROLE role_b LOGIN});
foreach my $db ('postgres', 'other')
{
	$node->sql(
		q{GRANT CREATE ON SCHEMA public TO role_a, role_b;
SET ROLE role_a;
CREATE FUNCTION forever_chunk(n int) RETURNS int LANGUAGE sql
  AS $$ SELECT 1 FROM pg_sleep(0.05) $$;
SELECT chunkbatch.create_job('a_' || g, 'SELECT forever_chunk($1)',
                             batch_size => 1, sleep_ms => 200, lock_group => 'a_' || g)
  FROM generate_series(1, 5) g;
RESET ROLE;
SET ROLE role_b;
CREATE TABLE b_done (at timestamptz NOT NULL DEFAULT clock_timestamp());
SELECT chunkbatch.create_job('b_job',
  'INSERT INTO b_done SELECT WHERE $1 > 0 AND NOT EXISTS (SELECT 1 FROM b_done)');},
		db => $db);
}

my $running_a = q{SELECT (SELECT count(*) FROM pg_stat_activity
                   WHERE backend_type = 'chunkbatch run worker'
                     AND usename = 'role_a')};

# Five never-ending runs of A.
my @a_runs = map {
	$node->sql("SELECT chunkbatch.run('a_$_')", role => 'role_a')
} 1 .. 5;
ok($node->poll_query_until('postgres', "$running_a = 3"),
	'role A\'s five runs hold 3 of the 4 workers');
sleep 1;
is($node->sql($running_a), '3', '... and no more a second later');
is( $node->sql(
		q{SELECT count(*) FROM chunkbatch.runs WHERE job_name LIKE 'a\_%' AND state = 'queued'}),
	'2', 'the other two stay queued');

foreach my $db ('postgres', 'other')
{
	my $start = time();
	my $b_run = $node->sql(q{SELECT chunkbatch.run('b_job')}, db => $db,
		role => 'role_b');
	my $state = $node->sql("SELECT chunkbatch.wait($b_run, '10s')", db => $db);
	my $secs = time() - $start;
	is($state, 'succeeded', "$db: role B's run succeeds while A's runs go on");
	ok($secs < 2,
		"$db: ... having started within 2 s (" . sprintf('%.2f', $secs) . ' s)');
}

# The limit follows a reload.
$node->append_conf('postgresql.conf', 'chunkbatch.max_workers_per_role = 4');
$node->reload;
ok($node->poll_query_until('postgres', "$running_a = 4"),
	'after chunkbatch.max_workers_per_role = 4 and a reload, A uses all 4 workers');
$node->sql("SELECT chunkbatch.cancel($_)") for @a_runs;
ok($node->poll_query_until('postgres', "$running_a = 0"),
	'cancelled, A\'s runs release their workers');

# The queue.
$node->append_conf('postgresql.conf', 'chunkbatch.max_queued_runs_per_role = 3');
$node->sql('SELECT chunkbatch.pause_all()');
$node->reload;
ok( $node->poll_query_until(
		'postgres',
		q{SELECT setting = '3' FROM pg_settings
           WHERE name = 'chunkbatch.max_queued_runs_per_role'}),
	'chunkbatch.max_queued_runs_per_role = 3 is in effect');
my @queued = map {
	$node->sql("SELECT chunkbatch.run('a_$_')", role => 'role_a')
} 1 .. 3;
my ($sqlstate, $stderr) =
  $node->sql_error(q{SELECT chunkbatch.run('a_4')}, role => 'role_a');
is($sqlstate, '54000', 'a fourth queued run of A is refused with 54000');
like($stderr, qr/HINT:.*max_queued_runs_per_role/, '... with a hint naming the setting');
is( $node->sql(
		"SELECT count(*) FROM chunkbatch.runs WHERE run_id IN (" . join(',', @queued)
		  . ") AND state = 'queued'"),
	'3', 'the three runs already queued are kept');
is($node->sql(q{SELECT chunkbatch.run('b_job') > 0}, role => 'role_b'),
	't', 'role B can still queue a run');
$node->sql('SELECT chunkbatch.resume_all()');
$node->sql("SELECT chunkbatch.cancel($_)") for @queued;

$node->stop;
done_testing();
