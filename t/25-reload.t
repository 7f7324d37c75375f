#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 25-reload.t - HUP re-reads the configuration: new settings reach new
# connections, the cache and its counters are kept (proved with the
# database down across the HUP: nothing could be re-read); a broken file is
# logged and the running configuration kept.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request
          migrated_database wait_until slurp database_server dbh status_json children_of test_dir BLOCK_REPLY);

my $BLOCK = BLOCK_REPLY;
my $db = migrated_database('reload');
my $h = dbh($db);
# No refresh (and no snapshot with it) during the test.
my $c = write_config(database => $db, quota => 3, sections => { cache => "refresh_interval = 3600\n" });
my $pid = start_daemon($c);

sub cached {
    my ($sender) = @_;
    my ($e) = grep { $_->{sender} eq $sender } @{ (status_json($c) // {})->{senders} // [] };
    return $e ? [@$e{qw(msg_counter rcpt_counter quota)}] : undef;
}

# Two messages counted and written; then the database is stopped and
# stays down across the HUP, and the counter snapshot the writer leaves as
# the outage begins is moved away. a@'s counts are then in the cache alone:
# not readable from the database, no snapshot, nothing of theirs in the
# write-back queue (a reload that emptied the cache and rebuilt it from the
# queue would not find them either).
my $s = policy_connect($c);
is_deeply([map { policy_request($s, sasl_username => 'a@example.org', recipient_count => 1) } 1 .. 2],
          ["action=DUNNO\n\n", "action=DUNNO\n\n"], 'before reload: two messages accepted');
ok(wait_until(sub { (($h->selectrow_array(q{SELECT msg_counter FROM ratelimits WHERE sender = 'a@example.org'}))[0] // 0) == 2
                    && ((status_json($c) // {})->{database}{pending} // -1) == 0 }),
   'written: msg_counter 2 in the database, nothing pending');
my $db_down = 1;
END { RG::database_server('start') if $db_down }
database_server('stop');
is(policy_request($s, sasl_username => 'b@example.org', recipient_count => 1), "action=DUNNO\n\n",
   'a message of another sender while the database is down');
close $s;
ok(wait_until(sub { slurp($c->{log}) =~ /error: writer: database unavailable, \d+ record\(s\) kept queued/ }, 10),
   'the writer found the database down');
ok(wait_until(sub { slurp($c->{log}) =~ /writer: counter snapshot written/ }, 5), 'and wrote its counter snapshot');
my @snapshots = glob(test_dir() . '/rateguard-*.snapshot');
is(scalar(grep { rename $_, "$_.away" } @snapshots), 1, 'the counter snapshot moved away');
is_deeply(cached('a@example.org'), [2, 2, 3], 'the cache counts a@ (2 messages, 2 recipients, quota 3)');

my $text = slurp($c->{path});
open my $fh, '>', $c->{path} or die;
print $fh qq{action_accept = "OK"\n$text};
close $fh;
my @before = children_of($pid);
kill 'HUP', $pid;
ok(wait_until(sub { slurp($c->{log}) =~ /reload: configuration re-read/ }, 5), "reload logged") or diag slurp($c->{log}) . slurp("$c->{log}.stdout");
# The workers of the old configuration retire: new connections reach new ones.
my %old = map { $_ => 1 } @before;
ok(wait_until(sub { my @k = children_of($pid); @k && !grep { $old{$_} } @k }, 10), 'every child replaced after the reload');
is_deeply(cached('a@example.org'), [2, 2, 3], 'counters kept across the reload with the database down');

$s = policy_connect($c);
is(policy_request($s, sasl_username => 'a@example.org', recipient_count => 1), "action=OK\n\n",
   'after reload: the new action_accept, the third message at quota 3');
is(policy_request($s, sasl_username => 'a@example.org', recipient_count => 1), $BLOCK,
   'the fourth message is blocked: the counts from before the reload decided it');
close $s;
database_server('start');
$db_down = 0;
ok(wait_until(sub { my $r = eval { $h = dbh($db) unless $h->ping; $h->selectrow_arrayref(
                        q{SELECT msg_counter, msg_total FROM ratelimits WHERE sender = 'a@example.org'}) };
                    $r && "@$r" eq '4 4' }, 30),
   'the database gets all four once it is back');

open $fh, '>', $c->{path} or die;
print $fh qq{action_accept = "OK"\nworkers { max = 0 }\n$text};
close $fh;
kill 'HUP', $pid;
ok(wait_until(sub { slurp($c->{log}) =~ /reload: .*workers\.max: 0 is out of range 1\.\.4096; keeping the running configuration/ }, 5),
   'a broken configuration is logged and refused');
$s = policy_connect($c);
is(policy_request($s, sasl_username => 'c@example.org', recipient_count => 1), "action=OK\n\n",
   'the running configuration is kept');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
done_testing();
