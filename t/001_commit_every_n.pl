# Copyright (c) 2026, chunkbatch developers
#
# Commit every N rows: each chunk of a run is its own transaction.
#
# - a repeat-mode purge of 50,000 of 100,000 rows with batch_size 1000 commits
#   50 separate transactions of at most 1000 rows each;
# - a keyset run over 120,000 rows with batch_size 5000 processes every row
#   exactly once, in 24 or 25 chunks;
# - a slow run is visible in pg_stat_activity and chunkbatch.status_detail while it
#   runs, with rows_done increasing;
# - run(..., wait => true) returns the run id after success, and raises the
#   run's own SQLSTATE when the run fails, keeping its checkpoint.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node =
  ChunkbatchNode->create('commit_every_n', extension_in => ['postgres']);

# ---------------------------------------------------------------------------
# 1. Repeat mode: purge 50,000 of 100,000 rows, 1000 rows per transaction.
#    Every chunk logs its own transaction id and row count.
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', q{
CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
INSERT INTO events
SELECT g, CASE WHEN g % 2 = 0 THEN now() - interval '1 year'
               ELSE now() - interval '1 day' END
  FROM generate_series(1, 100000) g;
CREATE TABLE txlog (txid bigint NOT NULL, n bigint NOT NULL);
SELECT chunkbatch.create_job(
  job_name => 'purge_events',
  chunk_sql => $$WITH d AS (DELETE FROM events WHERE id IN
                   (SELECT id FROM events
                     WHERE created_at < now() - interval '6 months' LIMIT $1)
                   RETURNING id),
                  l AS (INSERT INTO txlog SELECT txid_current(), count(*) FROM d)
                SELECT id FROM d$$,
  batch_size => 1000);
});

my $purge_run = $node->queue_run('purge_events');
like($purge_run, qr/^\d+$/, 'run() returns a run id');
is( $node->final_state($purge_run, '60s'),
	'succeeded',
	'purge run succeeds');

is( $node->safe_psql(
		'postgres',
		q{SELECT count(*), count(DISTINCT txid), sum(n)
            FROM txlog WHERE n > 0}),
	'50|50|50000',
	'purge committed 50 chunks with rows, each in its own transaction, 50000 rows in all'
);
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM txlog WHERE n > 1000}),
	'0',
	'no purge transaction covered more than 1000 rows');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM txlog
           WHERE n > 0 AND txid_status(txid) IS DISTINCT FROM 'committed'}),
	'0',
	'every chunk transaction committed');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*),
                 count(*) FILTER (WHERE created_at < now() - interval '6 months')
            FROM events}),
	'50000|0',
	'the 50000 recent rows are left, no old row is left');
is( $node->safe_psql(
		'postgres',
		"SELECT state, rows_done, chunks_done BETWEEN 50 AND 51,
                sqlstate IS NULL, finished_at IS NOT NULL
           FROM chunkbatch.runs WHERE run_id = $purge_run"),
	'succeeded|50000|t|t|t',
	'purge run recorded as succeeded with rows_done = 50000');

# ---------------------------------------------------------------------------
# 2. Keyset mode: 120,000 rows (keys with gaps), batch 5000, each row once.
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', q{
CREATE TABLE items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO items (id) SELECT g * 7 FROM generate_series(1, 120000) g;
SELECT chunkbatch.create_job(
  job_name => 'touch_items',
  chunk_sql => $$UPDATE items SET counter = counter + 1
                 WHERE id IN (SELECT id FROM items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 5000,
  cursor_type => 'bigint');
});

my $keyset_run = $node->queue_run('touch_items');
is( $node->final_state($keyset_run, '60s'),
	'succeeded',
	'keyset run succeeds');
is( $node->once_count('items'),
	'120000|120000',
	'keyset run processed every row exactly once');
is( $node->safe_psql(
		'postgres',
		"SELECT state, rows_done, chunks_done BETWEEN 24 AND 25, cursor
           FROM chunkbatch.runs WHERE run_id = $keyset_run"),
	'succeeded|120000|t|840000',
	'keyset run: rows_done 120000 in 24-25 chunks, cursor at the greatest key'
);

# ---------------------------------------------------------------------------
# 3. A slow run is observable while it runs.
# ---------------------------------------------------------------------------
$node->create_slow_job(
	job => 'slow_touch',
	table => 'slow_items',
	rows => 300,
	sleep => 0.2,
	batch_size => 10,
	log => 0);

my $slow_run = $node->queue_run('slow_touch');

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
          WHERE backend_type = 'chunkbatch run worker'
            AND application_name ~ '\\m$slow_run\\M'
            AND application_name LIKE '%slow_touch%'"),
	'pg_stat_activity shows the run worker, named after the run id and the job'
);

ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'running' AND rows_done > 0
           FROM chunkbatch.status_detail WHERE run_id = $slow_run"),
	'chunkbatch.status_detail shows the run running with rows done');
