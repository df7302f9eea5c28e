# Copyright (c) 2026, chunkbatch developers
#
# Range mode and declarative jobs (create_purge, create_update):
#
# - on tables with a bigint, an int, a text and a uuid primary key, every
#   matching row is processed exactly once (a per-row counter, or a delete
#   log), non-matching rows are untouched, and each chunk is its own
#   transaction of at most batch_size rows (a trigger logs the transaction
#   of every row);
# - a worker killed (SIGKILL, by the test fault) right after a chunk's
#   commit, and another right before it, resume to every row exactly once;
# - a filter that matches nothing over long stretches of keys does not end
#   the run early: it ends only when no key of the span is left (each chunk
#   is a window of batch_size keys, the filter applied by the statement);
#   the span (the first and last key the filter matched at the start) is
#   recorded in runs and bounds the chunks, so the keys past its end are
#   never walked;
# - an alter_job that changes range_filter drops the spans of the job's
#   runs that are not over: a paused run, resumed, processes the rows its
#   new filter matches beyond the old span; and a run whose filter changed
#   after its worker read the job keeps no span found with the old one;
# - the span of a uuid key (a type without min and max) is found too;
# - on_error => 'isolate' needs no keys_sql in range mode: the poison row
#   goes to dead_letters, every other row is processed;
# - dry_run on a declarative job shows the key search and an index scan;
# - two runs of one group queued in one transaction start in priority
#   order (and in queue order when their priorities are equal); so do two
#   runs queued by pg_cron schedules at the same tick (in two
#   transactions), while two queued by hand in two transactions start in
#   queue order.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ChunkbatchNode->create('range_mode',
	conf => ['restart_after_crash = on'], extension_in => ['postgres']);
$node->sql(
	q{CREATE ROLE app LOGIN;
GRANT CREATE ON SCHEMA public TO app;
CREATE TABLE chunk_log (tbl text, xid xid8, id text);
GRANT INSERT ON chunk_log TO app;
CREATE FUNCTION log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chunk_log VALUES (TG_TABLE_NAME, pg_current_xact_id(), OLD.id::text);
    RETURN NULL;
END $$;});

# [table, key type, key expression of g, action]
my @tables = (
	[ 't_bigint', 'bigint', 'g * 3', 'update' ],
	[ 't_int', 'int', 'g', 'purge' ],
	[ 't_text', 'text', q{'k' || lpad(g::text, 6, '0')}, 'update' ],
	[ 't_uuid', 'uuid', q{md5(g::text)::uuid}, 'purge' ]);
