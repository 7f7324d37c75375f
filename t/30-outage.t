#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 30-outage.t - 300 requests across a database outage: the server is
# stopped mid-run and started again 5 s later. Decisions continue from the
# cache (the quota is reached during the outage: blocks there, not the
# on_error reply, which is set apart from action_accept), no reply waits
# for the database, the records wait in the queue file (and, past half of
# it, in the spool file), and afterwards the database holds exactly what
# was counted: nothing lost, nothing doubled.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp database_server test_dir status_json BLOCK_REPLY DUNNO_REPLY);

my $db = migrated_database('outage');
my $ACCEPT = DUNNO_REPLY;
my $BLOCK = BLOCK_REPLY;
my $ERROR = 'DEFER_IF_PERMIT rateguard on_error';     # a daemon failing open or erring shows apart
# Quota 60 over three senders taking turns: sender (i % 3) sends its 61st
# message at i = 181..183, during the outage (101..250): every request
# after 180 is blocked, decided from the cache alone. A 1 MiB queue, so that
# the outage also pushes records into the spool.
my $c = write_config(database => $db, quota => 60, extra => qq{on_error = "$ERROR"\n},
                     sections => { cache => "queue_size = 1\n", database => "connect_timeout = 2\n" });
my $pid = start_daemon($c);
my $s = policy_connect($c);
my (%reply, %took);
my $from = ('f' x 4000) . '@example.org';     # big records fill the queue sooner

sub send_batch {
    my ($from_i, $to_i) = @_;
    for my $i ($from_i .. $to_i) {
        my $t0 = time;
        $reply{$i} = policy_request($s, sasl_username => 'sender' . ($i % 3) . '@example.org', recipient_count => 1,
                                    sender => $from, instance => "outage.$i", queue_id => sprintf('OUT%05d', $i));
        $took{$i} = time - $t0;
    }
}
sub want { return $_[0] <= 180 ? $ACCEPT : $BLOCK }
sub wrong { my ($from_i, $to_i) = @_; return [grep { $reply{$_} ne want($_) } $from_i .. $to_i] }
sub median { my @t = sort { $a <=> $b } @_; return $t[$#t / 2] }

send_batch(1, 100);
my $db_down = 1;
END { RG::database_server('start') if $db_down }     # for the tests after this one
database_server('stop');
my $down_at = time;
send_batch(101, 250);
is_deeply(wrong(101, 250), [], 'during the outage: 101..180 accepted, 181..250 blocked at the quota (from the cache)')
    or diag explain { map { $_ => $reply{$_} } @{ wrong(101, 250) } };
is(scalar(grep { index($reply{$_}, $ERROR) >= 0 } 101 .. 250), 0, 'no on_error reply during the outage');
ok(wait_until(sub { slurp($c->{log}) =~ /error: writer: database unavailable, \d+ record\(s\) kept queued/ }, 10),
   'the outage is logged');
ok(wait_until(sub { slurp($c->{log}) =~ /warning: writer: database still unavailable; \d+ record\(s\) moved to .*\.spool/ }, 10),
   'records moved to the spool file when the queue was half full');
my $spool = (glob(test_dir() . '/rateguard-*.spool'))[0];
ok($spool && -s $spool, 'the spool file holds records');
ok((status_json($c) // {})->{database}{pending} > 0, 'status: records pending while the database is down');
sleep 5 - (time - $down_at) if time - $down_at < 5;     # the outage lasts 5 s (the writer retries meanwhile)
database_server('start');
$db_down = 0;
send_batch(251, 300);

is_deeply(wrong(1, 300), [], 'every reply as the quota says: 180 accepted, 120 blocked, none an error');
# A reply that waited for the database would take up to
# database.connect_timeout (2 s here) or fail into on_error. The bounds are
# generous (latency figures belong in `make bench`): the outage's median
# within 10x the median before it, and no reply near connect_timeout.
my ($before, $during) = (median(@took{1 .. 100}), median(@took{101 .. 250}));
my $slowest = (sort { $b <=> $a } values %took)[0];
diag(sprintf('replies: median %.2f ms before the outage, %.2f ms during it; slowest %.1f ms',
             $before * 1000, $during * 1000, $slowest * 1000));
cmp_ok($during, '<=', 10 * $before, 'during the outage replies are as fast as before (median within 10x)');
cmp_ok($slowest, '<', 1, 'no reply waited for the database (all under half of connect_timeout)');

my $h = dbh($db);
# Settled: the database holds 300 rows and the daemon has nothing left to write.
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 300
                    && ((status_json($c) // {})->{database}{pending} // -1) == 0 }, 30),
   '300 messages rows once the database is back, nothing pending');
is(($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0], 300, 'exactly 300 rows: nothing doubled');
is(($h->selectrow_array('SELECT COUNT(DISTINCT msgid) FROM messages'))[0], 300, 'each message once');
is(($h->selectrow_array('SELECT COUNT(*) FROM messages WHERE blocked = 1'))[0], 120, 'the 120 blocked recorded as blocked');
is(($h->selectrow_array('SELECT SUM(msg_total) FROM ratelimits'))[0], 300, 'sum(msg_total) = 300');
is(($h->selectrow_array('SELECT SUM(msg_counter) FROM ratelimits'))[0], 300, 'sum(msg_counter) = 300 (blocked ones count)');
is_deeply($h->selectcol_arrayref('SELECT msgid FROM messages ORDER BY id'),
          [map { sprintf('OUT%05d', $_) } 1 .. 300], 'written in the order they were counted');
my $log = slurp($c->{log});
is(() = $log =~ /error: writer: database unavailable/g, 1, 'the outage is logged once');
like($log, qr/notice: writer: database available again/, 'and its end');
ok(wait_until(sub { !-s $spool }, 10), 'the spool file is emptied once written');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
$h->disconnect;
done_testing();
