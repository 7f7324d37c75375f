#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 32-reset-refresh.t - the period reset and operator edits reach a running
# daemon: `rateguard cleanup` unblocks a blocked sender at once (totals and
# locked quotas kept, old messages purged, and records still queued from
# before the reset never bring old counts back); a quota raised in SQL
# takes effect within cache.refresh_interval, or at once with
# `rateguard reload-cache`; a deleted row leaves the cache; the built-in
# reset schedule resets at the boundary: the cache at once, even with the
# database held away (its ratelimits table locked), then the database.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp run_rateguard status_json BLOCK_REPLY DUNNO_REPLY);

my $ACCEPT = DUNNO_REPLY;
my $BLOCK = BLOCK_REPLY;

sub cached {
    my ($c, $sender) = @_;
    my ($e) = grep { $_->{sender} eq $sender } @{ (status_json($c) // {})->{senders} // [] };
    return $e;
}

# --- cleanup ---
my $db = migrated_database('reset');
my $h = dbh($db);
$h->do(q{INSERT INTO ratelimits (sender, quota, quota_reset, quota_locked) VALUES ('vip@example.org', 100, 5, 1)});
my $c = write_config(database => $db, quota => 2, extra => "message_retention = 2\n",
                     sections => { cache => "refresh_interval = 3600\n" });
my $pid = start_daemon($c);
my $s = policy_connect($c);
my @r = map { policy_request($s, sasl_username => 'busy@example.org', recipient_count => 1) } 1 .. 3;
is_deeply(\@r, [$ACCEPT, $ACCEPT, $BLOCK], 'quota 2: the third message is blocked');
policy_request($s, sasl_username => 'vip@example.org', recipient_count => 1) for 1 .. 6;
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 9 }), 'written');
$h->do(q{INSERT INTO messages (sender, rcpt_count, blocked, msgid, created_at)
         VALUES ('busy@example.org', 1, 0, 'ANCIENT', NOW() - INTERVAL 10 DAY)});

my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'cleanup');
is($rc, 0, 'cleanup: exit 0') or diag $err;
like($err, qr/cleanup: 2 sender\(s\) reset, 1 message\(s\) purged/, 'cleanup: reset and purge logged');
like($err, qr/cleanup: the running daemon \(pid $pid\) re-read every sender from the database/,
     'cleanup: the running daemon confirmed');
is(policy_request($s, sasl_username => 'busy@example.org', recipient_count => 1), $ACCEPT,
   'the very next request of the blocked sender is accepted');
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 10 }), 'written');
is_deeply($h->selectall_arrayref(q{SELECT sender, quota, quota_reset, quota_locked, msg_counter, rcpt_counter,
          msg_total, rcpt_total FROM ratelimits ORDER BY sender}),
          [['busy@example.org', 2, 2, 0, 1, 1, 4, 4], ['vip@example.org', 100, 5, 1, 0, 0, 6, 6]],
          'counters restarted, totals kept, the locked quota 100 kept');
is(($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE msgid = 'ANCIENT'}))[0], 0,
   'messages older than the retention purged; the recent ones kept');

# --- queued before the reset, written after it: no old counts come back ---
@r = map { policy_request($s, sasl_username => 'late@example.org', recipient_count => 1) } 1 .. 3;
is_deeply(\@r, [$ACCEPT, $ACCEPT, $BLOCK], 'late@: blocked');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT msg_counter FROM ratelimits WHERE sender = 'late@example.org'}))[0] }),
   'late@ written');
$h->do('RENAME TABLE messages TO messages_away');     # the writer now fails and keeps records queued
@r = map { policy_request($s, sasl_username => 'late@example.org', recipient_count => 1,
                          queue_id => "LATE$_") } 1 .. 2;
is_deeply(\@r, [$BLOCK, $BLOCK], 'two more blocked messages queued while the writer cannot write');
my $c0 = write_config(database => $db, name => 'cleanup-only', sections => { cache => "refresh_interval = 3600\n" });
($rc, $out, $err) = run_rateguard('-c', $c0->{path}, 'cleanup');   # same database, no daemon of its own
is($rc, 0, 'cleanup while records are queued: exit 0') or diag $err;
kill 'WINCH', $pid;                                                  # as `rateguard cleanup` does
ok(wait_until(sub { my $e = cached($c, 'late@example.org'); $e && $e->{msg_counter} == 0 }, 10),
   'the daemon\'s cache is reset although records from before the reset are queued')
    or diag explain(cached($c, 'late@example.org')), slurp($c->{log}) =~ s/^.*client=.*\n//mgr;
