#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 84-prometheus.t - a real Prometheus (Debian's, private: its own folder,
# port and config, t/lib/Prom.pm) scraping the daemon's /metrics listener
# every second, with the private MariaDB (issue 30):
#   - the scrape works (up == 1) and every family the daemon serves is
#     stored;
#   - a known load (12 requests: a sender over its quota of 5 sends 8,
#     another sends 4) moves the counters as Prometheus sees them by
#     exactly that: served and counted +12, accepted +9, blocked +3, blocks
#     by the action answered (defer_if_permit) +3, none of the other
#     results; the figures Prometheus holds at the end are the daemon's own
#     (`rateguard --json status`);
#   - contrib/prometheus/rateguard.rules.yml loads into it, each of its 7
#     rules evaluates without error, every metric they name is scraped,
#     and none fires on this healthy daemon.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use RG qw(start_daemon stop_daemon migrated_database wait_until slurp send_n status_json BLOCK_REPLY DUNNO_REPLY);
use Prom qw(prometheus_binary start_prometheus stop_prometheus prom_get prom_query prom_value metrics_config);

ok(prometheus_binary(), 'prometheus is installed (Debian package prometheus, installed by make test)')
    or BAIL_OUT('no prometheus: apt-get install prometheus');

my $rules = "$FindBin::Bin/../contrib/prometheus/rateguard.rules.yml";
my $db = migrated_database('prom');
my $c = metrics_config(database => $db, name => 'prom', quota => 5);
my $pid = start_daemon($c);
my $p = start_prometheus(targets => ["127.0.0.1:$c->{metrics_port}"], rules => [$rules]);
note("prometheus pid $p->{pid} on $p->{url}, scraping 127.0.0.1:$c->{metrics_port}");

ok(wait_until(sub { (prom_value($p, 'up{job="rateguard"}') // 0) == 1 }, 30), 'the scrape of /metrics works: up == 1')
    or diag(slurp($p->{log}));

# The counters as Prometheus last scraped them (by result; blocks by action).
sub requests {
    my %v = map { ($_->{metric}{result} => 0 + $_->{value}[1]) } @{ prom_query($p, 'rateguard_requests_total') };
    $v{"blocks_$_->{metric}{action}"} = 0 + $_->{value}[1] for @{ prom_query($p, 'rateguard_blocks_total') };
    return \%v;
}

# Before the load: a scrape that has every result (the daemon's start
# probe, a connection without a request, may be in it; the load is
# measured from here).
ok(wait_until(sub { keys %{ requests() } >= 18 }, 30), 'every result and block action scraped before the load')
    or diag(explain(requests()));
my $before = requests();
note(explain($before));
my $t0 = time;

my $over = send_n($c, 'over@example.org', 8);
is_deeply($over, [(DUNNO_REPLY) x 5, (BLOCK_REPLY) x 3], 'over@: 5 accepted, 3 blocked (quota 5)');
my $under = send_n($c, 'under@example.org', 4);
is_deeply($under, [(DUNNO_REPLY) x 4], 'under@: 4 accepted');

# Scraped after the load: the served counter reaches its final value.
ok(wait_until(sub { requests()->{served} == $before->{served} + 12 }, 30),
   'Prometheus scraped the load: served + 12')
    or diag(explain(requests()));
# ... and a few scrapes later it has not moved past it (nothing else counted).
my $scrapes = prom_value($p, 'count_over_time(up{job="rateguard"}[1h])');
wait_until(sub { prom_value($p, 'count_over_time(up{job="rateguard"}[1h])') >= $scrapes + 3 }, 30);
my $after = requests();
my %delta = map { ($_ => $after->{$_} - ($before->{$_} // 0)) } keys %$after;
is_deeply(\%delta, { served => 12, counted => 12, accepted => 9, blocked => 3, would_block => 0, exempt => 0,
                     warnings => 0, errors => 0, malformed => 0, refused => 0, over_client_limit => 0,
                     refused_user => 0, blocks_defer_if_permit => 3, blocks_defer => 0, blocks_reject => 0,
                     blocks_hold => 0, blocks_discard => 0, blocks_other => 0 },
          'the counters moved by exactly the load, as Prometheus scraped them (the value after minus before)')
    or diag(explain($before, $after));

# The same from Prometheus's own arithmetic, over its stored samples. Not
# increase(): it extrapolates to the window's edges and gives 12.4 or 11.8
# for 12. The daemon started inside the window and a counter only grows
# while it runs, so the largest sample minus the smallest is exactly what
# was counted since the first scrape; the first scrape was before the load.
my $since = int(time - $t0) + 30;
is(prom_value($p, "max_over_time(rateguard_requests_total{result=\"blocked\"}[${since}s])"
                . " - min_over_time(rateguard_requests_total{result=\"blocked\"}[${since}s])"),
   3, 'max_over_time - min_over_time of the blocked counter over the test: 3');
is(prom_value($p, "max_over_time(rateguard_blocks_total{action=\"defer_if_permit\"}[${since}s])"
                . " - min_over_time(rateguard_blocks_total{action=\"defer_if_permit\"}[${since}s])"),
   3, '... and of blocks by defer_if_permit: 3');

# What Prometheus holds is the daemon's own count: once the writer has
# written everything, `rateguard --json status` and the last scrape agree.
ok(wait_until(sub { status_json($c)->{database}{pending} == 0 }, 30), 'the writer has written the load');
my $status = status_json($c);
my $written = $status->{database}{written};
ok(wait_until(sub { (prom_value($p, 'rateguard_db_written_total') // -1) == $written }, 30),
   "rateguard_db_written_total in Prometheus is the daemon's: $written");
is(prom_value($p, 'rateguard_db_up'), 1, 'rateguard_db_up: 1 (the database answers)');
is_deeply({ map { ($_ => requests()->{$_}) } keys %{ $status->{requests} } }, $status->{requests},
          "every result in Prometheus is the daemon's `status --json` figure");

# --- the alert rules in this Prometheus ---
sub rules_now {
    my ($group) = grep { $_->{name} eq 'rateguard' } @{ prom_get($p, '/api/v1/rules')->{groups} };
    return $group ? $group->{rules} : [];
}
# (health is "unknown" until a rule's first evaluation, a second at most)
ok(wait_until(sub { my $r = rules_now(); @$r == 7 && !grep { $_->{health} eq 'unknown' } @$r }, 30),
   'the 7 rules of rateguard.rules.yml are loaded and evaluated');
for my $r (@{ rules_now() }) {
    is($r->{health}, 'ok', "rule $r->{name}: health ok") or diag($r->{lastError});
    is($r->{state}, 'inactive', "rule $r->{name}: inactive on a healthy daemon");
}
# Each metric the rules name is one the daemon serves: a renamed family
# would leave an alert that can never fire.
my %names = map { ($_ => 1) } slurp($rules) =~ /\b(rateguard_[a-z_]+)\b/g;
for my $name (sort keys %names) {
    ok(prom_value($p, "count($name)"), "the rules' $name is scraped");
}
is_deeply(prom_get($p, '/api/v1/alerts')->{alerts}, [], 'no alert pending or firing');

is(stop_prometheus($p), 0, 'prometheus stopped (exit 0)');
is(stop_daemon($pid), 0, 'daemon stopped');
done_testing();
