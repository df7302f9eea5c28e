# Copyright (c) 2026, chunkbatch developers
#
# Steps before the first chunk and after the last:
#
# - a before step that opens the day and an after step that runs ANALYZE
#   run once per run, as the owner; an after step that cannot run in a
#   transaction block (VACUUM) works;
# - rebuild_indexes => true drops the table's non-unique secondary indexes
#   before the chunks and rebuilds them concurrently after: pg_indexes is
#   exactly as before, and the steps (with the saved definitions) are in
#   the run's row;
# - a SIGKILL of the worker while an after step's CREATE INDEX
#   CONCURRENTLY waits (an invalid index exists) resumes to a valid index,
#   no invalid index left, and the run succeeds with every row processed
#   once;
# - a failing step fails the run with its SQLSTATE, nothing after it runs;
#   resume() after the cause is fixed continues from that step.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ChunkbatchNode->create('steps',
	conf => ['restart_after_crash = on'], extension_in => ['postgres']);
$node->sql(
	q{CREATE ROLE app LOGIN;
GRANT CREATE ON SCHEMA public TO app;
SET ROLE app;
CREATE TABLE days (d date PRIMARY KEY, opened_by bigint NOT NULL);
CREATE TABLE items (id bigint PRIMARY KEY, grp int NOT NULL, name text NOT NULL,
                    n int NOT NULL DEFAULT 0);
INSERT INTO items SELECT g, g % 50, md5(g::text) FROM generate_series(1, 30000) g;
CREATE INDEX items_grp ON items (grp);
CREATE INDEX items_name ON items (name text_pattern_ops) WHERE grp > 10;
CREATE UNIQUE INDEX items_name_u ON items (name, id);});

my $indexes_sql =
  q{SELECT string_agg(indexname || ': ' || indexdef, E'\n' ORDER BY indexname)
      FROM pg_indexes WHERE tablename = 'items'};
my $before = $node->sql($indexes_sql);

# Before and after steps, and the rebuild.
$node->sql(
	q{SELECT chunkbatch.create_update('touch', 'items', 'n = n + 1', 'true', batch_size => 4000,
    before_sql => ARRAY[$$INSERT INTO days SELECT current_date, r.run_id FROM chunkbatch.run_context() r
                         ON CONFLICT (d) DO NOTHING$$],
    after_sql => ARRAY['ANALYZE days', 'VACUUM days'],
    rebuild_indexes => true, analyze_after => true)},
	role => 'app');
my $run = $node->queue_run('touch', role => 'app');
# Not wait(): a session waiting in a statement holds a snapshot, which
# CREATE INDEX CONCURRENTLY waits for.  Poll from new sessions.
ok($node->poll_final_state($run), 'the run with steps ends');
is($node->sql("SELECT state FROM chunkbatch.runs WHERE run_id = $run"), 'succeeded',
	'and succeeds');
is($node->sql("SELECT opened_by FROM days"), $run, 'the before step opened the day, in the run');
is($node->sql("SELECT count(*) FILTER (WHERE n = 1) FROM items"), '30000',
	'every row processed once');
is($node->sql($indexes_sql), $before, 'rebuild_indexes leaves exactly the same index definitions');
is($node->sql(q{SELECT count(*) FROM pg_index WHERE NOT indisvalid}), '0', 'no invalid index');
is( $node->sql(
		"SELECT steps_before || '/' || steps_done || '/' || cardinality(steps) FROM chunkbatch.runs
          WHERE run_id = $run"),
	'3/8/8', 'the run records 3 before steps and 8 steps done');
is( $node->sql("SELECT array_to_string(steps[2:], ' | ') FROM chunkbatch.runs WHERE run_id = $run"),
	'DROP INDEX CONCURRENTLY IF EXISTS public.items_grp | '
	  . 'DROP INDEX CONCURRENTLY IF EXISTS public.items_name | '
	  . 'CREATE INDEX CONCURRENTLY items_grp ON public.items USING btree (grp) | '
	  . 'CREATE INDEX CONCURRENTLY items_name ON public.items USING btree (name text_pattern_ops) WHERE (grp > 10) | '
	  . 'ANALYZE public.items | ANALYZE days | VACUUM days',
	'the steps hold the saved index definitions, then ANALYZE and the job\'s after steps');
ok( $node->sql(q{SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL
                   FROM pg_stat_user_tables WHERE relname = 'days'}) eq 't',
	'the after step analyzed days');

# SIGKILL while the rebuild's CREATE INDEX CONCURRENTLY waits: a
# transaction holding a snapshot (and no lock) makes it wait, after its
# index was created invalid, and lets the chunks and the drops go on.
$node->sql(q{UPDATE items SET n = 0});
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1});
$run = $node->queue_run('touch', role => 'app');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity
           WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'}),
	'a CREATE INDEX CONCURRENTLY step waits for the open transaction');
is($node->sql(q{SELECT count(*) FROM pg_index WHERE NOT indisvalid}), '1',
	'its index exists, invalid');
my $pid = $node->sql(
	q{SELECT pid FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%'});
kill 'KILL', $pid;
eval { $holder->quit };
ok($node->poll_final_state($run), 'after the crash the run ends by itself');
is($node->sql("SELECT state FROM chunkbatch.runs WHERE run_id = $run"), 'succeeded',
	'and succeeds');
is($node->sql($indexes_sql), $before, 'the indexes are exactly as before');
is($node->sql(q{SELECT count(*) FROM pg_index WHERE NOT indisvalid}), '0',
	'no invalid index is left behind');
is($node->sql("SELECT count(*) FILTER (WHERE n = 1) FROM items"), '30000',
	'every row processed exactly once');
ok($node->log_contains('drops the invalid index .* left by an interrupted build'),
	'the log says the invalid index was dropped and built again');

# A failing step fails the run; resume() continues from it.
$node->sql(
	q{SELECT chunkbatch.create_job('stepfail', 'SELECT 1 WHERE false',
    before_sql => ARRAY['INSERT INTO days VALUES (current_date - 1, 1)'],
    after_sql => ARRAY['INSERT INTO step_log VALUES (1)', 'INSERT INTO step_log VALUES (2)'])},
	role => 'app');
$run = $node->queue_run('stepfail', role => 'app');
is($node->final_state($run), 'failed', 'a failing after step fails the run');
is( $node->sql(
		"SELECT sqlstate || '/' || steps_done FROM chunkbatch.runs WHERE run_id = $run"),
	'42P01/1', 'with the step\'s SQLSTATE, after the one before step');
$node->sql(q{CREATE TABLE step_log (v int); GRANT INSERT ON step_log TO app;});
$node->sql("SELECT chunkbatch.resume($run)", role => 'app');
is($node->final_state($run), 'succeeded', 'resume() after the fix succeeds');
is($node->sql(q{SELECT string_agg(v::text, ',' ORDER BY v) FROM step_log}), '1,2',
	'each after step ran once');
is($node->sql(q{SELECT count(*) FROM days WHERE d = current_date - 1}), '1',
	'the before step did not run again');

done_testing();
