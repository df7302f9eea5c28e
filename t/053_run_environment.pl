# Copyright (c) 2026, chunkbatch developers
#
# What a chunk runs with: the environment's guardrails, and its run's
# context.
#
# - a job without its own statement_timeout gets, per chunk, the
#   statement_timeout a session of its owner in that database gets: set by
#   ALTER ROLE ... SET, a chunk slower than it is cancelled (57014; at a
#   batch size of 1 the run fails), and so with ALTER DATABASE ... SET;
# - the job's own statement_timeout overrides it (the same run succeeds);
# - the run records the statement_timeout its chunks got (runs and
#   status_detail), and dry_run names it and where it comes from;
# - without any, the slow chunks just run;
# - chunkbatch.run_context() gives chunk SQL its run's id, job name, queued
#   time, trigger and chunk number, equal to the run's row; outside a run
#   worker it is all NULL;
# - an adaptive run's chunks whose poison rows were isolated are not taken
#   for a knee (their time includes the failed try and the split).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ChunkbatchNode->create('guardrails', extension_in => ['postgres']);
$node->sql(
	q{CREATE ROLE app LOGIN;
CREATE TABLE slow_items (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false);
GRANT SELECT, UPDATE ON slow_items TO app;});
$node->sql(
	q{SELECT chunkbatch.create_job('slow_flip',
  'UPDATE slow_items SET done = true
    WHERE id IN (SELECT id FROM slow_items WHERE NOT done ORDER BY id LIMIT $1)
      AND pg_sleep(0.3) IS NOT NULL',
  batch_size => 1)},
	role => 'app');

# Three rows to flip, 0.3 s each; returns the run's final state and SQLSTATE.
# The statement_timeout the last run recorded for its chunks.
sub last_timeout
{
	return $node->sql(
		q{SELECT coalesce(statement_timeout::text, 'none') FROM chunkbatch.runs
           ORDER BY run_id DESC LIMIT 1});
}

sub flip
{
	$node->sql(q{UPDATE slow_items SET done = false;
INSERT INTO slow_items SELECT g FROM generate_series(1, 3) g ON CONFLICT DO NOTHING});
	my $run = $node->queue_run('slow_flip', role => 'app');
	# The waiting session is not held to the timeouts under test.
	my $state =
	  $node->sql("SET statement_timeout = 0; SELECT chunkbatch.wait($run, '60s')");
	return $state . ':'
	  . $node->sql("SELECT coalesce(sqlstate, '') FROM chunkbatch.runs WHERE run_id = $run");
}

is(flip(), 'succeeded:', 'without any statement_timeout, the slow chunks run');
is(last_timeout(), 'none', '... and the run records no statement_timeout');

$node->sql(q{ALTER ROLE app SET statement_timeout = '100ms'});
like(
	$node->sql(
		q{SELECT string_agg(item || ': ' || detail, E'\n') FROM chunkbatch.dry_run('slow_flip')},
		role => 'app'),
	qr/^timeouts: statement_timeout 100ms \(ALTER ROLE\)$/m,
	'dry_run names the owner\'s statement_timeout and where it comes from');
is(flip(), 'failed:57014',
	'with ALTER ROLE app SET statement_timeout = 100ms, the owner\'s chunks are cancelled (57014)');
like(
	$node->sql(q{SELECT error FROM chunkbatch.runs ORDER BY run_id DESC LIMIT 1}),
	qr/statement timeout/,
	'... and the run\'s error says so');
is(last_timeout(), '00:00:00.1', '... and the run records the 100 ms its chunks got');

$node->sql(q{SELECT chunkbatch.alter_job('slow_flip', statement_timeout => '2s')}, role => 'app');
is(flip(), 'succeeded:', 'the job\'s own statement_timeout overrides the role\'s');
is(last_timeout(), '00:00:02', '... and the run records it');

$node->sql(
	q{SELECT chunkbatch.alter_job('slow_flip', reset => ARRAY['statement_timeout']);
ALTER ROLE app RESET statement_timeout;
ALTER DATABASE postgres SET statement_timeout = '100ms';});
is(flip(), 'failed:57014', 'ALTER DATABASE ... SET statement_timeout applies too');
is(last_timeout(), '00:00:00.1', '... and is recorded');
$node->sql(q{ALTER DATABASE postgres RESET statement_timeout});
is(flip(), 'succeeded:', 'reset everywhere, the slow chunks run again');

