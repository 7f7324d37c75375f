# SPDX-License-Identifier: GPL-3.0-or-later
# SoakProc.pm - what t/soak-run (`make soak`) reads from /proc and from
# the daemon's log to find its way: this soak's rateguard processes (by
# their configuration path), whether a process is alive, the listening
# socket's inodes and a process's sockets (to tell busy workers, idle
# workers and helpers apart), the records the writer logged as spooled,
# whether a line was logged after an offset, and the daemon's errors and
# warnings by kind for the report.
package SoakProc;

use strict;
use warnings;
use RG qw(slurp);

# The rateguard processes run with configuration file $conf (not this one).
sub ours {
    my ($conf) = @_;
    my @pids;
    for my $d (glob '/proc/[0-9]*') {
        my ($pid) = $d =~ m{(\d+)$};
        next if $pid == $$;
        my $cmd = slurp("$d/cmdline");
        next unless index($cmd, $conf) >= 0 && $cmd =~ /(?:^|\/)rateguard\0/;
        push @pids, $pid;
    }
    return @pids;
}

# Running (not gone, not a zombie).
sub alive { my ($pid) = @_; return kill(0, $pid) && slurp("/proc/$pid/stat") !~ /^\d+ \(.*\) Z/ }

# The inodes of the sockets listening on TCP port $port.
sub listen_inodes {
    my ($port) = @_;
    my %ino;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        for my $line (split /\n/, slurp($f)) {
            my @c = split ' ', $line;
            next unless @c > 9 && $c[1] =~ /:([0-9A-F]{4})$/ && hex($1) == $port && $c[3] eq '0A';
            $ino{ $c[9] } = 1;
        }
    }
    return \%ino;
}

# The inodes of a process's sockets.
sub sockets_of {
    my ($pid) = @_;
    return map { my $l = readlink($_) // ''; $l =~ /^socket:\[(\d+)\]$/ ? $1 : () } glob "/proc/$pid/fd/*";
}

# The records the writer logged as moved to the spool between two offsets
# of the daemon's log.
sub moved_records {
    my ($log, $from, $to) = @_;
    open my $fh, '<', $log or return 0;
    seek $fh, $from, 0;
    my $n = 0;
    while (tell($fh) < $to && defined(my $l = <$fh>)) { $n += $1 if $l =~ /(\d+) record\(s\) moved to /; }
    return $n;
}

# Whether a line matching $re was logged after offset $from.
sub logged_after {
    my ($log, $from, $re) = @_;
    open my $fh, '<', $log or return 0;
    seek $fh, $from, 0;
    while (defined(my $line = <$fh>)) { return 1 if $line =~ $re }
    return 0;
}

# The daemon's errors and warnings by kind (numbers as N, cut at 110
# characters): {kind => count}.
sub log_kinds {
    my ($log) = @_;
    my %said;
    for my $line (split /\n/, slurp($log)) {
        next unless $line =~ /\b(error|warning|fatal|panic): (.*)/;
        (my $k = "$1: $2") =~ s/\d+/N/g;
        $said{ substr($k, 0, 110) }++;
    }
    return \%said;
}

1;
