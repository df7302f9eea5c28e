# Copyright (c) 2026, chunkbatch developers
#
# chunkbatch.dry_run(): what a run would do, without doing it.
#
# - on a job written in the "IN (SELECT ... LIMIT $1)" form over 1,000,000
#   rows with adaptive sizing up to 100,000 rows, it shows the plans at 100
#   and at 100,000 rows and warns that the plan changes shape, of the
#   sequential scan and of the missing statement_timeout; it gives the
#   count_sql estimate and the relations locked;
# - on a keyset job it shows an index scan and no plan-change warning;
# - with execute => true it reports one chunk's rows and time, and the
#   table is unchanged;
# - a trigger and a cascading foreign key on the changed table are named;
# - another role gets 42704 for a job it cannot see (nothing leaks), and
#   the caller's role and search_path are as before;
# - a superuser's dry_run of a role's job runs the job's code as that role
#   (its count_sql sees current_user = the owner), cannot be escaped by
#   that code (RESET ROLE fails with 42501, the role stays an ordinary
#   one), and leaves nothing the code wrote.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = ChunkbatchNode->create('dry_run', extension_in => ['postgres']);
$node->sql(
	q{CREATE ROLE app LOGIN; CREATE ROLE other LOGIN;
CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0, flag boolean NOT NULL DEFAULT false);
INSERT INTO big (id) SELECT generate_series(1, 1000000);
CREATE TABLE child (id bigint PRIMARY KEY, big_id bigint REFERENCES big ON DELETE CASCADE);
CREATE FUNCTION big_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER big_touched BEFORE UPDATE ON big FOR EACH ROW EXECUTE FUNCTION big_touch();
ANALYZE big;
GRANT SELECT, UPDATE ON big TO app;});
$node->sql(
	q{SELECT chunkbatch.create_job('in_limit',
  'UPDATE big SET v = v + 1 WHERE id IN (SELECT id FROM big WHERE NOT flag LIMIT $1)',
  batch_size => 100, target_chunk_ms => 50, max_batch_size => 100000,
  count_sql => 'SELECT count(*) FROM big WHERE NOT flag');
SELECT chunkbatch.create_job('keyset',
  'UPDATE big SET v = v + 1 WHERE id IN (SELECT id FROM big WHERE $2 IS NULL OR id > $2
                                          ORDER BY id LIMIT $1) RETURNING id',
  batch_size => 500, cursor_type => 'bigint', statement_timeout => '5s');},
	role => 'app');

my $report = $node->sql(
	q{SELECT string_agg(item || ': ' || detail, E'\n') FROM chunkbatch.dry_run('in_limit')},
	role => 'app');
note($report);
like($report, qr/^estimate: 1000000 rows \(count_sql\), about 10000 chunks of 100 rows$/m,
	'the estimate comes from count_sql');
like($report, qr/^plan at 100 rows: ModifyTable > /m, 'the plan at the first size');
like($report, qr/^plan at 100000 rows: ModifyTable > /m, 'the plan at the largest adaptive size');
like($report, qr/^warning: the plan changes shape between 100 and 100000 rows/m,
	'it warns that the plan changes shape between the sizes');
like($report, qr/^warning: sequential scan of big \(a large table\) at 100000 rows$/m,
	'it warns of the sequential scan of the large table');
like($report, qr/^warning: no statement_timeout/m, 'and of the missing statement_timeout');
like($report, qr/^locks: big: ROW EXCLUSIVE/m, 'it names the relation the chunk changes');
like($report, qr/^warning: trigger big_touched fires on big$/m, 'the trigger that fires');
like($report, qr/^warning: foreign key child_big_id_fkey of child cascades to it \(ON DELETE CASCADE\)$/m,
	'the cascading foreign key');

$report = $node->sql(
	q{SELECT string_agg(item || ': ' || detail, E'\n')
        FROM chunkbatch.dry_run('keyset', execute => true)},
	role => 'app');
note($report);
like($report, qr/^plan at 500 rows: .*Index (Only )?Scan/m, 'a keyset job shows an index scan');
unlike($report, qr/plan changes shape|no statement_timeout/,
	'and neither a plan change nor a missing statement_timeout');
like($report, qr/^executed: the first chunk: 500 rows in [\d.]+ ms, rolled back$/m,
	'execute => true reports the rows and time of one chunk');
is($node->sql(q{SELECT sum(v) FROM big}), '0', 'and the table is unchanged');

my ($sqlstate, $stderr) =
  $node->sql_error(q{SELECT * FROM chunkbatch.dry_run('keyset')}, role => 'other');
is($sqlstate, '42704', 'another role cannot see the job: 42704') or diag($stderr);

is( $node->sql(
		q{BEGIN;
SET LOCAL search_path = pg_catalog, public;
SELECT count(*) > 0 FROM chunkbatch.dry_run('in_limit');
SELECT current_user || '|' || current_setting('search_path');
COMMIT;}),
	"t\npostgres|pg_catalog, public",
	'afterwards the caller\'s role and search_path are as before');

# The job's code runs in the caller's session: a hostile owner's count_sql
# must not take the identity of a superuser who looks at its job.
$node->sql(
	q{CREATE TABLE app_log (who name);
GRANT INSERT ON app_log TO app;
CREATE FUNCTION log_who() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.app_log VALUES (current_user);
    RETURN CASE WHEN current_user = 'app' THEN 7 ELSE 9 END;
END $$;
CREATE FUNCTION take_over() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'RESET ROLE';
    EXECUTE 'ALTER ROLE app SUPERUSER';
    RETURN 1;
END $$;
});
$node->sql(
	q{SELECT chunkbatch.create_job('who', 'UPDATE big SET v = v WHERE id < 0 AND ($2 IS NULL OR id > $2) RETURNING id',
  cursor_type => 'bigint', count_sql => 'SELECT public.log_who()');},
	role => 'app');
$node->sql(
	q{SELECT chunkbatch.create_job('take_over', 'UPDATE big SET v = v WHERE id < 0 AND ($2 IS NULL OR id > $2) RETURNING id',
  cursor_type => 'bigint', count_sql => 'SELECT public.take_over()');},
	role => 'app');
like(
	$node->sql(
		q{SELECT string_agg(item || ': ' || detail, E'\n') FROM chunkbatch.dry_run('who')}),
	qr/^estimate: 7 rows \(count_sql\)/m,
	'a superuser\'s dry_run runs the job\'s count_sql as the job\'s owner');
is($node->sql(q{SELECT count(*) FROM app_log}), '0', '... and keeps nothing it wrote');
($sqlstate, $stderr) = $node->sql_error(q{SELECT * FROM chunkbatch.dry_run('take_over')});
is($sqlstate, '42501', 'the job\'s code cannot RESET ROLE to the superuser: 42501')
  or diag($stderr);
is( $node->sql(
		q{SELECT rolsuper::text || '|' || current_user FROM pg_roles WHERE rolname = 'app'}),
	'false|postgres', '... the owner stays an ordinary role, the caller is itself');

$node->stop;
done_testing();
