#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 67-apart.t - rateguard and Postfix kept apart (issue 25), as root:
#   - every process of the daemon is non-dumpable, whoever starts it: root
#     (the drop), or its own user directly, as the systemd unit does: a
#     process of the daemon's user cannot read its memory or environment
#     (where the configuration's passwords would be);
#   - socket_group: with an account of its own, the unix socket and its
#     directory belong to Postfix's group, 0660 and 0750: a member of that
#     group is served, the daemon's own group and others are refused; a
#     daemon started as its user (a member of that group) sets it too;
#   - the unit writes only rateguard's own directories (never the whole
#     Postfix queue) and does not remove the IPC objects of Postfix's user.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request policy_send request_text
          migrated_database wait_until slurp test_dir rateguard children_of as_user start_as_user);

plan skip_all => 'needs root (the daemon\'s user, a group and root are distinct)' if $> != 0;
my ($nobody, $nogroup) = ((getpwnam 'nobody')[2], (getgrnam 'nogroup')[2]);
my $mailgid = (getgrnam 'mail')[2];
plan skip_all => 'needs user nobody and groups nogroup and mail' unless defined $nobody && defined $nogroup
                                                                      && defined $mailgid;
my $db = migrated_database('apart');

# What a process of the daemon's user can read of pid's memory and
# environment: "environ:ERRNO mem:ERRNO".
sub peek {
    my ($pid) = @_;
    return as_user($nobody, $nogroup, sub {
        my @r;
        for my $f (qw(environ mem)) {
            my $ok = open(my $fh, '<', "/proc/$pid/$f");
            push @r, "$f:" . ($ok ? 'readable' : ($!{EACCES} || $!{EPERM} ? 'denied' : "$!"));
        }
        return "@r";
    });
}

sub family { my ($pid) = @_; return ($pid, children_of($pid)) }

# --- 1. non-dumpable, started as root ---
my $c = write_config(database => $db, name => 'root');
my $pid = start_daemon($c);
my @fam;
ok(wait_until(sub { (@fam = family($pid)) >= 4 }, 10), 'master, workers, writer, notifier: ' . scalar(@fam) . ' processes');
is_deeply([map { peek($_) } @fam], [map { 'environ:denied mem:denied' } @fam],
          'started as root: no process\'s memory or environment is readable by the daemon\'s user');
is(stop_daemon($pid), 0, 'TERM: exit 0');

# --- 2. non-dumpable, started as its user (as the unit does) ---
my $sd = test_dir() . '/unit';
mkdir $sd, 0750;
chown $nobody, $nogroup, $sd;
my $cu = write_config(database => $db, name => 'unit', extra => qq{state_dir = "$sd"\npidfile = "$sd/rateguard.pid"\n},
                      sections => { log => qq{file = "$sd/rateguard.log"\n} });
chown 0, $nogroup, $cu->{path};
chmod 0640, $cu->{path};
my $upid = start_as_user($cu, $nobody, $nogroup, "$sd/stdout");
ok(wait_until(sub { slurp("$sd/rateguard.log") =~ /started \(pid $upid,/ }, 10), 'started as nobody')
    or diag slurp("$sd/stdout");
my $s = policy_connect($cu);
is(policy_request($s, sasl_username => 'apart@example.org'), "action=DUNNO\n\n", 'it serves');
close $s;
wait_until(sub { (@fam = family($upid)) >= 4 }, 10);
is_deeply([map { peek($_) } @fam], [map { 'environ:denied mem:denied' } @fam],
          'started as its user: still no process readable by another process of that user (' . scalar(@fam) . ')');
is(stop_daemon($upid), 0, 'TERM: exit 0');

# --- 3. socket_group ---
# The daemon is nobody:nogroup; Postfix's group is played by "mail".
# The spool as Postfix has it (0755, root): rateguard makes its own directory in it.
mkdir test_dir() . "/spool", 0755;
my $sock = test_dir() . '/spool/rateguard/rateguard.sock';
my $cs = write_config(database => $db, name => 'sock', listen => qq{"unix:$sock"}, extra => qq{socket_group = "mail"\n});
my $spid = fork // die;
if ($spid == 0) {
    open STDOUT, '>>', "$cs->{log}.stdout";
    open STDERR, '>&', \*STDOUT;
    exec(rateguard(), '-c', $cs->{path}, '-f', 'run') or die;
}
ok(wait_until(sub { -S $sock }, 10), 'listening on the unix socket') or diag slurp("$cs->{log}.stdout");
my @st = stat $sock;
is(sprintf('%04o %d:%d', $st[2] & 07777, $st[4], $st[5]), sprintf('0660 %d:%d', $nobody, $mailgid),
   'the socket: 0660, the daemon\'s user, group mail (socket_group)');
my @dt = stat(test_dir() . '/spool/rateguard');
is(sprintf('%04o %d:%d', $dt[2] & 07777, $dt[4], $dt[5]), sprintf('0750 %d:%d', $nobody, $mailgid),
   'its directory: 0750, the daemon\'s user, group mail');
sub ask_unix {
    my ($uid, $gid, @groups) = @_;
    return as_user($uid, $gid, sub {
        my $u = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $sock);
        return $u ? policy_send($u, request_text(sasl_username => 'sock@example.org')) : "refused: $!";
    }, @groups);
}
is(ask_unix(1, $mailgid, $mailgid), "action=DUNNO\n\n", 'a process of group mail (Postfix) is served');
like(ask_unix(1, $nogroup, $nogroup), qr/^refused: Permission denied/, 'another user of the daemon\'s group is refused');
is(stop_daemon($spid), 0, 'TERM: exit 0');

# Started as its user, a member of group mail: it gives the socket to the group itself.
my $sock2 = "$sd/sock2";
my $cs2 = write_config(database => $db, name => 'sock2', listen => qq{"unix:$sock2"},
                       extra => qq{socket_group = "mail"\nstate_dir = "$sd"\npidfile = "$sd/sock2.pid"\n},
                       sections => { log => qq{file = "$sd/sock2.log"\n} });
chown 0, $nogroup, $cs2->{path};
chmod 0640, $cs2->{path};
my $spid2 = start_as_user($cs2, $nobody, $nogroup, "$sd/sock2.stdout", $mailgid);
ok(wait_until(sub { slurp("$sd/sock2.log") =~ /started \(pid $spid2,/ }, 10), 'started as nobody, member of mail')
    or diag slurp("$sd/sock2.stdout");
@st = stat $sock2;
is(sprintf('%04o %d:%d', $st[2] & 07777, $st[4], $st[5]), sprintf('0660 %d:%d', $nobody, $mailgid),
   'its socket: 0660, group mail');
is(stop_daemon($spid2), 0, 'TERM: exit 0');

# --- 4. the unit ---
my $unit = slurp("$FindBin::Bin/../init/rateguard.service.in");
my @rw = map { split ' ' } $unit =~ /^ReadWritePaths=(.*)$/mg;
is_deeply([sort @rw], [sort qw(/var/lib/rateguard -/var/log/rateguard /run/rateguard -/var/spool/postfix/rateguard)],
          'the unit writes rateguard\'s own directories only, not Postfix\'s queue');
unlike($unit, qr/^RemoveIPC=yes/m, 'the unit (User=postfix) does not remove Postfix\'s IPC objects at stop');
done_testing();
