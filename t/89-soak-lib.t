#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 89-soak-lib.t - t/lib/Soak.pm, the parts of `make soak` that need no
# daemon (any user, no database): the resource growth check (a flat
# series passes, one that grows by more than the allowed share fails, too
# few samples decide nothing, the warm-up is left out) and the fault
# schedule (every combination in the first rounds, lane A's long one
# first; a fault that no longer fits is not started).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Soak;

# Samples every 60 s over an hour: master RSS from a function of time.
sub series {
    my ($rss, $fd) = @_;
    return [map { +{ t => 60 * $_, master_rss => $rss->(60 * $_), master_fd => $fd->(60 * $_), cache_used => 400 } } 1 .. 60];
}

my ($decided, $rows) = Soak::growth(series(sub { 60000 + ($_[0] % 300) }, sub { 14 }), 300);
ok($decided, 'an hour of samples: decided');
is(join(' ', map { "$_->[0]=$_->[3]" } @$rows), 'master_rss=ok master_fd=ok cache_used=ok', 'a flat series passes');

($decided, $rows) = Soak::growth(series(sub { 60000 + 50 * $_[0] }, sub { 14 }), 300);
my ($rss) = grep { $_->[0] eq 'master_rss' } @$rows;
is($rss->[3], 'GROWS', 'RSS growing 50 KiB a second fails') or diag(explain($rss));
is($rss->[1], 60000 + 50 * 1320, "the first third's largest after the warm-up");
is($rss->[2], 60000 + 50 * 3600, "the last third's largest");

($decided, $rows) = Soak::growth(series(sub { 60000 }, sub { 14 + int($_[0] / 300) }), 300);
my ($fd) = grep { $_->[0] eq 'master_fd' } @$rows;
is($fd->[3], 'GROWS', 'one more descriptor every 5 minutes fails');

# Within the allowed share plus its slack: 20% more RSS, 3 more descriptors.
($decided, $rows) = Soak::growth(series(sub { $_[0] < 2400 ? 60000 : 72000 }, sub { $_[0] < 2400 ? 14 : 17 }), 300);
is(join(' ', map { $_->[3] } @$rows), 'ok ok ok', '20% more RSS and 3 more descriptors pass');

# The warm-up is left out: a large start does not count.
($decided, $rows) = Soak::growth(series(sub { $_[0] <= 240 ? 10000 : 60000 }, sub { 14 }), 300);
is((grep { $_->[0] eq 'master_rss' } @$rows)[0][3], 'ok', 'samples in the warm-up are not compared');

# The short form: 6 samples, nothing decided.
($decided, $rows) = Soak::growth([map { +{ t => 10 * $_, master_rss => 1000 * $_ } } 1 .. 6], 10);
ok(!$decided, 'six samples after the warm-up: not decided');
is(scalar @$rows, 0, 'and no verdicts');

# The schedule: the first rounds hold every combination but db+writer
# (which the long one with the disk holds), the long one first.
srand(42);
my ($a, $b) = Soak::new_schedules([@Soak::SINGLES], 0);
is($a->{first}[0], 'long+disk', "lane A's first fault is the long outage with the disk");
is_deeply([sort(@{ $a->{first} }, @{ $b->{first} })], [sort qw(long+disk master@db disk+master worker notifier+hang)],
          'the first rounds: every combination, and a worker');
ok(!grep({ $_ eq 'long-outage' } @{ $a->{all} }), 'no plain long outage in the short form');
my ($la) = Soak::new_schedules([@Soak::SINGLES], 1);
ok(grep({ $_ eq 'long-outage' } @{ $la->{all} }), 'a plain long outage in the long form');
is(Soak::next_item($a, 2, 20), undef, 'a first-round fault does not start in the load\'s last 3 s');
is(Soak::next_item($a, 50, 20), 'long+disk', 'it starts before');
shift @{ $a->{first} } while @{ $a->{first} };
is(Soak::next_item($a, 7, 20), undef, 'a later fault that does not fit before the last 5 s does not start');
ok(defined Soak::next_item($a, 60, 20), 'one that fits does');
is_deeply([Soak::not_run($b)], $b->{first}, 'not_run names the first-round faults not started');
done_testing();
