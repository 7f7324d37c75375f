#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 44-db-tls.t - TLS to the database (database { tls tls_ca tls_cert tls_key
# tls_verify_server }) against the suite's private MariaDB, which serves
# TLS with a test CA made by t/mariadb-server with openssl. A user that the
# server lets in over TLS only: refused without TLS, refused (and logged)
# with the wrong CA, served with the right one, by the commands and by the
# daemon's writer alike.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          fresh_database dbh wait_until slurp);

my $tls = $ENV{RG_DB_TLS_DIR};
# The port of the server now: an outage test before this one restarted it.
($ENV{RG_DB_PORT}) = RG::slurp("$ENV{RG_BUILD}/mariadb/env") =~ /^RG_DB_PORT=(\d+)$/m;
plan skip_all => 'the private MariaDB has no test CA (t/mariadb-server makes one)' unless $tls && -f "$tls/ca.pem";

# t/mariadb-server creates the user "<test user>_tls", allowed in over TLS only.
my $db = fresh_database('tls');
my $tls_user = "$ENV{RG_DB_USER}_tls";

sub tls_config {
    my ($name, $tls_lines) = @_;
    return write_config(name => $name, database => $db,
                        sections => { database => qq{socket = ""\nhost = "127.0.0.1"\nport = $ENV{RG_DB_PORT}\n}
                                                . qq{user = "$tls_user"\npassword = "$ENV{RG_DB_PASSWORD}"\n$tls_lines} });
}

my $plain = tls_config('plain', '');
my ($rc, $out, $err) = run_rateguard('-c', $plain->{path}, 'migrate');
is($rc, 6, 'without TLS the TLS-only user is refused: exit 6');
like($err, qr/connect to database '\Q$db\E' as '$tls_user' at 127\.0\.0\.1: Access denied/, 'the refusal names the server');

my $wrong = tls_config('wrong', qq{tls = true\ntls_ca = "$tls/other-ca.pem"\n});
($rc, $out, $err) = run_rateguard('-c', $wrong->{path}, 'migrate');
is($rc, 6, 'TLS with the wrong CA: exit 6');
like($err, qr/connect to database '\Q$db\E' as '$tls_user' at 127\.0\.0\.1 \(TLS\): .*(certificate|verif|SSL|TLS)/i,
     'logged as a TLS connection whose certificate could not be verified');

my $right = tls_config('right', qq{tls = true\ntls_ca = "$tls/ca.pem"\n});
($rc, $out, $err) = run_rateguard('-c', $right->{path}, 'migrate');
is($rc, 0, 'TLS with the right CA: migrate works') or diag $err;
my $pid = start_daemon($right);
my $s = policy_connect($right);
is(policy_request($s, sasl_username => 'tls@example.org', queue_id => 'QTLS'), "action=DUNNO\n\n", 'the daemon serves');
close $s;
my $h = dbh($db);
ok(wait_until(sub { ($h->selectrow_array(q{SELECT COUNT(*) FROM messages WHERE msgid = 'QTLS'}))[0] == 1 }, 10),
   'and its writer, over TLS, wrote the message');
is(stop_daemon($pid), 0, 'TERM: exit 0');

my $badpair = tls_config('pair', qq{tls = true\ntls_cert = "$tls/server.pem"\n});
($rc, $out, $err) = run_rateguard('-c', $badpair->{path}, '-t');
is($rc, 5, 'tls_cert without tls_key: refused by -t');
like($err, qr/database\.tls_cert and database\.tls_key go together/, 'naming the keys');
my $nontls = tls_config('nontls', qq{tls_ca = "$tls/ca.pem"\n});
($rc, $out, $err) = run_rateguard('-c', $nontls->{path}, '-t');
is($rc, 5, 'tls_ca without tls = true: refused by -t');

$h->disconnect;
done_testing();
