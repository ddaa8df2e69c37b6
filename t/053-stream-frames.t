# The WebSocket protocol edges and the stream's limits: every malformed
# frame kind closed with its code (1002, 1007, 1009), the close handshake
# answered, pings answered, fragmented messages, server pings with a
# client that stops answering closed, a slow consumer disconnected past
# social_stream_max_unsent, and replay after the Redis subscription was
# lost (nothing missing).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Time::HiRes qw(time sleep);
use Social::Test;
use Social::Stream;
use Socket qw(SOL_SOCKET SO_LINGER);

# waits stretch under valgrind
my $slow = $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;

start_nginx(workers => 1, replace => {
    'social_stream_ping_interval 30s;' => 'social_stream_ping_interval 1s;',
    'social_stream_max_message 64k;' => 'social_stream_max_message 4k;',
    'social_stream_max_unsent 1m;' => 'social_stream_max_unsent 256k;',
    'social_stream_close_timeout 5s;' => 'social_stream_close_timeout 1s;',
});

my ($ann, $bob) = map { new_user($_) } qw(ann bob);
my (undef, $g) = api('POST', '/v1/conversations',
                     { member_ids => [$bob->{id}], title => 'frames' },
                     $ann->{auth});

sub ws { Social::Stream->ws(token => $ann->{token}, @_) }

subtest 'malformed frames are closed with their code' => sub {
    my @cases = (
        [1002, 'an unmasked frame', sub { $_[0]->frame(0x1, 'x', mask => 0) }],
        [1002, 'reserved bits', sub { $_[0]->frame(0x1, 'x', rsv => 4) }],
        [1002, 'opcode 3', sub { $_[0]->frame(0x3, 'x') }],
        [1002, 'opcode 0xB', sub { $_[0]->frame(0xb, '') }],
        [1002, 'a ping of 126 bytes', sub { $_[0]->frame(0x9, 'p' x 126) }],
        [1002, 'a fragmented ping', sub { $_[0]->frame(0x9, 'p', fin => 0) }],
        [1002, 'a continuation without a message',
         sub { $_[0]->frame(0x0, 'x') }],
        [1002, 'a new message inside a fragmented one',
         sub { $_[0]->frame(0x1, 'a', fin => 0); $_[0]->frame(0x1, 'b') }],
        [1009, 'a message over the maximum',
         sub { $_[0]->frame(0x1, 'x' x 5000) }],
        [1009, 'a fragmented message over the maximum',
         sub { $_[0]->frame(0x1, 'x' x 3000, fin => 0);
               $_[0]->frame(0x0, 'x' x 3000) }],
        [1009, 'a length that only claims to be huge',
         sub { $_[0]->frame(0x2, '', len => 2**40) }],
        [1007, 'text that is not UTF-8', sub { $_[0]->frame(0x1, "a\xff") }],
        [1007, 'an overlong encoding', sub { $_[0]->frame(0x1, "\xc0\xaf") }],
        [1007, 'a surrogate', sub { $_[0]->frame(0x1, "\xed\xa0\x80") }],
        [1007, 'UTF-8 split over fragments, broken',
         sub { $_[0]->frame(0x1, "\xe2\x82", fin => 0);
               $_[0]->frame(0x0, "x") }],
        [1002, 'a close with one byte', sub { $_[0]->frame(0x8, 'x') }],
        [1002, 'a close with code 999',
         sub { $_[0]->frame(0x8, pack('n', 999)) }],
        [1002, 'a close with code 1005',
         sub { $_[0]->frame(0x8, pack('n', 1005)) }],
        [1007, 'a close reason that is not UTF-8',
         sub { $_[0]->frame(0x8, pack('n', 1000) . "\xff") }],
    );
    for my $c (@cases) {
        my $ws = ws();
        $c->[2]->($ws);
        is($ws->close_code(3), $c->[0], "$c->[1]: $c->[0]");
        ok($ws->eof_within(3), 'then the connection closes');
    }
};

subtest 'the close handshake and pings are answered' => sub {
    my $ws = ws();
    $ws->frame(0x9, 'hello');
    my $f;
    do { $f = $ws->read_frame(2) } while (ref $f && $f->{opcode} != 0xa);
    is($f->{payload}, 'hello', 'a pong with the ping payload');
    ok(!$f->{masked}, 'server frames are not masked');
    $ws->frame(0x8, pack('n', 1000) . 'bye');
    is($ws->close_code(2), 1000, 'close 1000 is answered with 1000');
    ok($ws->eof_within(3), 'and the server closes the connection');

    $ws = ws();
    $ws->frame(0x8, pack('n', 4000));
    is($ws->close_code(2), 4000, 'an application code is echoed');
    $ws = ws();
    $ws->frame(0x8, '');
    is($ws->close_code(2), 0, 'an empty close is answered without a code');
};

