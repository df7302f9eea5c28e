#!/usr/bin/perl
# bench/bench.pl: chunkbatch against the alternatives, on a throwaway cluster.
#
# Measures every method of bench/methods.tsv on the workloads of
# bench/sql/workloads.sql while pgbench runs an OLTP load, then run() ->
# first committed chunk and the worker-memory probe, and writes one JSON
# results file (one line per measurement).  bench/report.pl turns that file
# into RESULTS.md.  bench/run.sh builds and installs chunkbatch, runs this
# script as the postgres OS user and then the report; see bench/README.md.
#
#   perl bench/bench.pl [--smoke] --out FILE.json [--git DESC] [--command TEXT]
#
# Needs PostgreSQL::Test::Cluster in PERL5LIB, PG_REGRESS, the PostgreSQL 15
# binaries first in PATH and TESTDIR (where tmp_check/ with the cluster and
# its logs goes).  Settings come from BENCH_* environment variables (see
# bench/README.md); --smoke changes their defaults to a run of a few minutes.
#
# All SQL is in bench/sql/; values reach it only as psql variables (-v) and
# pgbench variables (-D).
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

my $BENCH = $FindBin::RealBin;
my $SQL = "$BENCH/sql";

my %opt = (git => 'unknown', command => 'perl bench/bench.pl');    # --git: which chunkbatch
GetOptions(\%opt, 'smoke', 'out=s', 'git=s', 'command=s')
  && defined $opt{out} && !@ARGV
  or die "usage: bench.pl [--smoke] --out FILE.json [--git DESC] [--command TEXT]\n";
my $smoke = $opt{smoke};

# --- settings ----------------------------------------------------------------
sub setting { my ($name, $full, $smoke_default) = @_;
	my $v = $ENV{"BENCH_$name"};
	return defined $v && $v ne '' ? $v : $smoke ? $smoke_default : $full;
}
my @SIZES = split ' ', setting('SIZES', '1000000', '20000');
my $REPS = setting('REPS', 3, 1);
my @WORKLOADS = split ' ', setting('WORKLOADS', 'purge flip', 'purge flip');
my $LARGE_REPS = setting('LARGE_REPS', $REPS, $REPS);
my @LARGE_WORKLOADS = split ' ', setting('LARGE_WORKLOADS', "@WORKLOADS", "@WORKLOADS");
my $RATE = setting('OLTP_RATE', 200, 200);
my $CLIENTS = 4;
my $BASELINE_SECS = setting('BASELINE_SECS', 10, 2);
my $CLIENT_LOOP_ROWS = setting('CLIENT_LOOP_ROWS', 50000, 3000);
my $FC_RUNS = setting('FIRST_CHUNK_RUNS', 20, 3);
my $FC_GAP = 0.2;
my @PROBE_ROWS = split ' ', setting('PROBE_ROWS', '1000000 10000000', '10000 100000');
my $SETTLE = $smoke ? 0.3 : 1;

# methods.tsv: id, kind, batch, label
my (@METHOD_LIST, %METHOD);
open my $mfh, '<', "$BENCH/methods.tsv" or die "$BENCH/methods.tsv: $!";
while (<$mfh>)
{
	chomp;
	next if /^#/ || /^\s*$/ || /^id\t/;
	my ($id, $kind, $batch, $label) = split /\t/;
	$batch = undef if $batch eq '-';
	push @METHOD_LIST, $METHOD{$id} = { id => $id, kind => $kind, batch => $batch, label => $label };
}
close $mfh;
my @ALL = map { $_->{id} } grep { $_->{kind} ne 'baseline' } @METHOD_LIST;
my $methods = setting('METHODS', 'all', 'all');
my @METHODS = $methods eq 'all' ? @ALL : split ' ', $methods;
my @LARGE_METHODS = split ' ', setting('LARGE_METHODS', 'cb_keyset_1000', 'cb_keyset_1000');
for my $m (@METHODS, @LARGE_METHODS)
{
	die "unknown method $m (see bench/methods.tsv)\n" unless $METHOD{$m};
}
for my $w (@WORKLOADS, @LARGE_WORKLOADS)
{
	die "unknown workload $w\n" unless $w =~ /^(purge|flip)$/;
}
die "BENCH_SIZES: whole numbers divisible by 4, please\n" if grep { !/^\d+$/ || $_ % 4 } @SIZES;

