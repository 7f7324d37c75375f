#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 50-postfix.t - end to end with a real Postfix: a private instance with
# SASL, rateguard in smtpd_data_restrictions via check_policy_service, swaks
# authenticating as a user with quota 3. Messages 1-3 get 250, the 4th
# "450 4.7.1 ... Rate limit reached"; an unauthenticated local delivery is
# not counted; the database rows match Postfix's queue ids. Then stress
# mode with one worker: Postfix's idle policy connection is closed for a
# waiting client, and Postfix reconnects by itself for its next mail.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use IO::Select;
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon migrated_database dbh wait_until slurp test_dir free_port
          request_text read_reply run_rateguard status_json);

plan skip_all => 'a private Postfix needs root' if $> != 0;
plan skip_all => 'postfix, saslpasswd2 or swaks missing (make deps installs them)'
    unless -x '/usr/sbin/postfix' && -x '/usr/sbin/saslpasswd2' && -x '/usr/bin/swaks';
require PrivatePostfix;

my $db = migrated_database('postfix');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 3);
my $pid = start_daemon($c);
my $smtp_port = free_port();
my $pf = PrivatePostfix::start(dir => test_dir() . '/postfix', port => $smtp_port,
                               policy => "inet:127.0.0.1:$c->{port}", users => { alice => 'alice-secret' });
my $user = 'alice@rg-test.localdomain';

sub swaks {
    my (@args) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec('swaks', '--server', "127.0.0.1:$smtp_port", '--from', $user, '--to', 'bob@rg-test.localdomain',
             '--timeout', '20', @args) or die "exec swaks: $!";
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    my ($data_reply) = $out =~ /^ -> DATA\r?\n<[-*~]*\s*(\d{3}[^\r\n]*)/m;
    my ($final) = $out =~ /^<[-~]*\s*(250 2\.0\.0 Ok: queued as \S+)/m;
    my ($qid) = ($final // '') =~ /queued as (\S+)/;
    return { out => $out, data => $data_reply // '', final => $final // '', qid => $qid };
}

my @auth = ('--auth', 'PLAIN', '--auth-user', $user, '--auth-password', 'alice-secret');
my @sent = map { swaks(@auth, '--header', "Subject: rateguard e2e $_") } 1 .. 4;
for my $i (0 .. 2) {
    like($sent[$i]{final}, qr/^250 2\.0\.0 Ok: queued as \w+/, 'message ' . ($i + 1) . ': 250, queued')
        or diag $sent[$i]{out};
}
like($sent[3]{data}, qr/^450 4\.7\.1 <DATA>: Data command rejected: Rate limit reached, retry later\./,
     'message 4: 450 4.7.1 at DATA with rateguard\'s text') or diag $sent[3]{out};
is($sent[3]{final}, '', 'message 4 is not queued');

my $local = swaks('--header', 'Subject: unauthenticated');
like($local->{final}, qr/^250 2\.0\.0 Ok: queued as/, 'an unauthenticated local delivery is accepted')
    or diag $local->{out};

ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 4 }, 10), 'four messages rows');
sleep 0.5;
is_deeply($h->selectall_arrayref('SELECT sender, quota, msg_counter, rcpt_counter, msg_total, rcpt_total FROM ratelimits'),
          [[$user, 3, 4, 4, 4, 4]], 'one row: quota 3, counters 4/4 (the unauthenticated message is not counted)');
my $rows = $h->selectall_arrayref('SELECT msgid, sender, rcpt_count, blocked, from_addr, to_addr, client_address FROM messages ORDER BY id');
is_deeply([map { $_->[3] } @$rows], [0, 0, 0, 1], 'blocked 0, 0, 0, 1');
is_deeply([map { $_->[0] } @$rows[0 .. 2]], [map { $_->{qid} } @sent[0 .. 2]], 'msgid is Postfix\'s queue id');
is_deeply($rows->[0], [$sent[0]{qid}, $user, 1, 0, $user, 'bob@rg-test.localdomain', '127.0.0.1'],
          'row fields from Postfix\'s request');
