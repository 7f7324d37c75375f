#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 39-domains.t - per-domain defaults (table domain_quotas, migration 005):
# a new sender starts with its domain's quota; a sender whose row has no
# msg_quota, rcpt_quota or block_action uses its domain's; a sender's own
# values win (sender > domain > global); changes reach the running daemon.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard
          migrated_database dbh wait_until slurp BLOCK_REPLY status_json fields row);

my $db = migrated_database('domains');
my $h = dbh($db);
my $OK = "action=DUNNO\n\n";
my $TEXT = BLOCK_REPLY =~ s/^action=\S+//r;    # " Rate limit reached, retry later.\n\n"
my $BLOCK = "action=DEFER_IF_PERMIT$TEXT";

my $dom = $h->prepare(q{INSERT INTO domain_quotas (domain, quota, msg_quota, rcpt_quota, block_action) VALUES (?, ?, ?, ?, ?)});
$dom->execute('small.example', 3, undef, undef, undef);
$dom->execute('big.example', 1000, 2, 50, undef);
$dom->execute('hold.example', 1, undef, undef, 'HOLD');
$h->do(q{INSERT INTO ratelimits (sender, quota, quota_reset) VALUES ('own@small.example', 10, 10)});
$h->do(q{INSERT INTO ratelimits (sender, quota, quota_reset, msg_quota) VALUES ('mine@big.example', 1000, 1000, 4)});

my $c = write_config(database => $db, quota => 5);
my $pid = start_daemon($c);
my $s = policy_connect($c);
sub send_as { my ($who, $rcpt) = @_; policy_request($s, sasl_username => $who, recipient_count => $rcpt // 1) }
sub seq { my ($who, $n, $rcpt) = @_; [map { send_as($who, $rcpt) } 1 .. $n] }

is_deeply(seq('new@Small.Example', 4), [$OK, $OK, $OK, $BLOCK], "a new sender of small.example: the domain's quota 3");
ok(wait_until(sub { ($h->selectrow_array(q{SELECT quota FROM ratelimits WHERE sender = 'new@Small.Example'}))[0] }),
   'its row is written');
is_deeply($h->selectrow_arrayref(q{SELECT quota, quota_reset FROM ratelimits WHERE sender = 'new@small.example'}),
          [3, 3], 'and starts with quota 3');
is_deeply(seq('own@small.example', 10), [($OK) x 10], 'a sender with its own row keeps its quota 10');
is_deeply(seq('x@big.example', 3), [$OK, $OK, $BLOCK], "big.example's msg_quota 2 for a sender without its own");
is_deeply(seq('mine@big.example', 5), [$OK, $OK, $OK, $OK, $BLOCK], 'its own msg_quota 4 wins over the domain\'s 2');
is(send_as('y@big.example', 51), $BLOCK, "big.example's rcpt_quota 50");
is_deeply(seq('z@hold.example', 2), [$OK, "action=HOLD$TEXT"], "hold.example's block_action HOLD");
is_deeply(seq('nobody@other.example', 6), [($OK) x 5, $BLOCK], 'a domain without defaults: quota.default 5');

# show reads the database's row: wait until the writer has made it.
ok(wait_until(sub { row($h, 'x@big.example') }), "x\@big.example's row is written");
my (undef, $out) = run_rateguard('-c', $c->{path}, 'show', 'x@big.example');
like($out, qr/^limits:      2 messages, 50 recipients per period$/m, "show resolves the domain's msg_quota");

# Changed in the database: the daemon follows with the refresh.
$h->do(q{UPDATE domain_quotas SET msg_quota = 5 WHERE domain = 'big.example'});
$dom->execute('late.example', 1, undef, undef, 'REJECT');
is((run_rateguard('-c', $c->{path}, 'reload-cache'))[0], 0, 'reload-cache');
is(send_as('x@big.example'), $OK, "big.example's msg_quota raised to 5: x is accepted again");
is_deeply(seq('w@late.example', 2), [$OK, "action=REJECT$TEXT"], 'a domain added at run time applies');
$h->do(q{DELETE FROM domain_quotas WHERE domain = 'hold.example'});
is((run_rateguard('-c', $c->{path}, 'reload-cache'))[0], 0, 'reload-cache');
is(send_as('z@hold.example'), $BLOCK, 'its domain row deleted: action_blocked again');
# --- a pool: one quota for all senders of a domain together ---
$h->do(q{INSERT INTO domain_quotas (domain, pool_quota) VALUES ('pool.example', 5)});
is((run_rateguard('-c', $c->{path}, 'reload-cache'))[0], 0, 'reload-cache');
is_deeply([seq('a@pool.example', 3), seq('b@pool.example', 2)], [[$OK, $OK, $OK], [$OK, $OK]],
          'pool 5: three messages of a@ and two of b@');
is(policy_request($s, sasl_username => 'c@pool.example', recipient_count => 1, queue_id => 'POOL6'), $BLOCK,
   "the pool's 6th message (the first of c\@) is blocked");
like(slurp($c->{log}), qr/POOL6: .*sasl_username=c\@pool\.example, .*status=BLOCKED \(QUOTA_LIMIT_REACHED\) \(DOMAIN_POOL\)/,
     'logged as the pool');
is(send_as('a@other.example'), $OK, 'other domains are not in the pool');
# The pool is re-derived from the database at each refresh.
ok(wait_until(sub { (($h->selectrow_array(q{SELECT SUM(msg_counter) FROM ratelimits WHERE sender LIKE '%@pool.example'}))[0] // 0) == 6 }),
   'the pool domain\'s rows are written (6 messages, the blocked one counted)');
is((run_rateguard('-c', $c->{path}, 'reload-cache'))[0], 0, 'reload-cache');
is(send_as('d@pool.example'), $BLOCK, 'after a refresh the pool is still used up (its sum is read from the database)');
my ($pool) = grep { $_->{sender} eq '@pool.example' } @{ status_json($c)->{senders} };
is_deeply(fields($pool, qw(quota msg_counter)), [5, 7], 'status shows the pool as "@pool.example": 7 of 5');
is(send_as('@pool.example'), $OK, 'a SASL name starting with @ (a pool\'s key): on_error, counted nowhere');
like(slurp($c->{log}), qr/sasl_username=\@pool\.example cannot be counted \(names starting with \@ are the domain pools'\); answering DUNNO/,
     '... and logged');
is((run_rateguard('-c', $c->{path}, 'cleanup'))[0], 0, 'cleanup (the period reset)');
is(send_as('d@pool.example'), $OK, 'after the period reset the pool accepts again');

close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
done_testing();
