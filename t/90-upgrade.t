#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 90-upgrade.t - an upgrade and a downgrade of the Debian package under
# load through a real Postfix (issue 31). Root only.
#
#   - the package built twice from the tree: its own version V (as t/63,
#     debian_package()) and V+up1 (Package::rebuild: a changelog entry on
#     top, the same daemon binary);
#   - V installed with apt-get (in t/63's private mount namespace where
#     service actions are allowed, a SysV host), configured for the suite's
#     MariaDB through a TCP gate the test can cut (t/lib/TcpGate.pm: an
#     outage without stopping the server), migrated and started with
#     `service rateguard start`; a private Postfix (t/lib/PrivatePostfix.pm)
#     asks it at DATA with default_action=DUNNO, as the checklist says;
#   - two swaks loops send mail through Postfix with SASL for the whole
#     test (a few mails a second);
#   - the upgrade, V -> V+up1 with `apt-get install`, and the downgrade,
#     V+up1 -> V with `--allow-downgrades`, each while the database is
#     away: the gate is cut, the mail goes on (decided from the cache, its
#     records held in the write-back queue), 200 records with a 4000-byte
#     envelope sender sent straight to the policy port push the queue (1
#     MiB) past half, so the writer moves records to the spool; then the
#     package is installed: the postinst's try-restart stops the old daemon
#     (it says how many records it leaves queued, and that more are
#     spooled) and starts the new one (which reopens the queue with exactly
#     that many and counts queue and spool into its cache); the gate is
#     opened again and the new daemon writes all of it;
#   - afterwards: every swaks got 250 queued (none refused, none failed);
#     every queue id Postfix gave is in `messages` exactly once and there
#     is no other row of that sender: a mail let through by Postfix's
#     default_action (the policy service unanswered beyond Postfix's own
#     retry) would have no row; the sender's msg_total is the number of
#     mails; the spooled sender has 400 rows and msg_total 400: no record
#     lost, none doubled. What Postfix logged about the policy service
#     during the restarts is shown (diag), counted, not judged.
# The machine is left as it was: the package purged, no daemon, the private
# Postfix stopped, the gate cut (the test's database, rg_upgrade, stays in
# the suite's MariaDB, as t/63's does, until the next run).
#
# The queue format: both builds read queue version 1 (include/wqueue.h),
# so the downgrade keeps the records. A queue of another version (its
# version field changed by hand, at the end): the package's preinst
# refuses the installation with the reason and the installed package stays;
# the daemon refuses to start with the reason (exit 6); the file is left
# as it is.
#
# RG_SKIP_PACKAGE=1 skips this test.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use RG qw(db_port debian_package fresh_database wait_until slurp test_dir free_port dbh policy_connect policy_request
          DUNNO_REPLY);
use Package qw(apt run pkg_status daemon_pid);
use TcpGate;

my $t_start = time;
Package::preflight('the upgrade test', qw(dpkg-buildpackage dh apt-get unshare postfix postconf saslpasswd2 swaks));
require PrivatePostfix;

my $repo = "$FindBin::Bin/..";
my $dir = test_dir();
my $conf = '/etc/rateguard/rateguard.conf';
my $log = '/var/log/rateguard/rateguard.log';
local $ENV{PATH} = "/usr/sbin:/usr/bin:/sbin:/bin:$ENV{PATH}";
my ($v1) = slurp("$repo/include/rateguard.h") =~ /RATEGUARD_VERSION "([^"]+)"/;
my $v2 = "$v1+up1";

my @loaders;            # the swaks loops' pids
my $stop_file = "$dir/load.stop";

# Whatever happens: the load stopped, the package purged (its daemon with it).
END {
    local $?;
    stop_load();
    Package::cleanup();
}

my ($rc, $out);

# --- two packages --------------------------------------------------------
my ($deb1, $tree) = eval { debian_package() };
ok($deb1, "make deb: $v1") or BAIL_OUT($@);
my $deb2 = eval { Package::rebuild(tree => $tree, dir => "$dir/up", version => $v2, why => 'Rebuilt by t/90-upgrade.t.') };
ok($deb2, "rebuilt as $v2") or BAIL_OUT($@);

# --- V installed, configured, started ------------------------------------
($rc, $out) = apt("install $deb1");
is($rc, 0, "apt-get install rateguard $v1: exit 0") or BAIL_OUT($out);

