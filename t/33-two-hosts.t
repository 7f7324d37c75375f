#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 33-two-hosts.t - two rateguard instances (think: two mail servers) on one
# database enforce one quota per sender: each writes increments and reads
# the row back after writing, so one instance learns the other's counts
# within one write. Their state files do not collide (named after the
# configuration). Quota 50, 200 messages of one sender alternating between
# the two: the database counts exactly 200, and the accepted messages
# exceed 50 at most by what was in flight on the other instance.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until test_dir);

my $BOUND = 10;     # overshoot allowed: requests in flight on the other host during one write round
my $db = migrated_database('twohosts');
my $h = dbh($db);
my @c = map { write_config(database => $db, name => "host$_", quota => 50,
                           sections => { cache => "refresh_interval = 1\n" }) } 1 .. 2;
my @pid = map { start_daemon($_) } @c;
my @s = map { policy_connect($_) } @c;

my $accepted = 0;
for my $i (1 .. 200) {
    my $r = policy_request($s[$i % 2], sasl_username => 'shared@example.org', recipient_count => 1,
                           instance => "two.$i", queue_id => sprintf('TWO%03d', $i));
    $accepted++ if $r eq "action=DUNNO\n\n";
    sleep 0.002;    # 500 messages/s from one sender: far beyond any legitimate one
}
diag("accepted $accepted of 200 with quota 50 over two instances");
cmp_ok($accepted, '>=', 50, 'at least the quota is accepted');
cmp_ok($accepted, '<=', 50 + $BOUND, "at most quota + $BOUND accepted");
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 200 }, 15), '200 rows');
is_deeply($h->selectrow_arrayref(q{SELECT msg_counter, rcpt_counter, msg_total, rcpt_total FROM ratelimits
          WHERE sender = 'shared@example.org'}), [200, 200, 200, 200], 'database counters exactly 200');
is(($h->selectrow_array('SELECT SUM(1 - blocked) FROM messages'))[0], $accepted, 'rows agree with the replies');
is(($h->selectrow_array('SELECT COUNT(*) FROM rateguard_progress'))[0], 4, 'each instance keeps its own progress (a row per lane)');
my @queues = glob(test_dir() . '/rateguard-*.queue');
is(scalar @queues, 2, 'two queue files, one per configuration');
close $_ for @s;
is(stop_daemon($_), 0, 'TERM: exit 0') for @pid;
$h->disconnect;
done_testing();
