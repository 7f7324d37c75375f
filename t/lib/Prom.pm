# SPDX-License-Identifier: GPL-3.0-or-later
# Prom.pm - a private Prometheus for the integration tests (t/83, t/84):
# Debian's /usr/bin/prometheus with its own config, data folder and free
# loopback port in the test's folder, scraping a rateguard's metrics
# listener every second; its HTTP API (instant and range queries, rules);
# stopped by its pid when the test ends. Also the daemon's config with a
# metrics listener.
package Prom;

use strict;
use warnings;
use Exporter 'import';
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use RG qw(test_dir free_port slurp write_config);

our @EXPORT_OK = qw(prometheus_binary start_prometheus stop_prometheus prom_get prom_query prom_query_range
                    prom_value metrics_config);

my $http = HTTP::Tiny->new(timeout => 10);

sub prometheus_binary {
    my ($bin) = grep { -x } map { "$_/prometheus" } split /:/, $ENV{PATH} // '';
    return $bin;
}

# A config for RG::write_config's %o whose daemon serves /metrics on a
# free loopback port: returns the config (its metrics port in
# {metrics_port}).
sub metrics_config {
    my (%o) = @_;
    my $mport = free_port();
    my %sections = (%{ $o{sections} // {} }, metrics => qq{listen = "127.0.0.1:$mport"\n});
    my $c = write_config(%o, sections => \%sections);
    $c->{metrics_port} = $mport;
    return $c;
}

# Start Prometheus scraping @$targets ("host:port") every second as job
# "rateguard", evaluating the rule files @$rules (copied into its folder)
# every second; returns { pid, port, url, dir, log } once /-/ready answers
# 200 (dies with its log if it does not within 30 s).
my %running;
sub start_prometheus {
    my (%o) = @_;
    my $bin = prometheus_binary() or die "no prometheus: apt-get install prometheus\n";
    my $dir = test_dir() . '/prometheus.' . (keys(%running) + 1);
    mkdir $dir or die "$dir: $!";
    my @rules;
    for my $r (@{ $o{rules} // [] }) {
        my ($name) = $r =~ m{([^/]+)\z};
        open my $fh, '>', "$dir/$name" or die "$dir/$name: $!";
        print $fh slurp($r);
        close $fh;
        push @rules, "$dir/$name";
    }
    my $targets = join ', ', map { "'$_'" } @{ $o{targets} };
    open my $fh, '>', "$dir/prometheus.yml" or die "$dir/prometheus.yml: $!";
    print $fh "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n";
    print $fh "rule_files:\n", map { "  - '$_'\n" } @rules if @rules;
    print $fh "scrape_configs:\n  - job_name: rateguard\n    static_configs:\n      - targets: [$targets]\n";
    close $fh;
    my $port = free_port();
    my $log = "$dir/prometheus.log";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or die "$log: $!";
        open STDERR, '>&', \*STDOUT;
        exec($bin, "--config.file=$dir/prometheus.yml", "--storage.tsdb.path=$dir/data",
             "--web.listen-address=127.0.0.1:$port", '--log.level=warn') or die "exec $bin: $!";
    }
    $running{$pid} = 1;
    my $p = { pid => $pid, port => $port, url => "http://127.0.0.1:$port", dir => $dir, log => $log };
    my $deadline = time + 30;
    while (time < $deadline) {
        die "prometheus exited early:\n" . slurp($log) if waitpid($pid, WNOHANG) == $pid;
        return $p if $http->get("$p->{url}/-/ready")->{status} == 200;
        sleep 0.1;
    }
    stop_prometheus($p);
    die "prometheus not ready within 30 s:\n" . slurp($log);
}

# TERM the Prometheus we started and wait for it (30 s, then KILL); its
# exit code.
sub stop_prometheus {
    my ($p) = @_;
    my $pid = $p->{pid};
    return undef unless delete $running{$pid};
    kill 'TERM', $pid;
    my $deadline = time + 30;
    while (time < $deadline) {
        return $? >> 8 if waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return undef;
}

# Whatever happens to the test, no Prometheus of ours outlives it.
END {
    local $?;
    for my $pid (keys %running) {
        kill 'TERM', $pid;
        for (1 .. 200) { last if waitpid($pid, WNOHANG) == $pid; sleep 0.05 }
        if (kill 0, $pid) { kill 'KILL', $pid; waitpid($pid, 0) }
    }
}

# GET $path (with query parameters %q) from the API; the decoded "data"
# of a success, dies with the answer otherwise.
sub prom_get {
    my ($p, $path, %q) = @_;
    my $url = "$p->{url}$path";
    $url .= '?' . $http->www_form_urlencode(\%q) if %q;
    my $r = $http->get($url);
    my $j = eval { decode_json($r->{content}) };
    die "GET $path (@{[ %q ]}): $r->{status} $r->{content}\n"
        unless $r->{success} && $j && $j->{status} eq 'success';
    return $j->{data};
}

# An instant query (at $time if given): the result array.
sub prom_query {
    my ($p, $expr, $time) = @_;
    return prom_get($p, '/api/v1/query', query => $expr, defined $time ? (time => $time) : ())->{result};
}

# A range query from $start to $end every $step s: the result array
# (each { metric, values => [[t, "v"], ...] }).
sub prom_query_range {
    my ($p, $expr, $start, $end, $step) = @_;
    return prom_get($p, '/api/v1/query_range', query => $expr, start => $start, end => $end,
                    step => $step // 1)->{result};
}

# The single value of an instant query as a number; undef when it has no
# series (dies when it has more than one).
sub prom_value {
    my ($p, $expr, $time) = @_;
    my $r = prom_query($p, $expr, $time);
    return undef unless @$r;
    die "prom_value: $expr has " . @$r . " series\n" if @$r > 1;
    return 0 + $r->[0]{value}[1];
}

1;
