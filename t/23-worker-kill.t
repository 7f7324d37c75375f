#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 23-worker-kill.t - a worker killed with SIGKILL while it holds a sender's
# cache lock (held on purpose by the test-hooks build) does not wedge the
# table: the next requests of that sender are answered, the master replaces
# the worker, and the counts stay exact (the killed request, queued before
# it died, is counted once; Postfix's retry of it is not counted again).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request status_json children_of
          migrated_database dbh wait_until test_dir slurp build_dir DUNNO_REPLY);

my $db = migrated_database('workerkill');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 50, sections => { workers => "min = 3\n" });
my $holdpid = test_dir() . '/hold.pid';
my $pid = start_daemon($c, binary => build_dir() . '/rateguard-testhooks',
                       env => { RATEGUARD_TEST_HOLD_LOCK => "victim\@example.org:5000:$holdpid" });

sub status { return status_json($c) // {} }
# The workers in the process table: the master's children but the writer.
sub workers {
    my $writer = status()->{writer_pid} // 0;
    return sort { $a <=> $b } grep { $_ != $writer } children_of($pid);
}
ok(wait_until(sub { my @w = workers(); @w == 3 }), 'three workers (workers.min) in the process table');
my @workers_before = workers();
my $running_before = status()->{workers}{running};
is($running_before, 3, 'status: 3 running');

# The victim's first message: its worker queues it, then sits on the lock.
my $a = policy_connect($c);
print {$a} RG::request_text(sasl_username => 'victim@example.org', recipient_count => 1,
                            instance => 'victim.1', queue_id => 'VICTIM1');
$a->flush;
ok(wait_until(sub { -s $holdpid }, 5), 'the worker holds the lock');
chomp(my $victim_worker = slurp($holdpid));
ok(kill('KILL', $victim_worker), "worker $victim_worker killed with SIGKILL inside the critical section");
is(RG::read_reply($a), '', 'the killed worker\'s client gets no reply');
close $a;

# Postfix retries the unanswered request (same instance), then more mail.
my $b = policy_connect($c);
is(policy_request($b, sasl_username => 'victim@example.org', recipient_count => 1, instance => 'victim.1',
                  queue_id => 'VICTIM1'), DUNNO_REPLY, 'the retried request is answered');
my @replies = map { policy_request($b, sasl_username => 'victim@example.org', recipient_count => 1,
                                   instance => "victim.$_") } 2 .. 6;
is_deeply(\@replies, [(DUNNO_REPLY) x 5], 'five more messages of the same sender answered');

ok(wait_until(sub { !kill 0, $victim_worker }, 10), "the killed worker $victim_worker is gone from the process table");
my %before = map { $_ => 1 } @workers_before;
my @after;
ok(wait_until(sub { @after = workers(); @after == 3 && grep { !$before{$_} } @after }, 10),
   'the master forked a new worker: three again, one of them new') or diag "before @workers_before, after @after";
ok(!grep({ $_ == $victim_worker } @after), '... the killed one not among them');
is(status()->{workers}{running}, $running_before, "status: $running_before running again");
ok(wait_until(sub {
    ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE sender = 'victim@example.org'}))[0] == 6 }),
   'six messages rows: the killed one once, the retry not again');
is_deeply($h->selectrow_arrayref(q{SELECT msg_counter, rcpt_counter FROM ratelimits WHERE sender = 'victim@example.org'}),
          [6, 6], 'counters exactly 6');
my ($victim) = grep { $_->{sender} eq 'victim@example.org' } @{ status()->{senders} // [] };
is($victim->{msg_counter}, 6, 'the cache agrees with the database after the writer\'s refresh');

my $log = slurp($c->{log});
like($log, qr/error: worker $victim_worker killed by signal 9/, 'the death is logged');
like($log, qr/warning: recovered 1 shared lock\(s\) left by a process that died holding them/,
     'the lock recovery is logged');
close $b;
is(stop_daemon($pid), 0, 'TERM: exit 0');
$h->disconnect;
done_testing();
