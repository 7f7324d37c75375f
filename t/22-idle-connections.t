#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 22-idle-connections.t - Postfix keeps one persistent policy connection per
# smtpd process. With 200 connections open and idle, a new connection must
# be served at once (the pool keeps spare workers ahead of demand), and the
# pool shrinks back when the connections go away.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          migrated_database wait_until status_json);

my $c = write_config(database => migrated_database('idle'),
                     sections => { workers => "min = 2\nmin_spare = 2\nmax_spare = 4\n" });
my $pid = start_daemon($c);

my @held;
for my $i (1 .. 200) {
    my $s = policy_connect($c);
    my $r = policy_request($s, sasl_username => "idle$i\@example.org", recipient_count => 1);
    push @held, $s if $r eq "action=DUNNO\n\n";
}
is(scalar @held, 200, '200 connections answered and held open');

# Five new connections, each answered on its own; their median time.
my ($s, @took, @replies);
for my $i (1 .. 5) {
    my $t0 = time;
    $s = policy_connect($c);
    push @replies, policy_request($s, sasl_username => "newcomer$i\@example.org");
    push @took, time - $t0;
    close $s if $i < 5;
}
my $elapsed = (sort { $a <=> $b } @took)[2];
is_deeply(\@replies, [("action=DUNNO\n\n") x 5], 'new connections are answered while 200 are held');
diag(sprintf('new connections answered in %.1f ms (median of 5) with 200 idle connections held', $elapsed * 1000));
# Timings belong in `make bench`; this bound only catches a design that
# waits for a held connection to go away or for a once-a-second pool tick
# (then every new connection waits up to 1 s). The median, so one request
# descheduled on a busy 2-core machine does not fail it; the measured
# median is under 1 ms.
cmp_ok($elapsed, '<', 1.0, 'answered without waiting for a held connection or a pool tick');

my $st = status_json($c);
cmp_ok($st->{workers}{busy}, '>=', 201, 'status: at least 201 busy workers');
cmp_ok($st->{workers}{idle}, '>=', 1, 'status: spare workers kept idle');

close $_ for @held, $s;
# Spares above max_spare retire within a few seconds.
my $shrunk = wait_until(sub {
    my $j = status_json($c);
    $j->{workers}{running} <= 4 ? $j : undef;
}, 15);
ok($shrunk, 'the pool shrinks back to max_spare idle workers once the connections close');

is(stop_daemon($pid), 0, 'TERM: exit 0');
done_testing();
