# Copyright (c) 2026, chunkbatch developers

=pod

=head1 NAME

ChunkbatchNode - a PostgreSQL::Test::Cluster that runs chunkbatch, and the
helpers the chunkbatch TAP scripts share

=head1 SYNOPSIS

  use FindBin;
  use lib "$FindBin::Bin/lib";
  use ChunkbatchNode qw(keyset_sql);

  # init, chunkbatch preloaded, naptime 1, max_worker_processes 16,
  # start, CREATE EXTENSION chunkbatch in postgres
  my $node = ChunkbatchNode->create('name',
      conf => ['chunkbatch.max_workers = 4'],
      extension_in => ['postgres']);

  $node->create_slow_job(job => 'slow', table => 'items', rows => 200,
      sleep => 0.1, batch_size => 10);
  my $run = $node->queue_run('slow');
  ok($node->poll_run($run, "state = 'running' AND chunks_done >= 3"), ...);
  is($node->final_state($run, '60s'), 'succeeded', ...);
  is($node->once_count('items'), '200|200', ...);
  my ($sqlstate, $stderr) = $node->sql_error(q{SELECT chunkbatch.run('x')});

  $node->stop;
  done_testing();

=head1 DESCRIPTION

Every node made by this class (C<create>, C<new>, C<create_standby>) is
stopped with mode 'immediate' and fail_ok by an END block, newest first:
should a server die (restart_after_crash is off), the script fails
without making the test framework bail out of the remaining scripts.
A script no longer needs an END block of its own.

Unless said otherwise, a method runs in the database given by its option
C<db> (default 'postgres'), and C<role> makes it connect as that role.

=cut

package ChunkbatchNode;

use strict;
use warnings;

use Exporter 'import';
use Test::More ();
use Time::HiRes ();
use PostgreSQL::Test::Cluster ();
use parent -norequire, 'PostgreSQL::Test::Cluster';

our @EXPORT_OK = qw(keyset_sql slow_chunk_sql $FINAL_STATES);

# The states a run ends in (those chunkbatch.wait() returns on), as an SQL
# list.
our $FINAL_STATES =
  q{('succeeded', 'failed', 'cancelled', 'skipped', 'stopped')};

my @nodes;

END
{
	local $?;
	foreach my $node (reverse @nodes)
	{
		$node->stop('immediate', fail_ok => 1);
	}
}

=pod

=head2 Nodes

=over

=item ChunkbatchNode->new($name, %params)

PostgreSQL::Test::Cluster->new, and the node is stopped at the end.

=cut

sub new
{
	my ($class, $name, %params) = @_;
	my $node = $class->SUPER::new($name, %params);
	push @nodes, $node;
	return $node;
}

=pod

=item $node->setup(%opts)

init, append the configuration, start, and CREATE EXTENSION chunkbatch in
the given databases.  Options:

  preload               shared_preload_libraries ('chunkbatch'; undef or ''
                        leaves it unset)
  naptime               chunkbatch.naptime (1; undef leaves it unset)
  max_worker_processes  (16; undef leaves it unset)
  conf                  further lines of postgresql.conf: a string or an
                        array of lines
  init                  a hash of parameters for init, e.g.
                        { allows_streaming => 1 }
  start                 0: only init and configure
  extension_in          databases to CREATE EXTENSION chunkbatch in; those
                        that do not exist are created first

Returns the node.

=cut

