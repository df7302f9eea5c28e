# Copyright (c) 2026, chunkbatch developers
#
# Pacing: adaptive chunk size, throttling, live retuning, yielding to lock
# waiters, progress and ETA, sleep_ratio.
#
# - adaptive sizing converges: a keyset UPDATE of 400,000 rows with
#   target_chunk_ms => 50, starting at batch_size 100, ends with avg_chunk_ms
#   within 25-100 ms and a batch size different from 100 (and the chunks of
#   its second half take 25-100 ms at the median);
# - a knee (chunks above some size cost far more per row) is grown into at
#   most once: later chunks stay at or below the last efficient size;
#   but a slowdown of every size that comes just as the size grows (a busy
#   server) is no knee: the chunk at the last efficient size that checks it
#   is as slow, no ceiling is learned and the size grows past it again;
# - throttle_sql returning true holds the run: state 'throttled' with the
#   reason in chunkbatch.status_detail, rows_done does not move for 1.5 s; returning
#   false releases it, the run finishes, runs.throttled_ms counts the hold;
#   an alter_job that replaces throttle_sql applies while the run waits;
# - alter_job(batch_size => 25) during a run of batch 10: every chunk that
#   starts after the change was committed (all but the one in flight) asks
#   for and processes 25 rows;
# - an outside session blocked on a row that a chunk holds makes the next
#   chunk half the size (then it grows back), and lock_waiters_seen counts it;
#   every halved chunk follows a chunk that was waited for;
# - count_sql: while running, chunkbatch.status_detail shows total_estimate,
#   percent in (0, 100), a progress bar '[###.....]' matching the percent,
#   and rows_per_sec and an ETA that describe this run (its worker slot was
#   used by the runs before it);
# - sleep_ratio => 1 makes a run last at least about twice the sum of its
#   chunk times; the same job with sleep_ratio => 0 does not.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create('pacing', extension_in => ['postgres']);

my $db = 'postgres';
my $script_start = time;

# Run $query until it returns a non-empty value; that value, or undef after
# $timeout seconds.
sub poll_value
{
	my ($query, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	while (time < $deadline)
	{
		my $out = $node->sql($query);
		return $out if $out ne '';
		usleep(20_000);
	}
	diag("poll_value timed out: $query");
	return undef;
}

# A slow keyset chunk that logs itself: it updates the next n rows of tbl
# (locking them), records its job, requested size, processed rows and
# transaction id in chunk_log, then sleeps `pause` seconds if it processed
# rows (still holding the row locks), and returns the keys.
$node->sql(q{
CREATE TABLE chunk_log (
    seq        bigserial PRIMARY KEY,
    job        text NOT NULL,
    requested  int NOT NULL,
    processed  int NOT NULL,
    xid        text NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION slow_chunk(job text, tbl regclass, n int, after_id bigint,
                           pause float8)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
DECLARE
  cnt bigint;
BEGIN
  RETURN QUERY EXECUTE format(
    'UPDATE %s SET counter = counter + 1
      WHERE id IN (SELECT id FROM %s WHERE $2 IS NULL OR id > $2
                    ORDER BY id LIMIT $1)
     RETURNING id', tbl, tbl) USING n, after_id;
  GET DIAGNOSTICS cnt = ROW_COUNT;
  INSERT INTO chunk_log (job, requested, processed, xid)
  VALUES (job, n, cnt, pg_current_xact_id()::text);
  IF cnt > 0 THEN
    PERFORM pg_sleep(pause);
  END IF;
  RETURN;
END
$$;
});

# ---------------------------------------------------------------------------
# 1. Adaptive sizing: target_chunk_ms 50 from batch_size 100, 400,000 rows.
#    Each chunk also logs its requested size and its duration so far.  The
#    chunk selects its keys with "= ANY (ARRAY(...))", whose plan does not
#    change with the size ("IN (SELECT ... LIMIT $1)" turns into a sequential
#    scan above about 1,500 rows here: a knee, see 1b).
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE ad_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                       pad text NOT NULL);
INSERT INTO ad_items (id, pad)
SELECT g, repeat('x', 40) FROM generate_series(1, 400000) g;
VACUUM ANALYZE ad_items;
CREATE TABLE ad_log (seq bigserial, requested int, processed int, ms float8);
SELECT chunkbatch.create_job(
  job_name => 'adaptive',
  chunk_sql => $$WITH u AS (UPDATE ad_items SET counter = counter + 1
                            WHERE id = ANY (ARRAY(SELECT id FROM ad_items
                                                   WHERE $2 IS NULL OR id > $2
                                                   ORDER BY id LIMIT $1))
                            RETURNING id),
                     l AS (INSERT INTO ad_log (requested, processed, ms)
                           SELECT $1, count(*),
                                  extract(epoch FROM clock_timestamp()
                                                     - statement_timestamp()) * 1000
                             FROM u)
                SELECT id FROM u$$,
  batch_size => 100,
  cursor_type => 'bigint',
  target_chunk_ms => 50);
});