# Server settings on top of initdb's.  The second group undoes what
# PostgreSQL::Test::Cluster sets for tests (fsync off, wal_level minimal, no
# WAL senders, every statement logged), so that the server runs like the
# one the recorded results were measured on.
my $CONF = <<'EOF';
shared_preload_libraries = 'chunkbatch'
chunkbatch.naptime = 1
# 1.1 defaults to 0 (the scheduler exits when idle); the run() -> first
# chunk measurement wants it running between its runs, as before.
chunkbatch.scheduler_idle_exit = 30
max_worker_processes = 16
shared_buffers = 1GB
max_wal_size = 4GB
autovacuum = on
track_commit_timestamp = on
log_line_prefix = '%m [%p] %q%a: '

fsync = on
wal_level = replica
max_wal_senders = 10
log_statement = none
EOF

# --- output --------------------------------------------------------------------
# PostgreSQL::Test::Utils sends STDOUT and STDERR to its log file and tees
# Test::More's output to the terminal.  Test::More's notes (one per query
# of a background psql) go to the log only; progress lines go to both.
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
	my $line = sprintf "[bench %s] %s\n", strftime('%H:%M:%S', localtime), join('', @_);
	print $TTY $line;
	print $LOG $line if $LOG;
}

my $t_start = time;
my %results = (
	format => 'chunkbatch-bench 1',
	run => {
		source => 'bench/bench.pl',
		command => $opt{command} . ($smoke && $opt{command} !~ /--smoke/ ? ' --smoke' : ''),
		started_at => strftime('%Y-%m-%d %H:%M UTC', gmtime $t_start),
		complete => JSON::PP::false,
		chunkbatch => $opt{git},
		environment => join(' ', map { "$_=$ENV{$_}" } sort grep { /^BENCH_/ } keys %ENV),
		machine => machine(),
		load_start => loadavg(),
		config => {
			sizes => [ map { 0 + $_ } @SIZES ],
			reps => 0 + $REPS,
			workloads => \@WORKLOADS,
			methods => \@METHODS,
			large_methods => \@LARGE_METHODS,
			large_reps => 0 + $LARGE_REPS,
			large_workloads => \@LARGE_WORKLOADS,
			oltp_clients => $CLIENTS,
			oltp_rate => 0 + $RATE,
			baseline_secs => 0 + $BASELINE_SECS,
			client_loop_rows => 0 + $CLIENT_LOOP_ROWS,
			client_loop_params => 'bound as the parameters of a prepared statement (PREPARE and EXECUTE sent in one message)',
			first_chunk_runs => 0 + $FC_RUNS,
			first_chunk_gap_s => $FC_GAP,
			probe_rows => [ map { 0 + $_ } @PROBE_ROWS ],
			settle_s => $SETTLE,
		},
		notes => [],
	},
	methods => [ map { { id => $_->{id}, kind => $_->{kind}, label => $_->{label} } } @METHOD_LIST ],
	measurements => [],
	first_chunk => [],
	probe => [],
);

# --- the cluster ---------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('bench');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', "\n# chunkbatch bench\n$CONF");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE bench');
say_progress('server running: psql -h ', $node->host, ' -p ', $node->port, ' bench');

my $WORK = PostgreSQL::Test::Utils::tempdir('bench');
my @PSQL = ('psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', $node->host, '-p', $node->port, '-d', 'bench');

# Every psql is a plain fork and exec, like a shell's $(psql ...): the client
# loop starts one per chunk, so what starting one costs matters.
# psql_start(ROLE, FILE, VARIABLE => VALUE ...) starts bench/sql/FILE with
# those psql variables; psql_finish waits for it and returns its output rows
# (fields split on |).
my $n_started = 0;
sub psql_start
{
	my ($role, $file, %var) = @_;
	return spawn_psql("-f $file", '-U', $role, (map { ('-v', "$_=$var{$_}") } sort keys %var), '-f', "$SQL/$file");
}

