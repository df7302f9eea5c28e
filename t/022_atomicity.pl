# Copyright (c) 2026, chunkbatch developers
#
# Checkpoint atomicity: a chunk and the run's checkpoint are one
# transaction.
#
# - every chunk of a keyset run (150 rows, batch 10, a 0.2 s chunk) and of
#   a repeat-mode run (deleting 150 rows, batch 10, 0.2 s) logs, in its own
#   transaction, its transaction id (pg_current_xact_id()) in chunk_xids,
#   the last empty chunk included.  A procedure watches the runs from
#   inside the server every 20 ms (at least 5 distinct chunks_done values
#   each, in practice every chunk), each observation one snapshot, and
#   again at their end: whenever the run is running with chunks_done > 0,
#   the xmin of its chunkbatch.runs row (the transaction that wrote the
#   checkpoint) equals the xid logged by its last committed chunk, and the
#   number of logged chunks equals chunks_done; at the end, the final checkpoint
#   (state 'succeeded') has the xid of the last, empty chunk, and every
#   chunk had a transaction of its own.  A checkpoint written in a
#   transaction of its own after the chunk commits would carry a different
#   xid (xmin) from the chunk's, and between the two commits the log would
#   show one chunk more than chunks_done: every observation would fail.
#   (xmin is a 32-bit xid, pg_current_xact_id() a 64-bit xid8: the test
#   compares xmin with the xid8 modulo 2^32.)
# - crash windows, hit deterministically with the test-only settings
#   chunkbatch.test_fault / chunkbatch.test_fault_chunk (the run worker
#   SIGKILLs itself at that point of that chunk, once per data directory):
#   for 'after_statement', 'before_commit' and 'after_commit' at chunk 3 of
#   a keyset run over 100 rows in chunks of 10: the server log shows the
#   fault, the postmaster restarted everything (crash recovery), the run
#   resumed by itself and succeeded with rows_done 100 and every row's
#   counter exactly 1; each chunk's range was committed exactly once
#   (the chunk log is written in the chunk transaction), the log matches
#   chunks_done and the final checkpoint's xmin is the last chunk's xid.
#   The chunks the killed worker committed are a prefix of the run, never
#   chunk 3 when it died before the commit.  As chunk transactions commit
#   asynchronously (synchronous_commit = off), the crash may also lose the
#   last commits before it, each with its checkpoint: they are redone,
#   still exactly once.  A fourth case, 'after_commit' with a job created
#   with synchronous_commit => true, pins the other side: chunks 1 to 3
#   were committed by the killed worker and chunk 3 is not done again.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# The server restarts after each SIGKILL of a worker.
my $node = ChunkbatchNode->create('atomicity',
	conf => ['restart_after_crash = on']);

my $db = 'postgres';
my $script_start = time();

my $final_states = q{('succeeded', 'failed', 'cancelled', 'skipped', 'stopped')};

# ---------------------------------------------------------------------------
# 1. The checkpoint's transaction is the chunk's transaction.
# ---------------------------------------------------------------------------

