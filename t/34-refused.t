#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 34-refused.t - a record the database refuses for good (here: a msgid too
# long for a column an administrator narrowed) must not block the queue:
# the batch is retried record by record, the refused record is tried once
# more alone, then set aside in state_dir/rejected.log with the reason; the
# others are written, and the cache drops the refused record's counts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp test_dir run_rateguard status_json);

my $db = migrated_database('refused');
my $h = dbh($db);
$h->do('ALTER TABLE messages MODIFY msgid varchar(5) DEFAULT NULL');
my $c = write_config(database => $db, quota => 100);
my $pid = start_daemon($c);
my $s = policy_connect($c);
my $locker = dbh($db);
$locker->do('LOCK TABLES ratelimits WRITE, messages WRITE, rateguard_progress WRITE');   # one batch of three
policy_request($s, sasl_username => 'p@example.org', recipient_count => 1, queue_id => $_) for qw(OK1 TOOLONGID OK3);
$locker->do('UNLOCK TABLES');
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 2 }, 15), 'the two good records are written');
is_deeply($h->selectcol_arrayref('SELECT msgid FROM messages ORDER BY id'), ['OK1', 'OK3'], 'in order');
ok(wait_until(sub { -s test_dir() . '/rejected.log' }, 5), 'rejected.log written');
like(slurp(test_dir() . '/rejected.log'), qr/sender=p\@example\.org msgid=TOOLONGID .* error=.*Data too long for column 'msgid'/,
     'the refused record is kept with the reason');
like(slurp($c->{log}), qr/error: writer: record \d+ for p\@example\.org refused by the database \(.*Data too long.*\); kept in .*rejected\.log and skipped/,
     'and logged');
is_deeply($h->selectrow_arrayref(q{SELECT msg_counter, msg_total FROM ratelimits WHERE sender = 'p@example.org'}),
          [2, 2], 'the database counts the two written messages');
my ($e) = grep { $_->{sender} eq 'p@example.org' } @{ status_json($c)->{senders} };
is_deeply([$e->{msg_counter}, $e->{unwritten_msg}], [2, 0], 'the cache agrees, nothing left queued');
is(policy_request($s, sasl_username => 'p@example.org', recipient_count => 1, queue_id => 'OK4'), "action=DUNNO\n\n",
   'later messages are served');
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 3 }, 10), 'and written in bulk again');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
$h->disconnect;
$locker->disconnect;
done_testing();
