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

use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create('restart',
	conf => ['chunkbatch.max_workers = 1'],
	extension_in => ['postgres']);

my $db = 'postgres';

# 400 rows in 40 chunks of 10, each chunk sleeping 0.15 s and logging the
# process that executed it (in the chunk's own transaction), and a job for
# a run that stays queued.
$node->create_slow_job(
	job => 'slow_touch',
	table => 'items',
	rows => 400,
	sleep => 0.15,
	batch_size => 10);
$node->safe_psql(
	$db, q{
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

my $slow_run = $node->queue_run('slow_touch');
ok( $node->poll_run($slow_run, "state = 'running' AND chunks_done >= 5"),
	'the slow run is running and has committed some chunks');

my $queued_run = $node->queue_run('queued_touch');

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
ok($node->poll_final_state($slow_run),
	'the interrupted run reaches a final state by itself');
is( $node->safe_psql(
		$db,
		"SELECT state, rows_done, cursor, sqlstate IS NULL
           FROM chunkbatch.runs WHERE run_id = $slow_run"),
	'succeeded|400|400|t',
	'the interrupted run resumed and succeeded');
ok( $node->log_contains(qr/run $slow_run\b[^\n]*interrupted/, $log_offset),
	'the server log reports the run as interrupted after the restart');
is( $node->once_count('items'),
	'400|400',
	'every row was processed exactly once across the restart');
is( $node->safe_psql(
		$db,
		q{SELECT count(*) FILTER (WHERE n > 0), sum(n), count(DISTINCT pid)
            FROM chunk_log}),
	'40|400|2',
	'40 chunks committed once each, by one worker before and one after the restart'
);

ok($node->poll_final_state($queued_run),
	'the queued run reaches a final state after the restart');
is( $node->safe_psql(
		$db,
		"SELECT state, rows_done FROM chunkbatch.runs WHERE run_id = $queued_run"),
	'succeeded|200',
	'the queued run survived the restart and succeeded');
is( $node->once_count('q_items'),
	'200|200',
	'the queued run processed every row exactly once');

$node->stop;
done_testing();
