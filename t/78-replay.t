#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 78-replay.t - t/replay and the traces of t/traces (issue 29): a trace
# replayed through the policy port flags exactly the logins the daemon
# blocks, at the message it blocks, and its totals are the database's;
# the committed traces are what t/trace-gen writes, with the shapes the
# issue asks for; the botnet trace's head replays.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon migrated_database dbh wait_until test_dir slurp BLOCK_REPLY);

my $top = "$FindBin::Bin/..";
my $dir = test_dir();
my ($BLOCK_ACTION, $BLOCK_TEXT) = BLOCK_REPLY =~ /^action=(\S+) ([^\n]*)/;

# Run t/replay with @args; returns its exit code, output and errors.
sub replay {
    my (@args) = @_;
    my $out = `$^X $top/t/replay @args 2>$dir/replay.err`;
    return ($? >> 8, $out, slurp("$dir/replay.err"));
}

sub write_trace {
    my ($path, @rows) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh "offset_seconds,login,client_address,recipients\n";
    print $fh join(',', @$_), "\n" for sort { $a->[0] <=> $b->[0] || $a->[1] cmp $b->[1] } @rows;
    close $fh;
}

# Rows of a gzip-compressed trace (header dropped), the first $n if given.
sub trace_rows {
    my ($path, $n) = @_;
    open my $fh, '-|', 'gzip', '-dc', $path or die "gzip: $!";
    my $header = <$fh>;
    my @rows;
    while (my $line = <$fh>) {
        chomp $line;
        push @rows, [split /,/, $line];
        last if defined $n && @rows >= $n;
    }
    close $fh;
    return ($header, \@rows);
}

# Wait until the writer has stored $n messages, then the database's counts.
sub db_counts {
    my ($h, $n) = @_;
    wait_until(sub { $h->selectrow_array('SELECT count(*) FROM messages') >= $n }, 20);
    my ($msgs, $rcpts, $rows) = $h->selectrow_array('SELECT sum(msg_total), sum(rcpt_total), count(*) FROM ratelimits');
    my ($stored, $blocked) = $h->selectrow_array('SELECT count(*), sum(blocked) FROM messages');
    return { messages => $msgs + 0, recipients => $rcpts + 0, logins => $rows + 0,
             stored => $stored + 0, blocked => $blocked + 0 };
}

# --- a trace with known answers, quota 10, the webmail pool exempt ---
my $db = migrated_database('replay');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 10, sections => { exempt => qq{networks = { "192.0.2.0/24" }\n} });
my $pid = start_daemon($c);

my @rows;
# heavy: 12 messages of 1 recipient over the morning, blocked from the 11th.
push @rows, [3600 + 600 * $_, 'heavy@example.org', '10.1.1.1', 1] for 0 .. 11;
# wide: 3 messages of 4 recipients from two networks: 12 recipients at the third.
push @rows, [5000, 'wide@example.org', '10.2.2.2', 4], [20000, 'wide@example.org', '100.64.3.3', 4],
            [40000, 'wide@example.org', '10.2.2.2', 4];
# five logins at exactly their quota: 10 messages, never flagged.
for my $i (1 .. 5) {
    push @rows, [1000 * $i + 7000 * $_, "light$i\@example.org", "10.3.3.$i", 1] for 0 .. 9;
}
# a webmail login through the exempt pool: 30 messages, neither counted nor flagged.
push @rows, [2000 + 2500 * $_, 'webmail@example.net', '192.0.2.' . (10 + $_ % 4), 2] for 0 .. 29;
write_trace("$dir/known.csv", @rows);
my $heavy_11th = 3600 + 600 * 10;

my ($rc, $out, $err) = replay('--json', '--speed', 86400, '--port', $c->{port}, '--connections', 3, "$dir/known.csv");
is($rc, 0, 'replay of the known trace: exit 0') or diag($err);
my $r = eval { decode_json($out) } // {};
is_deeply($r->{flagged},
          [{ offset => $heavy_11th, login => 'heavy@example.org', action => $BLOCK_ACTION, text => $BLOCK_TEXT, messages => 11 },
           { offset => 40000, login => 'wide@example.org', action => $BLOCK_ACTION, text => $BLOCK_TEXT, messages => 3 }],
          'flagged: heavy at its 11th message, wide at its 3rd (12 recipients), by the block reply; nobody else');
