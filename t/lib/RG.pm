# SPDX-License-Identifier: GPL-3.0-or-later
# RG.pm - helpers for rateguard's integration tests: a fresh database on
# the private MariaDB (started by t/run-suite), config files, starting and
# stopping the real daemon, speaking the policy protocol.
package RG;

use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Socket::UNIX;
use IO::Select;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use DBI;
use FindBin;

our @EXPORT_OK = qw(wait_until database_server children_of rateguard build_dir fresh_database migrated_database dbh write_config run_rateguard
                    start_daemon stop_daemon policy_connect policy_request policy_send read_reply
                    free_port test_dir request_text slurp status_json debian_package db_port
                    ask BLOCK_REPLY DUNNO_REPLY kill_family row fields send_n connect_from closed_within hooked
                    as_user user_dir start_as_user process_ended);

# The reply to a request over its quota (the default block_action and
# message), and to one that is let through.
use constant BLOCK_REPLY => "action=DEFER_IF_PERMIT Rate limit reached, retry later.\n\n";
use constant DUNNO_REPLY => "action=DUNNO\n\n";

# Deadlines (seconds), so a daemon that stops answering fails the test
# instead of hanging the run: a policy reply, a `rateguard` command.
# Raise them for a test with `local $RG::REPLY_TIMEOUT = 120;`.
our $REPLY_TIMEOUT = $ENV{RG_REPLY_TIMEOUT} // 30;
our $RUN_TIMEOUT = $ENV{RG_RUN_TIMEOUT} // 120;

# Bytes read past the end of a reply, per socket (pipelined replies).
my %pending;

sub build_dir {
    my $b = $ENV{RG_BUILD} or die "RG_BUILD is not set: run the tests with `make test`\n";
    return $b;
}

sub rateguard { return build_dir() . '/rateguard' }

# A private temporary folder per test script, writable by the daemon's user.
my $tmp;
sub test_dir {
    $tmp //= do {
        my $d = tempdir('rg-test-XXXXXX', TMPDIR => 1, CLEANUP => 1);
        chmod 0777, $d;
        $d;
    };
    return $tmp;
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

sub dbh {
    my ($name) = @_;
    my $dsn = "DBI:MariaDB:mariadb_socket=$ENV{RG_DB_SOCKET}";
    $dsn .= ";database=$name" if defined $name;
    return DBI->connect($dsn, $ENV{RG_DB_USER}, $ENV{RG_DB_PASSWORD},
                        { RaiseError => 1, PrintError => 0, AutoCommit => 1, AutoInactiveDestroy => 1 });
}

# Drop and create database rg_NAME; returns its name.
sub fresh_database {
    my ($name) = @_;
    my $db = "rg_$name";
    my $h = dbh();
    $h->do("DROP DATABASE IF EXISTS `$db`");
    $h->do("CREATE DATABASE `$db`");
    $h->disconnect;
    return $db;
}

# A fresh database rg_NAME with rateguard's schema applied by `rateguard migrate`.
sub migrated_database {
    my ($name) = @_;
    my $db = fresh_database($name);
    my $c = write_config(database => $db, name => "migrate-$name");
    my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'migrate');
    die "migrate $db failed ($rc): $err" if $rc != 0;
    return $db;
}

# The pids whose parent is $parent (a daemon's workers, writer, notifier).
sub children_of {
    my ($parent) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $line = slurp($stat) or next;
        my ($kid, $ppid) = $line =~ /^(\d+) \(.*\) \S (\d+)/ or next;
        push @kids, $kid if $ppid == $parent;
    }
    return @kids;
}

# Stop or start the private MariaDB server (outage tests).
sub database_server {
    my ($action) = @_;
    my $script = "$FindBin::Bin/mariadb-server";
    system('sh', $script, $action, build_dir()) == 0 or die "mariadb-server $action failed";
}