# Both chunk functions log their xid unconditionally, after their work, so
# that every chunk (the last, empty one too) leaves one row in chunk_xids,
# committed or lost with the chunk.  No EXCEPTION blocks: no
# subtransactions.
$node->sql(q{
CREATE EXTENSION chunkbatch;
CREATE TABLE chunk_xids (seq bigserial PRIMARY KEY, job text NOT NULL,
                         after_id bigint, nrows bigint NOT NULL,
                         xid bigint NOT NULL);

CREATE TABLE ks_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO ks_items (id) SELECT generate_series(1, 150);
CREATE FUNCTION ks_chunk(n int, after_id bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
  done bigint;
BEGIN
  PERFORM pg_sleep(0.2);
  RETURN QUERY
    UPDATE ks_items SET counter = counter + 1
     WHERE id IN (SELECT i.id FROM ks_items i
                   WHERE after_id IS NULL OR i.id > after_id
                   ORDER BY i.id LIMIT n)
    RETURNING ks_items.id;
  GET DIAGNOSTICS done = ROW_COUNT;
  INSERT INTO chunk_xids (job, after_id, nrows, xid)
  VALUES ('ks', after_id, done, pg_current_xact_id()::text::bigint);
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'ks_job',
  chunk_sql => 'SELECT * FROM ks_chunk($1, $2)',
  batch_size => 10,
  cursor_type => 'bigint');

CREATE TABLE rp_items (id bigint PRIMARY KEY);
INSERT INTO rp_items (id) SELECT generate_series(1, 150);
CREATE FUNCTION rp_chunk(n int) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
  done bigint;
BEGIN
  PERFORM pg_sleep(0.2);
  RETURN QUERY
    DELETE FROM rp_items
     WHERE id IN (SELECT i.id FROM rp_items i ORDER BY i.id LIMIT n)
    RETURNING rp_items.id;
  GET DIAGNOSTICS done = ROW_COUNT;
  INSERT INTO chunk_xids (job, after_id, nrows, xid)
  VALUES ('rp', NULL, done, pg_current_xact_id()::text::bigint);
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'rp_job',
  chunk_sql => 'SELECT * FROM rp_chunk($1)',
  batch_size => 10);
});

# One snapshot: the run's state, chunks_done and xmin, the 32-bit xid of the
# last logged chunk and the number of logged chunks.
my $observe_sql = q{
SELECT r.state, r.chunks_done, r.xmin::text::bigint,
       (SELECT c.xid %% 4294967296 FROM chunk_xids c
         WHERE c.job = %2$s ORDER BY c.seq DESC LIMIT 1),
       (SELECT count(*) FROM chunk_xids c WHERE c.job = %2$s)
  FROM chunkbatch.runs r WHERE r.run_id = %1$s};

# The watcher observes inside the server, every 20 ms, each observation in
# one statement (one snapshot), committed at once, until the runs end.
$node->sql("CREATE TABLE observations (seq bigserial PRIMARY KEY, job text NOT NULL,
                                state text, chunks_done bigint, xmin_xid bigint,
                                last_xid bigint, logged bigint)");
$node->sql(sprintf(q{
CREATE PROCEDURE watch_runs(run_ids bigint[], jobs text[], timeout interval)
LANGUAGE plpgsql AS $$
DECLARE
  deadline timestamptz := clock_timestamp() + timeout;
BEGIN
  LOOP
    FOR i IN 1 .. array_length(run_ids, 1) LOOP
      INSERT INTO observations (job, state, chunks_done, xmin_xid, last_xid, logged)
      SELECT jobs[i], o.* FROM (%s) o;
    END LOOP;
    COMMIT;
    EXIT WHEN clock_timestamp() > deadline
           OR NOT EXISTS (SELECT 1 FROM chunkbatch.runs
                           WHERE run_id = ANY (run_ids)
                             AND state IN ('queued', 'waiting', 'running'));
    PERFORM pg_sleep(0.02);
  END LOOP;
END
$$},
	sprintf($observe_sql, 'run_ids[i]', 'jobs[i]')));

my %run;
$run{$_} = $node->sql("SELECT chunkbatch.run('${_}_job')") for qw(ks rp);

# Both runs side by side (each job is a group of its own).
$node->sql("CALL watch_runs(ARRAY[$run{ks}, $run{rp}], ARRAY['ks', 'rp'], '60 s')");

