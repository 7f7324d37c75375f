#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 76-log-symlink.t - a symbolic link planted at the log path by the
# daemon's user (as root: the daemon runs as nobody, the log directory is
# nobody's) is refused at start: root does not append to the file it
# points at. t/66 covers the FIFO and the hard link; found missing by
# t/mutate (log-symlink-followed: O_NOFOLLOW dropped).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use RG qw(write_config migrated_database slurp test_dir rateguard);

plan skip_all => 'needs root (the daemon started as root, the link planted by nobody)' if $> != 0;

my $db = migrated_database('logsymlink');
my $nobody = getpwnam('nobody');
my $nogroup = getgrnam('nogroup') // getgrnam('nobody');
my $secret = test_dir() . '/root-only';
open my $fh, '>', $secret or die "$secret: $!";
print $fh "root secret\n";
close $fh;
chmod 0600, $secret;
my $logs = test_dir() . '/log-symlink';
mkdir $logs, 0755 or die "$logs: $!";
chown $nobody, $nogroup, $logs;
symlink $secret, "$logs/rateguard.log" or die "symlink: $!";

my $c = write_config(database => $db, name => 'symlink', sections => { log => qq{file = "$logs/rateguard.log"\n} });
# `rateguard -f run` with a deadline: a daemon that accepted the link would run on.
my $out = "$c->{path}.out";
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    open STDOUT, '>', $out or die;
    open STDERR, '>&', \*STDOUT or die;
    exec(rateguard(), '-c', $c->{path}, '-f', 'run') or die "exec: $!";
}
my $rc = 'hung';
for (1 .. 200) {
    if (waitpid($pid, POSIX::WNOHANG()) == $pid) { $rc = $? >> 8; last }
    select(undef, undef, undef, 0.05);
}
if ($rc eq 'hung') {
    kill 'TERM', $pid;
    sleep 2;
    kill 'KILL', $pid;
    waitpid($pid, 0);
}
is($rc, 6, 'a symbolic link at the log path: exit 6');
like(slurp($out), qr/fatal: cannot start: refusing log file \Q$logs\E\/rateguard\.log: a symbolic link$/m,
     'refused: a symbolic link');
is(slurp($secret), "root secret\n", 'the root file it points at is untouched');
done_testing();
