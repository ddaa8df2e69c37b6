package Social::Stream;

# A client of GET /v1/stream for the tests: WebSocket (RFC 6455, with the
# means to send malformed frames on purpose) and Server-Sent Events.
# Core Perl modules only.
#
#   my $ws = Social::Stream->ws(token => $t, query => 'since=5');
#   my $ev = $ws->event(2);          # the next event (JSON), or undef
#   $ws->frame(0x9, 'hi');           # a masked ping
#   my $f = $ws->read_frame(2);      # {opcode, fin, payload} | undef | 'eof'
#
#   my $sse = Social::Stream->sse(token => $t, last_event_id => 5);
#   my $ev = $sse->event(2);         # {id, event, data} or undef
#
# tls => CA_FILE (either kind): over TLS (wss://, https://) to localhost,
# the certificate checked against that CA.

use strict;
use warnings;

use Digest::SHA qw(sha1_base64);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use Socket qw(SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
use Time::HiRes qw(time);
use Social::Test ();

my $JSON = JSON::PP->new->utf8->canonical;

sub _connect {
    my ($o) = @_;
    my $port = $o->{port} || $ENV{TEST_NGINX_PORT} || 1984;
    my $s = IO::Socket::INET->new(Proto => 'tcp') or die "socket: $!";
    if ($o->{rcvbuf}) {
        setsockopt($s, SOL_SOCKET, SO_RCVBUF, $o->{rcvbuf})
            or die "SO_RCVBUF: $!";
    }
    $s->connect(pack_sockaddr_in($port, inet_aton('127.0.0.1')))
        or die "connect: $!";
    if ($o->{tls}) {
        require IO::Socket::SSL;
        IO::Socket::SSL->start_SSL($s, SSL_hostname => 'localhost',
            SSL_verifycn_name => 'localhost', SSL_verifycn_scheme => 'http',
            SSL_ca_file => $o->{tls})
            or die "TLS: $IO::Socket::SSL::SSL_ERROR";
    }
    $s->autoflush(1);
    binmode $s;
    return $s;
}

sub _request {
    my ($o, @headers) = @_;
    my $path = $o->{path} || '/v1/stream';
    $path .= '?' . $o->{query} if defined $o->{query};
    push @headers, "Authorization: Bearer $o->{token}" if $o->{token};
    push @headers, @{ $o->{headers} || [] };
    return join "\r\n", "GET $path HTTP/1.1", 'Host: localhost', @headers,
        '', '';
}

# reads the answer's head; the rest stays in the buffer
sub _head {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while ($self->{buf} !~ /\r\n\r\n/) {
        my $left = $deadline - time;
        return 0 if $left <= 0 || !$self->_fill($left);
    }
    $self->{buf} =~ s/\A(.*?)\r\n\r\n//s;
    my ($line, @lines) = split /\r\n/, $1;
    ($self->{status}) = $line =~ m{^HTTP/1\.\d (\d+)};
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $self->{headers}{ lc $k } = $v;
    }
    return 1;
}

sub _fill {
    my ($self, $timeout) = @_;
    return 0 if $self->{eof};
    my $sel = IO::Select->new($self->{sock});
    # over TLS, bytes already decrypted wait in the socket object
    my $pending = $self->{sock}->can('pending') && $self->{sock}->pending;
    return 0 unless $pending || $sel->can_read($timeout);
    my $n = sysread($self->{sock}, my $chunk, 65536);
    if (!$n) {
        $self->{eof} = 1;
        return 0;
    }
    $self->{buf} .= $chunk;
    return 1;
}

