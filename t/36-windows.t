#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 36-windows.t - sliding windows (quota.windows) alongside the period
# quota: a short window blocks a burst and lets the sender go again once
# it has slid past; a longer one holds the total; blocked messages count
# in the windows as in the quota (count_blocked); the windows are per
# sender; a bad window is refused with its line.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          migrated_database slurp wait_until BLOCK_REPLY kill_family);

my $db = migrated_database('windows');
my $OK = "action=DUNNO\n\n";
my $BLOCK = BLOCK_REPLY;
my $c = write_config(database => $db, quota => 1000,
                     sections => { quota => qq{windows = { "3/4s", "5/60" }\n} });
my $pid = start_daemon($c);
my $s = policy_connect($c);
sub send_as { my ($who, $qid) = @_; policy_request($s, sasl_username => $who, recipient_count => 1, queue_id => $qid) }

my $t0 = time;
is_deeply([map { send_as('burst@example.org', "B$_") } 1 .. 4], [$OK, $OK, $OK, $BLOCK],
          '3 per 4 s: the 4th message of a burst is blocked');
like(slurp($c->{log}), qr/B4: .*curr_count=4\/1000, status=BLOCKED \(QUOTA_LIMIT_REACHED\) \(WINDOW 3\/4s\)/,
     'logged with the window (the period quota of 1000 is far away)');
is_deeply([send_as('other@example.org'), send_as('other@example.org')], [$OK, $OK], 'other senders have windows of their own');
sleep 4.5 - (time - $t0);
is(send_as('burst@example.org', 'B5'), $OK, 'after the window slid past: accepted again');
my (undef, $shown) = run_rateguard('-c', $c->{path}, 'show', 'burst@example.org');
like($shown, qr/^window:      1 of 3 messages in the last 4 s\nwindow:      5 of 5 messages in the last 1 min$/m,
     'show: every window with its count');
is(send_as('burst@example.org', 'B6'), $BLOCK, 'the 6th in 60 s is blocked by the longer window (the blocked one counted)');
like(slurp($c->{log}), qr/B6: .*status=BLOCKED \(QUOTA_LIMIT_REACHED\) \(WINDOW 5\/60\)/, "logged with the longer window (a first block again: B5 passed)");
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');

# The windows live in shared memory: a restart rebuilds them from the
# messages rows of the last window length.
my $r = write_config(database => $db, name => 'restart', quota => 1000,
                     sections => { quota => qq{windows = { "3/1h" }\n} });
$pid = start_daemon($r);
$s = policy_connect($r);
is_deeply([map { send_as('steady@example.org') } 1 .. 3], [$OK, $OK, $OK], '3 per hour: three accepted');
close $s;
is(stop_daemon($pid), 0, 'stopped (the writer writes all three first)');
$pid = start_daemon($r);
$s = policy_connect($r);
is(send_as('steady@example.org', 'AFTER'), $BLOCK, 'after a restart the 4th in the hour is still blocked');
like(slurp($r->{log}), qr/AFTER: .*\(WINDOW 3\/1h\)/, 'by the rebuilt window');

# A reload cannot change the windows: their counters are laid out for them.
open my $fh, '<', $r->{path} or die;
my $conf = do { local $/; <$fh> };
close $fh;
$conf =~ s{"3/1h"}{"3/1d"};
open $fh, '>', $r->{path} or die;
print $fh $conf;
close $fh;
kill 'HUP', $pid;
ok(wait_until(sub { slurp($r->{log}) =~ /reload: quota\.windows takes effect at the next restart/ }), 'HUP: the change is deferred, logged');
close $s;
sleep 0.5;
$s = policy_connect($r);
is(send_as('steady@example.org', 'RELOADED'), $BLOCK, 'still blocked by the running window');
like(slurp($r->{log}), qr/RELOADED: .*\(WINDOW 3\/1h\)/, 'named as before');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');

# Killed with counts still queued (the writer stuck on locked tables): the
# restart counts the queued records into the windows too.
my $k = write_config(database => $db, name => 'crash', quota => 1000,
                     sections => { quota => qq{windows = { "2/1h" }\n} });
$pid = start_daemon($k);
my $locker = RG::dbh($db);
$locker->do('LOCK TABLES ratelimits WRITE, messages WRITE, rateguard_progress WRITE');
$s = policy_connect($k);
is_deeply([map { send_as('queued@example.org', "Q$_") } 1 .. 2], [$OK, $OK], '2 per hour: two accepted, both still queued');
ok(kill_family($pid), 'master, workers and writer killed');
close $s;
$locker->do('UNLOCK TABLES');
$pid = start_daemon($k);
$s = policy_connect($k);
is(send_as('queued@example.org', 'Q3'), $BLOCK, 'after the restart the third in the hour is blocked (queued records replayed into the window)');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');

my $bad = write_config(database => $db, name => 'bad', sections => { quota => qq{windows = { "100/1w" }\n} });
my ($rc, undef, $err) = run_rateguard('-c', $bad->{path}, '-t');
is($rc, 5, 'an unknown unit: configuration error');
like($err, qr/bad\.conf:\d+: quota\.windows: '100\/1w': the length must be 1 s to 366 d/, '... with file, line and reason');
done_testing();