my $db = fresh_database('upgrade');
my $port = free_port();
my $gate_port = free_port();
my $gate = TcpGate::open_gate($gate_port, db_port());
open my $fh, '>>', $conf or die "$conf: $!";
print $fh <<"CONF";
# edited by the administrator (t/90-upgrade.t)
listen = { "127.0.0.1:$port" }
database {
    host = "127.0.0.1"
    port = $gate_port
    user = "$ENV{RG_DB_USER}"
    password = "$ENV{RG_DB_PASSWORD}"
    name = "$db"
}
log { syslog = false file = "$log" }
quota { default = 100000 }
cache { queue_size = 1 }
signals { enabled = false }
CONF
close $fh;
($rc, $out) = run('rateguard --get-config cache.queue_size');
is("$rc $out", "0 1\n", 'a write-back queue of 1 MiB (the spool sooner)');
# The signals off: 400 records of a new login would trip its probation
# (HOLD), which is not what this test is about.
($rc, $out) = run('rateguard --get-config signals.enabled');
is("$rc $out", "0 false\n", 'the hijacked-account signals off');
($rc, $out) = run('rateguard -t && rateguard migrate');
is($rc, 0, 'rateguard -t && rateguard migrate, through the gate: exit 0') or diag $out;
($rc, $out) = run('update-rc.d rateguard enable && service rateguard start');
is($rc, 0, 'update-rc.d rateguard enable && service rateguard start: exit 0') or diag $out;
my $pid = daemon_pid();
ok($pid, "rateguard $v1 running (pid $pid)");

my $pf = PrivatePostfix::start(dir => "$dir/postfix", port => free_port(), policy => "inet:127.0.0.1:$port",
                               users => { alice => 'alice-secret' });
my $user = 'alice@rg-test.localdomain';
my $h = dbh($db);

# --- the load: two swaks loops --------------------------------------------
# Each loop appends one line per mail to its file: "queued QID" or
# "failed <the reply to DATA, or the last reply>"; a failed mail's whole
# dialogue goes to DIR/failed.N.
sub start_load {
    my ($loops) = @_;
    unlink $stop_file;
    for my $i (1 .. $loops) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $n = 0;
            until (-e $stop_file) {
                $n++;
                my $all = `swaks --server 127.0.0.1:$pf->{port} --from $user --to bob\@rg-test.localdomain --auth PLAIN --auth-user $user --auth-password alice-secret --timeout 60 --header 'Subject: load $i.$n' 2>&1`;
                my ($qid) = $all =~ /^<[-~]*\s*250 2\.0\.0 Ok: queued as (\w+)/m;
                my ($data) = $all =~ /^ -> DATA\r?\n<[-*~]*\s*(\d{3}[^\r\n]*)/m;
                my ($last) = $all =~ /.*^<[-*~]*\s*(\d{3}[^\r\n]*)/ms;
                open my $out, '>>', "$dir/load.$i" or POSIX::_exit(1);
                print $out $qid ? "queued $qid\n" : 'failed ' . ($data // $last // 'no reply') . "\n";
                close $out;
                if (!$qid && open my $f, '>', "$dir/failed.$i.$n") { print $f $all; close $f }
            }
            POSIX::_exit(0);        # never the test's END blocks
        }
        push @loaders, $pid;
    }
}

# The loops finish the mail in hand and end.
sub stop_load {
    return unless @loaders;
    open my $f, '>', $stop_file or die "$stop_file: $!";
    close $f;
    waitpid($_, 0) for @loaders;
    @loaders = ();
}

# Every mail so far: [queue ids], [failures].
sub mails {
    my (@q, @f);
    for my $file (glob "$dir/load.[0-9]*") {
        for (split /\n/, slurp($file)) {
            if (/^queued (\w+)$/) { push @q, $1 } else { push @f, $_ }
        }
    }
    return (\@q, \@f);
}
sub queued { my ($q) = mails(); return scalar @$q }

sub rows_of {
    my ($sender) = @_;
    return $h->selectrow_array('SELECT COUNT(*) FROM messages WHERE sender = ?', undef, $sender);
}

