#!/usr/bin/perl
# bench/report.pl: RESULTS.md from one results file of bench/bench.pl.
#
#   perl bench/report.pl [--out FILE.md] [--parallel PARALLEL.json] [RESULTS.json]
#
# Default input: the newest bench/results/2*.json (not migration-*.json, the
# migration benchmark's, nor parallel-*.json); default output:
# bench/RESULTS.md.  Every figure is computed here from the per-measurement
# lines of the results file (medians over repetitions, ratios, OLTP latency
# against the no-batch window); the targets judged come from
# bench/targets.tsv.  Its section "Parallel slices" shows the summary of
# the newest bench/results/parallel-*.json (bench/parallel.pl's; --parallel
# names another): medians, ratios and targets as that file records them,
# nothing recomputed.  Needs nothing but Perl.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use FindBin;
use Getopt::Long;
use JSON::PP;
use List::Util qw(max min sum);

my $BENCH = $FindBin::RealBin;
my $out_file = "$BENCH/RESULTS.md";
my $par_file;
GetOptions('out=s' => \$out_file, 'parallel=s' => \$par_file) && @ARGV <= 1
  or die "usage: report.pl [--out FILE.md] [--parallel PARALLEL.json] [RESULTS.json]\n";
$par_file //= (sort glob "$BENCH/results/parallel-*.json")[-1];
my $in_file = $ARGV[0] // (sort glob "$BENCH/results/2*.json")[-1]
  // die "no results file in $BENCH/results\n";
my $R = do { local $/; open my $fh, "<", $in_file or die "$in_file: $!\n"; JSON::PP->new->decode(<$fh>) };    # bytes in, bytes out
my $run = $R->{run};
my $cfg = $run->{config};

