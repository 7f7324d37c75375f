#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 71-log-nowhere.t - logs that land somewhere (issue 26): a daemon started
# where nothing would read its log (syslog off, or its socket /dev/log not
# answering, and no log file) says so once on stderr, while someone can
# still read it; with a log file it says nothing. The daemon serves either
# way.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use RG qw(write_config stop_daemon migrated_database wait_until slurp test_dir rateguard policy_connect
          policy_request);

my $db = migrated_database('lognowhere');
my $WARNING = qr/^rateguard: warning: nothing will be logged: (.*) and no log file is set /m;

# Start in the foreground with stderr to a file (through `unshare -m` with
# /dev/log hidden when $hide); wait until it answers. (pid, stderr file).
sub start_with_stderr {
    my ($c, $hide) = @_;
    my $err = "$c->{path}.stderr";
    my $pid = fork // die;
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $err or die;
        my @run = (rateguard(), '-c', $c->{path}, '-f', 'run');
        # A regular file bound over /dev/log, where there is one: syslog(3)
        # cannot connect to it (and where there is none, it cannot either).
        exec('unshare', '-m', 'sh', '-c',
             'if [ -e /dev/log ]; then touch "$1" && mount --bind "$1" /dev/log || exit 1; fi; shift; exec "$@"',
             'sh', test_dir() . '/not-a-socket', @run) or die if $hide;
        exec(@run) or die;
    }
    my $up = wait_until(sub {
        return 0 if waitpid($pid, WNOHANG) == $pid;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $c->{port});
        return $s ? (close($s), 1) : 0;
    }, 10);
    ok($up, 'the daemon started and accepts connections') or diag slurp($err);
    return ($pid, $err);
}

sub serves {
    my ($c) = @_;
    my $s = policy_connect($c);
    my $r = policy_request($s, sasl_username => 'logs@example.org');
    close $s;
    return $r;
}

# 1. syslog off, no file.
my $c1 = write_config(database => $db, name => 'off', sections => { log => qq{file = ""\n} });
my ($pid, $err) = start_with_stderr($c1);
is(serves($c1), "action=DUNNO\n\n", 'syslog off, no file: it serves');
is(stop_daemon($pid), 0, 'TERM: exit 0');
my @w = slurp($err) =~ /$WARNING/g;
is_deeply(\@w, ['syslog is off'], 'it warned once on stderr: syslog is off and no file');

# 2. syslog on, its socket not answering, no file.
SKIP: {
    skip 'hiding /dev/log takes a mount namespace (root)', 3 if $> != 0;
    my $c2 = write_config(database => $db, name => 'nosyslog', sections => { log => qq{syslog = true\nfile = ""\n} });
    ($pid, $err) = start_with_stderr($c2, 1);
    is(serves($c2), "action=DUNNO\n\n", 'syslog unreachable, no file: it serves');
    is(stop_daemon($pid), 0, 'TERM: exit 0');
    @w = slurp($err) =~ /$WARNING/g;
    is_deeply(\@w, ['syslog (/dev/log) cannot be reached'], 'it warned once: syslog cannot be reached');
}

# 3. a log file: no warning, and the file has the start.
my $c3 = write_config(database => $db, name => 'file');
($pid, $err) = start_with_stderr($c3);
is(stop_daemon($pid), 0, 'with a log file: TERM, exit 0');
unlike(slurp($err), $WARNING, 'no warning');
like(slurp($c3->{log}), qr/started \(pid $pid,/, 'the file has the start');
done_testing();
