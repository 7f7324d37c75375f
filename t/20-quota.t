#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 20-quota.t - the quota rules end to end, with PolicydRateGuard's vectors:
# replies, the ratelimits row, the messages rows, the log lines.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request slurp
          migrated_database dbh wait_until BLOCK_REPLY row fields);

my $ACCEPT = "action=DUNNO\n\n";
my $BLOCK = BLOCK_REPLY;

my $db = migrated_database('quota');
my $h = dbh($db);
# A locked row with a raised quota, and a row already at its quota.
$h->do(q{INSERT INTO ratelimits (sender, quota, quota_reset, quota_locked) VALUES ('locked@example.com', 100, 5, 1)});
$h->do(q{INSERT INTO ratelimits (sender, quota, quota_reset, msg_counter, rcpt_counter, msg_total, rcpt_total)
         VALUES ('full@example.com', 5, 5, 5, 5, 50, 60)});

my $c = write_config(database => $db, quota => 5);
my $pid = start_daemon($c);
my $s = policy_connect($c);

sub messages_of {
    my ($sender) = @_;
    return $h->selectall_arrayref(q{SELECT msgid, sender, rcpt_count, blocked, from_addr, to_addr,
        client_address, client_name, ratelimit_id IS NOT NULL FROM messages WHERE sender = ? ORDER BY id},
        undef, $sender);
}

# The ratelimits columns the checks below compare, in their order.
my @ROW = qw(quota quota_reset quota_locked msg_counter rcpt_counter msg_total rcpt_total);
sub row_of { return fields(row($h, $_[0]), @ROW) }

sub wait_rows {
    my ($sender, $n) = @_;
    return wait_until(sub { @{ messages_of($sender) } == $n }, 10);
}

# --- facts.md: quota 5, recipients 3, 2, 1, 1 -> accept, accept, block, block ---
my @rcpts = (3, 2, 1, 1);
my @replies = map { policy_request($s, sasl_username => 'alice@example.org', sender => 'alice@example.org',
                                   recipient_count => $rcpts[$_], queue_id => "QA$_$$", instance => "alice.$_") }
              0 .. 3;
is_deeply(\@replies, [$ACCEPT, $ACCEPT, $BLOCK, $BLOCK], 'recipients 3, 2, 1, 1: accept, accept, block, block');
ok(wait_rows('alice@example.org', 4), 'four messages rows written');
is_deeply(row_of('alice@example.org'), [5, 5, 0, 4, 7, 4, 7], 'row: quota 5/5, counters 4/7, totals 4/7');
is_deeply([map { $_->[3] } @{ messages_of('alice@example.org') }], [0, 0, 1, 1], 'messages blocked 0, 0, 1, 1');
is_deeply(messages_of('alice@example.org')->[0],
          ["QA0$$", 'alice@example.org', 3, 0, 'alice@example.org', '', '127.0.0.1', 'localhost', 1],
          'messages row fields: msgid, sender, rcpt_count, blocked, from, to, client, ratelimit_id');

# --- six 0-recipient messages: the sixth blocked ---
@replies = map { policy_request($s, sasl_username => 'zero@example.org', recipient_count => 0) } 1 .. 6;
is_deeply(\@replies, [($ACCEPT) x 5, $BLOCK], 'six 0-recipient messages: the sixth blocked');
ok(wait_rows('zero@example.org', 6), 'six rows');
is_deeply(row_of('zero@example.org'), [5, 5, 0, 6, 0, 6, 0], 'counters 6/0');

# --- the first message of a new sender can already be blocked ---
is(policy_request($s, sasl_username => 'big@example.org', recipient_count => 6), $BLOCK,
   'first message with 6 recipients, quota 5: blocked');

# --- no sasl_username: DUNNO, nothing stored ---
is(policy_request($s, sasl_username => ''), $ACCEPT, 'empty sasl_username: DUNNO');
is(policy_request($s, sasl_username => undef), $ACCEPT, 'absent sasl_username: DUNNO');
# --- other states and requests count nothing ---
is(policy_request($s, sasl_username => 'rcpt@example.org', protocol_state => 'RCPT'), $ACCEPT, 'RCPT state: DUNNO');
is(policy_request($s, sasl_username => 'eom@example.org', protocol_state => 'END-OF-MESSAGE'), $ACCEPT,
   'END-OF-MESSAGE state: DUNNO');
is(policy_request($s, sasl_username => 'other@example.org', request => 'junk'), $ACCEPT, 'other request type: DUNNO');

# --- preloaded rows: locked raised quota, a sender already at its quota ---
@replies = map { policy_request($s, sasl_username => 'locked@example.com', recipient_count => 1) } 1 .. 10;
is_deeply(\@replies, [($ACCEPT) x 10], 'locked quota 100: ten messages accepted');
is(policy_request($s, sasl_username => 'full@example.com', recipient_count => 0), $BLOCK,
   'preloaded sender at its quota: blocked at once');

# --- one message asked about twice (same instance): counted once ---
my %same = (sasl_username => 'twice@example.org', recipient_count => 2, instance => 'dup.1', queue_id => 'DUP1');
is(policy_request($s, %same), $ACCEPT, 'instance asked once: accepted');
is(policy_request($s, %same), $ACCEPT, 'same instance again: same answer');

