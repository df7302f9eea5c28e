# Copyright (c) 2026, chunkbatch developers
#
# pg_dump and pg_restore of a database that uses chunkbatch.
#
# Source database (node A): a LOGIN role app owns three jobs (a keyset job
# with a succeeded run, a slow keyset job with a run paused in the middle,
# an on_error => 'isolate' job whose succeeded run left one dead letter).
#
# - plain format (pg_dump | psql) into a new database of the same cluster:
#   the restore has no error; jobs (name, SQL, settings, owner app and
#   owner_oid = app's OID), runs and dead letters are identical to the
#   source; create_job works at once and new job and run ids follow the
#   restored ones (the sequences were restored); a new run of a restored
#   job succeeds on the restored data only; the restored paused run stays
#   paused (no chunk anywhere) while the database's scheduler serves other
#   runs;
# - custom format (pg_dump -Fc, pg_restore): the same;
# - resume() of the restored paused run, in both restored databases at the
#   same time (same run id in two databases), finishes it from its
#   checkpoint: every row of each copy processed exactly once, the run now
#   belongs to its database (origin_db), the source is untouched and its
#   own run still paused;
# - restore on another cluster (node B) without the role app, plain format
#   (psql without ON_ERROR_STOP: the only errors are GRANTs to the missing
#   role) and pg_restore --no-owner --no-privileges (no error): the jobs,
#   runs and dead letters are restored with owner 'app' and owner_oid 0;
#   run() fails with SQLSTATE 42704 (role "app" owning the job does not exist)
#   and queues nothing; once CREATE ROLE app LOGIN (and its table
#   privileges) exist, run() succeeds and the job and its restored runs are
#   linked to app's OID;
# - once the role exists, the first use links every restored row of that
#   role: resume() of the restored paused run makes it succeed, its rows
#   processed exactly once, as app; alter_job works on the linked job.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node_a = ChunkbatchNode->create('dump_src');
my $node_b = ChunkbatchNode->create('dump_norole');

my $tmp = PostgreSQL::Test::Utils::tempdir;

# ---------------------------------------------------------------------------
# The source database.
# ---------------------------------------------------------------------------
$node_a->safe_psql('postgres', 'CREATE ROLE app LOGIN');
$node_a->safe_psql('postgres', 'CREATE DATABASE src');
$node_a->safe_psql('postgres', 'GRANT CONNECT ON DATABASE src TO app');
# 200 rows in 20 chunks of 10, each chunk sleeping 0.1 s
$node_a->create_slow_table('slow_items', rows => 200, log => 0, db => 'src');
$node_a->safe_psql(
	'src', q{
CREATE EXTENSION chunkbatch;

CREATE TABLE items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO items (id) SELECT generate_series(1, 300);

-- one poison row among 30
CREATE TABLE pz_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                       poison boolean NOT NULL DEFAULT false,
                       CONSTRAINT not_poison CHECK (NOT poison OR counter = 0));
INSERT INTO pz_items (id) SELECT generate_series(1, 30);
UPDATE pz_items SET poison = true WHERE id = 17;

-- for a job created after the restore
CREATE TABLE scratch (id bigint PRIMARY KEY);
INSERT INTO scratch SELECT generate_series(1, 50);

GRANT SELECT, UPDATE ON items, slow_items, pz_items TO app;
GRANT SELECT, DELETE ON scratch TO app;

SET ROLE app;
SELECT chunkbatch.create_job(
  job_name => 'touch',
  chunk_sql => $$UPDATE items SET counter = counter + 1
                 WHERE id IN (SELECT id FROM items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 100,
  cursor_type => 'bigint');
SELECT chunkbatch.create_job(
  job_name => 'slow',
  chunk_sql => $$SELECT * FROM slow_chunk('slow_items', 0.1, $1, $2, false)$$,
  batch_size => 10,
  cursor_type => 'bigint',
  lock_group => 'slow_group');
SELECT chunkbatch.create_job(
  job_name => 'poison',
  chunk_sql => $$UPDATE pz_items SET counter = counter + 1
                  WHERE id IN (SELECT id FROM pz_items WHERE $2 IS NULL OR id > $2
                                ORDER BY id LIMIT $1)
                 RETURNING id$$,
  batch_size => 10, cursor_type => 'bigint',
  on_error => 'isolate',
  keys_sql => $$SELECT id FROM pz_items WHERE $2 IS NULL OR id > $2
                 ORDER BY id LIMIT $1$$);
RESET ROLE;
});

