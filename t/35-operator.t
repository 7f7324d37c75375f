#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 35-operator.t - the operator commands on one sender (show, reset,
# set-quota), each coherent with the running daemon's cache: the next
# request is decided on the new values; and `status --prometheus`.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          migrated_database dbh wait_until test_dir BLOCK_REPLY row fields);

my $db = migrated_database('operator');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 5);
my $pid = start_daemon($c);
my $s = policy_connect($c);
my $ok = "action=DUNNO\n\n";
my $no = BLOCK_REPLY;

sub send_as { my ($who, $rcpt) = @_; policy_request($s, sasl_username => $who, recipient_count => $rcpt // 1) }
my @ROW = qw(quota quota_reset quota_locked msg_counter rcpt_counter msg_total rcpt_total);
sub written { my ($who, $n) = @_; wait_until(sub { my $r = row($h, $who); $r && $r->{msg_total} == $n }) }

is(send_as('ann@example.org', 1), $ok, "ann's message $_") for 1 .. 3;
ok(written('ann@example.org', 3), 'three messages written');

# --- show ---
my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'show', 'Ann@Example.org');
is($rc, 0, 'show: exit 0');
like($out, qr/^sender:      ann\@example\.org$/m, 'show: the sender (any case finds it)');
like($out, qr/^quota:       5 \(restored to 5 by the period reset\)$/m, 'show: quota');
like($out, qr/^messages:    3 this period, 3 in total$/m, 'show: messages');
like($out, qr/^used:        60\.0% of the quota$/m, 'show: percent used');
like($out, qr/^daemon:      cached, 0 message\(s\) and 0 recipient\(s\) not yet in the database$/m, 'show: cache view');
($rc, $out) = run_rateguard('-c', $c->{path}, '--json', 'show', 'ann@example.org');
my $j = eval { decode_json($out) } // {};
is_deeply($j, { sender => 'ann@example.org', quota => 5, quota_reset => 5, quota_locked => JSON::PP::false,
                msg_counter => 3, rcpt_counter => 3, msg_total => 3, rcpt_total => 3, percent_used => 60,
                blocked => JSON::PP::false, unwritten_msg => 0, unwritten_rcpt => 0,
                in_database => JSON::PP::true, in_cache => JSON::PP::true, reset_at => undef,
                msg_quota => undef, rcpt_quota => undef, block_action => undef, windows => [] },
          'show --json: every field');
($rc, undef, $err) = run_rateguard('-c', $c->{path}, 'show', 'nobody@example.org');
is($rc, 1, 'show of an unknown sender: exit 1');
like($err, qr/no sender 'nobody\@example\.org' in the database or the running daemon's cache/, '... with the reason');

# --- set-quota: the daemon decides on the new quota at once ---
($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'set-quota', 'ann@example.org', '4');
is($rc, 0, 'set-quota: exit 0') or diag $err;
is_deeply(fields(row($h, 'ann@example.org'), @ROW), [4, 4, 0, 3, 3, 3, 3], 'set-quota: quota and quota_reset 4, counters kept');
is(send_as('ann@example.org'), $ok, '4th message within the new quota of 4');
is(send_as('ann@example.org'), $no, '5th message blocked (it would have passed the old quota of 5)');
($rc, $out) = run_rateguard('-c', $c->{path}, 'show', 'ann@example.org');
like($out, qr/^used:        125\.0% of the quota, BLOCKED$/m, 'show: over the quota, blocked');

($rc) = run_rateguard('-c', $c->{path}, 'set-quota', 'bob@example.org', '1', '--locked');
is($rc, 0, 'set-quota --locked of a sender without a row: exit 0');
is_deeply(fields(row($h, 'bob@example.org'), @ROW), [1, 1, 1, 0, 0, 0, 0], 'the row is created, locked');
is(send_as('bob@example.org'), $ok, "bob's first message accepted");
is(send_as('bob@example.org'), $no, "bob's second message blocked by his quota of 1 (the default is 5)");
($rc, undef, $err) = run_rateguard('-c', $c->{path}, 'set-quota', 'bob@example.org', 'lots');
is($rc, 64, 'set-quota with a quota that is not a number: exit 64');
like($err, qr/'lots' is not a quota/, '... with the reason');

# --- reset: counters to zero in the database and in the daemon ---
ok(written('ann@example.org', 5), "ann's messages written");
($rc, undef, $err) = run_rateguard('-c', $c->{path}, 'reset', 'ann@example.org');
is($rc, 0, 'reset: exit 0') or diag $err;
my $r = fields(row($h, 'ann@example.org'), @ROW);
is_deeply([@$r[0 .. 4]], [4, 4, 0, 0, 0], 'reset: counters 0, quota kept (quota_reset is 4)');
is_deeply([@$r[5, 6]], [5, 5], 'reset: totals kept');
ok(($h->selectrow_array(q{SELECT reset_at IS NOT NULL FROM ratelimits WHERE sender = 'ann@example.org'}))[0],
   'reset: reset_at set');
is(send_as('ann@example.org'), $ok, "after the reset ann's message $_ is accepted") for 1 .. 4;
is(send_as('ann@example.org'), $no, '... and the 5th is blocked again');
is(send_as('bob@example.org'), $no, 'bob (not reset) is still blocked');
($rc, undef, $err) = run_rateguard('-c', $c->{path}, 'reset', 'nobody@example.org');
is($rc, 1, 'reset of an unknown sender: exit 1');

# --- metrics ---
($rc, $out) = run_rateguard('-c', $c->{path}, '--prometheus', 'status');
is($rc, 0, 'status --prometheus: exit 0');
like($out, qr/^# TYPE rateguard_requests_total counter$/m, 'metric type line');
like($out, qr/^rateguard_requests_total\{result="served"\} 13$/m, 'requests served: 13');
like($out, qr/^rateguard_requests_total\{result="accepted"\} 9$/m, 'accepted: 9');
like($out, qr/^rateguard_requests_total\{result="blocked"\} 4$/m, 'blocked: 4');
like($out, qr/^rateguard_requests_total\{result="refused"\} 0$/m, 'refused: 0');
like($out, qr/^rateguard_queue_depth \d+$/m, 'queue depth');
like($out, qr/^rateguard_db_write_lag_seconds \d+\.\d{3}$/m, 'write lag');
like($out, qr/^rateguard_workers\{state="busy"\} 1$/m, 'one busy worker (this connection)');
like($out, qr/^rateguard_cache_entries\{state="used"\} 2$/m, 'two cached senders');
like($out, qr/^rateguard_cache_entries\{state="capacity"\} 100000$/m, 'cache capacity');
my @bad = grep { !/^#/ && !/^[a-z_]+(\{[a-z]+="[a-z_]+"\})? -?[\d.]+$/ } split /\n/, $out;
is_deeply(\@bad, [], 'every line is a comment or a valid sample');
ok(wait_until(sub { my (undef, $o) = run_rateguard('-c', $c->{path}, '--prometheus', 'status');
                    $o =~ /^rateguard_db_written_total 13$/m }), 'db_written_total reaches 13');
# Where the database's time goes: the writer's statements by kind.
(undef, $out) = run_rateguard('-c', $c->{path}, '--prometheus', 'status');
my %stmts = $out =~ /^rateguard_db_statements_total\{kind="(\w+)"\} (\d+)$/mg;
my %secs = $out =~ /^rateguard_db_statement_seconds_total\{kind="(\w+)"\} ([\d.]+)$/mg;
is_deeply([sort keys %stmts], [sort qw(lock_read read_back create upsert messages progress commit one_by_one)],
          'statements counted by eight kinds');
ok($stmts{messages} >= 1 && $stmts{messages} <= 13, "13 records in 1..13 messages statements ($stmts{messages})");
ok($stmts{commit} >= 1 && $stmts{commit} <= 13, "and as many commits or fewer ($stmts{commit})");
is($stmts{one_by_one}, 0, 'no record went one by one (nothing was refused)');
ok($secs{messages} > 0 && $secs{commit} > 0, 'their time is measured');

# Each command asks for its own dump only (metrics never cost a dump of
# every sender); a plain kill -USR1 writes all three.
my ($prefix) = glob(test_dir() . '/rateguard-*.status.prom');
$prefix =~ s/prom$//;
my %dump = map { $_ => "$prefix$_" } qw(txt json prom);
ok(!-e $dump{txt}, 'no text dump yet: nothing asked for one');
kill 'USR1', $pid;
ok(wait_until(sub { -e $dump{txt} }), 'kill -USR1 writes the text dump too');
utime 1, 1, values %dump;
run_rateguard('-c', $c->{path}, '--prometheus', 'status');
is_deeply([map { (stat $dump{$_})[9] > 1 ? 1 : 0 } qw(txt json prom)], [0, 0, 1],
          'status --prometheus rewrites only the metrics file');
kill 'USR1', $pid;
ok(wait_until(sub { !grep { (stat $dump{$_})[9] == 1 } qw(txt json prom) }), 'kill -USR1 rewrites all three dumps');

# Commands asking for different dumps at the same instant are all served
# (queued real-time signals, not one USR1 that would swallow the other).
my $rg = RG::rateguard();
my $both = 0;
for my $round (1 .. 5) {
    my $d = test_dir();
    system("sh", "-c", "'$rg' -c '$c->{path}' --json status > $d/a.out 2>&1 & "
                     . "'$rg' -c '$c->{path}' --prometheus status > $d/b.out 2>&1 & "
                     . "'$rg' -c '$c->{path}' status > $d/c.out 2>&1 & wait");
    $both++ if RG::slurp("$d/a.out") =~ /^\{"version"/ && RG::slurp("$d/b.out") =~ /^# HELP/
                && RG::slurp("$d/c.out") =~ /^rateguard /;
}
is($both, 5, 'three status commands in three formats at once, five times: each got its dump');

close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');

# show without a running daemon: the database's view.
($rc, $out) = run_rateguard('-c', $c->{path}, 'show', 'bob@example.org');
is($rc, 0, 'show with the daemon stopped: exit 0');
like($out, qr/^messages:    3 this period, 3 in total$/m, "show: from the database (blocked messages count: count_blocked)");
like($out, qr/^quota:       1 \(restored to 1 by the period reset; locked: kept as it is\)$/m, 'show: locked');
like($out, qr/^daemon:      not running$/m, 'show: says the daemon is not running');
done_testing();
