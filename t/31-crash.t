#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 31-crash.t - the whole daemon (master, workers, writer) killed with
# SIGKILL: a restarted rateguard writes everything the killed one had
# answered for, exactly once, and counts it in its cache. A queue file of
# another version is refused with a clear message, not trusted.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use JSON::PP;
use POSIX ();
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp run_rateguard test_dir kill_family status_json);

my $db = migrated_database('crash');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 1000);

# --- killed while its writer is stuck on locked tables ---
my $pid = start_daemon($c);
my $locker = dbh($db);
$locker->do('LOCK TABLES ratelimits WRITE, messages WRITE, rateguard_progress WRITE');
my $s = policy_connect($c);
my $answered = 0;
for my $i (1 .. 100) {
    $answered++ if policy_request($s, sasl_username => 'held' . ($i % 4) . '@example.org', recipient_count => 2,
                                  instance => "crash.a.$i", queue_id => sprintf('CA%04d', $i)) eq "action=DUNNO\n\n";
}
is($answered, 100, '100 requests answered while the writer is blocked');
ok(kill_family($pid), 'master, workers and writer killed with SIGKILL');
close $s;
$locker->do('UNLOCK TABLES');
is(($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0], 0, 'nothing reached the database');

$pid = start_daemon($c);
like(slurp($c->{log}), qr/write-back queue .*\.queue reopened with 100 record\(s\) in it/, 'the queue file is found');
like(slurp($c->{log}), qr/recovery: 100 record\(s\) counted by the previous run are not in the database yet/,
     'recovery logged');
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 100 }, 15), 'the 100 records are written');
# The cache counted them before they were written, so decisions include them.
my $st = status_json($c);
is_deeply([map { [$_->{sender}, $_->{msg_counter}, $_->{rcpt_counter}] } @{ $st->{senders} }],
          [map { ["held$_\@example.org", 25, 50] } 0 .. 3], 'the cache holds the recovered counts');
is(stop_daemon($pid), 0, 'TERM: exit 0');

# --- killed in full flow: what was answered is written once ---
$pid = start_daemon($c);
pipe(my $r, my $w) or die;
my $kid = fork // die;
if ($kid == 0) {
    close $r;
    my $k = policy_connect($c);
    for my $i (1 .. 100000) {
        my $reply = eval { policy_request($k, sasl_username => 'flow@example.org', recipient_count => 1,
                                          instance => "crash.b.$i", queue_id => sprintf('CB%06d', $i)) } // '';
        last unless $reply eq "action=DUNNO\n\n";
        syswrite $w, sprintf("CB%06d\n", $i);
    }
    POSIX::_exit(0);
}
close $w;
sleep 0.5;
ok(kill_family($pid), 'killed in full flow');
waitpid($kid, 0);
my @answered = map { chomp; $_ } <$r>;
cmp_ok(scalar @answered, '>', 10, scalar(@answered) . ' requests answered before the kill');
$pid = start_daemon($c);
ok(wait_until(sub {
    ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE sender = 'flow@example.org'}))[0] >= @answered }, 15),
   'every answered message is written');
sleep 1;
my $rows = $h->selectcol_arrayref(q{SELECT msgid FROM messages WHERE sender = 'flow@example.org' ORDER BY id});
my %in_db = map { $_ => 1 } @$rows;
is_deeply([grep { !$in_db{$_} } @answered], [], 'no answered message is missing');
is(scalar(keys %in_db), scalar(@$rows), 'no message written twice');
cmp_ok(@$rows - @answered, '<=', 1, 'at most the one request in flight at the kill is written unanswered');
is(($h->selectrow_array(q{SELECT msg_total FROM ratelimits WHERE sender = 'flow@example.org'}))[0], scalar @$rows,
   'the counter matches the rows exactly');
is(stop_daemon($pid), 0, 'TERM: exit 0');

# --- a queue file of another version: refused, left alone ---
my $queue = (glob(test_dir() . '/rateguard-*.queue'))[0] // test_dir() . '/missing.queue';
$pid = start_daemon($c);
$locker->do('LOCK TABLES ratelimits WRITE, messages WRITE, rateguard_progress WRITE');
$s = policy_connect($c);
policy_request($s, sasl_username => 'left@example.org');
kill_family($pid);
$locker->do('UNLOCK TABLES');
$queue = (glob(test_dir() . '/rateguard-*.queue'))[0];
ok($queue, 'a queue file is left by the killed daemon');
open my $fh, '+<', $queue or die;
sysseek $fh, 4, 0;
syswrite $fh, pack('L', 99);
close $fh;
my ($rc, $o, $err) = run_rateguard('-c', $c->{path}, '-f', 'run');
is($rc, 6, 'a queue file of another version: exit 6');
like(slurp($c->{log}), qr/fatal: cannot use the write-back queue: \Q$queue\E: not a rateguard queue of version 1 \(magic 52475751, version 99\)\. The file is left as it is/,
     'refused with a clear message');
ok(-e $queue, 'the file is left for the administrator');
$h->disconnect;
$locker->disconnect;
done_testing();
