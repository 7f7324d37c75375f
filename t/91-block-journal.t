#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 91-block-journal.t - the snapshot keeps every block (issue 31): a sender
# blocked 0.5 s before a SIGKILL of the whole daemon, with the database
# already gone and no snapshot written since, is still blocked by the
# daemon started while the database is down (the block journal, applied on
# top of the snapshot and the replayed queue); so is a hijacked-account
# episode; a damaged record is skipped and said, the rest applied; the
# journal's rotated files are retired as snapshots are written; once the
# database is back its rows are exact (the journal adds no count).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon migrated_database dbh wait_until slurp run_rateguard
          database_server test_dir kill_family send_n ask BLOCK_REPLY DUNNO_REPLY);

my $RECORD = 216;       # sizeof(struct blockjournal_record)
my $db = migrated_database('journal');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 3,
                     sections => { cache => "refresh_interval = 3600\n", signals => "enabled = false\n" });
my $dir = test_dir();
sub journal { return (glob("$dir/rateguard-*.blocks"))[0] // '' }
sub rotated { return glob("$dir/rateguard-*.blocks.[0-9]*") }
sub messages_rows { my $h2 = eval { dbh($db) } or return -1; return ($h2->selectrow_array('SELECT COUNT(*) FROM messages'))[0] }

# --- blocked, the database lost unnoticed, 0.5 s, SIGKILL, a start without the database ---
my $pid = start_daemon($c);
is_deeply(send_n($c, 'x@example.org', 4), [(DUNNO_REPLY) x 3, BLOCK_REPLY], 'quota 3: three accepted, the fourth blocked');
ok(wait_until(sub { messages_rows() == 4 }), 'the four records written: nothing stays queued');
is(scalar(() = glob("$dir/rateguard-*.snapshot")), 0, 'no counter snapshot written yet (the first refresh is an hour away)');
my $size = -s journal();
ok($size && $size % $RECORD == 0, "the journal holds whole records ($size bytes)");
is($size / $RECORD, 2, 'two changes of block state: the quota filled, the first refusal');
database_server('stop');
sleep 0.5;
ok(kill_family($pid), 'the daemon SIGKILLed 0.5 s after the block, the database already gone');
$pid = start_daemon($c);
my $log = slurp($c->{log});
like($log, qr/preload: no counter snapshot \S+ either; starting with an empty cache/, 'no snapshot to start from');
like($log, qr/preload: 2 change\(s\) of block state from the journal \S+\.blocks applied on top/, 'the journal applied');
is_deeply(send_n($c, 'x@example.org', 1), [BLOCK_REPLY], 'the sender blocked before the crash is still blocked');
is_deeply(send_n($c, 'y@example.org', 1), [DUNNO_REPLY], 'another sender is accepted');
database_server('start');
ok(wait_until(sub { messages_rows() == 6 }, 20), 'the database back: the two new records written');
is_deeply(dbh($db)->selectall_arrayref(q{SELECT sender, msg_total, msg_counter FROM ratelimits ORDER BY sender}),
          [['x@example.org', 5, 5], ['y@example.org', 1, 1]], 'its rows exact: the journal added no count');
is(stop_daemon($pid), 0, 'stopped');

# --- a snapshot older than the block: the journal on top of it ---
$pid = start_daemon($c);
my ($rc) = run_rateguard('-c', $c->{path}, 'reload-cache');
is($rc, 0, 'reload-cache: a full refresh writes a snapshot');
my @old = rotated();
is_deeply(send_n($c, 'z@example.org', 4), [(DUNNO_REPLY) x 3, BLOCK_REPLY], 'after it, z blocked');
ok(wait_until(sub { messages_rows() == 10 }), 'written');
database_server('stop');
sleep 0.5;
ok(kill_family($pid), 'SIGKILL, the database gone');
$pid = start_daemon($c);
like(slurp($c->{log}), qr/preload: the database is unreachable; 2 sender\(s\) loaded from the counter snapshot/,
     'the snapshot, made before z was blocked, is loaded');
is_deeply(send_n($c, 'z@example.org', 1), [BLOCK_REPLY], 'z, blocked after the snapshot, is still blocked');
is_deeply(send_n($c, 'x@example.org', 1), [BLOCK_REPLY], 'and x, in the snapshot and the journal');

# --- a damaged record: skipped and said, the others applied ---
ok(kill_family($pid), 'SIGKILL again');
{ open my $fh, '>>', journal() or die; print $fh 'x' x 37; }
$pid = start_daemon($c);
like(slurp($c->{log}), qr/preload: block journal \S+: 1 damaged or cut record\(s\) skipped/, 'the cut record is said');
is_deeply(send_n($c, 'z@example.org', 1), [BLOCK_REPLY], 'the records before it applied');
database_server('start');
ok(wait_until(sub { messages_rows() == 13 }, 20), 'the database back: every record written once');
is_deeply(dbh($db)->selectall_arrayref(q{SELECT sender, msg_total FROM ratelimits ORDER BY sender}),
          [['x@example.org', 6], ['y@example.org', 1], ['z@example.org', 6]], 'its rows exact');
ok(wait_until(sub { dbh($db) && 1 }), 'the database answers');

# --- rotation: the files before the last snapshot's are retired ---
run_rateguard('-c', $c->{path}, 'reload-cache');
is_deeply(send_n($c, 'w@example.org', 4), [(DUNNO_REPLY) x 3, BLOCK_REPLY], 'w blocked between two snapshots');
run_rateguard('-c', $c->{path}, 'reload-cache');
my @now = rotated();
is(scalar @now, 1, 'two snapshots later: one rotated file left, the last snapshot\'s');
is(-s $now[0], 2 * $RECORD, '... holding w\'s two changes (kept until the next snapshot)');
ok(!grep({ my $o = $_; grep { $_ eq $o } @now } @old), 'the older rotated files are gone');
is(stop_daemon($pid), 0, 'stopped');

# --- a hijacked-account episode survives too ---
my $s = write_config(database => $db, name => 'sig', quota => 100,
                     sections => { cache => "refresh_interval = 3600\n", signals => "spread = 2\n" });
$pid = start_daemon($s);
my $HOLD = "action=HOLD Held for review: this login looks hijacked (signal: spread)\n\n";
sub from { my ($net) = @_; return ask($s, sasl_username => 'l@example.org', client_address => "198.51.$net.7",
                                      recipient_count => 1) }
is_deeply([from(1), from(2)], [DUNNO_REPLY, $HOLD], 'the second network opens an episode: HOLD');
database_server('stop');
sleep 0.5;
ok(kill_family($pid), 'SIGKILL 0.5 s later, the database gone');
$pid = start_daemon($s);
is(from(3), $HOLD, 'the episode is known at the start: a third network is held');
database_server('start');
is(stop_daemon($pid), 0, 'stopped');
done_testing();
