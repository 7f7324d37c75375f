#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 75-settings-documented.t - every setting the binary knows is documented,
# with the default the binary has (any user, no daemon, no database).
#
# The list comes from the binary itself (`rateguard --list-config`: one
# "name<TAB>default" line per row of params[] in src/global/config.c), not from
# the documentation, so a setting added to the table and to nothing else
# fails here. For each one:
#   - rateguard.conf shows it commented, in its section, as
#     `#key = default` spelled exactly as --list-config spells it;
#   - rateguard.conf(5) has an entry `.B name` whose next line is
#     `Default: default.`;
# and nothing is documented that the binary does not know (a setting
# renamed or removed). Uncommenting every line of rateguard.conf gives a
# file `rateguard -t` accepts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use RG qw(run_rateguard slurp test_dir);

my $top = "$FindBin::Bin/..";
my ($rc, $out, $err) = run_rateguard('--list-config');
is($rc, 0, '--list-config: exit 0') or diag $err;
my @settings = map { [split /\t/, $_, 2] } split /\n/, $out;
ok(@settings >= 80, scalar(@settings) . ' settings listed');
is_deeply([grep { @$_ != 2 || $_->[0] !~ /^(\w+\.)?\w+$/ } @settings], [], 'every line is name<TAB>default');
my %default = map { @$_ } @settings;

# rateguard.conf: "#key = value" lines by qualified name, with the
# section they sit in.
my $conf = slurp("$top/rateguard.conf");
my (%in_conf, $section, $uncommented);
for my $line (split /\n/, $conf) {
    $section = $1 if $line =~ /^(\w+) \{$/;
    undef $section if $line =~ /^\}$/;
    if ($line =~ /^(\s*)#(\w+) = (.*)$/) {
        my $name = ($section ? "$section." : '') . $2;
        push @{ $in_conf{$name} }, $3;
        $line = "$1$2 = $3";
    }
    $uncommented .= "$line\n";
}
# rateguard.conf(5): ".B name" entries and the line after each.
my $man = slurp("$top/src/man/rateguard.conf.5");
my ($parameters) = $man =~ /^\.SH PARAMETERS\n(.*?)^\.SH /ms;
ok(defined $parameters, 'rateguard.conf(5) has a PARAMETERS section');
my %in_man;
$in_man{$1} = $2 while ($parameters // '') =~ /^\.B ([\w.]+)\n(.*)$/mg;

for my $s (@settings) {
    my ($name, $value) = @$s;
    is_deeply($in_conf{$name}, [$value], "rateguard.conf: #$name = $value");
    is($in_man{$name}, "Default: $value.", "rateguard.conf(5): $name, Default: $value.");
}
is_deeply([sort grep { !exists $default{$_} } keys %in_conf], [], 'rateguard.conf documents no unknown setting');
is_deeply([sort grep { !exists $default{$_} } keys %in_man], [], 'rateguard.conf(5) documents no unknown setting');

# The defaults as documented are a valid file (the accounts they name
# must exist: run where they do).
SKIP: {
    skip 'needs the accounts root and postfix', 2 unless defined getpwnam('postfix') && defined getgrnam('postfix');
    my $path = test_dir() . '/uncommented.conf';
    open my $fh, '>', $path or die "$path: $!";
    print $fh $uncommented;
    close $fh;
    ($rc, $out, $err) = run_rateguard('-t', '-c', $path);
    is($rc, 0, 'rateguard.conf with every setting uncommented: exit 0') or diag $err;
    ($rc, $out) = run_rateguard('-c', $path, '--get-config', 'workers.max');
    is($out, "$default{'workers.max'}\n", 'and it reads back the defaults');
}
done_testing();