start_load(2);
ok(wait_until(sub { queued() >= 6 }, 60), 'mail flows through Postfix (6 queued)');
ok(wait_until(sub { rows_of($user) >= 6 }, 30), 'and is written to the database');

# --- an upgrade or a downgrade with the database away ------------------------
my $spooled = 'spooled@example.org';
my $big_from = ('f' x 4000) . '@example.org';
my $maillog_at = 0;
my $round = 0;

sub state_file {
    my ($suffix) = @_;
    my @f = glob("/var/lib/rateguard/rateguard-*$suffix");
    return $f[0] // '';
}

# Installs $deb (apt-get ARGS) while the gate is cut, then opens it again.
sub install_during_outage {
    my ($what, $args, $version) = @_;
    $round++;
    my $old = daemon_pid();
    my $log_at = -s $log;
    TcpGate::cut($gate);
    my $before = queued();
    ok(wait_until(sub { queued() >= $before + 3 }, 60), "$what: the database away, mail still flows (3 more queued)");

    # Big records straight to the policy port: the queue past half, the
    # writer spills its oldest records to the spool.
    my $s = policy_connect({ port => $port });
    my @replies = map { policy_request($s, sasl_username => $spooled, sender => $big_from, recipient_count => 1,
                                       queue_id => sprintf('SPOOL%d%04d', $round, $_)) } 1 .. 200;
    close $s;
    my %replies;
    $replies{$_ =~ s/\n/ /gr}++ for @replies;
    is_deeply(\%replies, { DUNNO_REPLY =~ s/\n/ /gr => 200 }, "$what: 200 big records answered DUNNO from the cache")
        or diag explain \%replies;
    ok(wait_until(sub { -s state_file('.spool') }, 30), "$what: the writer moved records to the spool")
        or diag substr(slurp($log), $log_at);

    my $during = queued();
    ($rc, $out) = apt($args);
    is($rc, 0, "$what: apt-get $args: exit 0") or diag $out;
    my $after = queued();
    diag("$what: $after mails queued so far, " . ($after - $during) . ' while apt-get ran');
    like(pkg_status(), qr/^install ok installed \Q$version\E$/, "$what: $version installed");
    my $new = daemon_pid();
    ok($new && $new ne $old, "$what: the daemon was restarted (pid $old -> $new)");

    my $text = substr(slurp($log), $log_at);
    diag("$what: the daemon's log:");
    diag("  $_") for grep { /stopping|stopped|started|listening on|reopened|recovery:/ } split /\n/, $text;
    my ($left) = $text =~ /stopped with records not written to the database \((\d+) queued, more spooled\); the next start writes them/;
    ok($left, "$what: the old daemon stopped with $left record(s) queued, more spooled") or diag $text;
    my ($reopened) = $text =~ /write-back queue \S+ reopened with (\d+) record\(s\) in it/;
    is($reopened, $left, "$what: the new daemon reopened the queue with exactly those records");
    my ($counted) = $text =~ /recovery: (\d+) record\(s\) counted by the previous run are not in the database yet/;
    ok($counted && $counted > $left, "$what: and counted them and the spooled ones into its cache ($counted)");
    is(rows_of($spooled), 200 * ($round - 1), "$what: the outage's records are not in the database yet");

    $gate = TcpGate::open_gate($gate_port, db_port());
    ok(wait_until(sub { rows_of($spooled) == 200 * $round }, 60),
       "$what: the gate open, the new daemon writes them: " . 200 * $round . " rows of the spooled sender");
    ok(wait_until(sub { !-s state_file('.spool') }, 30), "$what: the spool is empty");
    my $pf_log = substr(PrivatePostfix::log_text($pf), $maillog_at);
    $maillog_at += length $pf_log;
    my @policy = grep { /policy|problem talking to server/ } split /\n/, $pf_log;
    diag("$what: Postfix logged " . scalar(@policy) . ' line(s) about the policy service:');
    diag("  $_") for map { s/^.*?(warning:)/$1/r } @policy;
    ok(wait_until(sub { queued() >= $after + 3 }, 60), "$what: mail flows on (3 more queued)");
}

install_during_outage("upgrade $v1 -> $v2", "install $deb2", $v2);
install_during_outage("downgrade $v2 -> $v1", "install --allow-downgrades $deb1", $v1);

