#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 45-untrusted-input.t - request fields are data, whatever bytes they
# hold: control characters reach no log line or terminal (escaped as \xNN,
# one helper for all), a recipient_count beyond belief is answered on_error
# instead of poisoning the database, counters saturate in SQL as in the
# cache, and a sender of "." or ".." cannot move the webhook's URL path.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          migrated_database dbh wait_until slurp test_dir BLOCK_REPLY);
use Receiver;

my $db = migrated_database('untrusted');
my $h = dbh($db);
my $r = Receiver::start(log => test_dir() . '/hook.log');
my $c = write_config(database => $db, quota => 1, extra => qq{on_error = "DEFER_IF_PERMIT rateguard error"\n},
                     sections => { webhook => qq{enabled = true\nurl = "http://127.0.0.1:$r->{port}/hook/{sender}/blocked"\n}
                                            . qq{secret = "c2VjcmV0"\n} });
my $pid = start_daemon($c);
my $s = policy_connect($c);

# --- control characters: escaped in the log, in status and in show ---
my $evil = "evil\e]0;owned\a\@example.org";
is(policy_request($s, sasl_username => $evil, queue_id => "Q1\r\e[31mRED", recipient_count => "x\e[2J"),
   "action=DUNNO\n\n", 'a request full of control characters is answered as any other');
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 1 }, 10), 'and written');
my $log = slurp($c->{log});
unlike($log, qr/[\x00-\x09\x0b-\x1f\x7f]/, 'no control character in the log file');
like($log, qr/queue_id=Q1\\x0d\\x1b\[31mRED: recipient_count='x\\x1b\[2J' is not a number/,
     'the warning shows queue_id and recipient_count escaped as \\xNN');
like($log, qr/Q1\\x0d\\x1b\[31mRED: client=.*sasl_username=evil\\x1b\]0;owned\\x07\@example\.org/,
     'the counted line shows them escaped too');
my (undef, $status) = run_rateguard('-c', $c->{path}, 'status');
like($status, qr/^evil\\x1b\]0;owned\\x07\@example\.org +1 /m, 'status prints the sender escaped');
unlike($status, qr/\e|\a/, 'no control character reaches the terminal from status');
my (undef, $show) = run_rateguard('-c', $c->{path}, 'show', $evil);
like($show, qr/^sender: +evil\\x1b\]0;owned\\x07\@example\.org$/m, 'show prints the sender escaped');
unlike($show, qr/\e|\a/, 'no control character reaches the terminal from show');

# --- recipient_count beyond belief ---
is(policy_request($s, sasl_username => 'many@example.org', queue_id => 'QMANY', recipient_count => '4294967295'),
   "action=DEFER_IF_PERMIT rateguard error\n\n", 'recipient_count=4294967295: answered on_error');
is(policy_request($s, sasl_username => 'many@example.org', queue_id => 'QLIMIT', recipient_count => '100001'),
   "action=DEFER_IF_PERMIT rateguard error\n\n", 'recipient_count=100001 (over 100000): answered on_error');
like(slurp($c->{log}), qr/client [\d.:]+: queue_id=QMANY: recipient_count=4294967295 is over 100000, not believed; answering DEFER_IF_PERMIT rateguard error/,
     'a warning names the client and the value');
is(policy_request($s, sasl_username => 'many@example.org', queue_id => 'QMAX', recipient_count => '100000'),
   BLOCK_REPLY, 'recipient_count=100000 is believed (and blocks quota 1)');

# --- counters saturate in the database as in the cache ---
$h->do(q{INSERT INTO ratelimits (sender, quota, quota_reset, msg_counter, rcpt_counter, msg_total, rcpt_total)
         VALUES ('full@example.org', 4294967295, 4294967295, 0, 4294967290, 5, 4294967290)});
run_rateguard('-c', $c->{path}, 'reload-cache');
is(policy_request($s, sasl_username => 'full@example.org', queue_id => 'QFULL', recipient_count => '100'),
   "action=DUNNO\n\n", 'a sender 5 recipients short of the columns\' maximum sends 100');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE msgid = 'QFULL'}))[0] == 1 }, 10),
   'its message is written, not refused');
is_deeply($h->selectrow_arrayref(q{SELECT msg_total, rcpt_counter, rcpt_total FROM ratelimits WHERE sender = 'full@example.org'}),
          [6, 4294967295, 4294967295], 'recipient counters saturate at 4294967295 in the database');
ok(!-e test_dir() . '/rejected.log', 'no record set aside as refused');
is(($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE msgid IN ('QMANY', 'QLIMIT')}))[0], 0,
   'the unbelieved requests were not counted');

# --- "." and ".." in the webhook URL ---
for my $sender ('..', '.') {
    is(policy_request($s, sasl_username => $sender, recipient_count => 2), BLOCK_REPLY,
       "sender '$sender' blocked (2 recipients, quota 1)");
}
ok(wait_until(sub { (grep { $_->{target} =~ m{^/hook/%2E} } @{ Receiver::requests($r) }) == 2 }, 15),
   'both notifications arrive');
my %targets = map { $_->{target} => 1 } @{ Receiver::requests($r) };
ok($targets{'/hook/%2E%2E/blocked'}, "sender '..': POSTed to /hook/%2E%2E/blocked");
ok($targets{'/hook/%2E/blocked'}, "sender '.': POSTed to /hook/%2E/blocked");
ok(!$targets{'/blocked'} && !$targets{'/hook/blocked'}, 'never to a path moved by a dot segment');

close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
Receiver::stop($r);
$h->disconnect;
done_testing();
