#!/usr/bin/perl
# bench/migration.pl: rebuild_indexes on a migration-shaped workload, on a
# throwaway cluster.
#
# A staging table of N items is upserted, item by item, into 6 destination
# tables carrying 19 non-unique secondary indexes (plus their primary keys)
# by ONE range-mode statement (a WITH chain of INSERT ... ON CONFLICT DO
# UPDATE over staging.id BETWEEN $1 AND $2), all or nothing per chunk, as a
# chunkbatch job with a fixed batch_size (1000 keys per chunk):
#
#   keep     rebuild_indexes => false (the indexes are maintained row by row)
#   rebuild  rebuild_indexes => true  (DROP INDEX CONCURRENTLY before the first
#            chunk, CREATE INDEX CONCURRENTLY after the last)
#
# REPS repetitions of each, interleaved (keep, rebuild; rebuild, keep; ...),
# each on freshly truncated destination tables with all 19 indexes present.
# Each run is waited for with CALL chunkbatch.run_and_wait() (no snapshot
# held), while a monitor session polls chunkbatch.runs (steps_done,
# chunks_done and the commit time of the row version, track_commit_timestamp)
# and the writers' lock waits in pg_stat_activity.  Meanwhile pgbench plays
# the application's writers: small UPDATEs and INSERTs into one destination
# table (stock) at a modest fixed rate; a window of BASELINE_SECS before each
# run gives their latencies without the batch.  After each rebuild run,
# pg_indexes of the destination tables must equal what it was before, every
# index must be valid, and every table must hold the N items.
#
#   perl bench/migration.pl [--smoke] --out FILE.json --md FILE.md [--git DESC] [--command TEXT]
#
# Needs PostgreSQL::Test::Cluster in PERL5LIB, PG_REGRESS, the PostgreSQL 15 binaries
# first in PATH and TESTDIR; bench/migration.sh sets these up and runs it as
# the postgres OS user.  Settings (environment, default / --smoke default):
#   MIG_ITEMS          1000000 / 20000   items in the staging table
#   MIG_REPS           3 / 1             repetitions of each variant
#   MIG_BATCH          1000              keys per chunk (fixed size)
#   MIG_WRITER_RATE    50                writer transactions per second (total)
#   MIG_WRITER_CLIENTS 2                 pgbench clients
#   MIG_BASELINE_SECS  10 / 3            writers alone before each run
#   MIG_POLL_MS        25                monitor poll interval
#   MIG_NOTE           ''                a note for the report (e.g. the load)
use strict;
use warnings;