# --- case-insensitive sender ---
policy_request($s, sasl_username => 'Case@Example.ORG', recipient_count => 1);
policy_request($s, sasl_username => 'case@example.org', recipient_count => 1);

# --- missing optional attributes never turn a decision into DUNNO ---
my %bare = (queue_id => undef, client_name => undef, sasl_method => undef, sender => undef,
            recipient => undef, client_address => undef, helo_name => undef);
@replies = map { policy_request($s, %bare, sasl_username => 'bare@example.org', recipient_count => 3) } 1 .. 2;
is_deeply(\@replies, [$ACCEPT, $BLOCK], 'optional attributes missing: still counted and blocked');

# --- recipient_count not a number: 0 recipients, logged ---
is(policy_request($s, sasl_username => 'nan@example.org', recipient_count => 'many'), $ACCEPT,
   'non-numeric recipient_count: accepted');

# --- long values are stored whole ---
my $long_from = ('f' x 1490) . '@example.org';
my $long_to = ('t' x 1490) . '@example.org';
is(policy_request($s, sasl_username => 'long@example.org', sender => $long_from, recipient => $long_to,
                  recipient_count => 1), $ACCEPT, '1500-byte sender and recipient: answered');

# --- a sasl_username the database cannot store: on_error, logged ---
is(policy_request($s, sasl_username => ('u' x 300) . '@example.org'), $ACCEPT,
   '300-character sasl_username: on_error (DUNNO)');

ok(wait_rows('long@example.org', 1), 'long row written');
is_deeply($h->selectrow_arrayref(q{SELECT LENGTH(from_addr), LENGTH(to_addr), from_addr = ?, to_addr = ?
          FROM messages WHERE sender = 'long@example.org'}, undef, $long_from, $long_to),
          [1502, 1502, 1, 1], '1502-byte from_addr and to_addr stored whole');
ok(wait_rows('nan@example.org', 1), 'nan row written');
is_deeply(row_of('nan@example.org'), [5, 5, 0, 1, 0, 1, 0], 'non-numeric recipient_count counted as 0');
ok(wait_rows('bare@example.org', 2), 'bare rows written');
is_deeply($h->selectall_arrayref(q{SELECT msgid, from_addr, to_addr, client_address, client_name, blocked
          FROM messages WHERE sender = 'bare@example.org' ORDER BY id}),
          [['', '', '', '', '', 0], ['', '', '', '', '', 1]], 'bare rows: empty fields, blocked 0 then 1');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM ratelimits WHERE sender = 'case@example.org'}))[0] }),
   'case row written');
is_deeply($h->selectall_arrayref(q{SELECT sender, msg_counter, rcpt_counter FROM ratelimits WHERE sender LIKE 'case@%'}),
          [['Case@Example.ORG', 2, 2]], 'sender case-insensitive: one row (first spelling), counters 2/2');
ok(wait_rows('twice@example.org', 1), 'twice row written');
is(scalar @{ messages_of('twice@example.org') }, 1, 'same instance: one messages row');
is_deeply(row_of('twice@example.org'), [5, 5, 0, 1, 2, 1, 2], 'same instance: counted once');
ok(wait_rows('locked@example.com', 10), 'locked rows written');
is_deeply(row_of('locked@example.com'), [100, 5, 1, 10, 10, 10, 10], 'locked row: quota 100 kept, counters 10');
is_deeply(row_of('full@example.com'), [5, 5, 0, 6, 5, 51, 60], 'preloaded row: counted on top of its counters');
is_deeply($h->selectall_arrayref(q{SELECT sender FROM ratelimits WHERE sender IN ('rcpt@example.org',
          'eom@example.org', 'other@example.org', '')}), [], 'requests that do not count store nothing');
is(($h->selectrow_array(q{SELECT COUNT(*) FROM ratelimits WHERE sender LIKE 'uuuu%'}))[0], 0,
   'unstorable sender: nothing stored');

# --- the log lines ---
my $log = slurp($c->{log});
like($log, qr/: QA0$$: client=localhost\[127\.0\.0\.1\], helo=client\.example\.org, sasl_method=PLAIN, sasl_username=alice\@example\.org, from=alice\@example\.org, to=, recipient_count=3, curr_count=3\/5, status=ACCEPTED\n/,
     'log line of an accepted message');
like($log, qr/: QA2$$: client=localhost\[127\.0\.0\.1\], .*recipient_count=1, curr_count=6\/5, status=BLOCKED \(QUOTA_LIMIT_REACHED\)\n/,
     'log line of the first block');
like($log, qr/: NOQUEUE: client=unknown\[\], helo=, sasl_method=, sasl_username=bare\@example\.org, from=, to=, recipient_count=3, curr_count=3\/5, status=ACCEPTED\n/,
     'log line with attributes missing');
like($log, qr/warning: client 127\.0\.0\.1:\d+: queue_id=\w+: recipient_count='many' is not a number, counting 0 recipients/,
     'non-numeric recipient_count logged');
like($log, qr/error: client 127\.0\.0\.1:\d+: sasl_username=u+\.\.\. cannot be stored in the database \(longer than 255 characters\); answering DUNNO/,
     'unstorable sender logged');
like($log, qr/status=ACCEPTED \(ALREADY_COUNTED\)/, 'second ask of one instance logged as such');

close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
$h->disconnect;
done_testing();