# Poll until $check returns true (then return its value) or $timeout s
# (default 10) pass, then undef. A $check that dies counts as "not yet"
# (a status read while the daemon restarts); the last error is shown when
# the deadline passes.
sub wait_until {
    my ($check, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    my $error;
    while (1) {
        my $v = eval { $check->() };
        if ($@) { $error = $@ } elsif ($v) { return $v }
        if (time > $deadline) {
            print STDERR "# wait_until: last error: $error" if defined $error;
            return undef;
        }
        sleep 0.02;
    }
}

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
        or die "free_port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# Write a config for the test daemon. %o: database, port, extra (text appended
# at top level), quota (default quota), sections (hash of section => text).
sub write_config {
    my (%o) = @_;
    my $dir = test_dir();
    my ($user, $group) = $> == 0 ? ('nobody', 'nogroup')
                                 : (scalar getpwuid($>), scalar getgrgid($) + 0));
    my $port = $o{port} // free_port();
    my $name = $o{name} // 'rateguard';
    my $db = $o{database} // 'rg_dev';
    my $conf = "$dir/$name.conf";
    my $listen = $o{listen} // "\"127.0.0.1:$port\"";
    my %sec = %{ $o{sections} // {} };
    $sec{database} //= '';
    $sec{database} = qq{socket = "$ENV{RG_DB_SOCKET}"\nuser = "$ENV{RG_DB_USER}"\n}
                   . qq{password = "$ENV{RG_DB_PASSWORD}"\nname = "$db"\n} . $sec{database};
    $sec{log} //= '';
    $sec{log} = qq{syslog = false\nfile = "$dir/$name.log"\nlevel = debug\n} . $sec{log};
    $sec{quota} = "default = $o{quota}\n" . ($sec{quota} // '') if defined $o{quota};
    $sec{metrics} //= qq{listen = ""\n};   # daemons side by side: /metrics only where a test asks
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh qq{user = "$user"\ngroup = "$group"\npidfile = "$dir/$name.pid"\n};
    print $fh qq{state_dir = "$dir"\nlisten = { $listen }\n};
    print $fh $o{extra} // '';
    print $fh "$_ {\n$sec{$_}}\n" for sort keys %sec;
    close $fh;
    return { path => $conf, port => $port, pidfile => "$dir/$name.pid",
             log => "$dir/$name.log", database => $db };
}

# True when $pid has ended: gone, or a zombie its parent has not reaped
# yet (a daemonized rateguard's parent is PID 1, which may reap late; a
# zombie holds no socket and no file, and `rateguard stop` counts it so).
sub process_ended {
    my ($pid) = @_;
    return 1 if !kill(0, $pid);
    my ($state) = slurp("/proc/$pid/stat") =~ /\) (\S)/;
    return ($state // '') =~ /^[ZX]$/ ? 1 : 0;
}

# Run rateguard with arguments; returns (exit code, stdout, stderr). One
# still running after $RG::RUN_TIMEOUT s is killed: exit code 124 (as
# timeout(1)), and stderr says so.
sub run_rateguard {
    my (@args) = @_;
    my $dir = test_dir();
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$dir/out.txt" or die;
        open STDERR, '>', "$dir/err.txt" or die;
        exec(rateguard(), @args) or die "exec: $!";
    }
    my $deadline = time + $RUN_TIMEOUT;
    while (waitpid($pid, WNOHANG) != $pid) {
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            my $why = "run_rateguard: `rateguard @args` killed after $RUN_TIMEOUT s\n";
            print STDERR "# $why";
            return (124, slurp("$dir/out.txt"), slurp("$dir/err.txt") . $why);
        }
        sleep 0.01;
    }
    return ($? >> 8, slurp("$dir/out.txt"), slurp("$dir/err.txt"));
}

# The JSON output of `rateguard --json COMMAND...` (default `status`) as
# a hash; undef when the command fails or prints no JSON object.
sub status_json {
    my ($c, @command) = @_;
    @command = ('status') unless @command;
    my ($rc, $out) = run_rateguard('-c', $c->{path}, '--json', @command);
    require JSON::PP;
    my $j = $rc == 0 ? eval { JSON::PP::decode_json($out) } : undef;
    return ref $j eq 'HASH' ? $j : undef;
}

