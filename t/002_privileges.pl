# Copyright (c) 2026, chunkbatch developers
#
# Privileges: a job runs with the privileges of its owner, never more.
#
# - a job owned by a LOGIN non-superuser runs its chunks as that role
#   (current_user and session_user are the owner);
# - the owner cannot make a job act on a table it has no rights on: refused at
#   create_job (42501), and with validate => false the run fails with 42501,
#   whoever queued it, and nothing changes in that table;
# - another role cannot see the job's SQL, run, cancel, alter or drop it (42501);
# - a NOLOGIN role cannot create a job (28000, with a hint);
# - a superuser sees and controls everything.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create('privileges');

my $db = 'postgres';

$node->safe_psql(
	$db, q{
CREATE EXTENSION chunkbatch;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE carol LOGIN IN ROLE alice;
CREATE ROLE nobody NOLOGIN;
GRANT CREATE ON SCHEMA public TO alice;

-- alice's own data
CREATE TABLE alice_items (id bigint PRIMARY KEY);
INSERT INTO alice_items SELECT generate_series(1, 500);
CREATE TABLE who_log (cur name, sess name, n bigint);
ALTER TABLE alice_items OWNER TO alice;
ALTER TABLE who_log OWNER TO alice;

-- a table alice has no rights on
CREATE TABLE secret (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO secret SELECT g, md5(g::text) FROM generate_series(1, 300) g;
REVOKE ALL ON secret FROM PUBLIC;

-- slow chunks, for runs that must still be active
CREATE TABLE alice_slow (id bigint PRIMARY KEY);
INSERT INTO alice_slow SELECT generate_series(1, 100);
ALTER TABLE alice_slow OWNER TO alice;
});

my $secret_before =
  $node->safe_psql($db, q{SELECT count(*), md5(string_agg(payload, ',' ORDER BY id)) FROM secret});

# ---------------------------------------------------------------------------
# 1. The chunks of alice's job run as alice.
# ---------------------------------------------------------------------------
$node->sql(q{
SELECT chunkbatch.create_job(
  job_name => 'alice_purge',
  chunk_sql => $$WITH d AS (DELETE FROM alice_items WHERE id IN
                   (SELECT id FROM alice_items LIMIT $1) RETURNING id),
                  l AS (INSERT INTO who_log SELECT current_user, session_user, count(*) FROM d)
                SELECT id FROM d$$,
  batch_size => 100);
}, role => 'alice');
is($node->safe_psql($db,
		q{SELECT owner FROM chunkbatch.jobs WHERE job_name = 'alice_purge'}),
	'alice', 'the job is owned by its creator');

my $run = $node->queue_run('alice_purge', role => 'alice');
is($node->final_state($run, '60s', role => 'alice'),
	'succeeded', 'alice\'s run succeeds');
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FILTER (WHERE n > 0),
                 count(*) FILTER (WHERE cur IS DISTINCT FROM 'alice'
                                     OR sess IS DISTINCT FROM 'alice')
            FROM who_log}),
	'5|0',
	'every chunk ran with current_user = session_user = alice');
is($node->safe_psql($db, q{SELECT count(*) FROM alice_items}),
	'0', 'alice\'s job did its work');

# ---------------------------------------------------------------------------
# 2. alice cannot make a job act on a table she has no rights on.
# ---------------------------------------------------------------------------
my $steal_sql = q{$$DELETE FROM secret WHERE id IN (SELECT id FROM secret LIMIT $1)$$};
my ($sqlstate, $stderr) = $node->sql_error(
	"SELECT chunkbatch.create_job('alice_steal', $steal_sql, batch_size => 10);",
	role => 'alice');
is($sqlstate, '42501', 'create_job refuses chunk SQL on a table the owner cannot access')
  or diag($stderr);
is($node->safe_psql($db,
		q{SELECT count(*) FROM chunkbatch.jobs WHERE job_name = 'alice_steal'}),
	'0', 'the refused job was not created');

$node->sql(
	"SELECT chunkbatch.create_job('alice_steal', $steal_sql, batch_size => 10, validate => false);",
	role => 'alice');
$run = $node->queue_run('alice_steal', role => 'alice');
is($node->final_state($run, '60s', role => 'alice'),
	'failed', 'an unvalidated job on a forbidden table fails at run time');
is($node->safe_psql($db,
		"SELECT sqlstate, rows_done, error LIKE '%secret%'
           FROM chunkbatch.runs WHERE run_id = $run"),
	'42501|0|t', 'the run failed with SQLSTATE 42501 on the forbidden table');

# The owner waiting for it gets the run's error.
($sqlstate, $stderr) =
  $node->sql_error(q{SELECT chunkbatch.run('alice_steal', wait => true);},
	role => 'alice');
is($sqlstate, '42501', 'run(wait => true) raises the run\'s SQLSTATE 42501 for the owner')
  or diag($stderr);
like($stderr, qr/run \d+ of job "alice_steal" failed/,
	'the error is the failure of the run');

# A superuser queueing alice's job does not lend it any privilege.
$run = $node->queue_run('alice_steal');
is($node->final_state($run, '60s'),
	'failed', 'alice\'s job queued by a superuser still fails');
is($node->safe_psql($db,
		"SELECT sqlstate, rows_done, error LIKE '%secret%'
           FROM chunkbatch.runs WHERE run_id = $run"),
	'42501|0|t', 'with SQLSTATE 42501: it ran with alice\'s privileges');
is( $node->safe_psql(
		$db, q{SELECT count(*), md5(string_agg(payload, ',' ORDER BY id)) FROM secret}),
	$secret_before,
	'nothing changed in the forbidden table');

# ---------------------------------------------------------------------------
# 3. bob cannot see, run, cancel, alter or drop alice's jobs.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE FUNCTION alice_slow_chunk(n int, after_id bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(0.3);
  RETURN QUERY SELECT s.id FROM alice_slow s
                WHERE after_id IS NULL OR s.id > after_id
                ORDER BY s.id LIMIT n;
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'alice_slow',
  chunk_sql => 'SELECT * FROM alice_slow_chunk($1, $2)',
  batch_size => 1,
  cursor_type => 'bigint');
}, role => 'alice');
my $slow_run = $node->queue_run('alice_slow', role => 'alice');
ok( $node->poll_run($slow_run, "state = 'running'"),
	'alice\'s slow run is running');

