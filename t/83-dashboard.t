#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 83-dashboard.t - the Grafana dashboard contrib/grafana/rateguard.json
# (issue 30). Grafana is not in Debian, so its JSON is checked here:
#   - it parses; panel ids are unique; every gridPos lies within the 24
#     columns and no two panels' rectangles overlap;
#   - a `datasource` variable (type datasource, query prometheus), and every
#     panel, target, annotation and query variable uses it
#     ({"type":"prometheus","uid":"${datasource}"}): the dashboard imports
#     into any Grafana whatever its Prometheus is called;
#   - every expression in it (targets, the alerts annotation, the instance
#     variable's label_values) returns data from a real Prometheus
#     (t/lib/Prom.pm) that scraped a rateguard under load: requests, blocks,
#     a hijacked-account episode (which fires RateguardHijackedAccount of
#     contrib/prometheus/rateguard.rules.yml there), the writer's records.
#     Grafana's variables are replaced as Grafana would for one Prometheus
#     scraping every second: $__rate_interval 10s, $__interval 2s,
#     $instance .* (All); any other `$` left fails.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use POSIX qw(floor);
use Time::HiRes qw(sleep time);
use RG qw(start_daemon stop_daemon migrated_database wait_until slurp send_n ask);
use Prom qw(prometheus_binary start_prometheus stop_prometheus prom_get prom_query prom_query_range metrics_config);

