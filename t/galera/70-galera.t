#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 70-galera.t - three rateguards, each writing through its own node of a
# real 3-node MariaDB Galera cluster (t/galera-cluster), senders shared
# between the hosts (run by `make test-galera`):
#   A. load on all three hosts: every node holds every answered request
#      exactly once (rows, msg_total), progress rows agree, and the
#      certification conflicts between the nodes were retried (counted in
#      status), never taken for an outage;
#   B. one quota across the hosts: a sender sending round-robin through the
#      three hosts at several rates: accepted, and the overshoot measured;
#   C. a node SIGKILLed under load: its rateguard fails over to the next
#      host of database.hosts; the node rejoins by IST; nothing lost or
#      doubled;
#   D. a node that loses quorum (the two others killed): wsrep_ready OFF is
#      an outage, records stay queued; once the cluster is whole again
#      every count is exact;
#   E. a figure: the writer's drain rate through a cluster node.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use DBI;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request request_text read_reply
          run_rateguard migrated_database wait_until slurp test_dir build_dir status_json);

plan skip_all => 'run by `make test-galera` (no cluster here)' unless $ENV{RG_GALERA_PORT1};

my @port = map { $ENV{"RG_GALERA_PORT$_"} } 1 .. 3;
my @sock = map { $ENV{"RG_GALERA_SOCKET$_"} } 1 .. 3;
my $db = migrated_database('galera');

