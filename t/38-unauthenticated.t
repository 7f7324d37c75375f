#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 38-unauthenticated.t - limits for clients that do not authenticate,
# counted by client address inside unauthenticated.networks (IPv6 by
# prefix, /64 by default) as policyd-rate-limit does; each counter is a
# ratelimits row named "[ADDRESS]" or "[NETWORK]/PREFIX", so quotas,
# operator commands and the period reset work on it as on any sender.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          migrated_database dbh wait_until slurp BLOCK_REPLY);

my $db = migrated_database('unauth');
my $h = dbh($db);
my $OK = "action=DUNNO\n\n";
my $BLOCK = BLOCK_REPLY;
my $c = write_config(database => $db, quota => 1000, sections => {
    unauthenticated => qq{networks = { "192.0.2.0/24", "2001:db8::/32" }\nquota = 2\n},
    exempt => qq{networks = { "192.0.2.250/32" }\n},
});
my $pid = start_daemon($c);
my $s = policy_connect($c);
sub from { my ($addr, $qid) = @_; policy_request($s, sasl_username => '', sasl_method => '', client_address => $addr,
                                                recipient_count => 1, queue_id => $qid) }

is_deeply([map { from('192.0.2.7', "V4A$_") } 1 .. 3], [$OK, $OK, $BLOCK], '192.0.2.7: quota 2, the 3rd blocked');
is(from('192.0.2.8'), $OK, '192.0.2.8 has a counter of its own');
is_deeply([from('2001:db8:1:2::5'), from('2001:db8:1:2:ffff::6'), from('2001:db8:1:2::7', 'V6C')], [$OK, $OK, $BLOCK],
          'three addresses of one /64 share its counter: the 3rd blocked');
is(from('2001:db8:1:3::5'), $OK, 'the next /64 has a counter of its own');
is_deeply([map { from('198.51.100.9') } 1 .. 3], [$OK, $OK, $OK], 'outside unauthenticated.networks: never counted');
is_deeply([map { from('192.0.2.250') } 1 .. 3], [$OK, $OK, $OK], 'an exempt network inside them: never counted');
is(policy_request($s, sasl_username => 'user@example.org', client_address => '192.0.2.7'), $OK,
   'an authenticated sender from a limited address counts as itself');

ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 9 }), 'nine messages written');
is_deeply($h->selectall_arrayref('SELECT sender, quota, msg_counter, msg_total FROM ratelimits ORDER BY sender'),
          [['[192.0.2.7]', 2, 3, 3], ['[192.0.2.8]', 2, 1, 1], ['[2001:db8:1:2::]/64', 2, 3, 3],
           ['[2001:db8:1:3::]/64', 2, 1, 1], ['user@example.org', 1000, 1, 1]],
          'rows: one per client counter with unauthenticated.quota, the user with quota.default');
is_deeply($h->selectcol_arrayref(q{SELECT client_address FROM messages WHERE sender = '[2001:db8:1:2::]/64' ORDER BY id}),
          ['2001:db8:1:2::5', '2001:db8:1:2:ffff::6', '2001:db8:1:2::7'], 'messages keep each client address');
my $log = slurp($c->{log});
like($log, qr/V4A3: client=localhost\[192\.0\.2\.7\], .*sasl_username=, .*curr_count=3\/2, status=BLOCKED \(QUOTA_LIMIT_REACHED\), unauthenticated, counted as \[192\.0\.2\.7\]/,
     'the log line names the counter');
like($log, qr/V6C: .*status=BLOCKED \(QUOTA_LIMIT_REACHED\), unauthenticated, counted as \[2001:db8:1:2::\]\/64/, 'the /64 counter');

# The operator commands work on a client counter like on a sender.
is((run_rateguard('-c', $c->{path}, 'reset', '[192.0.2.7]'))[0], 0, 'reset [192.0.2.7]');
is(from('192.0.2.7'), $OK, 'after the reset 192.0.2.7 is accepted again');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');

# The prefixes are configurable.
my $c2 = write_config(database => $db, name => 'wide', sections => {
    unauthenticated => qq{networks = { "192.0.2.0/24" }\nquota = 1\nipv4_prefix = 24\n} });
$pid = start_daemon($c2);
$s = policy_connect($c2);
is_deeply([from('192.0.2.20'), from('192.0.2.21')], [$OK, $BLOCK], 'ipv4_prefix 24: the whole /24 shares one counter');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT msg_total FROM ratelimits WHERE sender = '[192.0.2.0]/24'}))[0] }),
   'its row is "[192.0.2.0]/24"');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
done_testing();