sub spawn_psql
{
	my ($what, @args) = @_;
	my $err = "$WORK/psql." . ++$n_started . '.err';
	my $pid = open(my $fh, '-|') // die "fork: $!";
	if (!$pid)
	{
		open STDIN, '<', '/dev/null';
		open STDERR, '>', $err;
		exec @PSQL, @args or POSIX::_exit(127);
	}
	return { fh => $fh, err => $err, what => $what };
}

sub psql_finish
{
	my ($h) = @_;
	my $out = do { local $/; readline $h->{fh} } // '';
	close $h->{fh};
	my $rc = $?;
	my $err = do { local $/; open my $fh, '<', $h->{err}; $fh ? <$fh> : '' } // '';
	unlink $h->{err};
	die "psql $h->{what} failed (status $rc): $err" if $rc;
	return [ map { [ split /\|/, $_, -1 ] } grep { $_ ne '' } split /\n/, $out ];
}

# psql(ROLE, FILE, VARIABLE => VALUE ...): run bench/sql/FILE, return its rows
sub psql { return psql_finish(psql_start(@_)) }

# psql_const(ROLE, SQL): a fixed statement (no values in it), psql -c
sub psql_const { my ($role, $sql) = @_; return psql_finish(spawn_psql("-c '$sql'", '-U', $role, '-c', $sql)) }

psql('postgres', 'setup_superuser.sql');
psql('bench_app', 'setup.sql');
my %chunk_sql;
# (describe*.sql write a newline in a text as \\n)
sub describe { $chunk_sql{ $_->[0] }{ $_->[1] } = $_->[2] =~ s/\\n/\n/gr for @{ psql('bench_app', $_[0]) } }
describe('describe.sql');
$results{chunk_sql} = \%chunk_sql;

# The memory sampler's own session (superuser: it sees every run).
my $watch = $node->background_psql('bench');
$watch->set_query_timer_restart;

# --- OLTP load ---------------------------------------------------------------
my $pgbench_pid;

sub pgbench_start
{
	my ($w, $size, $tag) = @_;
	psql_const('bench_app', 'UPDATE bench_stop SET stop = false');
	my @cmd = ('pgbench', '-n', '-h', $node->host, '-p', $node->port, '-U', 'bench_app',
		'-c', $CLIENTS, '-j', 1, '-R', $RATE, '-T', 3600, '-f', "$SQL/measure/oltp_$w.pgbench",
		'-D', "n=$size", '-D', 'half=' . int($size / 2), '-D', 'quarter=' . int($size / 4),
		'-l', "--log-prefix=$WORK/$tag", 'bench');
	$pgbench_pid = fork // die "fork: $!";
	if (!$pgbench_pid)
	{
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', "$WORK/$tag.out";
		open STDERR, '>&', \*STDOUT;
		exec @cmd or POSIX::_exit(127);
	}
	sleep $SETTLE;
}

# pgbench_stop(TAG, T0, T1): stop the clients; latency figures of the
# transactions whose scheduled start falls in [T0, T1]
sub pgbench_stop
{
	my ($tag, $t0, $t1) = @_;
	sleep $SETTLE;
	psql_const('bench_app', 'UPDATE bench_stop SET stop = true');
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
	# client_id transaction_no time script_no time_epoch time_us [schedule_lag];
	# with -R, time counts from the scheduled start
	my @lat;
	for my $file (glob "$WORK/$tag.[0-9]*")
	{
		open my $fh, '<', $file or die "$file: $!";
		while (my $line = <$fh>)
		{
			my @f = split ' ', $line;
			next unless @f >= 6 && $f[2] =~ /^\d+$/;
			my $start = sprintf('%d.%06d', $f[4], $f[5]) - $f[2] / 1e6;
			push @lat, $f[2] if $start >= $t0 && $start <= $t1;
		}
		close $fh;
		unlink $file;
	}
	@lat = sort { $a <=> $b } @lat;
	return {
		oltp_n => scalar @lat,
		oltp_p50_ms => percentile(\@lat, 0.5),
		oltp_p99_ms => percentile(\@lat, 0.99),
		oltp_max_ms => @lat ? $lat[-1] / 1000 : undef,
	};
}

