# Copyright (c) 2026, chunkbatch developers
#
# Group serialization, FIFO order, skip, outside holders.
#
# - the seed story: a slow "midnight" job and a fast "5-minute" job updating
#   the same statistics table, in lock group 'stats', 12 runs queued
#   alternately: no two [started_at, finished_at] intervals overlap (nor do
#   the chunks the runs actually executed), runs start in queue order, every
#   row is updated exactly 12 times and in queue order;
# - the same jobs each in its own group do overlap (so the test can fail);
# - with chunkbatch.max_workers = 4 and one group's 12 runs queued, a run of
#   an unrelated job queued after them starts and finishes at once;
# - the running run holds the group's session advisory lock across its chunk
#   commits (pg_locks, and an outside session cannot take it);
# - an outside session holding pg_advisory_lock(chunkbatch.group_lock_key('stats'))
#   makes a run wait (state 'waiting', chunkbatch.status_detail and chunkbatch.groups
#   name the holder's pid), nothing changes while it holds the lock, and the
#   run proceeds after pg_advisory_unlock; a run of an on_group_busy => 'skip'
#   job ends 'skipped' with a reason, and so does a run whose
#   group_wait_timeout expires;
# - 200 runs of three jobs of one group, queued by 4 concurrent sessions
#   while a run of the group holds it: all succeed, no overlap, start order =
#   run_id order.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create('groups',
	conf => ['chunkbatch.max_workers = 4'],
	extension_in => ['postgres']);

my $db = 'postgres';

