# Copyright (c) 2026, chunkbatch developers
#
# What one role can do to a shared server: the checks that stop a run of
# one owner from turning into a storm, an endless loop or a wrong answer.
#
# - an owner whose every transaction is read-only (ALTER ROLE ... SET
#   default_transaction_read_only = on): its run fails with that error
#   (25006) after one worker start, instead of workers started again and
#   again; the server log holds a handful of lines about it;
# - an owner with CONNECTION LIMIT 0 (which PostgreSQL does not apply to
#   background workers): its run fails at once with 53300, as for a role
#   without LOGIN, and no worker connects as that role;
# - a keys_sql that ignores $2 (the cursor) fails the run with 22000 at the
#   first isolation after the first chunk, and no row is processed twice;
# - wait() with a timeout of 30 days or 10 years waits (it does not return
#   at once because the timeout overflowed an int of milliseconds);
# - job and group names with invisible or bidirectional control characters
#   are refused (42602) in a UTF8 database;
# - a count_sql estimate too large for an ETA gives a NULL ETA, not a
#   negative one;
# - a run whose owner loses LOGIN while it runs fails at its next chunk
#   with 28000.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = ChunkbatchNode->create('shared_server',
	conf => ['log_min_messages = info']);
$node->sql(q{CREATE DATABASE app ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'
               TEMPLATE template0});
$node->sql('CREATE EXTENSION chunkbatch', db => 'app');
$node->sql(q{CREATE ROLE ro_owner LOGIN; CREATE ROLE nc_owner LOGIN;
             CREATE ROLE app_owner LOGIN;
             GRANT CREATE ON SCHEMA public TO ro_owner, nc_owner, app_owner;},
	db => 'app');

# A trivial job for each owner.
foreach my $owner (qw(ro_owner nc_owner))
{
	$node->sql(
		"SET ROLE $owner;
         CREATE TABLE ${owner}_t (id bigint PRIMARY KEY);
         INSERT INTO ${owner}_t SELECT generate_series(1, 10);
         SELECT chunkbatch.create_job('${owner}_job',
           'DELETE FROM ${owner}_t WHERE id IN (SELECT id FROM ${owner}_t LIMIT \$1)');",
		db => 'app');
}

