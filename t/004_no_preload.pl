# Copyright (c) 2026, chunkbatch developers
#
# A server without chunkbatch in shared_preload_libraries: the extension can
# be created and jobs defined, but run() refuses with SQLSTATE 55000 and a
# hint naming shared_preload_libraries, and leaves no run behind.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use ChunkbatchNode;

my $node = ChunkbatchNode->create('no_preload', preload => undef);

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'chunkbatch is not preloaded');

my ($ret, $stdout, $stderr) =
  $node->psql('postgres', 'CREATE EXTENSION chunkbatch');
if (!is($ret, 0, 'CREATE EXTENSION chunkbatch works without the preload'))
{
	# Nothing else can be checked; show why.
	diag($stderr);
	diag(   "server log:\n"
		  . join('',
			grep { /FATAL|ERROR|PANIC/ }
			  split(/^/m, slurp_file($node->logfile))));
	$node->stop;
	done_testing();
	exit 0;
}

$node->safe_psql(
	'postgres', q{
CREATE TABLE items (id bigint PRIMARY KEY);
INSERT INTO items SELECT generate_series(1, 100);
});
is( $node->safe_psql(
		'postgres', q{
SELECT chunkbatch.create_job(
  job_name => 'purge',
  chunk_sql => 'DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT $1)',
  batch_size => 10) > 0}),
	't',
	'create_job works without the preload');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM chunkbatch.jobs WHERE job_name = 'purge'}),
	'1', 'the job is defined');

my $sqlstate;
($sqlstate, $stderr) = $node->sql_error(q{SELECT chunkbatch.run('purge');});
is($sqlstate, '55000', 'run() fails with SQLSTATE 55000') or diag($stderr);
like($stderr, qr/HINT:.*shared_preload_libraries/,
	'the error hints at shared_preload_libraries');

($sqlstate, $stderr) =
  $node->sql_error(q{SELECT chunkbatch.run('purge', wait => true);});
is($sqlstate, '55000', 'run(wait => true) fails with SQLSTATE 55000')
  or diag($stderr);
like($stderr, qr/HINT:.*shared_preload_libraries/,
	'that error hints at shared_preload_libraries too');

is($node->safe_psql('postgres', 'SELECT count(*) FROM chunkbatch.runs'),
	'0', 'no run was queued');
is($node->safe_psql('postgres', 'SELECT count(*) FROM items'),
	'100', 'nothing was processed');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity
           WHERE backend_type LIKE 'chunkbatch%'}),
	'0',
	'no chunkbatch background process runs');

$node->stop;
done_testing();
