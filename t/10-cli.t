#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 10-cli.t - command line: -t, --get-config, --help, --version, exit codes
# and the messages that go with them.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use RG qw(run_rateguard test_dir write_config);

my $dir = test_dir();
use Cwd qw(abs_path);
my $shipped = abs_path("$FindBin::Bin/../rateguard.conf");

sub conf_file {
    my ($name, $text) = @_;
    my $path = "$dir/$name";
    open my $fh, '>', $path or die;
    print $fh $text;
    close $fh;
    return $path;
}

my ($rc, $out, $err) = run_rateguard('-t', '-c', $shipped);
is($rc, 0, 'shipped rateguard.conf: exit 0');
like($out, qr/^\Q$shipped\E: configuration OK\n\z/, 'shipped rateguard.conf: configuration OK');

($rc, $out, $err) = run_rateguard('-t', '-c', conf_file('bad-listen.conf', qq{listen = {"nonsense"}\n}));
is($rc, 4, 'listen = {"nonsense"}: exit 4');
is($err, "rateguard: $dir/bad-listen.conf:1: listen: expected IPv4:port, [IPv6]:port or unix:/path, got 'nonsense'\n",
   'bad listen: message names file, line and key');

($rc, $out, $err) = run_rateguard('-t', '-c', "$dir/missing.conf");
is($rc, 5, 'missing file: exit 5');
like($err, qr/missing\.conf: cannot open configuration file: No such file or directory/, 'missing file: message');

($rc, $out, $err) = run_rateguard('-t', '-c', conf_file('bad-range.conf', "cache {\n  entries = 3\n}\n"));
is($rc, 5, 'out of range: exit 5');
is($err, "rateguard: $dir/bad-range.conf:2: cache.entries: 3 is out of range 16..100000000\n", 'out of range: message');

($rc, $out, $err) = run_rateguard('-t', '-c', conf_file('unknown.conf', "workers {\n max = 5\n maximum = 6\n}\n"));
is($rc, 5, 'unknown key: exit 5');
is($err, "rateguard: $dir/unknown.conf:3: no such option 'maximum'\n", 'unknown key: message');

($rc, $out) = run_rateguard('--get-config', 'quota.default', '-c', $shipped);
is($rc, 0, '--get-config quota.default: exit 0');
is($out, "1000\n", '--get-config quota.default: default 1000');

my $c = conf_file('values.conf', qq{quota {\n default = 25\n}\nlisten = {"127.0.0.1:1", "[::1]:2"}\n});
($rc, $out) = run_rateguard('--get-config', 'quota.default', '-c', $c);
is($out, "25\n", '--get-config quota.default: effective value');
($rc, $out) = run_rateguard('--get-config', 'listen', '-c', $c);
is($out, "127.0.0.1:1\n[::1]:2\n", '--get-config listen: one item per line');
($rc, $out) = run_rateguard('--get-config', 'action_blocked', '-c', $c);
is($out, "DEFER_IF_PERMIT Rate limit reached, retry later.\n", '--get-config action_blocked');
($rc, $out) = run_rateguard('--get-config', 'config_file', '-c', $c);
is($out, "$c\n", '--get-config config_file');
($rc, $out, $err) = run_rateguard('--get-config', 'quota.nonsense', '-c', $c);
is($rc, 1, '--get-config unknown: exit 1');
is($err, "rateguard: unknown configuration parameter 'quota.nonsense'\n", '--get-config unknown: message');

($rc, $out) = run_rateguard('--version');
is($rc, 0, '--version: exit 0');
like($out, qr/^rateguard \d+\.\d+\.\d+\n\z/, '--version prints the version');
($rc, $out) = run_rateguard('--help');
is($rc, 0, '--help: exit 0');
like($out, qr/usage: rateguard \[-c FILE\] \[-f\] \[-t\] \[--get-config NAME\]/, '--help: usage line');
like($out, qr/migrate/, '--help lists the commands');

($rc, $out, $err) = run_rateguard('-c', $c, 'frobnicate');
is($rc, 64, 'unknown command: exit 64');
like($err, qr/unknown command 'frobnicate'/, 'unknown command: message');

# A user that does not exist: exit 2 at start.
my $cfg = write_config();
my $nouser = conf_file('nouser.conf', RG::slurp($cfg->{path}) =~ s/^user = .*$/user = "no-such-user-rg"/mr);
($rc, $out, $err) = run_rateguard('-c', $nouser, '-f', 'run');
is($rc, 2, 'missing user: exit 2');
like($err, qr/user 'no-such-user-rg' does not exist/, 'missing user: message');

done_testing();
