#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 51-report.t - the report of the senders blocked in a period, delivered
# by a real Postfix: `rateguard cleanup` sends it before its reset (read
# back from the mailbox: headers and body lines, the webhook column from
# the notifier's record), `rateguard report --stdout` prints the same
# table, `rateguard report` sends it with STARTTLS and AUTH, the built-in
# reset_schedule sends it through the notifier; a server where nothing
# listens, or one answering 554, makes cleanup log the failure, still
# reset, and exit 9. Bad settings are refused at -t naming the key.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use POSIX ();
use Sys::Hostname;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp test_dir free_port run_rateguard BLOCK_REPLY);
use Receiver;

plan skip_all => 'a private Postfix needs root' if $> != 0;
plan skip_all => 'postfix, saslpasswd2 or openssl missing (make deps installs them)'
    unless -x '/usr/sbin/postfix' && -x '/usr/sbin/saslpasswd2' && -x '/usr/bin/openssl';
require PrivatePostfix;

my $dir = test_dir();
my $ACCEPT = "action=DUNNO\n\n";
my $BLOCK = BLOCK_REPLY;
my $SECRET = 'Wk9YZXliVlVtY2pQcFlFUm9KY1U1ZkFFaUpWTk1FU20=';

# --- -t refuses bad report settings, naming the key ---
for my $case (
    ["enabled = true\n", qr/report\.enabled: report\.to must list at least one address/],
    [qq{to = { "not an address" }\n}, qr/report\.to: 'not an address' is not a mail address \(local\@domain\)/],
    [qq{from = "a\@b\@"\n}, qr/report\.from: 'a\@b\@' is not a mail address/],
    [qq{smtp_server = "mail.example.org:0"\n}, qr/report\.smtp_server: 'mail\.example\.org:0' is not HOST, HOST:PORT or \[IPV6\]:PORT/],
    [qq{smtp_server = "mail example.org"\n}, qr/report\.smtp_server: 'mail example\.org' is not HOST/],
    [qq{user = "u"\n}, qr/report\.user: set both report\.user and report\.password \(or report\.password_file\), or neither/],
    [qq{smtp_server = "mail.example.org:587"\nuser = "u"\npassword = "pw-not-logged"\n},
     qr/report\.user: credentials to mail\.example\.org would travel in clear text: set report\.starttls = true/],
    # a name that starts like 127.0.0.0/8 is not this machine (the shared check, issue 25)
    [qq{smtp_server = "127.example.org:587"\nuser = "u"\npassword = "pw-not-logged"\n},
     qr/report\.user: credentials to 127\.example\.org would travel in clear text: set report\.starttls = true/],
    [qq{timeout = 0\n}, qr/report\.timeout: 0 is out of range 1\.\.600/],
) {
    my ($text, $want) = @$case;
    my $c = write_config(name => 'bad', sections => { report => $text });
    my ($rc, undef, $err) = run_rateguard('-c', $c->{path}, '-t');
    is($rc, 5, '-t refuses: ' . ($text =~ s/\n/ /gr) . ': exit 5');
    like($err, $want, '... naming the key');
    unlike($err, qr/pw-not-logged/, '... never the password');
}

# --- a private Postfix: STARTTLS with a certificate made now, SASL, a mailbox ---
system("openssl req -x509 -newkey rsa:2048 -nodes -keyout $dir/key.pem -out $dir/cert.pem -days 1 "
     . "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >$dir/openssl.log 2>&1") == 0
    or BAIL_OUT('openssl: ' . slurp("$dir/openssl.log"));
chmod 0644, "$dir/key.pem";
my $smtp_port = free_port();
my $pf = PrivatePostfix::start(dir => "$dir/postfix", port => $smtp_port, users => { reporter => 'rep-secret' },
                               mailbox_domain => 'reports.test', tls => { cert => "$dir/cert.pem", key => "$dir/key.pem" });
my $mbox = PrivatePostfix::mailbox_path($pf);