use FindBin;
use Getopt::Long;
use JSON::PP;
use POSIX qw(strftime WNOHANG);
use Time::HiRes qw(time sleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my %opt = (git => 'unknown', command => 'perl bench/migration.pl');
GetOptions(\%opt, 'smoke', 'out=s', 'md=s', 'git=s', 'command=s')
  && defined $opt{out} && defined $opt{md} && !@ARGV
  or die "usage: migration.pl [--smoke] --out FILE.json --md FILE.md [--git DESC] [--command TEXT]\n";
my $smoke = $opt{smoke};

sub setting
{
	my ($name, $full, $smoke_default) = @_;
	my $v = $ENV{"MIG_$name"};
	return defined $v && $v ne '' ? $v : $smoke ? $smoke_default : $full;
}
my $N = setting('ITEMS', 1000000, 20000);
my $REPS = setting('REPS', 3, 1);
my $BATCH = setting('BATCH', 1000, 1000);
my $RATE = setting('WRITER_RATE', 50, 50);
my $CLIENTS = setting('WRITER_CLIENTS', 2, 2);
my $BASELINE_SECS = setting('BASELINE_SECS', 10, 3);
my $POLL = setting('POLL_MS', 25, 25) / 1000;
my $NOTE = setting('NOTE', '', '');
die "MIG_ITEMS must be a whole number\n" unless $N =~ /^\d+$/ && $N > 0;

my $CONF = <<'EOF';
shared_preload_libraries = 'chunkbatch'
chunkbatch.naptime = 1
max_worker_processes = 16
shared_buffers = 1GB
max_wal_size = 4GB
autovacuum = on
track_commit_timestamp = on
log_line_prefix = '%m [%p] %q%a: '
# lock waits longer than deadlock_timeout (1 s) are logged
log_lock_waits = on

fsync = on
wal_level = replica
max_wal_senders = 10
log_statement = none
EOF

my @TABLES = qw(items prices stock descriptions tags meta);

# --- the schema: staging, 6 destination tables, 19 secondary indexes -----------
my $SCHEMA = <<'EOF';
CREATE TABLE mig_stop (stop boolean NOT NULL);
INSERT INTO mig_stop VALUES (false);
CREATE TABLE staging (
    id bigint PRIMARY KEY, sku text NOT NULL, name text NOT NULL, category int NOT NULL,
    brand int NOT NULL, price numeric(12,2) NOT NULL, cost numeric(12,2) NOT NULL,
    currency text NOT NULL, warehouse int NOT NULL, qty int NOT NULL, lang text NOT NULL,
    title text NOT NULL, body text NOT NULL, tag1 text NOT NULL, tag2 text NOT NULL,
    tag3 text NOT NULL, source text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE items (item_id bigint PRIMARY KEY, sku text NOT NULL, name text NOT NULL,
    category int NOT NULL, brand int NOT NULL, created_at timestamptz NOT NULL);
CREATE INDEX items_sku ON items (sku);
CREATE INDEX items_name_lower ON items (lower(name));
CREATE INDEX items_category_brand ON items (category, brand);
CREATE INDEX items_created_at ON items (created_at);
CREATE TABLE prices (item_id bigint PRIMARY KEY, price numeric(12,2) NOT NULL,
    cost numeric(12,2) NOT NULL, currency text NOT NULL, valid_from timestamptz NOT NULL);
CREATE INDEX prices_price ON prices (price);
CREATE INDEX prices_cost ON prices (cost);
CREATE INDEX prices_currency ON prices (currency);
CREATE INDEX prices_valid_from ON prices (valid_from);
CREATE TABLE stock (item_id bigint PRIMARY KEY, warehouse int NOT NULL, qty int NOT NULL,
    updated_at timestamptz NOT NULL);
CREATE INDEX stock_warehouse ON stock (warehouse);
CREATE INDEX stock_qty ON stock (qty);
CREATE INDEX stock_updated_at ON stock (updated_at);
CREATE INDEX stock_empty ON stock (warehouse) WHERE qty = 0;
CREATE TABLE descriptions (item_id bigint PRIMARY KEY, lang text NOT NULL, title text NOT NULL,
    body text NOT NULL);
CREATE INDEX descriptions_lang ON descriptions (lang);
CREATE INDEX descriptions_title ON descriptions (title);
CREATE TABLE tags (item_id bigint PRIMARY KEY, tag1 text NOT NULL, tag2 text NOT NULL,
    tag3 text NOT NULL);
CREATE INDEX tags_tag1 ON tags (tag1);
CREATE INDEX tags_tag2 ON tags (tag2);
CREATE INDEX tags_tag3 ON tags (tag3);
CREATE TABLE meta (item_id bigint PRIMARY KEY, source text NOT NULL,
    migrated_at timestamptz NOT NULL, checksum text NOT NULL);
CREATE INDEX meta_source ON meta (source);
CREATE INDEX meta_migrated_at ON meta (migrated_at);
EOF

my $FILL = <<'EOF';
INSERT INTO staging
SELECT i, 'SKU-' || lpad(i::text, 9, '0'), 'item ' || md5(i::text), i % 500, i % 97,
       (i % 100000) / 100.0, (i % 70001) / 100.0, (ARRAY['EUR', 'USD', 'GBP'])[1 + i % 3],
       i % 20, i % 1000, (ARRAY['en', 'de', 'fr', 'es'])[1 + i % 4],
       'title ' || md5((i * 7)::text), repeat(md5(i::text), 3),
       'tag' || (i % 50), 'tag' || (i % 300), 'tag' || (i % 1000),
       (ARRAY['erp', 'shop', 'legacy'])[1 + i % 3],
       timestamptz '2020-01-01 00:00+00' + i * interval '1 minute'
  FROM generate_series(1, :n) AS i;
VACUUM ANALYZE staging;
EOF

# The chunk statement: one item is written to all 6 tables in the chunk's
# transaction.  Rows processed = the meta rows written.
my $CHUNK_SQL = <<'EOF';
WITH s AS MATERIALIZED (SELECT * FROM staging WHERE id BETWEEN $1 AND $2),
w_items AS (
    INSERT INTO items (item_id, sku, name, category, brand, created_at)
    SELECT id, sku, name, category, brand, created_at FROM s
    ON CONFLICT (item_id) DO UPDATE SET sku = excluded.sku, name = excluded.name,
        category = excluded.category, brand = excluded.brand, created_at = excluded.created_at),
w_prices AS (
    INSERT INTO prices (item_id, price, cost, currency, valid_from)
    SELECT id, price, cost, currency, created_at FROM s
    ON CONFLICT (item_id) DO UPDATE SET price = excluded.price, cost = excluded.cost,
        currency = excluded.currency, valid_from = excluded.valid_from),
w_stock AS (
    INSERT INTO stock (item_id, warehouse, qty, updated_at)
    SELECT id, warehouse, qty, created_at FROM s
    ON CONFLICT (item_id) DO UPDATE SET warehouse = excluded.warehouse, qty = excluded.qty,
        updated_at = excluded.updated_at),
w_descriptions AS (
    INSERT INTO descriptions (item_id, lang, title, body)
    SELECT id, lang, title, body FROM s
    ON CONFLICT (item_id) DO UPDATE SET lang = excluded.lang, title = excluded.title,
        body = excluded.body),
w_tags AS (
    INSERT INTO tags (item_id, tag1, tag2, tag3)
    SELECT id, tag1, tag2, tag3 FROM s
    ON CONFLICT (item_id) DO UPDATE SET tag1 = excluded.tag1, tag2 = excluded.tag2,
        tag3 = excluded.tag3)
INSERT INTO meta (item_id, source, migrated_at, checksum)
SELECT id, source, now(), md5(sku || name) FROM s
ON CONFLICT (item_id) DO UPDATE SET source = excluded.source, migrated_at = excluded.migrated_at,
    checksum = excluded.checksum
EOF
$CHUNK_SQL =~ s/\n$//;

# The application's writers: half UPDATEs of a random item (which the
# migration may not have written yet: then no row), half upserts of an item
# beyond the staging range, all in stock; the last statement makes the
# clients stop once mig_stop.stop is set.
my $WRITER = <<'EOF';
\set r random(1, 2)
\set id random(1, :n)
\set newid random(:n + 1, 10 * :n)
\set q random(0, 50)
\if :r = 1
UPDATE stock SET qty = qty + 1, updated_at = now() WHERE item_id = :id;
\else
INSERT INTO stock (item_id, warehouse, qty, updated_at) VALUES (:newid, :q % 20, :q, now())
  ON CONFLICT (item_id) DO UPDATE SET qty = stock.qty + 1, updated_at = now();
\endif
SELECT 1 / (SELECT CASE WHEN stop THEN 0 ELSE 1 END FROM mig_stop);
EOF

# --- output --------------------------------------------------------------------
my $builder = Test::More->builder;
my ($TTY, $LOG) = ($builder->output, undef);
if (my $tee = tied *$TTY)
{
	($TTY, $LOG) = @$tee;
	$builder->output($LOG);
	$builder->todo_output($LOG);
}
sub say_progress
{
	my $line = sprintf "[migration %s] %s\n", strftime('%H:%M:%S', gmtime), join('', @_);
	print $TTY $line;
	print $LOG $line if $LOG;
}

my $t_start = time;
my %results = (
	format => 'chunkbatch-migration-bench 1',
	run => {
		source => 'bench/migration.pl',
		command => $opt{command} . ($smoke && $opt{command} !~ /--smoke/ ? ' --smoke' : ''),
		started_at => strftime('%Y-%m-%d %H:%M:%S UTC', gmtime $t_start),
		complete => JSON::PP::false,
		chunkbatch => $opt{git},
		machine => machine(),
		load_start => loadavg(),
		other_work_at_start => other_bench(),
		note => $NOTE,
		config => {
			items => 0 + $N, reps => 0 + $REPS, batch_size => 0 + $BATCH, sizing => 'fixed batch_size (keys per chunk)',
			writer_rate => 0 + $RATE, writer_clients => 0 + $CLIENTS, baseline_secs => 0 + $BASELINE_SECS,
			poll_ms => $POLL * 1000, tables => \@TABLES,
		},
		chunk_sql => $CHUNK_SQL,
		writer_script => $WRITER,
	},
	runs => [],
);

# --- the cluster ---------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('migration');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', "\n# chunkbatch migration bench\n$CONF");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE mig');
say_progress('server running: psql -h ', $node->host, ' -p ', $node->port, ' mig');

my $WORK = PostgreSQL::Test::Utils::tempdir('migration');
my @PSQL = ('psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', $node->host, '-p', $node->port, '-d', 'mig');

# sql(ROLE, SQL, VAR => VALUE...): run SQL (from a file, with psql
# variables), return the rows (fields split on |)
my $n_sql = 0;
sub sql
{
	my ($role, $text, %var) = @_;
	my $file = "$WORK/q" . ++$n_sql . '.sql';
	open my $fh, '>', $file or die "$file: $!";
	print $fh $text;
	close $fh;
	my @cmd = (@PSQL, '-U', $role, (map { ('-v', "$_=$var{$_}") } sort keys %var), '-f', $file);
	my $out = `@{[ join ' ', map { shell_quote($_) } @cmd ]} 2>$file.err`;
	if ($?)
	{
		my $err = do { local $/; open my $e, '<', "$file.err"; <$e> } // '';
		die "psql failed (status $?): $err\nSQL: $text\n";
	}
	unlink $file, "$file.err";
	return [ map { [ split /\|/, $_, -1 ] } grep { $_ ne '' } split /\n/, $out ];
}
sub shell_quote { my ($s) = @_; $s =~ s/'/'\\''/g; return "'$s'" }
sub val { my $r = sql(@_); return $r->[0][0] }

sql('postgres', <<'EOF');
CREATE EXTENSION chunkbatch;
CREATE ROLE mig LOGIN;
GRANT CREATE ON SCHEMA public TO mig;
GRANT pg_checkpoint TO mig;
EOF
sql('mig', $SCHEMA);
say_progress("filling staging with $N items");
sql('mig', $FILL, n => $N);

my $TABLE_LIST = join(', ', map { "'$_'" } @TABLES);
my $INDEX_SQL = "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
  . "AND tablename IN ($TABLE_LIST) ORDER BY tablename, indexname";
my $INVALID_SQL = "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
  . "WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ($TABLE_LIST) "
  . "AND NOT (i.indisvalid AND i.indisready AND i.indislive)";
my $SECONDARY_SQL = "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
  . "WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ($TABLE_LIST) AND NOT i.indisunique";
my $indexes_before = sql('mig', $INDEX_SQL);
my $n_secondary = val('mig', $SECONDARY_SQL);
die "expected 19 non-unique secondary indexes, found $n_secondary\n" unless $n_secondary == 19;
$results{run}{indexes} = [ map { $_->[2] } @$indexes_before ];
sub index_text { return join("\n", map { join('|', @$_) } @{ $_[0] }) }

for my $v ([ 'keep', 'false' ], [ 'rebuild', 'true' ])
{
	sql('mig', <<'EOF', job => "mig_$v->[0]", chunk_sql => $CHUNK_SQL, batch => $BATCH, rebuild => $v->[1]);
SELECT chunkbatch.create_job(:'job', :'chunk_sql', batch_size => :batch,
    range_table => 'staging', range_key => 'id', rebuild_indexes => :rebuild);
EOF
}

# the monitor's own session (superuser: sees every run and every backend)
my $watch = $node->background_psql('mig');
$watch->set_query_timer_restart;

# --- writers ---------------------------------------------------------------------
my $writer_script = "$WORK/writer.pgbench";
{ open my $fh, '>', $writer_script or die; print $fh $WRITER; close $fh }
my $pgbench_pid;
sub writers_start
{
	my ($tag) = @_;
	sql('mig', 'UPDATE mig_stop SET stop = false');
	my @cmd = ('pgbench', '-n', '-h', $node->host, '-p', $node->port, '-U', 'mig',
		'-c', $CLIENTS, '-j', 1, '-R', $RATE, '-T', 7200, '-f', $writer_script,
		'-D', "n=$N", '-l', "--log-prefix=$WORK/$tag", 'mig');
	$pgbench_pid = fork // die "fork: $!";
	if (!$pgbench_pid)
	{
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', "$WORK/$tag.out";
		open STDERR, '>&', \*STDOUT;
		$ENV{PGAPPNAME} = 'mig_writer';    # (PostgreSQL::Test::Utils sets PGAPPNAME to the script's name)
		exec @cmd or POSIX::_exit(127);
	}
}

# writers_stop(TAG): stop the clients; [scheduled start (epoch s), latency (ms)]
# of every transaction (with -R latency counts from the scheduled start)
sub writers_stop
{
	my ($tag) = @_;
	sql('mig', 'UPDATE mig_stop SET stop = true');
	for (1 .. 300)
	{
		last if waitpid($pgbench_pid, WNOHANG) == $pgbench_pid;
		sleep 0.1;
	}
	if (kill 0, $pgbench_pid)
	{
		say_progress('pgbench did not stop; killing it');
		kill 'TERM', $pgbench_pid;
		waitpid($pgbench_pid, 0);
	}
	undef $pgbench_pid;
	my @tx;
	for my $file (glob "$WORK/$tag.[0-9]*")
	{
		open my $fh, '<', $file or die "$file: $!";
		while (my $line = <$fh>)
		{
			my @f = split ' ', $line;
			next unless @f >= 6 && $f[2] =~ /^\d+$/;
			my $end = sprintf('%d.%06d', $f[4], $f[5]);
			push @tx, [ $end - $f[2] / 1e6, $f[2] / 1000 ];
		}
		close $fh;
		unlink $file;
	}
	return \@tx;
}

sub lat_stats
{
	my ($tx, $t0, $t1) = @_;
	my @l = sort { $a <=> $b } map { $_->[1] } grep { $_->[0] >= $t0 && $_->[0] <= $t1 } @$tx;
	return { n => scalar @l, p50_ms => pct(\@l, 0.5), p99_ms => pct(\@l, 0.99), max_ms => @l ? $l[-1] : undef };
}
sub pct
{
	my ($v, $p) = @_;
	return undef unless @$v;
	my $pos = $p * (@$v - 1);
	my $lo = int $pos;
	my $hi = $lo == $pos ? $lo : $lo + 1;
	return $v->[$lo] + ($pos - $lo) * ($v->[$hi] - $v->[$lo]);
}

END { kill 'TERM', $pgbench_pid if $pgbench_pid }

# --- one run -----------------------------------------------------------------------
# Reset: empty destination tables (TRUNCATE keeps the indexes), every index
# of the original set present and valid (a missing one is created from its
# saved definition), nothing else; then a checkpoint.
sub reset_tables
{
	sql('mig', 'TRUNCATE ' . join(', ', @TABLES));
	my %have = map { $_->[1] => 1 } @{ sql('mig', $INDEX_SQL) };
	for my $ix (@$indexes_before)
	{
		next if $have{ $ix->[1] };
		say_progress("reset: index $ix->[1] was missing; creating it");
		sql('mig', $ix->[2]);
	}
	my $now = sql('mig', $INDEX_SQL);
	die "reset: the indexes differ from the original set\n" unless index_text($now) eq index_text($indexes_before);
	die "reset: invalid index\n" unless val('mig', $INVALID_SQL) == 0;
	sql('mig', 'VACUUM ANALYZE ' . join(', ', @TABLES) . '; CHECKPOINT');
}

my $POLL_SQL = <<'EOF';
SELECT r.run_id, r.state, coalesce(r.steps_before, 0), coalesce(r.steps_done, 0), r.chunks_done,
       extract(epoch FROM pg_xact_commit_timestamp(r.xmin)), extract(epoch FROM clock_timestamp()),
       coalesce(r.recent_chunk_ms[1], 0),
       (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - a.query_start)) * 1000, 0)
          FROM pg_stat_activity a WHERE a.application_name = 'mig_writer' AND a.wait_event_type = 'Lock'),
       (SELECT string_agg(coalesce(a.wait_event_type, 'CPU') || ':' || coalesce(a.wait_event, '-'), ',')
          FROM pg_stat_activity a WHERE a.application_name = 'mig_writer' AND a.state = 'active')
  FROM chunkbatch.runs r WHERE r.run_id > %d ORDER BY r.run_id LIMIT 1
