#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 66-root-reads.t - root reads nothing raw from the daemon's user (issue
# 25), each attack done as the security review did it:
#   a. a process of the daemon's user holds the pidfile and answers root's
#      `status` with a forged dump full of terminal escapes (window title,
#      OSC 52 clipboard) and backslashes: root's terminal gets them escaped;
#      `show` prints such a sender escaped too;
#   b. a FIFO at the log path: root's start does not hang, it refuses;
#   c. a hard link at the log path to a root-only file: refused, the file
#      untouched;
#   d. state_dir below a directory of the daemon's user, whose 'sub' is
#      swapped for a link to a directory of root: root neither creates nor
#      chowns anything there;
#   e. the shipped logrotate file (su postfix adm) parses.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Fcntl qw(:flock);
use JSON::PP;
use RG qw(write_config start_daemon stop_daemon policy_connect policy_request run_rateguard migrated_database dbh
          wait_until slurp test_dir rateguard status_json user_dir);

plan skip_all => 'needs root (the daemon\'s user and root are two users)' if $> != 0;
my ($nobody, $nogroup) = ((getpwnam 'nobody')[2], (getgrnam 'nogroup')[2]);
plan skip_all => 'needs user nobody and group nogroup' unless defined $nobody && defined $nogroup;

my $db = migrated_database('rootreads');
my $secret_file = test_dir() . '/root-only';
open my $sfh, '>', $secret_file or die;
print $sfh "root secret\n";
close $sfh;
chmod 0600, $secret_file;

# A directory owned by the daemon's user, as /var/log/rateguard is.
sub nobody_dir { return user_dir($_[0], $nobody, $nogroup) }

# `rateguard -f run` as root with a deadline: (exit code or 'hung', output).
sub start_bounded {
    my ($c, $seconds) = @_;
    my $out = "$c->{path}.out";
    my $p = fork // die;
    if ($p == 0) {
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec(rateguard(), '-f', '-c', $c->{path}, 'run') or die;
    }
    if (wait_until(sub { waitpid($p, WNOHANG) == $p }, $seconds)) {
        return ($? >> 8, slurp($out));
    }
    kill 'KILL', $p;
    waitpid($p, 0);
    return ('hung', slurp($out));
}

# --- a. a forged dump printed by root's status and show ---
my $evil = "evil\e]0;owned\a\e]52;c;cm0glxjmic8=\a\\x0a\\b\@example.org";
my $state = nobody_dir('forged');
my $c = write_config(database => $db, name => 'forged',
                     extra => qq{pidfile = "$state/rateguard.pid"\nstate_dir = "$state"\n});
# A real daemon first, to learn the dump names (and pin the escaping of a
# real sender with the same bytes).
my $pid = start_daemon($c);
my $s = policy_connect($c);
policy_request($s, sasl_username => $evil);
close $s;
my ($rc, $out) = run_rateguard('-c', $c->{path}, 'status');
is($rc, 0, 'status of the real daemon: exit 0');
like($out, qr/^evil\\x1b\]0;owned\\x07\\x1b\]52;c;cm0glxjmic8=\\x07\\\\x0a\\\\b\@example\.org +\d+ +1 /m,
     'the real daemon\'s dump shows the sender escaped, its backslashes doubled');
my $j = status_json($c);
is($j->{senders}[0]{sender}, $evil, 'status --json: the same sender, as JSON escapes it');
is(stop_daemon($pid), 0, 'stopped');
my ($txt) = glob("$state/*.status.txt");
my ($json) = glob("$state/*.status.json");
ok($txt && $json, 'the dump names');

# Now a process of the daemon's user holds the pidfile and forges dumps.
my $forged_txt = "rateguard 1.0, pid 1, up 1 s\n$evil  3\n\x9b2J \xc2\x9b" . "2J\n";
(my $jevil = $evil) =~ s/\\/\\\\/g;    # JSON's escape of the backslash, the rest raw
my %forged_json = (ok => qq{{"senders":[{"sender":"$jevil\\\\"}],"x":1}\n},
                   bad => qq{{"senders":[]}\e]0;owned\a\n});