# Social::Stream->ws(token =>, query =>, headers => [...], key =>,
#                    omit => [header names], version =>, rcvbuf =>,
#                    port =>, tls =>)
sub ws {
    my ($class, %o) = @_;
    my $key = $o{key} // encode_base64(join('', map { chr int rand 256 }
                                                1 .. 16), '');
    my %h = (Upgrade => 'websocket', Connection => 'Upgrade',
             'Sec-WebSocket-Key' => $key,
             'Sec-WebSocket-Version' => $o{version} // 13);
    delete $h{$_} for @{ $o{omit} || [] };
    my $self = bless { sock => _connect(\%o), buf => '', headers => {},
                       ws => 1 }, $class;
    print { $self->{sock} } $o{raw_request}
        // _request(\%o, map { "$_: $h{$_}" } sort keys %h);
    $self->_head($o{timeout}) or die "no answer to the upgrade";
    $self->{accept_ok} = ($self->{headers}{'sec-websocket-accept'} // '')
        eq sha1_base64($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11') . '=';
    return $self;
}

# Social::Stream->sse(token =>, query =>, last_event_id =>, headers => [])
sub sse {
    my ($class, %o) = @_;
    my @h = ('Accept: text/event-stream');
    push @h, "Last-Event-ID: $o{last_event_id}" if defined $o{last_event_id};
    my $self = bless { sock => _connect(\%o), buf => '', headers => {} },
        $class;
    print { $self->{sock} } _request(\%o, @h);
    $self->_head($o{timeout}) or die "no answer to the SSE request";
    return $self;
}

sub status { $_[0]{status} }
sub header { $_[0]{headers}{ lc $_[1] } }
sub accept_ok { $_[0]{accept_ok} }
sub socket { $_[0]{sock} }

# a client frame; options: fin (1), mask (1), rsv (0..7), len (claimed
# payload length), raw (bytes instead of a frame)
sub frame {
    my ($self, $opcode, $payload, %o) = @_;
    $payload //= '';
    my $fin = $o{fin} // 1;
    my $masked = $o{mask} // 1;
    my $len = $o{len} // length $payload;
    my $b0 = ($fin ? 0x80 : 0) | (($o{rsv} // 0) << 4) | $opcode;
    my $head = chr($b0);
    my $m = $masked ? 0x80 : 0;
    if ($len < 126) {
        $head .= chr($m | $len);
    } elsif ($len < 65536) {
        $head .= chr($m | 126) . pack('n', $len);
    } else {
        $head .= chr($m | 127) . pack('Q>', $len);
    }
    if ($masked) {
        my $key = join '', map { chr int rand 256 } 1 .. 4;
        my $k = $key x (int(length($payload) / 4) + 1);
        $payload = $payload ^ substr($k, 0, length $payload);
        $head .= $key;
    }
    $self->raw($head . $payload);
}

sub raw {
    my ($self, $bytes) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $sock = $self->{sock};
    print {$sock} $bytes;
}

sub text {
    my ($self, $text) = @_;
    $self->frame(0x1, $text);
}

sub json {
    my ($self, $v) = @_;
    $self->frame(0x1, $JSON->encode($v));
}

# the next server frame: {opcode, fin, payload}, undef on timeout, 'eof'
sub read_frame {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (1) {
        if (length $self->{buf} >= 2) {
            my ($b0, $b1) = unpack 'CC', $self->{buf};
            my $len = $b1 & 0x7f;
            my $off = 2;
            if ($len == 126) {
                $len = length $self->{buf} >= 4
                    ? unpack('n', substr $self->{buf}, 2, 2) : undef;
                $off = 4;
            } elsif ($len == 127) {
                $len = length $self->{buf} >= 10
                    ? unpack('Q>', substr $self->{buf}, 2, 8) : undef;
                $off = 10;
            }
            if (defined $len && length $self->{buf} >= $off + $len) {
                my $payload = substr $self->{buf}, $off, $len;
                substr($self->{buf}, 0, $off + $len) = '';
                return { opcode => $b0 & 0x0f, fin => $b0 >> 7,
                         rsv => ($b0 >> 4) & 7, masked => $b1 >> 7,
                         payload => $payload };
            }
        }
        return 'eof' if $self->{eof};
        my $left = $deadline - time;
        return undef if $left <= 0;
        $self->_fill($left) or ($self->{eof} ? next : return undef);
    }
}

# the next event: WebSocket text frames decoded (pings answered), or SSE
# blocks as {id, event, data}; undef when none came in time
sub event {
    my ($self, $timeout) = @_;
    return $self->_sse_event($timeout) unless $self->{ws};
    my $deadline = time + ($timeout // 5);
    while (1) {
        my $left = $deadline - time;
        return undef if $left <= 0;
        my $f = $self->read_frame($left);
        return undef if !ref $f;
        if ($f->{opcode} == 0x9) {
            $self->frame(0xa, $f->{payload});
            next;
        }
        $self->{closed} = $f, return undef if $f->{opcode} == 0x8;
        return $JSON->decode($f->{payload}) if $f->{opcode} == 0x1;
    }
}

# events until none comes for $quiet seconds (or $max of them)
sub events {
    my ($self, $quiet, $max) = @_;
    my @ev;
    while (!defined $max || @ev < $max) {
        my $e = $self->event($quiet // 1) or last;
        push @ev, $e;
    }
    return @ev;
}

sub _sse_event {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (1) {
        while ($self->{buf} =~ s/\A(.*?)\n\n//s) {
            my $block = $1;
            my %e;
            for my $line (split /\n/, $block) {
                next if $line =~ /^:/;
                $e{id} = $1 if $line =~ /^id: ?(.*)$/;
                $e{data} .= $1 if $line =~ /^data: ?(.*)$/;
            }
            $self->{heartbeats}++, next unless defined $e{data};
            my $d = $JSON->decode($e{data});
            return { %$d, id => $e{id} };
        }
        my $left = $deadline - time;
        return undef if $left <= 0;
        $self->_fill($left) or return undef;
    }
}

# reads until the server's close frame: its code (0 without one), or
# undef when none came
sub close_code {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (1) {
        my $left = $deadline - time;
        return undef if $left <= 0;
        my $f = $self->read_frame($left);
        return undef if !ref $f;
        next unless $f->{opcode} == 0x8;
        return length $f->{payload} >= 2
            ? unpack('n', $f->{payload}) : 0;
    }
}

# whether the server closed the TCP connection within the time
sub eof_within {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (!$self->{eof}) {
        my $left = $deadline - time;
        return 0 if $left <= 0;
        $self->{buf} = '';
        $self->_fill($left) or last;
    }
    return $self->{eof} ? 1 : 0;
}

sub close {
    my ($self) = @_;
    close $self->{sock};
}


# chat helpers of the stream suites: a message sent (dies unless 201), and
# streams known to be attached (an event sent after their subscription
# answered arrives; the suites wait for one instead of sleeping)
sub say_in {
    my ($c, $u, $text) = @_;
    my ($st, $m) = Social::Test::api('POST', "/v1/conversations/$c/messages",
                                     { text => $text }, $u->{auth});
    die "send: $st" unless $st == 201;
    return $m;
}

sub ready {
    my ($c, $u, @streams) = @_;
    my $slow = $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;
    my $m = say_in($c, $u, 'ready ' . rand());
    for my $s (@streams) {
        my $e;
        do { $e = $s->event(5 * $slow) } while ($e && !($e->{event} eq
            'message.created' && $e->{data}{id} eq $m->{id}));
        die "a stream did not get ready" unless $e;
    }
    return $m;
}

1;
