# Copyright (c) 2026, chunkbatch developers
#
# Failures and run control, with separate sessions and real waiting.
#
# - an outside transaction holds a row lock for 3 s: with lock_timeout =>
#   '100ms' the chunk is retried (retries >= 1) and the run completes with
#   every row processed once;
# - a forced deadlock (the chunk holds row 1 and wants row 2, an outside
#   session holds row 2 and wants row 1; the outside session's
#   deadlock_timeout is long, so the chunk is the victim) is retried and the
#   run completes;
# - pause holds (rows_done does not move for 1.5 s after the run shows
#   'paused', and no worker is left), resume finishes it with every row
#   exactly once;
# - cancel ends a run within 3 s, even in the middle of a 10 s chunk, whose
#   changes are rolled back;
# - a CHECK violation mid-run ends 'failed' with SQLSTATE 23514 and the
#   checkpoint at the last good chunk; after the bad row is fixed, resume
#   completes the run with every row exactly once;
# - 3 poison rows in 10,000 with on_error => 'isolate', batch 1000 and
#   keys_sql: 9,997 rows committed, exactly the 3 keys in dead_letters, the
#   run succeeded, at a logarithmic number of subtransactions (at most
#   2 * log2(1000) per poison row); more dead letters than max_dead_letters
#   fail the run with 54000;
# - an isolation is a chunk like any other: a statement_timeout that every
#   one of its statements fits in does not dead-letter a good key, and a
#   cancel() during it returns at once, rolls the chunk back and leaves no
#   dead letter;
# - a LISTEN session receives the NOTIFY of finished runs with their run_id
#   and state (and, for the whole script, the last notification of every
#   run matches the run's final state);
# - statement_timeout => '200ms' with chunks of ~50 ms per row at batch 16
#   halves the batch size until a chunk fits, and the run completes;
# - max_runtime => '1s' stops a slow run as 'stopped' (reason max_runtime);
#   resume continues it, one second at a time, to success;
# - history: a finished run older than chunkbatch.history_retention is
#   deleted by a scheduler at its first pass; recent ones stay.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode qw(keyset_sql);

my $node = ChunkbatchNode->create(
	'failures',
	conf => [ 'chunkbatch.max_workers = 4', "deadlock_timeout = '1s'" ],
	extension_in => ['postgres']);

my $db = 'postgres';

# The worker of a run, as pg_stat_activity shows it.
sub worker_where
{
	my ($run) = @_;
	return "backend_type = 'chunkbatch run worker'"
	  . " AND application_name LIKE 'chunkbatch run $run:%'";
}

# Notifications printed by psql for a background session, as decoded
# payloads, after running a trivial command in it.
sub notifications
{
	my ($psql) = @_;
	my $out = $psql->query_safe('SELECT 1');
	my @got;
	while ($out =~
		/Asynchronous notification "chunkbatch" with payload "(.*?)" received from server process/g
	  )
	{
		push @got, decode_json($1);
	}
	return @got;
}

# Listens for the whole script; read at the end.
my $all_listener = $node->background_psql($db);
$all_listener->set_query_timer_restart;
$all_listener->query_safe('LISTEN chunkbatch');

# ---------------------------------------------------------------------------
# 1. Lock timeout: an outside transaction holds row 1 for 3 s.
# ---------------------------------------------------------------------------
$node->sql(qq{
CREATE TABLE lt_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO lt_items (id) SELECT generate_series(1, 1000);
SELECT chunkbatch.create_job(
  job_name => 'lock_timeout_job',
  chunk_sql => \$q\$@{[keyset_sql('lt_items')]}\$q\$,
  batch_size => 100, cursor_type => 'bigint', lock_timeout => '100ms');
});
is( $node->sql(q{SELECT lock_timeout, max_retries FROM chunkbatch.jobs
           WHERE job_name = 'lock_timeout_job'}),
	'00:00:00.1|10',
	'the job stores lock_timeout 100ms and the default max_retries 10');

my $locker = $node->background_psql($db);
$locker->query_safe('BEGIN');
$locker->query_safe('SELECT id FROM lt_items WHERE id = 1 FOR UPDATE');
my $lt_log = -s $node->logfile;
my $t0 = time;
my $lt_run = $node->queue_run('lock_timeout_job');
ok( $node->poll_run($lt_run, "state = 'running'"),
	'the lock-timeout run starts');
