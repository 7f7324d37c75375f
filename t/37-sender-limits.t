#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 37-sender-limits.t - a sender's own limits (migration 004): separate
# message and recipient quotas (NULL keeps the one quota of
# PolicydRateGuard for both) and the Postfix action used when it is
# blocked; invalid actions are refused by the database; changes reach the
# running daemon with the refresh.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          migrated_database dbh wait_until slurp BLOCK_REPLY status_json);

my $db = migrated_database('senderlimits');
my $h = dbh($db);
my $OK = "action=DUNNO\n\n";
my $TEXT = BLOCK_REPLY =~ s/^action=\S+//r;    # " Rate limit reached, retry later.\n\n"
my $BLOCK = "action=DEFER_IF_PERMIT$TEXT";

my $ins = $h->prepare(q{INSERT INTO ratelimits (sender, quota, quota_reset, msg_quota, rcpt_quota, block_action)
                        VALUES (?, ?, ?, ?, ?, ?)});
$ins->execute('few@example.org', 100, 100, 3, undef, undef);
$ins->execute('narrow@example.org', 100, 100, undef, 5, undef);
$ins->execute('plain@example.org', 2, 2, undef, undef, undef);
$ins->execute('held@example.org', 1, 1, undef, undef, 'HOLD');
$ins->execute('rej@example.org', 1, 1, undef, undef, 'REJECT');
$ins->execute('both@example.org', 100, 100, 2, 3, 'DISCARD');
ok(!eval { $ins->execute('bad@example.org', 1, 1, undef, undef, 'BOUNCE'); 1 },
   'an action outside HOLD, DEFER_IF_PERMIT, REJECT, DEFER, DISCARD is refused by the database');

my $c = write_config(database => $db, quota => 1000);
my $pid = start_daemon($c);
my $s = policy_connect($c);
sub send_as { my ($who, $rcpt, $qid) = @_; policy_request($s, sasl_username => $who, recipient_count => $rcpt, queue_id => $qid) }

is_deeply([map { send_as('few@example.org', 2, "FEW$_") } 1 .. 4], [$OK, $OK, $OK, $BLOCK],
          'msg_quota 3 (quota 100): three messages of 2 recipients, the 4th blocked');
like(slurp($c->{log}), qr/FEW4: .*recipient_count=2, curr_count=4\/3, status=BLOCKED \(QUOTA_LIMIT_REACHED\)/,
     'logged against the message quota');
is_deeply([map { send_as('narrow@example.org', 3, "NAR$_") } 1 .. 2], [$OK, $BLOCK],
          'rcpt_quota 5 (quota 100): 3 recipients, then 3 more blocked');
like(slurp($c->{log}), qr/NAR2: .*curr_count=6\/5, status=BLOCKED/, 'logged against the recipient quota');
is_deeply([map { send_as('plain@example.org', 1) } 1 .. 3], [$OK, $OK, $BLOCK], 'both NULL: quota 2 for both');
is_deeply([map { send_as('held@example.org', 1) } 1 .. 2], [$OK, "action=HOLD$TEXT"], 'block_action HOLD');
is_deeply([map { send_as('rej@example.org', 1) } 1 .. 2], [$OK, "action=REJECT$TEXT"], 'block_action REJECT');
is_deeply([map { send_as('both@example.org', 1) } 1 .. 3], [$OK, $OK, "action=DISCARD$TEXT"],
          'msg_quota 2, rcpt_quota 3, DISCARD: the 3rd message is discarded');
is_deeply([map { send_as('fresh@example.org', 1) } 1 .. 2], [$OK, $OK], 'a sender without a row: quota.default');

# The status dump carries the limits.
my %by = map { $_->{sender} => $_ } @{ status_json($c)->{senders} };
is_deeply([@{ $by{'both@example.org'} }{qw(msg_quota rcpt_quota block_action blocked)}], [2, 3, 5, JSON::PP::true],
          'status --json: msg_quota, rcpt_quota, block_action (enum index), blocked');
ok($by{'plain@example.org'} && !exists $by{'plain@example.org'}{msg_quota}, 'no msg_quota key for a NULL limit');
my (undef, $out) = run_rateguard('-c', $c->{path}, 'show', 'both@example.org');
like($out, qr/^limits:      2 messages, 3 recipients per period$/m, 'show: the limits');
like($out, qr/^when blocked: DISCARD$/m, 'show: the action');
like($out, qr/^used:        150\.0% of the quota, BLOCKED$/m, 'show: percent of the nearer limit (3 of 2 messages)');

# Changed in the database: the daemon follows.
$h->do(q{UPDATE ratelimits SET msg_quota = 10 WHERE sender = 'few@example.org'});
$h->do(q{UPDATE ratelimits SET block_action = NULL WHERE sender = 'rej@example.org'});
is((run_rateguard('-c', $c->{path}, 'reload-cache'))[0], 0, 'reload-cache');
is(send_as('few@example.org', 2), $OK, 'msg_quota raised to 10: accepted again');
is(send_as('rej@example.org', 1), $BLOCK, 'block_action back to NULL: action_blocked');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
done_testing();
