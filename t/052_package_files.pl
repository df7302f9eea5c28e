# Copyright (c) 2026, chunkbatch developers
#
# The files a packager and a DBA rely on agree with the code (no server).
#
# - the version: chunkbatch.control's default_version, META.json (PGXN spec
#   1.0.0: version and provides.chunkbatch.version), debian/changelog's
#   latest entry and CHANGELOG.md's latest heading are the same version, and
#   META.json's provides file is the install script of that version;
# - LICENSE is the PostgreSQL Licence, as META.json and debian/copyright say;
# - the reference's SQLSTATE index lists every SQLSTATE the code raises
#   (errcode(ERRCODE_...) in src/*.c, ERRCODE = '...' in the install
#   script), once each;
# - the reference's table of contents links every function of the install
#   script.
use strict;
use warnings;

use FindBin;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = "$FindBin::Bin/..";

my ($control_version) = slurp_file("$root/chunkbatch.control") =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $control_version, "chunkbatch.control has a default_version ($control_version)");

my $meta = JSON::PP->new->decode(slurp_file("$root/META.json"));
is($meta->{'meta-spec'}{version}, '1.0.0', 'META.json follows the PGXN meta spec 1.0.0');
is($meta->{name}, 'chunkbatch', 'META.json names chunkbatch');
is($meta->{version}, "$control_version.0", 'META.json version is the control file\'s default_version');
is($meta->{provides}{chunkbatch}{version},
	"$control_version.0", 'META.json provides.chunkbatch.version agrees');
ok(-f "$root/$meta->{provides}{chunkbatch}{file}",
	"META.json provides file $meta->{provides}{chunkbatch}{file} exists");
is($meta->{license}, 'postgresql', 'META.json licence is postgresql');

my ($deb_version) = slurp_file("$root/debian/changelog") =~ /^chunkbatch \(([^)]+)\)/;
is($deb_version, "$control_version.0", 'debian/changelog\'s latest entry is that version');
my ($changelog_version) = slurp_file("$root/CHANGELOG.md") =~ /^## (\S+)/m;
is($changelog_version, $control_version, 'CHANGELOG.md\'s latest heading is that version');

my $license = slurp_file("$root/LICENSE");
like($license, qr/^PostgreSQL License/, 'LICENSE is the PostgreSQL Licence');
like($license, qr/Copyright \(c\) \d{4}, chunkbatch developers/, '... with the copyright line');
like(slurp_file("$root/debian/copyright"), qr/^License: PostgreSQL/m,
	'debian/copyright says the same licence');

# SQLSTATEs raised by the code.
my %name_to_code;
my $errcodes = `pg_config --includedir-server`;
chomp $errcodes;
foreach (split /\n/, slurp_file("$errcodes/utils/errcodes.h"))
{
	$name_to_code{$1} = "$2$3$4$5$6"
	  if /#define (ERRCODE_\w+) MAKE_SQLSTATE\('(.)','(.)','(.)','(.)','(.)'\)/;
}
my %raised;
foreach my $f (glob("$root/src/*.c"))
{
	my $src = slurp_file($f);
	while ($src =~ /(?:errcode\(|fail_unstarted\([^,]+,\s*)(ERRCODE_\w+)/g)
	{
		my $code = $name_to_code{$1};
		ok(defined $code, "$1 is a known error code") unless defined $code;
		$raised{$code} = 1 if defined $code;
	}
}
my $script = slurp_file("$root/chunkbatch--$control_version.sql");
$raised{$1} = 1 while $script =~ /ERRCODE = '([0-9A-Z]{5})'/g;
cmp_ok(scalar(keys %raised), '>=', 20, 'the code raises at least 20 SQLSTATEs');

my $reference = slurp_file("$root/docs/reference.md");
my ($index) = $reference =~ /^## SQLSTATE index\n(.*?)(?:^## |\z)/ms;
ok(defined $index, 'the reference has a SQLSTATE index');
my %listed;
my @dups;
foreach ($index =~ /^\| ([0-9A-Z]{5}) \|/mg)
{
	push @dups, $_ if $listed{$_}++;
}
is_deeply(\@dups, [], 'the SQLSTATE index lists each SQLSTATE once');
is_deeply([ sort grep { !$listed{$_} } keys %raised ],
	[], 'every SQLSTATE the code raises is in the index');

# Every function of the install script is in the reference's contents.
my ($toc) = $reference =~ /^(- \[Functions\].*?)^- \[Tables\]/ms;
foreach my $fn (sort { $a cmp $b } ($script =~ /^CREATE (?:FUNCTION|PROCEDURE) chunkbatch\.(\w+)/mg))
{
	next if $fn eq 'resolve_owner' || $fn eq 'jobs_changed';    # triggers
	like($toc, qr/\[\Q$fn\E\]/, "the reference's contents link $fn");
}

done_testing();
