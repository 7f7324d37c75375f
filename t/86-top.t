#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 86-top.t - `rateguard top` (issue 30): seven senders with distinct
# counts (one over its quota, one at a quota of 2, one locked at 0, one
# whose name holds a terminal escape), then `top -b -n 2` in each ordering
# lists exactly the expected senders in the expected order with their
# last minute, counts, limits, use and state; the header has the exact
# counts sent, and the second frame's rates are 0.0/s (nothing was sent
# between the two frames); -r limits the rows; the escape is shown
# escaped; the interactive form on a pseudo-terminal switches ordering on
# a key, quits on q and gives the terminal back; run as root it works and
# runs as the daemon's user (a pidfile naming a root process is refused
# the signal). The figures of the last minute are exact while all
# messages fall in one calendar minute: the test starts its messages early
# in a minute (waiting up to 30 s for one), and reads them within seconds.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Fcntl qw(:flock);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use RG qw(write_config start_daemon stop_daemon run_rateguard migrated_database send_n wait_until test_dir
          rateguard slurp);

my $db = migrated_database('top');
my $c = write_config(database => $db, quota => 5);
my $pid = start_daemon($c);
my $evil = "evil\e[2J\@example.org";

# Two quotas first (set-quota writes the rows and has the daemon re-read them).
my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'set-quota', 'erin@example.org', '2');
is($rc, 0, 'set-quota erin@ 2') or diag $err;
($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'set-quota', 'locked@example.org', '0', '--locked');
is($rc, 0, 'set-quota locked@ 0 --locked') or diag $err;

# Early in a minute, so that every message and the reads fall in it.
sleep 0.2 until time % 60 >= 1 && time % 60 < 30;
my %sent = ('over@example.org' => 7, 'alice@example.org' => 4, 'carol@example.org' => 3, 'bob@example.org' => 2,
            'erin@example.org' => 2, 'locked@example.org' => 1, $evil => 1);
send_n($c, $_, $sent{$_}) for sort keys %sent;

# `top -b` with these arguments: its frames, each [header lines, sender lines
# with runs of spaces made one].
sub top_frames {
    my (@args) = @_;
    my ($code, $text, $stderr) = run_rateguard('-c', $c->{path}, 'top', '-b', @args);
    is($code, 0, "top -b @args: exit 0") or diag $stderr;
    my @frames;
    for my $frame (split /\n\n(?=rateguard top:)/, $text) {
        my ($head, $table) = split /\n\n/, $frame, 2;
        my @rows = split /\n/, $table // '';
        shift @rows;                                    # the column titles
        s/ +/ /g, s/^ // for @rows;
        push @frames, [[split /\n/, $head], \@rows];
    }
    return @frames;
}

my %row = (
    over   => '7 7/5 7/5 140% BLOCKED over@example.org',
    alice  => '4 4/5 4/5 80% ok alice@example.org',
    carol  => '3 3/5 3/5 60% ok carol@example.org',
    bob    => '2 2/5 2/5 40% ok bob@example.org',
    erin   => '2 2/2 2/2 100% full erin@example.org',
    evil   => '1 1/5 1/5 20% ok evil\x1b[2j@example.org',     # keys are folded to lower case
    locked => '1 1/0 1/0 - BLOCKED locked@example.org',
);
my %want = (
    m => [@row{qw(over alice carol bob erin evil locked)}],     # ties: by the key
    u => [@row{qw(locked over erin alice carol bob evil)}],     # a limit of 0 first
    b => [@row{qw(over locked alice carol bob erin evil)}],
);
my %title = (m => 'by messages in the last minute', u => 'by use of the nearest limit',
             b => 'blocked first, then by messages in the last minute');

my @frames = top_frames('-n', '2', '-d', '0.5');
is(scalar @frames, 2, '-n 2: two frames');
my ($first, $second) = map { $_->[0] } @frames;
like($first->[0], qr/^rateguard top: pid $pid, up \d+ s, senders by messages in the last minute$/,
     'the first line: the daemon, its uptime, the ordering (m by default)');
is($first->[1], 'requests: - served, - accepted, - blocked (since start: 20, 17, 3)',
   'first frame: no rates yet, the counts sent (20 requests, 17 accepted, 3 blocked)');
is($second->[1], 'requests: 0.0/s served, 0.0/s accepted, 0.0/s blocked (since start: 20, 17, 3)',
   'second frame: rates over the interval between them, none sent');
like($first->[2], qr/^writer: \d+ queued, lag \d+\.\d{3} s, database up$/, 'the writer line');
like($first->[3], qr/^workers: \d+ busy, \d+ idle, \d+ running \(\d+\.\.\d+\); stress: off$/, 'workers, stress');
like($first->[4], qr/^cache: 7 of \d+ entries used$/, 'the cache: the seven senders');
is_deeply($frames[1][1], $want{m}, 'm: the senders by messages in the last minute, each figure exact');

