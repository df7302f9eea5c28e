#!/usr/bin/perl
# bench/parallel.pl: parallel slices (a range-mode run with parallel => N)
# on three workloads, on a throwaway cluster.
#
# 1. migration: a staging table of ITEMS items is upserted, item by item,
#    into 6 destination tables carrying 19 non-unique secondary indexes
#    (plus their primary keys) by ONE range-mode statement (the WITH chain
#    of INSERT ... ON CONFLICT DO UPDATE over staging.id BETWEEN $1 AND $2
#    of bench/migration.pl; the indexes are kept, nothing is rebuilt), as a
#    chunkbatch job with range_table => 'staging', range_key => 'id' and a
#    fixed batch_size (1000 keys per chunk), run with parallel 1, 2 and 4.
# 2. flip: create_update over events (ROWS rows, half of them INIT/FAIL:
#    two keys in every four; the columns and indexes of bench/sql/setup.sql's
#    events), SET status = 'COMPLETE', retries = retries + 1, a fixed
#    batch_size of 10000 keys, run with parallel 1, 2 and 4, while pgbench
#    plays the application (single-row UPDATEs of the very rows the batch
#    flips plus point reads, at a fixed rate); a window of BASELINE_SECS
#    before each run gives the application's latencies without a batch.
# 3. skew: the same flip with parallel 2 on two tables of ROWS rows with the
#    same number of matching rows: events_skew (90% of the matching rows in
#    the first 10% of the key space, the rest sparse over the other 90%)
#    and events_bal (the matching rows spread evenly).
#
# Next to the chunkbatch figures, baselines done by hand (BY_HAND):
# - flip "hand1": the whole flip as one statement in one psql
#   (SET synchronous_commit = off; UPDATE events SET status = 'COMPLETE',
#   retries = retries + 1 WHERE status IN ('INIT', 'FAIL')), and "hand2":
#   two psql sessions started together, each running that UPDATE over one
#   half of the keys (AND id <= MID, AND id > MID; MID = the median key of
#   the matching rows), timed from the earlier statement's start to the
#   later one's commit (the server's clock), the application running as
#   during the chunkbatch flips.
# - migration "hand2": how the migration was parallelised before slices:
#   two range jobs with parallel 1 (par_mig_h1, par_mig_h2: the migration's
#   statement and batch size, range_filter id BETWEEN ($3->>'lo')::bigint
#   AND ($3->>'hi')::bigint; a job never overlaps itself, so one job cannot
#   be queued twice), queued in one transaction with the two halves of the
#   staging keys as params and polled until both are over; time = the
#   earlier started_at to the later finished_at.  The statement does not
#   repeat the filter: each run's key span (range_first..range_last, checked
#   after the run) keeps it to its half; were it not, the checks would find
#   items written twice.
# They are variants of their workload like the others (same repetitions,
# same rotation, same resets and the same checks: exactly once).
#
# Each run is queued and waited for with CALL chunkbatch.run_and_wait(job,
# '{}', NULL, parallel) in its own psql, while a monitor session counts the
# run's worker processes (its own worker and its helpers) in
# pg_stat_activity every POLL_MS.  Every repetition runs all variants of
# all three workloads back to back, in an order rotated from one
# repetition to the next (1 2 4, 2 4 1, 4 1 2, ...; skewed and balanced
# alternate), so each repetition gives its ratios side by side; the report
# shows medians over the repetitions.  Before each run, outside the timed
# window: the table is reset (migration: TRUNCATE of the destination
# tables; flips: an UPDATE back to the original statuses and retries = 0),
# VACUUM (ANALYZE), CHECKPOINT, and no chunkbatch worker may be left.
# After each run: the run must have succeeded, and every item / every
# matching row must have been processed exactly once (meta.writes = 1 for
# every item, each table holding ITEMS items; retries = 1 and status
# COMPLETE for every matching row, retries = 0 for the others), and the
# slices' rows_done must add up to the run's.  A failed check makes the
# script exit non-zero, after the results file and the report are written.
#
#   perl bench/parallel.pl [--smoke] --out FILE.json --md FILE.md [--git DESC] [--command TEXT]
#
# Needs PostgreSQL::Test::Cluster in PERL5LIB, PG_REGRESS, the PostgreSQL 15
# binaries first in PATH and TESTDIR; bench/parallel.sh sets these up and
# runs it as the postgres OS user.  Settings (environment, default /
# --smoke default):
#   PAR_ITEMS          1000000 / 20000   items in the migration's staging table
#   PAR_ROWS           1000000 / 200000  rows of events, events_skew, events_bal
#   PAR_REPS           3 / 1             repetitions
#   PAR_LEVELS         '1 2 4'           parallel of the migration and flip runs
#                                        (must include 1 and 2)
#   PAR_SKEW_PARALLEL  2                 parallel of the skew runs
#   PAR_WORKLOADS      'migration flip skew'   the workloads measured
#   PAR_BY_HAND        1                 0: no by-hand baselines (flip: one
#                                        statement, two statements at once;
#                                        migration: two range jobs at once)
#   PAR_MIG_BATCH      1000              keys per chunk of the migration (fixed)
#   PAR_FLIP_BATCH     10000             keys per chunk of the flips
#   PAR_FLIP_TARGET_MS ''                set: the flips size their chunks
#                                        (target_chunk_ms, from PAR_FLIP_BATCH)
#   PAR_OLTP_RATE      200               application transactions per second
#                                        during the flip runs (0: none)
#   PAR_OLTP_CLIENTS   4                 pgbench clients
#   PAR_BASELINE_SECS  5 / 2             application alone before each flip run
#   PAR_POLL_MS        100               monitor poll interval
#   PAR_NOTE           ''                a note for the report (e.g. the load)
use strict;
use warnings;

use Getopt::Long;
use JSON::PP;
use POSIX qw(strftime WNOHANG);
use Time::HiRes qw(time sleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my %opt = (git => 'unknown', command => 'perl bench/parallel.pl');
GetOptions(\%opt, 'smoke', 'out=s', 'md=s', 'git=s', 'command=s')
  && defined $opt{out} && defined $opt{md} && !@ARGV
  or die "usage: parallel.pl [--smoke] --out FILE.json --md FILE.md [--git DESC] [--command TEXT]\n";
my $smoke = $opt{smoke};

sub setting
{
	my ($name, $full, $smoke_default) = @_;
	my $v = $ENV{"PAR_$name"};
	return defined $v && $v ne '' ? $v : $smoke ? $smoke_default : $full;
}
my $ITEMS = setting('ITEMS', 1000000, 20000);
my $ROWS = setting('ROWS', 1000000, 200000);
my $REPS = setting('REPS', 3, 1);
my @LEVELS = split ' ', setting('LEVELS', '1 2 4', '1 2 4');
my $SKEW_P = setting('SKEW_PARALLEL', 2, 2);
my @WORKLOADS = split ' ', setting('WORKLOADS', 'migration flip skew', 'migration flip skew');
my $MIG_BATCH = setting('MIG_BATCH', 1000, 1000);
my $FLIP_BATCH = setting('FLIP_BATCH', 10000, 10000);
my $FLIP_TARGET_MS = setting('FLIP_TARGET_MS', '', '');
my $RATE = setting('OLTP_RATE', 200, 200);
my $CLIENTS = setting('OLTP_CLIENTS', 4, 4);
my $BASELINE_SECS = setting('BASELINE_SECS', 5, 2);
my $POLL = setting('POLL_MS', 100, 100) / 1000;
my $NOTE = setting('NOTE', '', '');
my $BY_HAND = setting('BY_HAND', 1, 1);
my $SETTLE = 1;    # s between pgbench's start and the baseline window
for ([ ITEMS => $ITEMS ], [ ROWS => $ROWS ], [ REPS => $REPS ], [ SKEW_PARALLEL => $SKEW_P ],
	[ MIG_BATCH => $MIG_BATCH ], [ FLIP_BATCH => $FLIP_BATCH ], [ OLTP_CLIENTS => $CLIENTS ])
{
	die "PAR_$_->[0] must be a positive whole number\n" unless $_->[1] =~ /^\d+$/ && $_->[1] > 0;
}
die "PAR_OLTP_RATE must be a whole number\n" unless $RATE =~ /^\d+$/;
die "PAR_BY_HAND must be 0 or 1\n" unless $BY_HAND =~ /^[01]$/;
die "PAR_FLIP_TARGET_MS must be empty or a whole number\n" unless $FLIP_TARGET_MS =~ /^\d*$/;
die "PAR_ROWS must be at least 1000\n" if $ROWS < 1000;
die "PAR_LEVELS: whole numbers from 1 to 64, including 1 and 2\n"
  if grep({ !/^\d+$/ || $_ < 1 || $_ > 64 } @LEVELS) || !grep({ $_ == 1 } @LEVELS) || !grep({ $_ == 2 } @LEVELS);
die "PAR_WORKLOADS: migration, flip and/or skew\n" if !@WORKLOADS || grep { !/^(migration|flip|skew)$/ } @WORKLOADS;
my %DO = map { $_ => 1 } @WORKLOADS;

# Server settings on top of initdb's.  Slots: a parallel 4 run needs its
# own worker and 3 helpers of one role (max_workers_per_role), plus one
# slot spare.  Checkpoints happen only when the resets ask for them (long
# checkpoint_timeout, large max_wal_size), never inside a timed run.  The
# second group undoes what PostgreSQL::Test::Cluster sets for tests (fsync
# off, wal_level minimal, no WAL senders, every statement logged).
my $CONF = <<'EOF';
shared_preload_libraries = 'chunkbatch'
chunkbatch.naptime = 1
chunkbatch.max_workers = 6
chunkbatch.max_workers_per_role = 5
max_worker_processes = 24
shared_buffers = 2GB
max_wal_size = 32GB
checkpoint_timeout = 1d
autovacuum = on
log_line_prefix = '%m [%p] %q%a: '
log_lock_waits = on

fsync = on
wal_level = replica
max_wal_senders = 10
log_statement = none
EOF

my @DEST = qw(items prices stock descriptions tags meta);

# --- the migration's schema: staging, 6 destination tables, 19 secondary indexes
# (meta.writes counts the writes of an item: 1 once the migration wrote it once)
my $MIG_SCHEMA = <<'EOF';
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
    migrated_at timestamptz NOT NULL, checksum text NOT NULL, writes int NOT NULL DEFAULT 1);
CREATE INDEX meta_source ON meta (source);
CREATE INDEX meta_migrated_at ON meta (migrated_at);
EOF

my $MIG_FILL = <<'EOF';
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

# The migration's chunk statement: one item is written to all 6 tables in
# the chunk's transaction (the statement of bench/migration.pl, with
# meta.writes counted up by a second write of an item).
my $MIG_CHUNK_SQL = <<'EOF';
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
    checksum = excluded.checksum, writes = meta.writes + 1
EOF
$MIG_CHUNK_SQL =~ s/\n$//;