my $rows_before = $node->safe_psql('postgres',
	"SELECT rows_done FROM chunkbatch.status_detail WHERE run_id = $slow_run");
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'running' AND rows_done > $rows_before
           FROM chunkbatch.status_detail WHERE run_id = $slow_run"),
	"chunkbatch.status_detail shows rows_done increasing beyond $rows_before");
is( $node->safe_psql(
		'postgres',
		"SELECT s.worker_pid = a.pid
           FROM chunkbatch.status_detail s
           JOIN pg_stat_activity a ON a.backend_type = 'chunkbatch run worker'
                                  AND a.application_name ~ '\\m$slow_run\\M'
          WHERE s.run_id = $slow_run"),
	't',
	'chunkbatch.status_detail names the worker pid seen in pg_stat_activity');

is( $node->final_state($slow_run, '60s'),
	'succeeded',
	'slow run succeeds');
is( $node->once_count('slow_items'),
	'300|300',
	'slow run processed every row exactly once');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM chunkbatch.status_detail WHERE run_id = $slow_run"),
	'0',
	'a finished run leaves chunkbatch.status_detail');

# ---------------------------------------------------------------------------
# 4. run(..., wait => true)
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', q{
CREATE TABLE w_items (id bigint PRIMARY KEY, mark int);
INSERT INTO w_items (id) SELECT generate_series(1, 2000);
SELECT chunkbatch.create_job(
  job_name => 'mark_items',
  chunk_sql => $$UPDATE w_items SET mark = ($3->>'mark')::int
                 WHERE id IN (SELECT id FROM w_items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 100,
  cursor_type => 'bigint');
});

my $wait_run = $node->safe_psql('postgres',
	q{SELECT chunkbatch.run('mark_items', '{"mark": 42}', wait => true)});
like($wait_run, qr/^\d+$/, 'run(wait => true) returns a run id');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE mark = 42), count(*) FROM w_items}),
	'2000|2000',
	'run(wait => true) returned after all rows were processed, with its params'
);
is( $node->safe_psql(
		'postgres',
		"SELECT job_name, state, rows_done FROM chunkbatch.runs
          WHERE run_id = $wait_run"),
	'mark_items|succeeded|2000',
	'the returned run id is the succeeded run');

# A job whose third chunk violates a CHECK constraint.
$node->safe_psql(
	'postgres', q{
CREATE TABLE chk_items (id bigint PRIMARY KEY,
                        v int NOT NULL DEFAULT 0 CONSTRAINT v_small CHECK (v <= 1));
INSERT INTO chk_items (id) SELECT generate_series(1, 100);
UPDATE chk_items SET v = 1 WHERE id = 25;
SELECT chunkbatch.create_job(
  job_name => 'check_fail',
  chunk_sql => $$UPDATE chk_items SET v = v + 1
                 WHERE id IN (SELECT id FROM chk_items
                               WHERE $2 IS NULL OR id > $2
                               ORDER BY id LIMIT $1)
                RETURNING id$$,
  batch_size => 10,
  cursor_type => 'bigint');
});

my ($sqlstate, $stderr, $stdout) =
  $node->sql_error(q{SELECT chunkbatch.run('check_fail', wait => true);});
is($sqlstate, '23514',
	'run(wait => true) of a failing run raises the run\'s SQLSTATE 23514')
  or diag($stderr);
is($stdout, '', 'run(wait => true) of a failing run returns no run id');
my ($failed_run) = $stderr =~ /run (\d+) of job "check_fail" failed/;
ok(defined $failed_run, 'the error names the failed run') or diag($stderr);
$failed_run //= 0;
is( $node->safe_psql(
		'postgres',
		q{SELECT max(run_id) FROM chunkbatch.runs WHERE job_name = 'check_fail'}),
	$failed_run,
	'the error names the run of the job');
is( $node->safe_psql(
		'postgres',
		"SELECT state, sqlstate, rows_done, chunks_done, cursor,
                error LIKE '%v_small%'
           FROM chunkbatch.runs WHERE run_id = $failed_run"),
	'failed|23514|20|2|20|t',
	'the failed run keeps its checkpoint at the last good chunk');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FILTER (WHERE id <= 20 AND v = 1),
                 count(*) FILTER (WHERE id > 20 AND v = CASE WHEN id = 25 THEN 1 ELSE 0 END)
            FROM chk_items}),
	'20|80',
	'the two good chunks are committed, the failing chunk left nothing');

$node->stop;
done_testing();
