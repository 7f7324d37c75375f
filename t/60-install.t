#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 60-install.t - deployment: `make install` with DESTDIR puts every file in
# place, where Debian and Postfix keep them (configuration, SysV script and
# logrotate under /etc, units in /lib/systemd/system, whatever PREFIX is),
# never overwrites a configuration, and `make uninstall` removes them; the
# binary's default -c follows SYSCONFDIR (rebuilt when it changes);
# systemd accepts the units; the SysV script starts, reports and stops the
# daemon (which daemonizes); a unix socket for a chrooted smtpd gets its
# directory, owner and mode; the man pages list every setting and option.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use File::Path qw(rmtree);
use RG qw(write_config run_rateguard migrated_database wait_until slurp test_dir build_dir rateguard process_ended);

my $repo = "$FindBin::Bin/..";
my $dest = test_dir() . '/root';
my $build = build_dir();

sub make {
    my (@args) = @_;
    my $out = `make -s -C $repo BUILD=$build @args 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = make('install', "DESTDIR=$dest");
is($rc, 0, 'make install DESTDIR: exit 0') or diag $out;
my %want = (
    'usr/local/sbin/rateguard' => 0755, 'etc/rateguard/rateguard.conf' => 0640,
    'usr/local/share/man/man8/rateguard.8' => 0644, 'usr/local/share/man/man5/rateguard.conf.5' => 0644,
    'lib/systemd/system/rateguard.service' => 0644,
    'lib/systemd/system/rateguard-cleanup.service' => 0644,
    'lib/systemd/system/rateguard-cleanup.timer' => 0644,
    'etc/init.d/rateguard' => 0755, 'etc/logrotate.d/rateguard' => 0644, 'etc/cron.d/rateguard' => 0644,
    map { ('usr/local/share/rateguard/sql/' . (split m{/})[-1] => 0644) } glob("$repo/sql/[0-9]*.sql"),
);
# The migrations to install are the ones the binary applies (oracle: the
# rateguard_schema rows of a database it migrated), none missing, none extra.
{
    my $h = RG::dbh(migrated_database('installsql'));
    is_deeply([sort grep { m{^usr/local/share/rateguard/sql/} } keys %want],
              [map { "usr/local/share/rateguard/sql/$_.sql" } @{ $h->selectcol_arrayref('SELECT name FROM rateguard_schema ORDER BY version') }],
              'the SQL files to install are exactly the migrations `rateguard migrate` applies');
    $h->disconnect;
}
for my $f (sort keys %want) {
    my @st = stat "$dest/$f";
    ok(@st && ($st[2] & 07777) == $want{$f}, sprintf('%s installed, mode %04o', $f, $want{$f}));
}
# Every file installed, and nothing else (no usr/local/etc, no usr/local/lib).
sub files_under {
    my ($root) = @_;
    return [map { substr($_, length($root) + 1) } split /\n/, `find $root -type f | LC_ALL=C sort`];
}
is_deeply(files_under($dest), [sort keys %want], 'make install puts these files and no other');
like(slurp("$dest/lib/systemd/system/rateguard.service"),
     qr{^ExecStart=/usr/local/sbin/rateguard -f -c /etc/rateguard/rateguard.conf run$}m,
     'the unit runs the installed binary with the installed configuration');
like(slurp("$dest/lib/systemd/system/rateguard-cleanup.service"),
     qr{^ExecStart=/usr/local/sbin/rateguard -c /etc/rateguard/rateguard.conf cleanup$}m, 'the cleanup unit too');
like(slurp("$dest/lib/systemd/system/rateguard.service"), qr{^ExecReload=/bin/kill -HUP \$MAINPID$}m,
     'ExecReload sends HUP');
like(slurp("$dest/etc/init.d/rateguard"),
     qr{^DAEMON=\$\{DAEMON:-/usr/local/sbin/rateguard\}\nCONF=\$\{CONF:-/etc/rateguard/rateguard.conf\}$}m,
     'the SysV script names the installed binary and configuration');
like(slurp("$dest/usr/local/share/man/man8/rateguard.8"), qr{^/etc/rateguard/rateguard.conf$}m,
     'rateguard(8) names the installed configuration');
like(scalar `$dest/usr/local/sbin/rateguard --help`, qr{configuration file \(default /etc/rateguard/rateguard.conf\)},
     'the installed binary\'s default -c is /etc/rateguard/rateguard.conf');

open my $fh, '>>', "$dest/etc/rateguard/rateguard.conf" or die;
print $fh "# edited by the administrator\n";
close $fh;
make('install', "DESTDIR=$dest");
like(slurp("$dest/etc/rateguard/rateguard.conf"), qr/edited by the administrator/,
     'a second install keeps the administrator\'s configuration');

($rc, $out) = make('install', "DESTDIR=$dest/usr-prefix", 'PREFIX=/usr');
is_deeply(files_under("$dest/usr-prefix"), [sort map { s{^usr/local/}{usr/}r } keys %want],
          'PREFIX=/usr: binary, SQL and man pages under /usr, the rest as with /usr/local');
rmtree("$dest/usr-prefix");

# Another SYSCONFDIR, built in a folder of its own and installed for real
# (no DESTDIR): the binary finds its configuration without -c, and follows
# SYSCONFDIR when it changes.
{
    my $t = test_dir() . '/sysconf';
    my $b = "$t/build";
    my $etc = "$t/etc";
    my $mk = "make -s -C $repo BUILD=$b";
    $out = `$mk SYSCONFDIR=$etc PREFIX=$t/usr UNITDIR=$t/units install 2>&1`;
    is($? >> 8, 0, "make install SYSCONFDIR=$etc: exit 0") or diag $out;
    my $bin = "$t/usr/sbin/rateguard";
    $out = `$bin -t 2>&1`;
    is($? >> 8, 0, 'rateguard -t without -c: exit 0') or diag $out;
    is($out, "$etc/rateguard/rateguard.conf: configuration OK\n", '... and it checked the installed configuration');
    is(scalar `$bin --get-config config_file`, "$etc/rateguard/rateguard.conf\n",
       '--get-config config_file without -c names the installed configuration');
    like(slurp("$etc/init.d/rateguard"), qr{^CONF=\$\{CONF:-\Q$etc\E/rateguard/rateguard.conf\}$}m,
         'the SysV script (in SYSCONFDIR/init.d) names it');
    like(slurp("$t/units/rateguard.service"), qr{ -c \Q$etc\E/rateguard/rateguard.conf run$}m, 'so does the unit');
    ok(-e "$etc/logrotate.d/rateguard", 'logrotate in SYSCONFDIR/logrotate.d');
    like(slurp("$t/usr/share/man/man5/rateguard.conf.5"), qr{^\Q$etc\E/rateguard/rateguard.conf$}m,
         'rateguard.conf(5) names it');

    my $mtime = (stat "$b/obj/main.o")[9];
    sleep 1.1;    # a rebuild would give main.o a later second
    $out = `$mk SYSCONFDIR=$etc $b/rateguard 2>&1`;
    is((stat "$b/obj/main.o")[9], $mtime, 'the same SYSCONFDIR again: main.o not rebuilt') or diag $out;
    $out = `$mk SYSCONFDIR=/opt/x $b/rateguard 2>&1`;
    like(scalar `$b/rateguard --help`, qr{\(default /opt/x/rateguard/rateguard.conf\)},
         'SYSCONFDIR=/opt/x: main.o rebuilt, default -c /opt/x/rateguard/rateguard.conf') or diag $out;
    $out = `$mk $b/rateguard 2>&1`;
    like(scalar `$b/rateguard --help`, qr{\(default /etc/rateguard/rateguard.conf\)},
         'no SYSCONFDIR: default -c /etc/rateguard/rateguard.conf') or diag $out;
}

SKIP: {
    skip 'systemd-analyze is not installed', 1 unless -x '/usr/bin/systemd-analyze';
    # Verified with the unit pointing at the built binary (verify checks that ExecStart exists).
    my $v = test_dir() . '/verify';
    make('install', "DESTDIR=$v", "SBINDIR=$build");
    my @units = map { "$v/lib/systemd/system/$_" } qw(rateguard.service rateguard-cleanup.service rateguard-cleanup.timer);
    my $msg = `systemd-analyze verify --man=no @units 2>&1`;
    is(($? >> 8) . " $msg", '0 ', 'systemd-analyze verify accepts the units without a warning: exit 0, no output');
}

# The unit's exposure score as systemd rates it (docs/security.md, *Hardening*).
SKIP: {
    skip 'systemd-analyze is not installed', 2 unless -x '/usr/bin/systemd-analyze';
    my $unit = test_dir() . '/verify/lib/systemd/system/rateguard.service';
    my $report = `systemd-analyze security --offline=yes $unit 2>&1`;
    my ($score) = $report =~ /Overall exposure level for rateguard\.service: (\d+\.\d+)/;
    ok(defined $score, 'systemd-analyze security rates the unit') or diag $report;
    ok(defined $score && $score <= 2.0, "exposure score @{[$score // '?']} <= 2.0") or diag $report;
}

my $init = "$dest/etc/init.d/rateguard";
system('sh', '-n', $init);
is($? >> 8, 0, 'the SysV script passes sh -n');
like(slurp($init), qr/^### BEGIN INIT INFO\n.*^# Provides:\s+rateguard\n.*^### END INIT INFO\n/ms, 'LSB header');

# The SysV script drives the real daemon (daemonized, with its pidfile).
my $db = migrated_database('install');
my $c = write_config(database => $db, name => 'sysv');
local $ENV{DAEMON} = rateguard();
local $ENV{CONF} = $c->{path};
$out = `sh $init start 2>&1`;
is($? >> 8, 0, 'init script start: exit 0') or diag $out;
my $pid = slurp($c->{pidfile});
chomp $pid;
ok($pid && kill(0, $pid), "the daemon runs in the background (pid $pid)");
$out = `sh $init status 2>&1`;
is($? >> 8, 0, 'init script status: exit 0');
like($out, qr/^rateguard \S+, pid $pid, up \d+ s$/m, 'status runs rateguard status');
$out = `sh $init stop 2>&1`;
is($? >> 8, 0, 'init script stop: exit 0') or diag $out;
ok(process_ended($pid), 'the daemon is gone (or a zombie PID 1 has not reaped yet)');
$out = `sh $init status 2>&1`;
is($? >> 8, 3, 'status after stop: exit 3 (LSB: not running)');

# A unix socket for a chrooted smtpd: directory created with the daemon's owner.
SKIP: {
    skip 'ownership needs root', 4 if $> != 0;
    my $spool = test_dir() . '/spool/postfix/rateguard';
    my $cu = write_config(database => $db, name => 'unix', listen => qq{"127.0.0.1:@{[RG::free_port()]}", "unix:$spool/policy"});
    ($cu->{port}) = slurp($cu->{path}) =~ /127\.0\.0\.1:(\d+)/;
    my $upid = RG::start_daemon($cu);
    my @dst = stat $spool;
    is($dst[4], scalar getpwnam('nobody'), 'the socket directory belongs to the daemon\'s user');
    my @sst = stat "$spool/policy";
    is($sst[4], scalar getpwnam('nobody'), 'the socket belongs to the daemon\'s user');
    is($sst[2] & 07777, 0660, 'socket mode 0660');
    is(RG::stop_daemon($upid), 0, 'stopped');
}

($rc, $out) = make('uninstall', "DESTDIR=$dest");
is($rc, 0, 'make uninstall: exit 0') or diag $out;
is_deeply(files_under($dest), ['etc/rateguard/rateguard.conf'], 'uninstall removes every file but the configuration');

# The Debian package carries the daemon's version (debian/changelog's first entry).
my ($hversion) = slurp("$repo/include/rateguard.h") =~ /RATEGUARD_VERSION "([^"]+)"/;
my ($dversion) = slurp("$repo/debian/changelog") =~ /\Arateguard \(([^)]+)\)/;
is($dversion, $hversion, 'debian/changelog is at RATEGUARD_VERSION');

# The man page is in sync with --help (the settings: t/75-settings-documented.t).
my (undef, $help) = run_rateguard('--help');
my $man8 = slurp("$repo/src/man/rateguard.8");
my @words = ($help =~ /(--[a-z-]+)/g, $help =~ /^  ([a-z-]+)\s{2,}/mg);
(my $man8_text = $man8) =~ s/\\-/-/g;
is_deeply([grep { index($man8_text, $_) < 0 } @words], [], 'rateguard(8) documents every option and command of --help');
done_testing();