my $n = @rows;
my $rcpts = 0;
$rcpts += $_->[3] for @rows;
is_deeply($r->{totals}, { messages => $n, recipients => $rcpts, logins => 8, flagged => 2, episodes => 2,
                          replies => { DUNNO => $n - 3, $BLOCK_ACTION => 3 } },
          "totals: $n messages, 8 logins, 2 flagged, 2 episodes, 3 blocked replies");
is_deeply($r->{episodes}, $r->{flagged}, 'episodes: one per flagged login (a block lasts the period)');
is_deeply([map { [@{ $r->{logins}{$_} }{qw(episodes flagged_replies before_flag)}] } qw(heavy@example.org wide@example.org light1@example.org)],
          [[1, 2, 10], [1, 1, 2], [0, 0, undef]],
          'per login: episodes, flagged replies, messages before the first flag');
is($r->{clock}, undef, 'no --clock: clock null');
is_deeply([map { $r->{logins}{$_}{messages} } qw(heavy@example.org wide@example.org light1@example.org webmail@example.net)],
          [12, 3, 10, 30], 'messages per login');

# The database counted what was replayed, the exempt pool aside.
my $counted = $n - 30;
is_deeply(db_counts($h, $counted),
          { messages => $counted, recipients => $rcpts - 60, logins => 7, stored => $counted, blocked => 3 },
          'database: totals of the counted messages, a row per counted login, 3 blocked');
my %total = map { @$_ } @{ $h->selectall_arrayref('SELECT sender, msg_total FROM ratelimits') };
is_deeply(\%total, { map { $_ => $r->{logins}{$_}{messages} } grep { !/webmail/ } keys %{ $r->{logins} } },
          "each login's msg_total is what the replay sent");

# The text report: the flag lines and the totals.
stop_daemon($pid);
$h->do('DELETE FROM ratelimits');
$h->do('DELETE FROM messages');
$pid = start_daemon($c);
($rc, $out) = replay('--speed', 0, '--port', $c->{port}, '--connections', 1, "$dir/known.csv");
is($rc, 0, 'replay at --speed 0 on one connection: exit 0');
my @lines = split /\n/, $out;
is_deeply([grep { /^flagged/ } @lines],
          [qq{flagged 0d02:40:00 ($heavy_11th s) heavy\@example.org $BLOCK_ACTION "$BLOCK_TEXT" at message 11},
           qq{flagged 0d11:06:40 (40000 s) wide\@example.org $BLOCK_ACTION "$BLOCK_TEXT" at message 3}],
          'text report: one line per flagged login, simulated time, login, action, text, message number');
is($lines[2], "messages $n, recipients $rcpts, logins 8, flagged 2", 'text report: totals');
is($lines[3], "replies $BLOCK_ACTION 3, DUNNO " . ($n - 3), 'text report: replies by action (sorted by name)');
is($lines[4], 'episodes 2 in 2 logins, 3 flagged replies; sent before the first flag: heavy@example.org 10, wide@example.org 2',
   'text report: episodes, flagged replies, messages before each first flag');
stop_daemon($pid);

# --- bad input ---
write_trace("$dir/bad.csv", [10, 'a@example.org', '10.0.0.1', 1], [5, 'b@example.org', '10.0.0.1', 'x']);
($rc, undef, $err) = replay('--port', $c->{port}, "$dir/bad.csv");
is($rc, 2, 'a malformed trace: exit 2');
like($err, qr{bad\.csv line 2: not offset,login,client_address,recipients}, '... naming the line');
($rc, undef, $err) = replay('--port', 1, "$dir/known.csv");
is($rc, 1, 'no daemon at the port: exit 1');
like($err, qr{cannot connect to 127\.0\.0\.1:1}, '... saying so');

# --- the committed traces are t/trace-gen's, with the issue's shapes ---
mkdir "$dir/gen";
system("$^X $top/t/trace-gen --out $dir/gen 2>/dev/null") == 0 or die 't/trace-gen failed';
for my $name (qw(botnet benign ramp)) {
    my $committed = "$top/t/traces/$name.csv.gz";
    ok(-s $committed && `gzip -dc $committed | cksum` eq `gzip -dc $dir/gen/$name.csv.gz | cksum`,
       "t/traces/$name.csv.gz is what t/trace-gen writes");
}
my $size = 0;
$size += -s "$top/t/traces/$_.csv.gz" for qw(botnet benign ramp);
cmp_ok($size, '<=', 3_000_000, "the traces take $size bytes, at most 3 MB");

