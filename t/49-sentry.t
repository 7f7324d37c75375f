#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 49-sentry.t - the daemon's own errors reach Sentry through the envelope
# endpoint of a real HTTP receiver: bad DSNs refused at -t naming the key;
# a refused record and workers killed by SIGKILL and SIGSEGV give exactly
# the expected events (path, X-Sentry-Auth, envelope and event fields);
# 50 identical errors give one event, the 49 repeats counted and carried by
# the next event of that kind; a receiver that hangs delays no reply; the
# DSN's key is never logged; a damaged queue file (fatal at start) is sent
# by the master before it exits. Issue 25: http to a host other than this
# one is refused at -t (the key would travel in clear text); a legacy
# KEY:SECRET DSN's secret is in no envelope, no request and no log.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use JSON::PP;
use Sys::Hostname;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request migrated_database dbh
          wait_until slurp test_dir run_rateguard children_of status_json);
use Receiver;

my $KEY = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';
my $SECRET = 'legacysecret5e6f7a8b9c0d1e2f3a4b';
my $ACCEPT = "action=DUNNO\n\n";

# --- -t refuses a bad DSN and names the key, never quoting the key ---
my @bad = (
    ['ftp://k@h.example/1', 'the scheme must be http or https'],
    ['https://h.example/1', 'no public key'],
    ['https://k@h.example', 'no project id'],
    ['https://k@h.example/x/abc', 'the project id \(the last part of the path\) must be a number'],
    ['https://k@h.example:99999/1', 'the port is out of range 1\.\.65535'],
    ["https://s3cr3tk\@h.example:80/", 'the project id'],
    ['http://s3cr3tk@sentry.example.com/1',
     'http would send the key in clear text to sentry\.example\.com: use https \(http only to localhost, 127\.0\.0\.0/8 or \[::1\]\)$'],
    ['http://s3cr3tk:oldsecret@192.0.2.7:9000/1',
     'http would send the key in clear text to 192\.0\.2\.7: use https \(http only to localhost, 127\.0\.0\.0/8 or \[::1\]\)$'],
);
for my $case (@bad) {
    my ($dsn, $why) = @$case;
    my $c = write_config(name => 'bad', sections => { sentry => qq{dsn = "$dsn"\n} });
    my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, '-t');
    is($rc, 5, "-t refuses $dsn: exit 5");
    like($err, qr/bad\.conf:\d+: sentry\.dsn: not a usable Sentry DSN: $why/m, '... naming sentry.dsn and why');
    unlike($err, qr/s3cr3tk|oldsecret/, '... without the key') if $dsn =~ /s3cr3tk/;
}
my $dir = test_dir();
open my $fh, '>', "$dir/bad.dsn" or die;
print $fh "https://s3cr3tk\@h.example/notanumber\n";
close $fh;
my $c = write_config(name => 'badfile', sections => { sentry => qq{dsn_file = "$dir/bad.dsn"\n} });
my ($rc, undef, $err) = run_rateguard('-c', $c->{path}, '-t');
is($rc, 5, 'a bad DSN in dsn_file: exit 5');
like($err, qr/sentry\.dsn_file: the DSN in \Q$dir\E\/bad\.dsn: the project id/, '... naming sentry.dsn_file');
unlike($err, qr/s3cr3tk/, '... without the key');
$c = write_config(name => 'both', sections => { sentry => qq{dsn = "https://k\@h.example/1"\ndsn_file = "$dir/bad.dsn"\n} });
($rc, undef, $err) = run_rateguard('-c', $c->{path}, '-t');
is($rc, 5, 'dsn and dsn_file both set: exit 5');
like($err, qr/sentry\.dsn_file: set either sentry\.dsn or sentry\.dsn_file, not both/, '... said so');

# --- a daemon reporting to a receiver ---
my $db = migrated_database('sentry');
my $h = dbh($db);
$h->do('ALTER TABLE messages MODIFY msgid varchar(5) DEFAULT NULL');   # long queue ids: refused records
my $recv = Receiver::start(log => "$dir/sentry.jsonl");
# A legacy DSN with a secret: it must not leave the host (issue 25).
my $dsn = "http://$KEY:$SECRET\@127.0.0.1:$recv->{port}/42";
open $fh, '>', "$dir/good.dsn" or die;
print $fh "$dsn\n";
close $fh;
$c = write_config(database => $db, quota => 1000,
                  sections => { workers => "min = 3\n",
                                sentry => qq{dsn_file = "$dir/good.dsn"\nenvironment = "test"\nrelease = "rg-test-1"\ntimeout = 2\n} });
