#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 46-notified-once.t - the quota-reached webhook is sent once per sender and
# period, whatever happens to the daemon: a graceful restart, a SIGKILL of
# every process, a second host on the same database. A period reset
# (`rateguard cleanup`) and a new block make exactly one more. The
# notifier sends in order, so a marker sender's notification, sent after
# the requests under test, proves nothing else was queued before it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until run_rateguard test_dir BLOCK_REPLY kill_family hooked send_n status_json);
use Receiver;

my $BLOCK = BLOCK_REPLY;
my $DUNNO = "action=DUNNO\n\n";
my $db = migrated_database('notified');
my $h = dbh($db);
my $r = Receiver::start(log => test_dir() . '/r46.log');

# A host's config: quota 2, blocks notified to the receiver.
sub host { my ($name) = @_; return hooked($db, "http://127.0.0.1:$r->{port}/hook/{sender}", name => $name,
                                             sections => { cache => "refresh_interval = 1\n" }) }

# Notifications received, per sender.
sub calls {
    my %n;
    $n{ decode_json($_->{body})->{sender} }++ for @{ Receiver::requests($r) };
    return \%n;
}

sub written {
    my ($sender) = @_;
    return ($h->selectrow_array('SELECT COUNT(*) FROM messages WHERE sender = ?', undef, $sender))[0];
}

sub notified {
    my ($sender) = @_;
    return ($h->selectrow_array('SELECT notified FROM ratelimits WHERE sender = ?', undef, $sender))[0];
}

# A marker sender blocked now: once its notification is in, every one
# queued before it has been sent.
my $markers = 0;
sub settle {
    my ($c) = @_;
    my $m = 'marker' . ++$markers . '@example.org';
    send_n($c, $m, 3);
    return wait_until(sub { calls()->{$m} }, 20);
}

my $c = host('host1');
my $pid = start_daemon($c);
my $s1 = 'blocked@example.org';
is_deeply(send_n($c, $s1, 3), [$DUNNO, $DUNNO, $BLOCK], 'quota 2: accept, accept, block');
ok(wait_until(sub { calls()->{$s1} }, 10), 'the first block is notified');
ok(wait_until(sub { written($s1) == 3 && notified($s1) == 1 }, 10), 'ratelimits.notified = 1 with the block\'s record');

# --- graceful restart ---
is(stop_daemon($pid), 0, 'TERM: exit 0');
$pid = start_daemon($c);
is_deeply(send_n($c, $s1, 2), [$BLOCK, $BLOCK], 'after a graceful restart: still blocked');
ok(settle($c), 'marker notified');
is(calls()->{$s1}, 1, 'graceful restart: no second notification');

# --- SIGKILL of every process ---
ok(wait_until(sub { written($s1) == 5 }, 10), 'the requests are written');
ok(kill_family($pid), 'master, workers, writer and notifier killed with SIGKILL');
$pid = start_daemon($c);
is_deeply(send_n($c, $s1, 2), [$BLOCK, $BLOCK], 'after SIGKILL: still blocked');
ok(settle($c), 'marker notified');
is(calls()->{$s1}, 1, 'SIGKILL and restart: no second notification');

# --- killed before the block's record is written: the queue replays it ---
my $s2 = 'queued@example.org';
my $locker = dbh($db);
$locker->do('LOCK TABLES ratelimits WRITE, messages WRITE, rateguard_progress WRITE');
is_deeply(send_n($c, $s2, 3), [$DUNNO, $DUNNO, $BLOCK], 'blocked while the writer is held');
ok(wait_until(sub { calls()->{$s2} }, 10), 'notified (the notifier needs no database)');
ok(kill_family($pid), 'killed with the block\'s record still queued');
$locker->do('UNLOCK TABLES');
$pid = start_daemon($c);
is_deeply(send_n($c, $s2, 1), [$BLOCK], 'the replayed record blocks');
ok(wait_until(sub { written($s2) == 4 && notified($s2) == 1 }, 15), 'written once, notified = 1');
ok(settle($c), 'marker notified');
is(calls()->{$s2}, 1, 'a block still queued at the kill is not notified again');

# --- period reset: one more, exactly ---
my ($rc, undef, $err) = run_rateguard('-c', $c->{path}, 'cleanup');
is($rc, 0, 'cleanup: exit 0') or diag $err;
is(notified($s1), 0, 'cleanup clears ratelimits.notified');
is_deeply(send_n($c, $s1, 3), [$DUNNO, $DUNNO, $BLOCK], 'new period: accept, accept, block');
ok(wait_until(sub { (calls()->{$s1} // 0) >= 2 }, 10), 'the new period\'s block is notified');
ok(settle($c), 'marker notified');
is(calls()->{$s1}, 2, 'exactly two notifications over two periods');

# --- a second host on the same database ---
my $c2 = host('host2');
my $pid2 = start_daemon($c2);
my $s3 = 'twohosts@example.org';
is_deeply(send_n($c, $s3, 3), [$DUNNO, $DUNNO, $BLOCK], 'host 1: accept, accept, block');
ok(wait_until(sub { calls()->{$s3} }, 10), 'host 1 notifies');
ok(wait_until(sub { written($s3) == 3 && notified($s3) == 1 }, 10), 'written with notified = 1');
ok(wait_until(sub {
    grep { $_->{sender} eq $s3 && $_->{msg_counter} == 3 } @{ status_json($c2)->{senders} };
}, 15), 'host 2 has read the row at its refresh');
is_deeply(send_n($c2, $s3, 2), [$BLOCK, $BLOCK], 'host 2 blocks the sender');
ok(settle($c2), 'marker notified by host 2');
ok(settle($c), 'marker notified by host 1');
is(calls()->{$s3}, 1, 'two hosts: one notification');
is(stop_daemon($pid2), 0, 'host 2: TERM, exit 0');
is(stop_daemon($pid), 0, 'host 1: TERM, exit 0');

# --- counts are exact ---
is_deeply($h->selectall_arrayref(q{SELECT r.sender, r.msg_total, COUNT(m.id) FROM ratelimits r
                                   LEFT JOIN messages m ON m.ratelimit_id = r.id
                                   WHERE r.sender NOT LIKE 'marker%' GROUP BY r.id ORDER BY r.sender}),
          [['blocked@example.org', 10, 10], ['queued@example.org', 4, 4], ['twohosts@example.org', 5, 5]],
          'every request written once');
Receiver::stop($r);
$h->disconnect;
$locker->disconnect;
done_testing();
