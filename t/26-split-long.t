#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 26-split-long.t - PolicydRateGuard's quota bypass, fixed: it read one
# 2048-byte chunk, so a request split over two writes, or one whose long
# helo_name and sender pushed sasl_username past 2048 bytes, was answered
# DUNNO and not counted. Here both are answered and counted.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_send request_text
          migrated_database dbh wait_until BLOCK_REPLY);

my $BLOCK = BLOCK_REPLY;
my $db = migrated_database('splitlong');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 1);
my $pid = start_daemon($c);
my $s = policy_connect($c);

my $req = request_text(sasl_username => 'split@example.org', recipient_count => 1);
my $cut = index($req, 'sasl_username=') + 5;
print {$s} substr($req, 0, $cut);
$s->flush;
sleep 0.2;
is(policy_send($s, substr($req, $cut)), "action=DUNNO\n\n", 'request split inside sasl_username, 200 ms apart: answered');
is(policy_send($s, request_text(sasl_username => 'split@example.org', recipient_count => 1)), $BLOCK,
   'and counted: the next message passes quota 1');

my $helo = 'h' x 1500;
my $from = ('s' x 1488) . '@example.org';
$req = request_text(helo_name => $helo, sender => $from, sasl_username => 'long@example.org', recipient_count => 1);
cmp_ok(index($req, 'sasl_username='), '>', 3000, 'sasl_username comes after 3000 bytes');
is(policy_send($s, $req), "action=DUNNO\n\n", '1500-byte helo_name and sender: answered');
is(policy_send($s, request_text(sasl_username => 'long@example.org', recipient_count => 1)), $BLOCK,
   'and counted');

ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 4 }), 'four rows written');
is_deeply($h->selectall_arrayref('SELECT sender, msg_counter FROM ratelimits ORDER BY sender'),
          [['long@example.org', 2], ['split@example.org', 2]], 'both senders counted twice');
is(($h->selectrow_array(q{SELECT from_addr FROM messages WHERE sender = 'long@example.org' ORDER BY id LIMIT 1}))[0],
   $from, 'the 1500-byte sender is stored whole');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
$h->disconnect;
done_testing();
