#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 92-purge.t - the retention purge in chunks (issue 32), with the private
# MariaDB: `rateguard cleanup` deletes exactly the `messages` rows created
# before midnight message_retention days ago (none younger, all older; the
# row at the cutoff kept, the one a second before it gone), in the number
# of chunks its log says; the writer purges between its rounds, so the
# records sent meanwhile are written before the purge ends; a writer
# killed with SIGKILL in the middle is followed by one that goes on, a
# whole daemon killed likewise by the next start, which deletes exactly
# what was left (its log line and rateguard_db_purged_rows_total say how
# many); no purge transaction ever modifies more than purge.chunk_rows rows
# (information_schema.INNODB_TRX polled, as MariaDB's root, throughout).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use DBI;
use Time::HiRes qw(sleep);
use TrxPoll;
use RG qw(write_config start_daemon stop_daemon migrated_database wait_until slurp test_dir ask run_rateguard
          status_json dbh kill_family);

my $RETENTION = 7;
my $DAYS = 14;          # rows on days 0 (today) .. 13 ago; 8 .. 13 are past retention

# $n rows, row s on day s % $DAYS ago at (s % 86400) s past that day's
# midnight (the database's clock, as the purge's cutoff).
sub fill {
    my ($h, $n) = @_;
    $h->do(qq{INSERT INTO messages (sender, rcpt_count, blocked, msgid, created_at)
              SELECT CONCAT('old', seq % 50, '\@example.org'), 1, 0, CONCAT('F', seq),
                     CURDATE() - INTERVAL (seq % $DAYS) DAY + INTERVAL (seq % 86400) SECOND
              FROM seq_1_to_$n});
}

# What fill($n) made: rows per day ago.
sub filled {
    my ($n) = @_;
    my %want;
    $want{$_ % $DAYS}++ for 1 .. $n;
    return \%want;
}

# Rows per day ago, as the table has them now.
sub by_day {
    my ($h) = @_;
    my $rows = $h->selectall_arrayref('SELECT DATEDIFF(CURDATE(), created_at), COUNT(*) FROM messages GROUP BY 1');
    return { map { @$_ } @$rows };
}

sub old_rows {
    my ($h) = @_;
    return ($h->selectrow_array("SELECT COUNT(*) FROM messages WHERE created_at < CURDATE() - INTERVAL $RETENTION DAY"))[0];
}

sub older_sum { my ($want) = @_; my $s = 0; $s += $want->{$_} for grep { $_ > $RETENTION } keys %$want; return $s }

# The same counts with the days past retention emptied.
sub purged_view {
    my ($want) = @_;
    return { map { $_ => $want->{$_} } grep { $_ <= $RETENTION } keys %$want };
}

# --- cleanup: exactly the rows past retention, in the chunks it says ---
my $db = migrated_database('purge');
my $h = dbh($db);
my $N = 120000;
fill($h, $N);
# The cutoff itself: a row at it is kept, a row a second before it goes.
$h->do(qq{INSERT INTO messages (sender, rcpt_count, blocked, msgid, created_at) VALUES
          ('edge\@example.org', 1, 0, 'AT_CUTOFF', CURDATE() - INTERVAL $RETENTION DAY),
          ('edge\@example.org', 1, 0, 'BEFORE_CUTOFF', CURDATE() - INTERVAL $RETENTION DAY - INTERVAL 1 SECOND)});
my $want = filled($N);
$want->{$RETENTION}++;
$want->{$RETENTION + 1}++;
is_deeply(by_day($h), $want, "$N rows over $DAYS days, and the two at the cutoff");
my $older = older_sum($want);

my $c = write_config(database => $db, extra => "message_retention = $RETENTION\n",
                     sections => { purge => "chunk_rows = 1000\n" });
