#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 43-privileges.t - root never trusts what the daemon's user owns (as root:
# the daemon runs as nobody, the attacker is a process of nobody).
#   - a pidfile swapped for a symbolic link to a root file: the file is
#     untouched, the daemon writes a pidfile of its own; a pidfile in a
#     directory it cannot write stops it at start with the real cause;
#   - root's `status` and `stop` run as the daemon's user: a fake pidfile
#     locked by a process of that user naming a root process cannot make
#     them signal it, and a dump swapped for a link to a root-only file is
#     not printed;
#   - the recommended unix socket (mode 0660, the daemon's group) refuses a
#     local user outside the group;
#   - the daemon started as its user, as the systemd unit does (User=), in
#     directories systemd creates for that user: it serves, and its files
#     are private (umask 027).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Fcntl qw(:flock);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request policy_send request_text read_reply
          run_rateguard migrated_database wait_until slurp test_dir rateguard as_user user_dir start_as_user);

plan skip_all => 'needs root (the daemon\'s user and root are two users)' if $> != 0;
my ($nobody, $nogroup) = ((getpwnam 'nobody')[2], (getgrnam 'nogroup')[2]);
plan skip_all => 'needs user nobody and group nogroup' unless defined $nobody && defined $nogroup;

my $db = migrated_database('privileges');
my $secret_file = test_dir() . '/root-only';
sub write_secret {
    open my $fh, '>', $secret_file or die;
    print $fh "root secret\n";
    close $fh;
    chmod 0600, $secret_file;
}
write_secret();

# A directory owned by the daemon's user, as /run/rateguard is.
sub nobody_dir { return user_dir($_[0], $nobody, $nogroup) }

# --- 1. a symlinked pidfile ---
my $run = nobody_dir('run');
my $c = write_config(database => $db, name => 'pid', extra => qq{pidfile = "$run/rateguard.pid"\n});
symlink $secret_file, "$run/rateguard.pid" or die "symlink: $!";
my $pid = start_daemon($c);
is(slurp($secret_file), "root secret\n", 'the root file behind the symlinked pidfile is untouched');
ok(!-l "$run/rateguard.pid", 'the link was replaced');
my @st = stat "$run/rateguard.pid";
is($st[4], $nobody, 'by a pidfile of the daemon\'s user');
is(slurp("$run/rateguard.pid"), "$pid\n", 'holding the daemon\'s pid');
my ($rc, $out) = run_rateguard('-c', $c->{path}, 'status');
is($rc, 0, 'root\'s status works with it');
($rc) = run_rateguard('-c', $c->{path}, 'stop');
is($rc, 0, '`rateguard stop`: exit 0');
ok(wait_until(sub { waitpid($pid, WNOHANG) == $pid }, 5), 'the daemon is gone');
is($? >> 8, 0, 'and exited 0');

# --- 1b. a pidfile directory the daemon's user cannot write ---
my $rootdir = test_dir() . '/root-run';
mkdir $rootdir, 0755;
my $cr = write_config(database => $db, name => 'rootrun', extra => qq{pidfile = "$rootdir/rateguard.pid"\n});
my ($rrc, $rout, $rerr) = run_rateguard('-f', '-c', $cr->{path}, 'run');
is($rrc, 6, 'a pidfile in a directory of root: the daemon stops at start, exit 6');
like($rout . $rerr, qr{open\(\Q$rootdir\E/rateguard\.pid\): Permission denied}, 'naming the real cause (EACCES)');
like($rout . $rerr, qr/its directory must be writable by user nobody/, 'and what to do');

# --- 2. a fake pidfile locked by a process of the daemon's user ---
my $victim = fork // die;
if ($victim == 0) { exec 'sleep', '60' or die }
my $fake = nobody_dir('fake');
my $c2 = write_config(database => $db, name => 'fake', extra => qq{pidfile = "$fake/rateguard.pid"\n});
my $dump = test_dir() . '/' . instance_name($c2->{path}) . '.status.txt';
pipe(my $ready_r, my $ready_w) or die;
my $liar = fork // die;
if ($liar == 0) {
    close $ready_r;
    POSIX::setgid($nogroup);
    POSIX::setuid($nobody) or die "setuid: $!";
    open my $fh, '>', "$fake/rateguard.pid" or die "fake pidfile: $!";
    flock($fh, LOCK_EX) or die;
    print $fh "$victim\n";
    $fh->flush;
    # Asked for a dump, it offers a link to root's file instead.
    $SIG{RTMIN} = sub { unlink $dump; symlink $secret_file, $dump };
    print $ready_w "ready\n";
    close $ready_w;
    sleep 30 while 1;
}
close $ready_w;
<$ready_r>;
my $err;
# Exit 6 (a runtime error) with the refused signal named: not a crash, not
# a success.
($rc, $out, $err) = run_rateguard('-c', $c2->{path}, 'status');
is($rc, 6, 'status with a pidfile naming a root process: exit 6') or diag $err;
like($err, qr/^rateguard: kill\($victim\): Operation not permitted$/m, '... the refused signal named');
ok(kill(0, $victim), 'the root process named by the fake pidfile is alive (not signalled)');
unlike($out, qr/root secret/, 'nothing of the root file printed');
($rc, $out, $err) = run_rateguard('-c', $c2->{path}, 'stop');
is($rc, 6, 'stop with that pidfile: exit 6') or diag $err;
is($err, "rateguard: stop: kill($victim): Operation not permitted\n", '... the refused signal named, nothing else');
ok(kill(0, $victim), 'the root process is still alive');
# Now the liar names itself: root's status signals it and gets a link.
open my $pf, '+<', "$fake/rateguard.pid" or die;
truncate $pf, 0;
print $pf "$liar\n";
close $pf;
($rc, $out, $err) = run_rateguard('-c', $c2->{path}, 'status');
ok(-l $dump, 'the daemon user\'s process swapped the dump for a link to the root file');
is($rc, 6, 'status refuses the link: exit 6') or diag $err;
like($err, qr/^rateguard: pid $liar did not write \S+\.status\.txt within 5 s$/m, '... no dump read from it');
unlike($out, qr/root secret/, 'and prints nothing of the root file');
kill 'KILL', $liar, $victim;
waitpid($_, 0) for $liar, $victim;

