#!/usr/bin/perl
# 30-outage.t - 300 requests across a database outage: the server is
# stopped mid-run and started again 5 s later. Every reply comes at the
# usual speed, decisions continue from the cache, the records wait in the
# queue file (and, past half of it, in the spool file), and afterwards the
# database holds exactly what was counted: nothing lost, nothing doubled.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp database_server test_dir);

my $db = migrated_database('outage');
# A 1 MiB queue, so that the outage also pushes records into the spool.
my $c = write_config(database => $db, quota => 250, sections => { cache => "queue_size = 1\n" });
my $pid = start_daemon($c);
my $s = policy_connect($c);
my ($accepted, $blocked, $other, $slowest) = (0, 0, 0, 0);
my $from = ('f' x 4000) . '@example.org';     # big records fill the queue sooner

sub send_batch {
    my ($from_i, $to_i) = @_;
    for my $i ($from_i .. $to_i) {
        my $t0 = time;
        my $r = policy_request($s, sasl_username => 'sender' . ($i % 3) . '@example.org', recipient_count => 1,
                               sender => $from, instance => "outage.$i", queue_id => sprintf('OUT%05d', $i));
        my $dt = time - $t0;
        $slowest = $dt if $dt > $slowest;
        if ($r eq "action=DUNNO\n\n") { $accepted++ }
        elsif ($r =~ /^action=DEFER_IF_PERMIT /) { $blocked++ }
        else { $other++ }
    }
}

send_batch(1, 100);
database_server('stop');
my $down_at = time;
send_batch(101, 250);
ok(wait_until(sub { slurp($c->{log}) =~ /error: writer: database unavailable, \d+ record\(s\) kept queued/ }, 10),
   'the outage is logged');
sleep 0.5;
like(slurp($c->{log}), qr/warning: writer: database still unavailable; \d+ record\(s\) moved to .*\.spool/,
     'records moved to the spool file when the queue was half full');
my $spool = (glob(test_dir() . '/rateguard-*.spool'))[0];
ok($spool && -s $spool, 'the spool file holds records');
sleep 5 - (time - $down_at) if time - $down_at < 5;
database_server('start');
send_batch(251, 300);

is($other, 0, 'every request answered DUNNO or DEFER_IF_PERMIT, none with an error');
is($accepted + $blocked, 300, '300 replies');
is($accepted, 300, 'quota 250 over three senders: all 300 accepted');
diag(sprintf('slowest reply during the run: %.1f ms', $slowest * 1000));
cmp_ok($slowest, '<', 0.5, 'no reply waited for the database');

my $h = dbh($db);
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 300 }, 30),
   '300 messages rows once the database is back');
sleep 0.5;
is(($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0], 300, 'exactly 300 rows: nothing doubled');
is(($h->selectrow_array('SELECT COUNT(DISTINCT msgid) FROM messages'))[0], 300, 'each message once');
is(($h->selectrow_array('SELECT SUM(msg_total) FROM ratelimits'))[0], 300, 'sum(msg_total) = 300');
is(($h->selectrow_array('SELECT SUM(msg_counter) FROM ratelimits'))[0], 300, 'sum(msg_counter) = 300');
is_deeply($h->selectcol_arrayref('SELECT msgid FROM messages ORDER BY id'),
          [map { sprintf('OUT%05d', $_) } 1 .. 300], 'written in the order they were counted');
my $log = slurp($c->{log});
is(() = $log =~ /error: writer: database unavailable/g, 1, 'the outage is logged once');
like($log, qr/notice: writer: database available again/, 'and its end');
ok(wait_until(sub { !-s $spool }, 10), 'the spool file is emptied once written');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
$h->disconnect;
done_testing();