($rc) = run_rateguard('-c', $c->{path}, '-t');
is($rc, 0, 'a good DSN from dsn_file: -t passes');
# (Under AddressSanitizer, SIGSEGV is left to its default action so that a
# worker killed with it dies of it, as it does in a normal build.)
my $pid = start_daemon($c, env => { ASAN_OPTIONS => join(':', grep { $_ } $ENV{ASAN_OPTIONS}, 'handle_segv=0') });
like(slurp($c->{log}), qr/sentry: errors are sent to http:\/\/\*\*\*\*\@127\.0\.0\.1:$recv->{port}\/42 \(environment test, at most one per kind every 60 s\)/,
     'the DSN is logged with its key masked');

sub events {
    my ($r) = @_;
    my @ev;
    for my $req (@{ Receiver::requests($r // $recv) }) {
        my ($head, $item, $payload, @more) = split /\n/, $req->{body}, -1;
        push @ev, { req => $req, head => decode_json($head), item => decode_json($item), payload => $payload,
                    event => decode_json($payload), rest => \@more };
    }
    return @ev;
}
# The master's children now, and a wait until none of them is left (a
# reload retires every worker and restarts the writer and the notifier).
sub children_now { return { map { $_ => 1 } children_of($pid) } }
sub replaced {
    my ($old) = @_;
    return wait_until(sub { my @k = children_of($pid); @k && !grep { $old->{$_} } @k }, 10);
}
sub errors_logged { return scalar(() = slurp($c->{log}) =~ /^\S+ \S+ rateguard\[\d+\]: error: /mg) }
# The `sentry:` line of `rateguard status`: {queued sent failed suppressed dropped}, or undef.
sub sentry_status {
    my (undef, $text) = run_rateguard('-c', $c->{path}, 'status');
    my @n = $text =~ /^sentry: (\d+) event\(s\) queued, (\d+) sent, (\d+) failed, (\d+) repeat\(s\) suppressed, (\d+) dropped/m
        or return undef;
    my %st;
    @st{qw(queued sent failed suppressed dropped)} = @n;
    return \%st;
}

# 50 records the database refuses: 50 identical errors, one event.
my $s = policy_connect($c);
is(policy_request($s, sasl_username => 'burst@example.org', recipient_count => 1, queue_id => sprintf('LONGID%02d', $_)),
   $ACCEPT, "refused record $_ answered") for 1 .. 50;
ok(wait_until(sub { (() = slurp("$dir/rejected.log") =~ /sentry|msgid=LONGID/g) >= 50 }, 30), '50 records set aside');
ok(wait_until(sub { grep { $_->{event}{message}{formatted} =~ /refused by the database/ } events() }, 10),
   'an event arrives');
# Settled: the notifier has dealt with all 50 (the 49 repeats counted) and
# sent all it queued, so the receiver has everything it will get of them.
ok(wait_until(sub { my $st = sentry_status(); $st && $st->{suppressed} >= 49 && $st->{queued} == $st->{sent} + $st->{failed} + $st->{dropped} }, 10),
   'the notifier has nothing left to send') or diag explain sentry_status();
my @refused = grep { $_->{event}{message}{formatted} =~ /refused by the database/ } events();
is(scalar @refused, 1, '50 identical errors: exactly one event');
my $ev = $refused[0];
is($ev->{req}{method}, 'POST', 'POST');
is($ev->{req}{target}, '/api/42/envelope/', 'to the envelope endpoint of project 42');
is($ev->{req}{headers}{'x-sentry-auth'}, "Sentry sentry_version=7, sentry_key=$KEY, sentry_client=rateguard/0.1.0",
   'X-Sentry-Auth built from the DSN');
is($ev->{req}{headers}{'content-type'}, 'application/x-sentry-envelope', 'content type');
like($ev->{head}{event_id}, qr/^[0-9a-f]{32}$/, 'envelope header: event_id');
is($ev->{head}{dsn}, "http://$KEY\@127.0.0.1:$recv->{port}/42", 'envelope header: dsn, the key without the secret');
is(scalar(grep { index($_->{body} . join(' ', values %{ $_->{headers} }) . $_->{target}, $SECRET) >= 0 }
              @{ Receiver::requests($recv) }), 0, 'the secret is in no request the receiver got');
like($ev->{head}{sent_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'envelope header: sent_at');
is_deeply($ev->{item}, { type => 'event', length => length($ev->{payload}) }, 'item header: type event, exact length');
is_deeply($ev->{rest}, [''], 'the payload ends the envelope with a newline');
my $e = $ev->{event};
is($e->{event_id}, $ev->{head}{event_id}, 'event_id as in the envelope header');
like($e->{timestamp}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'timestamp');
is_deeply([@$e{qw(level logger platform server_name release environment)}],
          ['error', 'rateguard.writer', 'c', hostname(), 'rg-test-1', 'test'], 'level, logger, platform, server, release, environment');
like($e->{message}{formatted}, qr/^writer: record \d+ for burst\@example\.org refused by the database \(.*Data too long.*\); kept in .*rejected\.log and skipped$/,
     'the message is the log line');
like($e->{message}{message}, qr/^writer: record %\S+ for %s refused by the database/, 'the template');
is_deeply($e->{fingerprint}, [$e->{message}{message}], 'grouped by template');
is($e->{tags}{process}, 'writer', 'tag process');
like($e->{tags}{instance}, qr/^rateguard-[0-9a-f]{16}$/, 'tag instance');
is($e->{extra}{suppressed_repeats}, 0, 'the first of its kind: nothing suppressed before it');
my $st = sentry_status() // {};
is($st->{suppressed}, 49, 'status: the 49 repeats suppressed');
# What status says was sent is what the receiver got; every error line of
# the log is an event the receiver got or a counted repeat.
my $received = () = events();
is_deeply([@$st{qw(sent failed dropped)}], [$received, 0, 0], "status: $received sent (the receiver's count), none failed or dropped");
is($received + $st->{suppressed}, errors_logged(), 'events received + suppressed repeats = error lines logged');

# Workers killed by signals: reported by the master with the signal.
my $writer = status_json($c)->{writer_pid};
my ($notifier) = slurp($c->{log}) =~ /notifier (\d+) started/;
my @workers = grep { $_ != $writer && $_ != $notifier } children_of($pid);
cmp_ok(scalar @workers, '>=', 2, 'two workers to kill');
my $before = () = events();
kill 'KILL', $workers[0];
ok(wait_until(sub { grep { ($_->{event}{tags}{signal} // '') eq '9' } events() }, 10), 'SIGKILL: an event');
kill 'SEGV', $workers[1];
ok(wait_until(sub { grep { ($_->{event}{tags}{signal} // '') eq '11' } events() }, 10), 'SIGSEGV: an event');
ok(wait_until(sub { my $st = sentry_status(); $st && $st->{queued} == $st->{sent} + $st->{failed} + $st->{dropped} }, 10),
   'the notifier has nothing left to send');
my @new = (events())[$before .. $#{ [events()] }];
is(scalar @new, 2, 'exactly two events for the two deaths');
my ($k9) = grep { $_->{event}{tags}{signal} eq '9' } @new;
my ($k11) = grep { $_->{event}{tags}{signal} eq '11' } @new;
# A worker that had served nothing is respawned after a delay the line names.
like($k9->{event}{message}{formatted}, qr/^worker $workers[0] killed by signal 9(; the next one starts in \d+ s)?$/,
     'SIGKILL: the message');
is_deeply([@{ $k9->{event} }{qw(level logger)}, $k9->{event}{tags}{process}], ['error', 'rateguard.master', 'master'],
          'SIGKILL: level error, sent for the master');
like($k11->{event}{message}{formatted}, qr/^worker $workers[1] killed by signal 11( \(core dumped\))?(; the next one starts in \d+ s)?$/, 'SIGSEGV: the message');
is($k11->{event}{level}, 'fatal', 'SIGSEGV: level fatal');
isnt(join(',', @{ $k9->{event}{fingerprint} }), join(',', @{ $k11->{event}{fingerprint} }), 'different signals, different kinds');

# The repeats travel with the next event of the kind: a shorter window
# (reload), then one more refused record.
my $conf = slurp($c->{path}) =~ s/timeout = 2\n/timeout = 2\nrate_limit = 1\n/r;
open $fh, '>', $c->{path} or die;
print $fh $conf;
close $fh;
my $old = children_now();
kill 'HUP', $pid;
ok(wait_until(sub { slurp($c->{log}) =~ /at most one per kind every 1 s/ }, 10), 'reloaded with rate_limit 1');
ok(replaced($old), 'every child of the old configuration replaced');
close $s;
$s = policy_connect($c);    # workers are recycled by the reload (and two were killed)
is(policy_request($s, sasl_username => 'burst@example.org', recipient_count => 1, queue_id => 'LONGID51'), $ACCEPT,
   'one more refused record');
ok(wait_until(sub { (grep { $_->{event}{message}{formatted} =~ /refused by the database/ } events()) == 2 }, 20),
   'a second event of the kind');
my $second = (grep { $_->{event}{message}{formatted} =~ /refused by the database/ } events())[1];
is($second->{event}{extra}{suppressed_repeats}, 49, 'it carries the 49 repeats suppressed since the first');

# A receiver that hangs: the notifier waits sentry.timeout, replies do not.
my $hang = Receiver::start(log => "$dir/hang.jsonl", delay => 60);
open $fh, '>', "$dir/good.dsn" or die;
print $fh "http://$KEY\@127.0.0.1:$hang->{port}/7\n";
close $fh;
$old = children_now();
kill 'HUP', $pid;
ok(wait_until(sub { slurp($c->{log}) =~ /127\.0\.0\.1:$hang->{port}\/7/ }, 10), 'reloaded towards the hanging receiver');
ok(replaced($old), 'every child of the old configuration replaced');
close $s;
$s = policy_connect($c);
policy_request($s, sasl_username => 'burst@example.org', recipient_count => 1, queue_id => 'LONGID52');
ok(wait_until(sub { @{ Receiver::requests($hang) } == 1 }, 20), 'the hanging receiver got the event');
my @r = map { policy_request($s, sasl_username => "calm$_\@example.org", recipient_count => 1, queue_id => "Q$_") } 1 .. 20;
is_deeply(\@r, [($ACCEPT) x 20], 'while it hangs, 20 requests are answered exactly');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE sender LIKE 'calm%'}))[0] == 20 }, 20),
   'and written');
ok(wait_until(sub { slurp($c->{log}) =~ /warning: sentry: event [0-9a-f]{32} not delivered to http:\/\/\*\*\*\*\@127\.0\.0\.1:$hang->{port}\/7 \(Timeout/ }, 20),
   'the notifier gives up after sentry.timeout, a warning');
close $s;
my ($queue) = glob("$dir/rateguard-*.queue");
is(stop_daemon($pid), 0, 'TERM: exit 0');

# A damaged queue file stops the start (fatal): the master sends that
# event itself, before it exits, since no notifier will run.
open $fh, '>', "$dir/good.dsn" or die;
print $fh "$dsn\n";
close $fh;
ok(defined $queue, 'the queue file the daemon had');
# The daemon left it empty and removed it: a damaged one in its place,
# owned by the daemon's user as its own would be.
open $fh, '>', $queue or die "$queue: $!";
print $fh 'x' x 8192;
close $fh;
chown((getpwnam($> == 0 ? 'nobody' : scalar getpwuid($>)))[2, 3], $queue);
my $before_fatal = () = events();
($rc, undef, $err) = run_rateguard('-c', $c->{path}, '-f', 'run');
is($rc, 6, 'a damaged queue file: exit 6');
like($err, qr/fatal: cannot use the write-back queue: \S+\.queue: not a rateguard queue/, 'logged as fatal');
my @fatal = (events())[$before_fatal .. $#{ [events()] }];
is(scalar @fatal, 1, 'one event, sent before the exit');
is_deeply([map { $_->{event}{level} } @fatal], ['fatal'], 'level fatal');
like($fatal[0]{event}{message}{formatted} // '', qr/^cannot use the write-back queue: \S+\.queue: not a rateguard queue/, 'the message');
is($fatal[0]{event}{tags}{process}, 'master', 'from the master');
unlink $queue;
unlike(slurp($c->{log}) . slurp("$c->{log}.stdout") . $err, qr/$KEY/, 'the key is never logged');
unlike(slurp($c->{log}) . slurp("$c->{log}.stdout") . $err, qr/$SECRET/, 'nor the secret');
Receiver::stop($_) for $recv, $hang;
$h->disconnect;
done_testing();
