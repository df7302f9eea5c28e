# Copyright (c) 2026, chunkbatch developers
#
# The 1.0 -> 1.1 update path.
#
# - a database whose chunkbatch objects are still at 1.0 (installed from the
#   frozen chunkbatch--1.0.sql) is refused by the 1.1 library with a clear
#   error and hint, and its scheduler leaves its runs alone (after a
#   restart, a queued run stays queued);
# - ALTER EXTENSION chunkbatch UPDATE gives exactly the catalog of a fresh
#   1.1 install: pg_dump --schema-only --binary-upgrade (which lists every
#   member object, with grants, policies and triggers) of both databases
#   is the same once OIDs are masked, and so are the extension's dumped
#   configuration tables;
# - the jobs and runs written under 1.0 keep working: the queued run
#   executes by itself once the update commits, the paused run resumes from
#   its checkpoint and the failed run is resumed after its cause is fixed,
#   every row exactly once; history (a succeeded run) is kept; owners come
#   through as names and OIDs.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create('upgrade');

$node->safe_psql('postgres', 'CREATE DATABASE upg');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');

# The 1.0 objects, and what 1.0 would have written: three jobs of role app
# over tables of 100 rows with a per-row counter, and four runs.
$node->safe_psql(
	'upg', q{
CREATE EXTENSION chunkbatch VERSION '1.0';
GRANT CREATE ON SCHEMA public TO app;
CREATE TABLE q (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
CREATE TABLE p (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
CREATE TABLE f (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
CREATE TABLE poison (id bigint);
INSERT INTO q SELECT g, 0 FROM generate_series(1, 100) g;
-- p: the paused run had done rows 1..50 (its checkpoint says so)
INSERT INTO p SELECT g, CASE WHEN g <= 50 THEN 1 ELSE 0 END FROM generate_series(1, 100) g;
-- f: the failed run had done rows 1..30, then hit the poison row 35
INSERT INTO f SELECT g, CASE WHEN g <= 30 THEN 1 ELSE 0 END FROM generate_series(1, 100) g;
INSERT INTO poison VALUES (35);
ALTER TABLE q OWNER TO app;
ALTER TABLE p OWNER TO app;
ALTER TABLE f OWNER TO app;
ALTER TABLE poison OWNER TO app;
CREATE FUNCTION touch_f(n int, after bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM poison x
              WHERE x.id IN (SELECT id FROM f WHERE after IS NULL OR id > after
                              ORDER BY id LIMIT n)) THEN
    RAISE EXCEPTION 'poison row in the next chunk' USING ERRCODE = '22012';
  END IF;
  RETURN QUERY UPDATE f SET counter = counter + 1
     WHERE id IN (SELECT id FROM f WHERE after IS NULL OR id > after
                   ORDER BY id LIMIT n)
    RETURNING f.id;
END
$$;
ALTER FUNCTION touch_f(int, bigint) OWNER TO app;

INSERT INTO chunkbatch.jobs (job_name, owner, chunk_sql, cursor_type, batch_size,
                             lock_group, search_path)
VALUES
 ('touch_q', 'app',
  $$UPDATE q SET counter = counter + 1 WHERE id IN (SELECT id FROM q WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1) RETURNING id$$,
  'bigint', 10, 'touch_q', '"$user", public'),
 ('touch_p', 'app',
  $$UPDATE p SET counter = counter + 1 WHERE id IN (SELECT id FROM p WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1) RETURNING id$$,
  'bigint', 10, 'touch_p', '"$user", public'),
 ('touch_f', 'app', 'SELECT * FROM touch_f($1, $2)',
  'bigint', 10, 'touch_f', '"$user", public');

INSERT INTO chunkbatch.runs (job_id, job_name, owner, lock_group, state, queued_by,
                             batch_size, cursor, rows_done, chunks_done,
                             started_at, finished_at, sqlstate, error)
SELECT j.job_id, j.job_name, j.owner, j.lock_group, r.state, 'app', 10,
       r.cursor, r.rows_done, r.chunks_done, r.started_at, r.finished_at,
       r.sqlstate, r.error
  FROM chunkbatch.jobs j
  JOIN (VALUES
        ('touch_q', 'succeeded', NULL, 0, 1, now() - interval '1 day',
         now() - interval '1 day', NULL, NULL),
        ('touch_q', 'queued', NULL, 0, 0, NULL, NULL, NULL, NULL),
        ('touch_p', 'paused', '50', 50, 5, now() - interval '1 hour', NULL, NULL, NULL),
        ('touch_f', 'failed', '30', 30, 3, now() - interval '1 hour', now(), '22012',
         'poison row in the next chunk'))
       AS r(job_name, state, cursor, rows_done, chunks_done, started_at,
            finished_at, sqlstate, error)
    ON r.job_name = j.job_name
 ORDER BY r.state = 'succeeded' DESC, j.job_id;
});

my ($sqlstate, $stderr) =
  $node->sql_error(q{SELECT chunkbatch.run('touch_q')}, db => 'upg');
like(
	$stderr,
	qr/55000: chunkbatch in database "upg" is at version 1\.0, but the loaded library needs version 1\.1/,
	'the 1.1 library refuses to work on a 1.0 schema (55000)');
like($stderr, qr/HINT:\s+Run ALTER EXTENSION chunkbatch UPDATE/,
	'... with a hint to update');

# After a restart the launcher looks at every database once; the scheduler
# of upg finds 1.0 and leaves the queued run alone.
my $log_offset = -s $node->logfile;
$node->restart;
ok( $node->wait_for_log(
		qr/chunkbatch in database "upg" is at version 1\.0; its runs wait for ALTER EXTENSION chunkbatch UPDATE/,
		$log_offset),
	'the scheduler logs that the database waits for the update');
sleep 2;
is( $node->safe_psql(
		'upg',
		q{SELECT string_agg(state, ',' ORDER BY run_id) FROM chunkbatch.runs}),
	'succeeded,queued,paused,failed',
	'nothing was executed or changed while the schema was at 1.0');

my %run_of = map { split /\|/ } split /\n/, $node->safe_psql('upg',
	q{SELECT job_name, run_id FROM chunkbatch.runs WHERE state <> 'succeeded'});
$node->safe_psql('upg', 'ALTER EXTENSION chunkbatch UPDATE');
$node->safe_psql('fresh', 'CREATE EXTENSION chunkbatch');
is($node->safe_psql('upg',
		q{SELECT extversion FROM pg_extension WHERE extname = 'chunkbatch'}),
	'1.1', 'the update reached 1.1');

# The catalog: every member object, with its grants, policies, triggers
# and (for tables) columns in order; the users' objects (schema public)
# are left out.  OIDs, relfilenodes, xids and sequence positions differ
# between any two databases and are masked.
sub catalog_dump
{
	my ($db) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'pg_dump', '--schema-only', '--binary-upgrade', '--exclude-schema=public',
			'-h', $node->host, '-p', $node->port, '-d', $db
		],
		'>', \$out, '2>', \$err) or die "pg_dump $db failed: $err";
	my @lines = grep {
		!/binary_upgrade_set_next_|^\\(un)?restrict|relfrozenxid|^WHERE oid = |pg_catalog\.setval\(/
	} split /\n/, $out;
	s/'\{[0-9,]+\}'/'{OIDS}'/g for @lines;
	return join("\n", @lines);
}
my $upg_dump = catalog_dump('upg');
my $fresh_dump = catalog_dump('fresh');
ok(length($fresh_dump) > 10000 && $fresh_dump =~ /CREATE TABLE chunkbatch\.runs/,
	'the binary-upgrade dump lists the extension\'s member objects');
my %in_fresh = map { $_ => 1 } split /\n/, $fresh_dump;
my %in_upg = map { $_ => 1 } split /\n/, $upg_dump;
ok($upg_dump eq $fresh_dump,
	'an updated 1.0 database has exactly the catalog of a fresh 1.1 install')
  or diag("only after the update:\n"
	  . join("\n", grep { !$in_fresh{$_} } split /\n/, $upg_dump)
	  . "\nonly in a fresh install:\n"
	  . join("\n", grep { !$in_upg{$_} } split /\n/, $fresh_dump));
my $config = q{SELECT array(SELECT c::regclass::text FROM unnest(extconfig) c)::text
                      || ' ' || extcondition::text
                 FROM pg_extension WHERE extname = 'chunkbatch'};
is($node->safe_psql('upg', $config), $node->safe_psql('fresh', $config),
	'the same configuration tables and sequences are dumped');
like(
	$node->safe_psql('fresh', $config),
	qr/chunkbatch\.jobs,chunkbatch\.jobs_job_id_seq,chunkbatch\.runs,chunkbatch\.runs_run_id_seq,chunkbatch\.dead_letters/,
	'jobs, runs, dead letters and their sequences are dumped');

# The old runs keep working.
my $q_run = $run_of{touch_q};
ok($node->poll_final_state($q_run, job => 'touch_q', db => 'upg'),
	'the run queued under 1.0 executes by itself once the update commits');
is( $node->safe_psql(
		'upg',
		"SELECT state, rows_done, owner, owner_oid = 'app'::regrole, queued_by
           FROM chunkbatch.runs WHERE run_id = $q_run"),
	'succeeded|100|app|t|app',
	'... and succeeds, its owner kept as a name and an OID');
is($node->safe_psql('upg', 'SELECT count(*) FILTER (WHERE counter = 1) FROM q'),
	'100', '... processing every row exactly once');

my $p_run = $run_of{touch_p};
$node->safe_psql('upg', "SET ROLE app; SELECT chunkbatch.resume($p_run)");
ok($node->poll_final_state($p_run, job => 'touch_p', db => 'upg'),
	'the run paused under 1.0 resumes');
is( $node->safe_psql(
		'upg', "SELECT state, rows_done FROM chunkbatch.runs WHERE run_id = $p_run"),
	'succeeded|100', '... from its checkpoint, and succeeds');
is($node->safe_psql('upg', 'SELECT count(*) FILTER (WHERE counter = 1) FROM p'),
	'100', '... every row exactly once');

my $f_run = $run_of{touch_f};
$node->safe_psql('upg', 'DELETE FROM poison');
$node->safe_psql('upg', "SET ROLE app; SELECT chunkbatch.resume($f_run)");
ok($node->poll_final_state($f_run, job => 'touch_f', db => 'upg'),
	'the run failed under 1.0 is resumed after its cause is fixed');
is( $node->safe_psql(
		'upg',
		"SELECT state, rows_done, sqlstate IS NULL FROM chunkbatch.runs WHERE run_id = $f_run"),
	'succeeded|100|t', '... and succeeds from its checkpoint');
is($node->safe_psql('upg', 'SELECT count(*) FILTER (WHERE counter = 1) FROM f'),
	'100', '... every row exactly once');

# New jobs and runs work in the updated database.
$node->safe_psql(
	'upg', q{
SET ROLE app;
SELECT chunkbatch.create_job('after_update', 'SELECT 1 WHERE $1 < 0');
});
is($node->safe_psql('upg',
		q{SET ROLE app; SELECT chunkbatch.run('after_update', wait => true) > 0}),
	't', 'a job created after the update runs');
is( $node->safe_psql(
		'upg',
		q{SELECT count(*) FROM chunkbatch.runs WHERE job_name = 'touch_q' AND state = 'succeeded'}),
	'2', 'the history written under 1.0 is kept');

$node->stop;
done_testing();
