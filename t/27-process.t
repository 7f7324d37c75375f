#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 27-process.t - the process model: privileges dropped (when started as
# root), one database connection however many workers, unix and IPv6
# listeners, allowed_clients, idle timeout, max_requests, log reopening on
# USR2, and children that leave when the master is killed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use IO::Socket::UNIX;
use IO::Socket::IP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request policy_send request_text
          migrated_database dbh wait_until slurp test_dir free_port children_of);

my $db = migrated_database('process');
my $h = dbh($db);
my $dir = test_dir();
my $port = free_port();
my $sock = "$dir/policy.sock";
my $c = write_config(database => $db, port => $port, listen => qq{"127.0.0.1:$port", "[::1]:$port", "unix:$sock"},
                     extra => qq{socket_mode = "0600"\n},
                     sections => { workers => "min = 3\nmax_requests = 2\nidle_timeout = 1\n" });
my $pid = start_daemon($c);

# A process's credentials from the process table: real, effective, saved
# and fs uid; the same gids; the supplementary groups.
sub ids_of {
    my ($p) = @_;
    my $st = slurp("/proc/$p/status");
    my %id = map { my ($v) = $st =~ /^$_:[ \t]*(.*?)[ \t]*$/m; ($_ => join(' ', split ' ', $v // '?')) } qw(Uid Gid Groups);
    return "uid $id{Uid}; gid $id{Gid}; groups $id{Groups}";
}

ok(wait_until(sub { children_of($pid) >= 4 }, 10), 'master has workers and a writer');
my @kids = children_of($pid);

# An idle daemon holds no table's metadata lock: an operator's LOCK TABLES
# (or ALTER) does not wait for it.
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM information_schema.processlist WHERE db = ?}, undef, $db))[0] >= 1 }),
   'the writer is connected');
my $op = dbh($db);
$op->do('SET SESSION lock_wait_timeout = 2');
ok(eval { $op->do('LOCK TABLES ratelimits WRITE, messages WRITE, rateguard_progress WRITE'); 1 },
   'LOCK TABLES by an operator is granted at once') or diag $@;
$op->do('UNLOCK TABLES');
$op->disconnect;
SKIP: {
    skip 'privilege drop needs root', 2 if $> != 0;
    my ($u, $g) = (scalar getpwnam('nobody'), scalar getgrnam('nogroup'));
    my $want = "uid $u $u $u $u; gid $g $g $g $g; groups $g";
    is(ids_of($pid), $want, 'master runs as the configured user and group (real, effective, saved, fs; groups)');
    is_deeply({ map { $_ => ids_of($_) } @kids }, { map { $_ => $want } @kids }, 'so does every child');
}

# Unix socket with its mode, IPv6 listener.
ok(-S $sock, 'unix socket created');
is((stat $sock)[2] & 07777, 0600, 'unix socket mode from socket_mode');
my $u = IO::Socket::UNIX->new(Peer => $sock) or die "unix: $!";
is(policy_send($u, request_text(sasl_username => 'unix@example.org')), "action=DUNNO\n\n", 'answered over the unix socket');
close $u;
SKIP: {
    # Whether this machine has ::1, asked of a socket of the test's own (a
    # daemon up but unreachable on ::1 must fail below, not skip).
    my $probe = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1);
    skip 'no IPv6 loopback here', 1 unless $probe;
    close $probe;
    my $v6 = IO::Socket::IP->new(PeerHost => '::1', PeerPort => $port);
    is($v6 ? policy_send($v6, request_text(sasl_username => 'v6@example.org')) : "connect [::1]:$port: $!",
       "action=DUNNO\n\n", 'answered over IPv6');
    close $v6 if $v6;
}

# Many connections, two database connections (the writer's lanes).
my @conns = map { policy_connect($c) } 1 .. 8;
policy_request($_, sasl_username => 'many@example.org') for @conns;
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE sender = 'many@example.org'}))[0] == 8 }),
   'eight messages written');
my ($db_conns) = $h->selectrow_array('SELECT COUNT(*) FROM information_schema.processlist WHERE db = ?', undef, $db);
is($db_conns - 1, 2, 'two database connections for the daemon with 8 client connections (the test holds another)');
close $_ for @conns;

# Idle timeout: a connection idle for idle_timeout is closed, logged.
my $idle = policy_connect($c);
is(policy_request($idle, sasl_username => 'idle@example.org'), "action=DUNNO\n\n", 'answered');
ok(wait_until(sub { slurp($c->{log}) =~ /client 127\.0\.0\.1:\d+: idle for 1 s, disconnecting/ }, 5),
   'idle connection closed after idle_timeout, logged');
is(RG::read_reply($idle), '', 'the idle connection is closed');

# max_requests: a worker leaves after 2 connections. Every connection so
# far carried one counted request, logged with the worker's pid.
for (1 .. 6) {
    my $s = policy_connect($c);
    policy_request($s, sasl_username => 'cycle@example.org');
    close $s;
}
ok(wait_until(sub { (() = slurp($c->{log}) =~ /: client=.*sasl_username=cycle\@example\.org/g) == 6 }, 5),
   'the six requests logged');
my %served;
my $logtext = slurp($c->{log});
$served{$1}++ while $logtext =~ /rateguard\[(\d+)\]: info: \w+: client=/g;
my @max = sort { $b <=> $a } values %served;
is($max[0], 2, 'no worker served more than max_requests = 2 connections');
my @done = grep { $served{$_} == 2 } keys %served;
ok(@done && wait_until(sub { !grep { kill 0, $_ } @done }, 5), 'workers that served 2 connections have exited');

# USR2 reopens the log file (logrotate's postrotate).
rename $c->{log}, "$c->{log}.1" or die;
kill 'USR2', $pid;
# The master says so in the new file once it has reopened (and told the
# workers, who reopen at their next message).
ok(wait_until(sub { slurp($c->{log}) =~ /log file reopened/ }, 10), 'USR2: the master reopens the log file');
my $s = policy_connect($c);
policy_request($s, sasl_username => 'rotated@example.org', queue_id => 'ROTATED1');
close $s;
ok(wait_until(sub { slurp($c->{log}) =~ /ROTATED1: client=/ }, 5), 'after USR2 the new log file is written');

# allowed_clients: a client outside the list is refused and logged.
my $c2 = write_config(database => $db, name => 'refuse', extra => qq{allowed_clients = { "10.0.0.0/8", "2001:db8::/32" }\n});
my $pid2 = start_daemon($c2);
my $r = policy_connect($c2);
is(policy_send($r, request_text()), '', 'client outside allowed_clients: closed without a reply');
ok(wait_until(sub { slurp($c2->{log}) =~ /warning: client 127\.0\.0\.1:\d+: not in allowed_clients, connection refused/ }, 5),
   'refusal logged');
is(stop_daemon($pid2), 0, 'second daemon stopped');

# The master killed with SIGKILL: its workers and writer leave on their own.
@kids = children_of($pid);
kill 'KILL', $pid;
waitpid($pid, 0);
ok(wait_until(sub { !grep { kill 0, $_ } @kids }, 10), 'all children exit when the master dies');
$h->disconnect;
done_testing();