# Daemons started by this test script; any still running when the script
# ends (a failed test, a die) are stopped, so nothing outlives the suite.
my %started;
END {
    local $?;       # the script's exit code: waitpid must not change it
    for my $pid (keys %started) {
        next unless kill 0, $pid;
        kill 'TERM', $pid;
        for (1 .. 100) { last if waitpid($pid, WNOHANG) == $pid; sleep 0.05; }
        if (kill 0, $pid) { kill 'KILL', $pid; waitpid($pid, 0); }
    }
}

# Run code in a child as uid:gid (supplementary groups @groups, none by
# default) and return what it returned (as text): another local account.
sub as_user {
    my ($uid, $gid, $code, @groups) = @_;
    pipe(my $r, my $w) or die "pipe: $!";
    my $p = fork // die "fork: $!";
    if ($p == 0) {
        close $r;
        $) = join ' ', $gid, @groups ? @groups : $gid;
        POSIX::setgid($gid);
        POSIX::setuid($uid) or POSIX::_exit(2);
        print $w $code->() // '';
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    my $got = do { local $/; <$r> };
    waitpid($p, 0);
    return $got;
}

# A directory in the test's folder owned by uid:gid (as /run/rateguard is
# the daemon's user's).
sub user_dir {
    my ($name, $uid, $gid) = @_;
    my $d = test_dir() . "/$name";
    mkdir $d, 0755;
    chown $uid, $gid, $d;
    return $d;
}

# Start the daemon in the foreground as uid:gid from the start (as the
# systemd unit does with User=), its output to $out; @groups are its
# supplementary groups (none by default). Returns its pid at once.
sub start_as_user {
    my ($conf, $uid, $gid, $out, @groups) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $out or die "$out: $!";
        open STDERR, '>&', \*STDOUT;
        exec('setpriv', "--reuid=$uid", "--regid=$gid", @groups ? '--groups=' . join(',', @groups) : '--clear-groups',
             rateguard(), '-f', '-c', $conf->{path}, 'run') or die "exec: $!";
    }
    $started{$pid} = 1;
    return $pid;
}

# Start the daemon in the foreground (as a child) and wait until it
# accepts connections. Returns the master's pid. %opt: binary (default the
# daemon), env (extra environment).
sub start_daemon {
    my ($c, %opt) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$c->{log}.stdout";
        open STDERR, '>>', "$c->{log}.stdout";
        $ENV{$_} = $opt{env}{$_} for keys %{ $opt{env} // {} };
        exec($opt{binary} // rateguard(), '-c', $c->{path}, '-f', 'run') or die "exec: $!";
    }
    $started{$pid} = 1;
    # Up when it says so in its log (after the privilege drop, with its
    # workers forked) and accepts connections.
    my $deadline = time + 10;
    while (time < $deadline) {
        die "rateguard exited early:\n" . slurp("$c->{log}.stdout")
            if waitpid($pid, WNOHANG) == $pid;
        if (slurp($c->{log}) =~ /started \(pid $pid,/) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $c->{port});
            if ($s) { close $s; return $pid; }
        }
        sleep 0.02;
    }
    die "rateguard did not start within 10 s:\n" . slurp("$c->{log}.stdout");
}

# TERM the daemon and wait; returns its exit code, "signal N" if a signal
# ended it, undef on timeout.
sub stop_daemon {
    my ($pid, $timeout) = @_;
    kill 'TERM', $pid;
    # 60 s: a stop takes well under a second here, but the ASan build on a
    # loaded 2-core machine once took more than the 15 s this was (t/60 in
    # make asan); the daemon's own deadline for draining is longer still.
    my $deadline = time + ($timeout // 60);
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $started{$pid};
            return $? & 127 ? 'signal ' . ($? & 127) : $? >> 8;
        }
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return undef;
}

sub policy_connect {
    my ($c) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $c->{port}, Timeout => 5)
        or die "connect 127.0.0.1:$c->{port}: $!";
    delete $pending{fileno($s)};
    return $s;
}

