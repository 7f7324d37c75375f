# SPDX-License-Identifier: GPL-3.0-or-later
# Soak.pm - the parts of t/soak-run (`make soak`) that need no daemon:
# the fault schedule (which fault or combination comes next, and how long
# it is expected to take), the resource samples of the daemon's processes
# (RSS and open descriptors from /proc) and the growth check over them,
# and the tables the soak prints. t/soak-run owns the run itself (the
# processes, the faults' actions, the checks against the database).
package Soak;

use strict;
use warnings;
use List::Util qw(shuffle max);
use POSIX ();

# --- the schedule ---

# One fault at a time, or a combination of two at once (the names are
# printed with their counts):
#   db+writer      MariaDB down while the writer is killed (a)
#   master@db      the master killed and restarted while MariaDB is down:
#                  the new one decides from the counter snapshot plus the
#                  queue and the spool (b)
#   disk+master    state_dir's filesystem full while the master restarts (c)
#   notifier+hang  the notifier killed while the webhook receiver hangs (d)
#   long-outage    MariaDB down long enough that the write-back queue
#                  spills to the spool, which then replays under the load
#   long+disk      the same, and state_dir's filesystem filled during the
#                  spill: the queue fills up, workers answer on_error until
#                  the disk is freed
our @SINGLES = qw(worker writer notifier master database disk);
our @COMBOS = qw(db+writer master@db disk+master notifier+hang long+disk);

# Seconds a fault or combination is expected to take (its holds, a master
# restart, a replay), to know whether it still fits before the load ends.
sub expected_seconds {
    my ($item, $long_hold) = @_;
    return { worker => 1, writer => 1, notifier => 1, master => 3, database => 6, disk => 6,
             'db+writer' => 6, 'master@db' => 8, 'disk+master' => 6, 'notifier+hang' => 6,
             'long-outage' => $long_hold + 8, 'long+disk' => 28 }->{$item} // 10;
}

# Two lanes of faults, run side by side: lane A the database, the disk,
# the writer and the master; lane B the workers and the notifier, which
# lane A's faults leave alone (so a worker or the notifier may also be
# killed during an outage or a restart). Each lane has a first round that
# holds its combinations (lane A's long one with the disk first, while
# the load has long to go), then shuffled rounds of its single faults and
# combinations (every one once before any twice), with the plain long
# outage in the long form only (the short form's long outage is
# long+disk's).
our %LANE_B = map { ($_ => 1) } qw(worker notifier notifier+hang);
sub new_schedules {
    my ($kinds, $long) = @_;
    my @all = (@$kinds, @COMBOS, $long ? ('long-outage') : ());
    # db+writer happens within long+disk in the first round (the writer
    # is killed early in its outage): no time for it apart in 60 s.
    my @a_combos = grep { !$LANE_B{$_} && $_ ne 'long+disk' && $_ ne 'db+writer' } @COMBOS;
    return ({ lane => 'A', first => ['long+disk', shuffle(@a_combos)], all => [grep { !$LANE_B{$_} } @all], bag => [] },
            { lane => 'B', first => ['worker', 'notifier+hang'], all => [grep { $LANE_B{$_} } @all], bag => [] });
}

# The next item, or undef when none is due: the first round's items must
# all run (they may start up to 3 s before the load ends), the later ones
# only when they fit before the load's last 5 s.
sub next_item {
    my ($s, $left, $long_hold) = @_;
    if (@{ $s->{first} }) {
        return $left > 3 ? shift @{ $s->{first} } : undef;
    }
    $s->{bag} = [shuffle(@{ $s->{all} })] unless @{ $s->{bag} };
    my $item = $s->{bag}[0];
    return undef if expected_seconds($item, $long_hold) > $left - 5;
    return shift @{ $s->{bag} };
}

# The first round's items that never started (SOAK_SECONDS too short).
sub not_run { my ($s) = @_; return @{ $s->{first} } }

# --- resources ---

# VmRSS (KiB) and the count of open descriptors of a process; () when it
# is gone.
sub proc_use {
    my ($pid) = @_;
    return () unless $pid && open my $fh, '<', "/proc/$pid/status";
    my ($rss) = map { /^VmRSS:\s+(\d+)/ ? $1 : () } <$fh>;
    close $fh;
    opendir my $d, "/proc/$pid/fd" or return ();
    my $fds = grep { /^\d+$/ } readdir $d;
    closedir $d;
    return defined $rss ? ($rss, $fds) : ();
}

# The series of a sample, in the table's order.
our @SERIES = qw(master writer notifier metrics worker cache);

