#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 21-concurrency.t - PolicydRateGuard's lost counts under concurrency, fixed:
# 16 connections x 10 messages of one sender with quota 5 give exactly 5
# accepted and counters of exactly 160; 16 simultaneous first messages of a
# new sender make one row with counters 16 and exactly 5 accepted; 16
# senders of a domain with a pool of 50 get exactly 50 accepted.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Handle;
use POSIX ();
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request
          migrated_database dbh wait_until BLOCK_REPLY row fields);

my $BLOCK = BLOCK_REPLY;
my $db = migrated_database('concurrency');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 5, sections => { workers => "min = 4\nmin_spare = 4\n" });
my $pid = start_daemon($c);

# Run $n clients at once: each connects, waits for the start signal, sends
# $per requests and reports "accepted blocked other". Returns the sums.
sub run_clients {
    my ($n, $per, $sender) = @_;
    pipe(my $go_r, my $go_w) or die;
    my @kids;
    for my $k (1 .. $n) {
        pipe(my $res_r, my $res_w) or die;
        my $kid = fork // die;
        if ($kid == 0) {
            close $go_w;
            close $res_r;
            my $s = policy_connect($c);
            sysread($go_r, my $x, 1);       # start together
            my ($acc, $blk, $other) = (0, 0, 0);
            for my $i (1 .. $per) {
                my $who = $sender =~ /%d/ ? sprintf($sender, $k) : $sender;   # one sender per client
                my $r = policy_request($s, sasl_username => $who, recipient_count => 1,
                                       instance => "$who.$k.$i");
                if ($r eq "action=DUNNO\n\n") { $acc++ } elsif ($r eq $BLOCK) { $blk++ } else { $other++ }
            }
            print $res_w "$acc $blk $other\n";
            close $res_w;
            POSIX::_exit(0);    # no destructors: the parent's database handle stays open
        }
        close $res_w;
        push @kids, [$kid, $res_r];
    }
    close $go_r;
    select(undef, undef, undef, 0.3);     # let every client connect
    close $go_w;                          # EOF on the pipe starts them all
    my @sum = (0, 0, 0);
    for my $kid (@kids) {
        my $line = readline($kid->[1]) // "0 0 0\n";
        my @v = split ' ', $line;
        $sum[$_] += $v[$_] for 0 .. 2;
        waitpid($kid->[0], 0);
    }
    return @sum;
}

# (row dies if the sender has two rows: "one row" is checked too.)
my @ROW = qw(msg_counter rcpt_counter msg_total rcpt_total);

my ($acc, $blk, $other) = run_clients(16, 10, 'busy@example.org');
is($acc, 5, '16 x 10 messages, quota 5: exactly 5 accepted');
is($blk, 155, '... and 155 blocked');
is($other, 0, '... and no other reply');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE sender = 'busy@example.org'}))[0] == 160 }),
   '160 messages rows');
is_deeply(fields(row($h, 'busy@example.org'), @ROW), [160, 160, 160, 160], 'counters exactly 160');
is(($h->selectrow_array(q{SELECT SUM(blocked) FROM messages WHERE sender = 'busy@example.org'}))[0], 155,
   '155 rows marked blocked');

($acc, $blk, $other) = run_clients(16, 1, 'newcomer@example.org');
is($acc, 5, '16 simultaneous first messages of a new sender: 5 accepted');
is($blk, 11, '... 11 blocked');
is($other, 0, '... no DUNNO from errors');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE sender = 'newcomer@example.org'}))[0] == 16 }),
   '16 messages rows');
is_deeply(fields(row($h, 'newcomer@example.org'), @ROW), [16, 16, 16, 16], 'one row, counters 16');

# A domain pool under the same race: 16 senders of one domain, 10 messages
# each at once, pool 50 (each sender's own quota is 100): exactly 50 pass.
$h->do(q{INSERT INTO domain_quotas (domain, quota, pool_quota) VALUES ('pool.example', 100, 50)});
is((RG::run_rateguard('-c', $c->{path}, 'reload-cache'))[0], 0, 'reload-cache');
($acc, $blk, $other) = run_clients(16, 10, 'user%d@pool.example');
is($acc, 50, '16 senders x 10 messages, pool 50: exactly 50 accepted');
is($blk, 110, '... 110 blocked');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE sender LIKE '%@pool.example'}))[0] == 160 }),
   '160 messages rows');

is(stop_daemon($pid), 0, 'TERM: exit 0');
my @bad = grep { / (error|fatal|panic): / } split /\n/, RG::slurp($c->{log});
is_deeply(\@bad, [], 'no errors logged');
$h->disconnect;
done_testing();
