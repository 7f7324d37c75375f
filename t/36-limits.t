#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 36-limits.t - the limits beyond PolicydRateGuard's single quota:
# exemptions (SASL user, domain of the user name, client network, IPv4 and
# IPv6) answered without counting; the per-message recipient cap; the
# warning threshold with its QUOTA_WARNING webhook; the monitor mode
# (quota.dry_run) that counts and logs what it would block but accepts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          migrated_database dbh wait_until slurp test_dir BLOCK_REPLY row fields status_json);
use Receiver;

my $db = migrated_database('limits');
my $h = dbh($db);
my $OK = "action=DUNNO\n\n";
my $BLOCK = BLOCK_REPLY;
my $r = Receiver::start(log => test_dir() . '/limits-receiver.log');

my @ROW = qw(msg_counter rcpt_counter msg_total);
sub blocked_flags {
    my ($who) = @_;
    return $h->selectcol_arrayref(q{SELECT blocked FROM messages WHERE sender = ? ORDER BY id}, undef, $who);
}
sub stats { return status_json($_[0])->{requests} }

my $c = write_config(database => $db, quota => 10, sections => {
    quota => "warning_percent = 80\nmax_recipients = 5\n",
    exempt => qq{users = { "Relay\@Example.org" }\ndomains = { "trusted.example" }\n}
            . qq{networks = { "192.0.2.0/24", "2001:db8:1::/48" }\n},
    webhook => qq{enabled = true\nurl = "http://127.0.0.1:$r->{port}/hook?event={event}"\nsecret = "Wk9YZXliVlVtY2pQcFlFUm9KY1U1ZkFFaUpWTk1FU20="\n},
});
my $pid = start_daemon($c);
my $s = policy_connect($c);
sub send_as { my (%a) = @_; policy_request($s, recipient_count => 1, %a) }

# --- exemptions: accepted, never counted, no row ---
is(send_as(sasl_username => 'relay@example.org'), $OK, 'exempt user (any case): accepted') for 1 .. 12;
is(send_as(sasl_username => 'app@trusted.example', recipient_count => 50), $OK, 'exempt domain: accepted, even 50 recipients');
is(send_as(sasl_username => 'net4@example.org', client_address => '192.0.2.77'), $OK, 'exempt IPv4 network: accepted');
is(send_as(sasl_username => 'net6@example.org', client_address => '2001:db8:1:ff::25'), $OK, 'exempt IPv6 network: accepted');
is(send_as(sasl_username => 'near@example.org', client_address => '2001:db8:2::25', queue_id => 'NEAR1'), $OK,
   'outside the IPv6 network: counted');
ok(wait_until(sub { row($h, 'near@example.org') }), 'the counted one is written');
is_deeply($h->selectcol_arrayref(q{SELECT sender FROM ratelimits ORDER BY sender}), ['near@example.org'],
          'no row for any exempt sender');
my $log = slurp($c->{log});
like($log, qr/client=\[127\.0\.0\.1\], sasl_username=relay\@example\.org, status=EXEMPT \(user\), not counted/, 'user exemption logged');
like($log, qr/sasl_username=app\@trusted\.example, status=EXEMPT \(domain\)/, 'domain exemption logged');
like($log, qr/client=\[192\.0\.2\.77\], sasl_username=net4\@example\.org, status=EXEMPT \(network\)/, 'IPv4 network logged');
like($log, qr/client=\[2001:db8:1:ff::25\], sasl_username=net6\@example\.org, status=EXEMPT \(network\)/, 'IPv6 network logged');
is(stats($c)->{exempt}, 15, 'status counts 15 exempt requests');

# --- the per-message recipient cap ---
is(send_as(sasl_username => "wide\@example.org", recipient_count => 3), $OK, "3 recipients: within the cap of 5");
is(send_as(sasl_username => 'wide@example.org', recipient_count => 6, queue_id => 'WIDE6'), $BLOCK,
   '6 recipients in one message: blocked');
