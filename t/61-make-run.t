#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 61-make-run.t - `make run` stops cleanly on a signal: TERM or INT to
# make's own pid (a supervisor's stop, `kill PID`), INT to its process group
# (Ctrl-C), as well as TERM to t/run-dev itself. Each time
# rateguard exits 0 (its queue written), the private MariaDB is stopped,
# no process of the run is left and the port is closed. The development
# configuration is written with mode 0600 and the daemon does not warn about
# it.
#
# GNU make passes TERM to its recipe but keeps INT sent to its pid alone
# (t/run-dev notices through /proc that make took it), and once its recipe
# has ended it dies of the signal it got (it raises it again): `make run`
# itself ends "killed by TERM/INT", not exit 0; what it ran (t/run-dev)
# exits 0 and make reports no error.
#
# The run gets a folder of its own (RG_DEV_DIR: configuration, state and its
# MariaDB, apart from the suite's) and a free port (RG_DEV_PORT).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(:sys_wait_h setpgid);
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use RG qw(slurp test_dir build_dir free_port wait_until ask);

my $repo = "$FindBin::Bin/..";
my $build = build_dir();
my $dev = test_dir() . '/dev';
my $runs = 0;


# Whether a pid is a live process (a zombie counts as gone).
sub alive {
    my ($pid) = @_;
    my $stat = slurp("/proc/$pid/stat") or return 0;
    return $stat !~ /^\d+ \(.*\) Z /s;
}

# Every live process below $pid.
sub descendants {
    my ($pid) = @_;
    my %kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $line = slurp($stat) or next;
        my ($p, $state, $ppid) = $line =~ /^(\d+) \(.*\) (\S) (\d+)/s or next;
        push @{ $kids{$ppid} }, $p if $state ne 'Z';
    }
    my @all;
    my @todo = ($pid);
    while (@todo) {
        my $p = shift @todo;
        push @all, @{ $kids{$p} // [] };
        push @todo, @{ $kids{$p} // [] };
    }
    return @all;
}

# Live processes whose command line names the run's folder.
sub processes_of_dev {
    my @found;
    for my $cmdline (glob '/proc/[0-9]*/cmdline') {
        my ($pid) = $cmdline =~ m{/proc/(\d+)/};
        next if $pid == $$;
        my $c = slurp($cmdline);
        push @found, $pid if index($c, $dev) >= 0 && alive($pid);
    }
    return @found;
}

# Start @cmd in a process group of its own, wait until it answers a policy
# request, send $sig to its pid (or its group with $to_group), wait for it.
sub run_and_stop {
    my ($name, $sig, $to_group, @cmd) = @_;
    $runs++;
    my $port = free_port();
    my $log = test_dir() . "/run$runs.log";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgid(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        chdir $repo or die "chdir $repo: $!";
        $ENV{RG_DEV_DIR} = $dev;
        $ENV{RG_DEV_PORT} = $port;
        delete $ENV{RATEGUARD_CONFIG};
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $log;
        open STDERR, '>&', \*STDOUT;
        exec(@cmd) or die "exec: $!";
    }
    my %r = (name => $name, port => $port);
    # Up: the daemon answers (the first run also creates the MariaDB datadir).
    $r{reply} = wait_until(sub { eval { ask({ port => $port }, sasl_username => 'dev@example.org', recipient_count => 1) } // (waitpid($pid, WNOHANG) == $pid ? 'exited early' : undef) }, 120);
    $r{mode} = (stat "$dev/rateguard.conf")[2];
    $r{owner} = (stat "$dev/rateguard.conf")[4];
    chomp(my $mariadbd = slurp("$dev/mariadb/mariadbd.pid"));
    $r{procs} = [descendants($pid), $mariadbd || ()];
    $r{rateguard} = [grep { slurp("/proc/$_/cmdline") =~ m{/rateguard\0} } @{ $r{procs} }];
    $r{mariadbd} = $mariadbd;

    kill $sig, $to_group ? -$pid : $pid;
    my $deadline = time + 90;
    my $done = 0;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $done = 1;
            last;
        }
        sleep 0.05;
    }
    if (!$done) {
        kill 'KILL', -$pid;
        waitpid($pid, 0);
    }
    $r{stopped} = $done;
    $r{status} = $?;
    # Orphans (mariadbd) are reaped by init: give it a moment to.
    wait_until(sub { !grep { alive($_) } @{ $r{procs} } }, 10);
    $r{left} = [grep { alive($_) } @{ $r{procs} }];
    $r{named} = [processes_of_dev()];
    $r{log} = slurp($log);
    $r{closed} = !IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2);
    return \%r;
}

sub check {
    my ($r) = @_;
    my $n = $r->{name};
    is($r->{reply}, "action=DUNNO\n\n", "$n: the daemon answered") or diag $r->{log};
    ok(defined $r->{mode} && ($r->{mode} & 07777) == 0600, "$n: the development configuration has mode 0600")
        or diag sprintf('mode %o', $r->{mode} // 0);
    is($r->{owner}, $> == 0 ? scalar getpwnam('nobody') : $>, "$n: ... and belongs to the daemon's user");
    ok($r->{mariadbd} && @{ $r->{rateguard} }, "$n: rateguard and the MariaDB were running")
        or diag "procs @{ $r->{procs} }";
    ok($r->{stopped}, "$n: it ended") or diag $r->{log};
    like($r->{log}, qr/^run-dev: rateguard exited with status 0$/m, "$n: rateguard stopped with exit 0")
        or diag $r->{log};
    like($r->{log}, qr/rateguard\[\d+\]: notice: stopped$/m, "$n: rateguard logged its stop");
    unlike($r->{log}, qr/not written|records left/, "$n: everything queued was written");
    like($r->{log}, qr/^mariadb-server: stopped$/m, "$n: the private MariaDB was stopped");
    unlike($r->{log}, qr/readable by every user/, "$n: no warning about the configuration's mode");
    unlike($r->{log}, qr/^make(\[\d+\])?: \*\*\*/m, "$n: make reports no error");
    is_deeply($r->{left}, [], "$n: no process of the run is left");
    is_deeply($r->{named}, [], "$n: no process names the run's folder");
    ok(!alive($r->{mariadbd}), "$n: mariadbd is gone");
    ok($r->{closed}, "$n: port $r->{port} is closed");
}

my @make = ('make', '-s', '-C', $repo, "BUILD=$build", 'run');

my $r = run_and_stop('make run, TERM to its pid', 'TERM', 0, @make);
check($r);
ok(WIFSIGNALED($r->{status}) && WTERMSIG($r->{status}) == POSIX::SIGTERM,
   'make run, TERM to its pid: make then dies of TERM itself (GNU make raises it again)')
    or diag "status $r->{status}";

$r = run_and_stop('make run, INT to its pid', 'INT', 0, @make);
check($r);
ok(WIFSIGNALED($r->{status}) && WTERMSIG($r->{status}) == POSIX::SIGINT,
   'make run, INT to its pid: make then dies of INT itself') or diag "status $r->{status}";

$r = run_and_stop('make run, INT to its group', 'INT', 1, @make);
check($r);
ok(WIFSIGNALED($r->{status}) && WTERMSIG($r->{status}) == POSIX::SIGINT,
   'make run, INT to its group: make then dies of INT itself') or diag "status $r->{status}";

$r = run_and_stop('t/run-dev, TERM to its pid', 'TERM', 0, 'sh', 't/run-dev', $build);
check($r);
ok(WIFEXITED($r->{status}) && WEXITSTATUS($r->{status}) == 0, 't/run-dev, TERM to its pid: exit 0')
    or diag "status $r->{status}";

done_testing();
