# Copyright (c) 2026, chunkbatch developers
#
# The views a DBA reads in psql.
#
# - chunkbatch.status: during a typical run (percent known, a few chunks
#   done) every line of `psql` aligned output, header included, is at most
#   120 characters; it shows a progress bar with the percent, the rows per
#   second, the last chunk's duration with a sparkline of the last chunks,
#   elapsed and ETA rounded to seconds; a run waiting for its group says
#   which run it waits on;
# - a paused run's elapsed time stands still (status and status_detail);
# - chunkbatch.job_stats sums up a job's runs: how many, how they ended,
#   the last success and the last failure with its SQLSTATE, total rows,
#   durations and rate; pg_monitor members see it for every job with runs.
use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;
use Encode qw(decode_utf8 encode_utf8);
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ChunkbatchNode->create('status_view', extension_in => ['postgres']);

$node->sql(
	q{CREATE TABLE items (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false);
INSERT INTO items (id) SELECT generate_series(1, 2000);
SELECT chunkbatch.create_job('flip_items',
  'UPDATE items SET done = true
    WHERE id IN (SELECT id FROM items WHERE NOT done AND pg_sleep(0.001) IS NOT NULL
                  ORDER BY id LIMIT $1)',
  batch_size => 20, sleep_ms => 100, lock_group => 'items',
  count_sql => 'SELECT count(*) FROM items WHERE NOT done');
SELECT chunkbatch.create_job('flip_later', 'SELECT 1 WHERE $1 < 0', lock_group => 'items');});

my $run = $node->queue_run('flip_items');
ok($node->poll_run($run, "state = 'running' AND chunks_done >= 8"),
	'a run is running and has committed 8 chunks');
my $later = $node->queue_run('flip_later');
ok( defined $node->poll_for(
		"SELECT waiting_on FROM chunkbatch.status WHERE run_id = $later",
		qr/^run $run$/),
	'a run behind it in its group says it waits on it');

# psql's aligned output, as a DBA sees it.
my ($ret, $out, $err) =
  $node->psql('postgres', 'SELECT * FROM chunkbatch.status',
	extra_params => [ '-P', 'format=aligned', '-P', 'tuples_only=off', '-P', 'pager=off' ]);
is($ret, 0, 'SELECT * FROM chunkbatch.status works in psql') or diag($err);
my $shown = $out;
$out = decode_utf8($out);
my @lines = grep { !/^\(\d+ rows?\)$/ && $_ ne '' } split /\n/, $out;
my $widest = 0;
foreach (@lines) { $widest = length($_) if length($_) > $widest; }
diag("chunkbatch.status during a run:\n$shown");
cmp_ok($widest, '<=', 120, "every line of its aligned output is at most 120 characters ($widest)");
cmp_ok(scalar(@lines), '==', 4, 'one header, one rule and one line per run (2 runs)');

my $row = decode_utf8(
	$node->sql(
		"SELECT progress || '|' || rows_s || '|' || chunk_ms || '|' || elapsed || '|' || coalesce(eta::text, '')
           FROM chunkbatch.status WHERE run_id = $run"));
my ($progress, $rows_s, $chunk_ms, $elapsed, $eta) = split /\|/, $row;
like($progress, qr/^[█░]{10}\s+\d{1,3}%$/, 'progress is a bar with a percent')
  or diag(encode_utf8($progress));
like($rows_s, qr/^\d+$/, "rows per second is a whole number ($rows_s)");
like($chunk_ms, qr/^\d+ [▁▂▃▄▅▆▇█]{2,8}$/,
	"chunk_ms is the last chunk's milliseconds and a sparkline")
  or diag(encode_utf8($chunk_ms));
like($elapsed, qr/^\d\d:\d\d:\d\d$/, "elapsed is rounded to seconds ($elapsed)");
like($eta, qr/^(\d\d:\d\d:\d\d)?$/, "eta is rounded to seconds ($eta)");

# A paused run's elapsed time stands still.
$node->sql("SELECT chunkbatch.pause($run)");
ok($node->poll_run($run, "state = 'paused'"), 'the run is paused');
my $q = "SELECT s.elapsed || '|' || d.elapsed FROM chunkbatch.status s
           JOIN chunkbatch.status_detail d USING (run_id) WHERE run_id = $run";
my $before = $node->sql($q);
sleep 2;
is($node->sql($q), $before, "a paused run's elapsed time stands still ($before)");
$node->sql("SELECT chunkbatch.resume($run)");
is($node->final_state($run, '60s'), 'succeeded', 'resumed, the run succeeds');
is($node->final_state($later, '60s'), 'succeeded', 'and so does the run behind it');

# A failed run of the same job, for job_stats.
$node->sql(
	q{SELECT chunkbatch.create_job('fails', 'SELECT 1 / 0 WHERE $1 > 0');
UPDATE items SET done = false WHERE id <= 100;});
my $failed = $node->queue_run('fails');
is($node->final_state($failed, '30s'), 'failed', 'a run of another job fails');
my $again = $node->queue_run('flip_items');
is($node->final_state($again, '60s'), 'succeeded', 'a second run of flip_items succeeds');

is( $node->sql(
		q{SELECT runs || '|' || succeeded || '|' || failed || '|' || cancelled || '|'
                 || active || '|' || last_state || '|' || total_rows || '|'
                 || (last_success_at IS NOT NULL) || '|' || (last_failure_at IS NULL) || '|'
                 || (median_duration > '0'::interval) || '|' || (max_duration >= median_duration)
                 || '|' || (mean_rows_per_sec > 0)
            FROM chunkbatch.job_stats WHERE job_name = 'flip_items'}),
	'2|2|0|0|0|succeeded|2100|true|true|true|true|true',
	'job_stats: flip_items ran twice, both succeeded, 2100 rows, with durations and a rate');
is( $node->sql(
		q{SELECT runs || '|' || failed || '|' || last_state || '|' || last_failure_sqlstate
                 || '|' || (last_success_at IS NULL) || '|' || (last_failure_at IS NOT NULL)
            FROM chunkbatch.job_stats WHERE job_name = 'fails'}),
	'1|1|failed|22012|true|true',
	'job_stats: the failing job\'s last failure and its SQLSTATE');
$node->sql(q{CREATE ROLE mon LOGIN IN ROLE pg_monitor});
is($node->sql(q{SELECT string_agg(job_name, ',' ORDER BY job_name) FROM chunkbatch.job_stats}, role => 'mon'),
	'fails,flip_items,flip_later',
	'a pg_monitor member sees job_stats of every job that has runs');
diag("chunkbatch.job_stats:\n"
	  . $node->sql(q{SELECT job_name, runs, succeeded, failed, last_state, total_rows,
                            median_duration, mean_rows_per_sec FROM chunkbatch.job_stats}));

$node->stop;
done_testing();