EOF

my %RAW;    # variant -> window -> latencies (ms) of every repetition
sub measure
{
	my ($variant, $rep) = @_;
	my $job = "mig_$variant";
	my $tag = "${variant}_$rep";
	reset_tables();
	my $prev = val('postgres', 'SELECT coalesce(max(run_id), 0) FROM chunkbatch.runs');
	my $log_offset = -s $node->logfile;
	writers_start($tag);
	my $tb0 = time;
	sleep $BASELINE_SECS;
	my $tb1 = time;

	# the run, waited for with CALL run_and_wait in its own psql
	my $t0 = time;
	my $err = "$WORK/$tag.call.err";
	my $pid = fork // die "fork: $!";
	if (!$pid)
	{
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', '/dev/null';
		open STDERR, '>', $err;
		exec @PSQL, '-U', 'mig', '-c', "CALL chunkbatch.run_and_wait('$job')" or POSIX::_exit(127);
	}
	my (@obs, $max_lock_wait_ms, $rc, @wait_samples);
	$max_lock_wait_ms = 0;
	my %seen;
	while (1)
	{
		my $line = $watch->query_safe(sprintf($POLL_SQL, $prev));
		if ($line ne '')
		{
			my ($run_id, $state, $sb, $sd, $cd, $cts, $now, $first_ms, $lw, $we) = split /\|/, $line;
			push @wait_samples, [ $now, $we ] if defined $we && $we ne '';
			$max_lock_wait_ms = $lw if $lw > $max_lock_wait_ms;
			my $key = "$sd/$cd";
			if (!$seen{$key}++)
			{
				push @obs, { steps_before => 0 + $sb, steps_done => 0 + $sd, chunks_done => 0 + $cd,
					commit_ts => $cts eq '' ? undef : 0 + $cts, seen_at => 0 + $now, first_chunk_ms => 0 + $first_ms };
			}
			if ($lw > 0 && !$seen{"lockwait"}++)
			{
				my $who = $watch->query_safe(q{SELECT string_agg(format('%s waits %s for %s (%s)', a.pid, a.wait_event,
					b.pid, coalesce(b.backend_type, '?') || ': ' || left(b.query, 60)), '; ')
					FROM pg_stat_activity a CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS bp(pid)
					LEFT JOIN pg_stat_activity b ON b.pid = bp.pid
					WHERE a.application_name = 'mig_writer' AND a.wait_event_type = 'Lock'});
				say_progress("  a writer waits for a lock: $who") if $who ne '';
			}
		}
		if (waitpid($pid, WNOHANG) == $pid) { $rc = $?; last }
		sleep $POLL;
	}
	my $t1 = time;
	if ($rc)
	{
		my $e = do { local $/; open my $fh, '<', $err; <$fh> } // '';
		die "CALL chunkbatch.run_and_wait('$job') failed (status $rc): $e";
	}
	my $tx = writers_stop($tag);

	my ($run_id, $state, $rows, $chunks, $avg, $max, $queued, $started, $last_chunk, $finished, $steps_before, $nsteps, $steps_done) =
	  @{ sql('postgres', <<"EOF")->[0] };
SELECT run_id, state, rows_done, chunks_done, avg_chunk_ms, max_chunk_ms,
       extract(epoch FROM queued_at), extract(epoch FROM started_at), extract(epoch FROM last_chunk_at),
       extract(epoch FROM finished_at), coalesce(steps_before, 0), coalesce(cardinality(steps), 0), coalesce(steps_done, 0)
  FROM chunkbatch.runs WHERE run_id > $prev ORDER BY run_id LIMIT 1
EOF
	die "run $run_id of $job ended $state\n" unless $state eq 'succeeded';

	# the split: before steps = started_at -> the commit of the last before
	# step (seen by the monitor as steps_done = steps_before with no chunk
	# yet; if the monitor missed that state: the first chunk's commit minus
	# its statement time); chunks -> last_chunk_at; after steps -> finished_at
	my ($before_end, $before_how);
	if ($steps_before == 0) { ($before_end, $before_how) = ($started, 'no before steps') }
	else
	{
		my ($o) = grep { $_->{steps_done} == $steps_before && $_->{chunks_done} == 0 && defined $_->{commit_ts} } @obs;
		if ($o) { ($before_end, $before_how) = ($o->{commit_ts}, 'commit time of the last before step') }
		else
		{
			my ($c1) = grep { $_->{chunks_done} == 1 && defined $_->{commit_ts} } @obs;
			($before_end, $before_how) = $c1
			  ? ($c1->{commit_ts} - $c1->{first_chunk_ms} / 1000, 'first chunk commit minus its statement time')
			  : (undef, 'not observed');
		}
	}
	my @after_steps;    # [step number, commit time]
	for my $o (@obs)
	{
		next unless $o->{steps_done} > $steps_before && defined $o->{commit_ts};
		push @after_steps, { step => $o->{steps_done}, done_at => $o->{commit_ts} };
	}
	my %split = (
		before_s => defined $before_end ? $before_end - $started : undef,
		before_how => $before_how,
		chunks_s => defined $before_end ? $last_chunk - $before_end : undef,
		after_s => $finished - $last_chunk,
		after_steps_observed => scalar @after_steps,
	);

	# writers: baseline window, the whole run, and for the phases
	my %w = (
		baseline => lat_stats($tx, $tb0, $tb1),
		run => lat_stats($tx, $started, $finished),
	);
	if (defined $before_end)
	{
		$w{before} = lat_stats($tx, $started, $before_end);
		$w{chunks} = lat_stats($tx, $before_end, $last_chunk);
	}
	$w{after} = lat_stats($tx, $last_chunk, $finished);
	# the raw latencies, for the figures pooled over the repetitions (not in the results file)
	my %win = (baseline => [ $tb0, $tb1 ], run => [ $started, $finished ], after => [ $last_chunk, $finished ]);
	$win{chunks} = [ $before_end, $last_chunk ] if defined $before_end;
	$win{before} = [ $started, $before_end ] if defined $before_end;
	for my $k (keys %win)
	{
		push @{ $RAW{$variant}{$k} }, map { $_->[1] } grep { $_->[0] >= $win{$k}[0] && $_->[0] <= $win{$k}[1] } @$tx;
	}

	# what the active writers waited for, per phase (samples of pg_stat_activity)
	my %wait_ev;
	for my $ws (@wait_samples)
	{
		my $ph = $ws->[0] < $started ? 'queued' : defined $before_end && $ws->[0] < $before_end ? 'before'
		  : $ws->[0] < $last_chunk ? 'chunks' : 'after';
		$wait_ev{$ph}{$_}++ for split /,/, $ws->[1];
	}

	# lock waits of the writers that the server logged (> deadlock_timeout)
	my @waits;
	if (open my $lf, '<', $node->logfile)
	{
		seek $lf, $log_offset, 0;
		while (my $l = <$lf>)
		{
			push @waits, $l =~ s/\s+$//r if $l =~ /mig_writer: LOG:  process \d+ (still waiting|acquired)/;
		}
	}

	# verification
	my $idx_after = sql('mig', $INDEX_SQL);
	my $same = index_text($idx_after) eq index_text($indexes_before);
	my $invalid = val('mig', $INVALID_SQL);
	my $counts = sql('mig', join(' UNION ALL ', map { "SELECT '$_', count(*) FILTER (WHERE item_id <= $N), count(*) FROM $_" } @TABLES));
	my $counts_ok = !grep { $_->[1] != $N } @$counts;
	my $verify = ($same ? 'ok' : 'not ok') . ' - pg_indexes equal to before; '
	  . ($invalid == 0 ? 'ok' : 'not ok') . " - no invalid index ($invalid); "
	  . ($counts_ok ? 'ok' : 'not ok') . " - $N items in each table";
	ok($same && $invalid == 0 && $counts_ok, "$tag: $verify");
	if (!$same)
	{
		say_progress("  indexes before:\n" . index_text($indexes_before) . "\n  after:\n" . index_text($idx_after));
	}

	my %r = (
		variant => $variant, rep => 0 + $rep, run_id => 0 + $run_id, rows => 0 + $rows, chunks => 0 + $chunks,
		avg_chunk_ms => 0 + $avg, max_chunk_ms => 0 + $max,
		exec_s => $finished - $started, wall_s => $t1 - $t0, queued_to_finished_s => $finished - $queued,
		steps => 0 + $nsteps, steps_before => 0 + $steps_before, steps_done => 0 + $steps_done,
		split => \%split, after_steps => \@after_steps,
		t => { baseline_from => $tb0, baseline_to => $tb1, queued => 0 + $queued, started => 0 + $started,
			before_end => $before_end, last_chunk => 0 + $last_chunk, finished => 0 + $finished },
		writers => \%w,
		writer_max_lock_wait_sampled_ms => 0 + $max_lock_wait_ms,
		writer_wait_events_sampled => \%wait_ev,
		writer_lock_waits_logged => \@waits,
		indexes_equal => $same ? JSON::PP::true : JSON::PP::false,
		invalid_indexes => 0 + $invalid,
		counts => { map { $_->[0] => 0 + $_->[1] } @$counts },
		verify => $verify,
		load => loadavg(),
		other_work => other_bench(),
	);
	push @{ $results{runs} }, \%r;
	write_results();
	say_progress(sprintf('%-7s rep %d: %d rows, %d chunks, %.2f s (before %s, chunks %s, after %.2f s); '
		  . 'max chunk %.1f ms; writers max %.1f ms p99 %.1f ms (baseline max %.1f p99 %.1f); %s',
		$variant, $rep, $rows, $chunks, $r{exec_s}, fmt($split{before_s}), fmt($split{chunks_s}), $split{after_s},
		$max, $w{run}{max_ms} // -1, $w{run}{p99_ms} // -1, $w{baseline}{max_ms} // -1, $w{baseline}{p99_ms} // -1,
		$verify));
	return \%r;
}
sub fmt { return defined $_[0] ? sprintf('%.2f s', $_[0]) : '?' }