usleep(int(1_000_000 * (3 - (time - $t0)))) if time - $t0 < 3;
is( $node->sql("SELECT rows_done, (SELECT sum(counter) FROM lt_items)
           FROM chunkbatch.runs WHERE run_id = $lt_run"),
	'0|0',
	'while the row is locked, no chunk commits');
ok( $node->log_contains(
		qr/run $lt_run of job "lock_timeout_job" retries chunk 1 in \d+ ms \(attempt 1 of 10\): canceling statement due to lock timeout/,
		$lt_log),
	'the server log shows the chunk retried after a lock timeout');
$locker->query_safe('COMMIT');
my $t_release = time;
is($node->final_state($lt_run, '60s'), 'succeeded',
	'the lock-timeout run completes after the lock is released');
my $lt_after_release = time - $t_release;
my $lt_retries =
  $node->sql("SELECT retries FROM chunkbatch.runs WHERE run_id = $lt_run");
cmp_ok($lt_retries, '>=', 1, "runs.retries counts the retries ($lt_retries)");
cmp_ok($lt_retries, '<=', 10, 'no more retries than max_retries');
is( $node->sql("SELECT state, rows_done, sqlstate IS NULL
           FROM chunkbatch.runs WHERE run_id = $lt_run"),
	'succeeded|1000|t', 'rows_done 1000, no error recorded');
is($node->once_count('lt_items'), '1000|1000',
	'every row processed exactly once after the lock-timeout retries');
note(sprintf(
		"lock timeout: row held 3 s, %d retries (lock_timeout 100ms, "
		  . "max_retries 10), run done %.2f s after the release",
		$lt_retries, $lt_after_release));

# Nothing but the lock is different with max_retries => 0: the first lock
# timeout fails the run with 55P03.
$node->sql(q{UPDATE lt_items SET counter = 0;
SELECT chunkbatch.alter_job('lock_timeout_job', max_retries => 0)});
$locker->query_safe('BEGIN');
$locker->query_safe('SELECT id FROM lt_items WHERE id = 1 FOR UPDATE');
my $lt0_run = $node->queue_run('lock_timeout_job');
is($node->final_state($lt0_run, '30s'), 'failed',
	'with max_retries 0 a lock timeout fails the run');
$locker->query_safe('COMMIT');
is( $node->sql("SELECT sqlstate, retries, rows_done, error_chunk
           FROM chunkbatch.runs WHERE run_id = $lt0_run"),
	'55P03|0|0|1', 'failed with SQLSTATE 55P03 in chunk 1, no retry');

# ---------------------------------------------------------------------------
# 2. A forced deadlock.  The first chunk locks row 1, sleeps 2 s, locks
#    row 2.  During the sleep an outside session locks row 2, then waits for
#    row 1: a cycle.  The outside session's deadlock_timeout is 60 s, the
#    worker's 1 s, so the chunk is the one chosen as the victim.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE dl_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO dl_items (id) SELECT generate_series(1, 100);
CREATE TABLE dl_attempts (at timestamptz);
CREATE FUNCTION dl_chunk(n int, after_id bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  IF after_id IS NULL THEN
    PERFORM 1 FROM dl_items WHERE id = 1 FOR UPDATE;
    PERFORM pg_sleep(2);
    PERFORM 1 FROM dl_items WHERE id = 2 FOR UPDATE;
  END IF;
  RETURN QUERY
    UPDATE dl_items SET counter = counter + 1
     WHERE id IN (SELECT i.id FROM dl_items i
                   WHERE after_id IS NULL OR i.id > after_id
                   ORDER BY i.id LIMIT n)
    RETURNING dl_items.id;
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'deadlock_job',
  chunk_sql => 'SELECT * FROM dl_chunk($1, $2)',
  batch_size => 10, cursor_type => 'bigint');
});
my $dl_log = -s $node->logfile;
my $dl_run = $node->queue_run('deadlock_job');
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE "
		  . worker_where($dl_run)
		  . " AND wait_event = 'PgSleep'"),
	'the first chunk holds row 1 and sleeps');
my $other = $node->background_psql($db);
$other->query_safe('BEGIN');
$other->query_safe(q{SET LOCAL deadlock_timeout = '60s'});
$other->query_safe('SELECT id FROM dl_items WHERE id = 2 FOR UPDATE');
# Waits for row 1 until the chunk is rolled back, then commits.
$other->query_until(qr/row1 wait/, q{\echo row1 wait
SELECT id FROM dl_items WHERE id = 1 FOR UPDATE;
COMMIT;
\echo other done
});
$other->query_until(qr/other done\n/, '');
is($other->{stderr}, '',
	'the outside session was not the deadlock victim: it got row 1 and committed');
is($node->final_state($dl_run, '60s'), 'succeeded',
	'the run that hit the deadlock completes');