# Run context: each of the first two chunks records it.
$node->sql(
	q{CREATE TABLE ctx (run_id bigint, job_name text, queued_at timestamptz,
                   trigger text, chunk bigint);
GRANT SELECT, INSERT ON ctx TO app;});
$node->sql(
	q{SELECT chunkbatch.create_job('record_context',
  'INSERT INTO ctx SELECT c.* FROM chunkbatch.run_context() c
    WHERE $1 > 0 AND (SELECT count(*) FROM ctx) < 2')},
	role => 'app');
my $run = $node->sql(q{SELECT chunkbatch.run('record_context', trigger => 'nightly tick')},
	role => 'app');
is($node->sql("SELECT chunkbatch.wait($run, '30s')"), 'succeeded', 'the run succeeds');
is( $node->sql(
		"SELECT string_agg(c.chunk || ':' || (c.run_id = r.run_id) || ':'
                 || (c.job_name = r.job_name) || ':' || (c.queued_at = r.queued_at)
                 || ':' || c.trigger, ',' ORDER BY c.chunk)
           FROM ctx c, chunkbatch.runs r WHERE r.run_id = $run"),
	'1:true:true:true:nightly tick,2:true:true:true:nightly tick',
	'run_context() in chunks 1 and 2 equals the run\'s row (id, job, queued_at, trigger)');
is( $node->sql(
		q{SELECT (c.run_id, c.job_name, c.queued_at, c.trigger, c.chunk) IS NULL
            FROM chunkbatch.run_context() c}),
	't', 'outside a run worker, run_context() is all NULL');

# Adaptive sizing is not fooled by isolation: the chunks whose poison rows
# are set aside take the time of a failed try and of the split, which must
# not count as a knee (a chunk size past which the rate collapses).
$node->sql(
	q{CREATE TABLE pz (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                 poison boolean NOT NULL DEFAULT false,
                 CONSTRAINT not_poison CHECK (NOT poison OR counter = 0));
INSERT INTO pz (id) SELECT generate_series(1, 40000);
UPDATE pz SET poison = true WHERE id % 4000 = 1234;
SELECT chunkbatch.create_job(
  job_name => 'poison_adaptive',
  chunk_sql => $$UPDATE pz SET counter = counter + 1
                  WHERE id IN (SELECT id FROM pz WHERE $2 IS NULL OR id > $2
                                ORDER BY id LIMIT $1)
                 RETURNING id$$,
  batch_size => 200, cursor_type => 'bigint', target_chunk_ms => 20,
  min_batch_size => 10, on_error => 'isolate', max_dead_letters => 100,
  keys_sql => $$SELECT id FROM pz WHERE $2 IS NULL OR id > $2 ORDER BY id LIMIT $1$$);});
my $log_offset = -s $node->logfile;
my $pz_run = $node->queue_run('poison_adaptive');
is($node->final_state($pz_run, '120s'), 'succeeded', 'an adaptive run with 10 poison rows succeeds');
is( $node->sql("SELECT rows_done || '|' || dead_letters FROM chunkbatch.runs WHERE run_id = $pz_run"),
	'39990|10', '... with every other row done and the 10 poison keys set aside');
# The chunks whose poison rows were set aside (the context of each "put
# key" line), and the chunks after which a knee was taken: a knee may be
# taken after an ordinary chunk (a loaded machine is noisy), never after an
# isolated one.
my $log = slurp_file($node->logfile, $log_offset);
my %isolated = map { $_ => 1 }
  ($log =~ /put key \d+ in dead_letters.*\n.*CONTEXT:  chunkbatch run $pz_run, chunk (\d+) of/g);
my @knees = ($log =~
	  /run $pz_run of job "poison_adaptive": chunks of \d+ rows ran at.*\n.*CONTEXT:  chunkbatch run $pz_run of job "poison_adaptive", after chunk (\d+)/g);
ok(scalar(keys %isolated) > 0, 'the log names the isolated chunks');
is(join(',', grep { $isolated{$_} } @knees), '',
	'no isolated chunk was taken for a knee (no ceiling learned from one)');

$node->stop;
done_testing();