my $t0 = time;
my $ad_run = $node->queue_run('adaptive');
is($node->final_state($ad_run, '120s'), 'succeeded', 'the adaptive run succeeds');
my $ad_secs = time - $t0;
is($node->once_count('ad_items'), '400000|400000',
	'the adaptive run processed every row exactly once');

my ($ad_batch, $ad_chunks, $ad_avg, $ad_max) = split /\|/,
  $node->sql("SELECT batch_size, chunks_done, round(avg_chunk_ms::numeric, 1),
              round(max_chunk_ms::numeric, 1)
         FROM chunkbatch.runs WHERE run_id = $ad_run");
cmp_ok($ad_chunks, '>=', 20,
	"the adaptive run took enough chunks to converge ($ad_chunks)");
ok($ad_avg >= 25 && $ad_avg <= 100,
	"avg_chunk_ms $ad_avg is within 25-100 ms of a 50 ms target");
isnt($ad_batch, '100', "runs.batch_size moved from its start of 100 to $ad_batch");
is( $node->sql(q{SELECT requested FROM ad_log ORDER BY seq LIMIT 1}),
	'100', 'the first chunk asked for the starting batch size 100');

# The chunks of the second half (past the ramp-up) take about the target.
my ($ad_median, $ad_half_min_req, $ad_half_max_req) = split /\|/, $node->sql(
	q{SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
             min(requested), max(requested)
        FROM (SELECT ms, requested, row_number() OVER (ORDER BY seq) rn,
                     count(*) OVER () n
                FROM ad_log WHERE processed > 0) s
       WHERE rn > n / 2});
ok($ad_median >= 25 && $ad_median <= 100,
	"the median chunk of the second half took $ad_median ms (25-100)");
note(sprintf(
		"adaptive: %d chunks in %.1f s, final batch_size %s, avg %s ms, "
		  . "max %s ms; second half: median %s ms, batch %s-%s; first sizes: %s",
		$ad_chunks, $ad_secs, $ad_batch, $ad_avg, $ad_max, $ad_median,
		$ad_half_min_req, $ad_half_max_req,
		$node->sql(q{SELECT string_agg(requested::text, ' ' ORDER BY seq)
                FROM (SELECT * FROM ad_log ORDER BY seq LIMIT 10) s})));

# ---------------------------------------------------------------------------
# 1b. A knee: chunks of more than 3000 rows cost 150 ms whatever their size
#     (like a plan that switches to a sequential scan above some LIMIT),
#     smaller ones about 2 us per row.  Adaptive sizing at 50 ms grows into
#     the slow size, tries it once more (one slow chunk may be noise), then
#     keeps every later chunk at or below the last efficient size, and says
#     so in the server log.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE knee_log (seq bigserial, requested int, processed int);
SELECT chunkbatch.create_job(
  job_name => 'knee',
  chunk_sql => $$WITH k AS (SELECT g FROM generate_series(coalesce($2, 0) + 1,
                                        least(coalesce($2, 0) + $1, 60000)) g),
                     s AS (SELECT pg_sleep(CASE WHEN count(*) > 3000 THEN 0.15
                                               ELSE count(*) * 0.000002 END)
                             FROM k),
                     l AS (INSERT INTO knee_log (requested, processed)
                           SELECT $1, count(*) FROM k)
                SELECT g FROM k, s$$,
  batch_size => 500,
  cursor_type => 'bigint',
  target_chunk_ms => 50);
});
my $log_offset = -s $node->logfile;
my $knee_run = $node->queue_run('knee');
is($node->final_state($knee_run, '120s'), 'succeeded', 'the run with a knee succeeds');
is( $node->sql("SELECT rows_done FROM chunkbatch.runs WHERE run_id = $knee_run"),
	'60000', 'the run with a knee processed every row');