my ($header, $botnet) = trace_rows("$top/t/traces/botnet.csv.gz");
is($header, "offset_seconds,login,client_address,recipients\n", 'header line');
my @hijacked = grep { $_->[1] eq 'hijacked@example.com' } @$botnet;
my (%per_address, %nets, %blocks);
for (@hijacked) {
    $per_address{$_->[2]}++;
    $nets{$_->[2] =~ s/\.\d+\z//r} = 1;
    $blocks{$_->[2] =~ s/\..*//r} = 1;
}
is_deeply([scalar keys %per_address, scalar keys %nets, scalar keys %blocks], [342, 342, 41],
          'botnet: one login from 342 addresses in 342 /24 networks in 41 /8 blocks');
ok(!grep({ $_ > 2 } values %per_address), 'botnet: at most 2 messages per address');
my %others = map { $_->[1] => 1 } grep { $_->[1] ne 'hijacked@example.com' } @$botnet;
is(scalar keys %others, 50, 'botnet: 50 other logins');
ok(!grep({ $botnet->[$_][0] < $botnet->[$_ - 1][0] } 1 .. $#$botnet), 'botnet: sorted by offset');

my (undef, $benign) = trace_rows("$top/t/traces/benign.csv.gz");
my (%logins, %pool);
for (@$benign) {
    $logins{$_->[1]} = 1;
    $pool{$_->[1] =~ /^web/ ? 'web' : 'other'}{$_->[2] =~ /^192\.0\.2\./ ? 'in' : 'out'}++;
}
cmp_ok(scalar keys %logins, '>=', 2000, 'benign: at least 2000 logins');
ok($benign->[-1][0] > 13 * 86400 && $benign->[-1][0] < 14 * 86400, 'benign: 14 days');
ok(!$pool{web}{out} && !$pool{other}{in}, 'benign: the webmail logins, and only they, send from 192.0.2.0/24');
my %phone_day;
$phone_day{"$_->[1] " . int($_->[0] / 86400)}{$_->[2]} = 1 for grep { $_->[1] =~ /^phone/ } @$benign;
ok(!grep({ my $k = keys %$_; $k < 4 || $k > 8 } values %phone_day), 'benign: phones use 4 to 8 networks a day');
my @grows = (0, 0);
$grows[$_->[0] < 7 * 86400 ? 0 : 1]++ for grep { $_->[1] eq 'grows@example.com' } @$benign;
ok($grows[1] > 1.7 * $grows[0], "benign: grows\@example.com sends $grows[0] messages, then $grows[1]");

my (undef, $ramp) = trace_rows("$top/t/traces/ramp.csv.gz");
my %day;
$day{int($_->[0] / 86400)}++ for grep { $_->[1] eq 'ramp@example.com' } @$ramp;
ok($day{8} >= 7 * $day{5} && $day{9} >= 7 * $day{6}, "ramp: $day{5}, $day{6} messages a day, then $day{8}, $day{9}");

# --- the botnet trace's head replays: nothing flagged under a high quota ---
# The signals off: on the real clock the hijacked login's six hours of
# networks come within a second (t/80-traces.t replays it with --clock).
my $db2 = migrated_database('replay_botnet');
my $h2 = dbh($db2);
my $c2 = write_config(database => $db2, name => 'botnet', quota => 1_000_000,
                      sections => { signals => "enabled = false\n" });
$pid = start_daemon($c2);
my $head = 800;
($rc, $out) = replay('--json', '--speed', 0, '--head', $head, '--port', $c2->{port}, "$top/t/traces/botnet.csv.gz");
is($rc, 0, "botnet head ($head messages): exit 0");
$r = eval { decode_json($out) } // {};
my @first = @$botnet[0 .. $head - 1];
my ($head_rcpts, %head_logins) = (0);
for (@first) { $head_rcpts += $_->[3]; $head_logins{$_->[1]} = 1 }
is_deeply([$r->{flagged}, $r->{totals}],
          [[], { messages => $head, recipients => $head_rcpts, logins => scalar keys %head_logins, flagged => 0,
                 episodes => 0, replies => { DUNNO => $head } }],
          'botnet head: nothing flagged, every reply DUNNO');
is_deeply(db_counts($h2, $head),
          { messages => $head, recipients => $head_rcpts, logins => scalar keys %head_logins, stored => $head, blocked => 0 },
          "botnet head: the database counted the replay's messages, recipients and logins");
is(stop_daemon($pid), 0, 'daemon stopped');

# --- --clock: the test build decides at the trace's time; episodes ---
# Only the spread signal (3 networks in the hour): roam trips it at its
# 3rd message, stays held while it trips, is let through once an hour
# passes without a trip, and trips again: two episodes. slow uses a new
# network every two hours: never 3 in an hour of the trace's time, but
# within a second of the real clock.
my $db3 = migrated_database('replay_clock');
my $c3 = write_config(database => $db3, name => 'clock', quota => 1_000_000,
                      sections => { signals => "spread = 3\nrate_multiple = 0\nprobation = 0\n" });
my @roam = ([0, '10.1.1.1'], [60, '10.1.2.1'], [120, '10.1.3.1'], [600, '10.1.1.1'],
            [8000, '10.1.4.1'], [8060, '10.1.5.1'], [8120, '10.1.6.1']);
my @clock_rows = ((map { [$_->[0], 'roam@example.org', $_->[1], 1] } @roam),
                  (map { [7200 * $_, 'slow@example.org', "10.2.$_.1", 1] } 0 .. 5));
write_trace("$dir/clock.csv", @clock_rows);
my $hour = (int(time / 3600) + 2) * 3600;
my $testhooks = "$ENV{RG_BUILD}/rateguard-testhooks";
$pid = start_daemon($c3, binary => $testhooks);
($rc, $out, $err) = replay('--json', '--clock', $hour, '--port', $c3->{port}, "$dir/clock.csv");
is($rc, 0, 'replay --clock: exit 0') or diag($err);
$r = eval { decode_json($out) } // {};
my $held = qr/^Held for review: this login looks hijacked \(signal: spread\)\z/;
is_deeply([map { [@$_{qw(offset login action messages)}] } @{ $r->{episodes} }],
          [[120, 'roam@example.org', 'HOLD', 3], [8120, 'roam@example.org', 'HOLD', 7]],
          'roam: an episode at its 3rd message, another at its 7th after an hour without a trip; slow none');
ok(!grep({ $_->{text} !~ $held } @{ $r->{episodes} }), '... held, naming the spread signal');
is_deeply([map { [@{ $r->{logins}{$_} }{qw(episodes flagged_replies before_flag)}] } qw(roam@example.org slow@example.org)],
          [[2, 3, 2], [0, 0, undef]], 'per login: episodes, flagged replies, messages before the first flag');
is_deeply([@{ $r->{totals} }{qw(flagged episodes)}, $r->{totals}{replies}, $r->{clock}],
          [1, 2, { DUNNO => 10, HOLD => 3 }, $hour], 'totals and the clock T0');
stop_daemon($pid);

# The text report names each episode after the first.
my $db4 = migrated_database('replay_clock2');
$c3 = write_config(database => $db4, name => 'clock2', quota => 1_000_000,
                   sections => { signals => "spread = 3\nrate_multiple = 0\nprobation = 0\n" });
$pid = start_daemon($c3, binary => $testhooks);
($rc, $out) = replay('--clock', 'now', '--port', $c3->{port}, "$dir/clock.csv");
is($rc, 0, 'replay --clock now: exit 0');
@lines = split /\n/, $out;
like($lines[0], qr/^flagged 0d00:02:00 \(120 s\) roam\@example\.org HOLD "Held for review[^"]*" at message 3\z/,
     'text report: the first flag');
like($lines[1], qr/^episode 0d02:15:20 \(8120 s\) roam\@example\.org HOLD "Held for review[^"]*" at message 7 \(episode 2\)\z/,
     'text report: the second episode');
my ($t0) = $out =~ /^clock T0 (\d+) /m;
ok($t0 && $t0 % 3600 == 0 && $t0 > time - 5 && $t0 <= time + 3600, '--clock now: the next whole hour');
stop_daemon($pid);

# Without --clock the daemon's real clock counts: slow's networks come
# within a second, and roam's episode never ends.
my $db5 = migrated_database('replay_noclock');
$c3 = write_config(database => $db5, name => 'noclock', quota => 1_000_000,
                   sections => { signals => "spread = 3\nrate_multiple = 0\nprobation = 0\n" });
$pid = start_daemon($c3, binary => $testhooks);
($rc, $out) = replay('--json', '--port', $c3->{port}, "$dir/clock.csv");
$r = eval { decode_json($out) } // {};
is_deeply([map { [@$_{qw(offset login messages)}] } @{ $r->{episodes} }],
          [[120, 'roam@example.org', 3], [14400, 'slow@example.org', 3]],
          'without --clock: roam one episode from its 3rd message, slow flagged at its 3rd');
is(stop_daemon($pid), 0, 'daemon stopped');

done_testing();