my $file = "$FindBin::Bin/../contrib/grafana/rateguard.json";
my $d = eval { decode_json(slurp($file)) };
ok($d, 'rateguard.json parses as JSON') or BAIL_OUT("$file: $@");
is($d->{uid}, 'rateguard', 'uid rateguard (a re-import replaces it)');
my @panels = @{ $d->{panels} // [] };
ok(@panels >= 10, scalar(@panels) . ' panels');

# --- ids and layout ---
my %ids;
$ids{ $_->{id} // 'none' }++ for @panels;
is_deeply([grep { $ids{$_} > 1 || $_ eq 'none' } sort keys %ids], [], 'panel ids present and unique');
my @bad_pos = grep {
    my $g = $_->{gridPos} // {};
    !(defined $g->{x} && defined $g->{y} && $g->{w} && $g->{h} && $g->{x} >= 0 && $g->{y} >= 0 && $g->{x} + $g->{w} <= 24)
} @panels;
is_deeply([map { $_->{title} } @bad_pos], [], 'every gridPos is within the 24 columns');
my @overlaps;
for my $i (0 .. $#panels) {
    for my $j ($i + 1 .. $#panels) {
        my ($a, $b) = map { $_->{gridPos} } @panels[$i, $j];
        push @overlaps, "$panels[$i]{title} / $panels[$j]{title}"
            if $a->{x} < $b->{x} + $b->{w} && $b->{x} < $a->{x} + $a->{w}
            && $a->{y} < $b->{y} + $b->{h} && $b->{y} < $a->{y} + $a->{h};
    }
}
is_deeply(\@overlaps, [], 'no two panels overlap');

# --- the datasource variable, used everywhere ---
my @vars = @{ $d->{templating}{list} // [] };
my ($dsvar) = grep { $_->{name} eq 'datasource' } @vars;
ok($dsvar && $dsvar->{type} eq 'datasource' && $dsvar->{query} eq 'prometheus',
   'a datasource variable: type datasource, query prometheus');
my $DS = { type => 'prometheus', uid => '${datasource}' };
my @users = ((map { ["panel $_->{title}", $_] } @panels),
             (map { my $p = $_; map { ["panel $p->{title}, target $_->{refId}", $_] } @{ $p->{targets} // [] } } @panels),
             (map { ["annotation $_->{name}", $_] } grep { $_->{expr} } @{ $d->{annotations}{list} // [] }),
             (map { ["variable $_->{name}", $_] } grep { $_->{type} eq 'query' } @vars));
my @wrong = grep { !is_deeply_quiet($_->[1]{datasource}, $DS) } @users;
is_deeply([map { $_->[0] } @wrong], [], 'every panel, target, annotation and query variable uses ${datasource}');
ok(!grep({ !@{ $_->{targets} // [] } } @panels), 'every panel has targets');
sub is_deeply_quiet {
    my ($got, $want) = @_;
    return ref $got eq 'HASH' && join(',', map { "$_=" . ($got->{$_} // '') } sort keys %$got)
                              eq join(',', map { "$_=$want->{$_}" } sort keys %$want);
}

# --- the expressions, with Grafana's variables replaced ---
my %grafana = ('$__rate_interval' => '10s', '$__interval' => '2s', '$instance' => '.*', '${instance}' => '.*');
sub promql {
    my ($e) = @_;
    $e =~ s/(\$\{?\w+\}?)/$grafana{$1} \/\/ $1/ge;
    return $e;
}
my @exprs = ((map { my $p = $_; map { ["$p->{title} ($_->{refId})", promql($_->{expr})] } @{ $p->{targets} } } @panels),
             (map { ["annotation $_->{name}", promql($_->{expr})] } grep { $_->{expr} } @{ $d->{annotations}{list} // [] }));
# label_values(METRIC, LABEL) is Grafana's, not PromQL: the metric's series
# must carry the label.
for my $v (grep { $_->{type} eq 'query' } @vars) {
    my $q = ref $v->{query} ? $v->{query}{query} : $v->{query};
    my ($metric, $label) = $q =~ /^label_values\((\w+),\s*(\w+)\)$/ or do { fail("variable $v->{name}: $q is label_values(M, L)"); next };
    push @exprs, ["variable $v->{name}", "count by ($label) ($metric)"];
}
is_deeply([map { "$_->[0]: $_->[1]" } grep { $_->[1] =~ /\$/ } @exprs], [], 'no Grafana variable left unreplaced');

# --- a rateguard under load, scraped by a real Prometheus ---
ok(prometheus_binary(), 'prometheus is installed (Debian package prometheus, installed by make test)')
    or BAIL_OUT('no prometheus: apt-get install prometheus');
my $db = migrated_database('dashboard');
my $c = metrics_config(database => $db, name => 'dash', quota => 20,
                       sections => { signals => qq{spread = 3\nspread_action = "HOLD"\n} });
my $pid = start_daemon($c);
my $p = start_prometheus(targets => ["127.0.0.1:$c->{metrics_port}"],
                         rules => ["$FindBin::Bin/../contrib/prometheus/rateguard.rules.yml"]);
my $start = time;
ok(wait_until(sub { @{ prom_query($p, 'up{job="rateguard"} == 1') } }, 30), 'Prometheus scrapes the daemon')
    or diag(slurp($p->{log}));

# Six rounds a second apart (rates need samples over time): busy@ sends
# 5 a round over its quota of 20 (blocked from the fifth round), three
# others 2 each; in the middle, taken@ logs in from three networks (a
# spread episode: its messages held).
my ($sent, $blocked) = (0, 0);
for my $round (1 .. 6) {
    my $r = send_n($c, 'busy@example.org', 5);
    $blocked += grep { /^action=DEFER_IF_PERMIT/ } @$r;
    send_n($c, "user$_\@example.org", 2) for 1 .. 3;
    $sent += 11;
    if ($round == 3) {
        like(ask($c, sasl_username => 'taken@example.org', client_address => "198.51.$_.7", recipient_count => 1),
             $_ < 3 ? qr/^action=DUNNO/ : qr/^action=HOLD/, "taken\@ from network $_") for 1 .. 3;
        $sent += 3;
    }
    sleep 1;
}
is($blocked, 10, 'busy@: 10 blocked');

# The episode fires the alert (for: 1m) in this Prometheus, and the
# dashboard's alert annotation needs a firing alert to show.
ok(wait_until(sub { @{ prom_query($p, 'ALERTS{alertname="RateguardHijackedAccount",alertstate="firing",signal="spread"}') } }, 120),
   'RateguardHijackedAccount fires for the spread episode')
    or diag(explain(prom_get($p, '/api/v1/alerts')));
ok(wait_until(sub { (prom_query($p, 'rateguard_requests_total{result="served"}')->[0]{value}[1] // 0) >= $sent }, 30),
   "the load scraped: $sent requests served");

# Every expression over the test's time, as Grafana asks (a range query,
# a step a second): at least one series with a number in it. (Two seconds
# on, so that the last step is past the evaluation that fired the alert.)
sleep 2;
my $end = time;
for my $e (@exprs) {
    my ($what, $expr) = @$e;
    my $r = eval { prom_query_range($p, $expr, floor($start), $end, 1) };
    my @numbers = map { grep { $_->[1] !~ /^(NaN|[+-]?Inf)$/ } @{ $_->{values} } } @{ $r // [] };
    ok(@numbers, "$what: data") or diag("$expr\n", $@ || explain($r));
}

is(stop_prometheus($p), 0, 'prometheus stopped (exit 0)');
is(stop_daemon($pid), 0, 'daemon stopped');
done_testing();
