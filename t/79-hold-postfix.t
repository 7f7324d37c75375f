#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 79-hold-postfix.t - the signals' HOLD (issue 29) end to end through a
# real Postfix: the private instance of t/lib/PrivatePostfix.pm with SASL,
# rateguard in smtpd_data_restrictions via check_policy_service, swaks
# authenticating as one login, with signals { spread = 2; ipv4_prefix = 32;
# spread_action = "HOLD" }, mail to a mailbox domain delivered by virtual(8)
# into one mbox the test reads.
#   1. from 127.0.0.1: accepted and delivered;
#   2. from 127.0.0.2 (a second network: spread trips): rateguard answers
#      HOLD (its log: status=HELD (SIGNAL spread: HOLD)), Postfix logs the
#      hold with rateguard's text, `postqueue -p` lists it held (`!`), and a
#      later message and a flush get delivered while it is not;
#   3. from 127.0.0.1 again, the episode still open: held as well;
#   then `postsuper -H` releases message 2 and a flush delivers it,
#   `postsuper -d` deletes message 3, never delivered; the hold queue ends
#   empty. The database: three messages rows, blocked = 0 (a hold is an
#   accept), one login_signals row (episode 1, claimed by this host); one
#   `looks hijacked` line in rateguard's log.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Sys::Hostname qw(hostname);
use RG qw(write_config start_daemon stop_daemon migrated_database dbh wait_until slurp test_dir free_port);

plan skip_all => 'a private Postfix needs root' if $> != 0;
plan skip_all => 'postfix, saslpasswd2 or swaks missing (make deps installs them)'
    unless -x '/usr/sbin/postfix' && -x '/usr/sbin/saslpasswd2' && -x '/usr/bin/swaks';
# Linux routes all of 127.0.0.0/8 to lo: a client can bind 127.0.0.2
# without it being configured. A host where it cannot has no second network.
plan skip_all => "cannot bind 127.0.0.2 on this host ($!): no second client network"
    unless IO::Socket::INET->new(LocalAddr => '127.0.0.2', Listen => 1);
require PrivatePostfix;

my $db = migrated_database('hold_postfix');
my $h = dbh($db);
my $c = write_config(database => $db, quota => 100,
                     sections => { signals => qq{spread = 2\nipv4_prefix = 32\nspread_action = "HOLD"\n} });
my $pid = start_daemon($c);
my $smtp_port = free_port();
my $pf = PrivatePostfix::start(dir => test_dir() . '/postfix', port => $smtp_port, mailbox_domain => 'held.test',
                               policy => "inet:127.0.0.1:$c->{port}", users => { alice => 'alice-secret' });
my $conf = "$pf->{dir}/conf";
my $mbox = PrivatePostfix::mailbox_path($pf);
my $user = 'alice@rg-test.localdomain';
my $rcpt = 'bob@held.test';
my $reply_text = 'Held for review: this login looks hijacked (signal: spread)';

