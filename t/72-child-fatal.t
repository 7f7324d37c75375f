#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 72-child-fatal.t - the child exit-code protocol (issue 28, rateguard.h):
# a child that exits 5 (RG_CHILD_FATAL: its configuration or environment
# is unusable, a new one would fail alike) is not replaced: the master
# logs it and stops the daemon as TERM does, exit 6. The exit is forced
# with gdb (_exit(5) called inside the writer); skipped without gdb.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon migrated_database wait_until slurp status_json);

plan skip_all => 'gdb not installed' unless grep { -x "$_/gdb" } split /:/, $ENV{PATH};
plan skip_all => 'needs root (gdb attaches to the writer, which is not dumpable: CAP_SYS_PTRACE)' if $> != 0;

my $db = migrated_database('childfatal');
my $c = write_config(database => $db, name => 'childfatal');
my $pid = start_daemon($c);

my $w = wait_until(sub { my $p = status_json($c)->{writer_pid}; $p && kill(0, $p) ? $p : undef }, 20)
    or BAIL_OUT('no writer');
system("gdb -p $w -batch -ex 'call (void)_exit(5)' >/dev/null 2>&1");
my $exit = wait_until(sub { waitpid($pid, WNOHANG) == $pid ? [$? >> 8] : undef }, 30);
ok($exit, 'the daemon stops by itself') or stop_daemon($pid);
is($exit->[0], 6, '  with exit 6') if $exit;
my $log = slurp($c->{log});
like($log, qr/writer $w exited with status 5 \(fatal: its configuration or environment is unusable\); stopping the daemon/,
     'the fatal exit is logged');
unlike($log, qr/writer $w .*the next one starts/, 'no writer is scheduled to replace it');
like($log, qr/stopping.*\n(?:.*\n)*.*stopped/, 'stopped as TERM stops it');
done_testing();