sub node_dbh {
    my ($n) = @_;
    return DBI->connect("DBI:MariaDB:mariadb_socket=$sock[$n - 1];database=$db", $ENV{RG_GALERA_USER},
                        $ENV{RG_GALERA_PASSWORD}, { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
}

sub cluster {
    my (@args) = @_;
    system('sh', "$FindBin::Bin/../galera-cluster", @args, build_dir()) == 0 or die "galera-cluster @args failed";
}

# Host h writes through node h first, then the others.
my @hosts = map {
    my $h = $_;
    my @order = ($h, grep { $_ != $h } 1 .. 3);
    write_config(database => $db, name => "host$h", quota => 1000000,
                 sections => { database => 'hosts = { ' . join(', ', map { qq{"127.0.0.1:$port[$_ - 1]"} } @order) . " }\n",
                               cache => "refresh_interval = 1\n",
                               # the signals run (their episodes are claimed through the
                               # cluster), but only log: the counts below are the quota's
                               signals => qq{spread_action = "log"\nrate_action = "log"\nprobation_action = "log"\n} });
} 1 .. 3;
my @pid = map { start_daemon($_) } @hosts;

# Load on every host at once: the bench client, --rate per host, senders
# user0..user(S-1) shared by all hosts. Returns the answered queue ids.
my $round = 0;
sub load_all_hosts {
    my (%o) = @_;
    $round++;
    my @kids;
    for my $h (1 .. 3) {
        my $log = test_dir() . "/load$round-host$h.log";
        my $kid = fork // die;
        if ($kid == 0) {
            open STDOUT, '>', "$log.out";
            open STDERR, '>&', \*STDOUT;
            exec(build_dir() . '/rateguard-bench', '--connect', "127.0.0.1:$hosts[$h - 1]{port}", '-n', 8,
                 '-s', $o{senders}, '--rate', $o{rate}, '--duration', $o{seconds}, '--reconnect',
                 '--serial', $round * 100_000_000 + $h * 10_000_000, '--seed', $round * 10 + $h, '--log', $log) or die;
        }
        push @kids, [$kid, $log];
    }
    $o{during}->() if $o{during};
    my (%answered, $unanswered);
    for (@kids) {
        waitpid($_->[0], 0);
        for my $line (split /\n/, slurp($_->[1])) {
            my ($qid, undef, undef, $reply) = split /\t/, $line;
            if ($reply eq 'unanswered') { $unanswered++ } else { $answered{$qid} = 1 }
        }
    }
    return (\%answered, $unanswered // 0);
}

# Every host's queue written, and every node holding the same.
sub settled {
    my ($want_rows) = @_;
    return wait_until(sub {
        for my $c (@hosts) { return undef if (status_json($c)->{database}{pending} // 1) != 0 }
        for my $n (1 .. 3) {
            my $h = eval { node_dbh($n) } or return undef;
            my ($rows) = $h->selectrow_array('SELECT COUNT(*) FROM messages');
            $h->disconnect;
            return undef if $rows != $want_rows;
        }
        1;
    }, 90);
}

# Every node: exactly these queue ids, once each, and counters that add up.
sub check_nodes {
    my ($what, $answered, $total) = @_;
    for my $n (1 .. 3) {
        my $h = node_dbh($n);
        my $ids = $h->selectcol_arrayref('SELECT msgid FROM messages');
        my %seen;
        my $doubled = grep { $seen{$_}++ } @$ids;
        my $lost = grep { !$seen{$_} } keys %$answered;
        is("$lost/$doubled", '0/0', "$what, node $n: no answered request lost, none doubled");
        is(scalar(@$ids), $total, "$what, node $n: $total messages rows");
        is(($h->selectrow_array('SELECT SUM(msg_total) FROM ratelimits'))[0], $total,
           "$what, node $n: sum(msg_total) = $total");
        $h->disconnect;
    }
    my @progress = map {
        my $h = node_dbh($_);
        my $rows = $h->selectall_arrayref('SELECT writer, epoch, last_seq FROM rateguard_progress ORDER BY writer');
        $h->disconnect;
        encode_json($rows);
    } 1 .. 3;
    ok($progress[0] eq $progress[1] && $progress[1] eq $progress[2], "$what: rateguard_progress the same on every node");
}

# --- A. shared senders on three hosts ---
my ($answered, $unanswered) = load_all_hosts(senders => 20, rate => 250, seconds => 6);
my $total = keys %$answered;
diag("A: $total requests answered on three hosts, $unanswered unanswered");
cmp_ok($total, '>', 3000, 'A: the hosts answered the load');
ok(settled($total), 'A: every queue written and every node holds every row');
check_nodes('A', $answered, $total);
my $conflicts = 0;
$conflicts += status_json($_)->{database}{conflicts} // 0 for @hosts;
diag("A: $conflicts write rounds retried after a certification conflict (all hosts)");
cmp_ok($conflicts, '>', 0, 'A: the same senders written through three nodes conflicted, and status counts it');
my @outages = map { slurp($_->{log}) =~ /(writer: database unavailable.*)/ ? $1 : () } @hosts;
is(scalar(@outages), 0, 'A: no conflict was taken for an outage') or diag(join("\n", @outages));

# --- B. one quota across the hosts ---
my @overshoot;
for my $rate (100, 500) {
    my $sender = "shared$rate\@example.org";
    my ($rc) = run_rateguard('-c', $hosts[0]{path}, 'set-quota', $sender, 50);
    run_rateguard('-c', $_->{path}, 'reload-cache') for @hosts;
    my @s = map { policy_connect($_) } @hosts;
    my ($accepted, $blocked, $t0) = (0, 0, time);
    for my $i (0 .. 299) {
        my $due = $t0 + $i / $rate;
        sleep($due - time) if $due > time;
        my $r = policy_request($s[$i % 3], sasl_username => $sender, recipient_count => 1,
                               queue_id => "Q$rate" . sprintf('%04d', $i));
        $r eq "action=DUNNO\n\n" ? $accepted++ : $blocked++;
    }
    close $_ for @s;
    push @overshoot, [$rate, $accepted - 50];
    diag("B: quota 50, 300 messages round-robin through 3 hosts at $rate/s: $accepted accepted, $blocked blocked");
    is($accepted + $blocked, 300, "B at $rate/s: every request answered");
    cmp_ok($accepted, '>=', 50, "B at $rate/s: the quota itself was granted");
    # The bound (docs/several-hosts.md, "One quota across the hosts"): accepted - quota <=
    # (H - 1) / H x R x L, L the time from one host's commit to the others'
    # read-back (a write round, the replication, a round of the others).
    # docs/several-hosts.md measured L at 30-160 ms; 250 ms is allowed here (a loaded
    # machine). It must stay below what three hosts sharing nothing would
    # accept (3 x 50), or the check could not fail.
    my $L = 0.25;
    my $bound = int(2 / 3 * $rate * $L + 0.999);
    cmp_ok(50 + $bound, '<', 3 * 50, "B at $rate/s: the bound (quota + $bound) is below three unshared quotas (150)");
    cmp_ok($accepted, '<=', 50 + $bound, "B at $rate/s: accepted <= quota + $bound ((H - 1) / H x R x L, L = $L s)");
}
ok(settled($total + 600), 'B: written on every node');
my $h1 = node_dbh(1);
is_deeply($h1->selectcol_arrayref(q{SELECT msg_total FROM ratelimits WHERE sender LIKE 'shared%' ORDER BY sender}), [300, 300],
          'B: counters exact (300 each) whatever was accepted');
$h1->disconnect;

# --- C. a node killed under load, then rejoined by IST ---
my $before = $total + 600;
my ($answered_c, $unanswered_c) = load_all_hosts(senders => 200, rate => 150, seconds => 6,
                                                 during => sub { sleep 2; cluster('kill', 2) });
my $total_c = keys %$answered_c;
diag("C: $total_c answered while node 2 was killed, $unanswered_c unanswered");
like(slurp($hosts[1]{log}), qr/database: connect to database .* at 127\.0\.0\.1:?.*; connected to 127\.0\.0\.1:$port[0] instead/,
     'C: host 2 failed over to node 1 (the next of its database.hosts)');
cluster('restart', 2);
like(slurp("$ENV{RG_BUILD}/galera/node2/error.log"), qr/IST received|Receiving IST/, 'C: node 2 rejoined by IST');
ok(settled($before + $total_c), 'C: every request written, node 2 caught up');
my %all = (%$answered, %$answered_c, map { ("Q100" . sprintf('%04d', $_) => 1, "Q500" . sprintf('%04d', $_) => 1) } 0 .. 299);
check_nodes('C', \%all, $before + $total_c);

# --- D. quorum lost: an outage, not a success ---
cluster('kill', 2);
cluster('kill', 3);
my $nonprimary = wait_until(sub {
    my $h = eval { DBI->connect("DBI:MariaDB:mariadb_socket=$sock[0]", $ENV{RG_GALERA_USER}, $ENV{RG_GALERA_PASSWORD},
                                { RaiseError => 1, PrintError => 0 }) } or return undef;
    my (undef, $ready) = $h->selectrow_array(q{SHOW STATUS LIKE 'wsrep_ready'});
    $h->disconnect;
    $ready eq 'OFF' ? 1 : undef;
}, 60);
ok($nonprimary, 'D: node 1 alone is not primary (wsrep_ready OFF)');
my $s = policy_connect($hosts[0]);
my @d = map { policy_request($s, sasl_username => "quorum$_\@example.org", queue_id => sprintf('QD%03d', $_)) } 1 .. 20;
close $s;
is_deeply(\@d, [("action=DUNNO\n\n") x 20], 'D: requests are still answered, from the cache');
ok(wait_until(sub { slurp($hosts[0]{log}) =~ /writer: database unavailable, \d+ record\(s\) kept queued/ ? 1 : undef }, 30),
   'D: the writer treats the node without quorum as an outage');
like(slurp($hosts[0]{log}), qr/WSREP has not yet prepared node for application use|Galera node not ready \(wsrep_ready OFF/,
     'D: and says why');
cmp_ok(status_json($hosts[0])->{database}{pending}, '>=', 20, 'D: the records stay queued');
# The cluster made whole: node 1 bootstrapped as primary, 2 and 3 rejoin.
my $root = DBI->connect("DBI:MariaDB:mariadb_socket=$sock[0]", 'root', '', { RaiseError => 1, PrintError => 0 });
$root->do(q{SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'});
$root->disconnect;
cluster('restart', 2);
cluster('restart', 3);
ok(wait_until(sub { slurp($hosts[0]{log}) =~ /writer: database available again/ ? 1 : undef }, 60),
   'D: the writer resumes once the node is primary again');
ok(settled($before + $total_c + 20), 'D: the queued records written on every node');
$all{sprintf('QD%03d', $_)} = 1 for 1 .. 20;
check_nodes('D', \%all, $before + $total_c + 20);

# --- E. the writer's drain rate through a cluster node (a figure) ---
# The writer stopped while 20000 requests are answered and queued, then let
# go: records per second until its queue is empty.
my $wpid = status_json($hosts[0])->{writer_pid};
kill 'STOP', $wpid;
system(build_dir() . '/rateguard-bench', '--connect', "127.0.0.1:$hosts[0]{port}", '-n', 16, '-s', 1000,
       '--requests', 20000, '--serial', 900_000_000) == 0 or diag('bench client failed');
my $queued = status_json($hosts[0])->{database}{pending};
my $t0 = time;
kill 'CONT', $wpid;
ok(wait_until(sub { (status_json($hosts[0])->{database}{pending} // 1) == 0 ? 1 : undef }, 120), 'E: the queue drained');
my $took = time - $t0;
diag(sprintf('E: the writer drained %d records through node 1 in %.2f s: %.0f records/s', $queued, $took,
             $queued / ($took || 1)));

is(stop_daemon($_), 0, 'TERM: exit 0') for @pid;
diag(sprintf('B: overshoot over quota 50: %s', join(', ', map { "$_->[1] at $_->[0]/s" } @overshoot)));
done_testing();