# percentile_cont over sorted microseconds, in ms
sub percentile
{
	my ($v, $p) = @_;
	return undef unless @$v;
	my $pos = $p * (@$v - 1);
	my $lo = int $pos;
	my $hi = $lo == $pos ? $lo : $lo + 1;
	return ($v->[$lo] + ($pos - $lo) * ($v->[$hi] - $v->[$lo])) / 1000;
}

# --- chunkbatch runs, with the worker's memory sampled ------------------------
# Once the run's worker is known, /proc/<pid>/status is read every 0.1 s
# until the process exits: peak VmHWM and peak RssAnon, in kB.
sub sample_worker
{
	my $pid = '';
	for (1 .. 200)
	{
		$pid = $watch->query_safe(
			q{SELECT coalesce((SELECT worker_pid FROM chunkbatch.runs WHERE run_id > :prev AND worker_pid IS NOT NULL LIMIT 1),
			                  (SELECT -1 FROM chunkbatch.runs WHERE run_id > :prev AND finished_at IS NOT NULL LIMIT 1))});
		last if $pid ne '';
		sleep 0.02;
	}
	my ($hwm, $anon) = (0, 0);
	if ($pid =~ /^\d+$/)
	{
		while (open my $fh, '<', "/proc/$pid/status")
		{
			while (my $line = <$fh>)
			{
				$hwm = $1 if $line =~ /^VmHWM:\s+(\d+)/ && $1 > $hwm;
				$anon = $1 if $line =~ /^RssAnon:\s+(\d+)/ && $1 > $anon;
			}
			close $fh;
			sleep 0.1;
		}
	}
	return ($hwm ? 0 + $hwm : undef, $anon ? 0 + $anon : undef);
}

# cb_run(MODE (call|wait), JOB, PARAMS_JSON): run a job to its end in one
# session (sql/measure/cb_MODE.sql) and return its figures
sub cb_run
{
	my ($mode, $job, $params) = @_;
	$watch->query_safe('SELECT coalesce(max(run_id), 0) AS prev FROM chunkbatch.runs \gset');
	my $h = psql_start('bench_app', "measure/cb_$mode.sql", job => $job, params => $params);
	my ($hwm, $anon) = sample_worker();
	my ($state, $rows, $secs, $exec, $t0, $t1, $chunks, $avg, $max, $batch, $run_id) = @{ psql_finish($h)->[0] };
	die "run $run_id of $job ended $state\n" unless $state eq 'succeeded';
	return {
		rows => $rows, secs => $secs, exec_secs => $exec, t0 => $t0, t1 => $t1, chunks => $chunks,
		avg_chunk_ms => $avg, max_chunk_ms => $max, final_batch => $batch,
		vmhwm_kb => $hwm, rssanon_kb => $anon, run_id => $run_id,
	};
}

# --- one measurement per method kind ------------------------------------------
my %RUN = (
	baseline => sub {
		my $t0 = time;
		sleep $BASELINE_SECS;
		my $t1 = time;
		return { rows => 0, secs => $t1 - $t0, t0 => $t0, t1 => $t1 };
	},
	stmt => sub {
		my ($w) = @_;
		my ($rows, $secs, $t0, $t1) = @{ psql('bench_app', 'measure/stmt.sql', w => $w)->[0] };
		return { rows => $rows, secs => $secs, exec_secs => $secs, t0 => $t0, t1 => $t1, chunks => 1 };
	},
	plpgsql => sub {
		my ($w, $m) = @_;
		my ($rows, $secs, $t0, $t1, $chunks) =
		  @{ psql('bench_app', 'measure/plpgsql.sql', w => $w, batch => $m->{batch})->[0] };
		return { rows => $rows, secs => $secs, exec_secs => $secs, t0 => $t0, t1 => $t1,
			chunks => $chunks, final_batch => $m->{batch} };
	},
	# one psql process (one connection) per chunk; stops after
	# CLIENT_LOOP_ROWS rows (its rate is then extrapolated)
	client => sub {
		my ($w, $m) = @_;
		my ($ks, $ct) = @{ psql('bench_app', 'measure/chunk_sql.sql', w => $w)->[0] };
		my ($rows, $chunks, $last, $extrapolated) = (0, 0, '', 0);
		my $t0 = time;
		while (1)
		{
			if ($rows >= $CLIENT_LOOP_ROWS) { $extrapolated = 1; last }
			my ($n, $k) = @{ psql('bench_app', 'measure/client_chunk.sql',
				ks => $ks, ct => $ct, batch => $m->{batch}, last => $last)->[0] };
			last if $n == 0;
			$rows += $n;
			$chunks++;
			$last = $k;
		}
		my $t1 = time;
		return { rows => $rows, secs => $t1 - $t0, exec_secs => $t1 - $t0, t0 => $t0, t1 => $t1,
			chunks => $chunks, final_batch => $m->{batch}, extrapolated => $extrapolated };
	},
	plpgsql_static => sub {
		my ($w, $m) = @_;
		my ($rows, $secs, $t0, $t1, $chunks) =
		  @{ psql('bench_app', 'measure/plpgsql_static.sql', w => $w, batch => $m->{batch})->[0] };
		return { rows => $rows, secs => $secs, exec_secs => $secs, t0 => $t0, t1 => $t1,
			chunks => $chunks, final_batch => $m->{batch} };
	},
	cb_call => sub { my ($w, $m) = @_; return cb_run('call', 'b_' . $w . substr($m->{id}, 2), '{}') },
	cb_wait => sub { my ($w, $m) = @_; return cb_run('wait', 'b_' . $w . substr($m->{id}, 2), '{}') },
);

