#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 93-refresh-reset.t - what scales with the number of senders, bounded
# (issue 32), with 60000 `ratelimits` rows and the private MariaDB:
#   - the writer's refresh of the cache reads the table in pages of 5000
#     rows between its write rounds (its debug line says how many: 13 for
#     60000 rows, the last one empty), and still does what the refresh is
#     for: a quota an operator edited in the last page reaches the cache, a
#     deleted sender is dropped from it (and starts afresh), the others are
#     kept;
#   - the period reset (`cleanup`) updates the rows in chunks of
#     purge.chunk_rows (1000), each its own transaction: no transaction
#     modifies more rows (information_schema.INNODB_TRX polled throughout,
#     and at least one chunk seen), yet every row is reset, the totals
#     kept.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use TrxPoll;
use RG qw(write_config start_daemon stop_daemon migrated_database wait_until slurp test_dir ask run_rateguard dbh
          BLOCK_REPLY DUNNO_REPLY);

my $N = 60000;
my $db = migrated_database('refresh_reset');
my $h = dbh($db);
$h->do(qq{INSERT INTO ratelimits (sender, quota, quota_reset, msg_counter, rcpt_counter, msg_total, rcpt_total)
          SELECT CONCAT('s', seq, '\@example.org'), 1000, 1000, 5, 5, 7, 7 FROM seq_1_to_$N});
is(($h->selectrow_array('SELECT COUNT(*) FROM ratelimits'))[0], $N, "$N senders, each 5 messages this period");

my $c = write_config(database => $db, name => 'pages',
                     sections => { cache => "refresh_interval = 1\n", purge => "chunk_rows = 1000\n" });
my $pid = start_daemon($c);

# --- the refresh in pages ---
my $pages = int($N / 5000) + 1;
sub passes { scalar(() = (slurp($c->{log}) // '') =~ /writer: refresh: \d+ row\(s\) read in \d+ page\(s\)/g) }
ok(wait_until(sub { slurp($c->{log}) =~ /writer: refresh: $N row\(s\) read in $pages page\(s\)/ }, 30),
   "a refresh pass reads the $N rows in $pages pages of at most 5000");

# An operator's edits, in the last page: a quota lowered to the count, a
# sender deleted; seen once a pass that began after them has ended.
$h->do(q{UPDATE ratelimits SET quota = 5 WHERE sender = 's59990@example.org'});
$h->do(q{DELETE FROM ratelimits WHERE sender = 's59991@example.org'});
my $before = passes();
ok(wait_until(sub { passes() >= $before + 2 }, 30), 'two more passes');
is(ask($c, sasl_username => 's59990@example.org', recipient_count => 1), BLOCK_REPLY,
   'the quota edited in the last page is the cache\'s: the sixth message blocked');
is(ask($c, sasl_username => 's59989@example.org', recipient_count => 1), DUNNO_REPLY, 'its neighbour accepted');
like(slurp($c->{log}), qr/refresh: 1 sender\(s\) deleted from the database dropped from the cache/,
     'the deleted sender dropped from the cache (one, no other)');
unlike(slurp($c->{log}), qr/refresh: (?!1 )\d+ sender\(s\) deleted/, 'no other sender ever dropped');
is(ask($c, sasl_username => 's59991@example.org', recipient_count => 1), DUNNO_REPLY, 'the deleted sender accepted');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT msg_counter FROM ratelimits WHERE sender = 's59991@example.org'}))[0]
                    // 0 }), '... its row made again');
is_deeply($h->selectrow_arrayref(q{SELECT msg_counter, msg_total FROM ratelimits WHERE sender = 's59991@example.org'}),
          [1, 1], '... afresh: 1 message, not the deleted row\'s 5');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT msg_counter FROM ratelimits WHERE sender = 's59989@example.org'}))[0]
                    == 6 }), 'the neighbour\'s count written: 6');

# --- the period reset in chunks ---
my $rows = ($h->selectrow_array('SELECT COUNT(*) FROM ratelimits'))[0];
my $poll = TrxPoll::start(test_dir(), qr/^UPDATE `ratelimits` SET `msg_counter` = 0/, 0.11);
my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'cleanup');
my ($max, $seen) = TrxPoll::stop($poll);
is($rc, 0, 'cleanup: exit 0') or diag $err;
like($err, qr/cleanup: $rows sender\(s\) reset\b/, "cleanup: all $rows senders reset");
ok(defined $max && $max <= 1000, "no transaction modified more than chunk_rows = 1000 rows (at most " . ($max // '?') . ')');
ok(($seen // 0) >= 1, "a chunk of the reset was seen running (samples: " . ($seen // 0) . ')');
is_deeply($h->selectrow_arrayref(q{SELECT COUNT(*) FROM ratelimits WHERE msg_counter <> 0 OR rcpt_counter <> 0
                                   OR reset_at IS NULL}), [0], 'every row reset: counters 0, reset_at set');
is_deeply($h->selectrow_arrayref(q{SELECT COUNT(*), MIN(msg_total), MAX(msg_total) FROM ratelimits
                                   WHERE sender LIKE 's%' AND sender NOT IN ('s59989@example.org', 's59990@example.org',
                                                                            's59991@example.org')}),
          [$rows - 3, 7, 7], 'the totals kept');
is(ask($c, sasl_username => 's59990@example.org', recipient_count => 1), DUNNO_REPLY,
   'the blocked sender accepted again in the new period');

is(stop_daemon($pid), 0, 'the daemon stops cleanly');
done_testing();
