#!/usr/bin/perl
# 25-reload.t - HUP re-reads the configuration: new settings reach new
# connections, the cache and its counters are kept; a broken file is
# logged and the running configuration kept.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep);
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request
          migrated_database wait_until slurp);

my $BLOCK = "action=DEFER_IF_PERMIT Rate limit reached, retry later.\n\n";
my $db = migrated_database('reload');
my $c = write_config(database => $db, quota => 2);
my $pid = start_daemon($c);

my $s = policy_connect($c);
is(policy_request($s, sasl_username => 'a@example.org', recipient_count => 1), "action=DUNNO\n\n",
   'before reload: DUNNO');
close $s;

my $text = slurp($c->{path});
open my $fh, '>', $c->{path} or die;
print $fh qq{action_accept = "OK"\n$text};
close $fh;
kill 'HUP', $pid;
ok(wait_until(sub { slurp($c->{log}) =~ /reload: configuration re-read/ }, 5), "reload logged") or diag slurp($c->{log}) . slurp("$c->{log}.stdout");
sleep 0.3;

$s = policy_connect($c);
is(policy_request($s, sasl_username => 'a@example.org', recipient_count => 1), "action=OK\n\n",
   'after reload: the new action_accept');
is(policy_request($s, sasl_username => 'a@example.org', recipient_count => 1), $BLOCK,
   'counters kept across the reload: the third message passes quota 2');
close $s;

open $fh, '>', $c->{path} or die;
print $fh qq{action_accept = "OK"\nworkers { max = 0 }\n$text};
close $fh;
kill 'HUP', $pid;
ok(wait_until(sub { slurp($c->{log}) =~ /reload: .*workers\.max: 0 is out of range 1\.\.4096; keeping the running configuration/ }, 5),
   'a broken configuration is logged and refused');
$s = policy_connect($c);
is(policy_request($s, sasl_username => 'b@example.org', recipient_count => 1), "action=OK\n\n",
   'the running configuration is kept');
close $s;
is(stop_daemon($pid), 0, 'TERM: exit 0');
done_testing();