# The messages delivered so far: [{ headers => {lc name => value}, body => [lines] }].
sub delivered {
    my @msgs;
    for my $m (split /^(?=From \S+ )/m, slurp($mbox)) {
        next unless $m =~ /\S/;
        my ($head, $body) = split /\n\n/, $m, 2;
        my %hd;
        for (split /\n(?!\s)/, $head) {
            my ($k, $v) = /^([\w-]+):\s*(.*)/s or next;
            $hd{lc $k} //= $v =~ s/\n\s+/ /gr;
        }
        push @msgs, { headers => \%hd, body => [split /\n/, $body // ''] };
    }
    return @msgs;
}

my $db = migrated_database('report');
my $h = dbh($db);
my $hook = Receiver::start(log => "$dir/hook.jsonl");
my %report = (enabled => 'true', from => '"rateguard@rg-test.localdomain"', to => '{ "admin@reports.test", "ops@reports.test" }',
              subject => '"rateguard report (test)"', smtp_server => qq{"127.0.0.1:$smtp_port"});
sub report_section { my (%o) = (%report, @_); return join '', map { "$_ = $o{$_}\n" } sort keys %o }
my $c = write_config(database => $db, quota => 2,
                     sections => { report => report_section(),
                                   webhook => qq{enabled = true\nurl = "http://127.0.0.1:$hook->{port}/hook"\nsecret = "$SECRET"\n} });
my $pid = start_daemon($c);
my $s = policy_connect($c);
my @r = map { policy_request($s, sasl_username => 'alpha@example.org', recipient_count => 1) } 1 .. 4;
is_deeply(\@r, [$ACCEPT, $ACCEPT, $BLOCK, $BLOCK], 'alpha: two accepted, two blocked');
is(policy_request($s, sasl_username => 'beta@example.org', recipient_count => 5), $BLOCK, 'beta: blocked at once (5 recipients, quota 2)');
is(policy_request($s, sasl_username => 'gamma@example.org', recipient_count => 1), $ACCEPT, 'gamma: accepted');
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 6 }, 15), 'the six messages are written');
ok(wait_until(sub { (() = slurp("$dir/hook.jsonl") =~ /\n/g) == 2 }, 15), 'the webhook was called for alpha and beta');
my $sentlog = (glob("$dir/rateguard-*.webhook-sent"))[0] // '';
ok(wait_until(sub { (() = slurp($sentlog) =~ /^\d+ notified \S+$/mg) == 2 }, 10), 'the notifier recorded both notifications');

sub first_block {
    my ($sender) = @_;
    return ($h->selectrow_array(q{SELECT DATE_FORMAT(MIN(created_at), '%Y-%m-%d %H:%i:%s') FROM messages WHERE sender = ? AND blocked = 1},
                                undef, $sender))[0];
}
my @table = (sprintf('%-17s  %10s  %10s  %10s  %-19s  %s', 'Sender', 'Quota', 'Messages', 'Recipients', 'First block', 'Webhook'),
             sprintf('%-17s  %10s  %10s  %10s  %-19s  %s', 'alpha@example.org', 2, 4, 4, first_block('alpha@example.org'), 'notified'),
             sprintf('%-17s  %10s  %10s  %10s  %-19s  %s', 'beta@example.org', 2, 1, 5, first_block('beta@example.org'), 'notified'));
my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'report', '--stdout');
is($rc, 0, 'report --stdout: exit 0') or diag $err;
my @lines = split /\n/, $out;
like($lines[0], qr/^Senders blocked in the period ending \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(host \Q${\hostname()}\E, rateguard-[0-9a-f]{16}\)$/,
     'the title line');