my @MEASUREMENT_FIELDS = qw(size workload method rep rows secs exec_secs rows_per_s exec_rows_per_s
  chunks avg_chunk_ms max_chunk_ms final_batch vmhwm_kb rssanon_kb extrapolated check
  oltp_n oltp_p50_ms oltp_p99_ms oltp_max_ms t0 t1 run_id);
# key order in the results file's lines (measurements, probe runs, first-chunk samples, methods)
my @KEY_ORDER = (qw(id kind label i ms mode), @MEASUREMENT_FIELDS);

sub measure
{
	my ($size, $w, $m, $rep) = @_;
	my $tag = "${size}_${w}_$m->{id}_$rep";
	psql('bench_app', 'reset.sql');
	pgbench_start($w, $size, $tag);
	my $r = $RUN{ $m->{kind} }->($w, $m);
	my $oltp = pgbench_stop($tag, $r->{t0}, $r->{t1});
	my ($left) = @{ psql('bench_app', 'measure/remaining.sql', w => $w)->[0] };
	my $check =
	    $m->{kind} eq 'baseline' ? 'baseline'
	  : $r->{extrapolated} ? "partial: $r->{rows} done, $left left (rate extrapolated)"
	  : $left == 0 && $r->{rows} == $size / 2 ? 'ok'
	  : "CHECK FAILED: $r->{rows} rows reported, $left target rows left";
	ok($check !~ /^CHECK FAILED/, "$tag: $check");
	my %row = (%$r, %$oltp, size => $size, workload => $w, method => $m->{id}, rep => $rep, check => $check);
	$row{$_} = defined $row{$_} && $row{$_} ne '' ? 0 + $row{$_} : undef
	  for grep { !/^(workload|method|check)$/ } @MEASUREMENT_FIELDS;
	$row{extrapolated} = $r->{extrapolated} ? JSON::PP::true : JSON::PP::false;
	if ($m->{kind} ne 'baseline')
	{
		$row{rows_per_s} = $row{rows} / $row{secs};
		$row{exec_rows_per_s} = $row{rows} / $row{exec_secs} if $row{exec_secs};
	}
	push @{ $results{measurements} }, \%row;
	write_results();
	say_progress(sprintf('%-8s %-5s %-20s rep %d: %8s rows in %7.2f s  %s',
		$size, $w, $m->{id}, $rep, $row{rows}, $row{secs}, $check));
}

END
{
	kill 'TERM', $pgbench_pid if $pgbench_pid;
}

