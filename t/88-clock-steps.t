#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 88-clock-steps.t - the wall clock steps (as an NTP step does) while load
# runs, with quota.reset_schedule = hourly: forward across an hour
# boundary (one period reset), back by minutes across it again (no second
# one), forward across the next boundary and back with a reload in between
# (still one reset per boundary); the writer killed and the clock stepped
# back before its successor is due (it still starts in its second); a
# connection idle past workers.idle_timeout is closed neither early (clock
# forward) nor never (clock back); the cache refresh keeps its interval after a step back;
# the counts stay exact: every answered request is one `messages` row, and
# each counter is exactly the messages since its row's reset_at.
#
# The daemon's clock is the test's through libfaketime (LD_PRELOAD): its
# time(), gettimeofday() and clock_gettime(CLOCK_REALTIME) read the real
# clock plus an offset the test changes while it runs (a file read at every
# call), in the master and every forked child alike; CLOCK_MONOTONIC is
# left alone, as an NTP step leaves it. So the daemon's own code (period.c,
# the master's and the writer's schedules, the timeouts) runs unchanged.
# Nothing else on the machine sees the steps; MariaDB keeps the real time.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time clock_gettime CLOCK_MONOTONIC);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp status_json closed_within test_dir);

my $FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
plan skip_all => "libfaketime is not installed ($FAKETIME: Debian package faketime)" unless -r $FAKETIME;

my $IDLE = 4;                   # workers.idle_timeout
my $dir = test_dir();
my $rc = "$dir/faketime.rc";

# The daemon's clock is set to $when (unix seconds) now: the offset from
# the real clock, replaced atomically (a reader never sees half a file).
sub set_daemon_time {
    my ($when) = @_;
    my $off = sprintf('%+d', int($when - time + ($when >= time ? 0.5 : -0.5)));
    open my $fh, '>', "$rc.tmp" or die "$rc.tmp: $!";
    print $fh "$off\n";
    close $fh or die "$rc.tmp: $!";
    rename "$rc.tmp", $rc or die "rename $rc: $!";
    return $off;
}
# The real moment at which the daemon's clock shows $when.
sub real_of { my ($when) = @_; my ($off) = slurp($rc) =~ /([-+]\d+)/; return $when - $off }
# The daemon's clock now.
sub daemon_now { my ($off) = slurp($rc) =~ /([-+]\d+)/; return time + $off }

sub mono { return clock_gettime(CLOCK_MONOTONIC) }
sub touch { open my $fh, '>', $_[0] or die "$_[0]: $!"; close $fh }

# A connection that sent one request and now idles: the socket and when
# its reply came (monotonic).
sub idle_connection {
    my ($c) = @_;
    my $s = policy_connect($c);
    policy_request($s, sasl_username => 'idle@example.org', recipient_count => 1) =~ /\n\n\z/ or die 'no reply';
    return ($s, mono());
}
# Seconds from $since until the daemon closed $s (undef if not within 60 s).
sub closed_after {
    my ($s, $since) = @_;
    return closed_within($s, 60) ? mono() - $since : undef;
}

# Load: requests from @senders in turn on one connection (a new one when
# the daemon closes it: a reload retires the workers), until the stop
# file; then the number of answered requests per sender in the out file.
# While the pause file exists it sends nothing, and says so with its
# counts so far in the paused file.
sub write_counts {
    my ($file, $n, @senders) = @_;
    open my $fh, '>', "$file.tmp" or POSIX::_exit(1);
    print $fh "$_ " . ($n->{$_} // 0) . "\n" for @senders;
    close $fh;
    rename "$file.tmp", $file;
}
sub start_load {
    my ($c, @senders) = @_;
    my $pid = fork // die "fork: $!";
    return $pid if $pid;
    my (%n, $s);
    until (-e "$dir/load.stop") {
        if (-e "$dir/load.pause") {
            write_counts("$dir/load.paused", \%n, @senders) unless -e "$dir/load.paused";
            sleep 0.05;
            next;
        }
        for my $who (@senders) {
            $s //= eval { policy_connect($c) } // next;
            my $r = eval { policy_request($s, sasl_username => $who, recipient_count => 1) } // '';
            if ($r =~ /\n\n\z/) { $n{$who}++ } else { close $s; undef $s }
        }
        sleep 0.03;
    }
    write_counts("$dir/load.out", \%n, @senders);
    POSIX::_exit(0);
}

sub master_resets { return scalar(() = slurp($_[0]{log}) =~ /period reset \(hourly schedule\)/g) }
sub writer_resets { return scalar(() = slurp($_[0]{log}) =~ /period reset: \d+ sender\(s\) reset/g) }

# Every sender's counter is exactly its messages since its reset_at, read
# in one statement (one consistent view while the writer commits).
sub counters_exact {
    my ($h) = @_;
    my $rows = $h->selectall_arrayref(q{SELECT r.sender, r.msg_counter, FLOOR(UNIX_TIMESTAMP(r.reset_at)),
        (SELECT COUNT(*) FROM messages m WHERE m.sender = r.sender AND m.created_at >= r.reset_at)
        FROM ratelimits r ORDER BY r.sender});
    return { map { $_->[0] => [@$_[1 .. 3]] } @$rows };
}

my @load = map { "load$_\@example.org" } 1 .. 3;
my $db = migrated_database('clock');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 100000,
                     sections => { quota => "reset_schedule = hourly\n",
                                   workers => "min = 3\nidle_timeout = $IDLE\n",
                                   cache => "refresh_interval = 2\n" });
