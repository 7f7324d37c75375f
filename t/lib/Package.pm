# SPDX-License-Identifier: GPL-3.0-or-later
# Package.pm - what the tests that install the Debian package share (t/63,
# t/64, t/68): the checks before touching the machine, apt-get in a mount
# namespace where a SysV host's service actions are allowed, the package's
# state, a rebuild of the package under another version (t/63's upgrade,
# t/90's upgrade and downgrade), and the cleanup that leaves the machine as
# it was found.
#
# preflight() decides once whether the test may run: root, RG_SKIP_PACKAGE
# unset, the tools present; a rateguard package already on the machine
# (one this test did not install) fails the test instead of skipping it (CI
# machines have none, and a skip would hide that the test never ran), and
# leaves that package alone. After preflight() the machine's package is the
# test's, and cleanup() (from the test's END) purges it.
package Package;

use strict;
use warnings;
use Test::More;
use RG qw(test_dir);
use Exporter 'import';

our @EXPORT_OK = qw(preflight cleanup apt run pkg_status daemon_pid rebuild ended);
my $ours;

# Skip or fail as above; $why names the test's need of root in the skip.
sub preflight {
    my ($why, @tools) = @_;
    plan skip_all => "$why runs as root (it installs a package)" if $> != 0;
    plan skip_all => 'RG_SKIP_PACKAGE is set' if $ENV{RG_SKIP_PACKAGE};
    for my $tool (@tools) {
        plan skip_all => "$tool is missing (make deps installs it)"
            unless grep { -x "$_/$tool" } split /:/, "$ENV{PATH}:/usr/sbin:/sbin";
    }
    my $foreign = pkg_status();
    if ($foreign =~ /installed|config-files/) {
        plan tests => 1;
        fail("this machine has a rateguard package (dpkg: $foreign): the test would replace and purge it; "
             . 'remove it (dpkg --purge rateguard) or set RG_SKIP_PACKAGE=1 to skip this test');
        exit 1;
    }
    $ENV{DEBIAN_FRONTEND} = 'noninteractive';
    $ours = 1;
}

# The daemon stopped and the package purged, if preflight() made them ours.
sub cleanup {
    return unless $ours;
    if (-x '/usr/sbin/rateguard' && -e '/etc/rateguard/rateguard.conf') {
        system('/usr/sbin/rateguard stop >/dev/null 2>&1');
    }
    system('dpkg --purge rateguard >/dev/null 2>&1') if pkg_status() =~ /installed|config-files/;
}

# A shell command: (exit code, stdout and stderr).
sub run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

# apt-get ARGS in a private mount namespace where /sbin/runlevel says "N 2"
# (without systemd as PID 1 invoke-rc.d cannot read a runlevel and refuses
# every start) and a policy-rc.d that forbids every action (Docker's "exit
# 101") is replaced by one that allows them: the package's own choices are
# what is tested. Nothing outside the namespace sees either.
my $binds;
sub apt {
    my ($args) = @_;
    $binds //= do {
        my $dir = test_dir();
        for (["$dir/runlevel", "echo 'N 2'"], ["$dir/policy-rc.d", 'exit 0']) {
            open my $fh, '>', $_->[0] or die "$_->[0]: $!";
            print $fh "#!/bin/sh\n$_->[1]\n";
            close $fh;
            chmod 0755, $_->[0];
        }
        join ' && ', "mount --bind $dir/runlevel /sbin/runlevel",
            -e '/usr/sbin/policy-rc.d' ? "mount --bind $dir/policy-rc.d /usr/sbin/policy-rc.d" : ();
    };
    my @apt = ('apt-get', '-y', '-q', '-o', 'DPkg::Lock::Timeout=300', '-o', 'Dpkg::Options::=--force-confold');
    return run(qq{unshare -m sh -c '$binds && @apt $args'});
}

# The packaged tree $tree (debian_package()'s) built again as version
# $version in $dir: a copy of the tree with a changelog entry for $version
# on top ($why is its text), and whatever $edit (a sub given the copy's
# folder) changes. The copy keeps the first build's objects
# (dpkg-buildpackage -nc: no clean first), so only the package is made
# again: the daemon is the same binary; its staging folder and debhelper's
# records go, so a changed file is packaged. Returns the .deb's path, or
# dies with the build's output.
sub rebuild {
    my (%o) = @_;
    my ($tree, $dir, $version) = @o{qw(tree dir version)};
    my ($name) = $tree =~ m{([^/]+)/?\z};
    my $src = "$dir/$name";
    my ($rc, $out) = run("rm -rf $dir && mkdir -p $dir && cp -a $tree $dir/ && cd $src && "
                         . 'rm -rf debian/rateguard debian/.debhelper debian/debhelper-build-stamp debian/*.substvars '
                         . 'debian/*.debhelper debian/files');
    die "copying $tree: $out" if $rc != 0;
    my $changelog = RG::slurp("$src/debian/changelog");
    open my $fh, '>', "$src/debian/changelog" or die "$src/debian/changelog: $!";
    print $fh "rateguard ($version) bookworm; urgency=medium\n\n  * $o{why}\n\n"
            . " -- rateguard test <test\@example.org>  " . `date -R` . "\n" . $changelog;
    close $fh;
    $o{edit}->($src) if $o{edit};
    ($rc, $out) = run("cd $src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u CC -u CFLAGS -u CPPFLAGS -u LDFLAGS "
                      . 'dpkg-buildpackage -us -uc -b -nc');
    my $deb = "$dir/rateguard_${version}_amd64.deb";
    die "dpkg-buildpackage of $version failed:\n$out" if $rc != 0 || !-f $deb;
    return $deb;
}

# dpkg's "Status Version" of rateguard, '' when it knows none.
sub pkg_status { return scalar `dpkg-query -W -f='\${Status} \${Version}' rateguard 2>/dev/null` }

# The process $pid is gone or a zombie (as `rateguard stop` counts it: it
# holds nothing any more, and this machine's PID 1 may reap it late).
sub ended { return RG::process_ended(@_) }

# The running daemon's pid from `rateguard status`, '' when none runs.
sub daemon_pid {
    my ($rc, $out) = run('/usr/sbin/rateguard status');
    return $rc == 0 && $out =~ /^rateguard \S+, pid (\d+),/m ? $1 : '';
}

1;