ok(wait_until(sub { @{ blocked_flags('wide@example.org') } == 2 }), 'both written');
is_deeply(blocked_flags('wide@example.org'), [0, 1], 'messages.blocked 0, then 1');
is_deeply(fields(row($h, 'wide@example.org'), @ROW), [2, 9, 2], 'the capped message is counted (count_blocked)');
like(slurp($c->{log}), qr/WIDE6: .*recipient_count=6, curr_count=9\/10, status=BLOCKED \(TOO_MANY_RECIPIENTS\)/,
     'logged as TOO_MANY_RECIPIENTS, not as the quota');

# --- the warning threshold: 80% of 10 ---
my @got = map { send_as(sasl_username => 'warm@example.org', queue_id => "WARM$_") } 1 .. 11;
is_deeply(\@got, [($OK) x 10, $BLOCK], 'quota 10: ten accepted, the 11th blocked');
$log = slurp($c->{log});
my @warned = $log =~ /(WARM\d+): .*status=ACCEPTED \(QUOTA_WARNING 80%\)/g;
is_deeply(\@warned, ['WARM8'], 'the warning is logged once, on the 8th message (8 of 10)');
ok(wait_until(sub { @{ Receiver::requests($r) } >= 3 }, 10), "the receiver is called three times") or diag(join "", grep { /webhook|notif/i } split /^/m, slurp($c->{log}));
sleep 0.5;
my @calls = map { [$_->{target}, decode_json($_->{body})] } @{ Receiver::requests($r) };
is(scalar @calls, 3, "three calls: wide's warning (9 of 10 recipients), warm's warning, warm's block");
is($calls[0][0], '/hook?event=QUOTA_WARNING', 'first call: {event} = QUOTA_WARNING');
is_deeply([@{ $calls[0][1] }{qw(event msgid sender quota used)}], ['QUOTA_WARNING', 'WIDE6', 'wide@example.org', 10, 9],
          'the capped message still passed 80% of the recipients: warning');
is_deeply([@{ $calls[1][1] }{qw(event msgid sender quota used)}], ['QUOTA_WARNING', 'WARM8', 'warm@example.org', 10, 8],
          'warning payload: event, msgid, sender, quota, used');
is($calls[2][0], '/hook?event=QUOTA_LIMIT_REACHED', 'third call: {event} = QUOTA_LIMIT_REACHED');
ok(!exists $calls[2][1]{event}, "the block's payload is PolicydRateGuard's (no event key)");
is($calls[2][1]{msgid}, 'WARM11', 'for the blocked message');
is(stats($c)->{warnings}, 2, 'status counts the warnings (wide@ passed 80% too)');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');

# --- monitor mode ---
my $m = write_config(database => $db, name => 'dry', quota => 2, sections => { quota => "dry_run = true\nmax_recipients = 3\n" });
$pid = start_daemon($m);
$s = policy_connect($m);
@got = map { send_as(sasl_username => 'dry@example.org', queue_id => "DRY$_") } 1 .. 4;
is_deeply(\@got, [($OK) x 4], 'dry_run: quota 2, four messages, all accepted');
is(send_as(sasl_username => 'dry@example.org', recipient_count => 4, queue_id => 'DRYWIDE'), $OK,
   'dry_run: over the recipient cap, accepted');
ok(wait_until(sub { my $x = row($h, 'dry@example.org'); $x && $x->{msg_total} == 5 }), 'all five written');
is_deeply(fields(row($h, 'dry@example.org'), @ROW), [5, 8, 5], 'every message counted as the accept it was');
is_deeply(blocked_flags('dry@example.org'), [0, 0, 0, 0, 0], 'messages.blocked 0 for all');
$log = slurp($m->{log});
my @would = $log =~ /(DRY\w+): .*status=ACCEPTED .*\(DRY_RUN: WOULD_BLOCK\)/g;
is_deeply(\@would, ['DRY3', 'DRY4', 'DRYWIDE'], 'the three it would have blocked are logged as such');
like($log, qr/DRYWIDE: .*\(TOO_MANY_RECIPIENTS\) \(DRY_RUN: WOULD_BLOCK\)/, 'with the reason');
my $st = stats($m);
is_deeply([@$st{qw(accepted blocked would_block)}], [5, 0, 3], 'status: 5 accepted, 0 blocked, 3 would_block');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
Receiver::stop($r);
done_testing();
