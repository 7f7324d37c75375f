#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 85-plot.t - t/plot, the pictures of `make bench` and `make soak` (issue
# 30) and `make bench-year` (issue 32), on small data files made here (any
# user, no daemon, no database):
#   - a bench, a soak and a year file give an SVG that is well-formed XML
#     (read by XML::LibXML), with the axis labels, the series' titles, the
#     senders' columns, the fault kinds, the year's cases (names that start
#     with a digit), the title line, a y axis that reaches the data's
#     largest figure and one shaded band per lasting fault in each of the
#     two upper panels;
#   - an empty, missing or malformed file (wrong field count, a word for a
#     number, a fault ending before it starts, an unknown record, a second
#     line for the same run or the same case and size, nothing on the time
#     axis) exits 1 with a message naming the line, and leaves no picture;
#   - no gnuplot exits 3 saying there is no picture; a gnuplot that fails,
#     or writes half a document, exits 4 and leaves no picture; bad usage
#     exits 2.
# The pictures need gnuplot (Debian: gnuplot-nox, `make deps`): without it
# they are skipped, the rest runs.
use strict;
use warnings;
use FindBin;
use File::Temp qw(tempdir);
use Test::More;

my $plot = "$FindBin::Bin/plot";
my $dir = tempdir('rg-plot-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $have_gnuplot = grep { -x "$_/gnuplot" } split /:/, $ENV{PATH} // '';
my $have_libxml = eval { require XML::LibXML; 1 };

sub put {
    my ($name, $text) = @_;
    open my $fh, '>', "$dir/$name" or die "$dir/$name: $!";
    print $fh $text;
    close $fh or die;
    return "$dir/$name";
}

# Runs t/plot; returns (exit status, stdout and stderr together).
sub plot {
    my (@args) = @_;
    my $pid = open my $out, '-|' // die "fork: $!";
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        exec($^X, $plot, @args) or exit 127;
    }
    local $/;
    my $text = <$out> // '';
    close $out;
    return ($? >> 8, $text);
}