like(slurp($c->{log}), qr/: client=localhost\[127\.0\.0\.1\], helo=\S+, sasl_method=PLAIN, sasl_username=\Q$user\E, from=\Q$user\E, to=bob\@rg-test\.localdomain, recipient_count=1, curr_count=4\/3, status=BLOCKED \(QUOTA_LIMIT_REACHED\)/,
     'rateguard logged the block with Postfix\'s attributes');
like(PrivatePostfix::log_text($pf), qr/reject: DATA from localhost\[127\.0\.0\.1\]: 450 4\.7\.1 <DATA>: Data command rejected: Rate limit reached/,
     'Postfix logged the deferral');
unlike(PrivatePostfix::log_text($pf), qr/warning: problem talking to server/, 'Postfix had no trouble with the policy server');

is(stop_daemon($pid), 0, 'TERM: exit 0');

# --- stress mode: Postfix's idle policy connection is closed, Postfix reconnects ---
# One worker only: Postfix's smtpd keeps its policy connection between
# mails, so a second client waits for the worker; stress mode closes the
# idle connection of Postfix, and later that of the second client when
# Postfix asks again. Postfix must reconnect by itself and have its mail
# decided and counted, not passed by default_action.
my $db2 = migrated_database('postfix_stress');
my $h2 = dbh($db2);
my $c2 = write_config(database => $db2, port => $c->{port}, quota => 3, name => 'stress',
                      sections => { workers => "min = 1\nmax = 1\nmin_spare = 0\nmax_spare = 1\n" });
my $pid2 = start_daemon($c2);
my $mail_a = swaks(@auth, '--header', 'Subject: stress A');
like($mail_a->{final}, qr/^250 2\.0\.0 Ok: queued as \w+/, 'mail A queued (Postfix now holds the only worker)')
    or diag $mail_a->{out};
my $other = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $c->{port}, Timeout => 5) or die "connect: $!";
print {$other} request_text(sasl_username => 'other@example.org');
ok(IO::Select->new($other)->can_read(5), 'a second client is served while Postfix holds the only worker');
is(read_reply($other), "action=DUNNO\n\n", 'its reply');
my $t0 = time;
my $mail_b = swaks(@auth, '--header', 'Subject: stress B');
diag(sprintf('mail B took %.1f s through swaks', time - $t0));
like($mail_b->{final}, qr/^250 2\.0\.0 Ok: queued as \w+/, 'mail B queued: Postfix reconnected to rateguard')
    or diag $mail_b->{out};
ok(IO::Select->new($other)->can_read(5) && !sysread($other, my $eof, 1),
   'the second client\'s idle connection was closed to serve Postfix');
close $other;
ok(wait_until(sub { ($h2->selectrow_array("SELECT msg_total FROM ratelimits WHERE sender = '$user'"))[0] // 0 }, 10),
   'Postfix\'s sender has a row');
sleep 0.5;
is_deeply($h2->selectcol_arrayref("SELECT msgid FROM messages WHERE sender = ? ORDER BY id", undef, $user),
          [$mail_a->{qid}, $mail_b->{qid}], 'both mails were decided by rateguard and written with their queue ids');
is(($h2->selectrow_array("SELECT msg_total FROM ratelimits WHERE sender = ?", undef, $user))[0], 2,
   'counted exactly twice');
my $stress = status_json($c2)->{stress};
# Stress lasts until no connection has waited for a second, so the two
# waits may make one episode or two, and Postfix's connection for mail B
# may be closed after its reply as well.
cmp_ok($stress->{episodes}, '>=', 1, 'status counts the stress');
cmp_ok($stress->{idle_closed}, '>=', 2, 'idle connections closed: Postfix\'s, then the second client\'s');
unlike(PrivatePostfix::log_text($pf), qr/warning: problem talking to server/,
       'Postfix reconnected without a complaint');
is(stop_daemon($pid2), 0, 'TERM: exit 0');
$h2->disconnect;

PrivatePostfix::stop($pf);
$h->disconnect;
done_testing();
