#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 81-signals.t - the hijacked-account signals (issue 29) through the policy
# port with the private MariaDB: each action's exact reply (HOLD,
# DEFER_IF_PERMIT, REJECT, lock, log); one episode gives one log line, one
# SUSPECTED_HIJACK webhook event and one metrics increment, across a
# restart and across two hosts on one database (the feed of every host's
# messages makes a login spread over two hosts one login); an allowlisted
# network and an exempt login never trip; IPv4-mapped IPv6 is the IPv4
# network; a malformed client_address counts toward no signal and is
# counted; `rateguard clear` ends an episode and undoes a lock; a country
# database made here drives the country signal; bad country databases are
# refused at -t and by a reload.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon migrated_database wait_until slurp test_dir ask run_rateguard
          status_json hooked dbh BLOCK_REPLY);
use Receiver;

my $DUNNO = "action=DUNNO\n\n";
my $TEXT = 'Held for review: this login looks hijacked';
my $dir = test_dir();
my $db = migrated_database('signals');
my $h = dbh($db);

# A message of $login from $addr through the daemon of $c.
my $n = 0;
sub msg {
    my ($c, $login, $addr) = @_;
    $n++;
    return ask($c, sasl_username => $login, client_address => $addr, recipient_count => 1, queue_id => "S$n",
               instance => "sig.$n");
}
sub lines_matching { my ($c, $re) = @_; return scalar(() = slurp($c->{log}) =~ /$re/g) }
sub signals_section { my (%kv) = @_; return { signals => join('', map { "$_ = $kv{$_}\n" } sort keys %kv) } }
sub metric {
    my ($c, $name) = @_;
    my (undef, $out) = run_rateguard('-c', $c->{path}, '--prometheus', 'status');
    return $out =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

# --- each action's exact reply: the third /24 trips spread = 3 ---
for my $case (['HOLD', "action=HOLD $TEXT (signal: spread)\n\n"],
              ['DEFER_IF_PERMIT', "action=DEFER_IF_PERMIT $TEXT (signal: spread)\n\n"],
              ['REJECT', "action=REJECT $TEXT (signal: spread)\n\n"],
              ['lock', "action=DEFER_IF_PERMIT $TEXT (locked: spread)\n\n"],
              ['log', $DUNNO]) {
    my ($action, $reply) = @$case;
    my $c = write_config(database => $db, name => "act$action", quota => 1000,
                         sections => signals_section(spread => 3, spread_action => qq{"$action"}));
    my $pid = start_daemon($c);
    my $login = lc($action) . '@example.org';
    is_deeply([map { msg($c, $login, "198.51.$_.7") } 1 .. 2], [$DUNNO, $DUNNO], "$action: two networks accepted");
    is(msg($c, $login, '198.51.3.7'), $reply, "$action: the third network gets the exact reply");
    is(msg($c, $login, '198.51.3.8'), $reply, "$action: and so does the next message of the open episode");
    ok(wait_until(sub { lines_matching($c, qr/signals: \Q$login\E looks hijacked: spread tripped \(networks=3 in 60 min/) == 1 }),
       "$action: the episode logged once, with its evidence");
    like(slurp($c->{log}), qr/S\d+: .*sasl_username=\Q$login\E.*status=\w+ \(SIGNAL spread: \Q$action\E\)/,
         "$action: the request's line names the signal and the action");
    my ($entry) = grep { $_->{sender} eq $login } @{ status_json($c)->{senders} // [] };
    is_deeply([$entry->{signal}, $entry->{signal_action}], $action eq 'log' ? ['spread', 'log'] : ['spread', $action],
              "$action: status names the episode's signal and action");
    my (undef, $listed) = run_rateguard('-c', $c->{path}, '--json', 'blocked');
    # (the logins of the cases before share the database: their episodes are adopted too)
    my @refused = map { "$_->{sender} $_->{reason}" } grep { $_->{sender} eq $login } @{ decode_json($listed)->{blocked} };
    is_deeply(\@refused, $action =~ /^(HOLD|log)$/ ? [] : ["$login signal"],
              "$action: blocked lists the login " . ($action =~ /^(HOLD|log)$/ ? 'not (it is not refused)' : 'as refused by a signal'));
    # (the writer is asynchronous: wait for the four rows, then add them up)
    wait_until(sub { ($h->selectrow_array("SELECT COUNT(*) FROM messages WHERE sender = ?", undef, $login))[0] == 4 });
    my ($blocked) = $h->selectrow_array("SELECT SUM(blocked) FROM messages WHERE sender = ?", undef, $login);
    is($blocked, $action =~ /^(HOLD|log)$/ ? 0 : 2, "$action: messages rows: " . ($action =~ /^(HOLD|log)$/ ? 'accepted' : 'blocked'));
    if ($action eq 'lock') {
        ok(wait_until(sub { join(',', $h->selectrow_array("SELECT quota, quota_locked FROM ratelimits WHERE sender = ?", undef, $login)) eq '0,1' }),
           'lock: the row\'s quota is 0, locked');
        my (undef, $shown) = run_rateguard('-c', $c->{path}, 'show', $login);
        like($shown, qr/^episode:     spread OPEN since .*\nlocked:      quota 0 by the signals' lock action, until `rateguard clear`$/m,
             'lock: show says why');
        my ($rc) = run_rateguard('-c', $c->{path}, 'clear', $login);
        is($rc, 0, 'clear: exit 0');
        is(join(',', $h->selectrow_array("SELECT quota, quota_locked FROM ratelimits WHERE sender = ?", undef, $login)),
           '1000,0', 'clear: the quota given back, unlocked');
        is(msg($c, $login, '198.51.9.7'), $DUNNO, 'clear: the next message (a new network) is accepted');
        (undef, $shown) = run_rateguard('-c', $c->{path}, 'show', $login);
        unlike($shown, qr/^locked:/m, 'clear: show no longer says locked');
    }
    is(stop_daemon($pid), 0, "$action: stopped");
}

# --- monitor mode: quota.dry_run turns every action into log, even lock ---
{
    my $c = write_config(database => $db, name => 'dry', quota => 1000,
                         sections => { %{ signals_section(spread => 2, spread_action => '"lock"') },
                                       quota => "dry_run = true\n" });
    my $pid = start_daemon($c);
    is_deeply([map { msg($c, 'dry@example.org', "198.51.$_.9") } 1 .. 3], [($DUNNO) x 3],
              'dry run: a lock episode answers the accept action');
    like(slurp($c->{log}), qr/sasl_username=dry\@example\.org.*status=ACCEPTED \(DRY_RUN: WOULD_BLOCK\) \(SIGNAL spread: log\)/,
         'dry run: logged as what would have been done');
    ok(wait_until(sub { slurp($c->{log}) =~ /dry\@example\.org looks hijacked: spread tripped .*; action log until/ }),
       'dry run: the episode is logged with the action log');
    # (the writer may not have written the row yet: wait for it, then look)
    my $row = sub { join(',', $h->selectrow_array("SELECT quota, quota_locked FROM ratelimits WHERE sender = 'dry\@example.org'")) };
    wait_until(sub { $row->() ne '' });
    is($row->(), '1000,0', 'dry run: the quota is not locked');
    is(stop_daemon($pid), 0, 'dry run: stopped');
}

# --- one episode: one log line, one webhook event, one metric; a restart ---
my $r = Receiver::start(log => "$dir/hook.log");
my $hookurl = "http://127.0.0.1:$r->{port}/hook";
my %sig = (spread => 4, ipv4_prefix => 24);
my $a = hooked($db, $hookurl, name => 'hostA', quota => 1000,
               sections => { %{ signals_section(%sig) }, cache => "refresh_interval = 1\n" });
my $pid = start_daemon($a);
my $login = 'roamer@example.org';
is_deeply([map { msg($a, $login, "203.0.$_.1") } 1 .. 3], [($DUNNO) x 3], 'three networks: accepted');
is(msg($a, $login, '203.0.4.1'), "action=HOLD $TEXT (signal: spread)\n\n", 'the fourth trips spread = 4');
ok(wait_until(sub { @{ Receiver::requests($r) } >= 1 }, 15), 'the webhook is called');
is(metric($a, 'rateguard_signal_episodes_total{signal="spread"}'), 1, 'one metric increment');
my $json = status_json($a);
is($json->{signals}{held}, 1, 'status JSON: one message held');
is(msg($a, $login, '203.0.5.1'), "action=HOLD $TEXT (signal: spread)\n\n", 'a fifth network: still held');
is(stop_daemon($pid), 0, 'stopped');
$pid = start_daemon($a);
is(msg($a, $login, '203.0.6.1'), "action=HOLD $TEXT (signal: spread)\n\n",
   'after a restart the episode is still open (the database and the feed)');
sleep 3;    # a wrong second claim would be logged and sent within the walk's second
is(lines_matching($a, qr/looks hijacked/), 1, 'one log line across the restart');
is(metric($a, 'rateguard_signal_episodes_total{signal="spread"}'), 0, 'this run claimed nothing');
my @events = map { decode_json($_->{body}) } @{ Receiver::requests($r) };
is(scalar @events, 1, 'one webhook event across the restart');
is($events[0]{event}, 'SUSPECTED_HIJACK', 'its kind');
is($events[0]{sender}, $login, 'its login');
is($events[0]{signals}, 'spread', 'its signal');
is($events[0]{action}, 'HOLD', 'its action');
like($events[0]{evidence}, qr/^networks=4 in 60 min, rate=4, baseline=0\.00 over 0 window\(s\)$/, 'its evidence');
is_deeply($h->selectrow_arrayref("SELECT episode, episode_host <> '' FROM login_signals WHERE sender = ?", undef, $login),
          [1, 1], 'login_signals: the episode and who claimed it');

# --- two hosts on one database: the login's networks split between them ---
my $b = hooked($db, $hookurl, name => 'hostB', quota => 1000,
               sections => { %{ signals_section(%sig) }, cache => "refresh_interval = 1\n" });
my $pidb = start_daemon($b);
my $two = 'split@example.org';
is_deeply([msg($a, $two, '192.0.2.1'), msg($b, $two, '192.0.3.1'), msg($a, $two, '192.0.4.1')], [($DUNNO) x 3],
          'three networks over two hosts: accepted');
sleep 5;    # the feed reads every second the rows made up to 2 s ago, created_at rounded to the second: at most 4 s
is(msg($b, $two, '192.0.5.1'), "action=HOLD $TEXT (signal: spread)\n\n",
   'host B trips on the fourth: it sees host A\'s networks');
ok(wait_until(sub { (lines_matching($a, qr/\Q$two\E looks hijacked/) + lines_matching($b, qr/\Q$two\E looks hijacked/)) == 1 }),
   'logged once');
is(msg($a, $two, '192.0.6.1'), "action=HOLD $TEXT (signal: spread)\n\n", 'host A holds it too');
sleep 3;
is(lines_matching($a, qr/\Q$two\E looks hijacked/) + lines_matching($b, qr/\Q$two\E looks hijacked/), 1,
   'one log line across the two hosts');
@events = grep { $_->{sender} eq $two } map { decode_json($_->{body}) } @{ Receiver::requests($r) };
is(scalar @events, 1, 'one webhook event across the two hosts');
is((metric($a, 'rateguard_signal_episodes_total{signal="spread"}') // 0) + (metric($b, 'rateguard_signal_episodes_total{signal="spread"}') // 0),
   1, 'one metric increment across the two hosts');

# --- clear ends an episode on every host ---
my ($rc) = run_rateguard('-c', $a->{path}, 'clear', $two);
is($rc, 0, 'clear: exit 0');
ok(wait_until(sub { msg($b, $two, '192.0.7.1') eq $DUNNO }), 'the other host takes the clear (at its refresh)');
is(msg($a, $two, '192.0.8.1'), $DUNNO, 'and this one at once');
($rc, undef, my $err) = run_rateguard('-c', $a->{path}, 'clear', 'nobody@example.org');
is($rc, 1, 'clear of a login with no signals: exit 1 (as show of an unknown sender)');
like($err, qr/clear: no signals kept for 'nobody\@example.org'/, '... saying so');
is(stop_daemon($pidb), 0, 'host B stopped');
is(stop_daemon($pid), 0, 'host A stopped');

# --- allowlist, exempt login, IPv4-mapped, malformed addresses ---
my $c = write_config(database => $db, name => 'lists', quota => 1000,
                     sections => signals_section(spread => 2, allow_networks => '{ "198.18.0.0/15" }',
                                                 exempt_logins => '{ "Relay@Example.org" }'));
$pid = start_daemon($c);
is_deeply([map { msg($c, 'webmail@example.org', "198.18.$_.1") } 1 .. 6], [($DUNNO) x 6],
          'six /24s inside an allowlisted network never trip spread = 2');
is_deeply([map { msg($c, 'relay@example.org', "100.64.$_.1") } 1 .. 6], [($DUNNO) x 6],
          'an exempt login (any case) never trips');
is_deeply([msg($c, 'mapped@example.org', '::ffff:198.51.100.7'), msg($c, 'mapped@example.org', '198.51.100.9')],
          [$DUNNO, $DUNNO], 'an IPv4-mapped IPv6 address is its IPv4 /24: one network');
is_deeply([msg($c, 'bad@example.org', 'not-an-address'), msg($c, 'bad@example.org', ''),
           msg($c, 'bad@example.org', '198.51.100.1')], [$DUNNO, $DUNNO, $DUNNO],
          'malformed and missing addresses count toward no signal');
is(status_json($c)->{signals}{bad_address}, 2, '... and are counted');
is(stop_daemon($pid), 0, 'stopped');

# --- a country database made here drives the country signal ---
my $mmdb = "$dir/country.mmdb";
system($^X, "$FindBin::Bin/make-country-db", $mmdb, '198.51.100.0/24=DE', '203.0.113.0/24=FR',
       '192.0.2.0/24=NL') == 0 or die 'make-country-db failed';
$c = write_config(database => $db, name => 'geo', quota => 1000,
                  sections => signals_section(spread => 0, countries => 2, country_database => qq{"$mmdb"}));
$pid = start_daemon($c);
is_deeply([msg($c, 'trip@example.org', '198.51.100.1'), msg($c, 'trip@example.org', '198.51.100.2')],
          [$DUNNO, $DUNNO], 'two messages from DE');
is(msg($c, 'trip@example.org', '203.0.113.1'), "action=HOLD $TEXT (signal: countries)\n\n", 'a second country trips countries = 2');
ok(wait_until(sub { slurp($c->{log}) =~ /trip\@example\.org looks hijacked: countries tripped \(networks=2 in 60 min, countries=2,/ }),
   'logged with the countries');

# A reload with a damaged database keeps the running one.
open my $fh, '>', "$dir/damaged.mmdb" or die;
print $fh 'x' x 4096;
close $fh;
my $conf = slurp($c->{path});
(my $bad = $conf) =~ s/\Q$mmdb\E/$dir\/damaged.mmdb/;
open $fh, '>', $c->{path} or die;
print $fh $bad;
close $fh;
kill 'HUP', $pid;
ok(wait_until(sub { slurp($c->{log}) =~ /signals\.country_database: \S+damaged\.mmdb: not a MaxMind database/ }),
   'HUP with a damaged database: refused, with the reason');
is_deeply([msg($c, 'trip2@example.org', '198.51.100.1'), msg($c, 'trip2@example.org', '192.0.2.1')],
          [$DUNNO, "action=HOLD $TEXT (signal: countries)\n\n"], 'the old database still answers');
is(stop_daemon($pid), 0, 'stopped');

# Refused at -t: missing, damaged, a database without countries.
system($^X, "$FindBin::Bin/make-country-db", '--type', 'GeoLite2-ASN', "$dir/asn.mmdb", '198.51.100.0/24=AS64496') == 0
    or die 'make-country-db --type failed';
for my $case (["$dir/missing.mmdb", qr/cannot open: No such file or directory/],
              ["$dir/damaged.mmdb", qr/not a MaxMind database/],
              ["$dir/asn.mmdb", qr/database type 'GeoLite2-ASN' has no country data/]) {
    my ($path, $why) = @$case;
    my $t = write_config(database => $db, name => 'badgeo', sections => signals_section(country_database => qq{"$path"}));
    my ($trc, undef, $terr) = run_rateguard('-c', $t->{path}, '-t');
    is($trc, 5, "-t refuses $path: configuration error");
    like($terr, qr/badgeo\.conf:\d+: signals\.country_database: \Q$path\E: $why/, '... with the line and the reason');
}
done_testing();