# Lines of the server log from $offset that mention run $run.
sub log_lines_about
{
	my ($run, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	return scalar(grep { /\brun $run\b/ } split /\n/, $log);
}

# ---------------------------------------------------------------------------
# A read-only owner.
# ---------------------------------------------------------------------------
$node->sql('ALTER ROLE ro_owner SET default_transaction_read_only = on');
my $offset = -s $node->logfile;
my $ro_run = $node->sql(q{SELECT chunkbatch.run('ro_owner_job')}, db => 'app');
my $t0 = time();
ok( $node->poll_query_until(
		'app',
		"SELECT state IN ('succeeded', 'failed', 'cancelled', 'skipped')
           FROM chunkbatch.runs WHERE run_id = $ro_run"),
	'the run of a read-only owner ends');
my $ro_secs = time() - $t0;
is( $node->sql(
		"SELECT state, sqlstate, error LIKE '%read-only transaction%'
           FROM chunkbatch.runs WHERE run_id = $ro_run", db => 'app'),
	'failed|25006|t',
	'it failed with the read-only error (25006)');
sleep 1;
my $log = slurp_file($node->logfile, $offset);
my $claims = () = $log =~ /ERROR:  cannot execute UPDATE in a read-only transaction/g;
ok($claims >= 1 && $claims <= 3,
	"its worker was started at most 3 times ($claims, ended after "
	  . sprintf('%.1f', $ro_secs) . ' s)');
my $lines = log_lines_about($ro_run, $offset);
ok($lines < 50, "the server log holds few lines about it ($lines)");
is($node->sql(q{SELECT count(*) FROM ro_owner_t}, db => 'app'),
	'10', 'nothing of its table changed');
$node->sql('ALTER ROLE ro_owner RESET default_transaction_read_only');

# ---------------------------------------------------------------------------
# An owner that may not connect any more.
# ---------------------------------------------------------------------------
$node->sql('ALTER ROLE nc_owner CONNECTION LIMIT 0');
$offset = -s $node->logfile;
my $nc_run = $node->sql(q{SELECT chunkbatch.run('nc_owner_job')}, db => 'app');
ok( $node->poll_query_until(
		'app',
		"SELECT state IN ('succeeded', 'failed', 'cancelled', 'skipped')
           FROM chunkbatch.runs WHERE run_id = $nc_run"),
	'the run of an owner with CONNECTION LIMIT 0 ends');
is( $node->sql(
		"SELECT state, sqlstate, error LIKE '%has CONNECTION LIMIT 0%'
           FROM chunkbatch.runs WHERE run_id = $nc_run", db => 'app'),
	'failed|53300|t',
	'it failed with 53300 naming the connection limit, as for a role without LOGIN');
is($node->sql(q{SELECT count(*) FROM nc_owner_t}, db => 'app'),
	'10', 'no worker connected as the role: nothing of its table changed');
$node->sql('ALTER ROLE nc_owner CONNECTION LIMIT -1');

# ---------------------------------------------------------------------------
# keys_sql that ignores the cursor.
# ---------------------------------------------------------------------------
$node->sql(
	q{SET ROLE app_owner;
CREATE TABLE k_items (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0,
                      bad boolean NOT NULL DEFAULT false);
INSERT INTO k_items (id) SELECT generate_series(1, 40);
UPDATE k_items SET bad = true WHERE id IN (5, 25);
CREATE FUNCTION k_chunk(n int, after bigint) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
    UPDATE k_items SET counter = counter + 1 / (CASE WHEN bad THEN 0 ELSE 1 END)
     WHERE id IN (SELECT id FROM k_items WHERE after IS NULL OR id > after
                   ORDER BY id LIMIT n)
    RETURNING id;
END
$$;
SELECT chunkbatch.create_job('keys_ignore_cursor',
  'SELECT * FROM k_chunk($1, $2)', batch_size => 10, cursor_type => 'bigint',
  on_error => 'isolate',
  keys_sql => 'SELECT id FROM k_items ORDER BY id LIMIT $1');}, db => 'app');
my $k_run = $node->sql(q{SELECT chunkbatch.run('keys_ignore_cursor')},
	db => 'app', role => 'app_owner');
is($node->sql("SELECT chunkbatch.wait($k_run, '60s')", db => 'app'),
	'failed', 'a run whose keys_sql ignores $2 fails');
is( $node->sql(
		"SELECT sqlstate, error LIKE 'keys_sql%not greater than the cursor%',
                dead_letters <= 1
           FROM chunkbatch.runs WHERE run_id = $k_run", db => 'app'),
	'22000|t|t',
	'... with 22000 (keys not past the cursor) at the first chunk after the first isolation');
is($node->sql(q{SELECT count(*) FROM k_items WHERE counter > 1}, db => 'app'),
	'0', 'no row was processed twice');

# ---------------------------------------------------------------------------
# wait() with long timeouts.
# ---------------------------------------------------------------------------
$node->create_slow_job(db => 'app', job => 'slow', table => 'slow_items',
	rows => 300, sleep => 0.2, batch_size => 5);
my $slow_run = $node->sql(q{SELECT chunkbatch.run('slow')}, db => 'app');
foreach my $timeout ('30 days', '50 days', '10 years')
{
	my $start = time();
	my ($sqlstate, $stderr) = $node->sql_error(
		"SET statement_timeout = '1500ms'; SELECT chunkbatch.wait($slow_run, '$timeout')",
		db => 'app');
	my $secs = time() - $start;
	is($sqlstate, '57014',
		"wait(run, '$timeout') waits until the statement timeout ("
		  . sprintf('%.1f', $secs) . ' s)')
	  or diag($stderr);
}
$node->sql("SELECT chunkbatch.cancel($slow_run)", db => 'app');

# ---------------------------------------------------------------------------
# An owner that loses LOGIN during its run.
# ---------------------------------------------------------------------------
$node->sql(q{GRANT CREATE ON SCHEMA public TO app_owner}, db => 'app');
$node->create_slow_job(db => 'app', job => 'login_lost', table => 'll_items',
	rows => 300, sleep => 0.2, batch_size => 5);
$node->sql(q{ALTER TABLE ll_items OWNER TO app_owner; ALTER TABLE chunk_log OWNER TO app_owner;
             SELECT chunkbatch.drop_job('login_lost')}, db => 'app');
$node->sql(q{SET ROLE app_owner;
SELECT chunkbatch.create_job('login_lost',
  'SELECT * FROM slow_chunk(''ll_items'', 0.2, $1, $2)', batch_size => 5,
  cursor_type => 'bigint')}, db => 'app');
my $ll_run = $node->sql(q{SELECT chunkbatch.run('login_lost')}, db => 'app');
ok( $node->poll_query_until(
		'app',
		"SELECT state = 'running' AND chunks_done >= 2
           FROM chunkbatch.runs WHERE run_id = $ll_run"),
	'a run of app_owner is running');
$node->sql('ALTER ROLE app_owner NOLOGIN');
is($node->sql("SELECT chunkbatch.wait($ll_run, '30s')", db => 'app'),
	'failed', 'when its owner loses LOGIN, the run fails at its next chunk');
is( $node->sql(
		"SELECT sqlstate, error LIKE '%lost the LOGIN attribute%', chunks_done < 60
           FROM chunkbatch.runs WHERE run_id = $ll_run", db => 'app'),
	'28000|t|t', '... with 28000 saying so, its checkpoint kept');
$node->sql('ALTER ROLE app_owner LOGIN');

# ---------------------------------------------------------------------------
# Names.
# ---------------------------------------------------------------------------
foreach my $case (
	[ 'zero-width space', q{E'regress\u200Bjob'} ],
	[ 'right-to-left override', q{E'regress\u202Ejob'} ],
	[ 'byte order mark', q{E'\uFEFFregress_job'} ],
	[ 'no-break space', q{E'regress\u00A0job'} ])
{
	my ($label, $name) = @$case;
	my ($sqlstate) = $node->sql_error(
		"SELECT chunkbatch.create_job($name, 'SELECT 1 WHERE \$1 < 0')",
		db => 'app');
	is($sqlstate, '42602', "a job name with a $label is refused (42602)");
	($sqlstate) = $node->sql_error(
		"SELECT chunkbatch.create_job('regress_ok_name', 'SELECT 1 WHERE \$1 < 0',
                                      lock_group => $name)",
		db => 'app');
	is($sqlstate, '42602', "a group name with a $label is refused (42602)");
}
is( $node->sql(
		q{SELECT chunkbatch.create_job(E'r\u00E9gression_\u00FCber', 'SELECT 1 WHERE $1 < 0') > 0},
		db => 'app'),
	't', 'a name with accented letters is accepted');

# ---------------------------------------------------------------------------
# An estimate too large for an ETA.
# ---------------------------------------------------------------------------
$node->create_slow_job(db => 'app', job => 'huge_estimate', table => 'huge_items',
	rows => 100, sleep => 0.2, batch_size => 5,
	args => q{count_sql => 'SELECT 9000000000000000000::bigint'});
my $huge_run = $node->sql(q{SELECT chunkbatch.run('huge_estimate')}, db => 'app');
ok( $node->poll_query_until(
		'app',
		"SELECT rows_per_sec > 0 AND total_estimate > 0
           FROM chunkbatch.status_detail WHERE run_id = $huge_run"),
	'the run with a huge estimate has a rate');
is( $node->sql(
		"SELECT eta IS NULL, percent >= 0 FROM chunkbatch.status_detail WHERE run_id = $huge_run",
		db => 'app'),
	't|t', 'its ETA is NULL, not negative');
$node->sql("SELECT chunkbatch.cancel($huge_run)", db => 'app');

$node->stop;
done_testing();
