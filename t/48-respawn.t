#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 48-respawn.t - respawning a helper that died: 1, 2, 4 ... 30 s apart
# while deaths follow each other (a crash loop must not fork-loop), and
# from 1 s again once a helper had lived 10 s (the soak found the delay
# growing for the daemon's whole life: after five writer deaths, each later
# one left the queue unwritten for 30 s). The master logs each delay.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp status_json);

my $db = migrated_database('respawn');
my $c = write_config(database => $db, name => 'respawn');
my $pid = start_daemon($c);

sub writer_pid { return status_json($c)->{writer_pid} }

# A writer, seen alive, killed; returns once a new one runs.
sub kill_writer {
    my $w = wait_until(sub { my $p = writer_pid(); $p && kill(0, $p) ? $p : undef }, 40) or die 'no writer';
    kill 'KILL', $w;
    wait_until(sub { my $p = writer_pid(); $p && $p != $w && kill(0, $p) ? $p : undef }, 40) or die 'no new writer';
    return $w;
}

my @quick = map { kill_writer() } 1 .. 3;
my @delays = map { my $w = $_; slurp($c->{log}) =~ /writer $w killed by signal 9; the next one starts in (\d+) s/ ? $1 : 'none' } @quick;
is_deeply(\@delays, [1, 2, 4], 'three deaths in a row: the next writer after 1, 2, 4 s');
sleep 10.5;                      # the fourth writer lives 10 s
my $lived = kill_writer();
my ($delay) = slurp($c->{log}) =~ /writer $lived killed by signal 9; the next one starts in (\d+) s/;
is($delay, 1, 'a writer that had lived 10 s: the next one after 1 s again, not 8');
my $s = policy_connect($c);
is(policy_request($s, sasl_username => 'after@example.org', queue_id => 'QAFTER'), "action=DUNNO\n\n", 'still serving');
close $s;
my $h = dbh($db);
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE msgid = 'QAFTER'}))[0] == 1 }, 10),
   'and the new writer writes');
$h->disconnect;
is(stop_daemon($pid), 0, 'TERM: exit 0');
done_testing();