my $rows = 12000;
my $batch = 700;
for my $t (@tables)
{
	my ($tbl, $type, $expr, $action) = @$t;
	$node->sql(
		qq{CREATE TABLE $tbl (id $type PRIMARY KEY, grp int NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO $tbl SELECT $expr, g FROM generate_series(1, $rows) g;
ALTER TABLE $tbl OWNER TO app;
CREATE TRIGGER ${tbl}_log AFTER UPDATE OR DELETE ON $tbl
    FOR EACH ROW EXECUTE FUNCTION log_row();});
	my $create =
	  $action eq 'purge'
	  ? "chunkbatch.create_purge('${tbl}_job', '$tbl', 'grp % 3 = 0', batch_size => $batch)"
	  : "chunkbatch.create_update('${tbl}_job', '$tbl', 'n = n + 1', 'grp % 3 = 0', batch_size => $batch)";
	$node->sql("SELECT $create", role => 'app');
	my $run = $node->queue_run("${tbl}_job", role => 'app');
	is($node->final_state($run, '120s'), 'succeeded', "$tbl ($type key, $action): the run succeeds");

	my $matching = int($rows / 3);
	is($node->sql("SELECT rows_done FROM chunkbatch.runs WHERE run_id = $run"),
		$matching, "$tbl: rows_done is the number of matching rows");
	# The span: the first and last matching key in the key's own order
	# (uuid has no min or max: found by ordering).
	is( $node->sql(
			qq{SELECT r.range_first = e.f::text AND r.range_last = e.l::text
                 FROM chunkbatch.runs r,
                      (SELECT (SELECT $expr FROM generate_series(1, $rows) g WHERE g % 3 = 0 ORDER BY 1 LIMIT 1) AS f,
                              (SELECT $expr FROM generate_series(1, $rows) g WHERE g % 3 = 0 ORDER BY 1 DESC LIMIT 1) AS l) e
                WHERE r.run_id = $run}),
		't', "$tbl: the run's span is the first and last matching key");
	if ($action eq 'update')
	{
		is( $node->sql(
				qq{SELECT count(*) FILTER (WHERE grp % 3 = 0 AND n = 1) || '/' ||
                      count(*) FILTER (WHERE grp % 3 = 0 AND n <> 1) || '/' ||
                      count(*) FILTER (WHERE grp % 3 <> 0 AND n <> 0) FROM $tbl}),
			"$matching/0/0",
			"$tbl: every matching row updated exactly once, no other row touched");
	}
	else
	{
		is( $node->sql(
				qq{SELECT count(*) FILTER (WHERE grp % 3 = 0) || '/' ||
                      count(*) FILTER (WHERE grp % 3 <> 0) FROM $tbl}),
			'0/' . ($rows - $matching),
			"$tbl: every matching row deleted, every other row kept");
	}
	is( $node->sql(
			qq{SELECT count(*) || '/' || count(DISTINCT id) FROM chunk_log
                WHERE tbl = '$tbl'}),
		"$matching/$matching", "$tbl: each matching row processed once");
	# Each chunk is a window of $batch keys; every window has matching rows.
	my $expect_chunks = int(($rows + $batch - 1) / $batch);
	is( $node->sql(
			qq{SELECT count(*) || '/' || (max(c) <= $batch) FROM
                 (SELECT count(*) AS c FROM chunk_log WHERE tbl = '$tbl' GROUP BY xid) x}),
		"$expect_chunks/true",
		"$tbl: $expect_chunks transactions of at most $batch rows");
}

# SIGKILL of the worker after a chunk's commit, then before one.
my $done_file = $node->data_dir . '/chunkbatch_test_fault.done';
sub set_fault
{
	my ($point, $chunk) = @_;
	$node->sql("ALTER SYSTEM SET chunkbatch.test_fault = '$point'");
	$node->sql("ALTER SYSTEM SET chunkbatch.test_fault_chunk = $chunk");
	$node->sql("SELECT pg_reload_conf()");
	return $node->poll_for(
		"SELECT current_setting('chunkbatch.test_fault') || '/'
                || current_setting('chunkbatch.test_fault_chunk')",
		qr/^\Q$point\/$chunk\E$/, 30);
}
$node->sql(
	q{CREATE TABLE t_crash (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO t_crash SELECT g FROM generate_series(1, 20000) g;
ALTER TABLE t_crash OWNER TO app;});
$node->sql(
	q{SELECT chunkbatch.create_update('crash', 't_crash', 'n = n + 1', 'true', batch_size => 1000)},
	role => 'app');
my $round = 0;
for my $point ('after_commit', 'before_commit')
{
	$round++;
	unlink($done_file);
	ok(set_fault($point, 4), "$point: the test fault is set for chunk 4");
	my $run = $node->queue_run('crash', role => 'app');
	# The crash restarts the server: poll from new sessions.
	ok($node->poll_final_state($run), "$point: the run ended");
	ok(-e $done_file, "$point: the worker killed itself at chunk 4");
	is($node->sql("SELECT state FROM chunkbatch.runs WHERE run_id = $run"),
		'succeeded', "$point: the run resumed and succeeded");
	is( $node->sql(q{SELECT count(*) FILTER (WHERE n = } . $round . q{) || '/' || count(*) FROM t_crash}),
		'20000/20000', "$point: every row processed exactly once");
}
$node->sql("ALTER SYSTEM RESET chunkbatch.test_fault");
$node->sql("ALTER SYSTEM RESET chunkbatch.test_fault_chunk");
$node->sql("SELECT pg_reload_conf()");

# Long stretches without a match: no early end, no empty chunk.
$node->sql(
	q{CREATE TABLE t_sparse (id bigint PRIMARY KEY, hit boolean NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO t_sparse SELECT g, g <= 100 OR g BETWEEN 150001 AND 150101
  FROM generate_series(1, 200000) g;
ALTER TABLE t_sparse OWNER TO app;});
$node->sql(q{SELECT chunkbatch.create_update('sparse', 't_sparse', 'n = n + 1', 'hit', batch_size => 5000)},
	role => 'app');
my $run = $node->queue_run('sparse', role => 'app');
is($node->final_state($run), 'succeeded', 'sparse matches: the run succeeds');
is( $node->sql(
		"SELECT rows_done || '/' || chunks_done || ' ' || range_first || '..' || range_last || ' ' || cursor
		   FROM chunkbatch.runs WHERE run_id = $run"),
	'201/32 1..150101 150101',
	'sparse matches: 201 rows in 31 windows of 5000 keys over the span 1..150101, then the chunk that finds no key');
is($node->sql(q{SELECT count(*) FILTER (WHERE hit AND n = 1) || '/' || count(*) FILTER (WHERE n <> 0 AND NOT hit) FROM t_sparse}),
	'201/0', 'sparse matches: every match processed once, nothing else');

# A new range_filter drops the span of a paused run.
$node->sql(
	q{CREATE TABLE t_span (id int PRIMARY KEY, grp int NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO t_span SELECT g, CASE WHEN g <= 100 THEN 1 WHEN g > 900 THEN 2 ELSE 0 END
  FROM generate_series(1, 1000) g;
ALTER TABLE t_span OWNER TO app;});
$node->sql(
	q{SELECT chunkbatch.create_job('span', $$UPDATE t_span SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND grp IN (1, 2)$$,
                                batch_size => 10, sleep_ms => 100, range_table => 't_span',
                                range_key => 'id', range_filter => 'grp = 1')},
	role => 'app');
$run = $node->queue_run('span', role => 'app');
ok($node->poll_run($run, "state = 'running' AND chunks_done >= 2"), 'span: the run is running');
is($node->sql("SELECT range_first || '..' || range_last FROM chunkbatch.runs WHERE run_id = $run"),
	'1..100', 'span: the span is the keys the filter matches');
$node->sql("SELECT chunkbatch.pause($run)");
ok($node->poll_run($run, "state = 'paused'"), 'span: the run is paused');
$node->sql(q{SELECT chunkbatch.alter_job('span', range_filter => 'grp IN (1, 2)', sleep_ms => 0)},
	role => 'app');
is($node->sql("SELECT coalesce(range_first, 'none') FROM chunkbatch.runs WHERE run_id = $run"),
	'none', 'span: alter_job with a new range_filter drops the span of the paused run');
$node->sql("SELECT chunkbatch.resume($run)");
is($node->final_state($run), 'succeeded', 'span: the resumed run succeeds');
is($node->sql(q{SELECT count(*) FILTER (WHERE grp > 0 AND n = 1) || '/' || count(*) FILTER (WHERE n <> 0 AND grp = 0) FROM t_span}),
	'200/0', 'span: the resumed run processes the rows past the old span once, nothing else');

# A filter changed while a run waits for its group, after its worker read
# the job and before it found its span: the span it finds with the old
# filter is not kept (its next start would apply it to the new filter).
$node->sql(q{SELECT chunkbatch.alter_job('span', lock_group => 'span_grp')}, role => 'app');
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{SELECT pg_advisory_lock(chunkbatch.group_lock_key('span_grp'))});
$run = $node->queue_run('span', role => 'app');
ok($node->poll_run($run, "state = 'waiting'"), 'span race: the run waits for its group');
$node->sql(q{SELECT chunkbatch.alter_job('span', range_filter => 'grp = 2')}, role => 'app');
$holder->query_safe(q{SELECT pg_advisory_unlock_all()});
$holder->quit;
is($node->final_state($run), 'succeeded', 'span race: the run succeeds');
is($node->sql("SELECT coalesce(range_first, 'none') FROM chunkbatch.runs WHERE run_id = $run"),
	'none', 'span race: no span is kept from the filter the job no longer has');

# Poison rows are isolated by the range's own keys.
$node->sql(
	q{CREATE TABLE t_poison (id int PRIMARY KEY, v int NOT NULL CHECK (v < 100));
INSERT INTO t_poison SELECT g, CASE WHEN g = 137 THEN 60 ELSE 0 END FROM generate_series(1, 1000) g;
ALTER TABLE t_poison OWNER TO app;});
$node->sql(
	q{SELECT chunkbatch.create_update('poison', 't_poison', 'v = v + 50', 'true',
                                   batch_size => 100, on_error => 'isolate')},
	role => 'app');
$run = $node->queue_run('poison', role => 'app');
is($node->final_state($run), 'succeeded', 'isolate: the run succeeds');
is($node->sql("SELECT string_agg(key, ',') FROM chunkbatch.dead_letters WHERE run_id = $run"),
	'137', 'isolate: the poison key is in dead_letters');
is($node->sql(q{SELECT count(*) FILTER (WHERE v = 50) || '/' || count(*) FILTER (WHERE v = 60) FROM t_poison}),
	'999/1', 'isolate: every other row is processed, the poison row is not');

# dry_run of a declarative job.
my $report = $node->sql(
	q{SELECT string_agg(item || ': ' || detail, E'\n') FROM chunkbatch.dry_run('sparse', execute => true)},
	role => 'app');
note($report);
like($report, qr/^key span: keys 1 to 150101: the keys range_filter matches/m,
	'dry_run shows the span of keys the filter matches');
like($report, qr/^key search: .*Index (Only )?Scan on public\.t_sparse\.id$/m,
	'dry_run shows the key search as an index scan');
like($report, qr/^plan at 5000 rows: ModifyTable > [A-Za-z >]*Index Scan \(keys 1 to 5000\)$/m,
	'and the statement over the first range as an index scan');
unlike($report, qr/Seq Scan|plan changes shape/, 'and no sequential scan or plan change');
like($report, qr/^executed: the first chunk: 100 rows in [\d.]+ ms, rolled back$/m,
	'execute => true runs one chunk');
is($node->sql(q{SELECT sum(n) FROM t_sparse}), '201', 'and rolls it back');

# Order within a group: priority, then queue order.
$node->sql(
	q{CREATE TABLE t_prio (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO t_prio SELECT generate_series(1, 10);
ALTER TABLE t_prio OWNER TO app;});
$node->sql(
	q{SELECT chunkbatch.create_update('nightly', 't_prio', 'n = n + 1', 'true', lock_group => 'stats');
SELECT chunkbatch.create_update('five_min', 't_prio', 'n = n + 1', 'true', lock_group => 'stats',
                                priority => 10);},
	role => 'app');
for my $case ([ 10, 'five_min', 'the higher priority' ], [ 0, 'nightly', 'queue order at equal priority' ])
{
	my ($prio, $first, $what) = @$case;
	$node->sql("SELECT chunkbatch.alter_job('five_min', priority => $prio)", role => 'app');
	my $ids = $node->sql(
		q{BEGIN; SELECT chunkbatch.run('nightly') || ',' || chunkbatch.run('five_min'); COMMIT;},
		role => 'app');
	my ($a, $b) = split /,/, $ids;
	is($node->final_state($a), 'succeeded', "$what: the first run succeeds");
	is($node->final_state($b), 'succeeded', "$what: the second run succeeds");
	is( $node->sql(
			qq{SELECT job_name FROM chunkbatch.runs WHERE run_id IN ($a, $b)
                ORDER BY started_at LIMIT 1}),
		$first, "$what: $first starts first");
}

# pg_cron's runs of one tick: queued by two schedules (two transactions)
# within a second, they also start by priority; queued by hand in two
# transactions they start in queue order.
$node->sql("SELECT chunkbatch.alter_job('five_min', priority => 10)", role => 'app');
for my $case ([ 'pg_cron', 'five_min', 'two schedules at one tick' ],
	[ 'sql', 'nightly', 'two transactions by hand' ])
{
	my ($trigger, $first, $what) = @$case;
	my $a = $node->sql("SELECT chunkbatch.run('nightly', trigger => '$trigger nightly')",
		role => 'app');
	my $b = $node->sql("SELECT chunkbatch.run('five_min', trigger => '$trigger five_min')",
		role => 'app');
	is($node->final_state($a), 'succeeded', "$what: the first run succeeds");
	is($node->final_state($b), 'succeeded', "$what: the second run succeeds");
	is( $node->sql(
			qq{SELECT job_name FROM chunkbatch.runs WHERE run_id IN ($a, $b)
                ORDER BY started_at LIMIT 1}),
		$first, "$what: $first starts first");
}

done_testing();