my ($knee_slow, $knee_first_slow, $knee_after_max) = split /\|/, $node->sql(q{
SELECT count(*) FILTER (WHERE processed > 3000),
       min(seq) FILTER (WHERE processed > 3000),
       max(requested) FILTER (WHERE seq > (SELECT max(seq) FROM knee_log
                                            WHERE processed > 3000))
  FROM knee_log});
is($knee_slow, '2', 'exactly two chunks ran past the knee (the second confirms it)');
cmp_ok($knee_after_max, '<=', 3000,
	"every chunk after the confirming one stayed below the knee (largest request $knee_after_max)");
ok( $node->log_contains(
		qr/chunkbatch run $knee_run of job "knee": chunks of \d+ rows ran at .* twice; its chunks stay at most \d+ rows/,
		$log_offset),
	'the knee is reported in the server log');
note('knee: sizes '
	  . $node->sql(q{SELECT string_agg(requested::text, ' ' ORDER BY seq)
                FROM (SELECT * FROM knee_log ORDER BY seq LIMIT 12) s}));

# ---------------------------------------------------------------------------
# 1c. Not a knee: from the fourth chunk on every chunk costs four times as
#     much per row (the server slowed down), just as the size grows (from
#     1,600 to about 6,000).  Two slow chunks of that size, then the check
#     at 1,600 is as slow per row: no ceiling, and the size grows past it.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE busy_log (seq bigserial, requested int, processed int);
SELECT chunkbatch.create_job(
  job_name => 'busy',
  chunk_sql => $$WITH k AS (SELECT g FROM generate_series(coalesce($2, 0) + 1,
                                        least(coalesce($2, 0) + $1, 80000)) g),
                     s AS (SELECT pg_sleep(count(*) * 0.000005
                                           * CASE WHEN (SELECT count(*) FROM busy_log) >= 3
                                                  THEN 4 ELSE 1 END)
                             FROM k),
                     l AS (INSERT INTO busy_log (requested, processed)
                           SELECT $1, count(*) FROM k)
                SELECT g FROM k, s$$,
  batch_size => 100,
  cursor_type => 'bigint',
  target_chunk_ms => 50);
});
$log_offset = -s $node->logfile;
my $busy_run = $node->queue_run('busy');
is($node->final_state($busy_run, '120s'), 'succeeded', 'the run on a slowed server succeeds');
my $busy_sizes = $node->sql(q{SELECT string_agg(requested::text, ' ' ORDER BY seq)
                               FROM (SELECT * FROM busy_log ORDER BY seq LIMIT 12) s});
note("busy: sizes $busy_sizes");
my @busy = split / /, $busy_sizes;
ok( @busy > 6 && $busy[3] > $busy[2] && $busy[4] == $busy[3] && $busy[5] == $busy[2],
	'the size grew into the slowdown, tried that size again, then checked the last efficient size');
ok( !$node->log_contains(qr/chunkbatch run $busy_run of job "busy": .* its chunks stay at most/,
		$log_offset),
	'a slowdown of every size is not taken for a knee');