# --- 3. the recommended unix socket ---
my $sockdir = test_dir() . '/private';
my $c3 = write_config(database => $db, name => 'unix', listen => qq{"unix:$sockdir/rateguard"});
my $pid3 = start_daemon_unix($c3, "$sockdir/rateguard");
my @sst = stat "$sockdir/rateguard";
is(sprintf('%04o', $sst[2] & 07777), '0660', 'socket mode 0660');
is("$sst[4]:$sst[5]", "$nobody:$nogroup", 'owned by the daemon\'s user and group');
is(unix_request_as(1, 1, "$sockdir/rateguard"), 'refused', 'a local user outside the group cannot connect');
is(unix_request_as($nobody, $nogroup, "$sockdir/rateguard"), "action=DUNNO\n\n", 'the daemon\'s group (Postfix) is served');
is(stop_daemon($pid3), 0, 'TERM: exit 0');

# --- 7. started as its user, as the systemd unit does ---
my $sd = nobody_dir('systemd');
mkdir "$sd/$_", 0755 for qw(run state log);
chown $nobody, $nogroup, "$sd/$_" for qw(run state log);
my $c7 = write_config(database => $db, name => 'unit',
                      extra => qq{pidfile = "$sd/run/rateguard.pid"\nstate_dir = "$sd/state"\n},
                      sections => { log => qq{file = "$sd/log/rateguard.log"\n} });
chown 0, $nogroup, $c7->{path};
chmod 0640, $c7->{path};
my $pid7 = start_as_user($c7, $nobody, $nogroup, "$sd/stdout");
ok(wait_until(sub { slurp("$sd/log/rateguard.log") =~ /started \(pid $pid7,/ }, 10),
   'started as nobody in directories systemd would create for User=') or diag slurp("$sd/stdout");
my $s7 = policy_connect($c7);
is(policy_request($s7, sasl_username => 'unit@example.org'), "action=DUNNO\n\n", 'it serves');
close $s7;
($rc, $out) = run_rateguard('-c', $c7->{path}, 'status');
is($rc, 0, 'root\'s status works');
my %mode = map { $_ => sprintf('%04o', (stat $_)[2] & 07777) } glob("$sd/state/*"), "$sd/log/rateguard.log";
is_deeply([grep { $mode{$_} !~ /^0[0-7][0-5]0$/ } sort keys %mode], [], 'no file it made is readable by others (umask 027)')
    or diag explain \%mode;
is(stop_daemon($pid7), 0, 'TERM: exit 0');
done_testing();

# The daemon's instance name: FNV-1a 64 of its configuration's path.
sub instance_name {
    my ($path) = @_;
    require Math::BigInt;
    my $h = Math::BigInt->from_hex('cbf29ce484222325');
    my $mod = Math::BigInt->new(2)->bpow(64);
    for my $byte (unpack 'C*', $path) {
        $h->bxor($byte);
        $h->bmul(Math::BigInt->from_hex('100000001b3'))->bmod($mod);
    }
    return sprintf('rateguard-%016s', substr($h->as_hex, 2));
}

# start_daemon for a daemon listening on a unix socket only.
sub start_daemon_unix {
    my ($conf, $path) = @_;
    my $p = fork // die;
    if ($p == 0) {
        open STDOUT, '>>', "$conf->{log}.stdout";
        open STDERR, '>&', \*STDOUT;
        exec(rateguard(), '-c', $conf->{path}, '-f', 'run') or die;
    }
    wait_until(sub { slurp($conf->{log}) =~ /started \(pid $p,/ && -S $path }, 10) or die "no start";
    return $p;
}

# One request over the unix socket as uid:gid: the reply, or 'refused'.
sub unix_request_as {
    my ($uid, $gid, $path) = @_;
    return as_user($uid, $gid, sub {
        my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path);
        return $s ? policy_send($s, request_text(sasl_username => 'local@example.org')) : 'refused';
    });
}