# One message through swaks to $rcpt: its final reply and queue id (NONE if not queued).
# %o: from (the client address), subject, auth (default true).
sub send_mail {
    my (%o) = @_;
    my @auth = ($o{auth} // 1) ? ('--auth', 'PLAIN', '--auth-user', $user, '--auth-password', 'alice-secret') : ();
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec('swaks', '--server', "127.0.0.1:$smtp_port", '--local-interface', $o{from}, '--from', $user,
             '--to', $rcpt, '--timeout', '20', '--header', "Subject: $o{subject}",
             '--body', "body of $o{subject}", @auth) or die "exec swaks: $!";
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    my ($final) = $out =~ /^<[-~]*\s*(250 2\.0\.0 Ok: queued as \S+)/m;
    my ($qid) = ($final // '') =~ /queued as (\S+)/;
    return { out => $out, final => $final // '', qid => $qid // 'NONE', subject => $o{subject} };
}

# A Postfix command of the private instance: (exit code, output).
sub postfix_cmd {
    my ($cmd, @args) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec($cmd, '-c', $conf, @args) or die "exec $cmd: $!";
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    return ($? >> 8, $out);
}

sub queue_listing { return (postfix_cmd('postqueue', '-p'))[1] }

# The messages in the mbox whose Subject is $subject: their full text.
sub delivered {
    my ($subject) = @_;
    return grep { /^Subject: \Q$subject\E$/m } split /^(?=From \S+ )/m, slurp($mbox);
}

sub maillog { return PrivatePostfix::log_text($pf) }
sub rglog { return slurp($c->{log}) }

# The first line of a log ($text: maillog or rglog) matching $re, waited
# for up to 10 s ('' if none): Postfix's programs log through postlogd, a
# datagram service, so a line may land a moment after the reply.
sub log_line {
    my ($text, $re) = @_;
    return wait_until(sub { my ($l) = $text->() =~ /^(.*$re.*)$/m; $l }, 10) // '';
}

# The queue of the private instance as `postqueue -j` tells it: queue id => queue name.
sub queue_names {
    require JSON::PP;
    my %q;
    for (split /\n/, (postfix_cmd('postqueue', '-j'))[1]) {
        my $j = eval { JSON::PP::decode_json($_) } or next;
        $q{ $j->{queue_id} } = $j->{queue_name};
    }
    return \%q;
}

# --- 1: the first network, accepted and delivered ---
my $m1 = send_mail(from => '127.0.0.1', subject => 'hold e2e 1');
like($m1->{final}, qr/^250 2\.0\.0 Ok: queued as \w+$/, 'message 1 (127.0.0.1): 250, queued') or diag $m1->{out};
ok(wait_until(sub { delivered($m1->{subject}) }, 30), 'message 1 delivered to the mailbox')
    or diag maillog();
like(log_line(\&rglog, qr/\Q$m1->{qid}\E: client=/),
     qr/: client=\S+\[127\.0\.0\.1\], .*sasl_username=\Q$user\E, .*status=ACCEPTED$/, 'rateguard: message 1 ACCEPTED, no signal');

# --- 2: the second network trips spread = 2: HOLD ---
my $m2 = send_mail(from => '127.0.0.2', subject => 'hold e2e 2');
like($m2->{final}, qr/^250 2\.0\.0 Ok: queued as \w+$/, 'message 2 (127.0.0.2): 250, queued (a hold is accepted)')
    or diag $m2->{out};
my $rg_line2 = log_line(\&rglog, qr/\Q$m2->{qid}\E: client=/);
like($rg_line2, qr/: client=\S+\[127\.0\.0\.2\], .*sasl_username=\Q$user\E, .*status=HELD \(SIGNAL spread: HOLD\)$/,
     'rateguard: message 2 status=HELD (SIGNAL spread: HOLD)');
diag "rateguard: $rg_line2" if $rg_line2;
# smtpd logs the policy reply's action and text on the message's queue id.
my $hold_line2 = log_line(\&maillog, qr/\Q$m2->{qid}\E: hold: /);
like($hold_line2, qr/\Q$m2->{qid}\E: hold: DATA from \S+\[127\.0\.0\.2\]: <DATA>: Data command \Q$reply_text\E; from=<\Q$user\E> to=<\Q$rcpt\E> proto=ESMTP helo=</,
     "Postfix logged the hold with rateguard's reply text") or diag maillog();
diag "postfix: $hold_line2" if $hold_line2;
my $queue = queue_listing();
like($queue, qr/^\Q$m2->{qid}\E!\s/m, 'postqueue -p lists message 2 held (the ! after its queue id)') or diag $queue;
diag "postqueue -p:\n$queue";
is(queue_names()->{ $m2->{qid} }, 'hold', 'postqueue -j: in queue "hold"');

# --- 3: the episode is open: the first network's next message is held too ---
my $m3 = send_mail(from => '127.0.0.1', subject => 'hold e2e 3');
like($m3->{final}, qr/^250 2\.0\.0 Ok: queued as \w+$/, 'message 3 (127.0.0.1): 250, queued') or diag $m3->{out};
like(log_line(\&rglog, qr/\Q$m3->{qid}\E: client=/), qr/: client=\S+\[127\.0\.0\.1\], .*status=HELD \(SIGNAL spread: HOLD\)$/,
     'rateguard: message 3 HELD too while the episode is open');
like(log_line(\&maillog, qr/\Q$m3->{qid}\E: hold: /), qr/\Q$m3->{qid}\E: hold: DATA from \S+\[127\.0\.0\.1\]: <DATA>: Data command \Q$reply_text\E;/,
     'Postfix logged its hold');
$queue = queue_listing();
like($queue, qr/^\Q$m3->{qid}\E!\s/m, 'postqueue -p lists message 3 held');
like($queue, qr/^-- \d+ Kbytes in 2 Requests\.$/m, 'two messages in the queue') or diag $queue;

# Not delivered while held: a flush, then an unauthenticated message (no
# SASL login: no signal) sent after them and delivered, so the queue
# manager had its chance at every deliverable message, and the held two
# were not among them.
my ($rc) = postfix_cmd('postqueue', '-f');
is($rc, 0, 'postqueue -f (a flush does not touch the hold queue)');
my $marker = send_mail(from => '127.0.0.1', subject => 'hold e2e marker', auth => 0);
like($marker->{final}, qr/^250 2\.0\.0 Ok: queued as \w+$/, 'a later unauthenticated message: queued')
    or diag $marker->{out};
ok(wait_until(sub { delivered($marker->{subject}) }, 30), 'the later message is delivered') or diag maillog();
is(scalar(delivered($_->[1]{subject})), 0, "message $_->[0] is not delivered while held (a later one was)")
    for [2, $m2], [3, $m3];
unlike(maillog(), qr/\Q$_\E: to=<[^>]*>.*status=sent/, "Postfix's log: no delivery of $_ while held")
    for $m2->{qid}, $m3->{qid};
is_deeply(queue_names(), { $m2->{qid} => 'hold', $m3->{qid} => 'hold' }, 'both still held, nothing else queued');

# --- release message 2, delete message 3 ---
my ($rc_h, $out_h) = postfix_cmd('postsuper', '-H', $m2->{qid});
is($rc_h, 0, 'postsuper -H message 2') or diag $out_h;
like($out_h, qr/\Q$m2->{qid}\E: released from hold/, 'postsuper: released from hold') or diag $out_h;
my ($rc_d, $out_d) = postfix_cmd('postsuper', '-d', $m3->{qid});
is($rc_d, 0, 'postsuper -d message 3') or diag $out_d;
like($out_d, qr/\Q$m3->{qid}\E: removed/, 'postsuper: removed') or diag $out_d;
($rc) = postfix_cmd('postqueue', '-f');
is($rc, 0, 'postqueue -f');
my ($got2) = wait_until(sub { [delivered($m2->{subject})] if delivered($m2->{subject}) }, 30);
ok($got2, 'message 2 is delivered after its release') or diag maillog();
if ($got2) {
    is(scalar @$got2, 1, 'once');
    like($got2->[0], qr/^Received: from \S+ \(\S+ \[127\.0\.0\.2\]\)\n\s+by rg-test\.localdomain \(Postfix\) with ESMTPA id \Q$m2->{qid}\E\n/m,
         'the very message: received from 127.0.0.2 with SASL (ESMTPA, no TLS here), under its queue id');
    like($got2->[0], qr/\n\nbody of hold e2e 2\n/, 'its body');
}
like(log_line(\&maillog, qr/\Q$m2->{qid}\E: to=</), qr/\Q$m2->{qid}\E: to=<\Q$rcpt\E>, relay=virtual, .*status=sent \(delivered to mailbox\)/,
     "Postfix's log: delivered") or diag maillog();
ok(wait_until(sub { queue_listing() =~ /^Mail queue is empty$/m }, 30), 'the queue is empty, the hold queue with it')
    or diag queue_listing();
is(scalar(delivered($m3->{subject})), 0, 'message 3 (deleted) was never delivered');
unlike(maillog(), qr/\Q$m3->{qid}\E: to=</, "Postfix's log: no delivery attempt for message 3");

# --- the database and rateguard's log ---
my $rows_sql = 'SELECT msgid, sender, client_address, blocked FROM messages ORDER BY id';
ok(wait_until(sub { @{ $h->selectall_arrayref($rows_sql) } == 3 }, 10), 'three messages rows');
is_deeply($h->selectall_arrayref($rows_sql),
          [[$m1->{qid}, $user, '127.0.0.1', 0], [$m2->{qid}, $user, '127.0.0.2', 0], [$m3->{qid}, $user, '127.0.0.1', 0]],
          'the three authenticated messages by queue id, blocked = 0: a hold is an accept (the unauthenticated one is not counted)');
my $counted_sql = 'SELECT sender, msg_counter, msg_total FROM ratelimits';
wait_until(sub { (($h->selectrow_array('SELECT SUM(msg_total) FROM ratelimits'))[0] // 0) >= 3 }, 10);
is_deeply($h->selectall_arrayref($counted_sql), [[$user, 3, 3]], 'the login counted three times');
ok(wait_until(sub { ($h->selectrow_array('SELECT COUNT(*) FROM login_signals WHERE episode <> 0'))[0] }, 10),
   'the writer recorded the episode');
my $signals = $h->selectall_arrayref('SELECT sender, episode, episode_host, evidence FROM login_signals');
is(scalar @$signals, 1, 'one login_signals row');
is_deeply([@{ $signals->[0] }[0, 1]], [$user, 1], 'for the login, episode = 1 (spread)');
like($signals->[0][2], qr{^\Q${\ hostname() }\E/rateguard-[0-9a-f]{16}$}, 'episode_host: this host/instance');
like($signals->[0][3], qr/^networks=2 in 60 min, /, 'evidence: two networks in the window (60 min)');
diag "login_signals: episode_host=$signals->[0][2], evidence=$signals->[0][3]";
my $hijacked = log_line(\&rglog, qr/looks hijacked/);
like($hijacked, qr/warning: signals: \Q$user\E looks hijacked: spread tripped \(\Q$signals->[0][3]\E\); action HOLD until a window passes without a trip or `rateguard clear`$/,
     'rateguard logged the episode: the login, spread, the evidence of its row, HOLD');
diag "rateguard: $hijacked";
unlike(maillog(), qr/warning: problem talking to server/, 'Postfix had no trouble with the policy server');

is(stop_daemon($pid), 0, 'TERM: exit 0');
# Counted once the daemon is gone: its writer had every chance to log again.
my @hijacked = rglog() =~ /looks hijacked/g;
is(scalar @hijacked, 1, 'exactly one "looks hijacked" line in rateguard\'s log');
PrivatePostfix::stop($pf);
$h->disconnect;
done_testing();