# The SVG's text: every <text> element's content, parsed as XML.
sub svg_texts {
    my ($path) = @_;
    my $doc = eval { XML::LibXML->load_xml(location => $path) };
    ok($doc, "$path is well-formed XML") or diag($@);
    return ([], undef) unless $doc;
    is($doc->documentElement->localname, 'svg', 'its root is <svg>');
    is($doc->documentElement->namespaceURI, 'http://www.w3.org/2000/svg', 'in the SVG namespace');
    my @texts = map { my $t = $_->textContent; $t =~ s/^\s+|\s+$//g; $t } $doc->findnodes('//*[local-name()="text"]');
    return (\@texts, $doc);
}

# Draws KIND from $dir/KIND.dat into $dir/KIND.svg and checks what every
# picture must be: exit 0, named, written whole (no temporary file left),
# its licence and origin after the XML declaration.
sub drawn {
    my ($kind, $data) = @_;
    my ($rc, $out) = plot($kind, $data, "$dir/$kind.svg");
    is($rc, 0, "$kind: t/plot exits 0") or diag($out);
    like($out, qr{t/plot: \Q$dir\E/$kind\.svg}, 'and names the picture');
    ok(-s "$dir/$kind.svg", "$kind.svg written");
    ok(!-e "$dir/$kind.svg.tmp", 'no temporary file left');
    like(do { local (@ARGV, $/) = ("$dir/$kind.svg"); <> },
         qr{\A<\?xml[^>]*\?>\n<!-- SPDX-License-Identifier: GPL-3.0-or-later -->\n<!-- rateguard: drawn by t/plot $kind from $kind\.dat -->\n},
         'it carries its licence and origin after the XML declaration');
}

my $bench = put('bench.dat', <<'DAT');
# t/85-plot.t's bench
# title: made by 85-plot.t, 1 s per run
# server N S requests_per_s p50_ms p90_ms p99_ms p999_ms max_ms
rateguard 1 1000 31803 0.030 0.040 0.080 0.310 4.2
echo 1 1000 28717 0.020 0.030 0.070 0.200 3.1
rateguard 8 1000 28661 0.190 0.330 1.190 3.900 15.4
echo 8 1000 51366 0.100 0.200 0.300 0.500 5.0
rateguard 32 1000 27470 0.660 1.130 2.890 9.980 45.8
echo 32 1000 45037 0.500 0.800 1.090 3.000 10.0
rateguard 1 100000 32661 0.030 0.030 0.070 0.260 5.2
echo 1 100000 31000 0.020 0.030 0.060 0.200 4.0
rateguard 32 100000 19903 1.050 1.910 4.150 8.350 35.2
echo 32 100000 49093 0.500 0.800 1.010 3.000 10.0
DAT

my $answers = join('', map { my $down = $_ >= 10 && $_ < 14;
                              sprintf "answers %d %d %d %d\n", $_, $down ? 0 : 380, $down ? 0 : 20, $_ == 16 ? 7 : 0 } 0 .. 29);
my $lags = join('', map { my $slow = $_ >= 10 && $_ < 15;
                          $_ == 20 ? "lag 20.2 - -\n" : sprintf "lag %d.2 %d %.2f\n", $_, $slow ? 300 : 2, $slow ? $_ - 9 : 0.04 } 0 .. 34);
my $soak = put('soak.dat', <<"DAT");
# t/85-plot.t's soak
# title: made by 85-plot.t, seed 42
$answers$lags
fault 3.1 3.1 worker
fault 6.0 6.0 writer
fault 10.0 14.0 database
fault 16.0 17.5 master
fault 19.0 22.0 disk
fault 20.0 20.0 master
fault 23.0 26.0 hang
fault 24.0 24.0 notifier
fault 25.0 25.0 gremlin
DAT

# Three cases, the empty table and 10 million rows (one as 1e7).
my $year = put('year.dat', <<'DAT');
# t/85-plot.t's year
# title: made by 85-plot.t, 2 s per step
# year CASE ROWS CAPACITY P99_MS MAX_MS
year 1000-senders-default-cache 0 9000 1.20 14.5
year 1000000-senders-default-cache 0 6750 2.10 22.0
year 1000000-senders-cache-1100000 0 8400 1.40 16.1
year 1000-senders-default-cache 10000000 7900 1.70 21.4
year 1000000-senders-default-cache 1e7 5100 3.90 48.7
year 1000000-senders-cache-1100000 10000000 7300 2.00 26.9
DAT

SKIP: {
    skip 'no gnuplot (Debian: gnuplot-nox; make deps installs it)', 1 unless $have_gnuplot;
    skip 'no XML::LibXML (Debian: libxml-libxml-perl; make deps installs it)', 1 unless $have_libxml;

    drawn('bench', $bench);
    my ($texts) = svg_texts("$dir/bench.svg");
    my %have = map { ($_ => 1) } @$texts;
    for my $want ('requests/s', 'latency (ms)', 'connections (N)', 'S = 1000 senders', 'S = 100000 senders',
                  'rateguard', 'echo', 'rateguard p50', 'rateguard p99', 'rateguard p99.9', 'echo p50', 'echo p99',
                  'echo p99.9', 'made by 85-plot.t, 1 s per run') {
        ok($have{$want}, "bench.svg shows \"$want\"");
    }
    my ($top) = sort { $b <=> $a } grep { /^\d+$/ } @$texts;
    ok(defined $top && $top >= 51366 && $top < 2 * 51366, 'its largest tic reaches the largest requests/s (' . ($top // '-') . ')');
    # 2 columns x 2 panels: the four x axes carry the N of the data (1 to 32, log 2).
    is(scalar(grep { $_ eq '32' } @$texts), 4, 'N = 32 on the four x axes');

    my ($rc, $out) = plot('soak', $soak, "$dir/soak.svg");
    is($rc, 0, 'soak: t/plot exits 0') or diag($out);
    ok(-s "$dir/soak.svg", 'soak.svg written');
    my ($stexts, $doc) = svg_texts("$dir/soak.svg");
    %have = map { ($_ => 1) } @$stexts;
    for my $want ('answers per second', 'writer lag (s)', 'time (s)', 'accepted', 'blocked', 'unanswered', 'writer lag',
                  'no status', 'worker', 'writer', 'notifier', 'database', 'master', 'disk', 'hang', 'gremlin',
                  'made by 85-plot.t, seed 42') {
        ok($have{$want}, "soak.svg shows \"$want\"");
    }
    ok(!$have{signals}, 'no row for a fault kind that never came');
    # The lasting faults (database, master twice, disk, hang; the second
    # master restart overlaps the disk, the notifier the hang, as the
    # soak's combinations do), shaded in the answers' panel and in the lag's.
    my @bands = $doc ? $doc->findnodes('//*[local-name()="polygon" and @fill-opacity and @fill-opacity < 1]') : ();
    is(scalar @bands, 8, 'one shaded band per lasting fault in each of the two upper panels');

    drawn('year', $year);
    my ($ytexts) = svg_texts("$dir/year.svg");
    %have = map { ($_ => 1) } @$ytexts;
    for my $want ("rateguard, a year of mail: sustained capacity and latency against the messages table's size",
                  'made by 85-plot.t, 2 s per step', 'sustained capacity (requests/s)', 'latency (ms)',
                  'messages rows (millions)', '1000-senders-default-cache', '1000000-senders-default-cache',
                  '1000000-senders-cache-1100000', 'p99', 'max') {
        ok($have{$want}, "year.svg shows \"$want\"");
    }
    ($top) = sort { $b <=> $a } grep { /^\d+$/ } @$ytexts;
    ok(defined $top && $top >= 9000 && $top < 2 * 9000, 'its largest tic reaches the largest capacity (' . ($top // '-') . ')');
    # Both panels' x axes linear from 0 to 10 million rows; the latency's log.
    my $all = join '|', '', @$ytexts, '';
    my $xtics = () = $all =~ /\|0\|2\|4\|6\|8\|10\|/g;
    is($xtics, 2, 'both x axes linear from 0 to 10 (million rows)') or diag($all);
    like($all, qr/\|1\|10\|100\|/, 'the latency on a log scale');
}

# Malformed data: exit 1, the line named, no picture.
my @bad = (
    ['bench', '', qr/no records \(empty file\?\)/, 'an empty file'],
    ['bench', "# only comments\n\n", qr/no records/, 'a file of comments'],
    ['bench', "rateguard 1 1000 31803 0.03 0.04 0.08 0.31 4.2\necho 1 1000 28717 0.02 0.03 0.07 0.2\n",
     qr/line 2: a bench line .* needs 9 fields, found 8/, 'a bench line one field short'],
    ['bench', "rateguard 1 1000 fast 0.03 0.04 0.08 0.31 4.2\n", qr/line 1: field 4 .* is `fast', not a number/,
     'a word for requests/s'],
    ['bench', "rateguard 0 1000 31803 0.03 0.04 0.08 0.31 4.2\n", qr/line 1: field 2 .*whole number over 0/, 'N = 0'],
    ['bench', "rateguard 1 1000 31803 -0.03 0.04 0.08 0.31 4.2\n", qr/line 1: field 5 .*not a number/, 'a negative latency'],
    ['bench', "rateguard 1 1000 1 1 1 1 1 1\nrateguard 1 1000 2 2 2 2 2 2\n", qr/line 2: a second line for rateguard N=1 S=1000/,
     'the same run twice'],
    ['soak', "answers 0 380 20 0\nfault 5 4 worker\n", qr/line 2: the fault ends \(4\) before it starts \(5\)/,
     'a fault that ends before it starts'],
    ['soak', "answers 0 380 20 0\nlatency 1 2 3\n", qr/line 2: `latency' is not a record of a soak/, 'an unknown record'],
    ['soak', "answers 0 380 20\n", qr/line 1: an answers line .* needs 5 fields, found 4/, 'an answers line short'],
    ['soak', "lag 1.0 - 0.5\n", qr/line 1: DEPTH and LAG_S are both `-' or neither/, 'half a missed sample'],
    ['soak', "fault 1 2 database\n", qr/no answers or lag lines/, 'faults alone'],
    ['soak', "answers 0 380 20 0\nfault 1 2 data\\base\n", qr/line 2: field 4 .*not a name/, 'a fault kind that is no name'],
    ['year', "year a 0 9000 1.2 14.5\nyear b 0 8000 1.3\n", qr/line 2: a year line .* needs 6 fields, found 5/,
     'a year line one field short'],
    ['year', "year a 0 9000 1.2 14.5 3\n", qr/line 1: a year line .* needs 6 fields, found 7/, 'a year line one field long'],
    ['year', "year a 0 9000 1.2 14.5\nyear a ten-million 7900 1.7 21.4\n", qr/line 2: field 3 .* is `ten-million', not a number/,
     'a word for ROWS'],
    ['year', "year a -1 9000 1.2 14.5\n", qr/line 1: field 3 .* is `-1', not a number/, 'a negative ROWS'],
    ['year', "year a 0 9000 1.2 14.5\nyear -a 0 9000 1.2 14.5\n", qr/line 2: field 2 .*not a name/, 'a case that is no name'],
    ['year', "year 1000-senders 0 9000 1.2 14.5\nyear 1000-senders 10000000 7900 1.7 21.4\nyear 1000-senders 1e7 7800 1.8 22.0\n",
     qr/line 3: a second line for 1000-senders ROWS=1e7 \(the first on line 2\)/, 'the same case and size twice'],
    ['year', "year a 0 9000 1.2 14.5\nbench a 0 9000 1.2 14.5\n", qr/line 2: `bench' is not a record of a year run/,
     'an unknown record'],
);
for my $i (0 .. $#bad) {
    my ($kind, $text, $re, $what) = @{ $bad[$i] };
    my $data = put("bad$i.dat", $text);
    my ($rc, $out) = plot($kind, $data, "$dir/bad$i.svg");
    is($rc, 1, "$what: exit 1");
    like($out, qr/^t\/plot: \Q$data\E: /m, "$what: the message names the file");
    like($out, $re, "$what: and says what is wrong") or diag($out);
    ok(!-e "$dir/bad$i.svg" && !-e "$dir/bad$i.svg.tmp", "$what: no picture");
}
{
    my ($rc, $out) = plot('bench', "$dir/nothing-here.dat", "$dir/nothing.svg");
    is($rc, 1, 'a missing file: exit 1');
    like($out, qr/nothing-here\.dat: cannot read/, 'a missing file: said');
}

# Usage, no gnuplot, a gnuplot that fails.
my ($rc, $out) = plot('bench', $bench);
is($rc, 2, 'two arguments: usage, exit 2');
($rc, $out) = plot('pie', $bench, "$dir/pie.svg");
is($rc, 2, 'an unknown kind: usage, exit 2');
like($out, qr/usage: t\/plot bench\|soak\|year DATA SVG/, 'the usage line');
{
    local $ENV{GNUPLOT} = "$dir/no/gnuplot";
    ($rc, $out) = plot('bench', $bench, "$dir/none.svg");
    is($rc, 3, 'no gnuplot: exit 3');
    like($out, qr/no gnuplot \(Debian: apt-get install gnuplot-nox\): no picture/, 'no gnuplot: said');
    ok(!-e "$dir/none.svg", 'no gnuplot: no picture');
}
for my $case (['fails', "exit 1\n", qr/gnuplot failed \(exit status 1\)/],
              ['writes half an SVG', "printf '<svg xmlns=\"http://www.w3.org/2000/svg\"><g>' > '$dir/fake.svg.tmp'\n",
               qr/gnuplot failed \(no whole SVG written\)/],
              ['writes a whole SVG but exits 2', "printf '<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>\\n' > '$dir/fake.svg.tmp'\nexit 2\n",
               qr/gnuplot failed \(exit status 2\)/],
              ['is killed', "kill -KILL \$\$\n", qr/gnuplot failed \(signal 9\)/]) {
    my ($what, $body, $re) = @$case;
    my $fake = put('fake-gnuplot', "#!/bin/sh\n$body");
    chmod 0755, $fake;
    local $ENV{GNUPLOT} = $fake;
    unlink "$dir/fake.svg";
    ($rc, $out) = plot('soak', $soak, "$dir/fake.svg");
    is($rc, 4, "a gnuplot that $what: exit 4");
    like($out, $re, "a gnuplot that $what: said") or diag($out);
    ok(!-e "$dir/fake.svg" && !-e "$dir/fake.svg.tmp", "a gnuplot that $what: no picture");
}
done_testing();