is_deeply([@lines[1 .. $#lines]], ['', @table, '', '2 sender(s) blocked.'], 'the table: alpha and beta, in the order first blocked');
is(scalar(delivered()), 0, '--stdout sends nothing');

# cleanup: the report first, then the reset.
($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'cleanup');
is($rc, 0, 'cleanup: exit 0 (reset done, report sent)') or diag $err;
like($err, qr/cleanup: report of 2 blocked sender\(s\) sent to admin\@reports\.test through 127\.0\.0\.1:$smtp_port/, 'logged');
ok(wait_until(sub { delivered() >= 2 }, 20), 'Postfix delivered the report to both recipients') or diag PrivatePostfix::log_text($pf);
my ($m) = delivered();
my %hd = %{ $m->{headers} };
is($hd{from}, 'rateguard@rg-test.localdomain', 'From');
is($hd{to}, 'admin@reports.test, ops@reports.test', 'To');
is($hd{subject}, 'rateguard report (test)', 'Subject');
like($hd{date}, qr/^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$/, 'Date (RFC 5322)');
like($hd{'message-id'}, qr/^<[0-9a-f]{16}\.\d+\@\Q${\hostname()}\E>$/, 'Message-ID');
is($hd{'auto-submitted'}, 'auto-generated', 'Auto-Submitted');
like($m->{body}[0], qr/^Senders blocked in the period ending /, 'body: the title');
is_deeply([@{ $m->{body} }[2 .. 4]], \@table, 'body: the table lines');
is($m->{body}[6], '2 sender(s) blocked.', 'body: the count');
is_deeply($h->selectcol_arrayref('SELECT msg_counter FROM ratelimits ORDER BY sender'), [0, 0, 0], 'and the counters were reset');
($rc, $out) = run_rateguard('-c', $c->{path}, 'report', '--stdout');
like($out, qr/No sender was blocked in this period\./, 'the new period has no blocked sender yet');

# --- on demand with STARTTLS and AUTH ---
is(policy_request($s, sasl_username => 'delta@example.org', recipient_count => 3), $BLOCK, 'delta blocked in the new period');
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 7 }, 15), 'written');
my $tls = write_config(database => $db, name => 'tls', quota => 2,
                       sections => { report => report_section(smtp_server => qq{"localhost:$smtp_port"}, starttls => 'true',
                                                              user => '"reporter@rg-test.localdomain"', password => '"rep-secret"',
                                                              ca_file => qq{"$dir/cert.pem"}, to => '{ "admin@reports.test" }') });
($rc, $out, $err) = run_rateguard('-c', $tls->{path}, 'report');
is($rc, 0, 'report (STARTTLS, AUTH): exit 0') or diag $err;
ok(wait_until(sub { delivered() >= 3 }, 20), 'delivered') or diag PrivatePostfix::log_text($pf);
my $third = (delivered())[2];
is($third->{headers}{to}, 'admin@reports.test', 'to the one address configured');
like(join("\n", @{ $third->{body} }), qr/^delta\@example\.org\s+2\s+1\s+3\s+\S+ \S+\s+off$/m,
     'delta, webhook "off" (this configuration has no webhook)');
my $maillog = PrivatePostfix::log_text($pf);
like($maillog, qr/TLS connection established from localhost\[127\.0\.0\.1\]/, 'Postfix: the session was encrypted');
like($maillog, qr/sasl_method=PLAIN, sasl_username=reporter\@rg-test\.localdomain|sasl_username=reporter\@rg-test\.localdomain/,
     'Postfix: the client authenticated (AUTH is offered only after STARTTLS)');
my $wrong = write_config(database => $db, name => 'wrongpw', quota => 2,
                         sections => { report => report_section(smtp_server => qq{"localhost:$smtp_port"}, starttls => 'true',
                                                                user => '"reporter@rg-test.localdomain"', password => '"wrong-secret"',
                                                                ca_file => qq{"$dir/cert.pem"}) });
($rc, $out, $err) = run_rateguard('-c', $wrong->{path}, 'report');
is($rc, 9, 'a refused AUTH: exit 9');
like($err, qr/error: report: the report \(1 blocked sender\(s\)\) could not be sent through localhost:$smtp_port: Login denied/, 'logged');
unlike($err . slurp($wrong->{log}), qr/wrong-secret/, 'never the password');

