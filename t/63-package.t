#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 63-package.t - the Debian package, as an administrator meets it (root
# only): `make deb` builds it, lintian finds no error and only the warning
# docs/install.md explains; `apt-get install ./rateguard_*.deb` installs it without
# a database and without starting anything; `rateguard -t`; the configuration
# edited for the suite's private MariaDB, `rateguard migrate`, the SysV
# script starts it (systemd is not PID 1 here) and it answers; an upgrade to
# a rebuilt package keeps the edited configuration and restarts the running
# daemon, while an upgrade of a stopped daemon leaves it stopped; remove
# stops it and keeps the configuration; the dedicated account of
# README.Debian, made as it says, runs it; purge removes configuration, state
# and logs. The machine is left as it was: no package, no process.
#
# Every apt-get runs in a private mount namespace where service actions
# from maintainer scripts are allowed as on a SysV mail server: without
# systemd as PID 1, invoke-rc.d cannot read a runlevel and refuses every
# start, so /sbin/runlevel says "N 2" there; and a /usr/sbin/policy-rc.d
# that forbids them all (Docker's "exit 101") is replaced by one that
# allows them. So the package's own choices (not started at installation,
# try-restart on upgrade, stop on removal) are what is tested. Nothing
# outside that namespace sees either.
#
# RG_SKIP_PACKAGE=1 skips this test (it builds the package twice and
# installs it: about a minute).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use RG qw(db_port debian_package fresh_database wait_until slurp test_dir build_dir policy_connect policy_request dbh free_port
          children_of ask);
use Package qw(apt run pkg_status daemon_pid);

Package::preflight('the package test', qw(dpkg-buildpackage dh lintian apt-get unshare));

my $repo = "$FindBin::Bin/..";
my $dir = test_dir();
my $conf = '/etc/rateguard/rateguard.conf';
my ($version) = slurp("$repo/include/rateguard.h") =~ /RATEGUARD_VERSION "([^"]+)"/;

# The dedicated account's section makes a user rateguard, unless one exists.
my $account_existed = defined getpwnam('rateguard');

# Whatever happens, no package, no daemon and no account of ours are left behind.
END {
    local $?;    # the exit status of the test, not of the commands below
    Package::cleanup();
    if (defined $account_existed && !$account_existed) {     # the test got that far, and made it
        system("dpkg-statoverride --remove /etc/rateguard/rateguard.conf >/dev/null 2>&1");
        system("userdel rateguard >/dev/null 2>&1; groupdel rateguard >/dev/null 2>&1");
    }
}

# --- build -------------------------------------------------------------
my ($deb, $tree) = eval { debian_package() };
ok($deb, 'make deb') or BAIL_OUT($@);
ok(-f $deb && $deb =~ m{/deb/rateguard_\Q$version\E_amd64\.deb$},
   "make deb leaves rateguard_${version}_amd64.deb (the version of include/rateguard.h) in BUILD/deb/");
my ($rc, $out);

($rc, $out) = run("lintian $tree/../rateguard_${version}_amd64.changes");
my @tags = sort grep { /^[EW]: / } split /\n/, $out;
is_deeply(\@tags, ['W: rateguard: non-standard-file-perm 0640 != 0644 [etc/rateguard/rateguard.conf]'],
          'lintian: no error, only the warning docs/install.md explains') or diag $out;

# --- install -----------------------------------------------------------
($rc, $out) = apt("install $deb");
is($rc, 0, 'apt-get install ./rateguard_*.deb without a database: exit 0') or diag $out;
like(pkg_status(), qr/^install ok installed \Q$version\E$/, "rateguard $version installed");
my @st = stat $conf;
is(sprintf('%04o %s:%s', $st[2] & 07777, scalar getpwuid($st[4]), scalar getgrgid($st[5])), '0640 root:postfix',
   'the configuration is 0640 root:postfix');
for my $d (qw(/var/lib/rateguard /var/log/rateguard)) {
    my @ds = stat $d;
    is(@ds ? scalar getpwuid($ds[4]) : '', 'postfix', "$d exists, owned by postfix");
}
ok(-f '/usr/share/rateguard/sql/001_ratelimits_and_messages.sql', 'the SQL migrations are in /usr/share/rateguard/sql');
ok(-f '/usr/share/man/man8/rateguard.8.gz' && -f '/usr/share/man/man5/rateguard.conf.5.gz', 'the man pages');
ok(-f '/lib/systemd/system/rateguard.service' && -f '/lib/systemd/system/rateguard-cleanup.timer', 'the units');
ok(-f '/etc/logrotate.d/rateguard' && -x '/etc/init.d/rateguard', 'the logrotate file and the SysV script');
ok(-l '/etc/rc2.d/K01rateguard' && !(() = glob('/etc/rc2.d/S*rateguard')), 'the SysV script is registered, disabled');
is(daemon_pid(), '', 'nothing started at installation');