# --- formatting and statistics ---------------------------------------------------
# f(X, D): X rounded half away from zero to D decimals (on its 15 significant
# digits, as PostgreSQL rounds a float8 cast to numeric), thousands separated;
# '—' when there is no figure.
sub f
{
	my ($x, $d) = @_;
	return '—' unless defined $x;
	my $s = sprintf('%.15g', $x);
	$s = sprintf('%.15f', $x) if $s =~ /e/;
	my $neg = $s =~ s/^-//;
	my ($int, $frac) = split /\./, $s;
	$frac = ($frac // '') . '0' x ($d + 1);
	my @dg = split //, $int . substr($frac, 0, $d);
	if (substr($frac, $d, 1) >= 5)    # carry the 1
	{
		my $i = $#dg;
		$dg[ $i-- ] = 0 while $i >= 0 && $dg[$i] == 9;
		$i >= 0 ? $dg[$i]++ : unshift @dg, 1;
	}
	my $ip = join '', @dg[ 0 .. $#dg - $d ];
	my $fp = join '', @dg[ $#dg - $d + 1 .. $#dg ];
	1 while $ip =~ s/^(\d+)(\d{3})/$1,$2/;
	$neg = 0 unless "$ip$fp" =~ /[1-9]/;
	return ($neg ? '-' : '') . $ip . ($d > 0 ? ".$fp" : '');
}

# pct(P, VALUES...): percentile_cont(P) of the defined values
sub pct
{
	my ($p, @v) = @_;
	@v = sort { $a <=> $b } grep { defined } @v;
	return undef unless @v;
	my $pos = $p * (@v - 1);
	my $lo = int $pos;
	my $hi = $lo == $pos ? $lo : $lo + 1;
	return $v[$lo] + ($pos - $lo) * ($v[$hi] - $v[$lo]);
}
sub med { return pct(0.5, @_) }
sub maxdef { my @v = grep { defined } @_; return @v ? max(@v) : undef }
sub ratio { my ($a, $b) = @_; return defined $a && $b ? $a / $b : undef }

# --- aggregates ------------------------------------------------------------------
my @methods = @{ $R->{methods} };
my %label = map { $_->{id} => $_->{label} } @methods;
my %kind = map { $_->{id} => $_->{kind} } @methods;
my %mpos = map { $methods[$_]{id} => $_ } 0 .. $#methods;
my @order = map { $_->{id} } @methods;
my @workloads = @{ $cfg->{workloads} };
push @workloads, grep { my $w = $_; !grep { $_ eq $w } @workloads } @{ $cfg->{large_workloads} // [] };
my %wpos = map { $workloads[$_] => $_ } 0 .. $#workloads;
my $first = $cfg->{sizes}[0];
my $is_cb = sub { ($kind{ $_[0] } // '') =~ /^cb_/ };

my @ms = @{ $R->{measurements} };
for my $m (@ms)
{
	next if $m->{method} eq 'none';
	$m->{rows_per_s} //= $m->{rows} / $m->{secs};
	$m->{exec_rows_per_s} //= $m->{rows} / $m->{exec_secs} if $m->{exec_secs};
}
my %group;
push @{ $group{"$_->{size}|$_->{workload}|$_->{method}"} }, $_ for @ms;
my @sizes = sort { $a <=> $b } keys %{ { map { $_->{size} => 1 } @ms } };

my (%s, %l);    # throughput, OLTP latency: size|workload|method -> figures
sub S { return $s{"$_[0]|$_[1]|$_[2]"} }
sub L { return $l{"$_[0]|$_[1]|$_[2]"} }
for my $key (keys %group)
{
	my @g = sort { $a->{rep} <=> $b->{rep} } @{ $group{$key} };
	my $c = sub { my $k = shift; map { $_->{$k} } @g };
	if ($g[0]{method} ne 'none')
	{
		$s{$key} = {
			reps => scalar @g,
			rps => med($c->('rows_per_s')),
			exec_rps => med($c->('exec_rows_per_s')),
			rps_each => join(' / ', map { f($_, 0) } $c->('rows_per_s')),
			chunks => med($c->('chunks')),
			avg_ms => med($c->('avg_chunk_ms')),
			max_ms => med($c->('max_chunk_ms')),
			final_batch => med($c->('final_batch')),
			hwm => maxdef($c->('vmhwm_kb')),
			anon => maxdef($c->('rssanon_kb')),
			checks_ok => !grep { $_->{check} ne 'ok' && $_->{check} !~ /^partial/ } @g,
		};
	}
	$l{$key} = {
		n => med($c->('oltp_n')),
		p50 => med($c->('oltp_p50_ms')),
		p99 => med($c->('oltp_p99_ms')),
		mx => med($c->('oltp_max_ms')),
		worst => maxdef($c->('oltp_max_ms')),
	};
}
for my $key (keys %s)
{
	my ($size, $w) = split /\|/, $key;
	$s{$key}{ratio} = ratio($s{$key}{rps}, (S($size, $w, 'stmt') // {})->{rps});
}
for my $key (keys %l)
{
	my ($size, $w) = split /\|/, $key;
	$l{$key}{p99_ratio} = ratio($l{$key}{p99}, (L($size, $w, 'none') // {})->{p99});
}

my @text;
sub put { push @text, @_ }

# --- header, machine, method ---------------------------------------------------------
my $elapsed = $run->{elapsed_s} // 0;
my $when = sprintf('on %s in %d min %d s', $run->{started_at}, $elapsed / 60, $elapsed % 60);
my $rel_in = $in_file =~ s{^\Q$BENCH\E/}{bench/}r;
put("# chunkbatch benchmark results", "");
if ($run->{source} eq 'bench/bench.pl')
{
	put("Measured by `$run->{command}` (bench/bench.pl) $when;", "results in `$rel_in`.");
}
else
{
	put("Recorded by $run->{source} $when;", "converted to `$rel_in`.");
}
put("**This run did not complete**: the figures below are those measured before it stopped.")
  unless $run->{complete};
put("Generated by `perl bench/report.pl`: do not edit by hand.", "");

my @sz = @{ $cfg->{sizes} };
my $sizes_line = "sizes run: @sz rows"
  . (@sz == 1 ? ' (10M not run: set BENCH_SIZES="1000000 10000000")' : '')
  . "; all methods (@{ $cfg->{methods} }) at $first rows with $cfg->{reps} repetition(s)"
  . (@sz > 1 ? "; at the larger sizes only @{ $cfg->{large_methods} } on @{ $cfg->{large_workloads} },"
	  . " $cfg->{large_reps} repetition(s), no no-batch baseline" : '');
my $mc = $run->{machine};
put("## Machine and settings", "",
	"- CPUs (nproc): $mc->{cpus}; $mc->{cpu_model}",
	"- memory: $mc->{memory_gib} GiB; kernel $mc->{kernel}",
	"- $run->{postgres_version}",
	"- chunkbatch: $run->{chunkbatch}",
	"- load average (1/5/15 min) at start: $run->{load_start}; at end: " . ($run->{load_end} // '—'),
	"- environment: $run->{environment}",
	"- $sizes_line",
	"- OLTP load: pgbench, $cfg->{oltp_clients} clients, 1 thread, fixed rate -R $cfg->{oltp_rate} tx/s;"
	  . " no-batch windows of $cfg->{baseline_secs} s",
	"- server settings (postgresql.conf additions and a few defaults):", "", '```',
	@{ $run->{settings} // [] }, '```', "");

my %sql = %{ $R->{chunk_sql} };
my $half = $first / 2;
put(split /\n/, <<"EOF");
**Noise.** The machine has $mc->{cpus} CPUs and other test suites may have been
running on it at the same time (see the load average above). Absolute times
are therefore not comparable between runs; only ratios of
methods measured side by side in this one run mean something, and even those
carry a few percent of noise (compare the per-repetition figures below).

## Method

- Table `events(id bigint PK, created_at timestamptz, status text, retries int, payload text)`
  with indexes on `created_at` and on `status`; `created_at` is unique and increases with
  `id`; a quarter of the rows are INIT, a quarter FAIL, half COMPLETE. Every measurement runs
  on a fresh copy of the table (insert from a template, indexes, `VACUUM ANALYZE`, `CHECKPOINT`),
  as the LOGIN role `bench_app` (also the chunkbatch jobs' owner).
- **purge**: delete the older half (created_at below a cutoff), found through the created_at index.
  **flip**: `status = 'COMPLETE', retries = retries + 1` for INIT/FAIL (half the rows). Both change
  $half rows at $first rows; every run is checked (no target row left, rows counted = rows changed).
@{[ decl_text() ]}- Chunk SQL, identical for the PL/pgSQL EXECUTE procedure, the psql loop and chunkbatch keyset jobs
  (fixed and adaptive): a key range, whose upper end is the \$1-th next key (an index-only
  scan), so every chunk is one index range scan whatever its size:
  - purge keyset (cursor timestamptz): `$sql{purge}{keyset}`
  - flip keyset (cursor bigint): `$sql{flip}{keyset}`
  - purge repeat (chunkbatch only): `$sql{purge}{repeat}`
  - flip repeat (chunkbatch only): `$sql{flip}{repeat}`
- The PL/pgSQL EXECUTE procedure (methods `plpgsql_<n>`, the comparison for the keyset jobs, which run the
  same text) runs `EXECUTE 'WITH c(k) AS (<chunk SQL>) SELECT count(*), max(k) FROM c' INTO n, last USING size, last, '{}'`
  and `COMMIT` in a loop until a chunk returns no row (custom plans each chunk, like chunkbatch).
  Both procedures commit with the server's `synchronous_commit` (on); chunkbatch jobs commit chunks with
  `synchronous_commit = off` by default (its documented default, safe because the checkpoint is in
  the same transaction), so `cb_keyset_1000_sync` repeats keyset 1000 with `synchronous_commit => true`.
- The psql loop starts one `psql` (one connection) per 1000-row chunk, with \$1, \$2, \$3
  $cfg->{client_loop_params}. It is slow, so it stops after $cfg->{client_loop_rows} rows and its rows/s is that
  sample's rate (extrapolated to the whole job; the table below marks it).
- Throughput = rows changed / wall time. One statement and PL/pgSQL: from `clock_timestamp()`
  before the statement or `CALL` to after it, in the same session. chunkbatch: from
  `clock_timestamp()` evaluated in the same `SELECT` just before `run()` to the run's `finished_at`
  (so queueing and worker start-up count); "exec rows/s" uses `started_at`..`finished_at` instead.
  Ratios are medians of rows/s divided by the one statement's median rows/s, same workload and size.
  Each chunkbatch run is queued and waited for in one session, like the procedure's `CALL`:
  `CALL chunkbatch.run_and_wait(job)`, which commits between its looks at the run. It does not sit in
  `chunkbatch.wait()`, because that call's statement snapshot holds back the xmin horizon for the
  whole run (see `cb_repeat_1000_wait` and the probe's `wait` mode, which measure that effect).
- Two diagnostic chunkbatch variants: `cb_adaptive_50ms_in` is the adaptive job with the common
  `WHERE id IN (SELECT id ... LIMIT \$1)` chunk SQL, whose plan switches to a hash semi join over a
  sequential scan of the whole table once \$1 reaches a few thousand rows (a *knee*: adaptive sizing
  grows into it once, then caps the chunk size below it):
  - purge: `$sql{purge}{keyset_in}`
  - flip: `$sql{flip}{keyset_in}`

  `cb_repeat_1000_wait` is `cb_repeat_1000` with the benchmark session blocked in
  `chunkbatch.wait(run_id)` during the run.
- OLTP: during every batch measurement pgbench runs $cfg->{oltp_clients} clients at $cfg->{oltp_rate} tx/s in total; a transaction
  is one autocommit `UPDATE events SET payload = md5(payload) WHERE id = <random row of the batch's
  target set>` (purge: the old half; flip: the INIT rows) plus a point read of a random row. Latency is
  pgbench's per-transaction log (`-l`; with `-R` it counts from the scheduled start, so waiting behind a
  lock and the backlog it causes count). A transaction belongs to a window if its scheduled start falls
  between the batch's start and end. pgbench is stopped by a flag the read statement checks (the
  clients abort with a division by zero), so the logs are complete. p50/p99/max are per repetition;
  the tables show the median over repetitions and the worst max. With short batches (the one
  statement purge) a window holds few transactions, so its p99 is close to its max.
- Worker memory: while a chunkbatch run executes, `/proc/<worker_pid>/status` is read every 0.1 s:
  VmHWM (peak resident set; it includes the shared memory the process touched: shared buffers of the
  data it reads and the WAL buffers it cycles through, so it grows with the data and WAL a run produces)
  and the peak of RssAnon (the process's private memory: what a leak would grow). The flatness target is
  judged on RssAnon. Runs shorter than one sample interval have no figure.
- At 10M rows the table and its indexes (~2 GB) exceed shared_buffers (1 GB), so chunks there also
  read from the OS page cache; the 10M figures were measured with the repetitions stated above.
EOF
put(map { "- $_" } @{ $run->{notes} // [] });

# --- headline ----------------------------------------------------------------------------
my @hw = grep { my $w = $_; grep { $_->{size} == $first && $_->{workload} eq $w } @ms } @workloads;
my $reps_first = max(0, map { $s{$_}{reps} } grep { /^\Q$first\E\|/ } keys %s);
put("", "## Headline", "",
	sprintf('### %s rows (%s changed per workload; medians of %s repetitions)', f($first, 0), f($half, 0), $reps_first),
	"",
	'| method | ' . join(' | ', map { ("$_ rows/s", "$_ vs one statement") } @hw)
	  . ' | OLTP p99 during batch (' . join(' / ', @hw) . ') | OLTP max (' . join(' / ', @hw) . ') |',
	'|---|' . ('---:|' x (2 * @hw + 2)));
for my $m (@order)
{
	next unless grep { S($first, $_, $m) || L($first, $_, $m) } @hw;
	put(sprintf('| %s | %s | %s | %s |', $label{$m},
		join(' | ', map { my $x = S($first, $_, $m) // {}; (f($x->{rps}, 0), f($x->{ratio}, 2)) } @hw),
		join(' / ', map { f((L($first, $_, $m) // {})->{p99}, 1) . ' ms' } @hw),
		join(' / ', map { f((L($first, $_, $m) // {})->{worst}, 1) . ' ms' } @hw)));
}
put("", "(OLTP columns: median over repetitions of each window's p99, and the worst max of any repetition.)");

# --- targets --------------------------------------------------------------------------
put("", "## Targets", "", '| target | figure reached | met? |', '|---|---|---|');
put(map { sprintf('| %s | %s | %s |', @$_{qw(target fig met)}) } targets());

# --- parallel slices (bench/parallel.pl) ------------------------------------------------
put("", "## Parallel slices", "", parallel_text());

# --- per workload -----------------------------------------------------------------------
put("", "## Throughput and OLTP latency, per workload");
for my $size (@sizes)
{
	for my $w (@workloads)
	{
		my @rows = grep { S($size, $w, $_) || L($size, $w, $_) } @order;
		next unless @rows;
		put("", sprintf('### %s, %s rows', $w, f($size, 0)), "",
			'| method | rows/s (median) | vs one statement | rows/s each repetition | exec rows/s | chunks | avg chunk ms | max chunk ms | final batch | OLTP tx in window | p50 ms | p99 ms | max ms (median) | worst max ms | p99 vs no batch |',
			'|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
		for my $m (@rows)
		{
			my $x = S($size, $w, $m) // {};
			my $y = L($size, $w, $m) // {};
			put('| ' . join(' | ',
				$label{$m} . (%$x && !$x->{checks_ok} ? ' (**check failed**)' : ''),
				f($x->{rps}, 0), f($x->{ratio}, 2), $x->{rps_each} // '—',
				$is_cb->($m) ? f($x->{exec_rps}, 0) : '—',
				f($x->{chunks}, 0), f($x->{avg_ms}, 1), f($x->{max_ms}, 1), f($x->{final_batch}, 0),
				f($y->{n}, 0), f($y->{p50}, 1), f($y->{p99}, 1), f($y->{mx}, 1), f($y->{worst}, 1),
				f($y->{p99_ratio}, 2)) . ' |');
		}
	}
}

# --- where the time goes in a chunkbatch run -----------------------------------------------
# Per measurement: wall = queue (run() -> started_at) + exec; exec = chunk
# statements (chunks x avg_chunk_ms) + the rest; medians over repetitions.
put("", "## Where the time goes in a chunkbatch run", "", split /\n/, <<'EOF');
From each run's own figures: *queue* is `run()` → `started_at` (queueing, worker start-up), *chunk time* is
chunks × `avg_chunk_ms`, the time the worker measures around a chunk's SQL (for range-mode jobs the key search
and the DELETE/UPDATE together; for keyset jobs the chunk SQL), *between chunks* is the rest of
`started_at`..`finished_at`: transaction start and commit, the checkpoint row update, sizing, and at run
start, for range-mode jobs the search for the key span (and for `count_rows => true` the count, when the
span's search did not make it). Shares are of the wall time; medians over repetitions.
"chunk time vs one statement" is the chunk time against the one statement's whole duration (same size
and workload): above 1 the chunked statements themselves do more work than the single statement.
The longest chunk is shown apart ("longest chunk %").

| size | workload | method | wall s | queue % | chunk time % | longest chunk ms | longest chunk % | between chunks % | between chunks, ms per chunk | chunks | avg chunk ms | chunk time vs one statement |
|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for my $size (@sizes)
{
	for my $w (@workloads)
	{
		my $st = $group{"$size|$w|stmt"};
		my $st_secs = $st ? med(map { $_->{secs} } @$st) : undef;
		for my $m (grep { $is_cb->($_) && $group{"$size|$w|$_"} } @order)
		{
			my @g = grep { $_->{chunks} && defined $_->{avg_chunk_ms} && $_->{exec_secs} } @{ $group{"$size|$w|$m"} };
			next unless @g;
			my $chunk_s = sub { $_[0]{chunks} * $_[0]{avg_chunk_ms} / 1000 };
			put(sprintf('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |', f($size, 0), $w, $m,
				f(med(map { $_->{secs} } @g), 3),
				f(med(map { 100 * ($_->{secs} - $_->{exec_secs}) / $_->{secs} } @g), 1),
				f(med(map { 100 * $chunk_s->($_) / $_->{secs} } @g), 1),
				f(med(map { $_->{max_chunk_ms} } @g), 1),
				f(med(map { 100 * $_->{max_chunk_ms} / 1000 / $_->{secs} } @g), 1),
				f(med(map { 100 * ($_->{exec_secs} - $chunk_s->($_)) / $_->{secs} } @g), 1),
				f(med(map { 1000 * ($_->{exec_secs} - $chunk_s->($_)) / $_->{chunks} } @g), 2),
				f(med(map { $_->{chunks} } @g), 0), f(med(map { $_->{avg_chunk_ms} } @g), 2),
				f(ratio(med(map { $chunk_s->($_) } @g), $st_secs), 2)));
		}
	}
}

# --- run() -> first chunk, probe, memory -------------------------------------------------
my @fc = sort { $a->{i} <=> $b->{i} } @{ $R->{first_chunk} };
put("", "## run() → first committed chunk", "", split /\n/, <<"EOF");
Job `b_fc` (keyset, bigint): its first chunk inserts one row and returns key 1, the second returns nothing.
Start: `clock_timestamp()` evaluated in the same `SELECT` just before `chunkbatch.run()` (autocommit, so the
caller's commit is included). End: the commit time of the first chunk's transaction, `pg_xact_commit_timestamp(xmin)`
of the inserted row (`track_commit_timestamp = on`). Runs are sequential, $cfg->{first_chunk_gap_s} s apart, so the database's
scheduler is already running (it stays `chunkbatch.scheduler_idle_exit` s after its last run); a run worker is
started for each run.

Per run (ms): @{[ join(', ', map { f($_->{ms}, 1) } @fc) ]}
EOF

put("", "## Per-chunk time and worker memory against rows processed", "", split /\n/, <<'EOF');
Probe job `b_probe` (keyset, 1000 per chunk, no table: `SELECT g FROM generate_series($2 + 1, least($2 + $1, n))`),
so per-chunk time is chunkbatch's own overhead (transaction, checkpoint row update, commit) and memory growth
can only come from the worker itself.

Mode `call`: the benchmark waits in `CALL chunkbatch.run_and_wait(...)`, which commits between its looks at the
run (as for every measurement above). Mode `wait`: a session sits in `SELECT chunkbatch.wait(run_id)` meanwhile.
"statement ms" is the chunk statement alone (`avg_chunk_ms`); "wall ms per chunk" is the run's duration / chunks,
so it includes the transaction, checkpoint update and commit.

| rows processed | mode | chunks | statement ms per chunk (median) | wall ms per chunk (median) | rows/s (median) | peak VmHWM kB (max) | peak RssAnon kB (max) | runs |
|---:|---|---:|---:|---:|---:|---:|---:|---:|
EOF
my %pg;
push @{ $pg{"$_->{rows}|$_->{mode}"} }, $_ for @{ $R->{probe} };
for my $key (sort { my ($ra, $ma) = split /\|/, $a; my ($rb, $mb) = split /\|/, $b; $ra <=> $rb || $mb cmp $ma } keys %pg)
{
	my @g = @{ $pg{$key} };
	my ($rows, $mode) = split /\|/, $key;
	put(sprintf('| %s | %s | %s | %s | %s | %s | %s | %s | %s |', f($rows, 0), $mode,
		f(med(map { $_->{chunks} } @g), 0), f(med(map { $_->{avg_chunk_ms} } @g), 3),
		f(med(map { $_->{secs} * 1000 / $_->{chunks} } @g), 3), f(med(map { $_->{rows} / $_->{secs} } @g), 0),
		f(maxdef(map { $_->{vmhwm_kb} } @g), 0), f(maxdef(map { $_->{rssanon_kb} } @g), 0),
		sum(map { $_->{runs} // 1 } @g)));
}
put("", "Worker memory during the table workloads (max over repetitions):", "",
	'| size | workload | method | peak VmHWM kB | peak RssAnon kB | avg chunk ms |', '|---:|---|---|---:|---:|---:|');
for my $size (@sizes)
{
	for my $w (@workloads)
	{
		for my $m (grep { $is_cb->($_) && S($size, $w, $_) } @order)
		{
			my $x = S($size, $w, $m);
			put(sprintf('| %s | %s | %s | %s | %s | %s |', f($size, 0), $w, $m, f($x->{hwm}, 0), f($x->{anon}, 0), f($x->{avg_ms}, 2)));
		}
	}
}

# --- every measurement ------------------------------------------------------------------
put("", "## Every measurement", "",
	'| size | workload | method | rep | rows | secs | exec secs | rows/s | chunks | avg chunk ms | max chunk ms | final batch | VmHWM kB | RssAnon kB | OLTP n | p50 ms | p99 ms | max ms | check |',
	'|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
for my $m (sort { $a->{size} <=> $b->{size} || $wpos{ $a->{workload} } <=> $wpos{ $b->{workload} }
		|| $a->{rep} <=> $b->{rep} || $mpos{ $a->{method} } <=> $mpos{ $b->{method} } } @ms)
{
	my $raw = sub { $m->{ $_[0] } // '—' };
	put('| ' . join(' | ', $m->{size}, $m->{workload}, $m->{method}, $m->{rep}, $m->{rows},
		f($m->{secs}, 3), f($m->{exec_secs}, 3), $m->{method} eq 'none' ? '—' : f($m->{rows_per_s}, 0),
		$raw->('chunks'), f($m->{avg_chunk_ms}, 2), f($m->{max_chunk_ms}, 1), $raw->('final_batch'),
		$raw->('vmhwm_kb'), $raw->('rssanon_kb'), $raw->('oltp_n'),
		f($m->{oltp_p50_ms}, 2), f($m->{oltp_p99_ms}, 2), f($m->{oltp_max_ms}, 2), $m->{check}) . ' |');
}

open my $ofh, '>', "$out_file.tmp" or die "$out_file.tmp: $!\n";
print $ofh join("\n", @text), "\n";
close $ofh or die "$out_file.tmp: $!\n";
rename "$out_file.tmp", $out_file or die "rename $out_file: $!\n";
print "wrote $out_file from $in_file\n";

# --- the static procedure and the declarative jobs (Method) ---------------------------------
# Empty for a results file without them (the recorded one).
sub decl_text
{
	my @t;
	my $one = sub { ($_[0] // '—') =~ s/\s*\n\s*/ /gr };
	if (grep { $sql{$_}{static_proc} } @workloads)
	{
		push @t, "- The baseline for chunked runs is the procedure a DBA writes by hand (methods `plpgsql_static_<n>`):",
		  "  static statements, so PL/pgSQL prepares each once and caches its plan; the chunk's upper key is",
		  "  `SELECT max(id) INTO hi FROM (SELECT id FROM events WHERE id > last AND <condition> ORDER BY id LIMIT batch) s`,",
		  "  then `DELETE`/`UPDATE ... WHERE id > last AND id <= hi AND <condition>` (no RETURNING), `COMMIT`, until",
		  "  `hi` is NULL. The cutoff is written into the procedure as a literal (it depends on the table size), like",
		  "  the declarative jobs' condition. The purge procedure:", "", '  ```sql',
		  (map { "  $_" } split /\n/, $sql{purge}{static_proc} // ''), '  ```', "",
		  '  `flip_static` is the same with `' . $one->($sql{flip}{where_sql}) . '` as the condition and `UPDATE events SET '
		  . $one->($sql{flip}{set_sql}) . '`.';
	}
	if (grep { $sql{$_}{decl_chunk_sql} } @workloads)
	{
		push @t, "- Declarative jobs (methods `cb_decl_*`): `chunkbatch.create_purge('b_purge_...', 'events', where_sql => \$\$"
		  . $one->($sql{purge}{where_sql}) . "\$\$, ...)` and `chunkbatch.create_update('b_flip_...', 'events', set_sql => \$\$"
		  . $one->($sql{flip}{set_sql}) . "\$\$, where_sql => \$\$" . $one->($sql{flip}{where_sql}) . "\$\$, ...)`, range mode",
		  "  on `" . $one->($sql{flip}{decl_range}) . "` (the primary key). At the run's start the worker finds its key span, the",
		  "  first and last key where_sql matches (a walk of at most 10,000 keys from each end of the key, else one read of",
		  "  every matching row, which also counts them); before each chunk it reads the next batch-size keys past its",
		  "  checkpoint and within the span (an index-only scan of the key, whether or not they match), and runs the",
		  "  statement chunkbatch wrote, with \$1 and \$2 the first and last of those keys:",
		  "  - purge: `" . $one->($sql{purge}{decl_chunk_sql}) . "`",
		  "  - flip: `" . $one->($sql{flip}{decl_chunk_sql}) . "`",
		  "",
		  "  `cb_decl_1000`, `cb_decl_10000`: fixed batch size; `cb_decl_adaptive_50ms`: batch_size 1000,",
		  "  target_chunk_ms 50, min/max batch size at their defaults (as `cb_adaptive_50ms`). All three with",
		  "  `count_rows => false`; `cb_decl_adaptive_50ms_count` is the adaptive job with `count_rows => true` (the",
		  "  default), for percent and ETA: `" . $one->($sql{purge}{decl_count_sql}) . "`",
		  "  (purge; flip alike), run once at run start unless the span's read of every matching row made the same count.";
	}
	return @t ? join("\n", @t) . "\n" : '';
}

# --- parallel slices (bench/parallel.pl's results file) ------------------------------------
# The lines of the section "Parallel slices": the run, its medians and
# ratios per variant, the application's p99, its by-hand baselines when it
# has them, and its targets, met or not as the file records them.
sub parallel_text
{
	return "No results of bench/parallel.sh yet (no bench/results/parallel-*.json)." unless defined $par_file;
	my $P = do { local $/; open my $fh, "<", $par_file or die "$par_file: $!\n"; JSON::PP->new->decode(<$fh>) };
	my ($pr, $S) = ($P->{run}, $P->{summary} // {});
	my $pc = $pr->{config} // {};
	my $rel = $par_file =~ s{^\Q$BENCH\E/}{bench/}r;
	my $full = "$BENCH/PARALLEL.md";
	my $link = File::Spec->abs2rel($full, dirname(File::Spec->rel2abs($out_file)));
	my $same = do { local $/; my $fh; open($fh, '<', $full) && index(<$fh>, $pr->{started_at}) >= 0 };
	my $el = $pr->{elapsed_s} // 0;
	my @t = (sprintf('Measured by `%s` (bench/parallel.pl) on %s in %d min %d s, on %s CPUs;', $pr->{command}, $pr->{started_at},
			$el / 60, $el % 60, $pr->{machine}{cpus} // '—'),
		"results in `$rel`; chunkbatch: $pr->{chunkbatch}.");
	push @t, '**This run did not complete**: the figures below are those measured before it stopped.' unless $pr->{complete};
	push @t, '**A smoke run** (small tables, one repetition): the figures show that the benchmark works, not how fast parallel slices are.'
	  if $pr->{smoke};
	push @t, "The full report (every run, its slices, the checks, the method): [bench/PARALLEL.md]($link)"
	  . ($same ? '.' : ' (**from another run** than this results file).');
	push @t, "", 'Notes of the run:', "", map { "- $_" } @{ $pr->{notes} } if @{ $pr->{notes} // [] };

	# the workloads
	my $sp = $pc->{skew_parallel} // '?';
	my @ix = @{ $pr->{migration_indexes} // [] };
	my %dest = map { /\bON (\S+)/ ? ($1 => 1) : () } @ix;
	my %what = (
		migration => sprintf('%s items of `staging` upserted into %d tables with %d secondary indexes (kept) by one range-mode job, %s keys per chunk',
			f($pc->{items}, 0), scalar keys %dest, scalar(grep { !/\bUNIQUE\b/ } @ix), $pc->{mig_batch_size} // '—'),
		flip => sprintf('`create_update` of %s of %s rows of `events` (INIT/FAIL to COMPLETE), %s keys per chunk%s%s',
			f(($pr->{matching_rows} // {})->{events}, 0), f($pc->{rows}, 0), $pc->{flip_batch_size} // '—',
			defined $pc->{flip_target_chunk_ms} ? ", target_chunk_ms $pc->{flip_target_chunk_ms}" : '',
			$S->{oltp} ? ', with the application (pgbench) running' : ''),
		skew => sprintf('the same flip with parallel %s on two tables of %s rows with %s matching rows each, `events_skew`'
			  . ' (%s%% of them in the first tenth of the keys) and `events_bal` (spread evenly)',
			$sp, f($pc->{rows}, 0), f(($pr->{skew} // {})->{matching_rows}, 0), f(100 * (($pr->{skew} // {})->{share_in_first_tenth} // 0), 0)),
	);
	my @ws = grep { ref $S->{$_} eq 'HASH' } @{ $pc->{workloads} // [] };
	push @t, "", 'Workloads:', "", map { "- $_: " . ($what{$_} // 'see bench/PARALLEL.md') . '.' } @ws;

	# medians and ratios, a line per variant
	my %hand = (migration => { hand2 => 'by hand, two range jobs at once' },
		flip => { hand1 => 'by hand, one statement', hand2 => 'by hand, two statements at once' });
	my $name = sub
	{
		my ($w, $v) = @_;
		return $v =~ /^p(\d+)$/ ? "parallel $1" : $v eq 'skew' ? 'skewed' : $v eq 'bal' ? 'balanced' : $hand{$w}{$v} // $v;
	};
	my $rank = sub { $_[0] =~ /^p(\d+)$/ ? $1 : { skew => 1000, bal => 1001 }->{ $_[0] } // 2000 };
	my $oltp = $S->{oltp} // {};
	my $by_hand = grep { my $w = $_; grep { $hand{$w}{$_} } keys %{ $S->{$w} } } @ws;
	push @t, "", sprintf('Run time: `finished_at - started_at` of the run%s, median of %s repetition(s), the variants of one repetition back to'
		  . ' back; a ratio is the median of the per-repetition ratios.',
		$by_hand ? ' (by hand: from the first part\'s start to the last one\'s end)' : '', $pc->{reps} // '—'),
	  "",
	  '| workload | variant | median run time | per repetition | ratio (median) | slices at the end (median; stolen) | application p99 during the run (× no batch) |',
	  '|---|---|---:|---|---|---|---|';
	for my $w (@ws)
	{
		my $sw = $S->{$w};
		my @v = sort { $rank->($a) <=> $rank->($b) || $a cmp $b } grep { $_ ne 'ratios' && ref $sw->{$_} eq 'HASH' } keys %$sw;
		my %is_v = map { $_ => 1 } @v;
		my $rt = $sw->{ratios} // {};
		my %den = map { /^(.+?)_(.+)$/ && $is_v{$2} ? ($2 => 1) : () } keys %$rt;
		for my $v (@v)
		{
			my $x = $sw->{$v};
			my @r = map { f($rt->{"${v}_$_"}{median}, 2) . ' × ' . $name->($w, $_) }
			  sort { $rank->($a) <=> $rank->($b) || $a cmp $b } grep { $rt->{"${v}_$_"} } @v;
			my $o = $w eq 'flip' ? $oltp->{$v} : undef;
			push @t, '| ' . join(' | ', $w,
				$name->($w, $v) . (defined $x->{all_verified} && !$x->{all_verified} ? ' (**check failed**)' : ''),
				f($x->{exec_s}, 2) . ' s', join(', ', map { f($_, 2) } @{ $x->{exec_s_per_rep} // [] }) . ' s',
				@r ? join('; ', @r) : $den{$v} ? '1' : '—',
				$x->{slices} ? f($x->{slices}, 0) . ' (' . f($x->{stolen_slices}, 0) . ')' : '—',
				$o ? f($o->{p99_ms}, 1) . ' ms (' . f($o->{p99_ratio}, 2) . '×)' : '—') . ' |';
		}
	}
	if (my $b = $oltp->{baseline})
	{
		push @t, "", sprintf('Application during the flips: pgbench, %s clients, %s tx/s in all (`-R`; latency from the scheduled start), pooled'
			  . ' over the repetitions; without a batch (the %s s windows before each flip run): p50 %s ms, p99 %s ms, max %s ms (%s transactions).',
			$pc->{oltp_clients} // '—', $pc->{oltp_rate} // '—', $pc->{baseline_secs} // '—',
			f($b->{p50_ms}, 1), f($b->{p99_ms}, 1), f($b->{max_ms}, 1), f($b->{n}, 0));
	}

	# the by-hand baselines, when the run has them
	my @hb;
	if (my $h = ($pr->{by_hand} // {})->{migration})
	{
		push @hb, sprintf('migration: two range jobs with parallel 1 (%s; `range_filter` `%s`) queued in one transaction, each over one half'
			  . ' of the staging keys (split at key %s); run time from the earlier `started_at` to the later `finished_at`',
			join(', ', map { "`$_->{job}` with `$_->{params}`" } @{ $h->{runs} // [] }) || 'two jobs', $h->{filter} // '—', $h->{mid} // '—');
	}
	if (my $h = ($pr->{by_hand} // {})->{flip})
	{
		push @hb, sprintf('flip: the `UPDATE` as one statement in one psql session, or two sessions started together, each over one half'
			  . ' of the keys (split at id %s), with `synchronous_commit = %s`; run time from the earlier statement\'s start to the later one\'s commit',
			$h->{mid} // '—', $h->{synchronous_commit} // '—');
	}
	push @t, "", 'By hand, the same work without slices, in the same repetitions:', "", map { "- $_." } @hb if @hb;

	# the targets, as bench/parallel.pl judged them
	push @t, "", 'Targets of the parallel benchmark (judged by bench/parallel.pl; "met?" as its results file records it):', "",
	  '| target | value | limit | met? | how |', '|---|---:|---|---|---|';
	for my $x (@{ $S->{targets} // [] })
	{
		my $runs = ($x->{id} // '') eq 'verified';
		push @t, sprintf('| %s | %s | %s | %s | %s |', $x->{what} // $x->{id},
			$runs ? ($x->{value} // '—') . ' runs' : f($x->{value}, 3), $runs ? "all $x->{limit} runs" : "≤ $x->{limit}",
			!defined $x->{met} ? '—' : $x->{met} ? 'yes' : '**no**', $x->{detail} // '');
	}
	return @t;
}

# --- targets (bench/targets.tsv) ------------------------------------------------------------
sub targets
{
	open my $fh, '<', "$BENCH/targets.tsv" or die "$BENCH/targets.tsv: $!\n";
	my @rows;
	while (<$fh>)
	{
		chomp;
		next if /^#/ || /^\s*$/ || /^kind\t/;
		my %t;
		@t{qw(kind workloads methods versus limit also label)} = map { $_ eq '-' ? '' : $_ } split /\t/;
		push @rows, target_rows(\%t);
	}
	return @rows;
}

sub yes { return $_[0] ? 'yes' : '**no**' }

sub target_label
{
	my ($t, %v) = @_;
	my $s = $t->{label};
	$v{limit} = $t->{limit};
	$v{limit_pct} = f(($t->{limit} - 1) * 100, 0);
	$v{first_size} //= f($first, 0);
	$s =~ s/\{(\w+)\}/$v{$1} \/\/ "{$1}"/ge;
	return $s;
}

# the methods a target names (cb_* = every chunkbatch method)
sub methods_of
{
	my ($spec) = @_;
	return map { my $p = $_; $p =~ /\*$/ ? (grep { $is_cb->($_) && /^\Q${\ substr($p, 0, -1)}\E/ } @order) : ($p) }
	  split ' ', $spec;
}

sub target_rows
{
	my ($t) = @_;
	my $lim = $t->{limit};
	my @ws = grep { exists $wpos{$_} } split ' ', $t->{workloads};
	my @out;
	my $row = sub { my (%r) = @_; push @out, \%r };
	if ($t->{kind} eq 'faster')
	{
		for my $w (@ws)
		{
			for my $m (split ' ', $t->{methods})
			{
				my ($c, $p) = (S($first, $w, $m), S($first, $w, $t->{versus}));
				next unless $c && $p;
				my $r = $c->{rps} / $p->{rps};
				my @extra;
				for my $a (split ' ', $t->{also})
				{
					if ($a eq 'exec') { push @extra, 'exec-only ' . f(ratio($c->{exec_rps}, $p->{rps}), 2) . '×' }
					else
					{
						my $v = S($first, $w, $a);
						push @extra, "$a: " . ($v ? f($v->{rps} / $p->{rps}, 2) . '×' : 'not measured');
					}
				}
				$row->(target => target_label($t, workload => $w, method => $m),
					fig => sprintf('%s× (%s vs %s rows/s%s)', f($r, 2), f($c->{rps}, 0), f($p->{rps}, 0),
						join('', map { "; $_" } @extra)),
					met => yes($r >= $lim));
			}
		}
	}
	elsif ($t->{kind} eq 'p99' || $t->{kind} eq 'max_ms')
	{
		my $p99 = $t->{kind} eq 'p99';
		my $v = $p99 ? 'p99_ratio' : 'worst';
		for my $w (@ws)
		{
			my @c = sort { ($b->{$v} // -1) <=> ($a->{$v} // -1) }
			  map { { m => $_, %{ L($first, $w, $_) } } } grep { L($first, $w, $_) } methods_of($t->{methods});
			next unless @c && defined $c[0]{$v};
			my @over = grep { defined $_->{$v} && $_->{$v} > $lim } @c;
			my $over = @over ? join(', ', map { $p99 ? "$_->{m} " . f($_->{p99_ratio}, 2) . '×' : "$_->{m} " . f($_->{worst}, 1) . ' ms' } @over) : 'none';
			$row->(target => target_label($t, workload => $w),
				fig => $p99
				  ? sprintf('worst %s× (%s: p99 %s ms vs %s ms without batch); over the limit: %s', f($c[0]{p99_ratio}, 2),
					  $c[0]{m}, f($c[0]{p99}, 1), f($c[0]{p99} / $c[0]{p99_ratio}, 1), $over)
				  : sprintf('worst %s ms (%s); over the limit: %s', f($c[0]{worst}, 1), $c[0]{m}, $over),
				met => yes($c[0]{$v} <= $lim));
		}
	}
	elsif ($t->{kind} eq 'chunk_growth' || $t->{kind} eq 'memory_growth')
	{
		my $chunk = $t->{kind} eq 'chunk_growth';
		for my $w (@ws)
		{
			for my $m (split ' ', $t->{methods})
			{
				my $a = S($first, $w, $m) or next;
				for my $size (grep { $_ > $first } @sizes)
				{
					my $b = S($size, $w, $m) or next;
					my %lv = (workload => $w, method => $m, size => f($size, 0));
					if ($chunk)
					{
						my $r = ratio($b->{avg_ms}, $a->{avg_ms});
						$row->(target => target_label($t, %lv),
							fig => sprintf('%s× (avg chunk %s ms vs %s ms)', f($r, 2), f($b->{avg_ms}, 2), f($a->{avg_ms}, 2)),
							met => yes(defined $r && $r <= $lim));
					}
					else
					{
						my $r = ratio($b->{anon}, $a->{anon});
						$row->(target => target_label($t, %lv),
							fig => sprintf('peak RssAnon %s× (%s vs %s kB); VmHWM %s× (%s vs %s kB, includes shared buffers touched)',
								f($r, 2), f($b->{anon}, 0), f($a->{anon}, 0),
								f(ratio($b->{hwm}, $a->{hwm}), 2), f($b->{hwm}, 0), f($a->{hwm}, 0)),
							met => defined $r && $r <= $lim ? 'yes (RssAnon)' : '**no**');
					}
				}
			}
		}
		$row->(target => target_label($t, workload => join('/', @ws), method => join('/', split ' ', $t->{methods}), size => 'N'),
			fig => "not measured: only @sizes rows run (BENCH_SIZES)"
			  . ($chunk ? '; see the probe below for per-chunk time against rows processed' : ''),
			met => '—')
		  if !@out && $chunk;
	}
	elsif ($t->{kind} eq 'probe_memory')
	{
		my %by;
		for (grep { $_->{mode} eq 'call' } @{ $R->{probe} }) { push @{ $by{ $_->{rows} } }, $_ }
		my @n = sort { $a <=> $b } keys %by;
		if (@n >= 2)
		{
			my ($lo, $hi) = map { my $g = $by{$_}; { anon => maxdef(map { $_->{rssanon_kb} } @$g), hwm => maxdef(map { $_->{vmhwm_kb} } @$g) } } @n[ 0, -1 ];
			my $r = ratio($hi->{anon}, $lo->{anon});
			$row->(target => target_label($t, size => f($n[-1], 0), first_size => f($n[0], 0)),
				fig => sprintf('peak RssAnon (private memory) %s kB vs %s kB: %s×; VmHWM %s kB vs %s kB: %s× (shared memory touched, see below)',
					f($hi->{anon}, 0), f($lo->{anon}, 0), f($r, 2), f($hi->{hwm}, 0), f($lo->{hwm}, 0), f(ratio($hi->{hwm}, $lo->{hwm}), 2)),
				met => !defined $r ? '— (runs too short to sample)' : $r <= $lim ? 'yes (RssAnon)' : '**no**');
		}
	}
	elsif ($t->{kind} eq 'first_chunk')
	{
		my @v = map { $_->{ms} } @{ $R->{first_chunk} };
		if (@v)
		{
			my $m = med(@v);
			$row->(target => target_label($t),
				fig => sprintf('%s ms (median of %d; min %s, p90 %s, max %s ms)', f($m, 1), scalar @v,
					f(min(@v), 1), f(pct(0.9, @v), 1), f(max(@v), 1)),
				met => yes($m <= $lim));
		}
	}
	else
	{
		die "targets.tsv: unknown kind $t->{kind}\n";
	}
	return @out;
}
