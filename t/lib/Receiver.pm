# SPDX-License-Identifier: GPL-3.0-or-later
# Receiver.pm - a real HTTP receiver for the webhook tests: a forked
# server on 127.0.0.1 that records every request (method, target, headers,
# body) as a JSON line and answers with the statuses it is told, after an
# optional delay. Receiver::hang makes it hang for a while: a request
# that comes in then is recorded with `dropped` set, held unanswered until
# the hang is over, and its connection closed without a reply (a hung
# server that finally drops the connection: the sender must send again).
# Stopped at the end of the test script.
package Receiver;

use strict;
use warnings;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep);

my @running;
END { local $?; for my $pid (@running) { kill "KILL", $pid; waitpid($pid, 0); } }   # $? is the exit code

# %opt: port (default: free), log (file), statuses (list, the last repeats),
# delay (seconds before answering).
sub start {
    my (%opt) = @_;
    my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $opt{port} // 0,
                                       Listen => 16, ReuseAddr => 1) or die "receiver: $!";
    my $port = $server->sockport;
    my $pid = fork // die;
    if ($pid == 0) {
        my @statuses = @{ $opt{statuses} // [200] };
        while (my $c = $server->accept) {
            my $line = <$c> // next;
            my ($method, $target) = $line =~ /^(\S+) (\S+)/;
            my %headers;
            while (my $h = <$c>) {
                $h =~ s/\r?\n\z//;
                last if $h eq '';
                my ($k, $v) = split /:\s*/, $h, 2;
                $headers{lc $k} = $v;
            }
            my $body = '';
            read($c, $body, $headers{'content-length'}) if $headers{'content-length'};
            my $until = hang_until($opt{log});
            my $hung = $until > Time::HiRes::time();
            open my $fh, '>>', $opt{log} or die;
            print $fh encode_json({ method => $method, target => $target, headers => \%headers,
                                    body => $body, time => Time::HiRes::time(), ($hung ? (dropped => 1) : ()) }), "\n";
            close $fh;
            if ($hung) {
                sleep $until - Time::HiRes::time() while $until > Time::HiRes::time();
                close $c;
                next;
            }
            sleep $opt{delay} if $opt{delay};
            my $status = @statuses > 1 ? shift @statuses : $statuses[0];
            print $c "HTTP/1.1 $status X\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                   . "Connection: close\r\n\r\n{}";
            close $c;
        }
        POSIX::_exit(0);
    }
    close $server;
    push @running, $pid;
    return { pid => $pid, port => $port, log => $opt{log} };
}

sub stop {
    my ($r) = @_;
    kill 'KILL', $r->{pid};
    waitpid($r->{pid}, 0);
    @running = grep { $_ != $r->{pid} } @running;
}

# Until when (epoch seconds) the receiver hangs: 0 when it does not.
sub hang_until {
    my ($log) = @_;
    open my $fh, '<', "$log.hang" or return 0;
    my $t = <$fh> // 0;
    return $t + 0;
}

# Hang for $seconds from now: requests coming in until then are held and
# dropped unanswered (one at a time: the others wait in the backlog).
sub hang {
    my ($r, $seconds) = @_;
    open my $fh, '>', "$r->{log}.hang.tmp" or die "$r->{log}.hang.tmp: $!";
    printf $fh "%.3f\n", Time::HiRes::time() + $seconds;
    close $fh or die;
    rename "$r->{log}.hang.tmp", "$r->{log}.hang" or die "$r->{log}.hang: $!";
}

# The requests received so far.
sub requests {
    my ($r) = @_;
    open my $fh, '<', $r->{log} or return [];
    return [map { decode_json($_) } <$fh>];
}

1;