# --- every mail once ---------------------------------------------------------
stop_load();
my ($q, $failed) = mails();
diag(scalar(@$q) . ' mails queued by Postfix in all');
is_deeply($failed, [], 'every mail got 250 queued: none refused, none failed')
    or diag map { slurp($_) } glob "$dir/failed.*";
ok(wait_until(sub { rows_of($user) >= @$q }, 60), 'the database caught up');
my $rows = $h->selectall_arrayref('SELECT msgid, COUNT(*) FROM messages WHERE sender = ? GROUP BY msgid', undef, $user);
my %count = map { $_->[0] => $_->[1] } @$rows;
is_deeply([grep { ($count{$_} // 0) != 1 } @$q], [], "each of Postfix's queue ids is in messages exactly once");
is(rows_of($user), scalar @$q, 'and the sender has no other row: ' . scalar(@$q) . ' rows');
my ($total) = $h->selectrow_array('SELECT msg_total FROM ratelimits WHERE sender = ?', undef, $user);
is($total, scalar @$q, "msg_total $total: the number of mails");
is($h->selectrow_array('SELECT COUNT(DISTINCT msgid) FROM messages WHERE sender = ?', undef, $spooled), 400,
   'the spooled sender: 400 distinct rows');
is($h->selectrow_array('SELECT msg_total FROM ratelimits WHERE sender = ?', undef, $spooled), 400, 'and msg_total 400');

# --- a queue of another format: refused, left as it is ----------------------
# The daemon stopped with a record queued (the gate cut), then the queue's
# version field (its second 32-bit word) set to 2, as a queue of a later
# format would be: the package's preinst refuses the installation with the
# reason, before anything is replaced; the daemon itself refuses to start
# with the reason; the file keeps its bytes.
TcpGate::cut($gate);
is(ask_one('refused@example.org'), DUNNO_REPLY, 'a record queued while the database is away');
my $log_at = -s $log;
($rc, $out) = run('service rateguard stop');
is($rc, 0, 'service rateguard stop') or diag $out;
like(substr(slurp($log), $log_at), qr/stopped with records not written to the database \(1 queued\)/, 'it left 1 record queued');
my $queue = state_file('.queue');
ok(-f $queue, "the queue file $queue");
{
    open my $qf, '+<:raw', $queue or die "$queue: $!";
    sysseek($qf, 4, 0);
    syswrite($qf, pack('V', 2)) == 4 or die "$queue: $!";
    close $qf;
}
my $bytes = slurp($queue);
($rc, $out) = apt("install $deb2");
isnt($rc, 0, "apt-get install rateguard $v2 over a queue of version 2: refused (exit $rc)");
like($out, qr/rateguard: \Q$queue\E is a write-back queue of format version 2;\r?\nthe daemon of this package reads version 1 only, and would not start\.\r?\nInstallation refused/,
     'the preinst says why') or diag $out;
like(pkg_status(), qr/^install ok installed \Q$v1\E$/, "$v1 stays installed");
$log_at = -s $log;
($rc, $out) = run('service rateguard start');
isnt($rc, 0, "service rateguard start with that queue: fails (exit $rc)");
is(daemon_pid(), '', 'not running');
like(substr(slurp($log), $log_at),
     qr/cannot use the write-back queue: \Q$queue\E: not a rateguard queue of version 1 \(magic 52475751, version 2\)\. The file is left as it is/,
     'its log says why') or diag substr(slurp($log), $log_at), $out;
ok(slurp($queue) eq $bytes, 'and the queue file is left as it was');

sub ask_one {
    my ($sender) = @_;
    my $s = policy_connect({ port => $port });
    my $reply = policy_request($s, sasl_username => $sender, recipient_count => 1);
    close $s;
    return $reply;
}

# --- leave the machine as it was ---------------------------------------------
PrivatePostfix::stop($pf);
$h->disconnect;
($rc, $out) = apt('purge rateguard');
is($rc, 0, 'apt-get purge rateguard: exit 0') or diag $out;
is(pkg_status(), '', 'purged');
my @left = grep { (slurp("/proc/$_/cmdline") // '') =~ m{^/usr/sbin/rateguard\0} } map { m{/proc/(\d+)} } glob('/proc/[0-9]*');
is_deeply(\@left, [], 'no rateguard process is left');
diag(sprintf('t/90 took %.0f s', time - $t_start));
done_testing();
