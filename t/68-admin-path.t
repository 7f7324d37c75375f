#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 68-admin-path.t - the administrator's path from the package (issue 26):
# the installation checklist of debian/README.Debian (the README's, word
# for word: t/69-docs.t), followed on a SysV host, its commands taken from
# the checklist's text itself rather than retyped. Root only.
#
#   - apt-get install ./rateguard_*.deb (as t/63-package.t: in a private
#     mount namespace where /sbin/runlevel says "N 2" and policy-rc.d allows
#     actions): /etc/cron.d/rateguard is installed, and so is
#     /var/spool/postfix/rateguard (postfix:postfix 0750);
#   - step 1: the checklist's SQL, run by the suite's MariaDB admin, with a
#     database and a user of this test instead of rateguard and a random
#     password instead of CHANGE-ME;
#   - step 2: the package's configuration already holds the checklist's
#     listen and log file (--get-config says exactly those values); the
#     password and the database's host, port, user and name are set, and a
#     free port replaces 10033 (everywhere: Postfix's lines too);
#   - step 3: `rateguard -t && rateguard migrate`; step 4 (SysV):
#     `update-rc.d rateguard enable && service rateguard start`, running;
#     the log file is postfix:adm 0640, as logrotate makes it;
#   - step 5: the checklist's postconf lines applied to a private Postfix
#     (t/lib/PrivatePostfix.pm) with a second, submission-like smtpd service,
#     then `postfix reload`; with quota 2 a sender's mails 1-2 get 250, the
#     3rd "450 4.7.1 ... Rate limit reached" at DATA; `rateguard blocked`
#     lists exactly that sender;
#   - rateguard stopped: mail still flows (250) thanks to
#     default_action=DUNNO, while the same line without it gives
#     "451 4.3.5 Server configuration problem": why the checklist's form
#     matters;
#   - the period reset under SysV: /etc/cron.d/rateguard runs at midnight as
#     root; its command, run as cron runs it (the file's SHELL and PATH, no
#     other environment) while systemd is not PID 1, resets the counters to
#     0 in the database, `blocked` lists nobody and mail gets 250 again; with
#     a fake /run/systemd/system visible (a private mount namespace) the
#     same command does nothing.
# The machine is left as it was: the package purged, no process, the test's
# database and MariaDB user dropped, the private Postfix stopped.
#
# RG_SKIP_PACKAGE=1 skips this test (it builds the package once per suite
# run, with t/63, and installs it).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use RG qw(db_port debian_package wait_until slurp test_dir free_port dbh);
use Package qw(apt run daemon_pid);

my $t_start = time;
Package::preflight('the administrator\'s path', qw(dpkg-buildpackage dh lintian apt-get unshare mariadb postfix
                                                   postconf saslpasswd2 swaks));
require PrivatePostfix;

my $repo = "$FindBin::Bin/..";
my $dir = test_dir();
my $conf = '/etc/rateguard/rateguard.conf';
my $log = '/var/log/rateguard/rateguard.log';
local $ENV{PATH} = "/usr/sbin:/usr/bin:/sbin:/bin:$ENV{PATH}";

