#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 80-traces.t - the hijacked-account signals (issue 29) on the committed
# traces, replayed at their own time through the test build
# (t/traces/measure: t/replay --clock into build/rateguard-testhooks, a
# fresh database and daemon per trace, quota out of the way, the benign
# trace's webmail pool exempt): the issue's targets, with the exact
# episodes the traces give (fixed seed, one connection: deterministic,
# checked by replaying twice).
#
#   botnet  hijacked@example.com held within its first 20 /24 networks
#           and before 100 of its messages; no normal login held;
#   benign  at most 1 episode per 1000 logins per day;
#   ramp    ramp@example.com held within 30 minutes of its jump (by the
#           rate signal: x5 its baseline of ~3 an hour, over rate_floor
#           10), and none of the steady logins.
#
# Twice: with the recommended settings spelled out (so the check does not
# move with the built-in defaults), and with the built-in defaults, which
# are to be the recommended ones.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use RG qw(build_dir test_dir slurp);

my $top = "$FindBin::Bin/..";
-x build_dir() . '/rateguard-testhooks' or plan skip_all => 'no build/rateguard-testhooks';

# The recommended settings (docs/signals-traces.md says why).
my %RECOMMENDED = (window => 3600, ipv4_prefix => 24, spread => 12, rate_multiple => 5, rate_floor => 10,
                   probation => 100, min_history => 8);

my $HOLD = 'Held for review: this login looks hijacked';

# t/traces/measure's JSON row for --set of %set (none: the built-in defaults).
sub measure {
    my ($runs, %set) = @_;
    my @args = ('--json', '--runs', $runs, map { ('--set', "$_=$set{$_}") } sort keys %set);
    my $err = test_dir() . '/measure.err';
    my $out = `$^X $top/t/traces/measure @args 2>$err`;
    my $rc = $? >> 8;
    # 1: a target not met; 2, 3: bad usage, a replay failed.
    is($rc, 0, "t/traces/measure @args: every target met") or diag(slurp($err));
    my $rows = eval { decode_json($out) } // [{}];
    return $rows->[0];
}

# The newsletters: each held by probation at its 101st message of a week
# (150 to 300 messages within an hour, from a login too new for a
# baseline: one active window a week); nobody else in the benign trace.
my @NEWSLETTERS = (
    ['news1@lists.example', 38408, 101], ['news2@lists.example', 124342, 101],
    ['news3@lists.example', 210139, 101], ['news4@lists.example', 296642, 101],
    ['news5@lists.example', 383822, 101], ['news1@lists.example', 642360, 254],
    ['news2@lists.example', 728663, 270], ['news3@lists.example', 815687, 354],
    ['news4@lists.example', 902053, 345], ['news5@lists.example', 988288, 263],
);

sub check {
    my ($what, $r) = @_;
    my ($b, $g, $p) = @$r{qw(botnet benign ramp)};

    # botnet: the spread signal at the 12th network, the 18th message.
    is_deeply([@$b{qw(flagged networks_at_flag before_flag signal offset others_flagged)}],
              [1, 12, 17, 'spread', 8092, 0],
              "$what: botnet: hijacked held by spread at its 12th network, after 17 messages (0d02:14:52); "
              . 'no other login held');
    ok($b->{networks_at_flag} <= 20 && $b->{before_flag} < 100,
       "$what: botnet target: within 20 networks ($b->{networks_at_flag}) and 100 messages ($b->{before_flag})");
    is_deeply([map { $_->{login} } @{ $b->{episodes} }], ['hijacked@example.com'],
              "$what: botnet: one episode, the hijacked login's");

    # benign: 10 episodes in 2006 logins over 14 days, the newsletters'.
    is_deeply([map { [@$_{qw(login offset messages signal)}] } @{ $g->{episodes} }],
              [map { [@$_, 'probation'] } @NEWSLETTERS],
              "$what: benign: the newsletters' 10 probation episodes, nobody else's");
    is_deeply([@$g{qw(logins days per_1000_per_day)}], [2006, 14, 0.356],
              "$what: benign: 0.356 episodes per 1000 logins per day");
    cmp_ok($g->{per_1000_per_day}, '<=', 1, "$what: benign target: at most 1 per 1000 logins per day");

    # ramp: held by the rate signal 22.3 minutes after its jump, at its
    # 222nd message; again on each of the next days it sends at the new
    # rate (a jump is not folded into the baseline: an attack never
    # becomes the login's normal); none of the 20 steady logins.
    is_deeply([@$p{qw(minutes_to_flag signal before_jump controls_flagged)}], [22.3, 'rate', 0, 0],
              "$what: ramp: held by rate 22.3 minutes after its jump, nobody before it, no steady login");
    is_deeply([map { [@$_{qw(login offset messages)}] } @{ $p->{episodes} }],
              [['ramp@example.com', 638540, 222], ['ramp@example.com', 722301, 535],
               ['ramp@example.com', 808456, 820], ['ramp@example.com', 824286, 933]],
              "$what: ramp: its episodes");
    ok(defined $p->{minutes_to_flag} && $p->{minutes_to_flag} <= 30, "$what: ramp target: held within 30 minutes");
    my @bad = grep { $_->{action} ne 'HOLD' || $_->{text} ne "$HOLD (signal: $_->{signal})" }
              map { @{ $r->{$_}{episodes} } } qw(botnet benign ramp);
    ok(!@bad, "$what: every episode begins with HOLD $HOLD (signal: ...)") or diag(explain(\@bad));
}

# The recommended settings, replayed twice: the same episodes each time.
my $rec = measure(2, %RECOMMENDED);
is_deeply($rec->{settings}, { map { $_ => "$RECOMMENDED{$_}" } keys %RECOMMENDED }, 'recommended: the settings given');
is($rec->{same}, 1, 'recommended: two replays of each trace, the same episodes');
check('recommended', $rec);

# The built-in defaults: the same results (they are the recommended ones).
my $def = measure(1);
is_deeply($def->{settings}, {}, 'defaults: nothing set');
check('defaults', $def);

diag(sprintf 'replay seconds: recommended botnet %.1f, benign %.1f, ramp %.1f; defaults benign %.1f',
             $rec->{botnet}{elapsed}, $rec->{benign}{elapsed}, $rec->{ramp}{elapsed}, $def->{benign}{elapsed})
    if $ENV{TEST_VERBOSE};

done_testing();