# --- the run -------------------------------------------------------------------------
for my $rep (1 .. $REPS)
{
	for my $variant ($rep % 2 ? qw(keep rebuild) : qw(rebuild keep))
	{
		say_progress("$variant rep $rep");
		measure($variant, $rep);
	}
}

summarize();
$results{run}{load_end} = loadavg();
$results{run}{postgres_version} = val('postgres', 'SELECT version()');
$results{run}{elapsed_s} = int(time - $t_start + 0.5);
$results{run}{complete} = JSON::PP::true;
write_results();
write_report();
$watch->quit;
say_progress("wrote $opt{out} and $opt{md}");
done_testing();

# --- summary and report -------------------------------------------------------------
sub median
{
	my @v = sort { $a <=> $b } grep { defined } @_;
	return undef unless @v;
	return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub summarize
{
	my %s;
	for my $v (qw(keep rebuild))
	{
		my @r = grep { $_->{variant} eq $v } @{ $results{runs} };
		$s{$v} = {
			exec_s => median(map { $_->{exec_s} } @r),
			wall_s => median(map { $_->{wall_s} } @r),
			before_s => median(map { $_->{split}{before_s} } @r),
			chunks_s => median(map { $_->{split}{chunks_s} } @r),
			after_s => median(map { $_->{split}{after_s} } @r),
			avg_chunk_ms => median(map { $_->{avg_chunk_ms} } @r),
			max_chunk_ms => median(map { $_->{max_chunk_ms} } @r),
			max_chunk_ms_max => (sort { $b <=> $a } map { $_->{max_chunk_ms} } @r)[0],
			writer_run_max_ms => (sort { $b <=> $a } map { $_->{writers}{run}{max_ms} // 0 } @r)[0],
			writer_run_p99_ms_median => median(map { $_->{writers}{run}{p99_ms} } @r),
			writer_after_max_ms => (sort { $b <=> $a } map { $_->{writers}{after}{max_ms} // 0 } @r)[0],
			writer_baseline_max_ms => (sort { $b <=> $a } map { $_->{writers}{baseline}{max_ms} // 0 } @r)[0],
			writer_baseline_p99_ms_median => median(map { $_->{writers}{baseline}{p99_ms} } @r),
			all_verified => (grep { $_->{verify} =~ /not ok/ } @r) ? JSON::PP::false : JSON::PP::true,
		};
	}
	for my $v (qw(keep rebuild))
	{
		for my $k (qw(baseline run before chunks after))
		{
			next unless $RAW{$v}{$k};
			my @l = sort { $a <=> $b } @{ $RAW{$v}{$k} };
			$s{writers_pooled}{$v}{$k} = { n => scalar @l, p50_ms => pct(\@l, 0.5), p99_ms => pct(\@l, 0.99), max_ms => @l ? $l[-1] : undef };
		}
	}
	$s{ratio_exec} = $s{keep}{exec_s} ? $s{rebuild}{exec_s} / $s{keep}{exec_s} : undef;
	$s{ratio_wall} = $s{keep}{wall_s} ? $s{rebuild}{wall_s} / $s{keep}{wall_s} : undef;
	# a writer blocked longer than the longest chunk of its run, per run
	$s{writer_over_longest_chunk} = [ map { {
		variant => $_->{variant}, rep => $_->{rep}, max_chunk_ms => $_->{max_chunk_ms},
		writer_max_ms => $_->{writers}{run}{max_ms}, writer_after_max_ms => $_->{writers}{after}{max_ms},
		sampled_lock_wait_ms => $_->{writer_max_lock_wait_sampled_ms},
		over => (($_->{writers}{run}{max_ms} // 0) > $_->{max_chunk_ms}) ? JSON::PP::true : JSON::PP::false,
	} } @{ $results{runs} } ];
	$results{summary} = \%s;
}

sub write_results
{
	my $j = JSON::PP->new->canonical->pretty;
	open my $fh, '>', "$opt{out}.tmp" or die "$opt{out}.tmp: $!";
	print $fh $j->encode(\%results);
	close $fh or die;
	rename "$opt{out}.tmp", $opt{out} or die "rename $opt{out}: $!";
}

sub f1 { return defined $_[0] ? sprintf('%.1f', $_[0]) : 'n/a' }
sub f2 { return defined $_[0] ? sprintf('%.2f', $_[0]) : 'n/a' }

sub write_report
{
	my $s = $results{summary};
	my $m = $results{run}{machine};
	my @runs = @{ $results{runs} };
	my $md = '';
	$md .= "# rebuild_indexes on a migration-shaped workload\n\n";
	$md .= "Generated by `bench/migration.pl` (`$results{run}{command}`), started $results{run}{started_at}, "
	  . "$results{run}{elapsed_s} s in all. Raw figures: the JSON results file of the same run.\n\n";
	$md .= "## Result\n\n";
	$md .= sprintf("| variant | median run time (started_at → finished_at) | median wall (CALL run_and_wait) | chunks | median avg chunk | longest chunk (max over reps) |\n|---|---|---|---|---|---|\n");
	for my $v (qw(keep rebuild))
	{
		my ($r1) = grep { $_->{variant} eq $v } @runs;
		$md .= sprintf("| %s | %s s | %s s | %d | %s ms | %s ms |\n",
			$v eq 'keep' ? '(a) indexes kept (`rebuild_indexes => false`)' : '(b) `rebuild_indexes => true`',
			f2($s->{$v}{exec_s}), f2($s->{$v}{wall_s}), $r1->{chunks}, f1($s->{$v}{avg_chunk_ms}), f1($s->{$v}{max_chunk_ms_max}));
	}
	$md .= sprintf("\n**time(b) / time(a) = %s** (run time; wall: %s). Target: ≤ 0.6 → %s.\n\n",
		f2($s->{ratio_exec}), f2($s->{ratio_wall}),
		defined $s->{ratio_exec} && $s->{ratio_exec} <= 0.6 ? 'met' : 'NOT met');
	$md .= "### Where the time of (b) goes (medians)\n\n| phase | median | share |\n|---|---|---|\n";
	my $tot = $s->{rebuild}{exec_s} || 1;
	for my $p ([ 'before steps (19 × DROP INDEX CONCURRENTLY)', 'before_s' ], [ 'chunks', 'chunks_s' ],
		[ 'after steps (19 × CREATE INDEX CONCURRENTLY)', 'after_s' ])
	{
		$md .= sprintf("| %s | %s s | %s%% |\n", $p->[0], f2($s->{rebuild}{$p->[1]}),
			defined $s->{rebuild}{$p->[1]} ? f1(100 * $s->{rebuild}{$p->[1]} / $tot) : 'n/a');
	}
	$md .= sprintf("\nFor comparison, the chunks of (a) took %s s (median).\n\n", f2($s->{keep}{chunks_s}));
	$md .= "### The application's writers\n\n";
	$md .= "pgbench, $CLIENTS clients, $RATE transactions/s in all (`-R`; latency counts from the scheduled start, so it includes any client-side lag), "
	  . "each an UPDATE of a random item or an upsert of a new item in `stock` (a table the migration writes), per repetition "
	  . "a $BASELINE_SECS s window alone (empty destination tables, all indexes) and then during the run.\n\n";
	$md .= "Pooled over the repetitions:\n\n| when | writers n | p50 | p99 | max | longest chunk (max over the runs) |\n|---|---|---|---|---|---|\n";
	my %wl = (baseline => 'no batch (baseline windows before the runs)', run => 'during the run', before => 'during the before steps',
		chunks => 'during the chunks', after => 'during the after steps (index builds)');
	for my $v (qw(keep rebuild))
	{
		for my $k (qw(baseline run before chunks after))
		{
			my $w = $s->{writers_pooled}{$v}{$k} or next;
			next if $v eq 'keep' && $k =~ /^(before|chunks|after)$/;
			$md .= sprintf("| %s: %s | %d | %s ms | %s ms | %s ms | %s |\n", $v eq 'keep' ? '(a)' : '(b)', $wl{$k}, $w->{n},
				f1($w->{p50_ms}), f1($w->{p99_ms}), f1($w->{max_ms}), $k eq 'baseline' ? '' : f1($s->{$v}{max_chunk_ms_max}) . ' ms');
		}
	}
	my $aw = $s->{writers_pooled}{rebuild}{after};
	my $rw = $s->{writers_pooled}{rebuild}{run};
	$md .= sprintf("\nLongest writer transaction during the index builds of (b): %s ms, during the whole of (b): %s ms; the longest chunk of (b): %s ms "
		  . "→ writers blocked by the rebuild for longer than one chunk: %s.\n",
		f1($aw->{max_ms}), f1($rw->{max_ms}), f1($s->{rebuild}{max_chunk_ms_max}),
		($rw->{max_ms} // 0) > ($s->{rebuild}{max_chunk_ms_max} // 0) ? '**possibly** (a writer took longer than the longest chunk; see the lock waits)' : 'no');
	$md .= "\nWhat the active writers were doing when the monitor looked (every ${\ ($POLL*1000)} ms; `wait_event_type:wait_event` of pg_stat_activity, CPU = no wait event), per phase, all repetitions:\n\n";
	for my $v (qw(keep rebuild))
	{
		for my $ph (qw(before chunks after))
		{
			my %c;
			for my $r (grep { $_->{variant} eq $v } @runs)
			{
				my $h = $r->{writer_wait_events_sampled}{$ph} or next;
				$c{$_} += $h->{$_} for keys %$h;
			}
			next unless %c;
			$md .= sprintf("- %s, %s: %s\n", $v eq 'keep' ? '(a)' : '(b)', $ph,
				join(', ', map { "$_ $c{$_}" } sort { $c{$b} <=> $c{$a} || $a cmp $b } keys %c));
		}
	}
	$md .= "\nEvery run:\n\n";
	$md .= "| run | writers n | p99 | max | longest chunk of the run | writer max > longest chunk? | longest lock wait seen (sampled every ${\ ($POLL*1000)} ms) | lock waits logged (> 1 s) |\n|---|---|---|---|---|---|---|---|\n";
	for my $r (@runs)
	{
		for my $wn (qw(baseline run before chunks after))
		{
			next if $r->{variant} eq 'keep' && $wn =~ /^(before|after)$/;
			my $w = $r->{writers}{$wn} or next;
			my $label = "$r->{variant} rep $r->{rep}: " . ($wn eq 'baseline' ? 'no batch (baseline)' : $wn eq 'run' ? 'whole run' : "$wn phase");
			my $over = $wn eq 'baseline' ? '' : (($w->{max_ms} // 0) > $r->{max_chunk_ms} ? '**yes**' : 'no');
			$md .= sprintf("| %s | %d | %s ms | %s ms | %s | %s | %s | %s |\n", $label, $w->{n}, f1($w->{p99_ms}), f1($w->{max_ms}),
				$wn eq 'baseline' ? '' : f1($r->{max_chunk_ms}) . ' ms', $over,
				$wn eq 'run' ? f1($r->{writer_max_lock_wait_sampled_ms}) . ' ms' : '',
				$wn eq 'run' ? scalar(grep { /still waiting/ } @{ $r->{writer_lock_waits_logged} }) : '');
		}
	}
	$md .= "\n### Verification after each run\n\n";
	$md .= "- $_->{variant} rep $_->{rep} (run $_->{run_id}): $_->{verify}\n" for @runs;
	$md .= "\n## Every run\n\n| variant | rep | run time | wall | before | chunks | after | after steps seen | avg chunk | longest chunk | load after |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
	for my $r (@runs)
	{
		$md .= sprintf("| %s | %d | %s s | %s s | %s s | %s s | %s s | %d/%d | %s ms | %s ms | %s |\n", $r->{variant}, $r->{rep},
			f2($r->{exec_s}), f2($r->{wall_s}), f2($r->{split}{before_s}), f2($r->{split}{chunks_s}), f2($r->{split}{after_s}),
			$r->{split}{after_steps_observed}, $r->{steps} - $r->{steps_before},
			f1($r->{avg_chunk_ms}), f1($r->{max_chunk_ms}), $r->{load});
	}
	$md .= "\n## Method\n\n";
	$md .= "- A throwaway cluster (`PostgreSQL::Test::Cluster`), PostgreSQL $results{run}{postgres_version}; "
	  . "settings: " . join(', ', map { "`$_`" } grep { /\S/ && !/^#/ } split /\n/, $CONF) . ".\n";
	$md .= "- `staging`: $N items (18 columns). Destination tables "
	  . join(', ', map { "`$_`" } @TABLES) . " with their primary keys and 19 non-unique secondary indexes "
	  . "(plain, multi-column, expression and partial): see `run.indexes` in the results file.\n";
	$md .= "- One range-mode job per variant (`range_table => 'staging'`, `range_key => 'id'`, fixed `batch_size => $BATCH` keys per chunk, "
	  . "otherwise defaults), same statement (below); (b) adds `rebuild_indexes => true`. A fixed size keeps the chunks of (a) and (b) "
	  . "the same (adaptive sizing would make (b)'s chunks larger and mix two effects).\n";
	$md .= "- $REPS repetitions of each variant, interleaved (a b, b a, a b, ...). Before every run: `TRUNCATE` of the 6 tables "
	  . "(the indexes stay), a check that the 19 + 6 indexes are exactly the original set and valid (a missing one would be created from its "
	  . "saved definition), `VACUUM ANALYZE` of the 6 tables, `CHECKPOINT`.\n";
	$md .= "- The run is queued and waited for by `CALL chunkbatch.run_and_wait(job)` in its own psql (no snapshot held). "
	  . "Run time = `finished_at - started_at` of `chunkbatch.runs`; wall = the CALL. A monitor session polls `chunkbatch.runs` every "
	  . "${\ ($POLL*1000)} ms; the split uses `started_at`, the commit time (`pg_xact_commit_timestamp(xmin)`, track_commit_timestamp) "
	  . "of the row version whose `steps_done` = `steps_before` before any chunk (the last before step's commit; if the monitor missed it: "
	  . "the first chunk's commit minus its statement time), `last_chunk_at` (the last chunk's commit) and `finished_at`.\n";
	$md .= "- Medians of the repetitions; the ratio is of the median run times.\n";
	$md .= "\n## Environment\n\n";
	$md .= "- $m->{cpus} cores ($m->{cpu_model}), $m->{memory_gib} GiB, kernel $m->{kernel}.\n";
	$md .= "- chunkbatch: $results{run}{chunkbatch}.\n";
	$md .= "- Load average at the start: $results{run}{load_start}; at the end: $results{run}{load_end}. "
	  . "Other work on the machine (pgrep) at the start: $results{run}{other_work_at_start}; at the end of each run: "
	  . join(', ', map { "$_->{variant} $_->{rep}: $_->{other_work}" } @runs) . ".\n";
	$md .= "- Note: $results{run}{note}\n" if $results{run}{note} ne '';
	$md .= "\n## The chunk statement\n\n```sql\n$CHUNK_SQL\n```\n\n## The writers' transaction (pgbench)\n\n```\n$WRITER```\n";
	open my $fh, '>', $opt{md} or die "$opt{md}: $!";
	print $fh $md;
	close $fh;
}

# --- helpers -------------------------------------------------------------------------
sub loadavg
{
	open my $fh, '<', '/proc/loadavg' or return undef;
	my @f = split ' ', scalar <$fh>;
	return "@f[0..2]";
}
sub other_bench
{
	# what else runs on the machine: the other benchmark, the test suite
	my @found;
	for my $p ([ 'bench.pl', 'bench/bench[.]pl' ], [ 'scripts/test.sh', 'scripts/test[.]sh' ], [ 'TAP tests (prove)', 'bin/prove ' ])
	{
		open my $fh, '-|', 'pgrep', '-f', $p->[1] or next;
		my $out = do { local $/; <$fh> } // '';
		close $fh;
		push @found, $p->[0] if $out =~ /\d/;
	}
	return @found ? join(' + ', @found) : 'nothing';
}
sub machine
{
	my ($model) = map { /^model name\s*:\s*(.*)/ ? $1 : () } read_lines('/proc/cpuinfo');
	my ($mem) = map { /^MemTotal:\s+(\d+)/ ? $1 : () } read_lines('/proc/meminfo');
	chomp(my $nproc = `nproc`);
	chomp(my $kernel = `uname -r`);
	return { cpus => 0 + $nproc, cpu_model => $model, memory_gib => sprintf('%.1f', $mem / 1048576), kernel => $kernel };
}
sub read_lines { open my $fh, '<', $_[0] or return (); return <$fh> }
