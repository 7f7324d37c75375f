#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 13-cleanup.t - `rateguard cleanup` in the database, with PolicydRateGuard's
# vectors: counters to 0; quota back to quota_reset unless quota_locked;
# totals and updated_at kept; messages older than midnight N days ago purged.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use RG qw(run_rateguard fresh_database dbh write_config);

my $db = fresh_database('cleanup');
my $c = write_config(database => $db, extra => "message_retention = 2\n");
my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'migrate');
is($rc, 0, 'migrate') or diag $err;

my $h = dbh($db);
$h->do(q{INSERT INTO ratelimits (sender, quota, quota_reset, quota_locked, msg_counter, rcpt_counter,
         msg_total, rcpt_total, updated_at) VALUES
         ('locked@example.com', 100, 5, 1, 4, 7, 40, 70, '2024-02-03 04:05:06'),
         ('unlocked@example.com', 3000, 1000, 0, 12, 30, 12, 30, '2024-02-03 04:05:06')});
# Retention 2 days: everything before midnight two days ago goes.
$h->do(q{INSERT INTO messages (sender, rcpt_count, blocked, msgid, created_at) VALUES
         ('locked@example.com', 1, 0, 'OLD', CURDATE() - INTERVAL 2 DAY - INTERVAL 1 SECOND),
         ('locked@example.com', 1, 0, 'EDGE', CURDATE() - INTERVAL 2 DAY),
         ('locked@example.com', 1, 0, 'NEW', NOW())});

($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'cleanup');
is($rc, 0, 'cleanup: exit 0') or diag $err;
like($err, qr/cleanup: 2 sender\(s\) reset, 1 message\(s\) purged/, 'cleanup logs what it did');
is_deeply($h->selectall_arrayref(q{SELECT sender, quota, quota_reset, quota_locked, msg_counter,
          rcpt_counter, msg_total, rcpt_total, updated_at FROM ratelimits ORDER BY sender}),
          [['locked@example.com', 100, 5, 1, 0, 0, 40, 70, '2024-02-03 04:05:06'],
           ['unlocked@example.com', 1000, 1000, 0, 0, 0, 12, 30, '2024-02-03 04:05:06']],
          'counters reset, locked quota kept, unlocked quota reset, totals and updated_at kept');
is_deeply($h->selectcol_arrayref('SELECT msgid FROM messages ORDER BY id'), ['EDGE', 'NEW'],
          'messages before midnight two days ago purged, the rest kept');

# Retention 0 keeps every message.
my $keep = write_config(database => $db, name => 'keep');
$h->do(q{INSERT INTO messages (sender, rcpt_count, blocked, msgid, created_at)
         VALUES ('x@example.com', 1, 0, 'ANCIENT', '2001-01-01 00:00:00')});
($rc) = run_rateguard('-c', $keep->{path}, 'cleanup');
is($rc, 0, 'cleanup with retention 0: exit 0');
is_deeply($h->selectcol_arrayref('SELECT msgid FROM messages ORDER BY id'), ['EDGE', 'NEW', 'ANCIENT'],
          'retention 0 keeps every message');

# Database unreachable: exit 8.
my $bad = write_config(database => $db, name => 'bad',
                       sections => { database => qq{socket = "/nonexistent/mysqld.sock"\n} });
($rc, $out, $err) = run_rateguard('-c', $bad->{path}, 'cleanup');
is($rc, 8, 'cleanup without a database: exit 8');
like($err, qr/cleanup: connect to database/, 'cleanup without a database: message');

$h->disconnect;
done_testing();