SKIP: {
    skip 'systemd-analyze is not installed', 1 unless -x '/usr/bin/systemd-analyze';
    my $report = `systemd-analyze security --offline=yes /lib/systemd/system/rateguard.service 2>&1`;
    my ($score) = $report =~ /Overall exposure level for rateguard\.service: (\d+\.\d+)/;
    ok(defined $score && $score <= 2.0, "installed unit: exposure @{[$score // '?']} <= 2.0") or diag $report;
}

($rc, $out) = run("rateguard -t");
is("$rc $out", "0 $conf: configuration OK\n", 'rateguard -t on the installed configuration');

# --- configure, migrate, start, answer ---------------------------------
# The database over TCP: where systemd runs, the script hands the start to
# the unit, whose ProtectHome and PrivateTmp would hide a socket under the
# build folder.
my $db = fresh_database('package');
my $port = free_port();
open my $fh, '>>', $conf or die "$conf: $!";
print $fh <<"CONF";
# edited by the administrator (t/63-package.t)
listen = { "127.0.0.1:$port" }
database {
    host = "127.0.0.1"
    port = @{[db_port()]}
    user = "$ENV{RG_DB_USER}"
    password = "$ENV{RG_DB_PASSWORD}"
    name = "$db"
}
log { syslog = false file = "/var/log/rateguard/rateguard.log" }
CONF
close $fh;
($rc, $out) = run('rateguard migrate');
is($rc, 0, 'rateguard migrate: exit 0') or diag $out;

($rc, $out) = run('update-rc.d rateguard enable');
is($rc, 0, 'update-rc.d rateguard enable') or diag $out;
($rc, $out) = run('/etc/init.d/rateguard start');
is($rc, 0, 'the SysV script starts it') or diag $out;
my $pid = daemon_pid();
ok($pid, "running (pid $pid)");

my $c = { port => $port };
is(ask($c, sasl_username => 'pkg@example.org'), "action=DUNNO\n\n", 'it answers a request');
my $h = dbh($db);
ok(wait_until(sub { $h->selectrow_array(q{SELECT msg_counter FROM ratelimits WHERE sender = 'pkg@example.org'}) }),
   'the request is written to the database');
ok(-s '/var/log/rateguard/rateguard.log', 'it logs to /var/log/rateguard/rateguard.log');

# --- upgrade -----------------------------------------------------------
# A rebuilt package: a newer changelog entry, and a changed default
# configuration, so dpkg has an edited conffile to keep.
my $new = "$version+test1";
my $deb2 = eval {
    Package::rebuild(tree => $tree, dir => "$dir/upgrade", version => $new, why => 'Rebuilt by t/63-package.t.',
                     edit => sub {
                         open my $fh, '>>', "$_[0]/rateguard.conf" or die;
                         print $fh "# new in $new\n";
                         close $fh;
                     });
};
ok($deb2 && -f $deb2, "rebuilt as $new") or diag $@;

