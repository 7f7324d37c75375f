#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 47-snapshot.t - the counter snapshot: a sender blocked, the database
# stopped, the whole daemon SIGKILLed and started while the database is
# still down: the cache comes from the snapshot, so the sender stays
# blocked and a new sender is accepted; once the database is back its rows
# win and every count in it is exact. A damaged or truncated snapshot is
# refused with a clear message: the daemon starts empty and serves.
# Forged snapshots (issue 25), written as the daemon's user could, with a
# valid checksum but values out of range, are refused as a whole with the
# exact reason; the start stays fast and TERM is honoured.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time stat);
use Digest::SHA qw(sha256);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp run_rateguard database_server test_dir status_json BLOCK_REPLY kill_family send_n);

my $BLOCK = BLOCK_REPLY;
my $DUNNO = "action=DUNNO\n\n";
my $db = migrated_database('snapshot');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 3, sections => { cache => "refresh_interval = 1\n" });

sub db_counts {
    my $h2 = eval { dbh($db) } or return [];
    return $h2->selectall_arrayref(q{SELECT r.sender, r.msg_counter, r.msg_total, COUNT(m.id) FROM ratelimits r
                                     LEFT JOIN messages m ON m.ratelimit_id = r.id GROUP BY r.id ORDER BY r.sender});
}

my $pid = start_daemon($c);
my $s1 = 'blocked@example.org';
is_deeply(send_n($c, $s1, 4), [$DUNNO, $DUNNO, $DUNNO, $BLOCK], 'quota 3: three accepted, the fourth blocked');
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
ok(kill_family($pid), 'every process killed with SIGKILL');
$pid = start_daemon($c);
like(slurp($c->{log}), qr/preload: the database is unreachable; 1 sender\(s\) loaded from the counter snapshot \Q$snapshot\E, written \d+ s ago/,
     'the snapshot is loaded, its age logged');
is_deeply(send_n($c, $s1, 1), [$BLOCK], 'the blocked sender is still blocked');
is_deeply(send_n($c, 'new@example.org', 1), [$DUNNO], 'a new sender is accepted');
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
    is_deeply(send_n($c, $s1, 1), [$DUNNO], "$how: the daemon serves (from an empty cache)");
    database_server('start');
    ok(wait_until(sub { my $r = db_counts(); @$r && $r->[0][3] == ($how eq 'flip' ? 6 : $how eq 'truncate' ? 7 : 8) }, 30),
       "$how: written once the database is back");
    ok(wait_until(sub { defined status_json($c)->{snapshot}{age} }, 15), "$how: a sound snapshot is written again");
    is(stop_daemon($pid), 0, "$how: TERM, exit 0");
}
is_deeply(db_counts(), [[$s1, 8, 8, 8], ['new@example.org', 1, 1, 1]], 'every count in the database is exact');

# --- forged snapshots: a valid checksum, values out of range ---
# The layout of snapshot.c (host byte order): the header, then the records.
my $HEADER = 'L L L L Q q a256 a32';               # magic version record_size reserved count created_us owner sha256
my $RECORD = 'Q q L L L L L L L L C C C C a142 a6'; # db_id reset_us quota quota_reset msg_counter rcpt_counter
                                                    # msg_total rcpt_total msg_quota rcpt_quota locked notified
                                                    # quota_own block_action key pad
my $genuine = slurp($snapshot);
my @head = unpack $HEADER, $genuine;
is(length($genuine), 320 + 200 * $head[4], 'the genuine snapshot has the layout the forgeries copy');
my @records = map { [unpack $RECORD, substr($genuine, 320 + 200 * $_, 200)] } 0 .. $head[4] - 1;
my $now_us = int(time * 1e6);

# Write a snapshot with a checksum that matches, as its writer would.
sub forge {
    my (%o) = @_;
    my @h = @head;
    my @r = map { [@$_] } @records;
    $o{edit}->(\@h, \@r) if $o{edit};
    my $body = $o{body} // join '', map { pack $RECORD, @$_ } @r;
    $h[7] = "\0" x 32;
    $h[7] = sha256(pack($HEADER, @h) . $body);
    open my $fh, '>', $snapshot or die "$snapshot: $!";
    print $fh pack($HEADER, @h), $body;
    close $fh;
}

# Sixteen entries: the smallest cache.entries; a reset every hour, so a
# far-past creation time would have to be brought over every hour since.
$c = write_config(database => $db, quota => 3, port => $c->{port},
                  sections => { cache => "refresh_interval = 1\nentries = 16\n", quota => "reset_schedule = hourly\n" });