for my $o (qw(u b m)) {
    my @f = top_frames('-o', $o);
    is(scalar @f, 1, "-o $o alone: one frame");
    is($f[0][0][0] =~ s/^.*senders //r, $title{$o}, "-o $o: its title");
    is_deeply($f[0][1], $want{$o}, "-o $o: the senders in that order");
}
my @three = top_frames('-o', 'u', '-r', '3');
is_deeply($three[0][1], [@{ $want{u} }[0 .. 2]], '-r 3: the first three only');
my ($dump) = glob(test_dir() . '/*.top-quota.txt');
is(scalar(() = slurp($dump // '/dev/null') =~ /^sender /mg), 3,
   'the master\'s dump lists those three alone: it chooses them, not a copy of every sender');

# The raw bytes: the escape never reaches the terminal.
(undef, $out) = run_rateguard('-c', $c->{path}, 'top', '-b');
unlike($out, qr/[\x00-\x08\x0b-\x1f\x7f]/, 'batch output: no control byte at all');
like($out, qr/ evil\\x1b\[2j\@example\.org\n/, 'the sender with ESC shown as \x1b');

# --- bad command lines ---
($rc, undef, $err) = run_rateguard('-c', $c->{path}, 'status', '-b');
is($rc, 64, 'status -b: exit 64');
is($err, "rateguard: -b is an option of top, not of status\n", '... saying -b is top\'s');
($rc, undef, $err) = run_rateguard('-c', $c->{path}, 'top', '-b', '-o', 'x');
is($rc, 64, 'top -o x: exit 64');
($rc, undef, $err) = run_rateguard('-c', $c->{path}, 'top', '-b', '-r', '201');
is($rc, 64, 'top -r 201: exit 64 (200 at most)');
($rc, undef, $err) = run_rateguard('-c', $c->{path}, 'top');
is($rc, 6, 'top without a terminal and without -b: exit 6');
like($err, qr/stdin and stdout must be a terminal \(or use -b\)/, '... saying why');

# --- the interactive form on a pseudo-terminal ---
SKIP: {
    skip 'IO::Pty missing', 6 unless eval { require IO::Pty; 1 };
    my $pty = IO::Pty->new;
    $pty->slave->set_winsize(30, 100);     # room for every sender (rows minus 7)
    my $child = fork // die;
    if ($child == 0) {
        my $tty = $pty->slave;
        $pty->make_slave_controlling_terminal;
        open STDIN, '<&', $tty or die;
        open STDOUT, '>&', $tty or die;
        open STDERR, '>', test_dir() . '/top-tty.err' or die;
        exec(rateguard(), '-c', $c->{path}, 'top', '-d', '0.3') or die;
    }
    $pty->close_slave;
    my $seen = '';
    my $read_until = sub {
        my ($re) = @_;
        return wait_until(sub {
            my $buf;
            $seen .= $buf while $pty->sysread($buf, 65536) && length $buf;
            return $seen =~ $re;
        });
    };
    $pty->blocking(0);
    ok($read_until->(qr/\e\[\?1049h.*senders by messages in the last minute/s),
       'a terminal: the alternate screen, then the first frame');
    like($seen, qr/ evil\\x1b\[2j\@example\.org/, 'the sender with ESC shown escaped there too');
    $seen = '';
    print $pty 'u';
    ok($read_until->(qr/senders by use of the nearest limit/), 'key u: by use of quota');
    print $pty 'q';
    ok(wait_until(sub { waitpid($child, WNOHANG) == $child }), 'key q: top ends');
    is($? >> 8, 0, '... with exit 0');
    $read_until->(qr/\e\[\?1049l/);
    like($seen, qr/\e\[\?7h.*\e\[\?1049l/s, 'line wrap and the normal screen given back');
}

# --- run as root: as the daemon's user ---
SKIP: {
    skip 'needs root', 4 if $> != 0;
    my ($nobody) = (getpwnam 'nobody')[2];
    # A top of a few frames, looked at from /proc while it runs.
    my $topper = fork // die;
    if ($topper == 0) {
        open STDOUT, '>', '/dev/null';
        exec(rateguard(), '-c', $c->{path}, 'top', '-b', '-n', '4', '-d', '0.5') or die;
    }
    ok(wait_until(sub { my @uid = slurp_status($topper) =~ /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m; @uid && $uid[2] == $nobody }),
       'root\'s top runs as the daemon\'s user (its saved uid too)');
    waitpid($topper, 0);
    is($? >> 8, 0, '... and works (exit 0)');

    # A pidfile naming a process of root: the signal is refused.
    my $fake = write_config(database => $db, name => 'fake');
    pipe(my $ready_r, my $ready_w) or die;
    my $holder = fork // die;
    if ($holder == 0) {
        close $ready_r;
        $SIG{RTMIN} = 'IGNORE';
        open my $fh, '>', $fake->{pidfile} or die;
        flock($fh, LOCK_EX) or die;
        print $fh "$$\n";
        $fh->flush;
        chmod 0644, $fake->{pidfile};
        print $ready_w "ready\n";
        close $ready_w;
        sleep 30 while 1;
    }
    close $ready_w;
    <$ready_r>;
    ($rc, $out, $err) = run_rateguard('-c', $fake->{path}, 'top', '-b');
    is($rc, 6, 'a pidfile naming a root process: exit 6');
    like($err, qr/^rateguard: kill\($holder\): Operation not permitted$/m, '... the signal refused: not root');
    kill 'KILL', $holder;
    waitpid($holder, 0);
}

is(stop_daemon($pid), 0, 'TERM: exit 0');
($rc) = run_rateguard('-c', $c->{path}, 'top', '-b');
is($rc, 3, 'top with no daemon: exit 3');
done_testing();

# /proc/PID/status, or '' once the process has gone.
sub slurp_status {
    my ($p) = @_;
    open my $fh, '<', "/proc/$p/status" or return '';
    local $/;
    return <$fh>;
}
