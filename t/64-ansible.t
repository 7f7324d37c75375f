#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 64-ansible.t - the Ansible role (contrib/ansible/roles/rateguard) with
# Debian's ansible-core against this machine (--connection=local, as root):
# it installs the package built by `make deb`, creates a database on the
# suite's private MariaDB, writes the configuration, migrates, starts the
# service (SysV: systemd is not PID 1 here) and sets the main.cf line of a
# private Postfix configuration directory (never /etc/postfix; no reload).
# A second run changes nothing (changed=0). The role's database
# administrator is made here on the private server (root by its socket),
# with a password of this run, and the role creates the daemon's database
# user with another: neither may appear in the output of
# `ansible-playbook --diff -vvv`, nor in any process's command line or
# environment while the role runs (a sampler reads /proc/*/cmdline, what
# `ps -eo args` shows, and /proc/*/environ, as fast as it can; a canary
# process proves it sees what it looks for, and it must have caught the
# mariadb client). Then the same with a dedicated account (rateguard_user:
# rateguard), and with the unix socket (rateguard_socket). Everything is
# removed at the end: no package, no process, no account.
#
# RG_SKIP_PACKAGE=1 skips this test, as t/63-package.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DBI;
use IO::Socket::UNIX;
use POSIX ();
use Time::HiRes ();
use RG qw(db_port debian_package slurp test_dir policy_connect policy_request dbh free_port BLOCK_REPLY);
use Package qw(run);

Package::preflight('the role test', qw(ansible-playbook dpkg-buildpackage dh postconf));
plan skip_all => 'an account or group rateguard exists on this machine: not touching it'
    if defined getpwnam('rateguard') || defined getgrnam('rateguard');
plan skip_all => '/var/spool/postfix/rateguard exists: not touching it' if -e '/var/spool/postfix/rateguard';
# From here the machine's rateguard account and folders, if any, are this
# test's: the END below cleans up only then (not after a skip or a failure
# of the preflight). Package::cleanup() does the package.
our $ours = 1;

my $repo = "$FindBin::Bin/..";
my $dir = test_dir();
my $db = 'rg_ansible';
my ($admin, $dbuser) = ('rg_ans_admin', 'rg_ans_user');
my ($version) = slurp("$repo/include/rateguard.h") =~ /RATEGUARD_VERSION "([^"]+)"/;
my $spool_dir = '/var/spool/postfix/rateguard';