($rc, $out) = apt("install $deb2");
is($rc, 0, "upgrade to $new: exit 0") or diag $out;
like(pkg_status(), qr/^install ok installed \Q$new\E$/, "$new installed");
like(slurp($conf), qr/^# edited by the administrator/m, 'the edited configuration is kept');
like(slurp("$conf.dpkg-dist"), qr/^# new in \Q$new\E$/m, 'the new default is beside it as .dpkg-dist');
my $pid2 = daemon_pid();
ok($pid2 && $pid2 != $pid, "the running daemon was restarted (pid $pid -> $pid2)");
is(ask($c, sasl_username => 'pkg@example.org'), "action=DUNNO\n\n", 'and answers');
ok(wait_until(sub { $h->selectrow_array(q{SELECT msg_counter FROM ratelimits WHERE sender = 'pkg@example.org'}) == 2 }),
   'its counters went on from the database (msg_counter 2)');

($rc, $out) = run('/etc/init.d/rateguard stop');
is($rc, 0, 'stopped with the SysV script') or diag $out;
($rc, $out) = apt("install --reinstall $deb2");
is($rc, 0, 'upgrade (reinstall) while stopped: exit 0') or diag $out;
is(daemon_pid(), '', 'a stopped daemon stays stopped');

# --- a dedicated account (README.Debian) -------------------------------
# The commands README.Debian gives, run as written, then its two settings:
# the daemon runs as rateguard, and Postfix's account cannot read the
# configuration any more.
SKIP: {
    skip 'a user rateguard exists already on this machine: not touching it', 9 if $account_existed;
    my $doc = slurp("$repo/debian/README.Debian");
    my @steps = ('useradd --system --user-group --home-dir /var/lib/rateguard --no-create-home --shell /usr/sbin/nologin rateguard',
                 'dpkg-statoverride --update --add root rateguard 0640 /etc/rateguard/rateguard.conf',
                 'chown -R rateguard:rateguard /var/lib/rateguard',
                 'chown -R rateguard:adm /var/log/rateguard',
                 'install -d -o rateguard -g rateguard -m 0755 /run/rateguard');
    my @missing = grep { index($doc, "    $_\n") < 0 } @steps, 'user = "rateguard"', 'group = "rateguard"';
    is_deeply(\@missing, [], 'README.Debian gives these commands and settings word for word');
    my @failed = grep { (run($_))[0] != 0 } @steps;
    is_deeply(\@failed, [], 'each runs with exit 0');
    open $fh, '>>', $conf or die;
    print $fh qq{user = "rateguard"\ngroup = "rateguard"\n};
    close $fh;
    ($rc, $out) = run('/etc/init.d/rateguard start');
    is($rc, 0, 'the SysV script starts it') or diag $out;
    my $apid = daemon_pid();
    my $uid = getpwnam('rateguard');
    my @ids = map { my ($u) = slurp("/proc/$_/status") =~ /^Uid:\s+(.*)$/m; $u } grep { $_ } $apid, children_of($apid || -1);
    ok(@ids >= 3 && !grep({ $_ ne "$uid\t$uid\t$uid\t$uid" } @ids),
       'every process runs as rateguard (real, effective, saved, fs)') or diag explain \@ids;
    @st = stat $conf;
    is(sprintf('%04o %s:%s', $st[2] & 07777, scalar getpwuid($st[4]), scalar getgrgid($st[5])), '0640 root:rateguard',
       'the configuration is 0640 root:rateguard');
    my $postfix_reads = `setpriv --reuid=postfix --regid=postfix --init-groups cat $conf 2>&1`;
    like($postfix_reads, qr/Permission denied/, 'Postfix\'s account cannot read it');
    is(ask($c, sasl_username => 'pkg@example.org'), "action=DUNNO\n\n", 'it answers');
    ok(wait_until(sub { $h->selectrow_array(q{SELECT msg_counter FROM ratelimits WHERE sender = 'pkg@example.org'}) == 3 }),
       'and writes to the database (msg_counter 3)');
    ($rc, $out) = run('/etc/init.d/rateguard stop');
    is($rc, 0, 'stopped with the SysV script') or diag $out;
}

# --- remove, purge -----------------------------------------------------
($rc, $out) = run('/etc/init.d/rateguard start');
my $pid3 = daemon_pid();
ok($pid3, 'started again') or diag $out;
($rc, $out) = apt("remove rateguard");
is($rc, 0, 'apt-get remove: exit 0') or diag $out;
like(pkg_status(), qr/^deinstall ok config-files /, 'removed, configuration files kept');
ok(Package::ended($pid3), 'removal stopped the daemon (gone, or a zombie its parent has not reaped yet)');
ok(!-e '/usr/sbin/rateguard', 'the binary is gone');
like(slurp($conf), qr/^# edited by the administrator/m, 'the configuration is kept');

($rc, $out) = apt("purge rateguard");
is($rc, 0, 'apt-get purge: exit 0') or diag $out;
is(pkg_status(), '', 'purged: dpkg knows no rateguard');
is_deeply([grep { -e } qw(/etc/rateguard /var/lib/rateguard /var/log/rateguard /run/rateguard /etc/init.d/rateguard
                          /etc/logrotate.d/rateguard /lib/systemd/system/rateguard.service)], [],
          'configuration, state, logs, units and scripts are gone');
is_deeply([glob('/etc/rc[0-6S].d/[SK][0-9][0-9]rateguard')], [], 'the rc links are gone');
my @left = grep { (slurp("/proc/$_/cmdline") // '') =~ m{^/usr/sbin/rateguard\0} } map { m{/proc/(\d+)} } glob('/proc/[0-9]*');
is_deeply(\@left, [], 'no rateguard process is left');
$h->disconnect;
done_testing();