is(policy_request($s, sasl_username => 'late@example.org', recipient_count => 1, queue_id => 'LATE3'), $ACCEPT,
   'late@ accepted after the reset');
$h->do('RENAME TABLE messages_away TO messages');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE msgid LIKE 'LATE%'}))[0] == 3 }, 15),
   'the queued records are written once the writer can');
ok(wait_until(sub { ((status_json($c) // {})->{database}{pending} // -1) == 0 }), 'nothing left to write');
is_deeply($h->selectrow_arrayref(q{SELECT msg_counter, rcpt_counter, msg_total, rcpt_total FROM ratelimits
          WHERE sender = 'late@example.org'}), [1, 1, 6, 6],
          'records from before the reset count in the totals only; the counters hold the new period');
is(cached($c, 'late@example.org')->{msg_counter}, 1, 'and the cache agrees');

# --- an operator's edit, at once with reload-cache ---
@r = map { policy_request($s, sasl_username => 'busy@example.org', recipient_count => 1) } 1 .. 3;
is_deeply(\@r, [$ACCEPT, $ACCEPT, $BLOCK], 'busy@ (reset again by the second cleanup) blocked again');
# Written: in the database (7 messages of busy@ so far) and nothing unwritten in the cache.
ok(wait_until(sub { my $e = cached($c, 'busy@example.org');
                    $e && defined $e->{unwritten_msg} && $e->{unwritten_msg} == 0
                    && ($h->selectrow_array(q{SELECT msg_total FROM ratelimits WHERE sender = 'busy@example.org'}))[0] == 7 }),
   'written') or diag explain cached($c, 'busy@example.org');
$h->do(q{UPDATE ratelimits SET quota = 50 WHERE sender = 'busy@example.org'});
# Not seen by itself: two write rounds after the edit (another sender's
# messages, each written and read back by the writer) leave the cache as it was.
for my $n (1 .. 2) {
    is(policy_request($s, sasl_username => 'other@example.org', recipient_count => 1, queue_id => "OTHER$n"), $ACCEPT,
       "other\@: message $n");
    ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE msgid = ?}, undef, "OTHER$n"))[0] }),
       "... written (a write round after the edit)");
}
# ... nor within 2 s (twice what a refresh_interval of 1 s would take).
ok(!wait_until(sub { ((cached($c, 'busy@example.org') // {})->{quota} // 0) != 2 }, 2),
   'refresh_interval 3600: the edit is not seen by itself') or diag explain cached($c, 'busy@example.org');
($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'reload-cache');
is($rc, 0, 'reload-cache: exit 0') or diag $err;
is(cached($c, 'busy@example.org')->{quota}, 50, 'reload-cache: the cache has the new quota');
is(policy_request($s, sasl_username => 'busy@example.org', recipient_count => 1), $ACCEPT,
   'after reload-cache the raised quota applies at once');
# A row deleted while the cache still knows its id: the writer looks rows
# up by that id first; a stale one falls back to the sender and a new row.
is(policy_request($s, sasl_username => 'gone@example.org', recipient_count => 1), $ACCEPT, 'gone@: first message');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT id FROM ratelimits WHERE sender = 'gone@example.org'}))[0] }),
   'its row is written');
my ($old_id) = $h->selectrow_array(q{SELECT id FROM ratelimits WHERE sender = 'gone@example.org'});
$h->do(q{DELETE FROM messages WHERE sender = 'gone@example.org'});
$h->do(q{DELETE FROM ratelimits WHERE sender = 'gone@example.org'});
is(policy_request($s, sasl_username => 'gone@example.org', recipient_count => 1, queue_id => 'GONE2'), $ACCEPT,
   'gone@: a message after its row was deleted (the cache still has the old id)');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE msgid = 'GONE2'}))[0] }), 'written');
my ($new_id, $total) = $h->selectrow_array(q{SELECT id, msg_total FROM ratelimits WHERE sender = 'gone@example.org'});
ok($new_id && $new_id != $old_id, 'a new row with a new id');
is($total, 1, 'counting the one message written since');
is(($h->selectrow_array(q{SELECT ratelimit_id FROM messages WHERE msgid = 'GONE2'}))[0], $new_id,
   'the messages row points at the new row');