my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'cleanup');
is($rc, 0, 'cleanup: exit 0') or diag $err;
my $chunks = int($older / 1000) + 1;
like($err, qr/cleanup: 0 sender\(s\) reset, $older message\(s\) purged in $chunks chunk\(s\) of at most 1000\b/,
     "cleanup: $older rows in $chunks chunks (the last one short)");
is_deeply(by_day($h), purged_view($want), 'exactly the rows past retention are gone: none younger, all older');
is_deeply($h->selectcol_arrayref(q{SELECT msgid FROM messages WHERE sender = 'edge@example.org'}), ['AT_CUTOFF'],
          'the row at the cutoff kept, the one a second before it purged');
($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'cleanup');
like($err, qr/cleanup: 0 sender\(s\) reset, 0 message\(s\) purged in 1 chunk\(s\)/, 'a second cleanup: nothing left');

# --- the writer: paced, records written meanwhile, SIGKILL in the middle ---
$db = migrated_database('purge_writer');
$h = dbh($db);
$N = 70000;
fill($h, $N);
$want = filled($N);
my $old0 = old_rows($h);
is($old0, older_sum($want), "$old0 rows past retention");

# The poller (t/lib/TrxPoll.pm): the largest trx_rows_modified of any
# transaction seen (only the daemon writes meanwhile), and how many samples
# showed one of the purge.
my $dir = test_dir();
my $purge_stmt = qr/^DELETE FROM `messages`/;

my $poller = TrxPoll::start($dir, $purge_stmt);
$c = write_config(database => $db, extra => "message_retention = $RETENTION\n",
                  sections => { purge => "chunk_rows = 100\npause = 50\n" });
my $pid = start_daemon($c);
# Records sent as the purge begins are written before it ends.
ask($c, sasl_username => 'live@example.org', recipient_count => 1, queue_id => "LIVE$_", instance => "live.$_")
    for 1 .. 20;
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE msgid LIKE 'LIVE%'}))[0] == 20 }),
   '20 records sent during the purge are written');
my $left = old_rows($h);
ok($left > 0 && $left < $old0, "... while the purge goes on ($left of $old0 old rows left)");
$want->{0} += 20;

# The writer killed: the master's next writer goes on.
ok(wait_until(sub { old_rows($h) < $old0 * 0.9 }, 30), 'the purge goes on');
my $writer = status_json($c)->{writer_pid};
ok($writer && kill('KILL', $writer), "writer $writer killed with SIGKILL");
my $at_kill = old_rows($h);
ok($at_kill > 0, "$at_kill old rows left");
ok(wait_until(sub { my $w = eval { status_json($c)->{writer_pid} }; $w && $w != $writer }, 30), 'a new writer');
ok(wait_until(sub { old_rows($h) < $at_kill }, 30), 'the new writer goes on with the purge');

