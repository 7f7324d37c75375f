#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 24-status-term.t - `rateguard status` (text and --json) shows the senders
# just used with their counters and the daemon's figures; TERM while the
# database is blocked still writes every queued record before exiting.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request policy_send request_text
          run_rateguard migrated_database dbh wait_until slurp status_json);

my $db = migrated_database('status');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 3);
my $pid = start_daemon($c);
my $s = policy_connect($c);
policy_request($s, sasl_username => 'one@example.org', recipient_count => 2) for 1 .. 2;
policy_request($s, sasl_username => 'two@example.org', recipient_count => 1);
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 3 }), 'written');

my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'status');
is($rc, 0, 'status: exit 0') or diag $err;
my @lines = split /\n/, $out;
like($lines[0], qr/^rateguard \S+, pid $pid, up \d+ s$/, 'status: header');
like($lines[1], qr/^sender\s+quota\s+messages\s+recipients\s+msg_total\s+rcpt_total\s+state\s+unwritten$/,
     'status: column titles');
like($out, qr/^one\@example\.org\s+3\s+2\s+4\s+2\s+4\s+BLOCKED\s+0\/0$/m, 'status: one@ blocked, 2 messages 4 recipients');
like($out, qr/^two\@example\.org\s+3\s+1\s+1\s+1\s+1\s+ok\s+0\/0$/m, 'status: two@ within quota');
like($out, qr/^workers: \d+ busy, \d+ idle, \d+ running \(min 4, max 256\)$/m, 'status: workers');
like($out, qr/^requests: 3 served, 3 counted, 2 accepted, 1 blocked, 0 would_block, 0 exempt, 0 warnings, 0 errors, 0 malformed, 0 refused, 0 over_client_limit, 0 refused_user$/m,
     'status: request figures');
like($out, qr/^database: 0 writes pending, 3 written, 0 failed transactions, 0 conflicts retried$/m, 'status: database figures');
like($out, qr/^cache: 2 of 100000 entries used$/m, 'status: cache fill');

($rc, $out) = run_rateguard('-c', $c->{path}, '--json', 'status');
my $j = eval { decode_json($out) };
ok($j, 'status --json is JSON') or diag $out;
is_deeply($j->{senders}, [
    { sender => 'one@example.org', quota => 3, quota_reset => 3, quota_locked => JSON::PP::false,
      msg_counter => 2, rcpt_counter => 4, msg_total => 2, rcpt_total => 4, blocked => JSON::PP::true,
      unwritten_msg => 0, unwritten_rcpt => 0, next_refused => JSON::PP::true },
    { sender => 'two@example.org', quota => 3, quota_reset => 3, quota_locked => JSON::PP::false,
      msg_counter => 1, rcpt_counter => 1, msg_total => 1, rcpt_total => 1, blocked => JSON::PP::false,
      unwritten_msg => 0, unwritten_rcpt => 0, next_refused => JSON::PP::false } ], 'status --json: senders');
is_deeply($j->{requests}, { served => 3, counted => 3, accepted => 2, blocked => 1, would_block => 0, exempt => 0, warnings => 0, errors => 0,
                            malformed => 0, refused => 0, over_client_limit => 0, refused_user => 0 }, 'status --json: requests');
is_deeply($j->{database}, { pending => 0, written => 3, failed_transactions => 0, conflicts => 0 }, 'status --json: database');

# --- TERM with writes queued behind a locked table ---
my $locker = dbh($db);
$locker->do('LOCK TABLES ratelimits WRITE, messages WRITE');
my $req = join '', map { request_text(sasl_username => "term$_\@example.org", recipient_count => 1) } 1 .. 50;
print {$s} $req;
my $answered = 0;
while ($answered < 50) { my $r = RG::read_reply($s); last if $r ne "action=DUNNO\n\n"; $answered++ }
is($answered, 50, '50 requests answered while the database is locked');
$j = status_json($c);
cmp_ok($j->{database}{pending}, '>', 0, 'writes are pending while the tables are locked');
close $s;
kill 'TERM', $pid;
sleep 1;
ok(kill(0, $pid), 'the daemon waits for its writer while the tables stay locked');
$locker->do('UNLOCK TABLES');
# A deadline, so a daemon that never exits fails here instead of hanging
# the run: 50 records take well under a second to write once unlocked.
my $exit = wait_until(sub { waitpid($pid, WNOHANG) == $pid ? ($? & 127 ? "signal " . ($? & 127) : "exit " . ($? >> 8)) : undef },
                      30);
is($exit, 'exit 0', 'TERM: exit 0 once everything is written (within 30 s)');
is(($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE sender LIKE 'term%'}))[0], 50,
   'every queued message row written');
is(($h->selectrow_array(q{SELECT SUM(msg_counter) FROM ratelimits WHERE sender LIKE 'term%'}))[0], 50,
   'every queued count written');
$locker->disconnect;
$h->disconnect;
done_testing();
