# SPDX-License-Identifier: GPL-3.0-or-later
# PrivatePostfix.pm - a private Postfix instance for the end-to-end test:
# its own config, queue and data directories under a temporary folder,
# smtpd on 127.0.0.1:<port> with Cyrus SASL (a sasldb file of its own), no
# chroot, a log file instead of syslog, everything delivered to `discard`
# except, with mailbox_domain, mail to that domain: delivered by virtual(8)
# into one mbox file the test reads (mailbox_path). With tls (cert, key):
# STARTTLS offered, AUTH only after it.
# Needs root (Postfix's master starts as root). Stopped at the end of the
# test script, whatever happens.
package PrivatePostfix;

use strict;
use warnings;
use File::Path qw(make_path);

my @running;
END { local $?; stop($_) for @running; }   # $? is the script's exit code

sub run_quiet {
    my (@cmd) = @_;
    my $out = `@cmd 2>&1`;
    return ($? >> 8, $out);
}

# %o: dir, port, policy ("inet:127.0.0.1:N", optional), users ({ name => password }), domain,
# mailbox_domain, tls ({ cert => FILE, key => FILE }).
sub start {
    my (%o) = @_;
    my $d = $o{dir};
    my $domain = $o{domain} // 'rg-test.localdomain';
    make_path("$d/conf/sasl", "$d/queue", "$d/data");
    open my $fh, '>', "$d/conf/main.cf" or die;
    print $fh <<CF;
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $domain
mydomain = localdomain
mydestination = $domain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = $d/maillog
maillog_file_prefixes = $d
alias_maps =
alias_database =
local_recipient_maps =
local_transport = discard
default_transport = discard
smtputf8_enable = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_security_options = noanonymous
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
CF
    print $fh "smtpd_data_restrictions = check_policy_service { $o{policy}, default_action=DUNNO }\n" if $o{policy};
    if ($o{mailbox_domain}) {
        my ($nuid, $ngid) = (getpwnam('nobody'))[2, 3];
        make_path("$d/vmail");
        chown $nuid, $ngid, "$d/vmail";
        print $fh "virtual_mailbox_domains = $o{mailbox_domain}\nvirtual_mailbox_base = $d/vmail\n"
                . "virtual_mailbox_maps = static:mailbox\nvirtual_uid_maps = static:$nuid\n"
                . "virtual_gid_maps = static:$ngid\nvirtual_minimum_uid = 1\n";
    }
    if ($o{tls}) {
        print $fh "smtpd_tls_cert_file = $o{tls}{cert}\nsmtpd_tls_key_file = $o{tls}{key}\n"
                . "smtpd_tls_security_level = may\nsmtpd_tls_auth_only = yes\nsmtpd_tls_loglevel = 1\n";
    }
    close $fh;
    open $fh, '>', "$d/conf/master.cf" or die;
    print $fh "127.0.0.1:$o{port} inet n - n - - smtpd\n";
    print $fh "$_\n" for (
        'pickup unix n - n 60 1 pickup', 'cleanup unix n - n - 0 cleanup', 'qmgr unix n - n 300 1 qmgr',
        'rewrite unix - - n - - trivial-rewrite', 'bounce unix - - n - 0 bounce',
        'defer unix - - n - 0 bounce', 'trace unix - - n - 0 bounce', 'verify unix - - n - 1 verify',
        'flush unix n - n 1000? 0 flush', 'proxymap unix - - n - - proxymap', 'showq unix n - n - - showq',
        'error unix - - n - - error', 'retry unix - - n - - error', 'discard unix - - n - - discard',
        'anvil unix - - n - 1 anvil', 'scache unix - - n - 1 scache', 'postlog unix-dgram n - n - 1 postlogd',
        'virtual unix - n n - - virtual', 'tlsmgr unix - - n 1000? 1 tlsmgr');
    close $fh;
    # Debian's Postfix reads $config_directory/sasl/smtpd.conf.
    open $fh, '>', "$d/conf/sasl/smtpd.conf" or die;
    print $fh "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: $d/sasldb2\n";
    close $fh;
    for my $user (sort keys %{ $o{users} // {} }) {
        open my $p, '|-', 'saslpasswd2', '-p', '-c', '-f', "$d/sasldb2", '-u', $domain, $user or die;
        print $p $o{users}{$user};
        close $p or die "saslpasswd2 $user failed";
    }
    my ($uid, $gid) = (getpwnam('postfix'))[2, 3];
    chown $uid, $gid, "$d/sasldb2", "$d/data";
    chmod 0640, "$d/sasldb2";
    my ($rc, $out) = run_quiet('postfix', '-c', "$d/conf", 'start', '</dev/null');
    die "postfix start failed ($rc): $out" . log_text({ dir => $d }) if $rc != 0;
    my $pf = { dir => $d, port => $o{port}, domain => $domain };
    push @running, $pf;
    return $pf;
}

sub stop {
    my ($pf) = @_;
    return unless grep { $_ == $pf } @running;
    run_quiet('postfix', '-c', "$pf->{dir}/conf", 'stop', '</dev/null');
    @running = grep { $_ != $pf } @running;
}

# The mbox file virtual(8) delivers mailbox_domain's mail to.
sub mailbox_path {
    my ($pf) = @_;
    return "$pf->{dir}/vmail/mailbox";
}

sub log_text {
    my ($pf) = @_;
    open my $fh, '<', "$pf->{dir}/maillog" or return '';
    local $/;
    return <$fh>;
}

1;