# --- the run -------------------------------------------------------------------
for my $i (0 .. $#SIZES)
{
	my $size = $SIZES[$i];
	my ($ml, $reps, $wl) = $i == 0
	  ? ([ 'none', @METHODS ], $REPS, \@WORKLOADS)
	  : (\@LARGE_METHODS, $LARGE_REPS, \@LARGE_WORKLOADS);
	say_progress("size $size: building the template table");
	psql('bench_app', 'size.sql', n => $size);
	psql('bench_app', 'reset.sql');
	psql('bench_app', 'jobs.sql');
	describe('describe_jobs.sql') if $i == 0;    # the declarative jobs' statements
	for my $rep (1 .. $reps)
	{
		for my $w (@$wl)
		{
			for my $m (@$ml) { measure($size, $w, $METHOD{$m}, $rep) }
		}
	}
}
psql_const('bench_app', 'DROP TABLE IF EXISTS events; DROP TABLE IF EXISTS events_tpl; CHECKPOINT');

say_progress("run() -> first committed chunk, $FC_RUNS runs");
for my $i (1 .. $FC_RUNS)
{
	my ($state, $ms) = @{ psql('bench_app', 'measure/first_chunk.sql', i => $i)->[0] };
	die "first-chunk run $i ended $state\n" unless $state eq 'succeeded';
	push @{ $results{first_chunk} }, { i => $i, ms => 0 + $ms };
	sleep $FC_GAP;
}

say_progress("worker memory probe: @PROBE_ROWS rows");
for my $rep (1 .. $REPS)
{
	for my $n (@PROBE_ROWS)
	{
		for my $mode (qw(call wait))
		{
			my $r = cb_run($mode, 'b_probe', JSON::PP->new->canonical->encode({ n => 0 + $n }));
			push @{ $results{probe} }, {
				rows => 0 + $r->{rows}, mode => $mode, rep => $rep, chunks => 0 + $r->{chunks},
				avg_chunk_ms => 0 + $r->{avg_chunk_ms}, secs => 0 + $r->{exec_secs},
				vmhwm_kb => $r->{vmhwm_kb}, rssanon_kb => $r->{rssanon_kb} };
			say_progress(sprintf('probe %s rows (%s): %d chunks in %.2f s, avg statement %.3f ms, VmHWM %s kB, RssAnon %s kB',
				$n, $mode, $r->{chunks}, $r->{exec_secs}, $r->{avg_chunk_ms},
				$r->{vmhwm_kb} // 'NULL', $r->{rssanon_kb} // 'NULL'));
		}
	}
}

$results{run}{load_end} = loadavg();
$results{run}{postgres_version} = psql_const('bench_app', 'SELECT version()')->[0][0];
$results{run}{settings} = [ map { $_->[0] } @{ psql('bench_app', 'settings.sql') } ];
$results{run}{elapsed_s} = int(time - $t_start + 0.5);
$results{run}{complete} = JSON::PP::true;
write_results();
$watch->quit;
say_progress("wrote $opt{out}");
done_testing();

# --- helpers -------------------------------------------------------------------
sub loadavg
{
	open my $fh, '<', '/proc/loadavg' or return undef;
	my @f = split ' ', scalar <$fh>;
	return "@f[0..2]";
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

# The results file: the run's description, then one line per measurement.
sub write_results
{
	my %order;
	@order{@KEY_ORDER} = (1 .. @KEY_ORDER);
	my $line = JSON::PP->new->sort_by(sub { ($order{$JSON::PP::a} // 99) <=> ($order{$JSON::PP::b} // 99)
			  || $JSON::PP::a cmp $JSON::PP::b });
	my $pretty = JSON::PP->new->canonical->pretty->space_before(0)->indent_length(2);
	my @parts;
	for my $key (qw(format run methods chunk_sql measurements first_chunk probe))
	{
		my $v = $results{$key};
		my $text = ref $v eq 'ARRAY'
		  ? "[\n" . join(",\n", map { '    ' . $line->encode($_) } @$v) . "\n  ]"
		  : $pretty->allow_nonref->encode($v);
		$text =~ s/\n(?=.)/\n  /g unless ref $v eq 'ARRAY';
		$text =~ s/\s+$//;
		$text =~ s/\[\n\n  \]/[]/;
		push @parts, qq{  "$key": $text};
	}
	open my $fh, '>', "$opt{out}.tmp" or die "$opt{out}.tmp: $!";
	print $fh "{\n", join(",\n", @parts), "\n}\n";
	close $fh or die "$opt{out}.tmp: $!";
	rename "$opt{out}.tmp", $opt{out} or die "rename $opt{out}: $!";
}