my $key17 = sub { my ($i) = @_; my $k = "forged$i\@example.org"; $k . ("\0" x (146 - length $k)) };
my @forged = (
    ['created_us = INT64_MIN+1', "created at -9223372036854775807 us since 1970, not between 366 days ago and 600 s ahead",
     edit => sub { $_[0][5] = -9223372036854775807 }],
    ['created_us an hour ahead', "created at @{[$now_us + 3_600_000_000]} us since 1970, not between 366 days ago and 600 s ahead",
     edit => sub { $_[0][5] = $now_us + 3_600_000_000 }],
    ['created_us 400 days back', "created at @{[$now_us - 400 * 86_400_000_000]} us since 1970, not between 366 days ago and 600 s ahead",
     edit => sub { $_[0][5] = $now_us - 400 * 86_400_000_000 }],
    ['a reset far in the future', 'sender 2: last reset after the snapshot was written, or before 1970',
     edit => sub { $_[1][1][1] = $now_us + 3650 * 86_400_000_000 }],
    ['count 2^26 in a small file', '67108864 senders, more than cache.entries (16)',
     edit => sub { $_[0][4] = 1 << 26 }],
    ['count 17 > cache.entries 16, the file as long as it says', '17 senders, more than cache.entries (16)',
     edit => sub { my ($h, $r) = @_; $h->[4] = 17; @$r = map { my @x = @{ $r->[0] }; $x[14] = $key17->($_); \@x } 1 .. 17 }],
    ['count 3, two records', 'size 720 bytes does not match its header (3 senders): truncated or damaged',
     edit => sub { $_[0][4] = 3 }],
    ['a key without NUL', 'sender 2: key not NUL-terminated',
     edit => sub { $_[1][1][14] = 'x' x 146 }],
    ['an upper-case key', 'sender 1: key not as the cache makes them (lower case)',
     edit => sub { $_[1][0][14] = "Blocked\@example.org\0" }],
    ['a counter above its total', 'sender 1: counter above its total (totals are never reset)',
     edit => sub { $_[1][0][4] = $_[1][0][6] + 1 }],
    ['locked = 2', 'sender 2: locked neither 0 nor 1', edit => sub { $_[1][1][10] = 2 }],
    ['notified = 4', 'sender 1: unknown notified bits', edit => sub { $_[1][0][11] = 4 }],
    ['quota_own = 4', 'sender 1: unknown quota_own bits', edit => sub { $_[1][0][12] = 4 }],
    ['msg_quota without its bit', 'sender 1: an own limit without its quota_own bit', edit => sub { $_[1][0][8] = 5 }],
    ['block_action = 6', 'sender 2: block_action out of range', edit => sub { $_[1][1][13] = 6 }],
);
database_server('stop');
my $forged_sent = 0;
for my $case (@forged) {
    my ($what, $why, %o) = @$case;
    forge(%o);
    my $log_before = length slurp($c->{log});
    my $t0 = time;
    $pid = start_daemon($c);
    my $took = time - $t0;
    my $log = substr(slurp($c->{log}), $log_before);
    like($log, qr/warning: preload: counter snapshot \Q$snapshot\E refused, not trusted: \Q$why\E; starting with an empty cache\n/,
         "$what: refused with the reason") or diag(join "\n", grep { /snapshot/ } split /\n/, $log);
    ok($took < 8, "$what: started in @{[sprintf '%.1f', $took]} s (bound 8 s)");
    # (forgedN@ are in it: what the previous runs answered, replayed)
    is_deeply([grep { $_->{sender} !~ /^forged\d+\@/ } @{ status_json($c)->{senders} }], [],
              "$what: nothing of it in the cache");
    $forged_sent++;
    is_deeply(send_n($c, "forged$forged_sent\@example.org", 1), [$DUNNO], "$what: the daemon answers");
    # Exit 6 (RG_EXIT_RUNTIME): the answered record waits in the queue for
    # the database; TERM is honoured within stop_daemon's 15 s.
    is(stop_daemon($pid), 6, "$what: TERM, exit 6 (a record left for the database)");
}

# In range but older than the last boundary: loaded, then reset at it at
# once (the boundary found directly, not hour by hour over 300 days).
forge(edit => sub { $_[0][5] = $now_us - 300 * 86_400_000_000; $_->[1] = 0 for @{ $_[1] } });
my $log_before = length slurp($c->{log});
my $t0 = time;
$pid = start_daemon($c);
my $took = time - $t0;
my $log = substr(slurp($c->{log}), $log_before);
like($log, qr/2 sender\(s\) loaded from the counter snapshot \Q$snapshot\E, written 259200\d\d s ago/,
     '300 days old: loaded') or diag($log);
like($log, qr/the snapshot is older than the last period boundary \(hourly schedule\): 2 sender\(s\) reset/,
     '300 days old: reset at the last hourly boundary');
ok($took < 8, "300 days old: started in @{[sprintf '%.1f', $took]} s (bound 8 s)");
is_deeply(send_n($c, $s1, 1), [$DUNNO], '300 days old: the blocked sender starts a new period');
is(stop_daemon($pid), 6, '300 days old: TERM, exit 6 (records left for the database)');

database_server('start');
$pid = start_daemon($c);
ok(wait_until(sub { my $r = db_counts(); @$r == 2 + $forged_sent && !grep { $_->[0] =~ /^forged/ && $_->[3] != 1 } @$r }, 30),
   'the database is back: what was answered meanwhile is written') or diag(explain(db_counts()));
is(stop_daemon($pid), 0, 'TERM, exit 0');
$h->disconnect;
done_testing();