# A Postfix 3.7 DATA request (as in reference/postfix-attributes.txt)
# with attributes overridden or removed (value undef). Each request gets a
# fresh queue_id and instance unless given, as each Postfix message does.
my $request_serial = 0;
sub request_text {
    my (%a) = @_;
    $request_serial++;
    $a{queue_id} = sprintf('%05X%06X', $$ % 0xfffff, $request_serial) unless exists $a{queue_id};
    $a{instance} = "$$.$request_serial.test.0" unless exists $a{instance};
    my @order = qw(request protocol_state protocol_name client_address client_name client_port
                   reverse_client_name server_address server_port helo_name sender recipient
                   recipient_count queue_id instance size etrn_domain stress sasl_method
                   sasl_username sasl_sender ccert_subject ccert_issuer ccert_fingerprint
                   ccert_pubkey_fingerprint encryption_protocol encryption_cipher
                   encryption_keysize policy_context);
    my %v = (request => 'smtpd_access_policy', protocol_state => 'DATA', protocol_name => 'ESMTP',
             client_address => '127.0.0.1', client_name => 'localhost', client_port => '53080',
             reverse_client_name => 'localhost', server_address => '127.0.0.1',
             server_port => '2525', helo_name => 'client.example.org',
             sender => 'alice@example.org', recipient => '', recipient_count => '3',
             queue_id => 'DA616A7C20E', instance => '6899.6b025926.d97ac.0', size => '0',
             etrn_domain => '', stress => '', sasl_method => 'PLAIN',
             sasl_username => 'alice@example.org', sasl_sender => '', ccert_subject => '',
             ccert_issuer => '', ccert_fingerprint => '', ccert_pubkey_fingerprint => '',
             encryption_protocol => '', encryption_cipher => '', encryption_keysize => '0',
             policy_context => '');
    my %seen;
    my $text = '';
    for my $k (@order, sort keys %a) {
        next if $seen{$k}++;
        my $val = exists $a{$k} ? $a{$k} : $v{$k};
        $text .= "$k=$val\n" if defined $val;
    }
    return "$text\n";
}

# Send raw bytes and read one reply (up to the blank line); '' on EOF.
sub policy_send {
    my ($sock, $bytes) = @_;
    print {$sock} $bytes if length $bytes;
    return read_reply($sock);
}

# "host:port" (or the socket path) of a socket's peer, for messages.
sub peer_of {
    my ($sock) = @_;
    my $name = eval { $sock->can('peerport') && $sock->peerport ? $sock->peerhost . ':' . $sock->peerport
                      : $sock->can('peerpath') ? $sock->peerpath : undef };
    return $name // 'the peer';
}

# Read one reply (up to the blank line; what came before EOF on EOF). Dies
# naming the peer if none is complete within $timeout s (default
# $RG::REPLY_TIMEOUT): a daemon that stops answering fails the test.
sub read_reply {
    my ($sock, $timeout) = @_;
    $timeout //= $REPLY_TIMEOUT;
    my $deadline = time + $timeout;
    my $key = fileno($sock) // -1;
    my $buf = delete $pending{$key} // '';
    my $sel = IO::Select->new($sock);
    while ($buf !~ /\n\n/) {
        my $left = $deadline - time;
        if ($left <= 0 || !$sel->can_read($left)) {
            die sprintf("read_reply: no reply from %s within %s s (got %d bytes: %s)\n",
                        peer_of($sock), $timeout, length $buf, $buf =~ s/\n/\\n/gr);
        }
        my $n = sysread($sock, my $chunk, 4096);
        return $buf if !$n;
        $buf .= $chunk;
    }
    my $end = index($buf, "\n\n") + 2;
    $pending{$key} = substr($buf, $end) if $end < length $buf;
    return substr($buf, 0, $end);
}

sub policy_request {
    my ($sock, %a) = @_;
    return policy_send($sock, request_text(%a));
}

# Connect to the daemon of config $c, send one request (attributes %a as
# request_text's), close; returns the reply.
sub ask {
    my ($c, %a) = @_;
    my $s = policy_connect($c);
    my $reply = policy_request($s, %a);
    close $s;
    return $reply;
}

# $n requests from $sender (recipient_count 1, %a on top) on one
# connection; returns the replies (an array ref).
sub send_n {
    my ($c, $sender, $n, %a) = @_;
    my $s = policy_connect($c);
    my @replies = map { policy_request($s, sasl_username => $sender, recipient_count => 1, %a) } 1 .. $n;
    close $s;
    return \@replies;
}