my $app_oid_a =
  $node_a->safe_psql('src', q{SELECT oid FROM pg_roles WHERE rolname = 'app'});

# A finished run, and a run with a dead letter.
my $touch_run = $node_a->safe_psql('src',
	q{SET ROLE app; SELECT chunkbatch.run('touch')});
is($node_a->final_state($touch_run, '30s', db => 'src'),
	'succeeded', 'source: the run of touch succeeds');
my $pz_run = $node_a->safe_psql('src',
	q{SET ROLE app; SELECT chunkbatch.run('poison')});
is($node_a->final_state($pz_run, '30s', db => 'src'),
	'succeeded', 'source: the run of poison succeeds');
is( $node_a->safe_psql(
		'src',
		"SELECT r.rows_done, r.dead_letters, string_agg(d.key, ',')
           FROM chunkbatch.runs r JOIN chunkbatch.dead_letters d USING (run_id)
          WHERE r.run_id = $pz_run GROUP BY r.rows_done, r.dead_letters"),
	'29|1|17',
	'source: the poison run left key 17 in dead_letters');

# A run paused in the middle, with a checkpoint.
my $paused = $node_a->safe_psql('src',
	q{SET ROLE app; SELECT chunkbatch.run('slow')});
ok( $node_a->poll_query_until(
		'src',
		"SELECT CASE WHEN state = 'running' AND chunks_done >= 3
                     THEN chunkbatch.pause(run_id) ELSE false END
           FROM chunkbatch.runs WHERE run_id = $paused"),
	'source: the slow run has committed a few chunks and is asked to pause');
ok( $node_a->poll_run($paused, "state = 'paused'", db => 'src'),
	'source: the slow run is paused');
my $paused_done = $node_a->safe_psql('src',
	"SELECT rows_done FROM chunkbatch.runs WHERE run_id = $paused");
my $paused_at = $node_a->safe_psql('src',
	"SELECT rows_done || '|' || chunks_done || '|' || cursor
       FROM chunkbatch.runs WHERE run_id = $paused");
ok($paused_done >= 30 && $paused_done <= 190,
	"source: the paused run is in the middle ($paused_at)");
is( $node_a->safe_psql(
		'src',
		q{SELECT count(*) FILTER (WHERE counter = 1), count(*) FILTER (WHERE counter = 0)
            FROM slow_items}),
	"$paused_done|" . (200 - $paused_done),
	'source: the checkpoint matches the committed rows');

# What every restored copy must show.  owner_oid is checked separately.
my $jobs_q = q{
SELECT job_id, job_name, owner, chunk_sql, cursor_type, batch_size, lock_group,
       on_error, keys_sql, search_path, created_at
  FROM chunkbatch.jobs ORDER BY job_id};
my $runs_q = q{
SELECT run_id, job_id, job_name, owner, lock_group, params, state, queued_by,
       queued_at, started_at, finished_at, cursor, rows_done, chunks_done,
       batch_size, dead_letters, sqlstate, origin_db, origin_system
  FROM chunkbatch.runs ORDER BY run_id};
my $dl_q = q{
SELECT run_id, job_name, owner, key, sqlstate, error, at
  FROM chunkbatch.dead_letters ORDER BY run_id, key};
my $src_jobs = $node_a->safe_psql('src', $jobs_q);
my $src_runs = $node_a->safe_psql('src', $runs_q);
my $src_dl   = $node_a->safe_psql('src', $dl_q);
my ($max_job, $max_run) = split /\|/,
  $node_a->safe_psql('src',
	q{SELECT (SELECT max(job_id) FROM chunkbatch.jobs),
             (SELECT max(run_id) FROM chunkbatch.runs)});

# ---------------------------------------------------------------------------
# Dumps.
# ---------------------------------------------------------------------------
my $plain  = "$tmp/src.sql";
my $custom = "$tmp/src.dump";
$node_a->command_ok([ 'pg_dump', '-d', 'src', '-f', $plain ],
	'pg_dump, plain format');
$node_a->command_ok([ 'pg_dump', '-Fc', '-d', 'src', '-f', $custom ],
	'pg_dump, custom format');

# ---------------------------------------------------------------------------
# Checks of a copy restored on node A, where the role app exists.
# ---------------------------------------------------------------------------
sub check_restored_here
{
	my ($db) = @_;

	is($node_a->safe_psql($db, $jobs_q),
		$src_jobs, "$db: the jobs are intact");
	is( $node_a->safe_psql(
			$db,
			"SELECT count(*) FILTER (WHERE owner = 'app' AND owner_oid = $app_oid_a),
                    count(*)
               FROM chunkbatch.jobs"),
		'3|3',
		"$db: the jobs are owned by app, by name and by OID");
	is($node_a->safe_psql($db, $runs_q),
		$src_runs, "$db: the runs are intact");
	is( $node_a->safe_psql(
			$db,
			"SELECT count(*) FILTER (WHERE owner_oid = $app_oid_a), count(*)
               FROM chunkbatch.runs"),
		'3|3',
		"$db: the runs are owned by app's OID");
	is($node_a->safe_psql($db, $dl_q),
		$src_dl, "$db: the dead letters are intact");
	is( $node_a->safe_psql(
			$db,
			"SELECT state, rows_done FROM chunkbatch.runs WHERE run_id = $paused"),
		"paused|$paused_done",
		"$db: the restored run is paused at its checkpoint");

	# New jobs and runs get fresh ids at once.
	my $new_job = $node_a->safe_psql(
		$db, q{
SET ROLE app;
SELECT chunkbatch.create_job(
  job_name => 'fresh',
  chunk_sql => 'DELETE FROM scratch WHERE id IN (SELECT id FROM scratch LIMIT $1)',
  batch_size => 20);
});
	cmp_ok($new_job, '>', $max_job,
		"$db: create_job works at once, with a new job id");
	my $fresh_run = $node_a->safe_psql($db,
		q{SET ROLE app; SELECT chunkbatch.run('fresh')});
	cmp_ok($fresh_run, '>', $max_run, "$db: a new run gets a new run id");
	is($node_a->final_state($fresh_run, '30s', db => $db),
		'succeeded', "$db: the run of the new job succeeds");

	my $touch2 = $node_a->safe_psql($db,
		q{SET ROLE app; SELECT chunkbatch.run('touch')});
	cmp_ok($touch2, '>', $fresh_run, "$db: the next run id follows");
	is($node_a->final_state($touch2, '30s', db => $db),
		'succeeded', "$db: a new run of a restored job succeeds");
	is( $node_a->safe_psql(
			$db,
			"SELECT r.rows_done, r.owner, r.owner_oid = $app_oid_a,
                    (SELECT count(*) FILTER (WHERE counter = 2) FROM items),
                    (SELECT count(*) FROM scratch)
               FROM chunkbatch.runs r WHERE r.run_id = $touch2"),
		'300|app|t|300|0',
		"$db: the new runs worked on the restored rows, once each");

	# The scheduler of this database has served two runs since the
	# restore: the paused run did not move.
	is( $node_a->safe_psql(
			$db,
			"SELECT state, rows_done, worker_pid IS NULL,
                    (SELECT count(*) FILTER (WHERE counter = 1) FROM slow_items),
                    (SELECT count(*) FROM slow_items WHERE counter > 1)
               FROM chunkbatch.runs WHERE run_id = $paused"),
		"paused|$paused_done|t|$paused_done|0",
		"$db: the restored paused run stays paused; no chunk of it ran");
	return;
}

# Plain format.
$node_a->command_ok([ 'createdb', 'dst_plain' ], 'createdb dst_plain');
$node_a->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'dst_plain', '-f',
		$plain ],
	'the plain dump restores without error');
check_restored_here('dst_plain');

# Custom format.
$node_a->command_ok([ 'createdb', 'dst_custom' ], 'createdb dst_custom');
$node_a->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', 'dst_custom', $custom ],
	'the custom dump restores without error');
check_restored_here('dst_custom');

# The source is untouched by the copies' runs.
is( $node_a->safe_psql(
		'src',
		"SELECT (SELECT state || '|' || rows_done FROM chunkbatch.runs
                  WHERE run_id = $paused),
                (SELECT count(*) FILTER (WHERE counter = 1) FROM items),
                (SELECT count(*) FILTER (WHERE counter = 1) FROM slow_items),
                (SELECT count(*) FROM scratch),
                (SELECT count(*) FROM chunkbatch.runs)"),
	"paused|$paused_done|300|$paused_done|50|3",
	'source: untouched, its run still paused');

# Resume the restored run in both copies at once.
$node_a->safe_psql('dst_plain',  "SELECT chunkbatch.resume($paused)");
$node_a->safe_psql('dst_custom', "SELECT chunkbatch.resume($paused)");
foreach my $db ('dst_plain', 'dst_custom')
{
	is($node_a->final_state($paused, '30s', db => $db),
		'succeeded', "$db: the resumed run succeeds");
	is( $node_a->safe_psql(
			$db,
			"SELECT r.rows_done, r.cursor, r.sqlstate IS NULL,
                    r.origin_db = (SELECT oid FROM pg_database WHERE datname = current_database()),
                    (SELECT count(*) FILTER (WHERE counter = 1) FROM slow_items),
                    (SELECT count(*) FROM slow_items WHERE counter <> 1)
               FROM chunkbatch.runs r WHERE r.run_id = $paused"),
		'200|200|t|t|200|0',
		"$db: the resumed run finished every row exactly once and belongs to this database"
	);
}
is( $node_a->safe_psql(
		'src',
		"SELECT (SELECT state || '|' || rows_done FROM chunkbatch.runs
                  WHERE run_id = $paused),
                (SELECT count(*) FILTER (WHERE counter = 1) FROM slow_items)"),
	"paused|$paused_done|$paused_done",
	'source: its run is still paused and its rows untouched');

# ---------------------------------------------------------------------------
# Node B: the role app does not exist.
# ---------------------------------------------------------------------------
$node_b->safe_psql('postgres', 'CREATE DATABASE dstb');
my ($ret, $stdout, $stderr) = $node_b->psql(
	'dstb',
	slurp_file($plain),
	on_error_stop => 0,
	extra_params => ['-q']);
my @errors = grep { /ERROR:/ } split /\n/, $stderr;
my @other  = grep { !/ERROR:\s+role "app" does not exist/ } @errors;
ok(@errors > 0 && @other == 0,
	'dstb: the plain dump restores; the only errors are about the role app')
  or diag($stderr);

$node_b->safe_psql('postgres', 'CREATE DATABASE dstb_noowner');
$node_b->command_ok(
	[
		'pg_restore', '--exit-on-error', '--no-owner', '--no-privileges',
		'-d', 'dstb_noowner', $custom
	],
	'dstb_noowner: pg_restore --no-owner --no-privileges without error');

foreach my $db ('dstb', 'dstb_noowner')
{
	is($node_b->safe_psql($db, $jobs_q),
		$src_jobs, "$db: the jobs are restored");
	is( $node_b->safe_psql(
			$db,
			q{SELECT count(*) FILTER (WHERE owner = 'app' AND owner_oid = 0), count(*)
                FROM chunkbatch.jobs}),
		'3|3',
		"$db: the jobs are owned by 'app' by name, with owner_oid 0");
	is($node_b->safe_psql($db, $runs_q),
		$src_runs, "$db: the runs are restored");
	is( $node_b->safe_psql(
			$db,
			q{SELECT count(*) FILTER (WHERE owner = 'app' AND owner_oid = 0), count(*)
                FROM chunkbatch.runs}),
		'3|3',
		"$db: the runs have owner_oid 0");
	is($node_b->safe_psql($db, $dl_q),
		$src_dl, "$db: the dead letters are restored");

	my ($sqlstate, $err) =
	  $node_b->sql_error(q{SELECT chunkbatch.run('touch')}, db => $db);
	is($sqlstate, '42704', "$db: run() of a job without owner role fails with 42704")
	  or diag($err);
	like(
		$err,
		qr/role "app" owning job "touch" does not exist/,
		"$db: the error names the missing owner role");
	is($node_b->safe_psql($db, 'SELECT count(*) FROM chunkbatch.runs'),
		'3', "$db: the refused run() queued nothing");
}

# The role appears (with the privileges the dump could not grant).
$node_b->safe_psql('postgres', 'CREATE ROLE app LOGIN');
my $app_oid_b = $node_b->safe_psql('postgres',
	q{SELECT oid FROM pg_roles WHERE rolname = 'app'});
foreach my $db ('dstb', 'dstb_noowner')
{
	$node_b->safe_psql(
		$db, q{
GRANT SELECT, UPDATE ON items, slow_items, pz_items TO app;
GRANT SELECT, DELETE ON scratch TO app;
});
	my $r = $node_b->queue_run('touch', db => $db);
	is($node_b->final_state($r, '30s', db => $db),
		'succeeded', "$db: once the role exists, run() succeeds");
	is( $node_b->safe_psql(
			$db,
			"SELECT j.owner_oid = $app_oid_b,
                    (SELECT string_agg((owner_oid = $app_oid_b)::text, ',' ORDER BY run_id)
                       FROM chunkbatch.runs WHERE job_name = 'touch'),
                    (SELECT rows_done FROM chunkbatch.runs WHERE run_id = $r),
                    (SELECT count(*) FILTER (WHERE counter = 2) FROM items)
               FROM chunkbatch.jobs j WHERE j.job_name = 'touch'"),
		't|true,true|300|300',
		"$db: the job and its runs are linked to app's OID; the run did its work");
}

# The paused run of the job 'slow', which no call has used since the role
# appeared: resume() is its next use.
$node_b->safe_psql('dstb', "SELECT chunkbatch.resume($paused)");
is($node_b->final_state($paused, '30s', db => 'dstb'),
	'succeeded',
	'dstb: resume() of a restored paused run succeeds once the owner role exists')
  or diag(
	$node_b->safe_psql('dstb',
		"SELECT state, sqlstate, error, owner_oid FROM chunkbatch.runs WHERE run_id = $paused"
	));

# Once the job is linked (alter_job uses it), its paused (or failed) run
# finishes as app.
foreach my $db ('dstb', 'dstb_noowner')
{
	$node_b->safe_psql($db,
		q{SELECT chunkbatch.alter_job('slow', batch_size => 10)});
	is( $node_b->safe_psql(
			$db,
			"SELECT j.owner_oid = $app_oid_b, r.owner_oid = $app_oid_b
               FROM chunkbatch.jobs j JOIN chunkbatch.runs r USING (job_id)
              WHERE r.run_id = $paused"),
		't|t',
		"$db: alter_job links the job 'slow' and its run to app's OID");
	my $state = $node_b->safe_psql($db,
		"SELECT state FROM chunkbatch.runs WHERE run_id = $paused");
	$node_b->safe_psql($db, "SELECT chunkbatch.resume($paused)")
	  unless $state eq 'succeeded';
	is($node_b->final_state($paused, '30s', db => $db),
		'succeeded', "$db: the restored paused run, resumed, succeeds");
	is( $node_b->safe_psql(
			$db,
			"SELECT r.rows_done, r.owner_oid = $app_oid_b,
                    (SELECT count(*) FILTER (WHERE counter = 1) FROM slow_items),
                    (SELECT count(*) FROM slow_items WHERE counter <> 1)
               FROM chunkbatch.runs r WHERE r.run_id = $paused"),
		'200|t|200|0',
		"$db: the resumed run finished every row exactly once, as app");
}

$node_a->stop;
$node_b->stop;
done_testing();
