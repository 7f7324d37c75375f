#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 29-slowloris.t - hostile clients against the worker pool. 300 connections
# that send one byte and stall must not starve the legitimate client
# (workers.max_per_client caps what one address can hold; read_timeout
# closes the stalled ones); refusals and timeouts are counted always and
# logged once per kind a minute, the rest summed up in one line; when every worker holds an idle connection, stress
# mode closes them for the connections waiting (t/42-stress.t tests stress
# mode with the default configuration).
#
# Linux routes all of 127.0.0.0/8 to lo, so 127.0.0.2 and 127.0.0.3 serve
# as other client hosts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use IO::Select;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request policy_send request_text
          read_reply run_rateguard migrated_database wait_until slurp status_json connect_from closed_within);

my $db = migrated_database('slowloris');

sub vm_rss_kib {
    my ($pid) = @_;
    return (slurp("/proc/$pid/status") =~ /^VmRSS:\s+(\d+)/m)[0] // 0;
}

# --- 300 stalled connections from one address ---
my $c = write_config(database => $db, name => 'slow',
                     sections => { workers => "max = 64\nmax_per_client = 32\nread_timeout = 3\n" });
my $pid = start_daemon($c);
my $rss_before = vm_rss_kib($pid);

my @stalled = map { connect_from($c, '127.0.0.2') } 1 .. 300;
syswrite($_, 'r') for @stalled;
# Every connection is either being served (and stalling a worker) or
# already refused; wait until the daemon has seen all 300.
ok(wait_until(sub {
    my $s = status_json($c);
    ($s->{requests}{over_client_limit} // 0) >= 268 ? 1 : undef;
}, 15), '268 of 300 connections from 127.0.0.2 refused over workers.max_per_client = 32');
my $st = status_json($c);
is($st->{requests}{over_client_limit}, 268, 'status counts exactly 268 refusals');
cmp_ok($st->{workers}{busy}, '>=', 32, 'the 32 admitted stalled connections each hold a worker');

my @latency;
for my $i (1 .. 20) {
    my $t0 = time;
    my $s = policy_connect($c);
    my $r = policy_request($s, sasl_username => "legit$i\@example.org");
    push @latency, time - $t0;
    is($r, "action=DUNNO\n\n", "legitimate request $i answered while 300 connections stall") if $i <= 3;
    close $s;
}
my @sorted = sort { $a <=> $b } @latency;
my $median = ($sorted[9] + $sorted[10]) / 2;
diag(sprintf('legitimate requests during the stall: median %.1f ms, slowest %.1f ms (of 20)',
             $median * 1000, $sorted[-1] * 1000));
# The issue's figure is 100 ms; timings belong to `make bench`. This bound
# only catches a design where the stalled connections block everyone (then
# every request waits for read_timeout, 3 s): the median, not the slowest,
# so one request descheduled on a busy 2-core machine does not fail it; 1 s
# is far above the measured median (under 1 ms).
cmp_ok($median, '<', 1.0, 'legitimate requests do not wait for the stalled connections');

my $t0 = time;
my $closed = grep { closed_within($_, 8) } @stalled;
my $took = time - $t0;
is($closed, 300, 'all 300 stalled connections are closed (refused at once, or after read_timeout)');
diag(sprintf('the last stalled connection closed %.1f s after the check began (read_timeout 3 s)', $took));
my $log = slurp($c->{log});
my $timeouts = () = $log =~ /client 127\.0\.0\.2:\d+: read timeout after 3 s in a request, disconnecting/g;
is($timeouts, 1, 'the 32 admitted ones were closed by read_timeout: one line (once per kind a minute), the rest summed up later');
my $limit_lines = () = $log =~ /client 127\.0\.0\.2:\d+: already 32 connections from this address/g;
is($limit_lines, 1, '268 refusals, one log line (once per address per minute)');

close $_ for @stalled;
ok(wait_until(sub { (status_json($c)->{workers}{busy} // 99) == 0 ? 1 : undef }, 10),
   'every worker is free again');
my $s = policy_connect($c);
is(policy_request($s, sasl_username => 'after@example.org'), "action=DUNNO\n\n", 'still serving afterwards');
close $s;
my $rss_after = vm_rss_kib($pid);
diag("master VmRSS before $rss_before KiB, after $rss_after KiB");
cmp_ok($rss_after - $rss_before, '<', 4096, "the master's memory stays flat (grew less than 4 MiB)");
is(stop_daemon($pid), 0, 'TERM: exit 0');
my @more = slurp($c->{log}) =~ /read timeout in a request: (\d+) more like this in the last 60 s/g;
my $more = 0;
$more += $_ for @more;
is($more, 31, 'the 31 timeouts left out of the log are counted in the summary line (at the latest at stop)');

# --- refusals outside allowed_clients: every one counted, one log line ---
my $c2 = write_config(database => $db, name => 'allow', extra => qq{allowed_clients = { "127.0.0.1/32" }\n});
my $pid2 = start_daemon($c2);
for (1 .. 20) {
    my $r = connect_from($c2, '127.0.0.3');
    is(policy_send($r, request_text()), '', "refused client $_: closed without a reply") if $_ == 1;
    read_reply($r) if $_ > 1;
    close $r;
}
ok(wait_until(sub { (status_json($c2)->{requests}{refused} // 0) == 20 ? 1 : undef }, 5),
   'status counts all 20 refusals');
my $lines = () = slurp($c2->{log}) =~ /client 127\.0\.0\.3:\d+: not in allowed_clients, connection refused/g;
is($lines, 1, '20 refusals from one address: one log line');
my $ok = policy_connect($c2);
is(policy_request($ok, sasl_username => 'allowed@example.org'), "action=DUNNO\n\n", 'allowed client served');
close $ok;
is(stop_daemon($pid2), 0, 'TERM: exit 0');

# --- every worker holding an idle connection: stress mode frees them ---
my $c3 = write_config(database => $db, name => 'full',
                      sections => { workers => "min = 4\nmax = 4\nmin_spare = 0\nmax_spare = 4\n" });
my $pid3 = start_daemon($c3);
my @held = map { policy_connect($c3) } 1 .. 4;
is(policy_request($_, sasl_username => 'held@example.org'), "action=DUNNO\n\n", 'held connection answered')
    for @held;
my @waiting = map { policy_connect($c3) } 1 .. 3;
print {$_} request_text(sasl_username => 'queued@example.org') for @waiting;
is(join('', map { IO::Select->new($_)->can_read(5) ? read_reply($_) : 'none' } @waiting), "action=DUNNO\n\n" x 3,
   'with all 4 workers holding idle connections, the 3 waiting connections are answered (stress mode)');
my $closed_held = grep { closed_within($_, 2) } @held;
cmp_ok($closed_held, '>=', 3, 'rateguard closed the held idle connections to serve them');
is(status_json($c3)->{stress}{episodes}, 1, 'status counts the stress episode');
close $_ for @held, @waiting;
is(stop_daemon($pid3), 0, 'TERM: exit 0');
done_testing();