# An hour boundary (UTC, the daemon's zone here) more than an hour ahead;
# the daemon starts 10 s before it.
my $B = (int(time / 3600) + 2) * 3600;
set_daemon_time($B - 10);
my %env = (LD_PRELOAD => $FAKETIME, FAKETIME_TIMESTAMP_FILE => $rc, FAKETIME_NO_CACHE => 1,
           FAKETIME_DONT_FAKE_MONOTONIC => 1, NO_FAKE_STAT => 1, TZ => 'UTC');
my $pid = start_daemon($c, env => \%env);
# libfaketime's shared memory, named by the process that loaded it first
# (the master), is left behind when it does not exit through exit(); a
# later process with the same pid would find it in the way.
END { unlink "/dev/shm/faketime_shm_$pid", "/dev/shm/sem.faketime_sem_$pid" if $pid }
my $quiet = policy_connect($c);
policy_request($quiet, sasl_username => 'quiet@example.org', recipient_count => 1);
close $quiet;
my $loader = start_load($c, @load);
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] >= 10 }, 20), 'load running');

# --- forward across B: one reset; an idle connection is not closed early ---
my ($a_sock, $a_since) = idle_connection($c);
sleep 0.3;
is(master_resets($c) + writer_resets($c), 0, 'no reset before the boundary');
set_daemon_time($B + 300);
my $a_closed = closed_after($a_sock, $a_since);
ok(defined $a_closed && $a_closed >= $IDLE - 0.5,
   "clock 5 min forward: the idle connection is closed after its $IDLE s, not at the step")
    or diag 'closed after ' . ($a_closed // 'never');
ok(wait_until(sub { master_resets($c) == 1 && writer_resets($c) == 1 }, 15),
   'forward across the boundary: the cache and the database reset once');
sleep 1;
my $v = counters_exact($h);
is_deeply([map { $v->{$_}[1] } sort keys %$v], [map { $B } sort keys %$v], 'every row: reset_at = the boundary');
is_deeply([map { $v->{$_}[0] } sort keys %$v], [map { $v->{$_}[2] } sort keys %$v],
          'every counter = its messages since the boundary') or diag explain $v;
is($v->{'quiet@example.org'}[0], 0, 'the sender not sending since: counter 0');

# --- back by about 5 min across B: no second reset; timeouts and refresh go on ---
my ($b_sock, $b_since) = idle_connection($c);
sleep 0.3;
set_daemon_time($B - 6);
my $b_back = mono();
$h->do(q{UPDATE ratelimits SET quota = 777 WHERE sender = 'quiet@example.org'});
my $b_closed = closed_after($b_sock, $b_since);
ok(defined $b_closed && $b_closed >= $IDLE - 0.5 && $b_closed < 30,
   "clock 5 min back: the idle connection is still closed after its $IDLE s")
    or diag 'closed after ' . ($b_closed // 'never (60 s)');
ok(wait_until(sub {
       my ($e) = grep { $_->{sender} eq 'quiet@example.org' } @{ (status_json($c) // {})->{senders} // [] };
       $e && $e->{quota} == 777 }, 20),
   'clock back: a quota changed in SQL still reaches the cache by the refresh (cache.refresh_interval 2 s)');
diag sprintf('the new quota seen %.1f s after the step back (looked for once the idle connection closed)',
             mono() - $b_back);
sleep 0.1 while time < real_of($B) + 3;
is(master_resets($c), 1, 'the boundary passed again: the cache is not reset again');
is(writer_resets($c), 1, 'the boundary passed again: the database is not reset again');
$v = counters_exact($h);
is_deeply([map { $v->{$_}[1] } sort keys %$v], [map { $B } sort keys %$v], 'every row: reset_at still the boundary');
is_deeply([map { $v->{$_}[0] } sort keys %$v], [map { $v->{$_}[2] } sort keys %$v],
          'every counter = its messages since the boundary (those made in the stepped-back minutes count)')
    or diag explain $v;

# --- forward across the next boundary, back, and a reload before it comes again ---
# The load pauses over the step, so what it sends after is exactly the
# new period's.
my $B2 = $B + 3600;
touch("$dir/load.pause");
ok(wait_until(sub { -e "$dir/load.paused" }, 10), 'load paused');
set_daemon_time($B2 + 120);
ok(wait_until(sub { master_resets($c) == 2 && writer_resets($c) == 2 }, 15),
   'an hour forward across the next boundary: its reset, once');
my %before = map { split ' ' } split /\n/, slurp("$dir/load.paused");
unlink "$dir/load.pause";
sleep 1;
set_daemon_time($B2 - 6);
kill 'HUP', $pid;
ok(wait_until(sub { slurp($c->{log}) =~ /reload: configuration re-read/ }, 10), 'reloaded with the clock back');
sleep 0.1 while time < real_of($B2) + 3;
is(master_resets($c), 2, 'after the reload, the boundary passed again: the cache is not reset again');
is(writer_resets($c), 2, 'after the reload (a new writer), the boundary passed again: no database reset again');

# --- the writer killed, the clock back before its successor starts ---
# The master waits 1 s before starting the next writer; the clock steps
# back 5 min within that second. The successor writes what the killed one
# left (the counts below).
my $w1 = status_json($c)->{writer_pid};
kill 'KILL', $w1;
ok(wait_until(sub { slurp($c->{log}) =~ /writer $w1 killed by signal 9; the next one starts in 1 s/ }, 10),
   'writer killed: the next in 1 s');
set_daemon_time(daemon_now() - 300);
my $w_back = mono();
ok(wait_until(sub { my $p = status_json($c)->{writer_pid}; $p && $p != $w1 && kill(0, $p) }, 20),
   'clock 5 min back meanwhile: the next writer still starts');
diag sprintf('the next writer seen %.1f s after the step back', mono() - $w_back);

# --- the counts ---
touch("$dir/load.stop");
waitpid($loader, 0);
my %sent = map { split ' ' } split /\n/, slurp("$dir/load.out");
my $answered = 0;
$answered += $_ for values %sent;
$answered += 3;         # quiet once, idle twice
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] >= $answered }, 20), 'all written');
is(($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0], $answered, "every answered request is one messages row ($answered)");
is(($h->selectrow_array('SELECT COUNT(DISTINCT msgid) FROM messages'))[0], $answered, 'no row twice');
is_deeply({ map { $_ => row_total($_) } @load }, \%sent, 'msg_total = the answered requests, per sender');
$v = counters_exact($h);
is_deeply([map { $v->{$_}[1] } @load], [map { $B2 } @load], 'the load senders: reset_at = the second boundary');
is_deeply([map { $v->{$_}[0] } sort keys %$v], [map { $v->{$_}[2] } sort keys %$v],
          'every counter = its messages since the second boundary') or diag explain $v;
is_deeply({ map { $_ => $v->{$_}[0] } @load }, { map { $_ => $sent{$_} - $before{$_} } @load },
          'msg_counter = exactly what the load sent after the step across the second boundary '
          . '(the stepped-back seconds before it again included)');
ok(wait_until(sub {
       my %cache = map { $_->{sender} => $_->{msg_counter} } @{ (status_json($c) // {})->{senders} // [] };
       !grep { ($cache{$_} // -1) != $v->{$_}[0] } @load }, 10),
   'the cache holds the same counters as the database');
is(stop_daemon($pid), 0, 'stopped cleanly');
done_testing();

sub row_total { return ($h->selectrow_array('SELECT msg_total FROM ratelimits WHERE sender = ?', undef, $_[0]))[0] }
