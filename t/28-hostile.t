#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 28-hostile.t - hostile input and clients: a corpus of malformed requests,
# each with its documented outcome while the daemon keeps serving others;
# an IPv6-only allow-list; the warning about a world-readable configuration
# that holds a password.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::IP;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request policy_send request_text
          migrated_database dbh wait_until slurp free_port);

$SIG{PIPE} = "IGNORE";    # the server may close while we still write garbage
my $db = migrated_database("hostile");
my $c = write_config(database => $db, quota => 1000);
chmod 0644, $c->{path};     # world-readable, and it holds the database password
my $pid = start_daemon($c);
like(slurp($c->{log}), qr/warning: \Q$c->{path}\E is readable by every user and holds the database password/,
     'a world-readable configuration with a password is warned about');

my $good = policy_connect($c);
my @cases = (
    ['10000 attributes', join('', map { "a$_=1\n" } 1 .. 10000) . "\n", '', qr/too many attributes/],
    ['1 MB of garbage', 'x' x 1_000_000, '', qr/line too long/],
    ['NUL byte', "request=smtpd_access_policy\nsasl_username=a\0b\n\n", '', qr/NUL byte in request/],
    ['= without a name', "request=smtpd_access_policy\n=oops\n\n", '', qr/attribute without a name/],
    ['line without =', "request=smtpd_access_policy\njunk\n\n", '', qr/line without '='/],
    ['overlong helo line', request_text(helo_name => 'h' x 9000), '', qr/line too long/],
);
for my $case (@cases) {
    my ($what, $bytes, $want, $logged) = @$case;
    my $s = policy_connect($c);
    my $got = eval { policy_send($s, $bytes) } // '';
    is($got, $want, "$what: closed without a reply");
    close $s;
    ok(wait_until(sub { slurp($c->{log}) =~ /client 127\.0\.0\.1:\d+: malformed request \($logged\)/ }, 5),
       "$what: logged with the client");
    is(policy_request($good, sasl_username => 'steady@example.org'), "action=DUNNO\n\n",
       "$what: others are still served");
}

# A request that ends before its blank line: nothing answered, logged.
my $s = policy_connect($c);
(my $cut = request_text(sasl_username => 'cut@example.org')) =~ s/\n\n\z/\n/;
print {$s} $cut;
$s->shutdown(1);
is(RG::read_reply($s), '', 'missing blank line, then EOF: no reply');
close $s;
ok(wait_until(sub { slurp($c->{log}) =~ /connection closed inside a request/ }, 5), 'logged');

# Input that is hostile but well-formed gets ordinary answers.
is(policy_request($good, sasl_username => 'status', helo_name => 'status printshm'),
   "action=DUNNO\n\n", 'a "status" word inside attribute values is just data');
is(policy_request($good, sasl_username => "bad\xff\xfe\@example.org"), "action=DUNNO\n\n",
   'invalid UTF-8 in sasl_username: on_error (DUNNO), counted nowhere');
like(slurp($c->{log}), qr/sasl_username=bad\S* cannot be stored in the database \(not valid UTF-8\)/, '... and logged');
is(policy_request($good, sasl_username => 'utf8@example.org', helo_name => "h\xff\xfe", sender => "s\xffx\@example.org"),
   "action=DUNNO\n\n", 'invalid UTF-8 elsewhere: counted');
my $h = dbh($db);
ok(wait_until(sub { ($h->selectrow_array(q{SELECT from_addr FROM messages WHERE sender = 'utf8@example.org'}))[0] }),
   'its row is written');
is(($h->selectrow_array(q{SELECT from_addr FROM messages WHERE sender = 'utf8@example.org'}))[0], 's?x@example.org',
   'with the invalid byte replaced by ?');
is(($h->selectrow_array(q{SELECT COUNT(*) FROM ratelimits WHERE sender LIKE 'bad%' OR sender = 'status'}))[0], 1,
   'only the well-formed "status" sender has a row');

# Senders that would break string-built SQL, control bytes, multi-byte
# characters, exactly 255 characters: each stored exactly, in its own row;
# one character more is refused, not truncated into the 255-character row.
my $l255 = ('l' x 243) . '@example.org';
my @odd = ("o'brien\\\"x\@example.org", "semi;--drop\@example.org", "ctl\x01\x1f\x7f\@example.org",
           "\x{e9}l\x{e8}ve\x{2603}\@example.org", $l255);
for my $sender (@odd) {
    my $wire = $sender;
    utf8::encode($wire);
    is(policy_request($good, sasl_username => $wire), "action=DUNNO\n\n", 'odd sender answered: ' . length($sender));
}
is(policy_request($good, sasl_username => $l255 . 'x'), "action=DUNNO\n\n", '256 characters: answered on_error');
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM ratelimits WHERE sender = ?}, undef, $l255))[0] }),
   'odd senders written');
for my $sender (@odd) {
    is_deeply($h->selectall_arrayref(q{SELECT sender, msg_total FROM ratelimits WHERE BINARY sender = ?}, undef, $sender),
              [[$sender, 1]], 'stored exactly, counted once: ' . length($sender) . ' characters');
}
is(($h->selectrow_array(q{SELECT COUNT(*) FROM ratelimits WHERE sender LIKE 'llll%'}))[0], 1,
   'the 256-character sender made no row of its own and did not count into the 255-character one');
like(slurp($c->{log}), qr/sasl_username=l+\.\.\. cannot be stored in the database \(longer than 255 characters\)/,
     'the 256-character sender is logged');
close $good;
is(stop_daemon($pid), 0, 'TERM: exit 0');

# An IPv6-only allow-list.
SKIP: {
    my $probe = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1);
    skip 'no IPv6 loopback here', 4 unless $probe;
    close $probe;
    my $port = free_port();
    my $c6 = write_config(database => $db, name => 'v6', port => $port,
                          listen => qq{"127.0.0.1:$port", "[::1]:$port"}, extra => qq{allowed_clients = { "::1/128" }\n});
    my $p6 = start_daemon($c6);
    my $v4 = policy_connect($c6);
    is(policy_send($v4, request_text()), '', 'IPv4 client outside an IPv6-only list: refused');
    my $v6 = IO::Socket::IP->new(PeerHost => '::1', PeerPort => $port) or die "::1: $!";
    is(policy_send($v6, request_text(sasl_username => 'v6@example.org')), "action=DUNNO\n\n", 'IPv6 client inside: served');
    like(slurp($c6->{log}), qr/client 127\.0\.0\.1:\d+: not in allowed_clients, connection refused/, 'refusal logged');
    is(stop_daemon($p6), 0, 'TERM: exit 0');
}
$h->disconnect;
done_testing();