cmp_ok($node->sql(q{SELECT max(requested) FROM busy_log WHERE seq > 6}),
	'>', $busy[5], 'and the size grows past the checked size again');

# ---------------------------------------------------------------------------
# 2. throttle_sql holds the run while it returns true.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE gate (hold boolean NOT NULL);
INSERT INTO gate VALUES (false);
CREATE TABLE th_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO th_items (id) SELECT generate_series(1, 2000);
SELECT chunkbatch.create_job(
  job_name => 'gated',
  chunk_sql => $$SELECT * FROM slow_chunk('gated', 'th_items', $1, $2, 0.05)$$,
  batch_size => 20,
  cursor_type => 'bigint',
  throttle_sql => 'SELECT hold FROM gate');
});

my $th_run = $node->queue_run('gated');
ok( $node->poll_query_until(
		$db,
		"SELECT state = 'running' AND rows_done > 0
           FROM chunkbatch.status_detail WHERE run_id = $th_run"),
	'the gated run is running with rows done');
$node->sql(q{UPDATE gate SET hold = true});
my $t_hold = time;
# Until the run is throttled or has ended (a failure must not look like a
# long wait).
ok( $node->poll_run($th_run, "state NOT IN ('queued', 'waiting', 'running')"),
	'the gated run leaves the running state');
my $th_react = time - $t_hold;
is( $node->sql("SELECT state, throttle_reason, throttled_for > '0'
           FROM chunkbatch.status_detail WHERE run_id = $th_run"),
	"throttled|throttle_sql returned true|t",
	'chunkbatch.status_detail shows the run throttled by throttle_sql, with throttled_for'
);
my $th_rows = $node->sql(
	"SELECT rows_done FROM chunkbatch.status_detail WHERE run_id = $th_run");
my $th_log = $node->sql(q{SELECT count(*) FROM chunk_log WHERE job = 'gated'});
usleep(1_500_000);
is( $node->sql("SELECT state, rows_done, worker_pid IS NOT NULL,
                throttled_for >= interval '1.5 s'
           FROM chunkbatch.status_detail WHERE run_id = $th_run"),
	"throttled|$th_rows|t|t",
	"rows_done stays at $th_rows for 1.5 s while throttled, its worker waiting");
is($node->sql(q{SELECT count(*) FROM chunk_log WHERE job = 'gated'}),
	$th_log, 'no chunk committed while throttled');
cmp_ok($th_rows, '<', 2000, 'the throttled run is not finished');

$node->sql(q{UPDATE gate SET hold = false});
my $t_release = time;
is($node->final_state($th_run, '60s'), 'succeeded',
	'after throttle_sql returns false the run finishes');
my $th_after = time - $t_release;
my ($th_ms, $th_reason, $th_since) = split /\|/,
  $node->sql("SELECT round(throttled_ms), throttle_reason IS NULL, throttled_since IS NULL
         FROM chunkbatch.runs WHERE run_id = $th_run");
cmp_ok($th_ms, '>=', 1500,
	"runs.throttled_ms counts the hold of at least 1.5 s ($th_ms ms)");
is("$th_reason|$th_since", 't|t',
	'throttle_reason and throttled_since are cleared after the hold');
is($node->once_count('th_items'), '2000|2000',
	'the gated run processed every row exactly once');
note(sprintf(
		"throttle_sql: throttled %.2f s after the gate closed at %d rows, "
		  . "throttled_ms %s, run done %.2f s after the gate opened",
		$th_react, $th_rows, $th_ms, $th_after));

# ---------------------------------------------------------------------------
# 2b. alter_job while a run is throttled applies at once: replacing its
#     throttle_sql releases a run that the old predicate still holds.
# ---------------------------------------------------------------------------
$node->sql(q{
TRUNCATE th_items;
INSERT INTO th_items (id) SELECT generate_series(1, 200);
UPDATE gate SET hold = true;
});
my $th2_run = $node->queue_run('gated');
ok( $node->poll_run($th2_run, "state NOT IN ('queued', 'waiting', 'running')"),
	'a run queued while the gate is closed is throttled');
usleep(300_000);
is( $node->sql("SELECT state, rows_done FROM chunkbatch.runs WHERE run_id = $th2_run"),
	'throttled|0', 'it holds before its first chunk');
my $t_alter = time;
$node->sql(q{SELECT chunkbatch.alter_job('gated', throttle_sql => 'SELECT false')});
is($node->final_state($th2_run, '60s'), 'succeeded',
	'alter_job replacing throttle_sql releases the throttled run');
my $th2_after = time - $t_alter;
cmp_ok($th2_after, '<', 10,
	sprintf('the run finished %.2f s after alter_job', $th2_after));
is($node->sql(q{SELECT hold FROM gate}), 't', 'the old predicate still says hold');
is($node->once_count('th_items'), '200|200',
	'the released run processed every row exactly once');
$node->sql(q{UPDATE gate SET hold = false;
      SELECT chunkbatch.alter_job('gated', throttle_sql => 'SELECT hold FROM gate')});

# ---------------------------------------------------------------------------
# 3. alter_job(batch_size) during a run changes the chunks that follow.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE al_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO al_items (id) SELECT generate_series(1, 600);
SELECT chunkbatch.create_job(
  job_name => 'retuned',
  chunk_sql => $$SELECT * FROM slow_chunk('retuned', 'al_items', $1, $2, 0.1)$$,
  batch_size => 10,
  cursor_type => 'bigint');
});
my $al_run = $node->queue_run('retuned');
ok( $node->poll_query_until(
		$db, q{SELECT count(*) >= 3 FROM chunk_log WHERE job = 'retuned'}),
	'the retuned run committed 3 chunks of batch 10');
# The chunks counted in the snapshot of the alter_job statement committed
# before the change did, so they ran with the old size (al_low).  Chunks
# counted right after it committed (al_high) may have run with either; one
# more may have been in flight.  So the run switches to the new size once,
# at a chunk after al_low and no later than al_high + 2, and every chunk
# from there on asks for 25.
my $al_low = $node->sql(
	q{SELECT (SELECT count(*) FROM chunk_log WHERE job = 'retuned')
               FROM (SELECT chunkbatch.alter_job('retuned', batch_size => 25)) a});
my $al_high = $node->sql(q{SELECT count(*) FROM chunk_log WHERE job = 'retuned'});
is($node->final_state($al_run, '60s'), 'succeeded', 'the retuned run succeeds');
my $al_switch = $node->sql(
	q{SELECT min(rn) FROM (SELECT requested, row_number() OVER (ORDER BY seq) rn
                               FROM chunk_log WHERE job = 'retuned') s
       WHERE requested = 25});
$al_switch = 0 if $al_switch eq '';	# no chunk asked for 25: fails below
my $al_before = $al_switch - 1;
my $al_first = $al_switch;
is( $node->sql(qq{
SELECT count(*) FILTER (WHERE rn < $al_switch AND requested <> 10),
       count(*) FILTER (WHERE rn >= $al_switch AND requested <> 25),
       count(*) FILTER (WHERE rn >= $al_switch AND processed = 25) >= 10,
       count(*) FILTER (WHERE rn >= $al_switch AND processed NOT IN (0, 25)) <= 1,
       $al_switch > $al_low AND $al_switch <= $al_high + 2
  FROM (SELECT requested, processed, row_number() OVER (ORDER BY seq) rn
          FROM chunk_log WHERE job = 'retuned') s}),
	'0|0|t|t|t',
	"chunks 1-$al_before used batch 10; every chunk from $al_first on asked for 25 and full ones processed 25 (alter_job between chunks $al_low and $al_high)"
);
is( $node->sql("SELECT batch_size FROM chunkbatch.runs WHERE run_id = $al_run"),
	'25', 'runs.batch_size shows the new size');
is($node->once_count('al_items'), '600|600',
	'the retuned run processed every row exactly once');
ok( $node->log_contains(
		qr/chunkbatch run $al_run of job "retuned" takes the job's new settings/),
	'the server log shows the run taking the new settings');
note('retuned: chunk sizes '
	  . $node->sql(q{SELECT string_agg(requested || '/' || processed, ' ' ORDER BY seq)
                FROM chunk_log WHERE job = 'retuned'})
	  . " (requested/processed), alter_job after chunk $al_low");

# ---------------------------------------------------------------------------
# 4. An outside session waiting on a row the run locks: the next chunk is
#    half the size.  Each chunk updates 20 rows, then sleeps 0.3 s holding
#    their locks; the outside session updates one of them.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE lw_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                       outside int NOT NULL DEFAULT 0);
INSERT INTO lw_items (id) SELECT generate_series(1, 300);
SELECT chunkbatch.create_job(
  job_name => 'yielding',
  chunk_sql => $$SELECT * FROM slow_chunk('yielding', 'lw_items', $1, $2, 0.3)$$,
  batch_size => 20,
  cursor_type => 'bigint');
});

my $outside = $node->background_psql($db);
my $outside_pid = $outside->query_safe('SELECT pg_backend_pid()');
my $lw_run = $node->queue_run('yielding');
my ($blocked_xid, $blocked_row);
for my $attempt (1 .. 5)
{
	# A chunk past the first is sleeping: it holds rows cursor+1 ... +20.
	my $cursor = poll_value(
		"SELECT r.cursor FROM chunkbatch.runs r
           JOIN pg_stat_activity a
             ON a.backend_type = 'chunkbatch run worker'
            AND a.application_name LIKE 'chunkbatch run $lw_run:%'
          WHERE r.run_id = $lw_run AND r.cursor IS NOT NULL
            AND a.wait_event = 'PgSleep'", 30);
	last unless defined $cursor;
	my $row = $cursor + 1;
	$outside->query_until(qr/sent/,
		"\\echo sent\nUPDATE lw_items SET outside = outside + 1 WHERE id = $row;\n");
	# Either it waits for a chunk's transaction, or it already got through.
	my $seen = poll_value(
		"SELECT COALESCE(
           (SELECT 'waits ' || l.transactionid FROM pg_locks l
             WHERE l.pid = $outside_pid AND NOT l.granted
               AND l.locktype = 'transactionid' LIMIT 1),
           (SELECT 'done' FROM lw_items WHERE id = $row AND outside > 0), '')",
		30);
	$outside->query_safe('SELECT 1');    # the UPDATE has finished
	if (defined $seen && $seen =~ /^waits (\d+)$/)
	{
		($blocked_xid, $blocked_row) = ($1, $row);
		last;
	}
	note("attempt $attempt: the outside UPDATE of row $row did not wait ("
		  . ($seen // 'timeout') . ')');
}
ok(defined $blocked_xid,
	'the outside session blocked on a row held by a chunk of the run');
$blocked_xid //= 0;
$blocked_row //= 0;
is($node->final_state($lw_run, '60s'), 'succeeded', 'the yielding run succeeds');
$outside->quit;

my $lw_seen = $node->sql(
	"SELECT lock_waiters_seen FROM chunkbatch.runs WHERE run_id = $lw_run");
cmp_ok($lw_seen, '>=', 1, "runs.lock_waiters_seen counts the wait ($lw_seen)");
# The chunk waited for was halved after it, and grew back by doubling.
# (Under load an earlier attempt's UPDATE may have waited too, briefly:
# then the chunk waited for was already halved once.)
is( $node->sql(qq{
SELECT next_requested * 2 = requested,
       after_requested = LEAST(20, next_requested * 2),
       $blocked_row BETWEEN first_id AND last_id
  FROM (SELECT xid, requested, processed,
               lead(requested) OVER w AS next_requested,
               lead(requested, 2) OVER w AS after_requested,
               sum(processed) OVER w - processed + 1 AS first_id,
               sum(processed) OVER w AS last_id
          FROM chunk_log WHERE job = 'yielding'
        WINDOW w AS (ORDER BY seq)) s
 WHERE xid = '$blocked_xid'}),
	't|t|t',
	"the chunk waited for (xid $blocked_xid, holding row $blocked_row) was halved after it, then grew back by doubling"
);
# Every chunk's successor was halved (after a lock wait) or doubled up to
# the batch size of 20, and there were as many halvings as lock waits.
is( $node->sql(q{
SELECT count(*) FILTER (WHERE next_req * 2 = req),
       count(*) FILTER (WHERE next_req * 2 <> req AND next_req <> LEAST(20, req * 2))
  FROM (SELECT requested AS req, lead(requested) OVER (ORDER BY seq) AS next_req
          FROM chunk_log WHERE job = 'yielding') s
 WHERE next_req IS NOT NULL}),
	"$lw_seen|0",
	'as many chunks were halved as lock waits were seen; every other one doubled back toward 20'
);
is($node->once_count('lw_items'), '300|300',
	'the yielding run processed every row exactly once');
is($node->sql("SELECT outside FROM lw_items WHERE id = $blocked_row"),
	'1', 'the outside UPDATE went through after the chunk committed');
note('yielding: chunk sizes '
	  . $node->sql(q{SELECT string_agg(requested::text, ' ' ORDER BY seq)
                FROM chunk_log WHERE job = 'yielding'})
	  . ", lock_waiters_seen $lw_seen");

# ---------------------------------------------------------------------------
# 5. count_sql: total, percent, ETA and progress bar while running.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE pr_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO pr_items (id) SELECT generate_series(1, 1000);
SELECT chunkbatch.create_job(
  job_name => 'progress',
  chunk_sql => $$SELECT * FROM slow_chunk('progress', 'pr_items', $1, $2, 0.1)$$,
  batch_size => 40,
  cursor_type => 'bigint',
  count_sql => 'SELECT count(*) FROM pr_items WHERE counter = 0');
});
my $pr_run = $node->queue_run('progress');
# Two chunks done (or the run over, which fails below).
ok( $node->poll_query_until(
		$db,
		"SELECT COALESCE((SELECT rows_done >= 80 FROM chunkbatch.status_detail
                           WHERE run_id = $pr_run), true)"),
	'the progress run has done two chunks');