# --- the flip tables -------------------------------------------------------------
# Each: the columns and indexes of bench/sql/setup.sql's events; TARGET says
# which rows the flip must change (the rows it set INIT/FAIL), INIT what
# their status is before a run.  The resets vacuum the tables themselves,
# so autovacuum leaves them alone (it would otherwise start inside some runs
# and not others).
my $DENSE_END = int($ROWS / 10);    # the skewed table's dense tenth: keys 1 .. DENSE_END
my %FLIP_TABLE = (
	events => {
		target => 'id % 4 IN (0, 1)',
		init => q{CASE WHEN id % 4 = 0 THEN 'INIT' ELSE 'FAIL' END},
	},
	events_skew => {
		# 9 in 10 keys of the dense tenth, 1 in 90 elsewhere: 90% of the matches in 10% of the keys
		target => "(id <= $DENSE_END AND id % 10 <> 0) OR (id > $DENSE_END AND id % 90 = 0)",
		init => q{'INIT'},
	},
	events_bal => {
		target => undef,    # (set below: as many matching rows as events_skew, evenly spread)
		init => q{'INIT'},
	},
);
my $SET_SQL = q{status = 'COMPLETE', retries = retries + 1};
my $WHERE_SQL = q{status IN ('INIT', 'FAIL')};

sub flip_table_sql
{
	my ($t) = @_;
	return <<"EOF";
CREATE TABLE $t (id bigint NOT NULL, created_at timestamptz NOT NULL,
                 status text NOT NULL, retries int NOT NULL DEFAULT 0, payload text)
  WITH (autovacuum_enabled = false);
INSERT INTO $t
SELECT id, to_timestamp(1577836800 + id),
       CASE WHEN $FLIP_TABLE{$t}{target} THEN $FLIP_TABLE{$t}{init} ELSE 'COMPLETE' END,
       0, md5(id::text)
  FROM generate_series(1::bigint, $ROWS) AS g(id);
ALTER TABLE $t ADD PRIMARY KEY (id);
CREATE INDEX ${t}_created_at_idx ON $t (created_at);
CREATE INDEX ${t}_status_idx ON $t (status);
EOF
}

# The application during the flip runs: an UPDATE of one of the rows the
# flip changes (id = 4k: INIT) and a point read of a random row (the
# transaction of bench/sql/measure/oltp_flip.pgbench); the last statement
# makes the clients stop once par_stop.stop is set.
my $OLTP = <<'EOF';
\set k random(1, :quarter)
\set id 4 * :k
\set id2 random(1, :n)
UPDATE events SET payload = md5(payload) WHERE id = :id;
SELECT (SELECT payload FROM events WHERE id = :id2), 1 / (SELECT CASE WHEN stop THEN 0 ELSE 1 END FROM par_stop);
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
	my $line = sprintf "[parallel %s] %s\n", strftime('%H:%M:%S', gmtime), join('', @_);
	print $TTY $line;
	print $LOG $line if $LOG;
}