# --- a broken SMTP server never stops the reset ---
my $nothing = free_port();
my $down = write_config(database => $db, name => 'down', quota => 2,
                        sections => { report => report_section(smtp_server => qq{"127.0.0.1:$nothing"}) });
($rc, $out, $err) = run_rateguard('-c', $down->{path}, 'cleanup');
is($rc, 9, 'nothing listening: cleanup exits 9 (reset done, report not sent)');
like($err, qr/error: cleanup: the report \(1 blocked sender\(s\)\) could not be sent through 127\.0\.0\.1:$nothing: Couldn't connect to server/,
     'the failure is logged');
like($err, qr/cleanup: \d+ sender\(s\) reset/, 'and the reset done');
is(($h->selectrow_array(q{SELECT rcpt_counter FROM ratelimits WHERE sender = 'delta@example.org'}))[0], 0, 'delta reset');

is(policy_request($s, sasl_username => 'epsilon@example.org', recipient_count => 3), $BLOCK, 'epsilon blocked');
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM messages'))[0] == 8 }, 15), 'written');
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5, ReuseAddr => 1) or die;
my $refuser = fork // die;
if ($refuser == 0) {
    while (my $cl = $srv->accept) {
        $cl->autoflush(1);
        print $cl "220 refuser ESMTP\r\n";
        while (my $line = <$cl>) {
            if ($line =~ /^(EHLO|HELO)/i) { print $cl "250 refuser\r\n" }
            elsif ($line =~ /^QUIT/i) { print $cl "221 bye\r\n"; last }
            else { print $cl "554 5.7.1 no reports here\r\n" }
        }
        close $cl;
    }
    POSIX::_exit(0);
}
my $r554 = write_config(database => $db, name => 'r554', quota => 2,
                        sections => { report => report_section(smtp_server => '"127.0.0.1:' . $srv->sockport . '"') });
($rc, $out, $err) = run_rateguard('-c', $r554->{path}, 'cleanup');
is($rc, 9, 'a server answering 554: cleanup exits 9');
like($err, qr/error: cleanup: the report \(1 blocked sender\(s\)\) could not be sent through 127\.0\.0\.1:\d+: .*554/,
     'the server\'s 554 is in the log');
is(($h->selectrow_array(q{SELECT rcpt_counter FROM ratelimits WHERE sender = 'epsilon@example.org'}))[0], 0, 'epsilon reset all the same');
kill 'KILL', $refuser;
waitpid($refuser, 0);
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');

# --- the built-in schedule: an hourly boundary 3 s away in a made-up zone ---
my $secs = (3600 - 3 - time() % 3600) % 3600;
my $tz = sprintf('RGT-%02d:%02d:%02d', int($secs / 3600), int($secs % 3600 / 60), $secs % 60);
my $sched = write_config(database => $db, name => 'hourly', quota => 2,
                         sections => { report => report_section(subject => '"scheduled report"'),
                                       quota => "reset_schedule = hourly\n" });
$pid = start_daemon($sched, env => { TZ => $tz });
$s = policy_connect($sched);
is(policy_request($s, sasl_username => 'zeta@example.org', recipient_count => 4), $BLOCK, 'zeta blocked before the boundary');
ok(wait_until(sub { slurp($sched->{log}) =~ /scheduled report: \d+ blocked sender\(s\), queued for sending/ }, 15),
   'at the boundary the writer prepares the report before its reset') or diag slurp($sched->{log});
ok(wait_until(sub { grep { ($_->{headers}{subject} // '') eq 'scheduled report' } delivered() }, 20),
   'the notifier sends it') or diag slurp($sched->{log});
my ($sm) = grep { ($_->{headers}{subject} // '') eq 'scheduled report' } delivered();
like(join("\n", @{ $sm->{body} }), qr/^zeta\@example\.org\s+2\s+1\s+4\s/m, 'zeta is in it');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
is_deeply([glob("$dir/rateguard-*.report-*")], [], 'no report left pending');

Receiver::stop($hook);
PrivatePostfix::stop($pf);
$h->disconnect;
done_testing();