my $dl_retries =
  $node->sql("SELECT retries FROM chunkbatch.runs WHERE run_id = $dl_run");
cmp_ok($dl_retries, '>=', 1, "the deadlock was retried ($dl_retries)");
ok( $node->log_contains(
		qr/run $dl_run of job "deadlock_job" retries chunk 1 in \d+ ms \(attempt 1 of 10\): deadlock detected/,
		$dl_log),
	'the server log shows chunk 1 retried after "deadlock detected"');
is($node->once_count('dl_items'), '100|100',
	'every row processed exactly once after the deadlock');
is( $node->sql("SELECT rows_done, sqlstate IS NULL FROM chunkbatch.runs WHERE run_id = $dl_run"),
	'100|t', 'rows_done 100, no error recorded');
$other->quit;
note("deadlock: $dl_retries retries");

# ---------------------------------------------------------------------------
# 3. Pause and resume.
# ---------------------------------------------------------------------------
$node->create_slow_job(
	job => 'pause_job',
	table => 'pr_items',
	rows => 600,
	sleep => 0.05,
	batch_size => 10,
	log => 0);
my $pr_run = $node->queue_run('pause_job');
ok( $node->poll_run($pr_run, "state = 'running' AND rows_done >= 50"),
	'the run to pause is running');
$t0 = time;
is($node->sql("SELECT chunkbatch.pause($pr_run)"), 't', 'pause() returns true');
ok( $node->poll_run($pr_run, "state = 'paused'"),
	'the run shows paused');
my $pause_secs = time - $t0;
cmp_ok($pause_secs, '<', 2, sprintf('pause took effect within 2 s (%.2f s)', $pause_secs));
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE " . worker_where($pr_run)),
	'the paused run\'s worker has exited');
my $paused_at = $node->sql(
	"SELECT rows_done || '|' || coalesce(cursor, '') FROM chunkbatch.runs WHERE run_id = $pr_run");
my ($paused_rows) = split /\|/, $paused_at;
cmp_ok($paused_rows, '<', 600, "the run paused in the middle ($paused_rows rows)");
is($node->sql(q{SELECT sum(counter) FROM pr_items}),
	$paused_rows, 'the table matches the paused checkpoint');
is( $node->sql("SELECT s.state, s.worker_pid IS NULL, r.finished_at IS NULL
           FROM chunkbatch.status_detail s JOIN chunkbatch.runs r USING (run_id)
          WHERE run_id = $pr_run"),
	'paused|t|t',
	'chunkbatch.status_detail lists the paused run without a worker, not finished');
usleep(1_500_000);
is( $node->sql(
		"SELECT state, rows_done || '|' || coalesce(cursor, '')
           FROM chunkbatch.runs WHERE run_id = $pr_run"),
	"paused|$paused_at", 'rows_done and cursor do not move for 1.5 s');
is($node->sql(q{SELECT sum(counter) FROM pr_items}),
	$paused_rows, 'nor does the table');
is($node->sql("SELECT chunkbatch.wait($pr_run, '1s')"),
	'paused', 'wait() returns paused');
is($node->sql("SELECT chunkbatch.resume($pr_run)"), 't', 'resume() returns true');
is($node->final_state($pr_run, '60s'), 'succeeded', 'the resumed run succeeds');
is($node->once_count('pr_items'), '600|600',
	'pause and resume: every row processed exactly once');
is( $node->sql("SELECT rows_done, cursor FROM chunkbatch.runs WHERE run_id = $pr_run"),
	'600|600', 'rows_done 600, cursor at the last key');
note(sprintf("pause: took effect after %.2f s at %s rows", $pause_secs,
		$paused_rows));

# ---------------------------------------------------------------------------
# 4. Cancel in the middle of a 10 s chunk.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE cx_items (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO cx_items VALUES (1);
CREATE FUNCTION cx_chunk() RETURNS SETOF int
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE cx_items SET n = n + 1 WHERE id = 1;
  PERFORM pg_sleep(10);
  RETURN NEXT 1;
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'cancel_job',
  chunk_sql => 'SELECT * FROM cx_chunk() WHERE $1 > 0');
});
my $cx_run = $node->queue_run('cancel_job');
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE "
		  . worker_where($cx_run)
		  . " AND wait_event = 'PgSleep'"),
	'the 10 s chunk is executing');
$t0 = time;
is($node->sql("SELECT chunkbatch.cancel($cx_run)"), 't', 'cancel() returns true');
is($node->final_state($cx_run, '10s'), 'cancelled', 'the run ends cancelled');
my $cancel_secs = time - $t0;
cmp_ok($cancel_secs, '<', 3,
	sprintf('cancel ended the run within 3 s (%.2f s)', $cancel_secs));