# The checklist, and its numbered steps.
my ($checklist) = slurp("$repo/debian/README.Debian") =~ /^<!-- checklist -->\n(.*?)^<!-- \/checklist -->$/ms;
BAIL_OUT('debian/README.Debian has no checklist') unless $checklist;
my %step;
while ($checklist =~ /^(\d)\. (.*?)(?=^\d\. |\z)/msg) { $step{$1} = $2 }
# The commands of a step: its lines indented as code (7 spaces in the list).
sub code_lines {
    my ($n) = @_;
    return map { s/^\s+//r } grep { /^ {7}\S/ } split /\n/, $step{$n} // '';
}

# The test's own names for the checklist's database, user and password.
my $db = "rg_adminpath_$$";          # rg_%: the suite's user may read it too (t/mariadb-server)
my $db_user = "rg_admin_$$";
my $db_password = join '', map { ('a' .. 'z', 'A' .. 'Z', 0 .. 9)[rand 62] } 1 .. 24;

# The suite's MariaDB admin: root over the server's unix socket, without a
# password (t/mariadb-server installs it with
# --auth-root-authentication-method=normal). The suite's user ($RG_DB_USER)
# has ALL on rg\_%.* only, not CREATE USER: it could not run step 1.
my @admin = ('mariadb', '--no-defaults', '-S', $ENV{RG_DB_SOCKET}, '-uroot');

my $pf;                 # the private Postfix
my $spool_existed = -d '/var/spool/postfix/rateguard';

# Whatever happens: no daemon, no package, no database nor user of ours.
END {
    local $?;    # the exit status of the test, not of the commands below
    Package::cleanup();
    if ($ENV{RG_DB_SOCKET} && defined $db) {
        open my $m, '|-', "@admin 2>/dev/null" or return;
        print $m "DROP DATABASE IF EXISTS `$db`;\nDROP USER IF EXISTS '$db_user'\@'localhost';\n";
        close $m;
    }
}

sub mode_owner {
    my ($path) = @_;
    my @st = stat $path or return "$path: missing";
    return sprintf('%s:%s %04o', scalar getpwuid($st[4]), scalar getgrgid($st[5]), $st[2] & 07777);
}

my ($rc, $out);

# --- install -----------------------------------------------------------
my ($deb) = eval { debian_package() };
ok($deb, 'make deb') or BAIL_OUT($@);
($rc, $out) = apt("install $deb");
is($rc, 0, 'apt-get install ./rateguard_*.deb: exit 0') or BAIL_OUT($out);
ok(-f '/etc/cron.d/rateguard', '/etc/cron.d/rateguard is installed');
SKIP: {
    skip '/var/spool/postfix does not exist on this machine', 1 unless -d '/var/spool/postfix';
    skip '/var/spool/postfix/rateguard existed before the installation', 1 if $spool_existed;
    is(mode_owner('/var/spool/postfix/rateguard'), 'postfix:postfix 0750',
       'the postinst made /var/spool/postfix/rateguard, postfix:postfix 0750');
}

# --- step 1: the database ----------------------------------------------
my @sql = grep { /;$/ } code_lines(1);
is(scalar @sql, 3, 'step 1 of the checklist: three SQL statements') or diag $step{1};
# The checklist's database `rateguard` and user 'rateguard'@'localhost' become the test's.
my $sql = join "\n", map { s/'rateguard'\@/'$db_user'\@/gr =~ s/\brateguard(?=[;.])/$db/gr =~ s/CHANGE-ME/$db_password/gr } @sql;
unlike($sql, qr/rateguard|CHANGE-ME/, 'every name and the password substituted') or diag $sql;
{
    open my $m, '|-', "@admin >$dir/sql.out 2>&1" or die;
    print $m "$sql\n";
    close $m;
    is($? >> 8, 0, "the checklist's SQL, run by MariaDB's root: exit 0") or diag $sql, slurp("$dir/sql.out");
}
($rc, $out) = run("mariadb --no-defaults -h 127.0.0.1 -P " . db_port() . " -u $db_user -p$db_password -N -e 'SHOW GRANTS'");
# MariaDB lists the privileges in an order of its own: compared as a set.
my ($hash) = `@admin -N -e "SELECT PASSWORD('$db_password')"` =~ /^(\S+)$/m;
my @grants = map { s/^(GRANT )(.*?)( ON )/$1 . join(', ', sort split m{, }, $2) . $3/er } split /\n/, $out;
is_deeply(\@grants, ["GRANT USAGE ON *.* TO `$db_user`\@`localhost` IDENTIFIED BY PASSWORD '$hash'",
                     "GRANT ALTER, CREATE, DELETE, INDEX, INSERT, REFERENCES, SELECT, UPDATE ON `$db`.* TO `$db_user`\@`localhost`"],
          'the new user logs in over TCP (127.0.0.1 is localhost to MariaDB) with exactly the grants of step 1')
    or diag $out;

# --- step 2: three settings ----------------------------------------------
my @settings = code_lines(2);
is(scalar @settings, 3, 'step 2: three settings') or diag $step{2};
my ($listen_line) = grep { /^listen = / } @settings;
my ($log_line) = grep { /^log \{ file = / } @settings;
my ($db_line) = grep { /^database \{ password = "CHANGE-ME" \}$/ } @settings;
ok($listen_line && $log_line && $db_line, 'listen, log file and database password') or diag explain \@settings;
my ($listen_value) = ($listen_line // '') =~ /^listen = \{ "([^"]+)" \}$/;
my ($log_value) = ($log_line // '') =~ /^log \{ file = "([^"]+)" \}$/;
is($listen_value, '127.0.0.1:10033', 'the checklist\'s listener');
is($log_value, $log, 'the checklist\'s log file');
($rc, $out) = run('rateguard --get-config listen');
is("$rc $out", "0 $listen_value\n", 'the package\'s configuration already has the checklist\'s listen');
($rc, $out) = run('rateguard --get-config log.file');
is("$rc $out", "0 $log_value\n", 'and its log file');

# A free port instead of 10033, here and in Postfix's lines below: another
# test (or a real rateguard) may hold 10033.
my $port = free_port();
my $text = slurp($conf);
ok($text =~ s/^\Q$listen_line\E$/listen = { "127.0.0.1:$port" }/m, "listen: 127.0.0.1:$port instead of 10033");
# The password of the checklist's line, and the database's settings that
# differ from the defaults: over TCP (as t/63: where systemd runs the unit
# would hide a socket under the build folder), the test's user and name.
# A quota of 2 messages, so the third is refused.
my $db_settings = $db_line =~ s/CHANGE-ME/$db_password/r
    =~ s/ \}$/ host = "127.0.0.1" port = @{[db_port()]} user = "$db_user" name = "$db" }/r;
$text .= "# edited by the administrator (t/68-admin-path.t)\n$db_settings\nquota { default = 2 }\n";
open my $fh, '>', $conf or die "$conf: $!";
print $fh $text;
close $fh;
is(mode_owner($conf), 'root:postfix 0640', 'the configuration is still root:postfix 0640');
($rc, $out) = run('rateguard --get-config listen');
is("$rc $out", "0 127.0.0.1:$port\n", 'listen now on the free port');
($rc, $out) = run('rateguard --get-config database.password');
is("$rc $out", "0 $db_password\n", 'the password set');

# --- step 3: check and schema ------------------------------------------
my ($check) = code_lines(3);
is($check, 'rateguard -t && rateguard migrate', 'step 3');
($rc, $out) = run($check);
is($rc, 0, "$check: exit 0") or diag $out;
like($out, qr{^\Q$conf\E: configuration OK$}m, 'the configuration is OK');
my $h = dbh($db);
ok(scalar $h->selectrow_array(q{SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'ratelimits'}, undef, $db),
   'the schema is in the test\'s database');

# --- step 4: enable and start (SysV) -----------------------------------
ok(!-d '/run/systemd/system', 'systemd is not PID 1 here (no /run/systemd/system): a SysV host');
my ($sysv) = map { /^SysV:\s+(.*)$/ ? $1 : () } code_lines(4);
is($sysv, 'update-rc.d rateguard enable && service rateguard start', 'step 4 for SysV');
($rc, $out) = run($sysv);
is($rc, 0, "$sysv: exit 0 (service(8) runs /etc/init.d/rateguard)") or diag $out;
ok(-l '/etc/rc2.d/S01rateguard' || glob('/etc/rc2.d/S[0-9][0-9]rateguard'), 'enabled in runlevel 2');
my $pid = daemon_pid();
ok($pid, "running (pid $pid)");
($rc, $out) = run('service rateguard status');
is($rc, 0, 'service rateguard status: exit 0') or diag $out;

# The log file, as the daemon makes it and as logrotate re-creates it
# (create 0640 postfix adm), in its directory postfix:adm 2750 (setgid:
# `rateguard migrate`, run as postfix before the start, may be the one that
# makes the file, and postfix cannot give a file to adm itself).
ok(wait_until(sub { -e $log }), "$log exists");
is(mode_owner('/var/log/rateguard'), 'postfix:adm 2750', 'its directory: postfix:adm 2750');
is(mode_owner($log), 'postfix:adm 0640', 'the log file: postfix:adm 0640, as logrotate\'s create');

# --- step 5: Postfix ---------------------------------------------------
# A private Postfix, and in its master.cf a second smtpd service on its own
# loopback port standing for submission: postconf -P names it
# 127.0.0.1:PORT/inet.
my $smtp_port = free_port();
my $sub_port = free_port();
my $pdir = "$dir/postfix";
$pf = PrivatePostfix::start(dir => $pdir, port => $smtp_port, users => { alice => 'alice-secret' });
my $cdir = "$pdir/conf";
my $submission = "127.0.0.1:$sub_port/inet";
($rc, $out) = run("postconf -c $cdir -M -e '$submission=127.0.0.1:$sub_port inet n - n - - smtpd'");
is($rc, 0, "a submission-like service $submission in master.cf") or diag $out;
($rc, $out) = run("postconf -c $cdir -M $submission");
is(join(' ', split ' ', $out), "127.0.0.1:$sub_port inet n - n - - smtpd", 'postconf -M lists it');

# The checklist's lines, for this Postfix (-c), with the free port instead
# of 10033, and -P for the one service this master.cf has (the checklist:
# "give the -P line only for them").
my @postfix_lines = grep { /^(postconf|postfix) / } code_lines(5);
is(scalar @postfix_lines, 4, 'step 5: three postconf lines and postfix reload') or diag $step{5};
my $p_arg = qr{'submission/inet/(smtpd_data_restrictions=[^']*)'};
my ($p_setting) = join('', @postfix_lines) =~ $p_arg;
ok($p_setting, 'the -P line sets submission/inet\'s smtpd_data_restrictions');
my @pf_cmds = map {
    s/\b10033\b/$port/gr
    =~ s/^postconf /postconf -c $cdir /r
    =~ s/^postfix reload$/postfix -c $cdir reload/r
    =~ s{^(postconf -c \S+ -P ).*$}{$1'$submission/$p_setting'}r
} @postfix_lines;
for my $cmd (@pf_cmds) {
    ($rc, $out) = run($cmd);
    is($rc, 0, "$cmd: exit 0") or diag $out;
}
my $rg_list = "reject_unauth_pipelining, check_policy_service { inet:127.0.0.1:$port, default_action=DUNNO }, permit";
($rc, $out) = run("postconf -c $cdir -h rateguard_data_restrictions");
is($out, "$rg_list\n", 'main.cf: rateguard_data_restrictions');
($rc, $out) = run("postconf -c $cdir -n smtpd_data_restrictions");
is($out, "smtpd_data_restrictions = \$rateguard_data_restrictions\n", 'main.cf: smtpd_data_restrictions');
($rc, $out) = run("postconf -c $cdir -P");
is($out, "$submission/smtpd_data_restrictions = \$rateguard_data_restrictions\n",
   'postconf -P: the submission-like service\'s smtpd_data_restrictions is the rateguard list');

# --- mail: 250, 250, then 450 at DATA ----------------------------------
my $user = 'alice@rg-test.localdomain';
# swaks through the authenticated service: the reply to DATA, the final
# reply when queued. Step 6's line, but to the submission-like port and
# without --tls (the private Postfix offers no TLS unless given a
# certificate; SASL PLAIN works without it there).
sub swaks {
    my $pid = open(my $sw, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec('swaks', '--server', "127.0.0.1:$sub_port", '--from', $user, '--to', 'bob@rg-test.localdomain',
             '--auth', 'PLAIN', '--auth-user', $user, '--auth-password', 'alice-secret', '--timeout', '30')
            or die "exec swaks: $!";
    }
    my $all = do { local $/; <$sw> } // '';
    close $sw;
    my ($data) = $all =~ /^ -> DATA\r?\n<[-*~]*\s*(\d{3}[^\r\n]*)/m;
    my ($final) = $all =~ /^<[-~]*\s*(250 2\.0\.0 Ok: queued as \S+)/m;
    return { out => $all, data => $data // '', final => $final // '' };
}
my $QUEUED = qr/^250 2\.0\.0 Ok: queued as \w+$/;
my $LIMIT = '450 4.7.1 <DATA>: Data command rejected: Rate limit reached, retry later.';
for my $i (1, 2) {
    my $m = swaks();
    like($m->{final}, $QUEUED, "message $i: 250, queued") or diag $m->{out};
}
my $third = swaks();
is($third->{data}, $LIMIT, 'message 3: 450 4.7.1 Rate limit reached at DATA');
is($third->{final}, '', 'message 3 is not queued');

sub counters {
    return join ' ', $h->selectrow_array('SELECT quota, msg_counter, rcpt_counter FROM ratelimits WHERE sender = ?', undef, $user);
}
ok(wait_until(sub { counters() eq '2 3 3' }), 'the database: quota 2, msg_counter 3, rcpt_counter 3 (the refused one counts)')
    or diag counters();
($rc, $out) = run("rateguard show $user");
is($rc, 0, 'step 6: rateguard show SENDER: exit 0') or diag $out;

sub blocked {
    my ($r, $o) = run('rateguard --json blocked');
    my $doc = eval { decode_json($o) } // { out => $o };
    return { rc => $r, senders => $doc->{senders},
             blocked => [map { "$_->{sender} $_->{reason}" } @{ $doc->{blocked} // [] }] };
}
is_deeply(blocked(), { rc => 0, senders => 1, blocked => ["$user quota"] },
          'rateguard --json blocked: exactly that sender, for its quota');

# --- rateguard down: default_action=DUNNO keeps mail flowing -----------
($rc, $out) = run('service rateguard stop');
is($rc, 0, 'service rateguard stop: exit 0') or diag $out;
is(daemon_pid(), '', 'not running');
my $down = swaks();
like($down->{final}, $QUEUED, 'rateguard down: the message is accepted (250, queued): default_action=DUNNO')
    or diag $down->{out};
unlike($down->{out}, qr/451 4\.3\.5/, 'no 451 4.3.5 Server configuration problem');
# The same line without default_action (and nothing else changed):
my $no_default = $rg_list =~ s/, default_action=DUNNO//r;
($rc, $out) = run("postconf -c $cdir -e 'rateguard_data_restrictions = $no_default' && postfix -c $cdir reload");
is($rc, 0, "without default_action: rateguard_data_restrictions = $no_default") or diag $out;
my $bad = swaks();
is($bad->{data}, '451 4.3.5 <DATA>: Data command rejected: Server configuration problem',
   'then the message gets 451 4.3.5 Server configuration problem at DATA') or diag $bad->{out};
is($bad->{final}, '', 'and is not queued');
($rc, $out) = run($pf_cmds[0] . " && postfix -c $cdir reload");
is($rc, 0, 'the checklist\'s line back') or diag $out;
($rc, $out) = run("postconf -c $cdir -h rateguard_data_restrictions");
is($out, "$rg_list\n", 'rateguard_data_restrictions is the checklist\'s again');

# Started again: the sender is still blocked (the counters are in the database).
($rc, $out) = run('service rateguard start');
is($rc, 0, 'service rateguard start: exit 0') or diag $out;
ok(daemon_pid(), 'running');
is(counters(), '2 3 3', 'the counters unchanged: the message accepted while it was down is not counted');
my $again = swaks();
is($again->{data}, $LIMIT, 'the sender is refused again');
ok(wait_until(sub { counters() eq '2 4 4' }), 'counted: 4 4') or diag counters();
is_deeply(blocked(), { rc => 0, senders => 1, blocked => ["$user quota"] }, 'blocked lists it');

# --- the period reset under SysV: /etc/cron.d/rateguard ----------------
my @cron = grep { !/^\s*(#|$)/ } split /\n/, slurp('/etc/cron.d/rateguard');
my %cron_env = map { /^(\w+)=(.*)$/ ? ($1, $2) : () } @cron;
my @jobs = grep { !/^\w+=/ } @cron;
is_deeply([sort keys %cron_env], ['PATH', 'SHELL'], 'the cron file sets SHELL and PATH') or diag explain \@cron;
is(scalar @jobs, 1, 'and has one job') or diag explain \@jobs;
my ($schedule, $cron_user, $command) = ($jobs[0] // '') =~ /^(\S+ \S+ \S+ \S+ \S+)\s+(\S+)\s+(.*)$/;
is($schedule, '0 0 * * *', 'at midnight, as rateguard-cleanup.timer (OnCalendar=*-*-* 00:00:00)');
like(slurp('/lib/systemd/system/rateguard-cleanup.timer'), qr/^OnCalendar=\*-\*-\* 00:00:00$/m,
     'which is the installed timer\'s OnCalendar');
is($cron_user, 'root', 'as root');
diag("cron: $command");

# As cron runs it: the file's SHELL -c the command, with only the file's
# SHELL and PATH (cron adds HOME and LOGNAME, which the command does not
# use). cron mails root whatever the command prints, on stdout or stderr:
# a reset that went well must print nothing, or root gets a mail a night.
sub cron_run {
    my (@prefix) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        %ENV = (SHELL => $cron_env{SHELL}, PATH => $cron_env{PATH});
        open STDOUT, '>', "$dir/cron.out" or die;
        open STDERR, '>&', \*STDOUT;
        exec(@prefix, $cron_env{SHELL}, '-c', $command) or die "exec: $!";
    }
    waitpid($pid, 0);
    return ($? >> 8, slurp("$dir/cron.out"));
}

# The guard: where systemd runs (/run/systemd/system exists), the timer
# does the reset and this line does nothing. A tmpfs on /run/systemd with a
# system folder, in a private mount namespace: nothing outside sees it.
my $log_before = length slurp($log);
($rc, $out) = cron_run('unshare', '-m', 'sh', '-c',
                       'mount -t tmpfs rg-fake-systemd /run/systemd && mkdir /run/systemd/system && '
                       . 'test -d /run/systemd/system && echo "fake systemd visible" && exec "$@"', 'sh');
is("$rc $out", "0 fake systemd visible\n", 'with /run/systemd/system visible: exit 0, nothing printed but the wrapper\'s line');
ok(!-d '/run/systemd/system', 'the fake was seen by that command only');
is(counters(), '2 4 4', 'and nothing was reset');
is(substr(slurp($log), $log_before) =~ /cleanup:/ ? 'cleanup logged' : '', '', 'no cleanup in the log');
is_deeply(blocked()->{blocked}, ["$user quota"], 'still blocked');

# Without systemd, the real one.
($rc, $out) = cron_run();
is("$rc $out", '0 ', 'as cron runs it, systemd not running: exit 0, no output (a mail from cron otherwise)');
is(counters(), '2 0 0', 'the sender\'s counters are 0 in the database');
like(substr(slurp($log), $log_before), qr/cleanup: 1 sender\(s\) reset, 0 message\(s\) purged/, 'the log says so');
is_deeply(blocked(), { rc => 0, senders => 1, blocked => [] }, 'rateguard blocked no longer lists it');
($rc, $out) = run('service rateguard restart');
is($rc, 0, 'service rateguard restart: exit 0') or diag $out;
is_deeply(blocked(), { rc => 0, senders => 1, blocked => [] }, 'nor after a restart (which preloads the sender from the database)');
my $after = swaks();
like($after->{final}, $QUEUED, 'a mail gets 250 again') or diag $after->{out};
ok(wait_until(sub { counters() eq '2 1 1' }), 'counted from 0: 1 1') or diag counters();

# --- leave the machine as it was ---------------------------------------
PrivatePostfix::stop($pf);
$h->disconnect;
($rc, $out) = run('service rateguard stop');
is($rc, 0, 'service rateguard stop') or diag $out;
($rc, $out) = apt('purge rateguard');
is($rc, 0, 'apt-get purge rateguard: exit 0') or diag $out;
is_deeply([grep { -e } qw(/etc/cron.d/rateguard /etc/rateguard /var/log/rateguard /var/lib/rateguard /run/rateguard),
           $spool_existed ? () : '/var/spool/postfix/rateguard'], [], 'the cron file, configuration, state and logs are gone');
is_deeply([glob('/etc/rc[0-6S].d/[SK][0-9][0-9]rateguard')], [], 'the rc links are gone');
my @left = grep { (slurp("/proc/$_/cmdline") // '') =~ m{^/usr/sbin/rateguard\0} } map { m{/proc/(\d+)} } glob('/proc/[0-9]*');
is_deeply(\@left, [], 'no rateguard process is left');
diag(sprintf('t/68 took %.0f s', time - $t_start));
done_testing();