my ($pr_state, $pr_total, $pr_rows, $pr_pct, $pr_bar, $pr_eta, $pr_rate,
	$pr_elapsed)
  = map { $_ // '' } split /\|/,
  $node->sql("SELECT state, total_estimate, rows_done, percent, progress,
              extract(epoch FROM eta), rows_per_sec, extract(epoch FROM elapsed)
         FROM chunkbatch.status_detail WHERE run_id = $pr_run");
is($pr_state, 'running', 'the progress run is running');
is($pr_total, '1000', 'total_estimate is the count_sql result, 1000');
ok($pr_pct > 0 && $pr_pct < 100,
	"percent $pr_pct is between 0 and 100 while running");
is($pr_pct, sprintf('%.1f', $pr_rows * 100 / $pr_total),
	"percent is rows_done $pr_rows of 1000");
like($pr_bar, qr/^\[#*\.*\]$/, "progress is a text bar: $pr_bar");
is(length($pr_bar), 22, 'the bar is 20 cells between brackets');
is(($pr_bar =~ tr/#//), int($pr_pct / 5 + 0.5),
	'the bar has one # per 5 percent');
ok($pr_rate ne '' && $pr_rate > 0,
	"rows_per_sec is measured while running ($pr_rate)");
ok($pr_eta ne '' && $pr_eta > 0, "eta is set while running ($pr_eta s)");

# The rate and the ETA must describe this run.  Its worker slot was used by
# the runs above: nothing of theirs may leak into the figures.  The run's
# own average since it started is a floor for its recent rate (the first
# chunk also waited for count_sql), give or take.
my $pr_avg_rate = $pr_rows / ($pr_elapsed || 1) || 1;
my $pr_true_eta = (($pr_total || 1000) - $pr_rows) / $pr_avg_rate;
ok( $pr_rate ne ''
	  && $pr_rate >= 0.5 * $pr_avg_rate
	  && $pr_rate <= 3 * $pr_avg_rate,
	sprintf('rows_per_sec %s is this run\'s rate (%.0f rows/s on average so far)',
		$pr_rate, $pr_avg_rate));
ok($pr_eta ne '' && $pr_eta <= 2 * $pr_true_eta + 1,
	sprintf('eta %s s fits the remaining %d rows at %.0f rows/s (%.1f s)',
		$pr_eta, ($pr_total || 1000) - $pr_rows, $pr_avg_rate, $pr_true_eta));
is($node->final_state($pr_run, '60s'), 'succeeded', 'the progress run succeeds');
is( $node->sql("SELECT total_estimate, rows_done FROM chunkbatch.runs WHERE run_id = $pr_run"),
	'1000|1000', 'runs keeps total_estimate next to rows_done');
note(sprintf(
		"progress: %s of %s rows after %.2f s, %s %%, %s, rows_per_sec %s "
		  . "(average %.0f), eta %s s (remaining at the average: %.1f s)",
		$pr_rows, $pr_total, $pr_elapsed, $pr_pct, $pr_bar, $pr_rate,
		$pr_avg_rate, $pr_eta, $pr_true_eta));

# ---------------------------------------------------------------------------
# 6. sleep_ratio => 1: the run sleeps as long as its chunks took.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE sr_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO sr_items (id) SELECT generate_series(1, 1000);
SELECT chunkbatch.create_job(
  job_name => 'ratio',
  chunk_sql => $$SELECT * FROM slow_chunk('ratio', 'sr_items', $1, $2, 0.05)$$,
  batch_size => 50,
  cursor_type => 'bigint',
  sleep_ratio => 1);
});

# Wall time of a run divided by the sum of its chunk times.
sub run_ratio
{
	my ($run) = @_;
	return split /\|/, $node->sql(
		"SELECT round((extract(epoch FROM finished_at - started_at) * 1000
                       / (chunks_done * avg_chunk_ms))::numeric, 2),
                round((extract(epoch FROM finished_at - started_at) * 1000)::numeric),
                round((chunks_done * avg_chunk_ms)::numeric), chunks_done
           FROM chunkbatch.runs WHERE run_id = $run");
}

my $sr_run = $node->queue_run('ratio');
is($node->final_state($sr_run, '60s'), 'succeeded', 'the sleep_ratio 1 run succeeds');
my ($sr_ratio, $sr_wall, $sr_sum, $sr_chunks) = run_ratio($sr_run);
cmp_ok($sr_ratio, '>=', 1.8,
	"with sleep_ratio 1 the run took $sr_wall ms for $sr_sum ms of chunks (x$sr_ratio)"
);

$node->sql(q{UPDATE sr_items SET counter = 0;
SELECT chunkbatch.alter_job('ratio', sleep_ratio => 0)});
my $sr0_run = $node->queue_run('ratio');
is($node->final_state($sr0_run, '60s'), 'succeeded', 'the sleep_ratio 0 run succeeds');
my ($sr0_ratio, $sr0_wall, $sr0_sum) = run_ratio($sr0_run);
cmp_ok($sr0_ratio, '<', 1.5,
	"with sleep_ratio 0 the run took $sr0_wall ms for $sr0_sum ms of chunks (x$sr0_ratio)"
);
note("sleep_ratio: 1 -> x$sr_ratio ($sr_wall ms / $sr_sum ms, $sr_chunks chunks);"
	  . " 0 -> x$sr0_ratio ($sr0_wall ms / $sr0_sum ms)");

note(sprintf('pacing test: %.1f s in all', time - $script_start));

$node->stop;
done_testing();