is( $node->sql("SELECT rows_done, chunks_done, finished_at IS NOT NULL, worker_pid IS NULL
           FROM chunkbatch.runs WHERE run_id = $cx_run"),
	'0|0|t|t', 'no chunk committed');
is($node->sql(q{SELECT n FROM cx_items}), '0', 'the cancelled chunk was rolled back');
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE " . worker_where($cx_run)),
	'the worker has exited');
note(sprintf("cancel: mid-chunk run ended %.2f s after cancel()", $cancel_secs));

# ---------------------------------------------------------------------------
# 5. A CHECK violation mid-run, fixed, then resumed.
# ---------------------------------------------------------------------------
$node->sql(qq{
CREATE TABLE ck_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0
                       CONSTRAINT counter_small CHECK (counter <= 1));
INSERT INTO ck_items (id) SELECT generate_series(1, 100);
UPDATE ck_items SET counter = 1 WHERE id = 55;
SELECT chunkbatch.create_job(
  job_name => 'check_job',
  chunk_sql => \$q\$@{[keyset_sql('ck_items')]}\$q\$,
  batch_size => 10, cursor_type => 'bigint');
});
my $ck_run = $node->queue_run('check_job');
is($node->final_state($ck_run, '60s'), 'failed', 'the run fails on the bad row');
is( $node->sql(
		"SELECT sqlstate, error_chunk, rows_done, chunks_done, cursor,
                error ~ 'counter_small', error_detail LIKE 'Failing row contains%',
                retries, finished_at IS NOT NULL
           FROM chunkbatch.runs WHERE run_id = $ck_run"),
	'23514|6|50|5|50|t|t|0|t',
	'failed with 23514 in chunk 6, checkpoint at the last good chunk (50 rows, cursor 50)'
);
is( $node->sql(q{SELECT count(*) FILTER (WHERE id <= 50 AND counter = 1),
                 count(*) FILTER (WHERE id > 50 AND counter = (id = 55)::int)
            FROM ck_items}),
	'50|50', 'the 5 good chunks are committed, the failed one left nothing');
# fix the row: it has not been processed yet
$node->sql(q{UPDATE ck_items SET counter = 0 WHERE id = 55});
is($node->sql("SELECT chunkbatch.resume($ck_run)"), 't', 'resume() of the failed run');
is($node->final_state($ck_run, '60s'), 'succeeded', 'the resumed run succeeds');
is($node->once_count('ck_items'), '100|100',
	'after the fix and resume every row processed exactly once');
is( $node->sql(
		"SELECT rows_done, cursor, sqlstate IS NULL, error IS NULL, error_chunk IS NULL
           FROM chunkbatch.runs WHERE run_id = $ck_run"),
	'100|100|t|t|t', 'the resumed run has no error left and rows_done 100');

# ---------------------------------------------------------------------------
# 6. Poison rows: 3 in 10,000, on_error => 'isolate', batch 1000.  Each
#    execution of the chunk statement (chunks, the failed attempts and the
#    isolation subtransactions) draws a number from a sequence, which no
#    rollback takes back.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE pz_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                       poison boolean NOT NULL DEFAULT false,
                       CONSTRAINT not_poison CHECK (NOT poison OR counter = 0));
INSERT INTO pz_items (id) SELECT generate_series(1, 10000);
UPDATE pz_items SET poison = true WHERE id IN (1234, 5000, 9999);
CREATE SEQUENCE pz_exec;
SELECT chunkbatch.create_job(
  job_name => 'poison_job',
  chunk_sql => $$UPDATE pz_items SET counter = counter + 1
                  WHERE id IN (SELECT id FROM pz_items WHERE $2 IS NULL OR id > $2
                                ORDER BY id LIMIT $1)
                    AND (SELECT nextval('pz_exec')) > 0
                 RETURNING id$$,
  batch_size => 1000, cursor_type => 'bigint',
  on_error => 'isolate',
  keys_sql => $$SELECT id FROM pz_items WHERE $2 IS NULL OR id > $2
                 ORDER BY id LIMIT $1$$);
});
$t0 = time;
my $pz_run = $node->queue_run('poison_job');
is($node->final_state($pz_run, '120s'), 'succeeded',
	'the run with 3 poison rows succeeds');
my $pz_secs = time - $t0;
is( $node->sql(q{SELECT count(*) FILTER (WHERE counter = 1 AND NOT poison),
                 count(*) FILTER (WHERE counter = 0 AND poison),
                 count(*) FILTER (WHERE counter > 1)
            FROM pz_items}),
	'9997|3|0', '9,997 rows committed once each, the 3 poison rows untouched');