# A connection to the daemon of $c from local address $from (127.0.0.N);
# dies if it cannot connect within 5 s.
sub connect_from {
    my ($c, $from) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $c->{port}, LocalAddr => $from,
                                 Timeout => 5) || die "connect to 127.0.0.1:$c->{port} from $from: $!";
}

# True if the peer closes $sock (EOF) within $timeout s; false if it stays
# silent or sends bytes instead.
sub closed_within {
    my ($sock, $timeout) = @_;
    return 0 unless IO::Select->new($sock)->can_read($timeout);
    my $n = sysread($sock, my $buf, 1);
    return !$n;
}

# SIGNAL (default KILL) the daemon $pid and all its children at once, reap
# it, and wait up to 10 s until none of them is left; true if none is.
sub kill_family {
    my ($pid, $signal) = @_;
    my @all = ($pid, children_of($pid));
    kill $signal // 'KILL', @all;
    waitpid($pid, 0);
    delete $started{$pid};
    return wait_until(sub { !grep { kill 0, $_ } @all }, 10);
}

# The ratelimits row of $sender as a hash ref (undef if none) in database
# $db (a name, read on a fresh connection, or a handle); dies if the
# sender has more than one row.
sub row {
    my ($db, $sender) = @_;
    my $h = ref $db ? $db : dbh($db);
    my $rows = $h->selectall_arrayref('SELECT * FROM ratelimits WHERE sender = ?', { Slice => {} }, $sender);
    die "row: " . @$rows . " ratelimits rows for $sender\n" if @$rows > 1;
    return $rows->[0];
}

# The values of fields @names of hash ref $r, in that order (an array
# ref), or undef if $r is: is_deeply(fields(row($h, $s), qw(quota ...)), [...]).
sub fields {
    my ($r, @names) = @_;
    return $r ? [@$r{@names}] : undef;
}

# A config for database $db whose webhook posts to $url. %o: name
# (default hookN), quota (default 2), secret (default base64 "secret"),
# webhook (more text for the webhook section), sections (other sections).
my $hooked = 0;
sub hooked {
    my ($db, $url, %o) = @_;
    $hooked++;
    my $secret = $o{secret} // 'c2VjcmV0';
    my %sections = (%{ $o{sections} // {} },
                    webhook => qq{enabled = true\nurl = "$url"\nsecret = "$secret"\n} . ($o{webhook} // ''));
    return write_config(database => $db, name => $o{name} // "hook$hooked", quota => $o{quota} // 2,
                        sections => \%sections);
}

# The private MariaDB's TCP port now: a restart (t/30's outages) picks a
# new one and rewrites BUILD/mariadb/env, so $ENV{RG_DB_PORT} may be stale.
sub db_port {
    my ($port) = slurp(build_dir() . '/mariadb/env') =~ /^RG_DB_PORT=(\d+)$/m;
    return $port // $ENV{RG_DB_PORT};
}

# `make deb` into BUILD/pkg (t/63, t/64): built once per suite run
# (RG_SUITE_RUN, set by t/run-suite), otherwise by each caller. Returns the
# .deb's path and the folder of the packaged tree, or dies with make's
# output.
sub debian_package {
    my ($version) = slurp("$FindBin::Bin/../include/rateguard.h") =~ /RATEGUARD_VERSION "([^"]+)"/;
    my $run = $ENV{RG_SUITE_RUN};
    my ($pkg, $stamp) = $run ? (build_dir() . '/pkg', build_dir() . '/pkg.run') : (test_dir() . '/pkg', '');
    my $deb = "$pkg/deb/rateguard_${version}_amd64.deb";
    my $tree = "$pkg/deb/rateguard-$version";
    return ($deb, $tree) if $run && -f $deb && slurp($stamp) eq $run;
    unlink $stamp if $stamp;
    my $out = `make -s -C $FindBin::Bin/.. deb BUILD=$pkg 2>&1`;
    die "make deb failed:\n$out" if $? != 0 || !-f $deb;
    if ($stamp) { open my $fh, '>', $stamp or die "$stamp: $!"; print $fh $run; close $fh }
    return ($deb, $tree);
}

1;