sub setup
{
	my ($self, %opts) = @_;
	my %conf = (
		shared_preload_libraries => 'chunkbatch',
		'chunkbatch.naptime' => 1,
		max_worker_processes => 16);
	$conf{shared_preload_libraries} = $opts{preload}
	  if exists $opts{preload};
	$conf{'chunkbatch.naptime'} = $opts{naptime} if exists $opts{naptime};
	$conf{max_worker_processes} = $opts{max_worker_processes}
	  if exists $opts{max_worker_processes};

	$self->init(%{ $opts{init} // {} });
	my $lines = '';
	$lines .= "shared_preload_libraries = '$conf{shared_preload_libraries}'\n"
	  if defined $conf{shared_preload_libraries}
	  && $conf{shared_preload_libraries} ne '';
	$lines .= "chunkbatch.naptime = $conf{'chunkbatch.naptime'}\n"
	  if defined $conf{'chunkbatch.naptime'};
	$lines .= "max_worker_processes = $conf{max_worker_processes}\n"
	  if defined $conf{max_worker_processes};
	my $extra = $opts{conf} // [];
	$lines .= join('', map { /\n\z/ ? $_ : "$_\n" } ref $extra ? @$extra : ($extra));
	$self->append_conf('postgresql.conf', $lines);

	return $self if defined $opts{start} && !$opts{start};
	$self->start;
	foreach my $db (@{ $opts{extension_in} // [] })
	{
		$self->create_database($db, if_not_exists => 1);
	}
	return $self;
}

=pod

=item ChunkbatchNode->create($name, %opts)

new($name) and setup(%opts): a started node with chunkbatch preloaded.

=cut

sub create
{
	my ($class, $name, %opts) = @_;
	return $class->new($name)->setup(%opts);
}

=pod

=item $primary->create_standby($name)

A streaming standby of this node (which was set up with
init => { allows_streaming => 1 }), from a new base backup named 'backup',
started and caught up.

=cut

sub create_standby
{
	my ($self, $name) = @_;
	$self->backup('backup');
	my $standby = ref($self)->new($name);
	$standby->init_from_backup($self, 'backup', has_streaming => 1);
	$standby->start;
	$self->wait_for_catchup($standby);
	return $standby;
}

=pod

=item $node->create_database($db, %opts)

CREATE DATABASE $db, then CREATE EXTENSION chunkbatch in it.  Options:
extension => 0 skips the extension; if_not_exists => 1 skips the
CREATE DATABASE of an existing database.

=cut

sub create_database
{
	my ($self, $db, %opts) = @_;
	my $exists = $opts{if_not_exists}
	  && $self->safe_psql('postgres',
		"SELECT count(*) FROM pg_database WHERE datname = " . _literal($db))
	  eq '1';
	$self->safe_psql('postgres', "CREATE DATABASE $db") unless $exists;
	$self->safe_psql($db, 'CREATE EXTENSION chunkbatch')
	  if $opts{extension} // 1;
	return;
}

=pod

=head2 Polling

=over

=item $node->poll_for($query, $re, $timeout, %opts)

Run $query until its output matches $re, tolerating connection failures
(as while a server restarts after a crash).  Returns the output, or undef
(with a diagnostic) after $timeout seconds (60).  Options as for sql().

=item $node->log_wait($re, $offset, $timeout)

Wait until the server log matches $re after byte $offset; false after
$timeout seconds.

=back

=cut

sub poll_for
{
	my ($self, $query, $re, $timeout, %opts) = @_;
	my $db = _connect_params($self, \%opts);
	my $deadline = Time::HiRes::time() + ($timeout // 60);
	my ($ret, $out, $err);
	while (Time::HiRes::time() < $deadline)
	{
		($ret, $out, $err) = $self->psql($db, $query, %opts);
		return $out if $ret == 0 && defined $out && $out =~ $re;
		Time::HiRes::usleep(50_000);
	}
	Test::More::diag("poll_for timed out: $query\nlast output: "
		  . ($out // '') . "\nstderr: " . ($err // ''));
	return undef;
}

sub log_wait
{
	my ($self, $re, $offset, $timeout) = @_;
	my $deadline = Time::HiRes::time() + $timeout;
	while (Time::HiRes::time() < $deadline)
	{
		return 1 if $self->log_contains($re, $offset);
		Time::HiRes::usleep(50_000);
	}
	return 0;
}

=pod

=back

=head2 SQL

=over

=item $node->sql($query, %opts)

safe_psql: the output of $query, dying on any error.  Options: db, role;
the others go to safe_psql.

=cut

sub sql
{
	my ($self, $query, %opts) = @_;
	my $db = _connect_params($self, \%opts);
	return $self->safe_psql($db, $query, %opts);
}

=pod

=item $node->sql_error($query, %opts)

Run $query, expected to fail, with VERBOSITY verbose.  Returns the SQLSTATE
of its error ('' if it succeeded), its stderr and its stdout.  Options: db,
role; the others go to psql (e.g. timeout).

=cut

sub sql_error
{
	my ($self, $query, %opts) = @_;
	my $db = _connect_params($self, \%opts);
	my ($ret, $stdout, $stderr) =
	  $self->psql($db, "\\set VERBOSITY verbose\n$query", %opts);
	return ('', $stderr, $stdout) if $ret == 0;
	my ($sqlstate) = $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ($sqlstate // "no SQLSTATE (psql exit status $ret)",
		$stderr, $stdout);
}

=pod

=item $node->sqlstate_of($query, %opts)

The SQLSTATE that sql_error returns, alone.

=cut

sub sqlstate_of
{
	my ($self, $query, %opts) = @_;
	my ($sqlstate) = $self->sql_error($query, %opts);
	return $sqlstate;
}

=pod

=item $node->once_count($table, %opts)

'rows|rows whose counter is 1' of a table with a per-row counter column.

=cut

sub once_count
{
	my ($self, $table, %opts) = @_;
	return $self->sql(
		"SELECT count(*), count(*) FILTER (WHERE counter = 1) FROM $table",
		%opts);
}

=pod

=back

=head2 Runs

=over

=item $node->queue_run($job, %opts)

SELECT chunkbatch.run($job): the new run's id.  Option params: the run's
parameters as JSON text.

=cut

sub queue_run
{
	my ($self, $job, %opts) = @_;
	my $params = delete $opts{params};
	my $args = _literal($job);
	$args .= ', ' . _literal($params) if defined $params;
	return $self->sql("SELECT chunkbatch.run($args)", %opts);
}

=pod

=item $node->final_state($run, $timeout, %opts)

SELECT chunkbatch.wait($run, $timeout) ($timeout '60s' if undef): the
run's final state, or its state when $timeout expired first.

=cut

sub final_state
{
	my ($self, $run, $timeout, %opts) = @_;
	$timeout //= '60s';
	return $self->sql("SELECT chunkbatch.wait($run, '$timeout')", %opts);
}

=pod

=item $node->poll_run($run, $condition, %opts)

poll_query_until "SELECT $condition FROM chunkbatch.runs WHERE run_id =
$run" is true (so a condition can also end the wait when the run failed).
Option db.

=cut

sub poll_run
{
	my ($self, $run, $condition, %opts) = @_;
	return $self->poll_query_until($opts{db} // 'postgres',
		"SELECT $condition FROM chunkbatch.runs WHERE run_id = $run");
}

=pod

=item $node->poll_final_state($run, %opts)

poll_run until the run is in one of $FINAL_STATES: a wait that only
observes the run, polling from new sessions instead of holding one in
chunkbatch.wait().  Option job: also require the run to be of that job.
Option db.

=cut

sub poll_final_state
{
	my ($self, $run, %opts) = @_;
	my $cond = "state IN $FINAL_STATES";
	$cond .= ' AND job_name = ' . _literal($opts{job}) if defined $opts{job};
	return $self->poll_run($run, $cond, %opts);
}

=pod

=back

=head2 Fixtures

=over

=item keyset_sql($table)

Keyset chunk SQL over a table with columns id and counter: counter =
counter + 1 on the next $1 rows after key $2, returning their keys.

=cut

sub keyset_sql
{
	my ($table) = @_;
	return "UPDATE $table SET counter = counter + 1"
	  . " WHERE id IN (SELECT id FROM $table WHERE \$2 IS NULL OR id > \$2"
	  . " ORDER BY id LIMIT \$1) RETURNING id";
}

=pod

=item $node->create_slow_table($table, %opts)

In database db: a table $table (id bigint PRIMARY KEY, counter int NOT
NULL DEFAULT 0) with ids 1 .. rows (option rows, default 100), and the
function

  slow_chunk(tbl text, pause float8, n int, after_id bigint,
             log boolean DEFAULT true) RETURNS SETOF bigint

a keyset chunk: it sleeps pause seconds, sets counter = counter + 1 on the
next n rows of tbl after after_id and returns their keys; with log, it
then inserts into chunk_log, in the chunk's own transaction, a row

  (tbl, pid of the process, server port, time the chunk began, rows done)

Option log => 0: no chunk_log table is created.

=cut

sub create_slow_table
{
	my ($self, $table, %opts) = @_;
	my $rows = $opts{rows} // 100;
	my $log = $opts{log} // 1;
	my $sql = <<"EOSQL";
SET client_min_messages = warning;
CREATE TABLE $table (id bigint PRIMARY KEY, counter int NOT NULL DEFAULT 0);
INSERT INTO $table (id) SELECT generate_series(1, $rows);
EOSQL
	$sql .= <<'EOSQL' if $log;
CREATE TABLE IF NOT EXISTS chunk_log (
  tbl text NOT NULL, pid int NOT NULL, port int NOT NULL,
  at timestamptz NOT NULL, n bigint NOT NULL);
EOSQL
	$sql .= <<'EOSQL';
CREATE OR REPLACE FUNCTION slow_chunk(tbl text, pause float8, n int,
                                      after_id bigint, log boolean DEFAULT true)
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz := clock_timestamp();
  done bigint;
BEGIN
  PERFORM pg_sleep(pause);
  RETURN QUERY EXECUTE format(
    'UPDATE %I t SET counter = t.counter + 1
      WHERE t.id IN (SELECT s.id FROM %I s
                      WHERE $2 IS NULL OR s.id > $2
                      ORDER BY s.id LIMIT $1)
      RETURNING t.id', tbl, tbl) USING n, after_id;
  GET DIAGNOSTICS done = ROW_COUNT;
  IF log THEN
    INSERT INTO chunk_log
      VALUES (tbl, pg_backend_pid(), current_setting('port')::int, started, done);
  END IF;
END
$$;
EOSQL
	$self->sql($sql, db => $opts{db});
	return;
}

=pod

=item slow_chunk_sql($table, $pause, %opts)

The chunk SQL of a job that calls slow_chunk() on $table; option log => 0
for a job whose chunks do not log.

=cut

sub slow_chunk_sql
{
	my ($table, $pause, %opts) = @_;
	my $log = ($opts{log} // 1) ? '' : ', false';
	return "SELECT * FROM slow_chunk('$table', $pause, \$1, \$2$log)";
}

=pod

=item $node->create_slow_job(%opts)

create_slow_table, and a keyset job (cursor_type bigint) over it whose
chunks call slow_chunk().  Options: job ('slow'), table ('items'), rows
(100), sleep (seconds per chunk, 0.1), batch_size (10), lock_group, log (1),
args (further create_job arguments, as SQL), db.

=cut

sub create_slow_job
{
	my ($self, %opts) = @_;
	my $job = $opts{job} // 'slow';
	my $table = $opts{table} // 'items';
	$self->create_slow_table(
		$table,
		rows => $opts{rows},
		log => $opts{log},
		db => $opts{db});
	my $chunk_sql = slow_chunk_sql($table, $opts{sleep} // 0.1,
		log => $opts{log});
	my $args = "job_name => " . _literal($job)
	  . ",\n  chunk_sql => " . _literal($chunk_sql)
	  . ",\n  batch_size => " . ($opts{batch_size} // 10);
	$args .= ",\n  lock_group => " . _literal($opts{lock_group})
	  if defined $opts{lock_group};
	$args .= ",\n  cursor_type => 'bigint'";
	$args .= ",\n  $opts{args}" if defined $opts{args};
	$self->sql("SELECT chunkbatch.create_job(\n  $args)", db => $opts{db});
	return;
}

=pod

=back

=cut

# An SQL string literal.
sub _literal
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# Take the options db and role out of %$opts; return the database, and
# with role, set the connection string that connects as that role.
sub _connect_params
{
	my ($self, $opts) = @_;
	my $db = delete $opts->{db} // 'postgres';
	my $role = delete $opts->{role};
	$opts->{connstr} = $self->connstr($db) . " user=$role" if defined $role;
	return $db;
}

1;
