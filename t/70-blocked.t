#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 66-blocked.t - "who is blocked right now?" (issue 26): `rateguard
# blocked` lists exactly the senders whose next message would be refused,
# with the reason and since when, and `status` shows a sender at exactly
# 100% as it will be answered ("full"), not "ok". Then what unblocks:
# raising the quota to the count reached does not, raising it above does,
# `reset` does. The oracle is the daemon's next reply to each sender.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(strftime);
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard migrated_database
          status_json wait_until dbh BLOCK_REPLY send_n);

my $db = migrated_database('blocked');
my $c = write_config(database => $db, quota => 3);
my $pid = start_daemon($c);
my $BLOCK = BLOCK_REPLY;
# The last reply of $n requests from $who.
sub last_of { my ($who, $n) = @_; return send_n($c, $who, $n)->[-1] }
sub blocked_text { my (undef, $out) = run_rateguard('-c', $c->{path}, 'blocked'); return $out }
# `--json blocked`'s document; undef (so the checks fail) if it gives none.
sub blocked_json { return status_json($c, 'blocked') }
my $h = dbh($db);

my $before = time;
is(last_of('ok@example.org', 2), "action=DUNNO\n\n", 'ok@: 2 of 3');
is(last_of('full@example.org', 3), "action=DUNNO\n\n", 'full@: 3 of 3, the third accepted');
is(last_of('over@example.org', 4), $BLOCK, 'over@: 4 of 3, the fourth refused');
is(last_of('reset@example.org', 4), $BLOCK, 'reset@: refused too, then reset below');
my $after = time;
# `reset` acts on the database's row: wait until the writer has made it.
ok(wait_until(sub { ($h->selectrow_array(q{SELECT msg_counter FROM ratelimits WHERE sender = 'reset@example.org'}) // 0) == 4 }),
   'reset@\'s row is written (msg_counter 4)');
my ($rc) = run_rateguard('-c', $c->{path}, 'reset', 'reset@example.org');
is($rc, 0, 'rateguard reset reset@: exit 0');
($rc) = run_rateguard('-c', $c->{path}, 'set-quota', 'locked@example.org', '0', '--locked');
is($rc, 0, 'rateguard set-quota locked@ 0 --locked: exit 0');
last_of('locked@example.org', 1);

my $j = blocked_json();
ok($j, 'rateguard --json blocked: exit 0, a JSON document');
my %got = map { $_->{sender} => $_ } @{ $j->{blocked} };
is_deeply([sort keys %got], [qw(full@example.org locked@example.org over@example.org)],
          'blocked lists exactly full@ (at 100%), over@ and locked@; not ok@, not reset@');
is_deeply([map { "$got{$_}{reason} $got{$_}{msg_counter}/$got{$_}{msg_limit}" } sort keys %got],
          ['quota 3/3', 'locked 1/0', 'quota 4/3'], 'with the reason and the counts against the limits');
is_deeply([map { $got{$_}{refused_this_period} ? 1 : 0 } sort keys %got], [0, 1, 1],
          'full@ has had nothing refused yet; over@ and locked@ have');
ok(!grep({ !defined $got{$_}{since} || $got{$_}{since} < $before - 1 || $got{$_}{since} > $after + 1 }
         qw(full@example.org over@example.org)), 'since: the moment the quota filled, within the run');
is($j->{senders}, 5, 'out of the 5 cached senders');

my $text = blocked_text();
my $since = strftime('%Y-%m-%d %H:%M:%S', localtime $got{'full@example.org'}{since});
like($text, qr/^full\@example\.org\s+quota\s+3\/3\s+3\/3\s+\Q$since\E$/m, 'text: full@, its counts and since');
like($text, qr/^3 of 5 cached sender\(s\) would be refused now$/m, 'text: the count');
unlike($text, qr/^(ok|reset)\@/m, 'text: not ok@ nor reset@');

my %state = map { $_->{sender} => $_->{next_refused} ? 1 : 0 } @{ status_json($c)->{senders} };
is_deeply(\%state, { 'ok@example.org' => 0, 'full@example.org' => 1, 'over@example.org' => 1,
                     'reset@example.org' => 0, 'locked@example.org' => 1 }, 'status --json: next_refused');
my (undef, $status) = run_rateguard('-c', $c->{path}, 'status');
like($status, qr/^full\@example\.org\s.*\sfull\s+\d+\/\d+$/m, 'status: full@ shows "full", not "ok"');
like($status, qr/^over\@example\.org\s.*\sBLOCKED\s/m, 'status: over@ shows BLOCKED');
like($status, qr/^ok\@example\.org\s.*\sok\s/m, 'status: ok@ shows ok');

# The replies agree with the listing.
is(last_of('full@example.org', 1), $BLOCK, 'full@\'s next message is indeed refused');
is(last_of('ok@example.org', 1), "action=DUNNO\n\n", 'ok@\'s next is accepted (3 of 3)');

# What unblocks: a quota equal to the count reached does not; above it does; reset does.
# over@ counted 4 (refused messages count: quota.count_blocked).
($rc) = run_rateguard('-c', $c->{path}, 'set-quota', 'over@example.org', '4');
is($rc, 0, 'set-quota over@ 4, the count it reached: exit 0');
my $over = blocked_json()->{blocked};
ok(scalar(grep { $_->{sender} eq 'over@example.org' } @$over), 'raised to its count: still blocked');
is(last_of('over@example.org', 1), $BLOCK, 'and refused');
($rc) = run_rateguard('-c', $c->{path}, 'set-quota', 'over@example.org', '10');
ok(!grep({ $_->{sender} eq 'over@example.org' } @{ blocked_json()->{blocked} }), 'raised above: not listed');
is(last_of('over@example.org', 1), "action=DUNNO\n\n", 'and accepted');
($rc) = run_rateguard('-c', $c->{path}, 'reset', 'full@example.org');
ok(!grep({ $_->{sender} eq 'full@example.org' } @{ blocked_json()->{blocked} }), 'reset full@: not listed');
is(last_of('full@example.org', 1), "action=DUNNO\n\n", 'and accepted');

# Not running: exit 3, as status.
is(stop_daemon($pid), 0, 'TERM: exit 0');
($rc) = run_rateguard('-c', $c->{path}, 'blocked');
is($rc, 3, 'blocked with no daemon: exit 3');
done_testing();