pipe(my $ready_r, my $ready_w) or die;
my $json_kind = 'ok';
my $liar = fork // die;
if ($liar == 0) {
    close $ready_r;
    open STDOUT, '>', '/dev/null';      # prove waits for no liar
    open STDERR, '>', '/dev/null';
    POSIX::setgid($nogroup);
    POSIX::setuid($nobody) or die "setuid: $!";
    open my $fh, '>', "$state/rateguard.pid" or die "pidfile: $!";
    flock($fh, LOCK_EX) or die;
    print $fh "$$\n";
    $fh->flush;
    $SIG{USR1} = sub { $json_kind = 'bad' };
    $SIG{RTMIN} = sub {
        for ([$txt, $forged_txt], [$json, $forged_json{$json_kind}]) {
            open my $d, '>', "$_->[0].tmp" or die;
            print $d $_->[1];
            close $d;
            rename "$_->[0].tmp", $_->[0];
        }
    };
    print $ready_w "ready\n";
    close $ready_w;
    sleep 1 for 1 .. 120;
    POSIX::_exit(0);
}
END { kill 'KILL', $liar if $liar }
close $ready_w;
<$ready_r>;
($rc, $out) = run_rateguard('-c', $c->{path}, 'status');
is($rc, 0, 'root\'s status of the forged dump: exit 0');
unlike($out, qr/[\x00-\x09\x0b-\x1f\x7f]/, 'no ESC, BEL or other control byte reaches root\'s terminal');
unlike($out, qr/\xc2[\x80-\x9f]/, 'nor a C1 control');
is($out, "rateguard 1.0, pid 1, up 1 s\n"
       . "evil\\x1b]0;owned\\x07\\x1b]52;c;cm0glxjmic8=\\x07\\x0a\\\\b\@example.org  3\n\\x9b2J \\xc2\\x9b2J\n",
   'shown escaped: \\x1b, \\x07, a lone backslash doubled, C1 and stray bytes as \\xNN');
($rc, $out) = run_rateguard('-c', $c->{path}, '--json', 'status');
is($rc, 0, 'root\'s status --json of the forged dump: exit 0');
unlike($out, qr/[\x00-\x09\x0b-\x1f\x7f]/, 'no control byte in the JSON printed');
is($out, qq{{"senders":[{"sender":"evil\\u001b]0;owned\\u0007\\u001b]52;c;cm0glxjmic8=\\u0007\\\\x0a\\\\b\@example.org\\\\"}],"x":1}\n},
   'control characters inside strings as \\u00XX');
ok(eval { decode_json($out) }, 'and it is valid JSON');
kill 'USR1', $liar;
sleep 0.2;
my $err;
($rc, $out, $err) = run_rateguard('-c', $c->{path}, '--json', 'status');
is($rc, 6, 'a JSON dump with a control byte outside its strings: exit 6');
is($out, '', 'nothing of it printed');
like($err, qr/^rateguard: status: the JSON dump is not JSON \(byte 0x1b at offset 14\); not printed$/m,
     'refused with the offset of the byte');
my $h = dbh($db);
$h->do('INSERT IGNORE INTO ratelimits (sender, quota, quota_reset) VALUES (?, 5, 5)', undef, $evil);
($rc, $out) = run_rateguard('-c', $c->{path}, 'show', $evil);
is($rc, 0, 'show of that sender: exit 0');
like($out, qr/^sender: +evil\\x1b\]0;owned\\x07\\x1b\]52;c;cm0glxjmic8=\\x07\\\\x0a\\\\b\@example\.org$/m,
     'show prints it escaped, backslashes doubled');
unlike($out, qr/[\x00-\x09\x0b-\x1f\x7f]/, 'no control byte from show');
kill 'KILL', $liar;
waitpid($liar, 0);
$h->disconnect;

# --- b. a FIFO at the log path ---
my $logs = nobody_dir('log-fifo');
POSIX::mkfifo("$logs/rateguard.log", 0640) or die "mkfifo: $!";
chown $nobody, $nogroup, "$logs/rateguard.log";
my $cb = write_config(database => $db, name => 'fifo', sections => { log => qq{file = "$logs/rateguard.log"\n} });
my $t0 = time;
($rc, $out) = start_bounded($cb, 10);
is($rc, 6, 'a FIFO at the log path: root\'s start does not hang, exit 6');
cmp_ok(time - $t0, '<', 5, 'within 5 s');
like($out, qr/fatal: cannot start: refusing log file \Q$logs\E\/rateguard\.log: not a regular file$/m,
     'refused: not a regular file');

