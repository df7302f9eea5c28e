# Copyright (c) 2026, chunkbatch developers
#
# Resumption after a server restart.
#
# - a keyset run restarted (fast shutdown) in the middle resumes by itself
#   from its checkpoint: every row is processed exactly once and the run
#   succeeds, with chunks executed by a worker before and one after the
#   restart;
# - a queued run survives the restart and runs afterwards.
#
# chunkbatch.max_workers = 1, so the second run stays queued while the first
# one runs.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('restart');

# Should the server die (restart_after_crash is off), fail this script
# without making the test framework bail out of the remaining scripts.
END
{
	local $?;
	$node->stop('immediate', fail_ok => 1) if defined $node;
}

$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'chunkbatch'\n"
	  . "chunkbatch.naptime = 1\n"
	  . "chunkbatch.max_workers = 1\n"
	  . "max_worker_processes = 16\n");
$node->start;

my $db = 'postgres';

# 400 rows in 40 chunks of 10, each chunk sleeping 0.15 s and logging the
# process that executed it (in the chunk's own transaction).
$node->safe_psql(
	$db, q{
CREATE EXTENSION chunkbatch;
CREATE TABLE items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO items (id) SELECT generate_series(1, 400);
CREATE TABLE chunk_log (pid int NOT NULL, n bigint NOT NULL);
CREATE FUNCTION slow_chunk(n int, after_id bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
  done bigint;
BEGIN
  PERFORM pg_sleep(0.15);
  RETURN QUERY
    UPDATE items SET counter = counter + 1
     WHERE id IN (SELECT i.id FROM items i
                   WHERE after_id IS NULL OR i.id > after_id
                   ORDER BY i.id LIMIT n)
    RETURNING items.id;
  GET DIAGNOSTICS done = ROW_COUNT;
  INSERT INTO chunk_log VALUES (pg_backend_pid(), done);
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'slow_touch',
  chunk_sql => 'SELECT * FROM slow_chunk($1, $2)',
  batch_size => 10,
  cursor_type => 'bigint');

CREATE TABLE q_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO q_items (id) SELECT generate_series(1, 200);
SELECT chunkbatch.create_job(
  job_name => 'queued_touch',
  chunk_sql => $$UPDATE q_items SET counter = counter + 1
                 WHERE id IN (SELECT id FROM q_items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 50,
  cursor_type => 'bigint');
});

my $slow_run = $node->safe_psql($db, q{SELECT chunkbatch.run('slow_touch')});
ok( $node->poll_query_until(
		$db,
		"SELECT state = 'running' AND chunks_done >= 5
           FROM chunkbatch.runs WHERE run_id = $slow_run"),
	'the slow run is running and has committed some chunks');

my $queued_run =
  $node->safe_psql($db, q{SELECT chunkbatch.run('queued_touch')});

# Both facts in one snapshot, right before the restart.
is( $node->safe_psql(
		$db,
		"SELECT (SELECT state || '|' || (chunks_done BETWEEN 1 AND 39)::text
                   FROM chunkbatch.runs WHERE run_id = $slow_run),
                (SELECT state FROM chunkbatch.runs WHERE run_id = $queued_run)"),
	'running|true|queued',
	'before the restart: the slow run is in the middle, the other one is queued'
);

my $log_offset = -s $node->logfile;
$node->restart;

# From here on nobody acts on the runs: only observe them.
my $final = q{SELECT state IN ('succeeded', 'failed', 'cancelled', 'skipped')
                FROM chunkbatch.runs WHERE run_id = %s};
ok($node->poll_query_until($db, sprintf($final, $slow_run)),
	'the interrupted run reaches a final state by itself');
is( $node->safe_psql(
		$db,
		"SELECT state, rows_done, cursor, sqlstate IS NULL
           FROM chunkbatch.runs WHERE run_id = $slow_run"),
	'succeeded|400|400|t',
	'the interrupted run resumed and succeeded');
ok( $node->log_contains(qr/run $slow_run\b[^\n]*interrupted/, $log_offset),
	'the server log reports the run as interrupted after the restart');
is( $node->safe_psql(
		$db,
		q{SELECT count(*), count(*) FILTER (WHERE counter = 1) FROM items}),
	'400|400',
	'every row was processed exactly once across the restart');
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FILTER (WHERE n > 0), sum(n), count(DISTINCT pid)
            FROM chunk_log}),
	'40|400|2',
	'40 chunks committed once each, by one worker before and one after the restart'
);

ok($node->poll_query_until($db, sprintf($final, $queued_run)),
	'the queued run reaches a final state after the restart');
is( $node->safe_psql(
		$db,
		"SELECT state, rows_done FROM chunkbatch.runs WHERE run_id = $queued_run"),
	'succeeded|200',
	'the queued run survived the restart and succeeded');
is( $node->safe_psql(
		$db,
		q{SELECT count(*), count(*) FILTER (WHERE counter = 1) FROM q_items}),
	'200|200',
	'the queued run processed every row exactly once');

$node->stop;
done_testing();