is($node->sql(q{SELECT count(*) FROM chunkbatch.jobs}, role => 'bob'),
	'0', 'bob sees no job');
is( $node->sql(
		q{SELECT count(*) FROM chunkbatch.jobs WHERE chunk_sql LIKE '%alice%'},
		role => 'bob'),
	'0', 'bob cannot read the SQL of alice\'s jobs');
is($node->sql(q{SELECT count(*) FROM chunkbatch.runs}, role => 'bob'),
	'0', 'bob sees none of alice\'s runs');
is($node->sql(q{SELECT count(*) FROM chunkbatch.status_detail}, role => 'bob'),
	'0', 'bob sees none of alice\'s runs in chunkbatch.status_detail');

($sqlstate, $stderr) =
  $node->sql_error(q{SELECT chunkbatch.run('alice_purge');}, role => 'bob');
is($sqlstate, '42501', 'bob cannot run alice\'s job') or diag($stderr);
is($node->safe_psql($db,
		q{SELECT count(*) FROM chunkbatch.runs WHERE queued_by = 'bob'}),
	'0', 'bob queued no run');

($sqlstate, $stderr) =
  $node->sql_error("SELECT chunkbatch.run('alice_purge', wait => true);",
	role => 'bob');
is($sqlstate, '42501', 'bob cannot run alice\'s job with wait => true')
  or diag($stderr);

($sqlstate, $stderr) =
  $node->sql_error("SELECT chunkbatch.cancel($slow_run);", role => 'bob');
is($sqlstate, '42501', 'bob cannot cancel alice\'s run') or diag($stderr);

($sqlstate, $stderr) =
  $node->sql_error(q{SELECT chunkbatch.alter_job('alice_purge', batch_size => 1);},
	role => 'bob');
is($sqlstate, '42501', 'bob cannot alter alice\'s job') or diag($stderr);

($sqlstate, $stderr) =
  $node->sql_error(q{SELECT chunkbatch.drop_job('alice_purge');}, role => 'bob');
is($sqlstate, '42501', 'bob cannot drop alice\'s job') or diag($stderr);

is( $node->safe_psql(
		$db,
		"SELECT (SELECT batch_size FROM chunkbatch.jobs WHERE job_name = 'alice_purge'),
                (SELECT state FROM chunkbatch.runs WHERE run_id = $slow_run)"),
	'100|running',
	'alice\'s job and run are untouched by bob');

# carol is a member of alice: she may see alice's jobs.
is( $node->sql(
		q{SELECT count(*) FROM chunkbatch.jobs
           WHERE job_name IN ('alice_purge', 'alice_steal', 'alice_slow')
             AND chunk_sql <> ''},
		role => 'carol'),
	'3',
	'a member of the owner role sees the owner\'s jobs');

# ---------------------------------------------------------------------------
# 4. A NOLOGIN role cannot own a job.
# ---------------------------------------------------------------------------
($sqlstate, $stderr) = $node->sql_error(q{
SET ROLE nobody;
SELECT chunkbatch.create_job('nobody_job', 'SELECT 1 WHERE $1 > 0 LIMIT 0');
});
is($sqlstate, '28000', 'a NOLOGIN role cannot create a job') or diag($stderr);
like($stderr, qr/HINT:.*LOGIN/, 'the error has a hint about LOGIN');
is($node->safe_psql($db,
		q{SELECT count(*) FROM chunkbatch.jobs WHERE job_name = 'nobody_job'}),
	'0', 'no job was created for the NOLOGIN role');

# ---------------------------------------------------------------------------
# 5. A superuser sees and controls everything.
# ---------------------------------------------------------------------------
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FROM chunkbatch.jobs
           WHERE owner = 'alice' AND chunk_sql <> ''}),
	'3',
	'the superuser sees alice\'s jobs and their SQL');
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FROM chunkbatch.runs WHERE owner = 'alice'}),
	'5',
	'the superuser sees all of alice\'s runs');
is($node->safe_psql($db,
		"SELECT count(*) FROM chunkbatch.status_detail WHERE run_id = $slow_run"),
	'1', 'the superuser sees alice\'s active run in chunkbatch.status_detail');
is($node->safe_psql($db, "SELECT chunkbatch.cancel($slow_run)"),
	't', 'the superuser can cancel alice\'s run');
is($node->final_state($slow_run, '60s'),
	'cancelled', 'alice\'s run is cancelled');

$node->stop;
done_testing();
