# SPDX-License-Identifier: GPL-3.0-or-later
# TcpGate.pm - a database outage without touching the database server: a
# TCP relay on 127.0.0.1 that the test opens and cuts. open_gate(PORT,
# TARGET) forks a process that accepts on 127.0.0.1:PORT and relays each
# connection to 127.0.0.1:TARGET; cut() ends that process (by its pid), so
# every relayed connection is closed and new ones are refused, until
# open_gate() on the same port again. The suite's MariaDB goes on serving
# the other tests meanwhile, on its own port. A gate still open when the
# test ends is cut.
package TcpGate;

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use POSIX ();

my %open;       # pid => gate
END { local $?; cut($_) for values %open; }

# A gate from 127.0.0.1:$port to 127.0.0.1:$target, listening when it returns.
sub open_gate {
    my ($port, $target) = @_;
    my $listener = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 64,
                                         ReuseAddr => 1) or die "TcpGate: listen 127.0.0.1:$port: $!";
    my $pid = fork // die "TcpGate: fork: $!";
    if ($pid == 0) {
        relay($listener, $target);
        POSIX::_exit(0);        # never the test's END blocks
    }
    close $listener;
    my $gate = { pid => $pid, port => $port };
    $open{$pid} = $gate;
    return $gate;
}

# The relay's loop: bytes from each side to the other, both closed when
# either closes.
sub relay {
    my ($listener, $target) = @_;
    my $sel = IO::Select->new($listener);
    my %peer;
    while (1) {
        for my $s ($sel->can_read) {
            if ($s == $listener) {
                my $client = $listener->accept or next;
                my $server = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $target);
                if (!$server) { close $client; next }
                @peer{$client, $server} = ($server, $client);
                $sel->add($client, $server);
                next;
            }
            my $other = $peer{$s} or next;
            my $n = sysread($s, my $buf, 65536);
            my $ok = $n;
            while ($ok && length $buf) {
                my $w = syswrite($other, $buf);
                $ok = defined $w && $w > 0;
                substr($buf, 0, $w) = '' if $ok;
            }
            next if $ok;
            $sel->remove($s, $other);
            delete @peer{$s, $other};
            close $s;
            close $other;
        }
    }
}

# The gate closed: its process ended, its connections with it.
sub cut {
    my ($gate) = @_;
    return unless delete $open{$gate->{pid}};
    kill 'KILL', $gate->{pid};
    waitpid($gate->{pid}, 0);
}

1;