# Root of the private server, by its socket (no password there).
sub root_dbh {
    return DBI->connect("DBI:MariaDB:mariadb_socket=$ENV{RG_DB_SOCKET}", 'root', '',
                        { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
}

sub drop_all {
    my $h = root_dbh();
    $h->do("DROP DATABASE IF EXISTS `$db`");
    $h->do("DROP USER IF EXISTS '$admin'\@'localhost', '$dbuser'\@'127.0.0.1'");
    $h->disconnect;
}

my $sampler;
END {
    local $?;
    return unless $main::ours;    # skipped, or a package not ours: nothing touched
    if ($sampler) { kill 'TERM', $sampler; waitpid $sampler, 0 }
    Package::cleanup();
    system('userdel rateguard >/dev/null 2>&1') if defined getpwnam('rateguard');
    system('groupdel rateguard >/dev/null 2>&1') if defined getgrnam('rateguard');
    system('rm', '-rf', $spool_dir, '/var/lib/rateguard', '/var/log/rateguard', '/run/rateguard');
    eval { drop_all() };
}


# Secrets of this run: a random word in each, what the searches look for
# (escaped or quoted, a leak still carries it whole), with characters that
# need quoting around it.
sub word { my ($p) = @_; return $p . join '', map { sprintf '%02x', int rand 256 } 1 .. 12 }
my $admin_word = word('RgAdmin');
my $user_word = word('RgUser');
my $canary = word('RgCanary');
my $admin_pw = qq{$admin_word "a'b\\c #d};
my $user_pw = qq{$user_word "e'f\\g h};
my %secret = (admin => $admin_word, user => $user_word, canary => $canary);

# Background sampler: every process's command line and environment, over
# and over, until TERM; then a JSON summary in $file.
sub start_sampler {
    my ($file) = @_;
    my $pid = fork // die "fork: $!";
    return $pid if $pid;
    my $stop = 0;
    local $SIG{TERM} = sub { $stop = 1 };
    my ($passes, $mariadb, %hits, %modes) = (0, 0);
    until ($stop) {
        for my $p (glob '/proc/[0-9]*') {
            for my $what (qw(cmdline environ)) {
                open my $fh, '<', "$p/$what" or next;
                local $/;
                my $d = <$fh>;
                close $fh;
                next unless defined $d && length $d;
                for my $k (keys %secret) {
                    next if index($d, $secret{$k}) < 0;
                    (my $t = $d) =~ tr/\0/ /;
                    $hits{"$k in $what: $t"}++;
                }
                if ($what eq 'cmdline' && $d =~ m{^(?:\S*/)?mariadb\0}) {
                    $mariadb++;
                    if ($d =~ /\0--defaults-file=([^\0]+)/) {
                        my @st = stat $1;
                        $modes{@st ? sprintf('%04o', $st[2] & 07777) : 'gone'}++;
                    }
                }
            }
        }
        $passes++;
    }
    open my $fh, '>', $file or POSIX::_exit(1);
    print $fh encode_json({ passes => $passes, hits => [sort keys %hits], mariadb => $mariadb, modes => \%modes });
    close $fh;
    POSIX::_exit(0);
}

my ($deb) = eval { debian_package() };
ok($deb, 'make deb') or BAIL_OUT($@);
my ($rc, $out);

drop_all();
{
    my $h = root_dbh();
    $h->do("CREATE USER '$admin'\@'localhost' IDENTIFIED BY " . $h->quote($admin_pw));
    $h->do("GRANT ALL ON *.* TO '$admin'\@'localhost' WITH GRANT OPTION");
    $h->disconnect;
}
mkdir "$dir/postfix" or die;
{
    open my $fh, '>', "$dir/postfix/main.cf" or die;
    close $fh;
    # submission replaces main.cf's list (the README's case); the content
    # filter's re-injection service does too, and is none of the role's.
    open $fh, '>', "$dir/postfix/master.cf" or die;
    print $fh "submission inet n - y - - smtpd\n  -o smtpd_data_restrictions=\n  -o smtpd_sasl_auth_enable=yes\n";
    print $fh "127.0.0.1:10025 inet n - n - - smtpd\n  -o smtpd_data_restrictions=\n";
    close $fh;
}

# The value the README's *Postfix* section gives main.cf.
my ($readme_list) = slurp("$repo/README.md") =~ /^## Postfix\n.*?^smtpd_data_restrictions =\n((?:[ \t]+\S[^\n]*\n)+)/ms;
$readme_list = join ' ', map { s/^\s+|\s+$//gr } split /\n/, $readme_list // '';
like($readme_list, qr/check_policy_service \{ inet:127\.0\.0\.1:10033, default_action=DUNNO \}/,
     "the README's list: $readme_list");

my $port = free_port();
my %base = (
    rateguard_deb => $deb,
    # the daemon over TCP (a unit's ProtectHome/PrivateTmp could hide the
    # socket under the build folder), the role's administrator by the socket
    rateguard_db_host => '127.0.0.1',
    rateguard_db_port => db_port(),
    rateguard_db_admin_socket => $ENV{RG_DB_SOCKET},
    rateguard_db_name => $db,
    rateguard_db_user => $dbuser,
    rateguard_db_user_host => '127.0.0.1',
    rateguard_db_password => $user_pw,
    rateguard_db_create => JSON::PP::true,
    rateguard_db_create_user => JSON::PP::true,
    rateguard_db_admin_user => $admin,
    rateguard_db_admin_password => $admin_pw,
    rateguard_quota_default => 2,
    rateguard_log_syslog => JSON::PP::false,
    rateguard_log_file => '/var/log/rateguard/rateguard.log',
    rateguard_postfix_config_dir => "$dir/postfix",
    rateguard_postfix_reload => JSON::PP::false,
);
open my $fh, '>', "$dir/play.yml" or die;
print $fh "- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles:\n    - rateguard\n";
close $fh;

# ansible-core's own files under the test's folder, nothing in ~root; the
# suite's database password is no business of the role's.
local $ENV{ANSIBLE_ROLES_PATH} = "$repo/contrib/ansible/roles";
local $ENV{ANSIBLE_LOCAL_TEMP} = "$dir/ansible-local";
local $ENV{ANSIBLE_REMOTE_TEMP} = "$dir/ansible-remote";
local $ENV{ANSIBLE_HOME} = "$dir/ansible-home";
local $ENV{ANSIBLE_NOCOLOR} = '1';
local $ENV{ANSIBLE_RETRY_FILES_ENABLED} = '0';
local $ENV{ANSIBLE_PYTHON_INTERPRETER} = '/usr/bin/python3';
local $ENV{DEBIAN_FRONTEND} = 'noninteractive';
local $ENV{RG_DB_PASSWORD};
delete $ENV{RG_DB_PASSWORD};

sub recap {
    my ($text) = @_;
    my ($line) = $text =~ /^(localhost\s+:.*)$/m or return {};
    return { $line =~ /(\w+)=(\d+)/g };
}

my @temp_before = glob '/tmp/rateguard-mariadb.*';

# Two runs with these variables (--diff -vvv): the second changes nothing,
# and neither output holds a password.
sub play {
    my ($name, %vars) = @_;
    open my $vf, '>', "$dir/vars.json" or die;
    chmod 0600, "$dir/vars.json";
    print $vf encode_json({ %base, %vars });
    close $vf;
    my $play = "ansible-playbook --diff -vvv -i localhost, --connection=local -e \@$dir/vars.json $dir/play.yml";
    my @outs;
    for my $n (1, 2) {
        my ($prc, $pout) = run($play);
        my $r = recap($pout);
        push @outs, $pout;
        is($prc, 0, "$name, run $n: exit 0") or diag $pout;
        if ($n == 1) {
            is($r->{failed}, 0, "$name, run $n: failed=0");
        } else {
            is(join(' ', map { "$_=" . ($r->{$_} // '?') } qw(changed failed)), 'changed=0 failed=0',
               "$name, run $n: changed=0 failed=0 (idempotent)") or diag $pout;
        }
        for my $k (qw(admin user)) {
            my @lines = grep { index($_, $secret{$k}) >= 0 } split /\n/, $pout;
            is(scalar @lines, 0, "$name, run $n: the $k password is nowhere in the --diff -vvv output")
                or diag join "\n", @lines[0 .. ($#lines < 4 ? $#lines : 4)];
        }
    }
    return @outs;
}

sub daemon_uids {
    my %uids;
    for my $p (glob '/proc/[0-9]*') {
        my $cmd = slurp("$p/cmdline");
        next unless $cmd =~ m{^/usr/sbin/rateguard\0};
        my ($uid) = slurp("$p/status") =~ /^Uid:\s+(\d+)/m or next;
        $uids{scalar getpwuid($uid) // $uid}++;
    }
    return join ' ', sort keys %uids;
}

sub owner_mode {
    my ($path) = @_;
    my @st = lstat $path or return 'missing';
    return sprintf('%s:%s %04o', scalar getpwuid($st[4]), scalar getgrgid($st[5]), $st[2] & 07777);
}

sub postconf { my $v = `postconf -c $dir/postfix @_ 2>&1`; chomp $v; return $v }

# The sampler, proved on a canary: a process with the canary word in its
# command line and in its environment.
$sampler = start_sampler("$dir/sampler.json");
{
    local $ENV{RG_CANARY} = $canary;
    system('sh', '-c', ": $canary; sleep 0.3");
}

## 1. Postfix's account, TCP: the database and its user created.
my @outs = play('postfix account, TCP', rateguard_listen => ["127.0.0.1:$port"]);
like($outs[0], qr/TASK \[rateguard : Create the user[^\n]*\n(?:(?!TASK \[)[^\n]*\n)*?changed: \[localhost\]/,
     'run 1 created the database user (the password went through)');
like($outs[0], qr/TASK \[rateguard : rateguard\.conf\][^\n]*\n(?:(?!TASK \[)[^\n]*\n)*?changed: \[localhost\]/,
     'run 1 wrote rateguard.conf (no diff shown)');
like(`dpkg-query -W -f='\${Status} \${Version}' rateguard`, qr/^install ok installed \Q$version\E$/, 'the package is installed');
is(owner_mode('/etc/rateguard/rateguard.conf'), 'root:postfix 0640', 'rateguard.conf root:postfix 0640');
like(slurp('/etc/rateguard/rateguard.conf'), qr/^listen = \{ "127\.0\.0\.1:$port" \}$/m, 'the configuration from the variables');
ok(index(slurp('/etc/rateguard/rateguard.conf'), $user_word) >= 0, 'the password is in rateguard.conf');
my $uh = eval {
    DBI->connect("DBI:MariaDB:host=127.0.0.1;port=" . db_port() . ";database=$db", $dbuser, $user_pw,
                 { RaiseError => 1, PrintError => 0 })
};
ok($uh, 'the created user logs in with its password (quotes, backslash and all)') or diag $@;
is($uh && $uh->selectrow_array('SELECT COUNT(*) FROM ratelimits'), 0, 'the role created the database and migrated it');
$uh->disconnect if $uh;
is_deeply([glob '/tmp/rateguard-mariadb.*'], \@temp_before, 'no defaults file left behind');
($rc, $out) = run('/usr/sbin/rateguard status');
is($rc, 0, 'the service runs') or diag $out;
is(daemon_uids(), 'postfix', 'the daemon runs as postfix');
my $s = policy_connect({ port => $port });
is(policy_request($s, sasl_username => 'role@example.org', recipient_count => 1), "action=DUNNO\n\n", 'it answers')
    or diag slurp('/var/log/rateguard/rateguard.log');
is(policy_request($s, sasl_username => 'role@example.org', recipient_count => 2),
   BLOCK_REPLY, 'with the quota of the variables (2 recipients)');
close $s;
(my $want = $readme_list) =~ s/inet:127\.0\.0\.1:10033/inet:127.0.0.1:$port/;
is(postconf('-h rateguard_data_restrictions'), $want, "main.cf's list is the README's (default_action=DUNNO)");
is(postconf('-h smtpd_data_restrictions'), '$rateguard_data_restrictions', 'smtpd_data_restrictions names it');
is(postconf('-x -h smtpd_data_restrictions'), $want, '... and expands to it');
is(postconf('-P submission/inet/smtpd_data_restrictions'), 'submission/inet/smtpd_data_restrictions = $rateguard_data_restrictions',
   "master.cf: submission's override names the list");
is(postconf('-P 127.0.0.1:10025/inet/smtpd_data_restrictions'), '127.0.0.1:10025/inet/smtpd_data_restrictions =',
   "master.cf: the re-injection service's override is left alone");
ok(!-d '/etc/postfix' || slurp('/etc/postfix/main.cf') !~ /check_policy_service \{ inet:127\.0\.0\.1:$port/,
   "the system's Postfix is untouched");

## 2. A dedicated account, TCP.
play('dedicated account, TCP', rateguard_listen => ["127.0.0.1:$port"], rateguard_user => 'rateguard');
my @pw = getpwnam('rateguard');
is(@pw ? "$pw[7] $pw[8]" : 'none', '/var/lib/rateguard /usr/sbin/nologin', 'user rateguard: home /var/lib/rateguard, no login');
ok(@pw && $pw[2] < 1000, 'a system account');
is(@pw ? scalar getgrgid($pw[3]) : '', 'rateguard', 'its group is rateguard');
ok(!grep({ $_ eq 'rateguard' } split ' ', (getgrnam('postfix'))[3] // ''), 'not a member of group postfix (no socket)');
is(owner_mode('/etc/rateguard/rateguard.conf'), 'root:rateguard 0640', 'rateguard.conf root:rateguard 0640');
like(slurp('/etc/rateguard/rateguard.conf'), qr/^user = "rateguard"\ngroup = "rateguard"$/m, "the configuration's user and group");
is(owner_mode('/var/lib/rateguard'), 'rateguard:rateguard 0750', 'the state directory is the account\'s');
is(daemon_uids(), 'rateguard', 'the daemon runs as rateguard')
    or diag `ps -eo pid,ppid,user,lstart,args | grep [r]ateguard; tail -5 /var/log/rateguard/rateguard.log`;
$s = policy_connect({ port => $port });
like(policy_request($s, sasl_username => 'other@example.org', recipient_count => 1), qr/^action=DUNNO\n\n$/, 'it answers');
close $s;

## 3. A dedicated account on the unix socket.
play('dedicated account, unix socket', rateguard_user => 'rateguard', rateguard_socket => JSON::PP::true);
ok(grep({ $_ eq 'rateguard' } split ' ', (getgrnam('postfix'))[3] // ''), 'rateguard is a member of group postfix');
like(slurp('/etc/rateguard/rateguard.conf'), qr{^listen = \{ "unix:$spool_dir/rateguard\.sock" \}$}m, 'listen on the socket');
is(owner_mode('/etc/rateguard/rateguard.conf'), 'root:rateguard 0640', 'rateguard.conf root:rateguard 0640: Postfix cannot read it');
like(slurp('/etc/rateguard/rateguard.conf'), qr/^socket_group = "postfix"$/m, 'the socket\'s group is postfix (socket_group)');
is(owner_mode($spool_dir), 'rateguard:postfix 0750', "$spool_dir rateguard:postfix 0750");
ok(-S "$spool_dir/rateguard.sock", 'the socket exists');
is(owner_mode("$spool_dir/rateguard.sock"), 'rateguard:postfix 0660', 'the socket rateguard:postfix 0660');
is(daemon_uids(), 'rateguard', 'the daemon runs as rateguard');
$s = IO::Socket::UNIX->new(Peer => "$spool_dir/rateguard.sock");
ok($s, 'the socket takes a connection') or diag "$!";
like($s ? policy_request($s, sasl_username => 'sock@example.org', recipient_count => 1) : '', qr/^action=DUNNO\n\n$/,
     'it answers on the socket');
close $s if $s;
(my $want_unix = $readme_list) =~ s/inet:127\.0\.0\.1:10033/unix:rateguard\/rateguard.sock/;
is(postconf('-h rateguard_data_restrictions'), $want_unix, "main.cf's list: the README's with unix:rateguard/rateguard.sock");

## The sampler's findings.
kill 'TERM', $sampler;
waitpid $sampler, 0;
undef $sampler;
my $found = eval { decode_json(slurp("$dir/sampler.json")) } // {};
ok(($found->{passes} // 0) > 10, "the sampler went over /proc $found->{passes} times");
my @hits = @{ $found->{hits} // [] };
ok((grep { /^canary in cmdline/ } @hits) && (grep { /^canary in environ/ } @hits),
   "the sampler saw the canary's command line and environment");
ok(($found->{mariadb} // 0) > 0, "the sampler saw the mariadb client ($found->{mariadb} times)");
my %modes = %{ $found->{modes} // {} };
ok($modes{'0600'} && !grep({ $_ ne '0600' && $_ ne 'gone' } keys %modes),
   'its defaults file was mode 0600: ' . join(' ', map { "$_=$modes{$_}" } sort keys %modes));
my @leaks = grep { !/^canary/ } @hits;
is(scalar @leaks, 0, 'no password in any command line or environment while the role ran') or diag join "\n", @leaks;

# Leave the machine as it was.
($rc, $out) = run('/usr/sbin/rateguard stop');
is($rc, 0, 'stopped') or diag $out;
($rc, $out) = run('dpkg --purge rateguard');
is($rc, 0, 'purged') or diag $out;
done_testing();