my $t_start = time;
my %results = (
	format => 'chunkbatch-parallel-bench 1',
	run => {
		source => 'bench/parallel.pl',
		command => $opt{command} . ($smoke && $opt{command} !~ /--smoke/ ? ' --smoke' : ''),
		started_at => strftime('%Y-%m-%d %H:%M:%S UTC', gmtime $t_start),
		complete => JSON::PP::false,
		smoke => $smoke ? JSON::PP::true : JSON::PP::false,
		chunkbatch => $opt{git},
		environment => join(' ', map { "$_=$ENV{$_}" } sort grep { /^PAR_/ } keys %ENV),
		machine => machine(),
		load_start => loadavg(),
		other_work_at_start => undef,
		notes => [],
		config => {
			workloads => \@WORKLOADS, items => 0 + $ITEMS, rows => 0 + $ROWS, reps => 0 + $REPS,
			levels => [ map { 0 + $_ } @LEVELS ], skew_parallel => 0 + $SKEW_P,
			mig_batch_size => 0 + $MIG_BATCH, flip_batch_size => 0 + $FLIP_BATCH,
			flip_target_chunk_ms => $FLIP_TARGET_MS eq '' ? undef : 0 + $FLIP_TARGET_MS,
			oltp_rate => 0 + $RATE, oltp_clients => 0 + $CLIENTS, baseline_secs => 0 + $BASELINE_SECS,
			poll_ms => $POLL * 1000, dense_end => 0 + $DENSE_END, by_hand => 0 + $BY_HAND,
		},
		server_conf => [ grep { /\S/ && !/^#/ } split /\n/, $CONF ],
		oltp_script => $OLTP,
	},
	runs => [],
);
push @{ $results{run}{notes} }, "operator: $NOTE" if $NOTE ne '';

# --- the cluster ---------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('parallel');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', "\n# chunkbatch parallel bench\n$CONF");
$node->start;
$results{run}{other_work_at_start} = other_work();
$node->safe_psql('postgres', 'CREATE DATABASE par');
say_progress('server running: psql -h ', $node->host, ' -p ', $node->port, ' par');

my $WORK = PostgreSQL::Test::Utils::tempdir('parallel');
my @PSQL = ('psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', $node->host, '-p', $node->port, '-d', 'par');

# sql(ROLE, SQL, VAR => VALUE...): run SQL (from a file, with psql
# variables), return the rows (fields split on |); sql_text: its output
my $n_sql = 0;
sub sql
{
	my $out = sql_text(@_);
	return [ map { [ split /\|/, $_, -1 ] } grep { $_ ne '' } split /\n/, $out ];
}
sub sql_text
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
	return $out;
}
sub shell_quote { my ($s) = @_; $s =~ s/'/'\\''/g; return "'$s'" }
sub val { my $r = sql(@_); return $r->[0][0] }

sql('postgres', <<'EOF');
CREATE EXTENSION chunkbatch;
CREATE ROLE par LOGIN;
GRANT CREATE ON SCHEMA public TO par;
GRANT pg_checkpoint TO par;
EOF
sql('par', "CREATE TABLE par_stop (stop boolean NOT NULL);\nINSERT INTO par_stop VALUES (false);");

my (%JOB_SQL, %MATCHING);
# the by-hand baselines (BY_HAND): the migration's two jobs (job, lo, hi,
# params, items) and the flip's statements by variant
my $HAND_MIG_FILTER = q{id BETWEEN ($3->>'lo')::bigint AND ($3->>'hi')::bigint};
my (@HAND_MIG, %HAND_FLIP);
if ($DO{migration})
{
	say_progress("filling staging with $ITEMS items");
	sql('par', $MIG_SCHEMA);
	sql('par', join('', map { "ALTER TABLE $_ SET (autovacuum_enabled = false);\n" } 'staging', @DEST));
	sql('par', $MIG_FILL, n => $ITEMS);
	my $n_secondary = val('par', "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
		  . "WHERE c.relname IN (" . join(', ', map { "'$_'" } @DEST) . ") AND NOT i.indisunique");
	die "expected 19 non-unique secondary indexes, found $n_secondary\n" unless $n_secondary == 19;
	sql('par', <<'EOF', chunk_sql => $MIG_CHUNK_SQL, batch => $MIG_BATCH);
SELECT chunkbatch.create_job('par_mig', :'chunk_sql', batch_size => :batch,
    range_table => 'staging', range_key => 'id', cursor_type => 'bigint');
EOF
	if ($BY_HAND)
	{
		# the by-hand baseline: two range jobs with parallel 1, each queued
		# with one half of the staging keys as its params
		my ($lo, $mid, $hi) = @{ sql('par', 'SELECT min(id), percentile_disc(0.5) WITHIN GROUP (ORDER BY id), max(id) FROM staging')->[0] };
		@HAND_MIG = ({ job => 'par_mig_h1', lo => 0 + $lo, hi => 0 + $mid }, { job => 'par_mig_h2', lo => $mid + 1, hi => 0 + $hi });
		for my $h (@HAND_MIG)
		{
			$h->{params} = sprintf('{"lo": %d, "hi": %d}', $h->{lo}, $h->{hi});
			$h->{items} = 0 + val('par', "SELECT count(*) FROM staging WHERE id BETWEEN $h->{lo} AND $h->{hi}");
			sql('par', <<'EOF', job => $h->{job}, chunk_sql => $MIG_CHUNK_SQL, batch => $MIG_BATCH, filter => $HAND_MIG_FILTER);
SELECT chunkbatch.create_job(:'job', :'chunk_sql', batch_size => :batch,
    range_table => 'staging', range_key => 'id', cursor_type => 'bigint', range_filter => :'filter');
EOF
		}
		$results{run}{by_hand}{migration} = { filter => $HAND_MIG_FILTER, mid => 0 + $mid,
			runs => [ map { { job => $_->{job}, params => $_->{params}, items => $_->{items} } } @HAND_MIG ] };
	}
	$results{run}{migration_indexes} = [ map { $_->[0] } @{ sql('par',
		"SELECT indexdef FROM pg_indexes WHERE tablename IN (" . join(', ', map { "'$_'" } @DEST) . ") ORDER BY tablename, indexname") } ];
}

my @FLIP_TABLES = (($DO{flip} ? ('events') : ()), ($DO{skew} ? ('events_skew', 'events_bal') : ()));
for my $t (@FLIP_TABLES)
{
	if ($t eq 'events_bal')
	{
		# as many matching rows as events_skew, one every ROWS / M keys
		my $m = $MATCHING{events_skew};
		$FLIP_TABLE{events_bal}{target} = "(id * $m) / $ROWS <> ((id - 1) * $m) / $ROWS";
	}
	say_progress("filling $t with $ROWS rows");
	sql('par', flip_table_sql($t));
	# One flip and reset, unmeasured, so that every measured run starts from
	# a table that has been through a reset like the one before it.
	sql('par', "UPDATE $t SET $SET_SQL WHERE $WHERE_SQL");
	reset_flip($t, 0);
	$MATCHING{$t} = val('par', "SELECT count(*) FROM $t WHERE $FLIP_TABLE{$t}{target}");
	my $check = val('par', "SELECT count(*) FROM $t WHERE ($WHERE_SQL) IS DISTINCT FROM ($FLIP_TABLE{$t}{target})");
	die "$t: the statuses do not match the target rows ($check rows differ)\n" if $check != 0;
}
if ($DO{flip} && $BY_HAND)
{
	# the flip by hand: one UPDATE, or two, one per half of the keys (MID:
	# the median key of the matching rows, so that each half has as many)
	my $p = $FLIP_TABLE{events}{target};
	my $mid = val('par', "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FROM events WHERE $p");
	my $stmt = "UPDATE events SET $SET_SQL WHERE $WHERE_SQL";
	%HAND_FLIP = (
		hand1 => [ { stmt => $stmt, rows => $MATCHING{events} } ],
		hand2 => [ { stmt => "$stmt AND id <= $mid", rows => 0 + val('par', "SELECT count(*) FROM events WHERE ($p) AND id <= $mid") },
			{ stmt => "$stmt AND id > $mid", rows => 0 + val('par', "SELECT count(*) FROM events WHERE ($p) AND id > $mid") } ],
	);
	# their plans (the table as before every run: just reset and analyzed)
	for my $part (map { @$_ } values %HAND_FLIP)
	{
		$part->{plan} = join("\n", map { $_->[0] } @{ sql('par', "EXPLAIN (COSTS OFF) $part->{stmt}") });
	}
	$results{run}{by_hand}{flip} = { mid => 0 + $mid, synchronous_commit => 'off',
		map { my $v = $_; $v => [ map { { statement => $_->{stmt}, matching_rows => $_->{rows}, plan => $_->{plan} } } @{ $HAND_FLIP{$v} } ] } sort keys %HAND_FLIP };
}
my %JOB_OF = (events => 'par_flip', events_skew => 'par_skew', events_bal => 'par_bal');
for my $t (@FLIP_TABLES)
{
	sql('par', <<'EOF', job => $JOB_OF{$t}, tbl => $t, set_sql => $SET_SQL, where_sql => $WHERE_SQL, batch => $FLIP_BATCH, target => $FLIP_TARGET_MS eq '' ? 'NULL' : $FLIP_TARGET_MS, parallel => $t eq 'events' ? 1 : $SKEW_P);
SELECT chunkbatch.create_update(:'job', :'tbl', :'set_sql', :'where_sql', batch_size => :batch,
    target_chunk_ms => :target, parallel => :parallel);
EOF
}
if ($DO{skew})
{
	my ($m, $dense) = @{ sql('par', "SELECT count(*), count(*) FILTER (WHERE id <= $DENSE_END) FROM events_skew WHERE $FLIP_TABLE{events_skew}{target}")->[0] };
	$results{run}{skew} = {
		matching_rows => 0 + $m, in_first_tenth => 0 + $dense, share_in_first_tenth => $m ? $dense / $m : undef,
		balanced_matching_rows => 0 + $MATCHING{events_bal},
		balanced_in_first_tenth => 0 + val('par', "SELECT count(*) FROM events_bal WHERE $FLIP_TABLE{events_bal}{target} AND id <= $DENSE_END"),
	};
	die "events_skew and events_bal differ in matching rows ($m, $MATCHING{events_bal})\n" if $m != $MATCHING{events_bal};
}
$results{run}{matching_rows} = { map { $_ => 0 + $MATCHING{$_} } @FLIP_TABLES };
$results{run}{targets_sql} = { map { $_ => $FLIP_TABLE{$_}{target} } @FLIP_TABLES };
# the jobs as chunkbatch keeps them (one line of JSON: the texts hold newlines and |)
$results{run}{jobs} = { map { delete($_->{job_name}) => $_ } @{ decode_json(sql_text('par', <<'EOF')) } };
SELECT json_agg(json_build_object('job_name', job_name, 'chunk_sql', chunk_sql, 'batch_size', batch_size,
                                  'target_chunk_ms', target_chunk_ms, 'parallel', parallel,
                                  'range_table', range_table, 'range_key', range_key,
                                  'range_filter', range_filter, 'cursor_type', cursor_type::regtype::text)
                ORDER BY job_name)::text
  FROM chunkbatch.jobs
EOF

# the monitor's own session (superuser: sees every run and every backend)
my $watch = $node->background_psql('par');
$watch->set_query_timer_restart;

# --- the application (pgbench) ---------------------------------------------------------
my $oltp_script = "$WORK/oltp.pgbench";
{ open my $fh, '>', $oltp_script or die; print $fh $OLTP; close $fh }
my $pgbench_pid;
sub oltp_start
{
	my ($tag) = @_;
	sql('par', 'UPDATE par_stop SET stop = false');
	my @cmd = ('pgbench', '-n', '-h', $node->host, '-p', $node->port, '-U', 'par',
		'-c', $CLIENTS, '-j', 1, '-R', $RATE, '-T', 7200, '-f', $oltp_script,
		'-D', "n=$ROWS", '-D', 'quarter=' . int($ROWS / 4), '-l', "--log-prefix=$WORK/$tag", 'par');
	$pgbench_pid = fork // die "fork: $!";
	if (!$pgbench_pid)
	{
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', "$WORK/$tag.out";
		open STDERR, '>&', \*STDOUT;
		$ENV{PGAPPNAME} = 'par_oltp';
		exec @cmd or POSIX::_exit(127);
	}
}

# oltp_stop(TAG): stop the clients; [scheduled start (epoch s), latency (ms)]
# of every transaction (with -R, latency counts from the scheduled start)
sub oltp_stop
{
	my ($tag) = @_;
	sql('par', 'UPDATE par_stop SET stop = true');
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
			# client_id transaction_no time script_no time_epoch time_us [schedule_lag]
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
END { kill 'TERM', $pgbench_pid if $pgbench_pid }

sub lat_window
{
	my ($tx, $t0, $t1) = @_;
	return [ sort { $a <=> $b } map { $_->[1] } grep { $_->[0] >= $t0 && $_->[0] <= $t1 } @$tx ];
}
sub lat_stats
{
	my ($l) = @_;
	return { n => scalar @$l, p50_ms => pct($l, 0.5), p99_ms => pct($l, 0.99), max_ms => @$l ? $l->[-1] : undef };
}
# percentile_cont of sorted values
sub pct
{
	my ($v, $p) = @_;
	return undef unless @$v;
	my $pos = $p * (@$v - 1);
	my $lo = int $pos;
	my $hi = $lo == $pos ? $lo : $lo + 1;
	return $v->[$lo] + ($pos - $lo) * ($v->[$hi] - $v->[$lo]);
}

# --- resets ------------------------------------------------------------------------------
# No worker of an earlier run may still be around (a helper leaves at its
# next chunk boundary): wait for them to be gone, 60 s at most.
sub no_workers_left
{
	for (1 .. 600)
	{
		return 1 if val('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'chunkbatch run worker'}) == 0;
		sleep 0.1;
	}
	say_progress('chunkbatch run workers are still there after 60 s');
	push @{ $results{run}{notes} }, 'a chunkbatch run worker was still there 60 s after its run had ended';
	return 0;
}

sub reset_flip
{
	my ($t, $checkpoint) = @_;
	sql('par', "UPDATE $t SET status = $FLIP_TABLE{$t}{init}, retries = 0 WHERE $FLIP_TABLE{$t}{target};\n"
		  . "VACUUM (ANALYZE) $t;\n" . ($checkpoint ? "CHECKPOINT;\n" : ''));
}

sub reset_migration
{
	sql('par', 'TRUNCATE ' . join(', ', @DEST) . ";\nVACUUM ANALYZE " . join(', ', @DEST) . ";\nCHECKPOINT;\n");
}

# data_checks(TABLE): the checks of the data after a run (TABLE undef: the
# migration): every item / matching row processed exactly once
sub data_checks
{
	my ($table) = @_;
	my @checks;
	if (!defined $table)
	{
		my $c = sql('par', join(' UNION ALL ', map { "SELECT '$_', count(*) FROM $_" } @DEST));
		my $bad = grep { $_->[1] != $ITEMS } @$c;
		push @checks, [ !$bad, "$ITEMS items in each table" . ($bad ? ' (' . join(', ', map { "$_->[0] $_->[1]" } @$c) . ')' : '') ];
		my ($twice, $none) = @{ sql('par', "SELECT count(*) FILTER (WHERE writes > 1), $ITEMS - count(*) FROM meta")->[0] };
		push @checks, [ $twice == 0 && $none == 0, "every item written once (written more than once: $twice, missing: $none)" ];
	}
	else
	{
		my $p = $FLIP_TABLE{$table}{target};
		my ($match, $once, $others_ok, $total) = @{ sql('par', <<"EOF")->[0] };
SELECT count(*) FILTER (WHERE $p),
       count(*) FILTER (WHERE ($p) AND status = 'COMPLETE' AND retries = 1),
       count(*) FILTER (WHERE NOT ($p) AND status = 'COMPLETE' AND retries = 0),
       count(*)
  FROM $table
EOF
		push @checks, [ $once == $match && $match == $MATCHING{$table},
			"every matching row flipped exactly once ($once of $match with retries = 1 and COMPLETE)" ];
		push @checks, [ $others_ok == $total - $match, "no other row changed (" . ($total - $match - $others_ok) . ' changed)' ];
	}
	return @checks;
}

# --- one run -------------------------------------------------------------------------------
# Who waits for a lock while a run runs (both monitors' last column).
my $LOCK_WAITERS_SQL = <<'EOF';
(SELECT string_agg(CASE WHEN a.application_name ~ '^chunkbatch run \d+ slices: ' THEN 'helper'
                               WHEN a.application_name ~ '^chunkbatch run \d+: ' THEN 'run worker'
                               ELSE coalesce(nullif(a.application_name, ''), a.backend_type) END
                          || ':' || a.wait_event, ',')
          FROM pg_stat_activity a
         WHERE a.wait_event_type = 'Lock' AND a.datname = current_database())
EOF
chomp $LOCK_WAITERS_SQL;
my $POLL_SQL = <<'EOF' . "       $LOCK_WAITERS_SQL\n" . <<'EOF';
SELECT r.run_id, r.state, extract(epoch FROM clock_timestamp()),
       (SELECT count(*) FROM pg_stat_activity a
         WHERE a.backend_type = 'chunkbatch run worker'
           AND a.application_name ~ ('^chunkbatch run ' || r.run_id || '( slices)?: ')),
       (SELECT count(*) FROM chunkbatch.slices s WHERE s.run_id = r.run_id),
EOF
  FROM chunkbatch.runs r WHERE r.run_id > %d ORDER BY r.run_id LIMIT 1
EOF

my %RAW;    # "workload/variant" -> window -> latencies (ms) of every repetition

# oltp_baseline(TAG): start the application (pgbench, tagged TAG), let it
# settle, and return the start and end of a window of it alone
sub oltp_baseline
{
	my ($tag) = @_;
	oltp_start($tag);
	sleep $SETTLE;
	my $tb0 = time;
	sleep $BASELINE_SECS;
	return ($tb0, time);
}

# oltp_record(RUN, WORKLOAD, VARIANT, TX, TB0, TB1, RAN, STARTED, FINISHED):
# the application's latencies of a run: the baseline window TB0-TB1 and,
# if RAN, the run's STARTED-FINISHED, into RUN and the pooled %RAW
sub oltp_record
{
	my ($r, $workload, $variant, $tx, $tb0, $tb1, $ran, $started, $finished) = @_;
	my $bl = lat_window($tx, $tb0, $tb1);
	my $rl = $ran ? lat_window($tx, $started, $finished) : [];
	$r->{oltp} = { baseline => lat_stats($bl), run => lat_stats($rl) };
	$r->{t}{baseline_from} = $tb0;
	$r->{t}{baseline_to} = $tb1;
	push @{ $RAW{"$workload/$variant"}{run} }, @$rl;
	push @{ $RAW{"$workload/$variant"}{baseline} }, @$bl;
	push @{ $RAW{"$workload/all"}{baseline} }, @$bl;
	return;
}

sub measure
{
	my ($workload, $variant, $parallel, $rep, $pos) = @_;
	my $job = $workload eq 'migration' ? 'par_mig' : $workload eq 'flip' ? 'par_flip' : $JOB_OF{"events_$variant"};
	my $table = $workload eq 'migration' ? undef : $workload eq 'flip' ? 'events' : "events_$variant";
	my $tag = "${workload}_${variant}_$rep";
	my $oltp = $workload eq 'flip' && $RATE > 0;

	no_workers_left();
	if ($workload eq 'migration') { reset_migration() }
	else { reset_flip($table, 1) }
	my $prev = val('postgres', 'SELECT coalesce(max(run_id), 0) FROM chunkbatch.runs');
	my $log_offset = -s $node->logfile;
	my ($tb0, $tb1) = $oltp ? oltp_baseline($tag) : ();

	# the run, waited for with CALL run_and_wait in its own psql
	my $t0 = time;
	my ($out, $err) = ("$WORK/$tag.call.out", "$WORK/$tag.call.err");
	my $pid = fork // die "fork: $!";
	if (!$pid)
	{
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', $out;
		open STDERR, '>', $err;
		exec @PSQL, '-U', 'par', '-c', "CALL chunkbatch.run_and_wait('$job', '{}', NULL, $parallel)" or POSIX::_exit(127);
	}
	my ($rc, @samples);
	while (1)
	{
		my $line = $watch->query_safe(sprintf($POLL_SQL, $prev));
		if ($line ne '')
		{
			my ($run_id, $state, $now, $workers, $slices, $waits) = split /\|/, $line, -1;
			push @samples, [ 0 + $now, $state, 0 + $workers, 0 + $slices, $waits ];
		}
		if (waitpid($pid, WNOHANG) == $pid) { $rc = $?; last }
		sleep $POLL;
	}
	my $t1 = time;
	my $call_error = '';
	if ($rc)
	{
		$call_error = do { local $/; open my $fh, '<', $err; <$fh> } // '';
		$call_error =~ s/\s+$//;
		say_progress("  CALL chunkbatch.run_and_wait('$job', ...) failed (status $rc): $call_error");
	}
	my $tx = $oltp ? oltp_stop($tag) : [];

	my $row = sql('postgres', <<"EOF")->[0];
SELECT run_id, state, rows_done, chunks_done, coalesce(avg_chunk_ms, 0), coalesce(max_chunk_ms, 0), batch_size, parallel,
       extract(epoch FROM queued_at), extract(epoch FROM started_at), extract(epoch FROM finished_at),
       coalesce(sqlstate, ''), coalesce(replace(error, E'\\n', ' '), ''), lock_waiters_seen, retries
  FROM chunkbatch.runs WHERE run_id > $prev ORDER BY run_id LIMIT 1
EOF
	die "no run of $job was queued" . ($call_error ne '' ? ": $call_error" : '') . "\n" unless $row;
	my ($run_id, $state, $rows, $chunks, $avg, $max, $batch, $run_parallel, $queued, $started, $finished, $sqlstate, $error,
		$waiters_seen, $retries) = @$row;
	my $slices = sql('postgres', <<"EOF");
SELECT slice_no, state, coalesce(range_first, ''), coalesce(range_last, ''), rows_done, chunks_done, workers,
       coalesce(worker_pid, 0), coalesce(avg_chunk_ms, 0), coalesce(max_chunk_ms, 0),
       coalesce(extract(epoch FROM started_at), 0), coalesce(extract(epoch FROM finished_at), 0),
       coalesce(batch_size, 0), lock_waiters_seen, retries
  FROM chunkbatch.slices WHERE run_id = $run_id ORDER BY slice_no
EOF
	my @slices = map { {
		slice_no => 0 + $_->[0], state => $_->[1], range_first => $_->[2] eq '' ? undef : $_->[2],
		range_last => $_->[3] eq '' ? undef : $_->[3], rows => 0 + $_->[4], chunks => 0 + $_->[5], workers => 0 + $_->[6],
		worker_pid => 0 + $_->[7], avg_chunk_ms => 0 + $_->[8], max_chunk_ms => 0 + $_->[9],
		started_s => $_->[10] ? $_->[10] - $started : undef, finished_s => $_->[11] ? $_->[11] - $started : undef,
		final_batch => 0 + $_->[12], lock_waiters_seen => 0 + $_->[13], retries => 0 + $_->[14],
	} } @$slices;
	my $slice_rows = 0;
	$slice_rows += $_->{rows} for @slices;
	my %pids = map { $_->{worker_pid} => 1 } grep { $_->{worker_pid} } @slices;

	# the steals the server logged (a worker without a slice takes over half
	# the rest of the biggest)
	my $steals = 0;
	if (open my $lf, '<', $node->logfile)
	{
		seek $lf, $log_offset, 0;
		while (my $l = <$lf>)
		{
			$steals++ if $l =~ /chunkbatch run $run_id of job .* this worker takes over the keys after/;
		}
	}

	# the workers seen while the run was running
	my @running = grep { $_->[1] eq 'running' } @samples;
	my $max_workers = 0;
	my ($sum_workers, $first_full) = (0, undef);
	for my $s (@running)
	{
		$max_workers = $s->[2] if $s->[2] > $max_workers;
		$sum_workers += $s->[2];
	}
	for my $s (@running)
	{
		if ($s->[2] >= $max_workers && $max_workers > 0) { $first_full = $s->[0] - $started; last }
	}
	# who waited for a lock meanwhile (samples of pg_stat_activity: kind:wait_event)
	my %lock_waits;
	for my $s (@running)
	{
		$lock_waits{$_}++ for grep { $_ ne '' } split /,/, $s->[4];
	}

	# verification
	my @checks;
	push @checks, [ $state eq 'succeeded', "run $run_id $state" . ($error ne '' ? " ($sqlstate: $error)" : '') ];
	push @checks, data_checks($table);
	my $want = $workload eq 'migration' ? $ITEMS : $MATCHING{$table};
	push @checks, [ $rows == $want, "rows_done $rows = $want" ];
	if ($run_parallel > 1)
	{
		my $undone = grep { $_->{state} ne 'done' } @slices;
		push @checks, [ @slices > 0 && $undone == 0 && $slice_rows == $rows,
			scalar(@slices) . " slices, all done ($undone not), their rows_done add up to the run's ($slice_rows)" ];
	}
	else
	{
		push @checks, [ @slices == 0, 'no slices (parallel 1)' ];
	}
	my $verified = !grep { !$_->[0] } @checks;
	my $verify = join('; ', map { ($_->[0] ? 'ok' : 'not ok') . " - $_->[1]" } @checks);
	ok($verified, "$tag: $verify");

	my %r = (
		workload => $workload, variant => $variant, parallel => 0 + $parallel, rep => 0 + $rep, position => 0 + $pos,
		job => $job, run_id => 0 + $run_id, state => $state, rows => 0 + $rows, chunks => 0 + $chunks,
		avg_chunk_ms => 0 + $avg, max_chunk_ms => 0 + $max, final_batch => 0 + $batch,
		lock_waiters_seen => 0 + $waiters_seen, retries => 0 + $retries, lock_waits_sampled => \%lock_waits,
		exec_s => $finished ne '' && $started ne '' ? $finished - $started : undef, wall_s => $t1 - $t0,
		queued_to_started_s => $started ne '' ? $started - $queued : undef,
		slices => scalar @slices, stolen_slices => scalar(grep { $_->{slice_no} >= $run_parallel } @slices),
		steals_logged => $steals, worker_pids => scalar keys %pids,
		workers_max_seen => $max_workers, workers_mean_seen => @running ? $sum_workers / @running : undef,
		workers_max_first_seen_s => $first_full, samples => scalar @running,
		slice_detail => \@slices,
		verified => $verified ? JSON::PP::true : JSON::PP::false,
		verify => $verify,
		call_error => $call_error,
		load => loadavg(),
		other_work => other_work(),
		t => { queued => 0 + $queued, started => $started ne '' ? 0 + $started : undef, finished => $finished ne '' ? 0 + $finished : undef,
			t0 => $t0, t1 => $t1 },
	);
	oltp_record(\%r, $workload, $variant, $tx, $tb0, $tb1, defined $r{exec_s}, $started, $finished) if $oltp;
	push @{ $results{runs} }, \%r;
	write_results();
	say_progress(sprintf('%-9s %-8s rep %d: %s s (wall %.2f s), %d rows, %d chunks, %d slices (%d stolen), workers max %d mean %s%s; %s',
		$workload, $variant, $rep, f2($r{exec_s}), $r{wall_s}, $rows, $chunks, $r{slices}, $r{stolen_slices}, $max_workers,
		f1($r{workers_mean_seen}),
		$oltp ? sprintf('; app p99 %s ms max %s ms (alone: p99 %s ms)', f1($r{oltp}{run}{p99_ms}), f1($r{oltp}{run}{max_ms}), f1($r{oltp}{baseline}{p99_ms})) : '',
		$verified ? 'verified' : "VERIFICATION FAILED: $verify"));
	return \%r;
}

# --- a by-hand baseline ------------------------------------------------------------------------
# The monitor's query during a by-hand run: the states of its chunkbatch
# runs (migration), the processes doing its work (the runs' workers, or the
# psql sessions running their UPDATE: application_name par_hand), and who
# waits for a lock.
my $POLL_HAND_SQL = <<'EOF' . "       $LOCK_WAITERS_SQL\n";
SELECT extract(epoch FROM clock_timestamp()),
       coalesce((SELECT string_agg(r.state, ',' ORDER BY r.run_id) FROM chunkbatch.runs r
                  WHERE r.run_id = ANY ('{%s}'::bigint[])), ''),
       (SELECT count(*) FROM pg_stat_activity a
         WHERE (a.backend_type = 'chunkbatch run worker' AND a.application_name ~ '^chunkbatch run (%s)( slices)?: ')
            OR (a.application_name = 'par_hand' AND a.state = 'active')),
EOF
my %OVER = map { $_ => 1 } qw(succeeded failed cancelled skipped paused stopped);
sub slurp { my ($f) = @_; open my $fh, '<', $f or return undef; local $/; return <$fh> }
sub sum { my $t = 0; $t += $_ // 0 for @_; return $t }

# measure_by_hand(WORKLOAD, VARIANT, REP, POSITION): flip hand1 / hand2: one
# psql per statement, all started together; migration hand2: the two range
# jobs queued in one transaction, then polled until both are over.  The
# same resets, application and checks as measure().
sub measure_by_hand
{
	my ($workload, $variant, $rep, $pos) = @_;
	my $table = $workload eq 'migration' ? undef : 'events';
	my $tag = "${workload}_${variant}_$rep";
	my $oltp = $workload eq 'flip' && $RATE > 0;

	no_workers_left();
	if ($workload eq 'migration') { reset_migration() }
	else { reset_flip($table, 1) }
	my ($tb0, $tb1) = $oltp ? oltp_baseline($tag) : ();

	my (@parts, @ids, %kid);
	my $t0;
	if ($workload eq 'flip')
	{
		my $i = 0;
		for my $h (@{ $HAND_FLIP{$variant} })
		{
			# (not $tag.N: oltp_stop reads and removes pgbench's logs, $tag.N*)
			my $file = "$WORK/${tag}_statement" . $i++ . '.sql';
			open my $fh, '>', $file or die "$file: $!";
			print $fh "SET synchronous_commit = off;\nSELECT extract(epoch FROM clock_timestamp());\n$h->{stmt};\n"
			  . "\\echo :ROW_COUNT\nSELECT extract(epoch FROM clock_timestamp());\n";
			close $fh;
			push @parts, { what => $h->{stmt}, expected_rows => $h->{rows}, file => $file };
		}
		$t0 = time;
		for my $part (@parts)
		{
			my $pid = fork // die "fork: $!";
			if (!$pid)
			{
				open STDIN, '<', '/dev/null';
				open STDOUT, '>', "$part->{file}.out";
				open STDERR, '>', "$part->{file}.err";
				$ENV{PGAPPNAME} = 'par_hand';
				exec @PSQL, '-U', 'par', '-f', $part->{file} or POSIX::_exit(127);
			}
			$kid{$pid} = $part;
		}
	}
	else
	{
		$t0 = time;
		@ids = map { 0 + $_ } @{ sql('par', 'SELECT ' . join(', ', map { "chunkbatch.run('$_->{job}', '$_->{params}')" } @HAND_MIG))->[0] };
	}
	my $ids = @ids ? join(',', @ids) : '0';
	my $re = @ids ? join('|', @ids) : '0';
	my @samples;
	while (1)
	{
		my $line = $watch->query_safe(sprintf($POLL_HAND_SQL, $ids, $re));
		my ($now, $states, $workers, $waits) = split /\|/, $line, -1;
		push @samples, [ 0 + $now, $states, 0 + $workers, $waits ];
		for my $pid (keys %kid)
		{
			next unless waitpid($pid, WNOHANG) == $pid;
			$kid{$pid}{rc} = $?;
			delete $kid{$pid};
		}
		last if $workload eq 'flip' ? !%kid : (grep { $OVER{$_} } split /,/, $states) == @ids;
		sleep $POLL;
	}
	my $t1 = time;
	my $tx = $oltp ? oltp_stop($tag) : [];

	my @checks;
	my ($started, $finished, $rows, $state);
	if ($workload eq 'flip')
	{
		my $n = 0;
		for my $part (@parts)
		{
			$n++;
			my @out = grep { $_ ne '' } split /\n/, slurp("$part->{file}.out") // '';
			my $err = slurp("$part->{file}.err") // '';
			$err =~ s/\s+$//;
			$err =~ s/\n/ /g;
			my $ok = $part->{rc} == 0 && @out == 3 && !grep { !/^[\d.]+$/ } @out;
			@$part{qw(started finished rows)} = $ok ? (0 + $out[0], 0 + $out[2], 0 + $out[1]) : (undef, undef, undef);
			$part->{error} = $err if $err ne '';
			push @checks, [ $ok && $part->{rows} == $part->{expected_rows},
				"statement $n: " . ($ok ? "$part->{rows} rows of $part->{expected_rows} matching" : "failed (exit status $part->{rc}" . ($err ne '' ? ": $err" : '') . ')') ];
			unlink $part->{file}, "$part->{file}.out", "$part->{file}.err" if $ok;
		}
		$state = (grep { !$_->[0] } @checks) ? 'failed' : 'succeeded';
	}
	else
	{
		my $rr = sql('postgres', <<"EOF");
SELECT run_id, job_name, state, rows_done, chunks_done, coalesce(avg_chunk_ms, 0), coalesce(max_chunk_ms, 0), batch_size,
       extract(epoch FROM queued_at), extract(epoch FROM started_at), extract(epoch FROM finished_at),
       coalesce(range_first, ''), coalesce(range_last, ''), coalesce(sqlstate, ''), coalesce(replace(error, E'\\n', ' '), ''),
       lock_waiters_seen, retries, (SELECT count(*) FROM chunkbatch.slices s WHERE s.run_id = r.run_id)
  FROM chunkbatch.runs r WHERE run_id IN ($ids) ORDER BY run_id
EOF
		my %by_id = map { $_->[0] => $_ } @$rr;
		for my $i (0 .. $#HAND_MIG)
		{
			my $h = $HAND_MIG[$i];
			my ($id, $job, $st, $done, $chunks, $avg, $max, $batch, $queued, $s0, $s1, $first, $last, $sqlstate, $error, $waiters, $retries, $nslices)
			  = @{ $by_id{ $ids[$i] } // [] };
			my %part = (what => "run $ids[$i] of $h->{job} (params $h->{params})", run_id => $ids[$i], job => $h->{job}, params => $h->{params},
				state => $st // 'missing', rows => 0 + ($done // 0), expected_rows => $h->{items}, chunks => 0 + ($chunks // 0),
				avg_chunk_ms => 0 + ($avg // 0), max_chunk_ms => 0 + ($max // 0), final_batch => 0 + ($batch // 0),
				lock_waiters_seen => 0 + ($waiters // 0), retries => 0 + ($retries // 0), slices => 0 + ($nslices // 0),
				queued => defined $queued ? 0 + $queued : undef,
				started => defined $s0 && $s0 ne '' ? 0 + $s0 : undef, finished => defined $s1 && $s1 ne '' ? 0 + $s1 : undef,
				range_first => $first, range_last => $last);
			push @parts, \%part;
			push @checks, [ defined $id && $id == $ids[$i] && $st eq 'succeeded', "run $ids[$i] " . ($st // 'missing') . (($error // '') ne '' ? " ($sqlstate: $error)" : '') ];
			push @checks, [ ($first // '') eq $h->{lo} && ($last // '') eq $h->{hi},
				"run $ids[$i] covered the keys $h->{lo}..$h->{hi} (span " . ($first || 'none') . '..' . ($last || 'none') . ')' ];
			push @checks, [ $part{rows} == $h->{items}, "run $ids[$i] rows_done $part{rows} = $h->{items}" ];
			push @checks, [ $part{slices} == 0, "run $ids[$i] has no slices (parallel 1)" ];
		}
		$state = join(',', map { $_->{state} } @parts);
	}
	push @checks, data_checks($table);
	$rows = sum(map { $_->{rows} } @parts);
	my $want = $workload eq 'migration' ? $ITEMS : $MATCHING{$table};
	push @checks, [ $rows == $want, "rows of the " . ($workload eq 'migration' ? 'two runs' : 'statement(s)') . " $rows = $want" ];
	if (!grep { !defined $_->{started} || !defined $_->{finished} } @parts)
	{
		($started) = sort { $a <=> $b } map { $_->{started} } @parts;
		($finished) = sort { $b <=> $a } map { $_->{finished} } @parts;
	}
	for my $part (@parts)
	{
		$part->{started_s} = defined $started && defined $part->{started} ? $part->{started} - $started : undef;
		$part->{finished_s} = defined $started && defined $part->{finished} ? $part->{finished} - $started : undef;
	}

	# the workers (migration) or statements (flip) seen at work meanwhile
	my @running = defined $started ? grep { $_->[0] >= $started && $_->[0] <= $finished } @samples : ();
	my ($max_workers, $sum_workers, $first_full) = (0, 0, undef);
	for my $s (@running)
	{
		$max_workers = $s->[2] if $s->[2] > $max_workers;
		$sum_workers += $s->[2];
	}
	for my $s (@running)
	{
		if ($s->[2] >= $max_workers && $max_workers > 0) { $first_full = $s->[0] - $started; last }
	}
	my %lock_waits;
	for my $s (@running)
	{
		$lock_waits{$_}++ for grep { $_ ne '' } split /,/, $s->[3];
	}

	my $verified = !grep { !$_->[0] } @checks;
	my $verify = join('; ', map { ($_->[0] ? 'ok' : 'not ok') . " - $_->[1]" } @checks);
	ok($verified, "$tag: $verify");
	my $mig = $workload eq 'migration';
	my $chunks = $mig ? sum(map { $_->{chunks} } @parts) : undef;
	my %r = (
		workload => $workload, variant => $variant, by_hand => JSON::PP::true, sessions => scalar @parts,
		parallel => $mig ? 1 : undef, rep => 0 + $rep, position => 0 + $pos,
		job => $mig ? join('+', map { $_->{job} } @HAND_MIG) : undef, run_id => undef, run_ids => $mig ? \@ids : undef,
		state => $state, rows => 0 + $rows, chunks => $chunks,
		avg_chunk_ms => $mig && $chunks ? sum(map { $_->{avg_chunk_ms} * $_->{chunks} } @parts) / $chunks : undef,
		max_chunk_ms => $mig ? (sort { $b <=> $a } map { $_->{max_chunk_ms} } @parts)[0] : undef,
		lock_waiters_seen => $mig ? sum(map { $_->{lock_waiters_seen} } @parts) : undef,
		retries => $mig ? sum(map { $_->{retries} } @parts) : undef, lock_waits_sampled => \%lock_waits,
		exec_s => defined $started ? $finished - $started : undef, wall_s => $t1 - $t0,
		start_spread_s => defined $started ? (sort { $b <=> $a } map { $_->{started_s} } @parts)[0] : undef,
		slices => $mig ? 0 : undef, stolen_slices => $mig ? 0 : undef,
		workers_max_seen => $max_workers, workers_mean_seen => @running ? $sum_workers / @running : undef,
		workers_max_first_seen_s => $first_full, samples => scalar @running,
		parts => [ map { my %p = %$_; delete $p{file}; \%p } @parts ],
		verified => $verified ? JSON::PP::true : JSON::PP::false,
		verify => $verify,
		load => loadavg(),
		other_work => other_work(),
		t => { started => $started, finished => $finished, t0 => $t0, t1 => $t1 },
	);
	oltp_record(\%r, $workload, $variant, $tx, $tb0, $tb1, defined $started, $started, $finished) if $oltp;
	push @{ $results{runs} }, \%r;
	write_results();
	say_progress(sprintf('%-9s %-8s rep %d: %s s (wall %.2f s; %s), %d rows%s, %s max %d mean %s%s; %s',
		$workload, $variant, $rep, f2($r{exec_s}), $r{wall_s}, join(', ', map { sprintf('%s-%s s', f2($_->{started_s}), f2($_->{finished_s})) } @parts),
		$rows, $mig ? ", $chunks chunks" : '', $mig ? 'workers' : 'statements', $max_workers, f1($r{workers_mean_seen}),
		$oltp ? sprintf('; app p99 %s ms max %s ms (alone: p99 %s ms)', f1($r{oltp}{run}{p99_ms}), f1($r{oltp}{run}{max_ms}), f1($r{oltp}{baseline}{p99_ms})) : '',
		$verified ? 'verified' : "VERIFICATION FAILED: $verify"));
	return \%r;
}

# --- the run ---------------------------------------------------------------------------------
# variants of a workload: [label, parallel]
# (by hand: parallel undef), and what the report calls them
my %VARIANTS = (
	migration => [ (map { [ "p$_", $_ ] } @LEVELS), ($BY_HAND ? ([ 'hand2', undef ]) : ()) ],
	flip => [ (map { [ "p$_", $_ ] } @LEVELS), ($BY_HAND ? ([ 'hand1', undef ], [ 'hand2', undef ]) : ()) ],
	skew => [ [ 'skew', $SKEW_P ], [ 'bal', $SKEW_P ] ],
);
my %HAND_LABEL = (
	migration => { hand2 => 'by hand, two range jobs at once' },
	flip => { hand1 => 'by hand, one statement', hand2 => 'by hand, two statements at once' },
);
for my $rep (1 .. $REPS)
{
	for my $w (@WORKLOADS)
	{
		my @v = @{ $VARIANTS{$w} };
		my $k = ($rep - 1) % @v;
		@v = (@v[ $k .. $#v ], @v[ 0 .. $k - 1 ]);
		my $pos = 0;
		for my $v (@v)
		{
			if (!defined $v->[1])
			{
				say_progress("$w $v->[0] ($HAND_LABEL{$w}{$v->[0]}) rep $rep");
				measure_by_hand($w, $v->[0], $rep, ++$pos);
				next;
			}
			say_progress("$w $v->[0] (parallel $v->[1]) rep $rep");
			measure($w, $v->[0], $v->[1], $rep, ++$pos);
		}
	}
}

summarize();
$results{run}{load_end} = loadavg();
$results{run}{other_work_at_end} = other_work();
$results{run}{postgres_version} = val('postgres', 'SELECT version()');
$results{run}{elapsed_s} = int(time - $t_start + 0.5);
$results{run}{complete} = JSON::PP::true;
push @{ $results{run}{notes} }, "other work on the machine at the start: $results{run}{other_work_at_start}; at the end: $results{run}{other_work_at_end}; "
  . "load average at the start $results{run}{load_start}, at the end $results{run}{load_end}"
  if $results{run}{other_work_at_start} ne 'nothing' || $results{run}{other_work_at_end} ne 'nothing';
push @{ $results{run}{notes} }, 'smoke run: small tables and one repetition; the figures show that the benchmark works, not how fast parallel slices are'
  if $smoke;
write_results();
write_report();
$watch->quit;
say_progress("wrote $opt{out} and $opt{md}");
done_testing();

# --- summary and report ---------------------------------------------------------------------
sub median
{
	my @v = sort { $a <=> $b } grep { defined } @_;
	return undef unless @v;
	return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}
sub maxof { my @v = sort { $b <=> $a } grep { defined } @_; return $v[0] }
sub runs_of { my ($w, $v) = @_; return grep { $_->{workload} eq $w && $_->{variant} eq $v } @{ $results{runs} } }

# The ratio of two variants: per repetition (the two runs of one
# repetition, side by side), the median of those, and the ratio of the
# median times.
sub ratio
{
	my ($w, $num, $den) = @_;
	my %d = map { $_->{rep} => $_->{exec_s} } runs_of($w, $den);
	my @per_rep;
	for my $r (runs_of($w, $num))
	{
		next unless defined $r->{exec_s} && $d{ $r->{rep} };
		push @per_rep, { rep => $r->{rep}, ratio => $r->{exec_s} / $d{ $r->{rep} } };
	}
	my ($mn, $md) = (median(map { $_->{exec_s} } runs_of($w, $num)), median(map { $_->{exec_s} } runs_of($w, $den)));
	return {
		per_rep => \@per_rep, median => median(map { $_->{ratio} } @per_rep),
		of_medians => $mn && $md ? $mn / $md : undef,
	};
}

sub target
{
	my ($id, $what, $value, $limit, $detail) = @_;
	return { id => $id, what => $what, value => $value, limit => $limit, detail => $detail,
		met => defined $value ? ($value <= $limit ? JSON::PP::true : JSON::PP::false) : undef };
}

sub summarize
{
	my %s;
	for my $w (@WORKLOADS)
	{
		for my $v (map { $_->[0] } @{ $VARIANTS{$w} })
		{
			my @r = runs_of($w, $v);
			$s{$w}{$v} = {
				exec_s => median(map { $_->{exec_s} } @r),
				exec_s_per_rep => [ map { $_->{exec_s} } sort { $a->{rep} <=> $b->{rep} } @r ],
				wall_s => median(map { $_->{wall_s} } @r),
				chunks => median(map { $_->{chunks} } @r),
				lock_waiters_seen => median(map { $_->{lock_waiters_seen} } @r),
				avg_chunk_ms => median(map { $_->{avg_chunk_ms} } @r),
				max_chunk_ms => maxof(map { $_->{max_chunk_ms} } @r),
				slices => median(map { $_->{slices} } @r),
				slices_max => maxof(map { $_->{slices} } @r),
				stolen_slices => median(map { $_->{stolen_slices} } @r),
				workers_max_seen => maxof(map { $_->{workers_max_seen} } @r),
				workers_mean_seen => median(map { $_->{workers_mean_seen} } @r),
				start_spread_s => median(map { $_->{start_spread_s} } @r),
				all_verified => (grep { !$_->{verified} } @r) ? JSON::PP::false : JSON::PP::true,
			};
		}
	}
	my @targets;
	for my $w (grep { $_ eq 'migration' || $_ eq 'flip' } @WORKLOADS)
	{
		for my $n (grep { $_ != 1 } @LEVELS)
		{
			$s{$w}{ratios}{"p${n}_p1"} = ratio($w, "p$n", 'p1');
		}
		if ($BY_HAND)
		{
			$s{$w}{ratios}{"${_}_p1"} = ratio($w, $_, 'p1') for sort keys %{ $HAND_LABEL{$w} };
			if ($w eq 'migration') { $s{$w}{ratios}{hand2_p2} = ratio($w, 'hand2', 'p2') }
			else { $s{$w}{ratios}{hand2_hand1} = ratio($w, 'hand2', 'hand1') }
		}
		my $r = $s{$w}{ratios}{p2_p1};
		push @targets, target("${w}_p2_p1", "$w: time with parallel 2 / time with parallel 1", $r->{median}, 0.60,
			sprintf('median of the per-repetition ratios (%s); ratio of the median times %s',
				join(', ', map { f2($_->{ratio}) } @{ $r->{per_rep} }), f2($r->{of_medians})));
	}
	if ($DO{skew})
	{
		my $r = $s{skew}{ratios}{skew_bal} = ratio('skew', 'skew', 'bal');
		push @targets, target('skew_bal', "skew: time of the skewed table / time of the balanced one (parallel $SKEW_P)", $r->{median}, 1.15,
			sprintf('median of the per-repetition ratios (%s); ratio of the median times %s; the skewed runs ended with %s slices (median; %s stolen)',
				join(', ', map { f2($_->{ratio}) } @{ $r->{per_rep} }), f2($r->{of_medians}),
				f0($s{skew}{skew}{slices}), f0($s{skew}{skew}{stolen_slices})));
	}
	if ($DO{flip} && $RATE > 0)
	{
		my $bl = [ sort { $a <=> $b } @{ $RAW{'flip/all'}{baseline} // [] } ];
		$s{oltp}{baseline} = lat_stats($bl);
		for my $v (map { $_->[0] } @{ $VARIANTS{flip} })
		{
			my $l = [ sort { $a <=> $b } @{ $RAW{"flip/$v"}{run} // [] } ];
			my $st = $s{oltp}{$v} = lat_stats($l);
			$st->{p99_ratio} = $s{oltp}{baseline}{p99_ms} && defined $st->{p99_ms} ? $st->{p99_ms} / $s{oltp}{baseline}{p99_ms} : undef;
			$st->{max_ratio} = $s{oltp}{baseline}{max_ms} && defined $st->{max_ms} ? $st->{max_ms} / $s{oltp}{baseline}{max_ms} : undef;
			# against the window just before each run
			$st->{p99_ratio_per_run} = [ map { $_->{oltp}{baseline}{p99_ms} && defined $_->{oltp}{run}{p99_ms}
				  ? $_->{oltp}{run}{p99_ms} / $_->{oltp}{baseline}{p99_ms} : undef } sort { $a->{rep} <=> $b->{rep} } runs_of('flip', $v) ];
		}
		push @targets, target('oltp_p99_p2', 'flip: application p99 during the parallel 2 runs / p99 without a batch',
			$s{oltp}{p2}{p99_ratio}, 3,
			sprintf('pooled over the repetitions: p99 %s ms (max %s ms, n %d) during the runs, %s ms (max %s ms, n %d) in the windows without a batch',
				f1($s{oltp}{p2}{p99_ms}), f1($s{oltp}{p2}{max_ms}), $s{oltp}{p2}{n},
				f1($s{oltp}{baseline}{p99_ms}), f1($s{oltp}{baseline}{max_ms}), $s{oltp}{baseline}{n}));
	}
	my @failed = grep { !$_->{verified} } @{ $results{runs} };
	push @targets, { id => 'verified', what => 'every run succeeded and processed every item / matching row exactly once',
		value => scalar(@{ $results{runs} }) - @failed, limit => scalar @{ $results{runs} },
		met => @failed ? JSON::PP::false : JSON::PP::true,
		detail => @failed ? 'failed: ' . join(', ', map { "$_->{workload} $_->{variant} rep $_->{rep}" } @failed) : 'all runs' };
	$s{targets} = \@targets;
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

sub run_label
{
	my ($r) = @_;
	return $r->{run_ids} ? 'runs ' . join(' + ', @{ $r->{run_ids} }) : $r->{by_hand} ? 'psql' : "run $r->{run_id}";
}
sub f0 { return defined $_[0] ? sprintf('%.0f', $_[0]) : 'n/a' }
sub f1 { return defined $_[0] ? sprintf('%.1f', $_[0]) : 'n/a' }
sub f2 { return defined $_[0] ? sprintf('%.2f', $_[0]) : 'n/a' }
sub met { return !defined $_[0] ? 'n/a' : $_[0] ? 'yes' : '**NO**' }

sub write_report
{
	my $s = $results{summary};
	my $m = $results{run}{machine};
	my @runs = @{ $results{runs} };
	my $md = '';
	$md .= "# Parallel slices (`parallel => N`)\n\n";
	$md .= "Generated by `bench/parallel.pl` (`$results{run}{command}`), started $results{run}{started_at}, "
	  . "$results{run}{elapsed_s} s in all, on $m->{cpus} cores. Raw figures: the JSON results file of the same run.\n\n";
	if (@{ $results{run}{notes} })
	{
		$md .= "Notes:\n\n" . join('', map { "- $_\n" } @{ $results{run}{notes} }) . "\n";
	}
	$md .= "## Result\n\n";
	$md .= "Run time = `finished_at - started_at` of the run (median of $REPS repetition(s)); ratios: the median of the "
	  . "per-repetition ratios (the variants of one repetition ran back to back)."
	  . ($BY_HAND ? ' By hand: the same work without slices, measured in the same repetitions (see below each table).' : '') . "\n\n";
	for my $w (grep { $_ eq 'migration' || $_ eq 'flip' } @WORKLOADS)
	{
		$md .= $w eq 'migration'
		  ? "### Migration-shaped job ($ITEMS items upserted into 6 tables with 19 secondary indexes, $MIG_BATCH keys per chunk)\n\n"
		  : "### Status flip ($MATCHING{events} of $ROWS rows, $FLIP_BATCH keys per chunk"
		  . ($FLIP_TARGET_MS ne '' ? ", target_chunk_ms $FLIP_TARGET_MS" : '')
		  . ($RATE > 0 ? ", with the application running" : '') . ")\n\n";
		my $S = $s->{$w};
		my @cols = map { $_->[0] } @{ $VARIANTS{$w} };
		my %name = ((map { ("p$_" => "parallel $_") } @LEVELS), %{ $HAND_LABEL{$w} });
		# a flip by hand is no chunkbatch run: no chunks, no slices
		my $nochunks = sub { $w eq 'flip' && $_[0] =~ /^hand/ };
		my $row = sub { my ($label, $f) = @_; return "| $label | " . join(' | ', map { $f->($_) } @cols) . " |\n" };
		$md .= '| | ' . join(' | ', map { $name{$_} } @cols) . " |\n|---|" . join('', map { '---|' } @cols) . "\n";
		$md .= $row->('median run time', sub { f2($S->{ $_[0] }{exec_s}) . ' s' });
		$md .= $row->('run time / parallel 1', sub { $_[0] eq 'p1' ? '1' : '**' . f2($S->{ratios}{"$_[0]_p1"}{median}) . '**' });
		$md .= $row->('run time / parallel 2', sub { $_[0] eq 'p2' ? '1' : $_[0] eq 'hand2' ? '**' . f2($S->{ratios}{hand2_p2}{median}) . '**' : '' })
		  if $BY_HAND && $w eq 'migration';
		$md .= $row->('two statements / one statement', sub { $_[0] eq 'hand1' ? '1' : $_[0] eq 'hand2' ? '**' . f2($S->{ratios}{hand2_hand1}{median}) . '**' : '' })
		  if $BY_HAND && $w eq 'flip';
		$md .= $row->('per repetition', sub { join(', ', map { f2($_) } @{ $S->{ $_[0] }{exec_s_per_rep} }) . ' s' });
		$md .= $row->('chunks (median)', sub { $nochunks->($_[0]) ? '-' : f0($S->{ $_[0] }{chunks}) });
		$md .= $row->('chunks that made another session wait (median)', sub { $nochunks->($_[0]) ? '-' : f0($S->{ $_[0] }{lock_waiters_seen}) });
		$md .= $row->('avg chunk (median) / longest',
			sub { $nochunks->($_[0]) ? '-' : f1($S->{ $_[0] }{avg_chunk_ms}) . ' / ' . f1($S->{ $_[0] }{max_chunk_ms}) . ' ms' });
		$md .= $row->('slices (median; stolen)',
			sub { $_[0] eq 'p1' || $_[0] =~ /^hand/ ? '-' : f0($S->{ $_[0] }{slices}) . ' (' . f0($S->{ $_[0] }{stolen_slices}) . ')' });
		$md .= $row->('workers seen (max; mean while running)', sub { f0($S->{ $_[0] }{workers_max_seen}) . '; ' . f1($S->{ $_[0] }{workers_mean_seen}) });
		$md .= "\n";
		if ($BY_HAND && $w eq 'migration')
		{
			my $h = $results{run}{by_hand}{migration};
			$md .= "By hand, two range jobs at once: how the migration was parallelised before slices. Two jobs with `parallel => 1`, "
			  . "`par_mig_h1` and `par_mig_h2` (the statement and batch size above; `range_filter` `$h->{filter}`, which the run's key "
			  . "span applies; a job never overlaps itself, so it takes two), queued in one transaction with the halves of the staging keys as params ("
			  . join(', ', map { "`$_->{params}`" } @{ $h->{runs} }) . ", split at the median key) and waited for together. Run time: the "
			  . "earlier run's `started_at` to the later one's `finished_at` (the second started "
			  . f2($S->{hand2}{start_spread_s}) . " s after the first, median); chunks, chunks that made another session wait: both runs' "
			  . "together; workers: both runs'. Ratios: **" . f2($S->{ratios}{hand2_p1}{median}) . "** × parallel 1, **"
			  . f2($S->{ratios}{hand2_p2}{median}) . "** × parallel 2.\n\n";
		}
		if ($BY_HAND && $w eq 'flip')
		{
			my $h = $results{run}{by_hand}{flip};
			$md .= "By hand: the flip as one `UPDATE` in one psql session, or two sessions started together, each running it over one "
			  . "half of the keys (`AND id <= $h->{mid}` / `AND id > $h->{mid}`; $h->{mid} = the median key of the matching rows), all with "
			  . "`SET synchronous_commit = off` (as chunkbatch's chunks). Run time: the earlier statement's start to the later one's commit "
			  . "(the server's clock); workers seen: the sessions seen running their statement. One statement: **"
			  . f2($S->{ratios}{hand1_p1}{median}) . "** × parallel 1; two statements at once: **" . f2($S->{ratios}{hand2_p1}{median})
			  . "** × parallel 1; two / one = **" . f2($S->{ratios}{hand2_hand1}{median}) . "**: the scaling PostgreSQL itself gives "
			  . "this flip on this machine" . ($RATE > 0 ? ' (with the application running)' : '') . ".\n\n";
		}
	}
	if ($DO{skew})
	{
		my $sk = $results{run}{skew};
		$md .= sprintf("### Skew (parallel %d; %d matching rows of %d in each table, %.0f%% of the skewed table's in its first tenth of the keys)\n\n",
			$SKEW_P, $sk->{matching_rows}, $ROWS, 100 * ($sk->{share_in_first_tenth} // 0));
		$md .= "| | skewed | balanced |\n|---|---|---|\n";
		$md .= sprintf("| median run time | %s s | %s s |\n", f2($s->{skew}{skew}{exec_s}), f2($s->{skew}{bal}{exec_s}));
		$md .= sprintf("| skewed / balanced | **%s** | |\n", f2($s->{skew}{ratios}{skew_bal}{median}));
		$md .= sprintf("| per repetition | %s | %s |\n", map { my $v = $_; join(', ', map { f2($_) } @{ $s->{skew}{$v}{exec_s_per_rep} }) . ' s' } qw(skew bal));
		$md .= sprintf("| slices at the end (median; max) | %s; %s | %s; %s |\n", f0($s->{skew}{skew}{slices}), f0($s->{skew}{skew}{slices_max}),
			f0($s->{skew}{bal}{slices}), f0($s->{skew}{bal}{slices_max}));
		$md .= sprintf("| of which stolen (median) | %s | %s |\n", f0($s->{skew}{skew}{stolen_slices}), f0($s->{skew}{bal}{stolen_slices}));
		$md .= sprintf("| chunks (median) | %s | %s |\n", f0($s->{skew}{skew}{chunks}), f0($s->{skew}{bal}{chunks}));
		$md .= sprintf("| chunks that made another session wait (median) | %s | %s |\n", f0($s->{skew}{skew}{lock_waiters_seen}), f0($s->{skew}{bal}{lock_waiters_seen}));
		$md .= sprintf("| workers seen (max; mean while running) | %s; %s | %s; %s |\n",
			f0($s->{skew}{skew}{workers_max_seen}), f1($s->{skew}{skew}{workers_mean_seen}),
			f0($s->{skew}{bal}{workers_max_seen}), f1($s->{skew}{bal}{workers_mean_seen}));
		$md .= "\n";
	}
	if ($DO{flip} && $RATE > 0)
	{
		$md .= "### The application during the flips\n\n";
		$md .= "pgbench, $CLIENTS clients, $RATE transactions/s in all (`-R`; latency from the scheduled start), pooled over the repetitions; "
		  . "no batch = the ${BASELINE_SECS} s windows before each flip run.\n\n";
		$md .= "| window | n | p50 | p99 | max | p99 / no-batch p99 | p99 ratio per run (to the window before it) |\n|---|---|---|---|---|---|---|\n";
		my $b = $s->{oltp}{baseline};
		$md .= sprintf("| no batch | %d | %s ms | %s ms | %s ms | 1 | |\n", $b->{n}, f1($b->{p50_ms}), f1($b->{p99_ms}), f1($b->{max_ms}));
		for my $v (map { $_->[0] } @{ $VARIANTS{flip} })
		{
			my $o = $s->{oltp}{$v};
			$md .= sprintf("| during %s | %d | %s ms | %s ms | %s ms | %s | %s |\n", $v =~ /^p(\d+)$/ ? "parallel $1" : $HAND_LABEL{flip}{$v},
				$o->{n}, f1($o->{p50_ms}), f1($o->{p99_ms}), f1($o->{max_ms}),
				($v eq 'p2' ? '**' . f2($o->{p99_ratio}) . '**' : f2($o->{p99_ratio})), join(', ', map { f2($_) } @{ $o->{p99_ratio_per_run} }));
		}
		$md .= "\n";
	}
	$md .= "### Targets\n\n| target | value | limit | met | how |\n|---|---|---|---|---|\n";
	for my $t (@{ $s->{targets} })
	{
		$md .= sprintf("| %s | %s | %s | %s | %s |\n", $t->{what},
			$t->{id} eq 'verified' ? "$t->{value} runs" : defined $t->{value} ? sprintf('%.3f', $t->{value}) : 'n/a',
			$t->{id} eq 'verified' ? "all $t->{limit} runs" : "≤ $t->{limit}", met($t->{met}), $t->{detail});
	}
	$md .= "\n## Every run\n\n";
	$md .= "| workload | variant | rep | order | run | run time | wall | rows | chunks | chunks that made someone wait | slices (stolen) | workers max / mean | all workers after | app p99 / max (alone) | load after | verified |\n"
	  . "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
	for my $r (@runs)
	{
		$md .= sprintf("| %s | %s | %d | %d | %s | %s s | %s s | %d | %s | %s | %s | %d / %s | %s | %s | %s | %s |\n",
			$r->{workload}, $r->{variant}, $r->{rep}, $r->{position},
			$r->{run_ids} ? join(' + ', @{ $r->{run_ids} }) : $r->{by_hand} ? '-' : $r->{run_id}, f2($r->{exec_s}), f2($r->{wall_s}), $r->{rows},
			$r->{chunks} // '-', $r->{lock_waiters_seen} // '-',
			!$r->{by_hand} && $r->{parallel} > 1 ? "$r->{slices} ($r->{stolen_slices})" : '-', $r->{workers_max_seen}, f1($r->{workers_mean_seen}),
			defined $r->{workers_max_first_seen_s} ? f2($r->{workers_max_first_seen_s}) . ' s' : 'n/a',
			$r->{oltp} ? sprintf('%s / %s ms (%s / %s)', f1($r->{oltp}{run}{p99_ms}), f1($r->{oltp}{run}{max_ms}),
				f1($r->{oltp}{baseline}{p99_ms}), f1($r->{oltp}{baseline}{max_ms})) : '',
			$r->{load}, $r->{verified} ? 'yes' : '**NO**');
	}
	$md .= "\n### Slices of the parallel runs\n\n";
	$md .= "Per slice: number, rows, chunks (of which made someone wait), last chunk's size, workers that took it, seconds from the run's "
	  . "start to the slice's start and end. Then the sessions seen waiting for a lock while the run ran (samples every "
	  . ($POLL * 1000) . " ms, `who:wait_event` × samples).\n\n";
	for my $r (grep { !$_->{by_hand} && $_->{parallel} > 1 } @runs)
	{
		my $lw = $r->{lock_waits_sampled};
		$md .= sprintf("- %s %s rep %d (run %d): %s; lock waits seen: %s\n", $r->{workload}, $r->{variant}, $r->{rep}, $r->{run_id},
			join('; ', map { sprintf('#%d %d rows %d chunks (%d) %d keys %dw %s-%s s', $_->{slice_no}, $_->{rows}, $_->{chunks},
				$_->{lock_waiters_seen}, $_->{final_batch}, $_->{workers}, f1($_->{started_s}), f1($_->{finished_s})) } @{ $r->{slice_detail} }) || 'none',
			join(', ', map { "$_ × $lw->{$_}" } sort { $lw->{$b} <=> $lw->{$a} || $a cmp $b } keys %$lw) || 'none');
	}
	if (my @hand = grep { $_->{by_hand} } @runs)
	{
		$md .= "\n### The parts of the by-hand runs\n\n";
		$md .= "Per part (a run of a job, or a statement): rows, chunks (of which made someone wait), seconds from the earlier part's "
		  . "start to the part's start and end. Then the sessions seen waiting for a lock meanwhile (as above).\n\n";
		for my $r (@hand)
		{
			my $lw = $r->{lock_waits_sampled};
			$md .= sprintf("- %s %s rep %d (%s): %s; lock waits seen: %s\n", $r->{workload}, $r->{variant}, $r->{rep}, run_label($r),
				join('; ', map { sprintf('%s: %s rows%s %s-%s s', defined $_->{run_id} ? "run $_->{run_id} ($_->{job})" : "`$_->{what}`",
					$_->{rows} // 'n/a', defined $_->{chunks} ? " $_->{chunks} chunks ($_->{lock_waiters_seen})" : '',
					f1($_->{started_s}), f1($_->{finished_s})) } @{ $r->{parts} }),
				join(', ', map { "$_ × $lw->{$_}" } sort { $lw->{$b} <=> $lw->{$a} || $a cmp $b } keys %$lw) || 'none');
		}
	}
	$md .= "\n### Verification after each run\n\n";
	$md .= "- $_->{workload} $_->{variant} rep $_->{rep} (" . run_label($_) . "): $_->{verify}\n" for @runs;
	$md .= "\n## Method\n\n";
	$md .= "- A throwaway cluster (`PostgreSQL::Test::Cluster`; $results{run}{postgres_version}); settings: "
	  . join(', ', map { "`$_`" } @{ $results{run}{server_conf} }) . ". The benchmark's tables have `autovacuum_enabled = false` "
	  . "(the resets vacuum them).\n";
	$md .= "- One role `par` owns the tables and the jobs. Each run: `CALL chunkbatch.run_and_wait(job, '{}', NULL, parallel)` in its own psql "
	  . "(no snapshot held); run time = `finished_at - started_at` of `chunkbatch.runs` (the split into slices and the helpers' start are inside it), "
	  . "wall = the CALL. Parallel 1 is a plain run (no slices). A monitor session counts the run's worker processes "
	  . "(`application_name` 'chunkbatch run N: ...' and 'chunkbatch run N slices: ...') every " . ($POLL * 1000) . " ms.\n";
	if ($BY_HAND && ($DO{migration} || $DO{flip}))
	{
		$md .= "- By hand (`PAR_BY_HAND=0` leaves them out): "
		  . join('; ', ($DO{migration} ? ("migration: the two range jobs `par_mig_h1` and `par_mig_h2` (parallel 1) queued in one transaction "
				. "(`SELECT chunkbatch.run('par_mig_h1', params), chunkbatch.run('par_mig_h2', params)`), then polled by the monitor session "
				. "until both are over; run time = the earlier `started_at` to the later `finished_at`, wall = from the queueing to the poll "
				. "that saw both over") : ()),
			($DO{flip} ? ("flip: one psql per statement (`application_name` par_hand; `SET synchronous_commit = off`, "
				. "`SELECT clock_timestamp()`, the `UPDATE` (autocommit), `SELECT clock_timestamp()`), all forked together; run time = the "
				. "earlier first timestamp to the later second one, wall = from the forks to the later exit; the monitor counts the "
				. "sessions running a statement") : ()))
		  . ". They are variants of their workload: the same repetitions, rotation, resets, application and checks (exactly once).\n";
	}
	$md .= "- Order: every repetition runs " . join(', then ', @WORKLOADS) . ", each workload's variants back to back in an order "
	  . "rotated by one per repetition (" . join('; ', map { my $w = $_; "$w: " . join(' ', map { $_->[0] } @{ $VARIANTS{$w} }) }
			grep { $_ ne 'skew' } @WORKLOADS) . " first, then starting with the next, ...; skewed and balanced alternate; "
	  . "the variants as named in the table below).\n";
	$md .= "- Before every run, outside the timed window: no chunkbatch run worker left; migration: `TRUNCATE` of the 6 destination tables "
	  . "(the indexes stay), `VACUUM ANALYZE`, `CHECKPOINT`; flips: `UPDATE` of the target rows back to their status with `retries = 0`, "
	  . "`VACUUM (ANALYZE)`, `CHECKPOINT`. Each flip table went through one unmeasured flip and reset after it was filled, so that every "
	  . "measured run starts from a table in the same state.\n";
	$md .= "- Migration: `staging` ($ITEMS items, 18 columns) → " . join(', ', map { "`$_`" } @DEST)
	  . " (primary keys and 19 non-unique secondary indexes); `create_job('par_mig', <statement below>, batch_size => $MIG_BATCH, "
	  . "range_table => 'staging', range_key => 'id', cursor_type => 'bigint')`. `meta.writes` counts the writes of an item: after a run every "
	  . "item must be in every table and have `writes = 1`.\n";
	if ($DO{flip} || $DO{skew})
	{
		$md .= "- Flips: `chunkbatch.create_update(job, table, \$\$$SET_SQL\$\$, \$\$$WHERE_SQL\$\$, batch_size => $FLIP_BATCH"
		  . ($FLIP_TARGET_MS ne '' ? ", target_chunk_ms => $FLIP_TARGET_MS" : '') . ")` on tables of $ROWS rows with the columns and indexes "
		  . "of the main benchmark's `events` (primary key, `created_at`, `status`). Matching rows: `events` "
		  . "`$FLIP_TABLE{events}{target}` (INIT or FAIL; half the rows)"
		  . ($DO{skew} ? "; `events_skew` `$FLIP_TABLE{events_skew}{target}`; `events_bal` `$FLIP_TABLE{events_bal}{target}` "
			  . "(as many rows as `events_skew`, evenly spread); the skew jobs have `parallel => $SKEW_P`" : '')
		  . ". After a run every matching row must be COMPLETE with `retries = 1`, every other row unchanged (`retries = 0`).\n";
	}
	$md .= "- After a parallel run its slices must all be done and their `rows_done` add up to the run's. Stolen slices: slices numbered "
	  . "from `parallel` on (a worker without a slice took over half the rest of another's).\n";
	$md .= "- A chunk that made another session wait for its locks (`lock_waiters_seen`) halves its worker's next chunk. The migration and "
	  . "skew runs have no application, so there that session is another worker of the same run (a thief lowering the end of the slice).\n";
	$md .= "- Medians of the repetitions; a ratio is the median of the per-repetition ratios (the ratio of the median times is in the results file).\n";
	$md .= "\n## Environment\n\n";
	$md .= "- $m->{cpus} cores ($m->{cpu_model}), $m->{memory_gib} GiB, kernel $m->{kernel}.\n";
	$md .= "- chunkbatch: $results{run}{chunkbatch}.\n";
	$md .= "- Load average at the start: $results{run}{load_start}; at the end: $results{run}{load_end}. Other work on the machine (pgrep) "
	  . "at the start: $results{run}{other_work_at_start}; at the end: $results{run}{other_work_at_end}.\n";
	$md .= "\n## The statements\n\n";
	my %shown;    # statement -> the job it was shown with
	for my $j (sort keys %{ $results{run}{jobs} })
	{
		my $jj = $results{run}{jobs}{$j};
		$md .= "`$j` (range_table `$jj->{range_table}`, key `$jj->{range_key}`" . (defined $jj->{range_filter} ? ", filter `$jj->{range_filter}`" : '') . ")"
		  . ($shown{ $jj->{chunk_sql} } ? ": the statement of `$shown{ $jj->{chunk_sql} }`.\n\n" : ":\n\n```sql\n$jj->{chunk_sql}\n```\n\n");
		$shown{ $jj->{chunk_sql} } //= $j;
	}
	if (my $h = $results{run}{by_hand}{flip})
	{
		$md .= "The flip by hand (each in its own psql after `SET synchronous_commit = off`), with its plan (`EXPLAIN (COSTS OFF)` after a reset):\n\n";
		for my $v (sort keys %{ $HAND_LABEL{flip} })
		{
			$md .= "- $HAND_LABEL{flip}{$v}:\n\n" . join('', map { "  ```sql\n  $_->{statement};\n  ```\n\n  ```\n"
				  . join('', map { "  $_\n" } split /\n/, $_->{plan}) . "  ```\n\n" } @{ $h->{$v} });
		}
	}
	$md .= "The application's transaction (pgbench):\n\n```\n$OLTP```\n" if $DO{flip} && $RATE > 0;
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
sub other_work
{
	# what else runs on the machine: the other benchmarks, the test suite
	my @found;
	for my $p ([ 'bench.pl', 'bench/bench[.]pl' ], [ 'migration.pl', 'bench/migration[.]pl' ],
		[ 'scripts/test.sh', 'scripts/test[.]sh' ], [ 'TAP tests (prove)', 'bin/prove ' ])
	{
		open my $fh, '-|', 'pgrep', '-f', $p->[1] or next;
		my $out = do { local $/; <$fh> } // '';
		close $fh;
		push @found, $p->[0] if $out =~ /\d/;
	}
	# PostgreSQL servers besides this benchmark's (their postmasters)
	my $ours = $node ? $node->data_dir : undef;
	if (open my $fh, '-|', 'pgrep', '-a', '-f', '^/usr/lib/postgresql/[0-9]+/bin/postgres ')
	{
		my @pm = grep { /\d/ && !(defined $ours && index($_, $ours) >= 0) } <$fh>;
		close $fh;
		push @found, @pm . ' other PostgreSQL server(s)' if @pm;
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