# The whole daemon killed in the middle: the next start finishes it.
ok(kill_family($pid), 'master, workers and writer killed with SIGKILL');
$left = old_rows($h);
ok($left > 0, "$left old rows left by the killed daemon");
my $log_before = length(slurp($c->{log}) // '');
$pid = start_daemon($c);
ok(wait_until(sub { old_rows($h) == 0 }, 120), 'the next start purges the rest');
is_deeply(by_day($h), purged_view($want), 'exactly the rows past retention are gone: none younger, all older');
ok(wait_until(sub { substr(slurp($c->{log}), $log_before) =~ /writer: purge: (\d+) message\(s\)/ && $1 == $left }),
   "the writer's log says it purged the $left rows left");
my ($prom_rc, $prom) = run_rateguard('-c', $c->{path}, '--prometheus', 'status');
my ($rows) = $prom =~ /^rateguard_db_purged_rows_total (\d+)$/m;
my ($nchunks) = $prom =~ /^rateguard_db_purge_chunks_total (\d+)$/m;
is($rows, $left, "rateguard_db_purged_rows_total $left");
is($nchunks, int($left / 100) + 1, 'rateguard_db_purge_chunks_total: one per 100 rows, and the short last one');
is(stop_daemon($pid), 0, 'stopped');
my ($max) = TrxPoll::stop($poller);
ok(defined $max && $max <= 100, "no transaction modified more than chunk_rows = 100 rows meanwhile (at most $max)");

# --- at a reset_schedule boundary: the reset, then the purge ---
# An hourly schedule whose boundary comes a few seconds after the start
# (TZ set so that it is xx:00:00 then, as t/32 does); the start's purge
# is over (nothing to purge, one chunk) before the old rows are put in.
$db = migrated_database('purge_boundary');
$h = dbh($db);
my ($boundary, $margin) = (0, 4);
for my $try (1 .. 4) {
    my $t_start = time;
    $boundary = int($t_start) + $margin;
    my $secs = (3600 - $boundary % 3600) % 3600;
    my $tz = sprintf('RGT-%02d:%02d:%02d', int($secs / 3600), int($secs % 3600 / 60), $secs % 60);
    $c = write_config(database => $db, name => "boundary$try", extra => "message_retention = $RETENTION\n",
                      sections => { quota => "reset_schedule = hourly\n", purge => "chunk_rows = 100\n" });
    $pid = start_daemon($c, env => { TZ => $tz });
    last if $boundary - time >= 2;
    is(stop_daemon($pid), 0, 'started past the margin: stopped, again');
    $margin = 4 + 2 * int(time - $t_start + 1);
}
ok(wait_until(sub { my (undef, $p) = run_rateguard('-c', $c->{path}, '--prometheus', 'status');
                    ($p =~ /^rateguard_db_purge_chunks_total (\d+)$/m)[0] >= 1 }), "the start's purge: one chunk");
$h->do(q{INSERT INTO messages (sender, rcpt_count, blocked, msgid, created_at)
         SELECT 'late@example.org', 1, 0, CONCAT('OLD', seq), NOW() - INTERVAL 10 DAY FROM seq_1_to_3000});
sleep 0.5;
ok(time < $boundary && old_rows($h) == 3000, '3000 old rows put in before the boundary are still there');
ok(wait_until(sub { old_rows($h) == 0 }, $boundary - time + 30), 'purged after the boundary');
ok(wait_until(sub { slurp($c->{log}) =~ /notice: period reset: \d+ sender\(s\) reset.*writer: purge: 3000 message\(s\) created before \S+ deleted in 31 chunk\(s\)/s }),
   'the reset, then the purge: 3000 rows in 31 chunks');
is(stop_daemon($pid), 0, 'stopped');

# --- the bound, seen: chunks of 2000 back to back (pause = 0) ---
$db = migrated_database('purge_bound');
$h = dbh($db);
$N = 280000;
fill($h, $N);
$want = filled($N);
$old0 = old_rows($h);
$c = write_config(database => $db, extra => "message_retention = $RETENTION\n",
                  sections => { purge => "chunk_rows = 2000\npause = 0\n" });
$poller = TrxPoll::start($dir, $purge_stmt);
$pid = start_daemon($c);
ok(wait_until(sub { old_rows($h) == 0 }, 120), "the writer purges $old0 rows");
my $seen;
($max, $seen) = TrxPoll::stop($poller);
is_deeply(by_day($h), purged_view($want), 'exactly the rows past retention are gone');
ok(wait_until(sub { slurp($c->{log}) =~ /writer: purge: $old0 message\(s\) created before \S+ deleted in (\d+) chunk/
                    && $1 == int($old0 / 2000) + 1 }), 'in ' . (int($old0 / 2000) + 1) . ' chunks');
is(stop_daemon($pid), 0, 'stopped');
ok(($seen // 0) > 0, "purge transactions seen in INNODB_TRX (" . ($seen // 0) . " samples)");
ok(defined $max && $max <= 2000, "none modified more than chunk_rows = 2000 rows (at most $max)");

done_testing();