subtest 'fragmented and interleaved messages are read' => sub {
    my $b = Social::Stream->ws(token => $bob->{token});
    my $a = ws();
    Social::Stream::ready($g->{id}, $bob, $a, $b);
    my $json = qq({"type":"typing","conversation_id":"$g->{id}"});
    $a->frame(0x1, substr($json, 0, 10), fin => 0);
    $a->frame(0x9, 'in between');
    $a->frame(0x0, substr($json, 10, 10), fin => 0);
    $a->frame(0x0, substr($json, 20));
    my $e = $b->event(2);
    is($e && $e->{event}, 'typing', 'a typing message in three fragments');
    $a->frame(0x2, "\x00\x01");
    $a->text('not json');
    $a->json({ type => 'other' });
    my $m = Social::Stream::say_in($g->{id}, $bob, 'still open');
    is($a->event(2)->{data}{id}, $m->{id},
       'binary and unknown messages are ignored');
    $_->close for $a, $b;
};

subtest 'server pings; a client that stops answering is closed' => sub {
    my $ws = ws();
    my $f;
    do { $f = $ws->read_frame(3) } while (ref $f && $f->{opcode} != 0x9);
    ok(ref $f, 'a ping within the interval');
    my $live = ws();
    my $t0 = time;
    ok($ws->eof_within(5), 'no pong: closed');
    ok(time - $t0 < 5, 'within a few intervals');
    my $e;
    for (1 .. 3) {
        $e = $live->event(1.2);
    }
    ok(!$live->{eof}, 'a client that answers pings stays');
    $live->close;
};

subtest 'a slow consumer is disconnected' => sub {
    my $laggard = new_user('slow');
    my $ws = Social::Stream->ws(token => $laggard->{token}, rcvbuf => 4096);
    my (undef, $c) = api('POST', '/v1/conversations',
                         { member_ids => [$ann->{id}], title => 'slow' },
                         $laggard->{auth});
    Social::Stream::ready($c->{id}, $ann, $ws);
    error_log_mark();
    my $t0 = time;
    # 20 MB of events on the user's channel, never read (the ids are far
    # in the future so that they are new)
    redis_cli('EVAL', "local big = string.rep('a', 100000) "
              . "for i = 1, 200 do redis.call('PUBLISH', KEYS[1], "
              . "'9000000000000-' .. i .. ' {\"event\":\"x\",\"data\":\"' "
              . ".. big .. '\"}') end", 1, "social:ev:$laggard->{id}");
    ok(wait_until(sub {
        grep { /bytes unsent/ } error_log_since() }, 10),
       'the stream was closed past its bound');
    ok($ws->eof_within(10), 'the client sees its connection end');
    my (undef, undef, undef, $metrics) = api('GET', '/metrics');
    like($metrics, qr/^social_streams_open\S* 0$/m,
         'no stream left open');
};

subtest 'quick reconnects keep the subscription working' => sub {
    # the last stream of a user leaves (UNSUBSCRIBE) while the next one
    # arrives (SUBSCRIBE): both in flight at once
    for my $i (1 .. 20) {
        my $ws = ws();
        Social::Stream::ready($g->{id}, $bob, $ws) if $i % 5 == 0;
        $ws->close;
    }
    my $ws = ws();
    ok(Social::Stream::ready($g->{id}, $bob, $ws), 'the stream after them gets events');
    $ws->close;
};

subtest 'a client that closes and resets at once' => sub {
    # a browser closing a page: its close frame, then the connection goes;
    # the answer to the close frame fails and the stream closes then, with
    # nothing read from the closed connection after it (no alert in the
    # log, which stop_nginx checks)
    for (1 .. 10) {
        my $ws = ws();
        $ws->frame(0x8, pack('n', 1001));
        setsockopt($ws->socket, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        $ws->close;
    }
    my $ws = ws();
    ok(Social::Stream::ready($g->{id}, $bob, $ws), 'streams still work after them');
    $ws->close;
};

subtest 'a lost Redis subscription is made good by a replay' => sub {
    my $ws = ws();
    my $sse = Social::Stream->sse(token => $ann->{token});
    Social::Stream::ready($g->{id}, $bob, $ws, $sse);
    redis_cli('CLIENT', 'KILL', 'TYPE', 'pubsub');
    my @sent = map { Social::Stream::say_in($g->{id}, $bob, "while away $_")->{id} } 1 .. 5;
    my @got = grep { $_->{event} eq 'message.created' } $ws->events(3 * $slow, 5);
    is_deeply([map { $_->{data}{id} } @got], \@sent,
              'WebSocket: every message, once, in order');
    @got = grep { $_->{event} eq 'message.created' } $sse->events(3 * $slow, 5);
    is_deeply([map { $_->{data}{id} } @got], \@sent, 'SSE: the same');
    $_->close for $ws, $sse;
};

stop_nginx();
done_testing();
