#!/usr/bin/perl
# 77-layers.t - the house's layers hold (issue 28): src/ is one folder per
# layer, lib < global < shared < worker, writer, notify, metrics < master < cli, and
# a source file includes the header of another module only when that
# module lives in its own folder or a layer below (worker, writer,
# notify and metrics, side by side, use none of each other). Every source
# carries its licence line. Any user, nothing to run.
use strict;
use warnings;
use FindBin;
use File::Basename qw(basename dirname);
use Test::More;

my $src = "$FindBin::Bin/../src";
my %rank = (lib => 0, global => 1, shared => 2, worker => 3, writer => 3, notify => 3, metrics => 3, master => 4, cli => 5);
my (%folder_of, @sources);
for my $file (sort glob "$src/*/*.c") {
    my $folder = basename(dirname($file));
    next unless exists $rank{$folder};
    $folder_of{basename($file, '.c')} = $folder;
    push @sources, $file;
}
ok(@sources > 40, scalar(@sources) . ' sources in the layer folders');
is_deeply([map { basename($_) } glob "$src/*.c"], [], 'no source left at the top of src/');

my @up;
for my $file (@sources) {
    my $folder = basename(dirname($file));
    open my $fh, '<', $file or die "$file: $!";
    while (my $line = <$fh>) {
        my ($module) = $line =~ /^#include "(\w+)\.h"/ or next;
        my $there = $folder_of{$module} // next;      # a header of no module (rateguard.h, master_int.h)
        push @up, "$folder/" . basename($file) . " includes $module.h ($there)"
            if $rank{$there} > $rank{$folder} || ($rank{$there} == $rank{$folder} && $there ne $folder);
    }
}
is_deeply(\@up, [], 'no file uses a module of a layer above or beside its own');

my @unlicensed = grep { !(`head -3 $_` =~ m{SPDX-License-Identifier: GPL-3\.0-or-later}) }
                 @sources, glob("$FindBin::Bin/../include/*.h");
is_deeply([map { basename($_) } @unlicensed], [], 'every source and header says GPL-3.0-or-later (SPDX)');
ok(-s "$FindBin::Bin/../COPYING" && `head -2 $FindBin::Bin/../COPYING` =~ /GNU GENERAL PUBLIC LICENSE\s+Version 3/,
   'COPYING holds the GPL version 3');
done_testing();
