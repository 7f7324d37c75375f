#!/usr/bin/perl
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
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          migrated_database dbh wait_until test_dir slurp build_dir);

my $db = migrated_database('workerkill');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 50, sections => { workers => "min = 3\n" });
my $holdpid = test_dir() . '/hold.pid';
my $pid = start_daemon($c, binary => build_dir() . '/rateguard-testhooks',
                       env => { RATEGUARD_TEST_HOLD_LOCK => "victim\@example.org:5000:$holdpid" });

sub status {
    my (undef, $out) = run_rateguard('-c', $c->{path}, '--json', 'status');
    return eval { decode_json($out) } // {};
}
my $running_before = status()->{workers}{running};

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
                  queue_id => 'VICTIM1'), "action=DUNNO\n\n", 'the retried request is answered');
my @replies = map { policy_request($b, sasl_username => 'victim@example.org', recipient_count => 1,
                                   instance => "victim.$_") } 2 .. 6;
is_deeply(\@replies, [("action=DUNNO\n\n") x 5], 'five more messages of the same sender answered');

ok(wait_until(sub { (status()->{workers}{running} // 0) >= $running_before }, 10),
   'the master replaced the killed worker');
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
