#!/usr/bin/perl
# 64-ansible.t - the Ansible role (contrib/ansible/roles/rateguard) with
# Debian's ansible-core against this machine (--connection=local, as root):
# it installs the package built by `make deb`, creates a database on the
# suite's private MariaDB, writes the configuration, migrates, starts the
# service (SysV: systemd is not PID 1 here) and sets the main.cf line of a
# private Postfix configuration directory (never /etc/postfix; no reload).
# A second run changes nothing (changed=0). The database user is the
# suite's own (rateguard_db_create_user stays false: that account may not
# create users). Everything is removed at the end: no package, no process.
#
# RG_SKIP_PACKAGE=1 skips this test, as t/63-package.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use RG qw(db_port debian_package slurp test_dir policy_connect policy_request dbh free_port);

plan skip_all => 'the role test runs as root (it installs a package)' if $> != 0;
plan skip_all => 'RG_SKIP_PACKAGE is set' if $ENV{RG_SKIP_PACKAGE};
for my $tool (qw(ansible-playbook dpkg-buildpackage dh postconf)) {
    plan skip_all => "$tool is missing (make deps installs ansible-core and the packaging tools)"
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}
plan skip_all => 'a rateguard package is already installed on this machine: not touching it'
    if `dpkg-query -W -f='\${Status}' rateguard 2>/dev/null` =~ /installed|config-files/;

my $repo = "$FindBin::Bin/..";
my $dir = test_dir();
my $db = 'rg_ansible';
my ($version) = slurp("$repo/include/rateguard.h") =~ /RATEGUARD_VERSION "([^"]+)"/;

END {
    local $?;
    if (-x '/usr/sbin/rateguard' && -e '/etc/rateguard/rateguard.conf') {
        system('/usr/sbin/rateguard stop >/dev/null 2>&1');
    }
    if (`dpkg-query -W -f='\${Status}' rateguard 2>/dev/null` =~ /installed|config-files/) {
        system('dpkg --purge rateguard >/dev/null 2>&1');
    }
    eval { my $h = dbh(); $h->do("DROP DATABASE IF EXISTS `$db`"); $h->disconnect };
}

sub run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

my ($deb) = eval { debian_package() };
ok($deb, 'make deb') or BAIL_OUT($@);
my ($rc, $out);

{
    my $h = dbh();
    $h->do("DROP DATABASE IF EXISTS `$db`");
    $h->disconnect;
}
mkdir "$dir/postfix" or die;
for my $f (qw(main.cf master.cf)) { open my $fh, '>', "$dir/postfix/$f" or die; close $fh }

my $port = free_port();
my %vars = (
    rateguard_deb => $deb,
    rateguard_listen => ["127.0.0.1:$port"],
    # the daemon over TCP (a unit's ProtectHome/PrivateTmp could hide the
    # socket under the build folder), the role's administrator by the socket
    rateguard_db_host => '127.0.0.1',
    rateguard_db_port => db_port(),
    rateguard_db_admin_socket => $ENV{RG_DB_SOCKET},
    rateguard_db_name => $db,
    rateguard_db_user => $ENV{RG_DB_USER},
    rateguard_db_password => $ENV{RG_DB_PASSWORD},
    rateguard_db_create => JSON::PP::true,
    rateguard_db_admin_user => $ENV{RG_DB_USER},
    rateguard_db_admin_password => $ENV{RG_DB_PASSWORD},
    rateguard_quota_default => 2,
    rateguard_log_syslog => JSON::PP::false,
    rateguard_log_file => '/var/log/rateguard/rateguard.log',
    rateguard_postfix_config_dir => "$dir/postfix",
    rateguard_postfix_reload => JSON::PP::false,
);
open my $fh, '>', "$dir/vars.json" or die;
print $fh encode_json(\%vars);
close $fh;
open $fh, '>', "$dir/play.yml" or die;
print $fh "- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles:\n    - rateguard\n";
close $fh;

# ansible-core's own files under the test's folder, nothing in ~root.
local $ENV{ANSIBLE_ROLES_PATH} = "$repo/contrib/ansible/roles";
local $ENV{ANSIBLE_LOCAL_TEMP} = "$dir/ansible-local";
local $ENV{ANSIBLE_REMOTE_TEMP} = "$dir/ansible-remote";
local $ENV{ANSIBLE_HOME} = "$dir/ansible-home";
local $ENV{ANSIBLE_NOCOLOR} = '1';
local $ENV{ANSIBLE_RETRY_FILES_ENABLED} = '0';
local $ENV{ANSIBLE_PYTHON_INTERPRETER} = '/usr/bin/python3';
local $ENV{DEBIAN_FRONTEND} = 'noninteractive';
my $play = "ansible-playbook -i localhost, --connection=local -e \@$dir/vars.json $dir/play.yml";

sub recap {
    my ($text) = @_;
    my ($line) = $text =~ /^(localhost\s+:.*)$/m or return {};
    return { $line =~ /(\w+)=(\d+)/g };
}

($rc, $out) = run($play);
my $r = recap($out);
is($rc, 0, 'first run: exit 0') or diag $out;
is($r->{failed}, 0, 'first run: failed=0');
ok(($r->{changed} // 0) > 0, "first run: changed=@{[$r->{changed} // '?']}");

($rc, $out) = run($play);
$r = recap($out);
is($rc, 0, 'second run: exit 0') or diag $out;
is(join(' ', map { "$_=" . ($r->{$_} // '?') } qw(changed failed)), 'changed=0 failed=0',
   'second run: changed=0 failed=0 (idempotent)') or diag $out;

like(`dpkg-query -W -f='\${Status} \${Version}' rateguard`, qr/^install ok installed \Q$version\E$/, 'the package is installed');
my @st = stat '/etc/rateguard/rateguard.conf';
is(sprintf('%04o %s', $st[2] & 07777, scalar getgrgid($st[5])), '0640 postfix', 'rateguard.conf 0640, group postfix');
like(slurp('/etc/rateguard/rateguard.conf'), qr/^listen = \{ "127\.0\.0\.1:$port" \}$/m, 'the configuration from the variables');
my $h = dbh($db);
is($h->selectrow_array('SELECT COUNT(*) FROM ratelimits'), 0, 'the role created the database and migrated it');
($rc, $out) = run('/usr/sbin/rateguard status');
is($rc, 0, 'the service runs') or diag $out;
my $s = policy_connect({ port => $port });
is(policy_request($s, sasl_username => 'role@example.org', recipient_count => 1), "action=DUNNO\n\n", 'it answers')
    or diag slurp('/var/log/rateguard/rateguard.log');
is(policy_request($s, sasl_username => 'role@example.org', recipient_count => 2),
   "action=DEFER_IF_PERMIT Rate limit reached, retry later.\n\n", 'with the quota of the variables (2 recipients)');
close $s;
is(`postconf -c $dir/postfix -h smtpd_data_restrictions`, "check_policy_service inet:127.0.0.1:$port\n",
   'main.cf of the private Postfix directory asks rateguard');
ok(!-d '/etc/postfix' || slurp('/etc/postfix/main.cf') !~ /check_policy_service inet:127\.0\.0\.1:$port/,
   "the system's Postfix is untouched");
$h->disconnect;

# Leave the machine as it was.
($rc, $out) = run('/usr/sbin/rateguard stop');
is($rc, 0, 'stopped') or diag $out;
($rc, $out) = run('dpkg --purge rateguard');
is($rc, 0, 'purged') or diag $out;
done_testing();
