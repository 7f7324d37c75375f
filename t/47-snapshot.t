#!/usr/bin/perl
# 47-snapshot.t - the counter snapshot: a sender blocked, the database
# stopped, the whole daemon SIGKILLed and started while the database is
# still down: the cache comes from the snapshot, so the sender stays
# blocked and a new sender is accepted; once the database is back its rows
# win and every count in it is exact. A damaged or truncated snapshot is
# refused with a clear message: the daemon starts empty and serves.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time stat);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp run_rateguard database_server test_dir status_json);

my $BLOCK = "action=DEFER_IF_PERMIT Rate limit reached, retry later.\n\n";
my $DUNNO = "action=DUNNO\n\n";
my $db = migrated_database('snapshot');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 3, sections => { cache => "refresh_interval = 1\n" });

my $serial = 0;
sub send_n {
    my ($sender, $n) = @_;
    my $s = policy_connect($c);
    my @replies = map { $serial++; policy_request($s, sasl_username => $sender, recipient_count => 1,
                                                  instance => "s47.$serial", queue_id => sprintf('S47%05d', $serial)) } 1 .. $n;
    close $s;
    return \@replies;
}

sub family_kill {
    my ($pid) = @_;
    my @all = ($pid, RG::children_of($pid));
    kill 'KILL', @all;
    waitpid($pid, 0);
    return wait_until(sub { !grep { kill 0, $_ } @all }, 10);
}

sub db_counts {
    my $h2 = eval { dbh($db) } or return [];
    return $h2->selectall_arrayref(q{SELECT r.sender, r.msg_counter, r.msg_total, COUNT(m.id) FROM ratelimits r
                                     LEFT JOIN messages m ON m.ratelimit_id = r.id GROUP BY r.id ORDER BY r.sender});
}

my $pid = start_daemon($c);
my $s1 = 'blocked@example.org';
is_deeply(send_n($s1, 4), [$DUNNO, $DUNNO, $DUNNO, $BLOCK], 'quota 3: three accepted, the fourth blocked');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages}))[0] == 4 }, 10), 'written');
my $snapshot = (glob(test_dir() . '/rateguard-*.snapshot'))[0] // '';
my $after = time;
# The writer writes one after each refresh: wait for one made after the write.
ok(wait_until(sub { ($snapshot) = glob(test_dir() . '/rateguard-*.snapshot'); $snapshot && (stat $snapshot)[9] > $after + 0.01 }, 10),
   'a snapshot is written after the refresh');
my $st = status_json($c);
ok(defined $st->{snapshot}{age} && !$st->{snapshot}{cache_from_snapshot}, 'status: snapshot age shown, cache from the database');
my (undef, $prom) = run_rateguard('-c', $c->{path}, 'status', '--prometheus');
like($prom, qr/^rateguard_snapshot_age_seconds \d+$/m, 'metrics: snapshot age');
like($prom, qr/^rateguard_cache_from_snapshot 0$/m, 'metrics: cache not from the snapshot');

# --- database down, daemon killed, started again while the database is down ---
database_server('stop');
ok(family_kill($pid), 'every process killed with SIGKILL');
$pid = start_daemon($c);
like(slurp($c->{log}), qr/preload: the database is unreachable; 1 sender\(s\) loaded from the counter snapshot \Q$snapshot\E, written \d+ s ago/,
     'the snapshot is loaded, its age logged');
is_deeply(send_n($s1, 1), [$BLOCK], 'the blocked sender is still blocked');
is_deeply(send_n('new@example.org', 1), [$DUNNO], 'a new sender is accepted');
$st = status_json($c);
ok($st->{snapshot}{cache_from_snapshot} && defined $st->{snapshot}{loaded_age}, 'status: the cache came from the snapshot');
is_deeply([map { [$_->{sender}, $_->{msg_counter}] } @{ $st->{senders} }], [[$s1, 5], ['new@example.org', 1]],
          'the cache holds the snapshot\'s counts plus the new ones');
(undef, my $text) = run_rateguard('-c', $c->{path}, 'status');
like($text, qr/^snapshot: .*; cache from a snapshot \d+ s old \(the database is not read yet\)$/m, 'text status says so');

database_server('start');
ok(wait_until(sub { my $r = db_counts(); @$r == 2 && $r->[0][3] == 5 }, 30), 'the database is back, the records written');
is_deeply(db_counts(), [[$s1, 5, 5, 5], ['new@example.org', 1, 1, 1]], 'every count in the database is exact');
ok(wait_until(sub { !status_json($c)->{snapshot}{cache_from_snapshot} }, 15), 'the database\'s rows replace the snapshot\'s');
is(stop_daemon($pid), 0, 'TERM: exit 0');
like(slurp($c->{log}), qr/counter snapshot \Q$snapshot\E written \(2 sender\(s\)\)/, 'written at the graceful stop');

# --- a damaged snapshot: refused, empty cache, the daemon serves ---
for my $case (['flip', qr/checksum mismatch: damaged/], ['truncate', qr/size \d+ bytes does not match its header/],
              ['short', qr/truncated: \d+ bytes, shorter than its/]) {
    my ($how, $why) = @$case;
    my $size = -s $snapshot;
    open my $fh, '+<', $snapshot or die "$snapshot: $!";
    if ($how eq 'flip') {
        sysseek $fh, $size - 10, 0;
        sysread $fh, my $byte, 1;
        sysseek $fh, $size - 10, 0;
        syswrite $fh, chr(ord($byte) ^ 0x40);
    } else {
        truncate $fh, $how eq 'truncate' ? $size - 7 : 20;
    }
    close $fh;
    my $log_before = length slurp($c->{log});
    database_server('stop');
    $pid = start_daemon($c);
    my $log = substr(slurp($c->{log}), $log_before);
    like($log, qr/warning: preload: counter snapshot \Q$snapshot\E refused, not trusted: $why[^\n]*; starting with an empty cache/,
         "$how: refused with the reason") or diag(join "\n", grep { /snapshot/ } split /\n/, $log);
    is_deeply(status_json($c)->{senders}, [], "$how: the cache starts empty");
    is_deeply(send_n($s1, 1), [$DUNNO], "$how: the daemon serves (from an empty cache)");
    database_server('start');
    ok(wait_until(sub { my $r = db_counts(); @$r && $r->[0][3] == ($how eq 'flip' ? 6 : $how eq 'truncate' ? 7 : 8) }, 30),
       "$how: written once the database is back");
    ok(wait_until(sub { defined status_json($c)->{snapshot}{age} }, 15), "$how: a sound snapshot is written again");
    is(stop_daemon($pid), 0, "$how: TERM, exit 0");
}
is_deeply(db_counts(), [[$s1, 8, 8, 8], ['new@example.org', 1, 1, 1]], 'every count in the database is exact');
$h->disconnect;
done_testing();
