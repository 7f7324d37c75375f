#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 74-manual.t - the manual holds together (any user, no daemon):
#   - every relative link in README.md and docs/*.md names a file that
#     exists and, with a #fragment into a Markdown file, a heading of it
#     (GitHub's anchors: lower case, spaces to '-', punctuation dropped,
#     a repeated heading gets -1, -2...);
#   - the README stays short: at most 320 lines (the rest is in docs/ and
#     the man pages);
#   - every docs/*.md is linked from the README;
#   - every command `rateguard --help` lists is in rateguard(8), as
#     `.B name` or `.BI name`.
# (The settings against rateguard.conf(5) are checked elsewhere.)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Basename qw(dirname);
use File::Spec;
use Cwd qw(abs_path);
use Encode qw(decode);
use RG qw(build_dir slurp);

my $top = abs_path("$FindBin::Bin/..");
my $readme = "$top/README.md";
my @docs = sort glob("$top/docs/*.md");
ok(-f $readme, 'README.md exists');
ok(@docs >= 1, scalar(@docs) . ' topics in docs/');

# A Markdown file's text with fenced code blocks blanked out (their lines
# kept empty, so that line numbers still hold).
sub prose {
    my ($text) = @_;
    my ($fence, @out);
    for my $line (split /\n/, $text, -1) {
        if (defined $fence) {
            undef $fence if $line =~ /^ {0,3}\Q$fence\E[`~]*\s*$/;
            push @out, '';
        } elsif ($line =~ /^ {0,3}(`{3,}|~{3,})/) {
            $fence = $1;
            push @out, '';
        } else {
            push @out, $line;
        }
    }
    return join "\n", @out;
}

# GitHub's anchor for a heading's text.
sub anchor_of {
    my ($h) = @_;
    $h =~ s/!?\[([^\]]*)\]\([^)]*\)/$1/g;     # a link: its text
    $h =~ s/<[^>]+>//g;                       # inline HTML
    $h = lc $h;
    $h =~ s/[^\p{L}\p{M}\p{N}\p{Pc} -]//g;    # punctuation (backticks, *, :, ...) dropped
    $h =~ s/ /-/g;
    return $h;
}

my %anchors_cache;
sub anchors {
    my ($path) = @_;
    return $anchors_cache{$path} //= do {
        my (%set, %seen);
        for my $line (split /\n/, prose(decode('UTF-8', slurp($path)))) {
            if ($line =~ /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/) {
                my $a = anchor_of($1);
                my $n = $seen{$a}++;
                $set{$n ? "$a-$n" : $a} = 1;
            }
            $set{$1} = 1 while $line =~ /<a\s[^>]*?(?:name|id)="([^"]+)"/g;
        }
        \%set;
    };
}

# Every link of a file: [text](target) and [label]: target, outside code.
sub links {
    my ($path) = @_;
    my $text = prose(decode('UTF-8', slurp($path)));
    $text =~ s/(`+)(?:(?!\1).)+?\1//gs;          # code spans, also across lines
    my @t;
    push @t, $1 while $text =~ /\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g;
    push @t, $1 while $text =~ /^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/mg;
    return @t;
}

my %linked_from_readme;
for my $file ($readme, @docs) {
    my $name = File::Spec->abs2rel($file, $top);
    my @links = links($file);
    my @bad;
    for my $target (@links) {
        next if $target =~ /^[a-z][a-z0-9+.-]*:/i;   # http:, https:, mailto:
        my ($path, $frag) = $target =~ /^([^#]*)(?:#(.*))?$/;
        my $dest = $path eq '' ? $file : File::Spec->rel2abs($path, dirname($file));
        unless (-e $dest) {
            push @bad, "$target: no such file";
            next;
        }
        $dest = abs_path($dest);
        $linked_from_readme{$dest} = 1 if $file eq $readme;
        next unless defined $frag && length $frag;
        if ($dest !~ /\.md$/) {
            push @bad, "$target: a #fragment into a file that is not Markdown";
        } elsif (!anchors($dest)->{$frag}) {
            push @bad, "$target: no heading with that anchor in " . File::Spec->abs2rel($dest, $top);
        }
    }
    ok(@links > 0, "$name has links") if $file eq $readme;
    is_deeply(\@bad, [], "$name: " . scalar(@links) . ' links, each to a file and heading that exist')
        or diag join "\n", @bad;
}

my @unlinked = map { File::Spec->abs2rel($_, $top) } grep { !$linked_from_readme{abs_path($_)} } @docs;
is_deeply(\@unlinked, [], 'every docs/*.md is linked from the README');

my $lines = () = slurp($readme) =~ /\n/g;
cmp_ok($lines, '<=', 320, "README.md: $lines lines, at most 320");

# The commands of --help against rateguard(8).
my $build = $ENV{RG_BUILD} ? build_dir() : "$top/build";
my $bin = "$build/rateguard";
SKIP: {
    skip "$bin is not built (make all)", 3 unless -x $bin;
    my $help = `'$bin' --help 2>&1`;
    is($?, 0, 'rateguard --help: exit 0');
    my ($list) = $help =~ /^Commands:\n(.*?)(?:^\S|\z)/ms;
    my @commands = map { /^  ([a-z][a-z-]*)(?:\s|$)/ ? $1 : () } split /\n/, $list // '';
    my $man = slurp("$top/src/man/rateguard.8");
    my @missing = grep {
        my $roff = $_ =~ s/-/\\-/gr;
        $man !~ /^\.BI? (?:\Q$roff\E|\Q$_\E)(?:[ \t"]|$)/m
    } @commands;
    ok(@commands >= 10 && (grep { $_ eq 'run' } @commands) && (grep { $_ eq 'set-quota' } @commands),
       scalar(@commands) . " commands in --help: @commands");
    is_deeply(\@missing, [], 'each has its .B or .BI entry in rateguard(8)');
}

done_testing();
