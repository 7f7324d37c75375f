#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 12-daemon.t - the daemon's life cycle and the protocol basics: it starts,
# answers requests on a persistent connection (also pipelined and split
# over several writes), closes malformed connections without a reply,
# refuses a second instance (exit 3), ignores a stale pidfile, reports
# status, and stops on TERM with exit 0.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(run_rateguard write_config start_daemon stop_daemon policy_connect
          policy_request policy_send request_text slurp migrated_database);

my $c = write_config(database => migrated_database('daemon'), sections => { workers => "min = 2\n" });

# A stale pidfile (a daemon killed with SIGKILL) must not prevent the start.
open my $fh, '>', $c->{pidfile} or die;
print $fh "999999\n";
close $fh;

my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'status');
is($rc, 3, 'status with no daemon: exit 3');
like($err, qr/not running/, 'status with no daemon: says so');

my $pid = start_daemon($c);
ok($pid, 'daemon started over a stale pidfile');
is(slurp($c->{pidfile}), "$pid\n", 'pidfile holds the master pid (foreground mode too)');

my $s = policy_connect($c);
is(policy_request($s), "action=DUNNO\n\n", 'first request answered');
is(policy_request($s, sasl_username => ''), "action=DUNNO\n\n", 'second request on the same connection');
is(policy_request($s, protocol_state => 'RCPT'), "action=DUNNO\n\n", 'third request on the same connection');
is(policy_send($s, request_text() . request_text()), "action=DUNNO\n\n", 'two pipelined requests: first reply');
is(RG::read_reply($s), "action=DUNNO\n\n", 'two pipelined requests: second reply');

# A request split over two writes 200 ms apart.
my $req = request_text();
print {$s} substr($req, 0, 100);
$s->flush;
sleep 0.2;
is(policy_send($s, substr($req, 100)), "action=DUNNO\n\n", 'request split over two writes');

# CRLF line ends are tolerated.
(my $crlf = request_text()) =~ s/\n/\r\n/g;
is(policy_send($s, $crlf), "action=DUNNO\n\n", 'CRLF request answered');
close $s;

# Malformed input: closed without a reply, logged with the client's address.
for my $case (['line without =', "request=smtpd_access_policy\nnonsense\n\n"],
              ['overlong line', 'helo_name=' . ('x' x 10000) . "\n\n"],
              ['NUL byte', "request=smtpd\0access_policy\n\n"],
              ['attribute without a name', "=value\n\n"]) {
    my ($what, $bytes) = @$case;
    my $m = policy_connect($c);
    is(policy_send($m, $bytes), '', "$what: connection closed without a reply");
    close $m;
}
sleep 0.1;
my $log = slurp($c->{log});
like($log, qr/client 127\.0\.0\.1:\d+: malformed request \(line without '='\), disconnecting/,
     'malformed request logged with the client');
like($log, qr/malformed request \(line too long\)/, 'overlong line logged');
like($log, qr/malformed request \(NUL byte in request\)/, 'NUL byte logged');

# The daemon still serves after all that.
$s = policy_connect($c);
is(policy_request($s), "action=DUNNO\n\n", 'still serving after malformed clients');

# A second daemon with the same pidfile: exit 3.
($rc, $out, $err) = run_rateguard('-c', $c->{path}, '-f', 'run');
is($rc, 3, 'second daemon on the same pidfile: exit 3');
like($err, qr/already running \(pid $pid, pidfile \Q$c->{pidfile}\E\)/, 'second daemon: names the running pid');

($rc, $out) = run_rateguard('-c', $c->{path}, 'status');
is($rc, 0, 'status with a daemon: exit 0');
like($out, qr/^rateguard \S+, pid $pid, up \d+ s\n/, 'status names the pid');

close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
ok(!-e $c->{pidfile}, 'TERM: pidfile removed');
($rc) = run_rateguard('-c', $c->{path}, 'status');
is($rc, 3, 'status after stop: exit 3');
my @bad = grep { / (error|fatal|panic): / && !/fatal: already running/ } split /\n/, slurp($c->{log});
is_deeply(\@bad, [], 'no errors in the log but the refused second start');

done_testing();