# Number of pairs of runs among @ids whose [started_at, finished_at)
# intervals overlap.
sub overlaps
{
	my ($ids) = @_;
	my $list = join(',', @$ids);
	return $node->sql(
		"SELECT count(*)
           FROM chunkbatch.runs a
           JOIN chunkbatch.runs b ON a.run_id < b.run_id
          WHERE a.run_id IN ($list) AND b.run_id IN ($list)
            AND tstzrange(a.started_at, a.finished_at)
                && tstzrange(b.started_at, b.finished_at)");
}

# Number of pairs of runs among @ids that started in the opposite order of
# their run ids.
sub inversions
{
	my ($ids) = @_;
	my $list = join(',', @$ids);
	return $node->sql(
		"SELECT count(*)
           FROM chunkbatch.runs a
           JOIN chunkbatch.runs b ON a.run_id < b.run_id
          WHERE a.run_id IN ($list) AND b.run_id IN ($list)
            AND a.started_at > b.started_at");
}

# Number of pairs of runs among @ids whose executed chunks (first chunk's
# start to last chunk's end, as logged by the chunks themselves) overlap.
sub chunk_overlaps
{
	my ($ids) = @_;
	my $list = join(',', @$ids);
	return $node->sql(
		"WITH s AS (SELECT run_id, tstzrange(min(started), max(ended)) AS span
                      FROM chunk_log WHERE run_id IN ($list) GROUP BY run_id)
         SELECT count(*) FROM s a JOIN s b ON a.run_id < b.run_id
          WHERE a.span && b.span");
}

# Wait for each run to end; return the list of final states.
sub wait_all
{
	my ($ids, $timeout) = @_;
	my $list = join(',', @$ids);
	return $node->sql(
		"SELECT string_agg(chunkbatch.wait(run_id, '$timeout'), ',' ORDER BY run_id)
           FROM unnest(ARRAY[$list]::bigint[]) AS run_id");
}

# A keyset chunk over table tbl: sleeps, then sets v = <op> and
# touched = touched + 1 on the next n rows, locking them in key order, and
# logs which run executed it and when.
$node->sql(q{
CREATE TABLE stats (id bigint PRIMARY KEY, v bigint NOT NULL DEFAULT 0,
                    touched int NOT NULL DEFAULT 0);
INSERT INTO stats (id) SELECT generate_series(1, 200);
CREATE TABLE stats_solo (LIKE stats INCLUDING ALL);
INSERT INTO stats_solo (id) SELECT generate_series(1, 200);
CREATE TABLE chunk_log (run_id bigint, tbl text, started timestamptz,
                        ended timestamptz, n bigint);
CREATE FUNCTION stats_chunk(tbl text, op text, n int, after_id bigint,
                            pause float8) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
  t0 timestamptz := clock_timestamp();
  me bigint;
  done bigint;
BEGIN
  SELECT substring(a.application_name FROM '^chunkbatch run (\d+)')::bigint
    INTO me FROM pg_stat_activity a WHERE a.pid = pg_backend_pid();
  PERFORM pg_sleep(pause);
  RETURN QUERY EXECUTE format(
    'UPDATE %I t SET v = %s, touched = t.touched + 1
       FROM (SELECT id FROM %I WHERE $2 IS NULL OR id > $2
              ORDER BY id LIMIT $1 FOR UPDATE) s
      WHERE t.id = s.id RETURNING t.id', tbl, op, tbl)
    USING n, after_id;
  GET DIAGNOSTICS done = ROW_COUNT;
  INSERT INTO chunk_log VALUES (me, tbl, t0, clock_timestamp(), done);
END
$$;
-- midnight: 10 chunks of 20 rows, 50 ms each, v = v * 2
SELECT chunkbatch.create_job(
  job_name => 'midnight',
  chunk_sql => $$SELECT * FROM stats_chunk('stats', 't.v * 2', $1, $2, 0.05)$$,
  batch_size => 20, cursor_type => 'bigint', lock_group => 'stats');
-- 5-minute: one chunk of all rows, no pause, v = v + 1
SELECT chunkbatch.create_job(
  job_name => 'five_min',
  chunk_sql => $$SELECT * FROM stats_chunk('stats', 't.v + 1', $1, $2, 0)$$,
  batch_size => 1000, cursor_type => 'bigint', lock_group => 'stats');
-- the same two jobs on their own table, each in its own group
SELECT chunkbatch.create_job(
  job_name => 'midnight_solo',
  chunk_sql => $$SELECT * FROM stats_chunk('stats_solo', 't.v * 2', $1, $2, 0.05)$$,
  batch_size => 20, cursor_type => 'bigint');
SELECT chunkbatch.create_job(
  job_name => 'five_min_solo',
  chunk_sql => $$SELECT * FROM stats_chunk('stats_solo', 't.v + 1', $1, $2, 0)$$,
  batch_size => 1000, cursor_type => 'bigint');
});

is( $node->sql(q{SELECT string_agg(job_name || ':' || lock_group, ',' ORDER BY job_name)
          FROM chunkbatch.jobs}),
	'five_min:stats,five_min_solo:five_min_solo,midnight:stats,midnight_solo:midnight_solo',
	'jobs are in the given group, or in a group named after themselves');

# Queue 12 runs alternately, each in its own transaction, from one session.
sub queue_alternately
{
	my ($a, $b, $n) = @_;
	my $sql = join('',
		map { "SELECT chunkbatch.run('" . ($_ % 2 ? $b : $a) . "');\n" }
		  (0 .. $n - 1));
	return split(/\n/, $node->sql($sql));
}

# ---------------------------------------------------------------------------
# 1. The seed story, with a common group.
# ---------------------------------------------------------------------------
my $t_start = time;
my @seed = queue_alternately('midnight', 'five_min', 12);
is(scalar(@seed), 12, '12 runs queued alternately');

# While they run: the holder is a run, the others wait for it, in order.
ok( $node->poll_query_until(
		$db, q{
SELECT g.holder_run_id IS NOT NULL
   AND cardinality(g.waiting_run_ids) >= 3
   AND g.waiting_run_ids = (SELECT array_agg(x ORDER BY x)
                              FROM unnest(g.waiting_run_ids) x)
   AND g.holder_run_id < ALL (g.waiting_run_ids)
   AND g.longest_wait > interval '0'
  FROM chunkbatch.groups g WHERE g.lock_group = 'stats'
}),
	'chunkbatch.groups: the group is held by a run, runs queued after it wait in order'
);
ok( $node->poll_query_until(
		$db, q{
SELECT count(*) >= 2
   AND bool_and(s.waiting_for_run = g.holder_run_id)
   AND bool_and(s.waiting_for_pid IS NULL)
  FROM chunkbatch.status_detail s
  JOIN chunkbatch.groups g ON g.lock_group = s.lock_group
 WHERE s.lock_group = 'stats' AND s.state = 'waiting'
}),
	'chunkbatch.status_detail: waiting runs name the holding run as waiting_for_run');

is(wait_all(\@seed, '60s'), join(',', ('succeeded') x 12),
	'all 12 runs of the group succeed');
my $seed_secs = time - $t_start;
my $seed_list = join(',', @seed);

is( $node->sql(
		"SELECT count(*) FROM chunkbatch.runs
          WHERE run_id IN ($seed_list)
            AND started_at IS NOT NULL AND finished_at IS NOT NULL
            AND started_at <= finished_at AND trigger = 'sql'"),
	'12',
	'every run has started_at <= finished_at, and trigger sql');
my $seed_overlaps = overlaps(\@seed);
is($seed_overlaps, '0',
	'no two runs of the group overlap in [started_at, finished_at]');
is( $node->sql(
		"SELECT string_agg(run_id::text, ',' ORDER BY started_at)
           FROM chunkbatch.runs WHERE run_id IN ($seed_list)"),
	$seed_list,
	'the runs started in the order they were queued');
is( $node->sql(
		"SELECT count(DISTINCT run_id) FROM chunk_log
          WHERE run_id IN ($seed_list) AND n > 0"),
	'12', 'every run logged its chunks');
my $seed_chunk_overlaps = chunk_overlaps(\@seed);
is($seed_chunk_overlaps, '0',
	'no two runs of the group executed chunks during overlapping periods');
is( $node->sql(
		"SELECT count(*) FROM chunk_log c JOIN chunkbatch.runs r USING (run_id)
          WHERE c.run_id IN ($seed_list)
            AND (c.started < r.started_at OR c.ended > r.finished_at)"),
	'0',
	'every chunk ran within its run\'s [started_at, finished_at]');
is( $node->sql(q{SELECT count(*), count(*) FILTER (WHERE touched = 12),
                count(*) FILTER (WHERE v = 63) FROM stats}),
	'200|200|200',
	'every row updated exactly 12 times, in queue order (v = 63)');

# Waiting is accounted for separately from the run's own time.
is( $node->sql(
		"SELECT count(*) FILTER (WHERE group_wait_ms > 0),
                count(*) FILTER (WHERE group_wait_ms >
                    extract(epoch FROM started_at - queued_at) * 1000 + 1),
                bool_and(group_wait_ms > 1000) FILTER (WHERE run_id = $seed[-1])
           FROM chunkbatch.runs WHERE run_id IN ($seed_list)"),
	'11|0|t',
	'group_wait_ms: the 11 runs queued behind the first waited, never longer than from queued to started'
);
my $max_wait = $node->sql(
	"SELECT round(max(group_wait_ms)) FROM chunkbatch.runs WHERE run_id IN ($seed_list)"
);
note(sprintf(
		"seed story, common group: 12 runs in %.2f s, %d overlapping pairs "
		  . "of runs, %d of chunk spans, longest group wait %s ms",
		$seed_secs, $seed_overlaps, $seed_chunk_overlaps, $max_wait));

# ---------------------------------------------------------------------------
# 2. The same jobs, each in its own group, do overlap.
# ---------------------------------------------------------------------------
$t_start = time;
my @solo = queue_alternately('midnight_solo', 'five_min_solo', 12);
is(wait_all(\@solo, '60s'), join(',', ('succeeded') x 12),
	'all 12 runs without a common group succeed');
my $solo_secs = time - $t_start;
my $solo_overlaps = overlaps(\@solo);
cmp_ok($solo_overlaps, '>', 0,
	'without a common group, runs of the two jobs overlap');
my $solo_chunk_overlaps = chunk_overlaps(\@solo);
cmp_ok($solo_chunk_overlaps, '>', 0,
	'without a common group, the two jobs executed chunks during overlapping periods'
);
is( $node->sql(
		"SELECT count(*) FROM chunkbatch.runs a JOIN chunkbatch.runs b
             ON a.run_id < b.run_id AND a.job_name = b.job_name
          WHERE a.run_id IN (" . join(',', @solo) . ")
            AND b.run_id IN (" . join(',', @solo) . ")
            AND tstzrange(a.started_at, a.finished_at)
                && tstzrange(b.started_at, b.finished_at)"),
	'0',
	'runs of one job never overlap (a job is in a group of its own name)');
is($node->sql(q{SELECT count(*) FILTER (WHERE touched = 12) FROM stats_solo}),
	'200', 'without a common group every row is still updated 12 times');
note(sprintf(
		"same jobs in separate groups: 12 runs in %.2f s, %d overlapping pairs "
		  . "of runs, %d of chunk spans, %s of 200 rows with v <> 63",
		$solo_secs, $solo_overlaps, $solo_chunk_overlaps,
		$node->sql(q{SELECT count(*) FILTER (WHERE v <> 63) FROM stats_solo})));

# ---------------------------------------------------------------------------
# 3. No head-of-line blocking: max_workers = 4, one group's 12 runs queued,
#    a run of an unrelated job queued after them still runs at once.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE other_items (id bigint PRIMARY KEY);
INSERT INTO other_items SELECT generate_series(1, 10);
SELECT chunkbatch.create_job(
  job_name => 'other',
  chunk_sql => 'DELETE FROM other_items WHERE id IN (SELECT id FROM other_items LIMIT $1)',
  batch_size => 100);
});
my @busy = queue_alternately('midnight', 'five_min', 12);
$t_start = time;
my $other = $node->sql(q{SELECT chunkbatch.run('other', trigger => 'tap')});
is($node->final_state($other, '10s'),
	'succeeded', 'the unrelated run succeeds within 10 s');
my $other_secs = time - $t_start;
is(wait_all(\@busy, '60s'), join(',', ('succeeded') x 12),
	'the 12 runs of the busy group succeed');
my $busy_list = join(',', @busy);
is( $node->sql(
		"SELECT o.finished_at < max(r.finished_at),
                count(*) FILTER (WHERE r.started_at > o.finished_at) >= 6
           FROM chunkbatch.runs r, chunkbatch.runs o
          WHERE r.run_id IN ($busy_list) AND o.run_id = $other
          GROUP BY o.finished_at"),
	't|t',
	'the unrelated run finished before the group\'s last run, while at least 6 of the group\'s runs had not started'
);
is($node->sql("SELECT trigger, rows_done FROM chunkbatch.runs WHERE run_id = $other"),
	'tap|10', 'the unrelated run recorded its trigger and did its work');
is(overlaps(\@busy), '0', 'the busy group\'s runs did not overlap');
is(inversions(\@busy), '0', 'the busy group\'s runs started in queue order');
note(sprintf(
		"no head-of-line blocking: unrelated run done %.2f s after it was queued, "
		  . "%s of the group's 12 runs started after it finished",
		$other_secs,
		$node->sql(
			"SELECT count(*) FROM chunkbatch.runs r, chunkbatch.runs o
              WHERE r.run_id IN ($busy_list) AND o.run_id = $other
                AND r.started_at > o.finished_at")));

# ---------------------------------------------------------------------------
# 4. The group lock: a session-level advisory lock held by the run's worker
#    across its chunk commits.
# ---------------------------------------------------------------------------
my $outside = $node->background_psql($db);
my $outside_pid = $outside->query_safe('SELECT pg_backend_pid()');
my $key = $node->sql(q{SELECT chunkbatch.group_lock_key('stats')});
like($key, qr/^-?\d+$/, 'group_lock_key returns a bigint');

# A row of the run's third chunk is locked, so that the run is surely
# between its commits while the lock is looked at.
my $row_holder = $node->background_psql($db);
$row_holder->query_safe('BEGIN; SELECT id FROM stats WHERE id = 50 FOR UPDATE');
my $held_run = $node->queue_run('midnight');
ok( $node->poll_run($held_run, "state = 'running' AND chunks_done >= 2"),
	'a midnight run is running and has committed 2 chunks');
is( $node->sql(
		"SELECT count(*) FROM pg_locks l JOIN chunkbatch.status_detail s ON s.worker_pid = l.pid
          WHERE s.run_id = $held_run AND l.locktype = 'advisory' AND l.granted
            AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND ((l.classid::bigint << 32) | l.objid::bigint) = $key"),
	'1',
	'pg_locks: the run worker holds the advisory lock group_lock_key(\'stats\') after its chunk commits'
);
is($outside->query_safe("SELECT pg_try_advisory_lock($key)"),
	'f', 'an outside session cannot take the group lock while the run holds it');
$row_holder->query_safe('COMMIT');
$row_holder->quit;
is($node->final_state($held_run, '30s'),
	'succeeded', 'the midnight run succeeds');

# ---------------------------------------------------------------------------
# 5. An outside holder.
# ---------------------------------------------------------------------------
my $checksum_sql =
  q{SELECT md5(string_agg(id || ':' || v || ':' || touched, ',' ORDER BY id)) FROM stats};
my $touched_before = $node->sql(q{SELECT min(touched) || '|' || max(touched) FROM stats});
is($outside->query_safe("SELECT pg_advisory_lock(chunkbatch.group_lock_key('stats'))"),
	'', 'an outside session takes the group lock');
my $checksum = $node->sql($checksum_sql);

my $waiting_run = $node->queue_run('five_min');
ok( $node->poll_query_until(
		$db,
		"SELECT r.state = 'waiting' AND r.waiting_since IS NOT NULL
            AND r.started_at IS NULL
            AND s.waiting_for_pid = $outside_pid AND s.waiting_for_run IS NULL
            AND s.group_wait > interval '0'
           FROM chunkbatch.runs r JOIN chunkbatch.status_detail s USING (run_id)
          WHERE r.run_id = $waiting_run"),
	'the run waits (state waiting) and chunkbatch.status_detail names the outside holder\'s pid'
);
is( $node->sql(q{SELECT holder_pid, holder_run_id IS NULL, waiting_run_ids,
                longest_wait > interval '0'
           FROM chunkbatch.groups WHERE lock_group = 'stats'}),
	"$outside_pid|t|{$waiting_run}|t",
	'chunkbatch.groups shows the outside holder\'s pid and the waiting run');

# A job that skips instead of waiting.
$node->sql(q{SELECT chunkbatch.create_job(
  job_name => 'five_min_skip',
  chunk_sql => $$SELECT * FROM stats_chunk('stats', 't.v + 1', $1, $2, 0)$$,
  batch_size => 1000, cursor_type => 'bigint', lock_group => 'stats',
  on_group_busy => 'skip')});
my $skip_run = $node->queue_run('five_min_skip');
is($node->final_state($skip_run, '10s'),
	'skipped', 'a run of an on_group_busy => skip job ends skipped');
is( $node->sql(
		"SELECT reason IS NOT NULL AND reason <> '', started_at IS NULL, rows_done,
                finished_at IS NOT NULL
           FROM chunkbatch.runs WHERE run_id = $skip_run"),
	't|t|0|t',
	'the skipped run has a reason, never started and did nothing');
note('skip reason: '
	  . $node->sql("SELECT reason FROM chunkbatch.runs WHERE run_id = $skip_run"));

# A job that waits at most 1 s.
$node->sql(q{SELECT chunkbatch.create_job(
  job_name => 'five_min_timeout',
  chunk_sql => $$SELECT * FROM stats_chunk('stats', 't.v + 1', $1, $2, 0)$$,
  batch_size => 1000, cursor_type => 'bigint', lock_group => 'stats',
  group_wait_timeout => '1s')});
my $timeout_run = $node->queue_run('five_min_timeout');
is($node->final_state($timeout_run, '20s'),
	'skipped', 'a run whose group_wait_timeout (1 s) expires ends skipped');
my $timeout_secs = $node->sql(
	"SELECT round(extract(epoch FROM finished_at - queued_at)::numeric, 2)
       FROM chunkbatch.runs WHERE run_id = $timeout_run");
is( $node->sql(
		"SELECT reason IS NOT NULL AND reason <> '', started_at IS NULL, rows_done,
                finished_at - queued_at >= interval '1s',
                finished_at - queued_at < interval '10s'
           FROM chunkbatch.runs WHERE run_id = $timeout_run"),
	't|t|0|t|t',
	"the timed-out run has a reason and ended after 1 s to 10 s ($timeout_secs s)"
);
note("group_wait_timeout 1s: skipped after $timeout_secs s, reason: "
	  . $node->sql("SELECT reason FROM chunkbatch.runs WHERE run_id = $timeout_run"));

# The first run is still waiting, and nothing changed.
is($node->sql("SELECT chunkbatch.wait($waiting_run, '1s')"),
	'waiting', 'the run still waits while the outside session holds the lock');
is( $node->sql(
		"SELECT started_at IS NULL, rows_done, chunks_done
           FROM chunkbatch.runs WHERE run_id = $waiting_run"),
	't|0|0',
	'the waiting run has not started');
is($node->sql($checksum_sql), $checksum,
	'no row of the table changed while the outside session held the group');

my $unlock_at = $node->sql('SELECT clock_timestamp()');
is($outside->query_safe("SELECT pg_advisory_unlock(chunkbatch.group_lock_key('stats'))"),
	't', 'the outside session releases the group lock');
is($node->final_state($waiting_run, '30s'),
	'succeeded', 'the waiting run proceeds and succeeds');
is( $node->sql(
		"SELECT started_at >= '$unlock_at', group_wait_ms >= 2000
           FROM chunkbatch.runs WHERE run_id = $waiting_run"),
	't|t',
	'it started after the release, having waited more than 2 s');
isnt($node->sql($checksum_sql), $checksum, 'the table changed after the release');
my ($tmin, $tmax) = split /\|/, $touched_before;
is( $node->sql(q{SELECT min(touched) || '|' || max(touched) FROM stats}),
	($tmin + 1) . '|' . ($tmax + 1),
	'the waiting run updated every row once');
ok( $node->poll_query_until(
		$db,
		q{SELECT count(*) = 0 FROM chunkbatch.groups WHERE lock_group = 'stats'}),
	'chunkbatch.groups no longer lists the idle group');
$outside->quit;

# ---------------------------------------------------------------------------
# 6. 200 runs of three jobs of one group from 4 concurrent sessions.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE bulk_counter (n int NOT NULL);
INSERT INTO bulk_counter VALUES (0);
SELECT chunkbatch.create_job(
  job_name => 'bulk_' || j,
  chunk_sql => 'UPDATE bulk_counter SET n = n + 1 WHERE $2 IS NULL RETURNING 1',
  cursor_type => 'int', lock_group => 'bulk')
  FROM unnest(ARRAY['a', 'b', 'c']) j;
SELECT chunkbatch.create_job(
  job_name => 'bulk_hold',
  chunk_sql => 'SELECT 1 FROM pg_sleep(1) WHERE $2 IS NULL',
  cursor_type => 'int', lock_group => 'bulk');
});

# A run of the group holds it (for 1 s) while the 200 requests arrive, so
# that their order is their run_id order: a run_id is taken before the
# queueing transaction commits, and the scheduler can only see committed
# runs, so two runs queued within the same millisecond into a free group
# could be seen in commit order rather than run_id order.
my $bulk_hold = $node->queue_run('bulk_hold');
ok($node->poll_run($bulk_hold, "state = 'running'"),
	'a run of the group holds it');

# The sessions queue their runs when this session releases the barrier.
my $barrier_key = 4242;
my $barrier = $node->background_psql($db);
$barrier->query_safe("SELECT pg_advisory_lock($barrier_key)");
my @sessions;
foreach my $s (0 .. 3)
{
	my $psql = $node->background_psql($db);
	my $script =
	    "\\echo session-$s-ready\n"
	  . "SELECT pg_advisory_lock_shared($barrier_key);\n"
	  . "SELECT pg_advisory_unlock_shared($barrier_key);\n";
	foreach my $i (0 .. 49)
	{
		my $job = ('a', 'b', 'c')[ ($s * 50 + $i) % 3 ];
		$script .= "SELECT chunkbatch.run('bulk_$job');\n";
	}
	$script .= "\\echo session-$s-done\n";
	$psql->query_until(qr/session-$s-ready\n/, $script);
	push @sessions, $psql;
}
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) = 4 FROM pg_locks
          WHERE locktype = 'advisory' AND NOT granted
            AND objid = $barrier_key AND mode = 'ShareLock'"),
	'4 sessions wait at the barrier');
$t_start = time;
$barrier->query_safe("SELECT pg_advisory_unlock($barrier_key)");

my @bulk;
foreach my $s (0 .. 3)
{
	my $out = $sessions[$s]->query_until(qr/session-$s-done\n/, '');
	my @ids = $out =~ /^(\d+)$/mg;
	# run ids only: the barrier's statements print an empty line and t
	is(scalar(@ids), 50, "session $s queued 50 runs");
	push @bulk, @ids;
	$sessions[$s]->quit;
}
$barrier->quit;
my $queue_secs = time - $t_start;
my %distinct = map { $_ => 1 } @bulk;
is(scalar(keys %distinct), 200, '200 distinct runs queued');

my $bulk_list = join(',', @bulk);
is($node->final_state($bulk_hold, '30s'),
	'succeeded', 'the run holding the group succeeds');
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) = 200 FROM chunkbatch.runs
          WHERE run_id IN ($bulk_list)
            AND state IN ('succeeded', 'failed', 'cancelled', 'skipped')"),
	'all 200 runs end');
my $bulk_secs = time - $t_start;
is( $node->sql(
		"SELECT count(*) FILTER (WHERE state = 'succeeded'),
                count(DISTINCT job_name), count(DISTINCT lock_group)
           FROM chunkbatch.runs WHERE run_id IN ($bulk_list)"),
	'200|3|1',
	'all 200 runs of the 3 jobs of one group succeeded');
is($node->sql(q{SELECT n FROM bulk_counter}), '200', 'each run did its work once');
my $bulk_overlaps = overlaps([ $bulk_hold, @bulk ]);
is($bulk_overlaps, '0', 'no two of the 200 runs (and the holder) overlap');
my $bulk_inversions = inversions([ $bulk_hold, @bulk ]);
is($bulk_inversions, '0',
	'the 200 runs (and the holder) started in run_id order')
  or diag(
	$node->sql(
		"SELECT string_agg(run_id || ' ' || job_name || ' queued ' || queued_at
                           || ' started ' || started_at, E'\\n' ORDER BY started_at)
           FROM chunkbatch.runs WHERE run_id IN ($bulk_list)"));
note(sprintf(
		"200 runs of one group from 4 sessions: queued in %.2f s "
		  . "(%s of them while the holder ran), all ended %.2f s after the "
		  . "barrier, %s s after the holder (%s ms per run), %d overlapping "
		  . "pairs, %d start-order inversions, longest group wait %s ms",
		$queue_secs,
		$node->sql(
			"SELECT count(*) FROM chunkbatch.runs r, chunkbatch.runs h
              WHERE r.run_id IN ($bulk_list) AND h.run_id = $bulk_hold
                AND r.queued_at < h.finished_at"),
		$bulk_secs,
		split(/\|/, $node->sql(
			"SELECT round(extract(epoch FROM max(r.finished_at) - h.finished_at)::numeric, 2),
                    round(extract(epoch FROM max(r.finished_at) - h.finished_at)::numeric * 1000 / 200, 1)
               FROM chunkbatch.runs r, chunkbatch.runs h
              WHERE r.run_id IN ($bulk_list) AND h.run_id = $bulk_hold
              GROUP BY h.finished_at")),
		$bulk_overlaps, $bulk_inversions,
		$node->sql(
			"SELECT round(max(group_wait_ms)) FROM chunkbatch.runs
              WHERE run_id IN ($bulk_list)")));

$node->stop;
done_testing();