# --- c. a hard link at the log path to a root-only file ---
my $logl = nobody_dir('log-link');
link $secret_file, "$logl/rateguard.log" or die "link: $!";
my $cc = write_config(database => $db, name => 'hlink', sections => { log => qq{file = "$logl/rateguard.log"\n} });
($rc, $out) = start_bounded($cc, 10);
is($rc, 6, 'a hard link at the log path: exit 6');
like($out, qr/fatal: cannot start: refusing log file \Q$logl\E\/rateguard\.log: 2 hard links \(a link to another file is not appended to\)$/m,
     'refused: 2 hard links');
is(slurp($secret_file), "root secret\n", 'the root file is untouched');
my @st = stat $secret_file;
is(sprintf('%d:%04o', $st[4], $st[2] & 07777), '0:0600', 'still root\'s, mode 0600');

# --- c2. the log file log.c creates takes its directory's group ---
my $logg = nobody_dir('log-group');
chown $nobody, 4, $logg;        # adm, as /var/log/rateguard is postfix:adm
my $cg = write_config(database => $db, name => 'group', sections => { log => qq{file = "$logg/rateguard.log"\n} });
$pid = start_daemon({ %$cg, log => "$logg/rateguard.log" });
@st = stat "$logg/rateguard.log";
is(sprintf('%d:%d:%04o', @st[4, 5], $st[2] & 07777), "$nobody:4:0640",
   'a new log file: the daemon\'s user, the directory\'s group (adm), 0640');
is(stop_daemon($pid), 0, 'stopped');

# --- d. a symbolic link swapped in below a directory of the daemon's user ---
my $ud = nobody_dir('swap');
my $rootdir = test_dir() . '/root-owned';
mkdir $rootdir, 0755;
mkdir "$ud/sub", 0755;
chown $nobody, $nogroup, "$ud/sub";
rename "$ud/sub", "$ud/sub.old";
symlink $rootdir, "$ud/sub" or die;            # what the daemon's user can do
my $cd = write_config(database => $db, name => 'swap', extra => qq{state_dir = "$ud/sub/state"\n});
($rc, $out) = start_bounded($cd, 10);
is($rc, 6, 'state_dir through a link in a directory of the daemon\'s user: exit 6');
like($out, qr/fatal: cannot start: \Q$ud\E\/sub\/state: 'sub' is a symbolic link or not a directory, in a directory that others than root can write; refused$/m,
     'refused, naming the link');
ok(!-e "$rootdir/state", 'nothing created in root\'s directory');
@st = stat $rootdir;
is($st[4], 0, 'root\'s directory still root\'s (not chowned)');
unlink "$ud/sub";
rename "$ud/sub.old", "$ud/sub";
$pid = start_daemon($cd);
@st = stat "$ud/sub/state";
ok(-d _ && !-l "$ud/sub/state", 'with a real directory there, it makes its own state_dir');
is("$st[4]:$st[5]", "$nobody:$nogroup", 'owned by the daemon\'s user');
is(stop_daemon($pid), 0, 'stopped');

# --- e. the shipped logrotate file ---
SKIP: {
    my $lr = (grep { -x } map { "$_/logrotate" } split /:/, "$ENV{PATH}:/usr/sbin:/sbin")[0];
    skip 'logrotate is not installed', 2 unless $lr;
    skip 'no user postfix or group adm to su to', 2 unless defined getpwnam('postfix') && defined getgrnam('adm');
    my $lout = `$lr -d -s ${\ test_dir()}/logrotate.state $FindBin::Bin/../logrotate/rateguard 2>&1`;
    is($? >> 8, 0, 'logrotate -d parses the shipped file') or diag $lout;
    like($lout, qr/switching euid from 0 to \d+ and egid from 0 to 4/, 'and rotates as postfix:adm (su)');
}
done_testing();
