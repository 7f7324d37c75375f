# SPDX-License-Identifier: GPL-3.0-or-later
# TrxPoll.pm - for the tests of bounded transactions (t/92 the purge, t/93
# the period reset): a child process that polls
# information_schema.INNODB_TRX as MariaDB's root (the test server's, no
# password on its socket; it has the PROCESS privilege) until stopped, and
# reports the largest trx_rows_modified of any transaction seen and how
# many samples showed one whose statement matched a pattern (or that was
# between its statement and its COMMIT: no statement). InnoDB refreshes the
# table's cache only when it was last read more than 0.1 s ago, so by
# default a sample every 0.12 s.
#
#   my $p = TrxPoll::start($dir, qr/^DELETE FROM `messages`/);
#   ... my ($max, $seen) = TrxPoll::stop($p);
package TrxPoll;
use strict;
use warnings;
use DBI;
use POSIX qw(_exit);
use Time::HiRes qw(sleep);

sub start {
    my ($dir, $pattern, $every) = @_;
    $every //= 0.12;
    my $p = { out => "$dir/trx-poll.$$." . time, stop => "$dir/trx-poll-stop.$$." . time };
    unlink $p->{stop}, $p->{out};
    my $kid = fork // die "fork: $!";
    if ($kid) {
        $p->{pid} = $kid;
        return $p;
    }
    my $root = DBI->connect("DBI:MariaDB:mariadb_socket=$ENV{RG_DB_SOCKET}", 'root', '',
                            { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
    my ($max, $seen) = (0, 0);
    until (-e $p->{stop}) {
        for my $t (@{ $root->selectall_arrayref(q{SELECT trx_rows_modified, trx_query FROM information_schema.INNODB_TRX
                                                  WHERE trx_rows_modified > 0}) }) {
            $seen++ if !defined $t->[1] || $t->[1] =~ $pattern;
            $max = $t->[0] if $t->[0] > $max;
        }
        sleep $every;
    }
    open my $fh, '>', $p->{out} or _exit(1);
    print $fh "$max $seen\n";
    close $fh;
    _exit(0);
}

# Stop it: (largest rows modified, matching samples).
sub stop {
    my ($p) = @_;
    open my $touch, '>', $p->{stop} or die "$p->{stop}: $!";
    close $touch;
    waitpid($p->{pid}, 0);
    open my $fh, '<', $p->{out} or return;
    my $line = <$fh> // '';
    unlink $p->{stop}, $p->{out};
    return split ' ', $line;
}

1;