$h->do(q{DELETE FROM messages WHERE sender = 'vip@example.org'});
$h->do(q{DELETE FROM ratelimits WHERE sender = 'vip@example.org'});
($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'reload-cache');
is($rc, 0, 'reload-cache: exit 0') or diag $err;
my $senders = (status_json($c) // {})->{senders};
ok($senders && grep({ $_->{sender} eq 'busy@example.org' } @$senders), 'status lists the cached senders (busy@)');
is(scalar(grep { $_->{sender} eq 'vip@example.org' } @{ $senders // [] }), 0,
   'a row deleted in the database leaves the cache');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'reload-cache');
is($rc, 3, 'reload-cache with no daemon: exit 3');

# --- within cache.refresh_interval ---
my $c2 = write_config(database => $db, name => 'interval', quota => 1, sections => { cache => "refresh_interval = 1\n" });
$pid = start_daemon($c2);
$s = policy_connect($c2);
@r = map { policy_request($s, sasl_username => 'slow@example.org', recipient_count => 1) } 1 .. 2;
is_deeply(\@r, [$ACCEPT, $BLOCK], 'quota 1: blocked');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM ratelimits WHERE sender = 'slow@example.org'}))[0] }),
   'written');
$h->do(q{UPDATE ratelimits SET quota = 10 WHERE sender = 'slow@example.org'});
my $t0 = time;
ok(wait_until(sub { (cached($c2, 'slow@example.org') // {})->{quota} == 10 }, 5), 'the raised quota reaches the cache');
diag(sprintf('quota edit seen after %.1f s with refresh_interval 1', time - $t0));
is(policy_request($s, sasl_username => 'slow@example.org', recipient_count => 1), $ACCEPT,
   'within the refresh interval the sender is accepted');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');

# --- the built-in schedule: an hourly boundary a few seconds away in a made-up zone ---
# The zone is fixed at the start, so the boundary is set before it: $margin
# seconds after the start began. A start that leaves under 1 s before the
# boundary is stopped and made again with twice its own duration added.
my ($c3, $tz, $boundary);
my $margin = 4;
for my $try (1 .. 4) {
    my $t_start = time;
    $boundary = int($t_start) + $margin;
    my $secs = (3600 - $boundary % 3600) % 3600;    # local time = UTC + secs: xx:00:00 at $boundary
    $tz = sprintf('RGT-%02d:%02d:%02d', int($secs / 3600), int($secs % 3600 / 60), $secs % 60);
    $c3 = write_config(database => $db, name => "hourly$try", quota => 1,
                       sections => { quota => "reset_schedule = hourly\n" });
    $pid = start_daemon($c3, env => { TZ => $tz });
    last if $boundary - time >= 1;
    diag(sprintf('start took %.1f s, past the boundary\'s margin: again', time - $t_start));
    is(stop_daemon($pid), 0, 'TERM: exit 0');
    $margin = 3 + 2 * int(time - $t_start + 1);
}
cmp_ok($boundary - time, '>=', 0.5, 'the daemon is up before the hourly boundary');
$s = policy_connect($c3);
@r = map { policy_request($s, sasl_username => 'hourly@example.org', recipient_count => 1) } 1 .. 2;
is_deeply(\@r, [$ACCEPT, $BLOCK], 'quota 1: blocked before the boundary');
# The cache resets itself at the boundary; the database follows. Held
# away from the database (its ratelimits table locked, so the writer's
# reset and re-read wait), the daemon must still accept at once: the
# writer's reset reaching the cache later would hide a cache that kept
# its counters.
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE sender = 'hourly@example.org'}))[0] == 2 }),
   'both messages written before the boundary');
$h->do('LOCK TABLES ratelimits WRITE');
ok(time < $boundary, 'ratelimits locked before the boundary') or diag 'the accept below proves less';
ok(wait_until(sub { slurp($c3->{log}) =~ /period reset \(hourly schedule\): [1-9]\d* cached sender\(s\) reset/ }, $boundary - time + 10),
   'the daemon resets its cache at the hourly boundary') or diag "TZ=$tz\n", slurp($c3->{log}) =~ s/^.*client=.*\n//mgr;
is(policy_request($s, sasl_username => 'hourly@example.org', recipient_count => 1), $ACCEPT,
   'accepted after the boundary, the database\'s reset still waiting');
unlike(slurp($c3->{log}), qr/notice: period reset: \d+ sender\(s\) reset/, '... (the database has not followed yet)');
$h->do('UNLOCK TABLES');
ok(wait_until(sub { slurp($c3->{log}) =~ /notice: period reset: \d+ sender\(s\) reset/ }, 10),
   'the database follows');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT msg_counter FROM ratelimits WHERE sender = 'hourly@example.org'}))[0] == 1 }, 10),
   'database: one message in the new period');
is(($h->selectrow_array(q{SELECT msg_total FROM ratelimits WHERE sender = 'hourly@example.org'}))[0], 3, 'totals kept');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
$h->disconnect;
done_testing();