for my $k (qw(ks rp))
{
	my $run = $run{$k};
	my $what = $k eq 'ks' ? 'keyset' : 'repeat';
	is( $node->sql("SELECT state FROM observations WHERE job = '$k'
              ORDER BY seq DESC LIMIT 1"),
		'succeeded', "$what: run $run ended while watched");
	my ($n, $distinct) = split /\|/,
	  $node->sql("SELECT count(*), count(DISTINCT chunks_done) FROM observations
            WHERE job = '$k' AND state = 'running' AND chunks_done > 0");
	note "$what: $n mid-run observations at $distinct distinct chunks_done values";
	cmp_ok($distinct, '>=', 5,
		"$what: observed mid-run at 5 or more distinct chunks_done values");
	# Running after a chunk: the checkpoint is the last chunk's; before the
	# first chunk: nothing logged.
	is( $node->sql("SELECT string_agg(concat_ws('|', state, chunks_done, xmin_xid,
                                         last_xid, logged), E'\\n' ORDER BY seq)
               FROM observations
              WHERE job = '$k'
                AND ((state = 'running' AND chunks_done > 0
                      AND (xmin_xid IS DISTINCT FROM last_xid OR logged <> chunks_done))
                  OR (state IN ('queued', 'waiting', 'running') AND chunks_done = 0
                      AND logged <> 0)
                  OR state NOT IN ('queued', 'waiting', 'running', 'succeeded'))"),
		'',
		"$what: every mid-run observation: checkpoint xmin = xid of the last "
		  . "committed chunk, logged chunks = chunks_done (state|chunks_done|"
		  . "xmin|last chunk xid|logged chunks)");

	my ($state, $chunks, $xmin, $last_xid, $logged) = split /\|/,
	  $node->sql(sprintf($observe_sql, $run, "'$k'"));
	is("$state|$chunks|$logged", 'succeeded|16|16',
		"$what: succeeded after 16 chunks (15 full, 1 empty), all 16 logged");
	is($xmin, $last_xid,
		"$what: the final checkpoint was written by the last (empty) chunk's transaction");
	is( $node->sql("SELECT rows_done, sqlstate IS NULL FROM chunkbatch.runs
              WHERE run_id = $run"),
		'150|t', "$what: rows_done 150");
	is( $node->sql("SELECT count(*), count(DISTINCT xid), sum(nrows),
                    (SELECT nrows FROM chunk_xids
                      WHERE job = '$k' ORDER BY seq DESC LIMIT 1)
               FROM chunk_xids WHERE job = '$k'"),
		'16|16|150|0',
		"$what: 16 chunks in 16 distinct transactions, 150 rows, the last one empty");
}
is($node->sql("SELECT count(*), count(*) FILTER (WHERE counter = 1) FROM ks_items"),
	'150|150', 'keyset: every row processed exactly once');
is($node->sql("SELECT count(*) FROM rp_items"), '0', 'repeat: every row deleted');
is( $node->sql("SELECT string_agg(coalesce(after_id::text, 'NULL'), ',' ORDER BY seq)
           FROM chunk_xids WHERE job = 'ks'"),
	'NULL,' . join(',', map { $_ * 10 } 1 .. 15),
	'keyset: the chunks ran in key order, each range once');

# ---------------------------------------------------------------------------
# 2. Crash windows: the worker kills itself in chunk 3, before or after the
#    statement / the commit.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE crash_items (r int NOT NULL, id bigint NOT NULL,
                          counter int NOT NULL DEFAULT 0, PRIMARY KEY (r, id));
CREATE TABLE crash_log (seq bigserial PRIMARY KEY, r int NOT NULL,
                        after_id bigint, nrows bigint NOT NULL,
                        xid bigint NOT NULL, pid int NOT NULL);
CREATE FUNCTION crash_chunk(n int, after_id bigint, params jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
  rr   int := (params->>'r')::int;
  done bigint;
BEGIN
  RETURN QUERY
    UPDATE crash_items c SET counter = c.counter + 1
     WHERE c.r = rr
       AND c.id IN (SELECT i.id FROM crash_items i
                     WHERE i.r = rr AND (after_id IS NULL OR i.id > after_id)
                     ORDER BY i.id LIMIT n)
    RETURNING c.id;
  GET DIAGNOSTICS done = ROW_COUNT;
  INSERT INTO crash_log (r, after_id, nrows, xid, pid)
  VALUES (rr, after_id, done, pg_current_xact_id()::text::bigint,
          pg_backend_pid());
END
$$;
SELECT chunkbatch.create_job(
  job_name => 'crash_job',
  chunk_sql => 'SELECT * FROM crash_chunk($1, $2, $3)',
  batch_size => 10,
  cursor_type => 'bigint');
SELECT chunkbatch.create_job(
  job_name => 'crash_sync_job',
  chunk_sql => 'SELECT * FROM crash_chunk($1, $2, $3)',
  batch_size => 10,
  cursor_type => 'bigint',
  synchronous_commit => true);
});

my $done_file = $node->data_dir . '/chunkbatch_test_fault.done';

# Set (or with undef, reset) the fault for workers started from now on.
sub set_fault
{
	my ($point, $chunk) = @_;
	if (defined $point)
	{
		$node->sql("ALTER SYSTEM SET chunkbatch.test_fault = '$point'");
		$node->sql("ALTER SYSTEM SET chunkbatch.test_fault_chunk = $chunk");
	}
	else
	{
		$node->sql("ALTER SYSTEM RESET chunkbatch.test_fault");
		$node->sql("ALTER SYSTEM RESET chunkbatch.test_fault_chunk");
	}
	$node->sql("SELECT pg_reload_conf()");
	# New backends (and workers) inherit the postmaster's settings: wait
	# until the postmaster has reloaded.
	my $want = defined $point ? "$point/$chunk" : '/0';
	return $node->poll_for(
		"SELECT current_setting('chunkbatch.test_fault') || '/'
                || current_setting('chunkbatch.test_fault_chunk')",
		qr/^\Q$want\E$/, 30);
}

# [fault point, job, name in the test messages]
my @cases = (
	[ 'after_statement', 'crash_job', 'after_statement' ],
	[ 'before_commit', 'crash_job', 'before_commit' ],
	[ 'after_commit', 'crash_job', 'after_commit' ],
	[ 'after_commit', 'crash_sync_job', 'after_commit (synchronous_commit)' ]);
my $r = 0;
for my $case (@cases)
{
	my ($fault, $job, $point) = @$case;
	$r++;
	unlink($done_file);
	ok(!-e $done_file, "$point: no fault fired yet in this data directory");
	ok(set_fault($fault, 3), "$point: chunkbatch.test_fault set for chunk 3");
	$node->sql("INSERT INTO crash_items (r, id) SELECT $r, generate_series(1, 100)");

	my $offset = -s $node->logfile;
	my $run = $node->sql("SELECT chunkbatch.run('$job', jsonb_build_object('r', $r))");

	ok( $node->log_wait(
			qr/chunkbatch run $run: test fault "$fault" at chunk 3, the worker kills itself/,
			$offset, 30),
		"$point: the server log shows the test fault at chunk 3");
	ok($node->log_wait(qr/\(PID \d+\) was terminated by signal 9/, $offset, 30),
		"$point: the postmaster saw the worker die by SIGKILL");
	my ($killed) = slurp_file($node->logfile, $offset) =~
	  /\(PID (\d+)\) was terminated by signal 9/;
	$killed //= -1;
	ok( $node->log_wait(
			qr/all server processes terminated; reinitializing/, $offset, 30)
		  && $node->log_wait(
			qr/database system was not properly shut down; automatic recovery in progress/,
			$offset, 30),
		"$point: the server restarted with crash recovery");

	# Nobody acts on the run from here: only observe it.
	is( $node->poll_for(
			"SELECT state FROM chunkbatch.runs
              WHERE run_id = $run AND state IN $final_states",
			qr/^\w+$/, 60),
		'succeeded',
		"$point: the run resumed by itself and succeeded");
	ok( $node->log_contains(
			qr/chunkbatch run $run of job "$job" was interrupted; it resumes from its checkpoint/,
			$offset),
		"$point: the scheduler found the run interrupted and resumed it");
	ok(-e $done_file, "$point: the fault fired once (its marker file exists)");

	is( $node->sql("SELECT state, rows_done, chunks_done, cursor, sqlstate IS NULL
               FROM chunkbatch.runs WHERE run_id = $run"),
		'succeeded|100|11|100|t',
		"$point: rows_done 100 in 11 chunks, cursor at the last key");
	is( $node->sql("SELECT count(*), count(*) FILTER (WHERE counter = 1)
               FROM crash_items WHERE r = $r"),
		'100|100',
		"$point: every row's counter is exactly 1");
	is( $node->sql("SELECT count(*), count(DISTINCT coalesce(after_id, 0)), sum(nrows),
                    count(*) FILTER (WHERE after_id = 20)
               FROM crash_log WHERE r = $r"),
		'11|11|100|1',
		"$point: each chunk's range committed exactly once (chunk 3's too), "
		  . "11 logged chunks = chunks_done");
	is( $node->sql("SELECT r.xmin::text::bigint = (SELECT c.xid % 4294967296
                                              FROM crash_log c WHERE c.r = $r
                                             ORDER BY c.seq DESC LIMIT 1)
               FROM chunkbatch.runs r WHERE r.run_id = $run"),
		't',
		"$point: the final checkpoint was written by the last chunk's transaction");

	# Which worker committed which chunks: the killed one a prefix of the
	# run (the crash may lose a tail of asynchronous commits), the next one
	# the rest.
	my ($killed_chunks, $chunk3_by_killed, $prefix, $pids) = split /\|/,
	  $node->sql("SELECT count(*) FILTER (WHERE pid = $killed),
                  coalesce(bool_or(pid = $killed AND after_id = 20), false),
                  coalesce(max(seq) FILTER (WHERE pid = $killed), 0)
                    < min(seq) FILTER (WHERE pid <> $killed),
                  count(DISTINCT pid)
             FROM crash_log WHERE r = $r");
	note "$point: the killed worker $killed committed $killed_chunks chunks that survived the crash";
	is($prefix, 't',
		"$point: the chunks the killed worker committed come before all others");
	if ($fault ne 'after_commit')
	{
		ok($killed_chunks <= 2 && $chunk3_by_killed eq 'f',
			"$point: chunk 3 died with the killed worker and was redone by the next one");
	}
	elsif ($job eq 'crash_sync_job')
	{
		is("$killed_chunks|$chunk3_by_killed|$pids", '3|t|2',
			"$point: chunks 1 to 3 were committed durably by the killed worker, "
			  . "the next one went on from chunk 4");
	}
	else
	{
		ok($killed_chunks <= 3, "$point: at most chunks 1 to 3 survived the crash");
		note "$point: chunk 3 "
		  . ($chunk3_by_killed eq 't'
			? 'survived the crash with its checkpoint'
			: 'was lost with its checkpoint and redone');
	}

	ok(set_fault(undef), "$point: chunkbatch.test_fault reset");
}

# ---------------------------------------------------------------------------
# Every message of a run worker names its run, chunk and job: a chunk that
# fails (its second one) reports the error with that context line.
# ---------------------------------------------------------------------------
$node->sql(q{
CREATE TABLE ctx_items (id bigint PRIMARY KEY);
INSERT INTO ctx_items SELECT generate_series(1, 20);
SELECT chunkbatch.create_job(
  job_name => 'ctx_job',
  chunk_sql => $$SELECT id / (CASE WHEN id > 10 THEN 0 ELSE 1 END) FROM ctx_items
                 WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1$$,
  batch_size => 10, cursor_type => 'bigint');
});
my $ctx_offset = -s $node->logfile;
my $ctx_run = $node->sql(q{SELECT chunkbatch.run('ctx_job')});
is($node->sql("SELECT chunkbatch.wait($ctx_run, '60s')"), 'failed',
	'a run whose second chunk divides by zero fails');
ok( $node->log_contains(
		qr/ERROR:  division by zero\n[^\n]*CONTEXT:(?:[^\n]*\n){0,4}?[^\n]*chunkbatch run $ctx_run, chunk 2 of job "ctx_job"/,
		$ctx_offset),
	'the chunk\'s error in the server log names the run, the chunk and the job');

note sprintf("script ran %.1f s", time() - $script_start);
$node->stop;
done_testing();
