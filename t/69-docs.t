#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 69-docs.t - the manual agrees with the tree (any user, no daemon):
#   - the installation checklist is the same text in the README and in the
#     package's README.Debian (t/68-admin-path.t follows it);
#   - the README's Database section names every migration of sql/, and its
#     example of the refusal over an old schema names the last two versions.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use RG qw(slurp);

my $top = "$FindBin::Bin/..";
my $readme = slurp("$top/README.md");

sub checklist {
    my ($text, $name) = @_;
    my ($list) = $text =~ /^<!-- checklist -->\n(.*?)^<!-- \/checklist -->$/ms;
    ok(defined $list && length $list > 500, "$name holds the checklist");
    return $list // '';
}
my $in_readme = checklist($readme, 'README.md');
is(checklist(slurp("$top/debian/README.Debian"), 'README.Debian'), $in_readme,
   'README.Debian\'s checklist is the README\'s, word for word');
like($in_readme, qr/default_action=DUNNO/, 'its Postfix lines keep mail flowing when rateguard is down');
like($in_readme, qr{/etc/cron\.d/rateguard}, 'it names the reset under SysV');

my @sql = map { m{/(\d{3})_[^/]+\.sql$} ? $1 : () } sort glob("$top/sql/[0-9]*.sql");
ok(@sql >= 7, scalar(@sql) . ' migrations in sql/');
my ($database) = $readme =~ /^## Database\n(.*?)^## /ms;
my @undocumented = grep { my $n = $_; $database !~ /\b(?:[Mm]igration |, )$n\b|\b$n its\b/ } @sql;
is_deeply(\@undocumented, [], 'the Database section names every migration');
my ($have, $need) = $database =~ /schema is at version (\d+), this rateguard needs (\d+)/;
is(($have // '?') . ' ' . ($need // '?'), (@sql - 1) . ' ' . scalar(@sql),
   'its refusal example names the version before the last and the last');
done_testing();