# One sample: {t, SERIES_rss, SERIES_fd, cache_used} from the processes by
# role ({master, writer, notifier, metrics, workers => [...]}) and the
# status's cache figure. For workers, the largest of those given.
sub resource_sample {
    my ($t, $pids, $cache_used) = @_;
    my %s = (t => $t);
    for my $role (qw(master writer notifier metrics)) {
        my ($rss, $fd) = proc_use($pids->{$role});
        @s{"${role}_rss", "${role}_fd"} = ($rss, $fd) if defined $rss;
    }
    for my $w (@{ $pids->{workers} // [] }) {
        my ($rss, $fd) = proc_use($w) or next;
        $s{worker_rss} = max($s{worker_rss} // 0, $rss);
        $s{worker_fd} = max($s{worker_fd} // 0, $fd);
    }
    $s{cache_used} = $cache_used if defined $cache_used;
    return \%s;
}

# The growth check. Samples in the first WARMUP seconds are left out (the
# pools fill, the cache takes in every sender, the allocator's arenas
# grow); the rest is cut in thirds: a figure grows without bound when the
# last third's largest value is above the first third's largest by more
# than GROWTH_PCT (RSS, cache entries: they swing with the faults, a spill
# or a replay, a restart, by less than that between thirds of an hour,
# while a leak of even a few hundred bytes a request, 400 requests/s, is
# >500 MiB an hour) plus a small absolute slack (2 MiB of allocator noise;
# 16 entries). Descriptors are counted, not sized: no share, only a slack
# of 4 (a database or webhook connection, a spool or log file open at the
# moment), so a leak of one a fault (hundreds an hour) or even one every
# few minutes is caught. Fewer than MIN_SAMPLES after the warm-up (the
# short form): nothing is decided.
our $GROWTH_PCT = 25;
our $MIN_SAMPLES = 9;
my %SLACK = (rss => 2048, fd => 4, used => 16);

# Returns (decided, [[series figure, first max, last max, verdict]...]).
sub growth {
    my ($samples, $warmup) = @_;
    my @s = grep { $_->{t} >= $warmup } @$samples;
    return (0, []) if @s < $MIN_SAMPLES;
    my $third = int(@s / 3);
    my @first = @s[0 .. $third - 1];
    my @last = @s[$#s - $third + 1 .. $#s];
    my @rows;
    for my $key (map { my $r = $_; $r eq 'cache' ? 'cache_used' : ("${r}_rss", "${r}_fd") } @SERIES) {
        my @a = grep { defined } map { $_->{$key} } @first;
        my @b = grep { defined } map { $_->{$key} } @last;
        next unless @a && @b;
        my ($a, $b) = (max(@a), max(@b));
        my ($kind) = $key =~ /_(\w+)$/;
        my $limit = ($kind eq 'fd' ? $a : $a * (1 + $GROWTH_PCT / 100)) + $SLACK{$kind};
        push @rows, [$key, $a, $b, $b > $limit ? 'GROWS' : 'ok'];
    }
    return (1, \@rows);
}

# The samples as a table (one line a sample, `-` where a process was not
# found), for the report.
sub samples_table {
    my ($samples) = @_;
    my @cols = map { my $r = $_; $r eq 'cache' ? 'cache_used' : ("${r}_rss", "${r}_fd") } @SERIES;
    my $out = sprintf "%7s" . (" %11s" x @cols) . "\n", 't (s)', @cols;
    for my $s (@$samples) {
        $out .= sprintf "%7.0f" . (" %11s" x @cols) . "\n", $s->{t}, map { $s->{$_} // '-' } @cols;
    }
    return $out;
}

# --- the report ---

# The picture's data, in t/plot's soak format: answers per second
# ({second => {accepted, blocked, unanswered}}), the lag samples ([t,
# depth, lag], `-` for none) and the faults ([start, end, kind]).
sub write_dat {
    my ($path, $title, $per_second, $lag_samples, $faults) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh "# SPDX-License-Identifier: GPL-3.0-or-later\n"
            . "# t/soak-run: answers per second, writer lag samples, faults (t/plot soak draws them)\n"
            . "# title: $title\n# answers T ACCEPTED BLOCKED UNANSWERED (on_error replies are not drawn)\n";
    my @secs = sort { $a <=> $b } keys %$per_second;
    for my $t (@secs ? (($secs[0] < 0 ? $secs[0] : 0) .. $secs[-1]) : ()) {
        my $c = $per_second->{$t} // {};
        printf $fh "answers %d %d %d %d\n", $t, $c->{accepted} // 0, $c->{blocked} // 0, $c->{unanswered} // 0;
    }
    print $fh "# lag T DEPTH LAG_S (- -: no status)\n";
    printf $fh "lag %.3f %s %s\n", @$_ for grep { $_->[0] >= 0 } @$lag_samples;
    print $fh "# fault START END KIND\n";
    printf $fh "fault %.3f %.3f %s\n", $_->[0], $_->[1] // $_->[0], $_->[2] for @$faults;
    close $fh or die "$path: $!";
}

# The quota overshoot: the master restarts during an outage (b) with their
# windows, and every sender over its quota ([sender, accepted, quota,
# overshoot, accepted inside the windows, verdict]).
sub overshoot_table {
    my ($windows, $over) = @_;
    my $out = sprintf "\nquota overshoot: %d master restart(s) while MariaDB was down (b), windows %s; bound: the "
                    . "recipients accepted inside them\n", scalar @$windows,
                      join(', ', map { sprintf '%.1f-%.1f s', $_->[0], $_->[1] // -1 } @$windows) || 'none';
    $out .= sprintf "  %-28s %8s %6s %9s %12s  %s\n", 'sender', 'accepted', 'quota', 'overshoot', 'in (b) wins', 'verdict';
    $out .= sprintf "  %-28s %8d %6d %9d %12d  %s\n", @$_ for @$over;
    $out .= "  (no sender over its quota)\n" unless @$over;
    return $out;
}

1;
