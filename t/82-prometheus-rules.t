#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 82-prometheus-rules.t - the alerting rules of contrib/prometheus (issue
# 30) with Debian's promtool (no daemon, no database):
#   - `promtool check rules` accepts rateguard.rules.yml;
#   - `promtool test rules` passes rateguard.rules.test.yml: each alert
#     fires on the series it should, with its labels and annotations, and
#     stays quiet on the ones it should not;
#   - those unit tests can fail: each rule's threshold or `for:` mutated
#     alone (in a copy in a temporary folder) makes `promtool test rules`
#     fail, naming that alert: no rule goes untested.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use RG qw(slurp);

my $dir = "$FindBin::Bin/../contrib/prometheus";
my $rules = "$dir/rateguard.rules.yml";
my $tests = "$dir/rateguard.rules.test.yml";
my ($promtool) = grep { -x } map { "$_/promtool" } split /:/, $ENV{PATH} // '';
ok($promtool, 'promtool is installed (Debian package prometheus, installed by make test)')
    or BAIL_OUT('no promtool: apt-get install prometheus');

# Run promtool with @args in folder $cwd; returns (exit code, output).
sub promtool {
    my ($cwd, @args) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        chdir $cwd or die "$cwd: $!";
        exec($promtool, @args) or die "exec $promtool: $!";
    }
    my $out = do { local $/; <$fh> };
    close $fh;
    return ($? >> 8, $out);
}

my ($rc, $out) = promtool($dir, 'check', 'rules', 'rateguard.rules.yml');
is($rc, 0, 'promtool check rules: exit 0') or diag($out);
like($out, qr/SUCCESS: 7 rules found/, 'promtool check rules: 7 rules');

($rc, $out) = promtool($dir, 'test', 'rules', 'rateguard.rules.test.yml');
is($rc, 0, 'promtool test rules: exit 0') or diag($out);
like($out, qr/SUCCESS/, 'promtool test rules: SUCCESS');

# Every alert of the rules file has its test.
my @alerts = slurp($rules) =~ /^\s*- alert: (\w+)$/mg;
my $test_text = slurp($tests);
is(scalar(@alerts), 7, '7 alerts in the rules file');
for my $a (@alerts) {
    like($test_text, qr/alertname: \Q$a\E$/m, "$a has unit tests");
}

# The mutations: [alert, text in the rules file, its replacement]. Each
# is applied alone to a copy; the unit tests must then fail and name the
# alert. Thresholds both ways where a series sits on each side.
my @mutations = (
    ['RateguardWriterLagging', 'rateguard_db_write_lag_seconds > 60', 'rateguard_db_write_lag_seconds > 600'],
    ['RateguardWriterLagging', "expr: rateguard_db_write_lag_seconds > 60\n        for: 5m",
     "expr: rateguard_db_write_lag_seconds > 60\n        for: 2m"],
    ['RateguardFailedTransactions', '[5m]) > 3', '[5m]) > 1'],
    ['RateguardFailedTransactions', 'and on (job, instance) max_over_time(rateguard_db_up[1m]) == 1', ''],
    ['RateguardFailedTransactions', 'max_over_time(rateguard_db_up[1m]) == 1', 'min_over_time(rateguard_db_up[1m]) == 1'],
    ['RateguardFailedTransactions', "== 1\n        for: 10m", "== 1\n        for: 3m"],
    ['RateguardDatabaseDown', "rateguard_db_up == 0\n        for: 2m", "rateguard_db_up == 0\n        for: 1m"],
    ['RateguardDatabaseDown', "rateguard_db_up == 0\n        for: 2m", "rateguard_db_up == 0\n        for: 10m"],
    ['RateguardStress', 'or on (job, instance) increase(rateguard_stress_episodes_total[1m]) > 0', ''],
    ['RateguardStress', "> 0\n        for: 5m", "> 0\n        for: 1m"],
    ['RateguardSnapshotTooOld', 'rateguard_snapshot_age_seconds > 300', 'rateguard_snapshot_age_seconds > 3000'],
    ['RateguardSnapshotTooOld', 'unless on (job, instance) max_over_time(rateguard_db_up[1m]) == 0', ''],
    ['RateguardBlockBurst', '[5m])) > 30', '[5m])) > 20'],
    ['RateguardBlockBurst', '[5m])) > 30', '[5m])) > 150'],
    ['RateguardHijackedAccount', 'increase(rateguard_signal_episodes_total[10m]) > 0',
     'increase(rateguard_signal_episodes_total[10m]) > 1'],
    ['RateguardHijackedAccount', 'increase(rateguard_signal_episodes_total[10m]) > 0',
     'increase(rateguard_signal_episodes_total[30m]) > 0'],
);
my $text = slurp($rules);
my %mutated;
for my $m (@mutations) {
    my ($alert, $from, $to) = @$m;
    (my $what = "'$from' -> '$to'") =~ s/\n\s*/ /g;
    my $i = index($text, $from);
    ok($i >= 0 && index($text, $from, $i + 1) < 0, "mutation of $alert ($what): found once in the rules")
        or next;
    my $tmp = tempdir('rg-rules-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $copy = $text;
    substr($copy, $i, length $from) = $to;
    for ([$tmp . '/rateguard.rules.yml', $copy], [$tmp . '/rateguard.rules.test.yml', $test_text]) {
        open my $fh, '>', $_->[0] or die "$_->[0]: $!";
        print $fh $_->[1];
        close $fh;
    }
    my ($crc, $cout) = promtool($tmp, 'check', 'rules', 'rateguard.rules.yml');
    is($crc, 0, "mutation of $alert ($what): still valid rules") or diag($cout);
    my ($trc, $tout) = promtool($tmp, 'test', 'rules', 'rateguard.rules.test.yml');
    isnt($trc, 0, "mutation of $alert ($what): promtool test rules fails");
    like($tout, qr/alertname: \Q$alert\E,/, "mutation of $alert: the failure names $alert") or diag($tout);
    $mutated{$alert}++;
}
is_deeply([sort keys %mutated], [sort @alerts], 'every alert had a mutation caught');

done_testing();