is( $node->sql(
		"SELECT string_agg(key, ',' ORDER BY key::bigint),
                string_agg(DISTINCT sqlstate, ','),
                bool_and(error ~ 'not_poison'), bool_and(job_name = 'poison_job'),
                bool_and(owner::text = current_user)
           FROM chunkbatch.dead_letters WHERE run_id = $pz_run"),
	'1234,5000,9999|23514|t|t|t',
	'exactly the 3 poison keys are in dead_letters, with SQLSTATE 23514 and the error');
is( $node->sql("SELECT rows_done, dead_letters, cursor, sqlstate IS NULL
           FROM chunkbatch.runs WHERE run_id = $pz_run"),
	'9997|3|10000|t', 'runs: rows_done 9997, dead_letters 3, cursor at the end');
# 11 chunk executions (10 with rows, 1 empty), 3 of them failing, plus
# the subtransactions: at most 2 * ceil(log2(1000)) = 20 per poison row.
my $pz_execs = $node->sql(q{SELECT last_value FROM pz_exec});
my $pz_subx = $pz_execs - 11;
cmp_ok($pz_subx, '>', 0, 'isolation used subtransactions');
cmp_ok($pz_subx, '<=', 60,
	"isolation cost at most 2 * log2(1000) subtransactions per poison row ($pz_subx for 3)"
);
note(sprintf(
		"poison rows: 3 in 10,000 at batch 1000: %d chunk statement executions, "
		  . "%d of them isolation subtransactions (%.1f per poison row), run took %.2f s",
		$pz_execs, $pz_subx, $pz_subx / 3, $pz_secs));

# More dead letters than max_dead_letters fail the run.
$node->sql(q{UPDATE pz_items SET counter = 0;
SELECT chunkbatch.alter_job('poison_job', max_dead_letters => 1)});
my $pz2_run = $node->queue_run('poison_job');
is($node->final_state($pz2_run, '120s'), 'failed',
	'with max_dead_letters 1 the run fails at its second dead letter');
is( $node->sql("SELECT sqlstate, rows_done, dead_letters, error_chunk
           FROM chunkbatch.runs WHERE run_id = $pz2_run"),
	'54000|3999|1|5',
	'54000 in chunk 5 (the second poison row); the first chunks and dead letter are kept'
);
is( $node->sql("SELECT string_agg(key, ',') FROM chunkbatch.dead_letters WHERE run_id = $pz2_run"),
	'1234', 'the dead letter of the committed chunk is kept, that of the failed one is not');

# ---------------------------------------------------------------------------
# 6b. Interruptions during isolation.  64 rows, one chunk of 64, one poison
#     row.  Every execution of the chunk statement sleeps 0.1 s, except the
#     single-key try of one chosen key (the one after slow_after), which
#     first draws from iso_marker and then sleeps "slow" seconds.  The tries
#     for a poison row at index p are: [0..31] [0..15] [0..7] [0..3] [4..7]
#     [4,5] [4] [5] ...
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE SEQUENCE iso_marker;
CREATE FUNCTION iso_chunk(tbl text, n int, after_id bigint, slow_after bigint,
                          slow float8) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  IF n = 1 AND after_id = slow_after THEN
    PERFORM nextval('iso_marker');
    PERFORM pg_sleep(slow);
  ELSE
    PERFORM pg_sleep(0.1);
  END IF;
  RETURN QUERY EXECUTE format(
    'UPDATE %I t SET counter = t.counter + 1
      WHERE t.id IN (SELECT id FROM %I WHERE $2 IS NULL OR id > $2
                      ORDER BY id LIMIT $1)
     RETURNING t.id', tbl, tbl) USING n, after_id;
END
$$;
});

# A table of 64 rows with one poison row, and its isolating job.
sub iso_job
{
	my ($name, $poison, $slow_after, $slow, $extra) = @_;
	$node->sql(qq{
CREATE TABLE $name (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                    poison boolean NOT NULL DEFAULT false,
                    CONSTRAINT ${name}_not_poison CHECK (NOT poison OR counter = 0));
INSERT INTO $name (id) SELECT generate_series(1, 64);
UPDATE $name SET poison = true WHERE id = $poison;
SELECT chunkbatch.create_job(
  job_name => '$name',
  chunk_sql => 'SELECT * FROM iso_chunk(''$name'', \$1, \$2, $slow_after, $slow)',
  batch_size => 64, cursor_type => 'bigint', on_error => 'isolate',
  keys_sql => 'SELECT id FROM $name WHERE \$2 IS NULL OR id > \$2 ORDER BY id LIMIT \$1'
  $extra);
});
}

# The dead letters of a run, as key:sqlstate.
sub dead_letters
{
	my ($run) = @_;
	return $node->sql(
		"SELECT coalesce(string_agg(key || ':' || sqlstate, ',' ORDER BY key::bigint), '')
           FROM chunkbatch.dead_letters WHERE run_id = $run");
}

# Wait until the slow single-key try has begun.
sub wait_marker
{
	my ($before) = @_;
	return $node->poll_query_until($db,
		"SELECT last_value > $before FROM iso_marker");
}

# statement_timeout 1.2 s; poison key 5, the try of key 6 alone takes
# 0.9 s, after 7 tries of 0.1 s: every statement fits in the timeout, the
# whole isolation (about 2 s) does not.  A statement timeout is armed per
# chunk statement, so only the poison key may end in dead_letters.
iso_job('iso_timeout', 5, 5, 0.9, q{, statement_timeout => '1.2s'});
my $ist_run = $node->queue_run('iso_timeout');
is($node->final_state($ist_run, '60s'), 'succeeded',
	'isolation with a statement timeout per statement: the run succeeds');
is(dead_letters($ist_run), '5:23514',
	'only the poison key is a dead letter, not a key whose statement fitted in statement_timeout'
);
is( $node->sql(q{SELECT count(*) FILTER (WHERE counter = 1) FROM iso_timeout WHERE NOT poison}),
	'63', 'the 63 good rows are committed');

# cancel() while the isolation executes its try of key 5 alone (poison key
# 6, nothing written to dead_letters yet): the chunk is cancelled and rolls
# back, like any chunk; no key becomes a dead letter.
iso_job('iso_cancel', 6, 4, 10, '');
my $m = $node->sql(q{SELECT nextval('iso_marker')});
my $ic_run = $node->queue_run('iso_cancel');
ok(wait_marker($m), 'the isolation is executing the try of key 5 alone');
$t0 = time;
$node->sql("SELECT chunkbatch.cancel($ic_run)");
my $ic_call = time - $t0;
is($node->final_state($ic_run, '30s'), 'cancelled', 'the isolating run ends cancelled');
my $ic_secs = time - $t0;
cmp_ok($ic_secs, '<', 3,
	sprintf('cancel ended the isolating run within 3 s (%.2f s)', $ic_secs));
is(dead_letters($ic_run), '',
	'the cancel did not make a dead letter of the key being tried');
is( $node->sql("SELECT rows_done, dead_letters FROM chunkbatch.runs WHERE run_id = $ic_run")
	  . '|' . $node->sql(q{SELECT sum(counter) FROM iso_cancel}),
	'0|0|0', 'the cancelled chunk was rolled back: no row committed');

# cancel() while the isolation executes its try of key 6 alone, after it
# wrote the dead letter of poison key 5: cancel() returns at once and the
# chunk rolls back.
iso_job('iso_cancel2', 5, 5, 10, '');
$m = $node->sql(q{SELECT last_value FROM iso_marker});
my $ic2_run = $node->queue_run('iso_cancel2');
ok(wait_marker($m), 'the isolation is executing the try of key 6 alone');
$t0 = time;
$node->sql("SELECT chunkbatch.cancel($ic2_run)");
my $ic2_call = time - $t0;
cmp_ok($ic2_call, '<', 1,
	sprintf('cancel() after a dead letter was written returns at once (%.2f s)', $ic2_call));
is($node->final_state($ic2_run, '30s'), 'cancelled', 'the isolating run ends cancelled');
my $ic2_secs = time - $t0;
cmp_ok($ic2_secs, '<', 3,
	sprintf('cancel ended the isolating run within 3 s (%.2f s)', $ic2_secs));
is(dead_letters($ic2_run), '',
	'the rolled-back chunk leaves no dead letter');
is( $node->sql("SELECT rows_done, dead_letters FROM chunkbatch.runs WHERE run_id = $ic2_run")
	  . '|' . $node->sql(q{SELECT sum(counter) FROM iso_cancel2}),
	'0|0|0', 'the cancelled chunk was rolled back: no row committed');
note(sprintf(
		"cancel during isolation: before a dead letter: cancel() %.2f s, run ended after %.2f s; "
		  . "after a dead letter: cancel() %.2f s, run ended after %.2f s",
		$ic_call, $ic_secs, $ic2_call, $ic2_secs));

# ---------------------------------------------------------------------------
# 7. A LISTEN session receives the NOTIFY of a finished run.
# ---------------------------------------------------------------------------
my $listener = $node->background_psql($db);
$listener->query_safe('LISTEN chunkbatch');
my $ok_run = $node->queue_run('deadlock_job');
is($node->final_state($ok_run, '60s'), 'succeeded', 'a run to listen for succeeds');
my @notes = grep { $_->{run_id} == $ok_run } notifications($listener);
is(scalar(@notes), 1, 'the LISTEN session received one notification for the run');
is_deeply(
	$notes[0],
	{
		run_id => $ok_run,
		job_name => 'deadlock_job',
		state => 'succeeded',
		sqlstate => undef,
		database => $db
	},
	'its payload: run_id, job_name, state succeeded, sqlstate null, the database');
# every row of ck_items is at 1 now: the first chunk violates the CHECK
my $bad_run = $node->queue_run('check_job');
is($node->final_state($bad_run, '60s'), 'failed', 'a run to listen for fails');
@notes = grep { $_->{run_id} == $bad_run } notifications($listener);
is( join(',', map { "$_->{state}:" . ($_->{sqlstate} // '') } @notes),
	'failed:23514',
	'the notification of a failed run has state failed and its SQLSTATE');
$listener->quit;

# ---------------------------------------------------------------------------
# 8. statement_timeout 200ms, chunks of ~50 ms per row, batch 16.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE st_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO st_items (id) SELECT generate_series(1, 40);
CREATE FUNCTION st_chunk(n int, after_id bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
  ids bigint[];
BEGIN
  WITH u AS (UPDATE st_items SET counter = counter + 1
              WHERE id IN (SELECT i.id FROM st_items i
                            WHERE after_id IS NULL OR i.id > after_id
                            ORDER BY i.id LIMIT n)
             RETURNING st_items.id)
  SELECT array_agg(id) INTO ids FROM u;
  PERFORM pg_sleep(0.05 * coalesce(cardinality(ids), 0));
  RETURN QUERY SELECT unnest(ids);
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'timeout_job',
  chunk_sql => 'SELECT * FROM st_chunk($1, $2)',
  batch_size => 16, cursor_type => 'bigint', statement_timeout => '200ms');
});
my $st_log = -s $node->logfile;
my $st_run = $node->queue_run('timeout_job');
is($node->final_state($st_run, '60s'), 'succeeded',
	'the run with statement timeouts completes');
my ($st_batch, $st_retries) = split /\|/,
  $node->sql("SELECT batch_size, retries FROM chunkbatch.runs WHERE run_id = $st_run");
cmp_ok($st_batch, '<=', 4,
	"the batch size was halved until a chunk fit in 200 ms (16 -> $st_batch)");
cmp_ok($st_batch, '>=', 1, 'the batch size is at least 1');
is($st_retries, '0', 'statement timeouts do not count as retries');
ok( $node->log_contains(
		qr/run $st_run of job "timeout_job" retries chunk 1 with 8 rows after a statement timeout/,
		$st_log),
	'the server log shows chunk 1 retried with 8 rows');
is($node->once_count('st_items'), '40|40',
	'statement timeouts: every row processed exactly once');
is($node->sql(q{SELECT batch_size FROM chunkbatch.jobs WHERE job_name = 'timeout_job'}),
	'16', 'the job keeps its batch size');
note("statement timeout: batch size 16 -> $st_batch");

# ---------------------------------------------------------------------------
# 9. max_runtime 1 s on a slow job: stopped, resumed until done.
# ---------------------------------------------------------------------------
$node->create_slow_job(
	job => 'runtime_job',
	table => 'mr_items',
	rows => 100,
	sleep => 0.2,
	batch_size => 5,
	log => 0,
	args => q{max_runtime => '1s'});
my $mr_run = $node->queue_run('runtime_job');
is($node->final_state($mr_run, '30s'), 'stopped', 'the slow run is stopped');
my ($mr_rows, $mr_secs) = split /\|/, $node->sql(
	"SELECT rows_done, extract(epoch FROM finished_at - started_at)
       FROM chunkbatch.runs WHERE run_id = $mr_run");
is( $node->sql("SELECT reason, sqlstate IS NULL, finished_at IS NOT NULL
           FROM chunkbatch.runs WHERE run_id = $mr_run"),
	'max_runtime|t|t', 'stopped with reason max_runtime');
ok($mr_rows > 0 && $mr_rows < 100, "it stopped in the middle ($mr_rows rows)");
ok($mr_secs >= 0.9 && $mr_secs < 3,
	sprintf('it stopped after about 1 s (%.2f s)', $mr_secs));
is($node->sql(q{SELECT sum(counter) FROM mr_items}), $mr_rows,
	'the table matches the stopped checkpoint');
my @segments = ($mr_rows);
my $mr_state = 'stopped';
for (my $i = 0; $i < 20 && $mr_state eq 'stopped'; $i++)
{
	$node->sql("SELECT chunkbatch.resume($mr_run)");
	$mr_state = $node->final_state($mr_run, '30s');
	push @segments,
	  $node->sql("SELECT rows_done FROM chunkbatch.runs WHERE run_id = $mr_run");
}
is($mr_state, 'succeeded', 'resumed after each stop, the run succeeds');
# Each stop is further than the one before; the last segment may only
# have run the final, empty chunk.
my $progress_ok = $segments[-1] == 100;
for my $i (1 .. $#segments - 1)
{
	$progress_ok = 0 unless $segments[$i] > $segments[ $i - 1 ];
}
ok($progress_ok,
	'every resumed segment continued from the previous checkpoint ('
	  . join(' -> ', @segments) . ' rows)');
cmp_ok(scalar(@segments), '>=', 3,
	'the run was stopped by max_runtime more than once');
is($node->once_count('mr_items'), '100|100',
	'max_runtime and resume: every row processed exactly once');
note('max_runtime 1s: rows done at each stop: ' . join(', ', @segments));

# ---------------------------------------------------------------------------
# Every run of this script: the last notification the whole-script listener
# received for it names its final state and SQLSTATE, and the state changes
# it went through were notified in order.
# ---------------------------------------------------------------------------
my %seen;
foreach my $n (notifications($all_listener))
{
	push @{ $seen{ $n->{run_id} } }, $n->{state} . ':' . ($n->{sqlstate} // '');
}
my $runs = $node->sql(
	q{SELECT string_agg(run_id || '=' || state || ':' || coalesce(sqlstate, ''), ' ' ORDER BY run_id)
        FROM chunkbatch.runs});
my $mismatch = 0;
foreach my $r (split / /, $runs)
{
	my ($id, $final) = split /=/, $r;
	my $last = $seen{$id} ? $seen{$id}->[-1] : 'none';
	if ($last ne $final)
	{
		diag("run $id: last notification $last, final state $final");
		$mismatch++;
	}
}
is($mismatch, 0,
	'the listener received, as each run\'s last notification, its final state and SQLSTATE'
);
is(join(',', @{ $seen{$ck_run} // [] }), 'failed:23514,succeeded:',
	'the failed-then-resumed run notified failed (23514), then succeeded');
is(join(',', @{ $seen{$cx_run} // [] }), 'cancelled:', 'the cancel was notified');
is(join(',', @{ $seen{$pr_run} // [] }), 'succeeded:',
	'pausing is not notified, the end after resume is');
is( join(',', @{ $seen{$mr_run} // [] }),
	join(',', ('stopped:') x ($#segments), 'succeeded:'),
	'each max_runtime stop was notified as stopped, then the success');
$all_listener->quit;

# ---------------------------------------------------------------------------
# 10. History: with chunkbatch.history_retention = 1 (minute), a finished run
#     backdated 2 hours is deleted by the next scheduler at its first pass.
#     scheduler_idle_exit = 0 makes the current scheduler leave when idle,
#     so the next run starts a new one.
# ---------------------------------------------------------------------------
my $recent_run = $node->queue_run('deadlock_job');
is($node->final_state($recent_run, '60s'), 'succeeded', 'a run finishes just before');
$node->sql("UPDATE chunkbatch.runs SET finished_at = now() - interval '2 hours'
      WHERE run_id = $dl_run");
$node->append_conf('postgresql.conf',
	"chunkbatch.history_retention = 1\n" . "chunkbatch.scheduler_idle_exit = 0\n");
$node->reload;
is($node->sql('SHOW chunkbatch.history_retention'), '1min', 'history_retention is 1 minute');
ok( $node->poll_query_until(
		$db,
		q{SELECT count(*) = 0 FROM pg_stat_activity
           WHERE backend_type = 'chunkbatch scheduler'
             AND datname = current_database()}),
	'the idle scheduler has exited');
is($node->sql("SELECT count(*) FROM chunkbatch.runs WHERE run_id = $dl_run"),
	'1', 'the backdated run is still there');
my $h_run = $node->queue_run('deadlock_job');
is($node->final_state($h_run, '60s'), 'succeeded', 'a new run succeeds');
ok( $node->poll_run($dl_run, "count(*) = 0"),
	'the scheduler deleted the run finished before the retention');
is( $node->sql("SELECT count(*) FROM chunkbatch.runs WHERE run_id IN ($h_run, $recent_run)"),
	'2', 'runs finished within the retention are kept');

$node->stop;
done_testing();
