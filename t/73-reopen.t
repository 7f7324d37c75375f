#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 73-reopen.t - `rateguard reopen-logs` (SIGUSR2, logrotate's postrotate)
# reaches every process: after the log file is moved away, the master, a
# worker, the writer and the notifier each write their next line to the
# new file, and the old file does not grow any more. Started as root,
# each of them runs as the configured user (t/27 has no notifier).
#
# Each process is made to log something of its own, told apart by the pid
# in the line: the master ("log file reopened"), a worker (a request's
# "client=" line), the writer ("refreshing the cache ... (asked)" after
# `rateguard reload-cache`; its pid is status --json's writer_pid) and the
# notifier (a webhook sent to t/lib/Receiver.pm; its pid from its start
# line). The same round is played before the move, so that every process
# has been writing to the old file.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database
          wait_until slurp test_dir run_rateguard status_json children_of);
use Receiver;

my $db = migrated_database('reopen');
my $r = Receiver::start(log => test_dir() . '/r73.log');
my $c = write_config(database => $db, quota => 1,
                     sections => { webhook => qq{enabled = true\nurl = "http://127.0.0.1:$r->{port}/hook/{sender}"\n}
                                              . qq{secret = "c2VjcmV0"\n},
                                   cache => "refresh_interval = 3600\n" });
my $pid = start_daemon($c);
my $log = $c->{log};

my $writer = wait_until(sub { status_json($c)->{writer_pid} });
ok($writer, "the writer's pid from status --json");
my $notifier = wait_until(sub { slurp($log) =~ /rateguard\[(\d+)\]: debug: notifier \1 started/ ? $1 : undef });
ok($notifier, "the notifier's pid from its start line");
my %child = map { $_ => 1 } children_of($pid);
ok($child{$writer} && $child{$notifier}, 'both are children of the master');

sub uid_of {
    my ($p) = @_;
    my ($uid) = slurp("/proc/$p/status") =~ /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m;
    return $1 == $2 && $2 == $3 ? $1 : "mixed $1/$2/$3";
}
SKIP: {
    skip 'the privilege drop needs root', 1 if $> != 0;
    my $nobody = getpwnam('nobody');
    my %uids = map { $_ => uid_of($_) } $pid, $writer, $notifier, children_of($pid);
    is_deeply([grep { $uids{$_} ne $nobody } sort keys %uids], [],
              'master, writer, notifier and workers run as the configured user (real, effective, saved uid)')
        or diag explain \%uids;
}

# Lines of $file written by $who matching $re.
sub lines_of {
    my ($file, $who, $re) = @_;
    return grep { /rateguard\[$who\]: / && /$re/ } split /\n/, slurp($file);
}

# Make the worker, the writer and the notifier log a line tagged $tag
# each; returns the pid of the worker that served the request.
sub round {
    my ($tag, $file) = @_;
    my $s = policy_connect($c);
    policy_request($s, sasl_username => "$tag\@example.org", queue_id => "${tag}Q1") for 1 .. 2;
    close $s;
    my ($worker) = wait_until(sub { slurp($file) =~ /rateguard\[(\d+)\]: info: ${tag}Q1: client=/ ? $1 : undef }, 5);
    my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'reload-cache');
    is($rc, 0, "$tag: reload-cache: exit 0") or diag $err;
    ok(wait_until(sub { lines_of($file, $writer, qr/writer: refreshing the cache from the database \(asked\)/) }, 5),
       "$tag: the writer's line is in $file");
    ok(wait_until(sub { lines_of($file, $notifier, qr/webhook: \S+ notified of \S+ for \Q$tag\E\@example\.org/) }, 10),
       "$tag: the notifier's line is in $file");
    ok($worker && grep({ $_ == $worker } children_of($pid)), "$tag: a worker's line is in $file")
        or diag slurp($file);
    ok($worker && $worker != $writer && $worker != $notifier, "$tag: the worker is neither writer nor notifier");
    return $worker;
}

round('BEFORE', $log);
my $writer_lines = () = lines_of($log, $writer, qr/refreshing the cache/);

# logrotate: move the file away, then `rateguard reopen-logs` (USR2).
rename $log, "$log.1" or die "rename $log: $!";
my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'reopen-logs');
is($rc, 0, 'reopen-logs: exit 0') or diag $err;
ok(wait_until(sub { -e $log && lines_of($log, $pid, qr/notice: log file reopened/) }, 5),
   "the master's line is in the new file");
sleep 0.2;
my $old = slurp("$log.1");

round('AFTER', $log);
is(slurp("$log.1"), $old, 'the old file has not grown since the reopen');
is(scalar(() = lines_of("$log.1", $writer, qr/refreshing the cache/)), $writer_lines,
   'no writer line went to the old file');
unlike($old, qr/AFTER/, 'no line of the second round is in the old file');

is(stop_daemon($pid), 0, 'stopped');
ok(lines_of($log, $pid, qr/notice: stopped/), "the master's last line is in the new file");
is(slurp("$log.1"), $old, 'the old file still has not grown');
Receiver::stop($r);
done_testing();
