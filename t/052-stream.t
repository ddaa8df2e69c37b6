# The stream: events within 1 s to a WebSocket and an SSE stream of one
# user, across two workers and to every member of a group; replay after a
# disconnect (exactly what was missed, in order, then live, without
# duplicates); stream.reset for a position Redis no longer holds; typing
# to the other members only, never stored; the handshake and its errors;
# the access token kept out of the access log; streams closing (1001,
# end of SSE) when nginx reloads or stops.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Time::HiRes qw(time sleep);
use Social::Test;
use Social::Stream;

# waits stretch under valgrind
my $slow = $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1;

# reuseport: the kernel spreads connections over both workers
my $port = $ENV{TEST_NGINX_PORT} || 1984;
start_nginx(workers => 2, replace => {
    "listen 127.0.0.1:$port;" => "listen 127.0.0.1:$port reuseport;" });

my ($ann, $bob, $cat) = map { new_user($_) } qw(ann bob cat);
# a group of two: a direct conversation would add notifications
my (undef, $d) = api('POST', '/v1/conversations',
                     { member_ids => [$bob->{id}], title => 'pair' },
                     $ann->{auth});
my $dc = $d->{id};

subtest 'handshake' => sub {
    my $ws = Social::Stream->ws(token => $ann->{token});
    is($ws->status, 101, '101 Switching Protocols');
    ok($ws->accept_ok, 'Sec-WebSocket-Accept matches the key');
    is(lc $ws->header('upgrade'), 'websocket', 'Upgrade: websocket');
    like($ws->header('x-request-id'), qr/^[0-9a-f]{32}$/, 'X-Request-Id');
    $ws->close;

    my $sse = Social::Stream->sse(token => $ann->{token});
    is($sse->status, 200, 'SSE: 200');
    like($sse->header('content-type'), qr{^text/event-stream},
         'text/event-stream');
    $sse->close;

    $ws = Social::Stream->ws(query => "access_token=$ann->{token}");
    is($ws->status, 101, 'the token as ?access_token=');
    $ws->close;
};

subtest 'handshake errors' => sub {
    for my $h ('Upgrade', 'Connection', 'Sec-WebSocket-Key',
               'Sec-WebSocket-Version')
    {
        my $ws = Social::Stream->ws(token => $ann->{token}, omit => [$h]);
        is($ws->status, 400, "without $h: 400");
    }
    my $ws = Social::Stream->ws(token => $ann->{token}, key => 'short');
    is($ws->status, 400, 'a key that is not 16 bytes: 400');
    $ws = Social::Stream->ws(token => $ann->{token}, version => 8);
    is($ws->status, 426, 'another version: 426');
    is($ws->header('sec-websocket-version'), '13', 'naming version 13');
    my ($st, $j) = api('GET', '/v1/stream', undef, $ann->{auth});
    is($st, 400, 'neither an upgrade nor text/event-stream: 400');
    is($j->{error}{code}, 'bad_request', 'bad_request');
    ($st) = api('POST', '/v1/stream', undef, $ann->{auth});
    is($st, 405, 'POST: 405');
    ($st) = api('HEAD', '/v1/stream', undef,
                { %{ $ann->{auth} }, Accept => 'text/event-stream' });
    is($st, 405, 'HEAD: 405 (a stream is all body)');
    $ws = Social::Stream->ws();
    is($ws->status, 401, 'without a token: 401');
    $ws = Social::Stream->ws(query => 'access_token=not.a.token');
    is($ws->status, 401, 'a bad token: 401');
    $ws = Social::Stream->ws(token => $ann->{token}, query => 'since=abc');
    is($ws->status, 422, 'since that is not a stream id: 422');
    my $sse = Social::Stream->sse(token => $ann->{token},
                                  last_event_id => 'x');
    is($sse->status, 422, 'a bad Last-Event-ID: 422');
};

subtest 'the access token stays out of the access log' => sub {
    my $ws = Social::Stream->ws(query => "access_token=$ann->{token}");
    $ws->close;
    Social::Stream->ws(query => "x=1&access_token=$bob->{token}x")->close;
    wait_until(sub {
        open my $fh, '<', "$ENV{TEST_NGINX_SERVROOT}-flow/logs/access.log"
            or return 0;
        local $/;
        my $log = <$fh>;
        return $log =~ /access_token=\*+ HTTP.* 401 /;
    }, 5);
    open my $fh, '<', "$ENV{TEST_NGINX_SERVROOT}-flow/logs/access.log"
        or die "access.log: $!";
    local $/;
    my $log = <$fh>;
    my ($sig) = $ann->{token} =~ /([^.]+)$/;
    ok(index($log, $sig) < 0, 'no token of a stream');
    my ($sig2) = $bob->{token} =~ /([^.]+)$/;
    ok(index($log, $sig2) < 0, 'no token of a refused request');
    like($log, qr{GET /v1/stream\?access_token=\*+ HTTP/1\.1" 101 },
         'the stream is logged with the token masked');
};

subtest 'delivery within 1 s to a WebSocket and an SSE stream' => sub {
    my $ws = Social::Stream->ws(token => $ann->{token});
    my $sse = Social::Stream->sse(token => $ann->{token});
    my $own = Social::Stream->ws(token => $bob->{token});
    Social::Stream::ready($dc, $bob, $ws, $sse, $own);

    my $t0 = time;
    my $m = Social::Stream::say_in($dc, $bob, 'within a second');
    my $e1 = $ws->event(1);
    my $e2 = $sse->event(1);
    ok(time - $t0 < 1.5, 'both within 1 s of the answer');
    is($e1->{event}, 'message.created', 'WebSocket: message.created');
    is_deeply($e1->{data}, $m, 'the Message');
    like($e1->{stream_id}, qr/^\d+$/, 'a stream_id');
    is($e2->{event}, 'message.created', 'SSE: message.created');
    is_deeply($e2->{data}, $m, 'the Message');
    is($e2->{id}, $e1->{stream_id}, 'the SSE id is the stream id');
    my $e3 = $own->event(1);
    is($e3->{data}{id}, $m->{id}, "the sender's other devices get it too");

    # the read marker reaches both members
    api('POST', "/v1/conversations/$dc/read", { message_id => $m->{id} },
        $ann->{auth});
    my @ev = grep { $_->{event} eq 'conversation.read' } $own->events(1);
    is_deeply($ev[0]{data}, { conversation_id => $dc, user_id => $ann->{id},
                              message_id => $m->{id} },
              'conversation.read to the other member');
    ok($ev[0]{stream_id}, 'with a stream_id');
    $_->close for $ws, $sse, $own;
};

subtest 'message notifications arrive live' => sub {
    my $u = new_user('nl');
    my $ws = Social::Stream->ws(token => $u->{token});
    my (undef, $c) = api('POST', '/v1/conversations',
                         { member_ids => [$ann->{id}] }, $u->{auth});
    my (undef, $c2) = api('POST', '/v1/conversations',
                          { member_ids => [$bob->{id}], title => 'g' },
                          $u->{auth});
    Social::Stream::ready($c2->{id}, $bob, $ws);
    Social::Stream::say_in($c->{id}, $ann, 'notify me');
    my @ev = $ws->events(1);
    my ($n) = grep { $_->{event} eq 'notification.created' } @ev;
    ok($n, 'notification.created');
    is($n->{data}{type}, 'message', 'of type message');
    is($n->{data}{actor}{id}, $ann->{id}, 'the actor');
    is($n->{data}{conversation_id}, $c->{id}, 'the conversation');
    $ws->close;
};

subtest 'replay after a disconnect: exactly what was missed' => sub {
    my $ws = Social::Stream->ws(token => $ann->{token});
    my $m0 = Social::Stream::ready($dc, $bob, $ws);
    Social::Stream::say_in($dc, $bob, 'seen');
    my $seen = $ws->event(2);
    $ws->close;

    my @missed = map { Social::Stream::say_in($dc, $bob, "missed $_")->{id} } 1 .. 6;

    $ws = Social::Stream->ws(token => $ann->{token},
                             query => "since=$seen->{stream_id}");
    my @got = map { $ws->event(2) } 1 .. 6;
    is_deeply([map { $_ && $_->{data}{id} } @got], \@missed,
              'the six missed, in order');
    my @sid = map { $_->{stream_id} } @got;
    is_deeply(\@sid, [sort { $a <=> $b } @sid], 'stream ids grow');
    ok($sid[0] > $seen->{stream_id}, 'after the position given');

    my $live = Social::Stream::say_in($dc, $bob, 'live after replay');
    my @rest = $ws->events(1);
    is_deeply([map { $_->{data}{id} } @rest], [$live->{id}],
              'then the live one, no duplicate');
    $ws->close;

    my $sse = Social::Stream->sse(token => $ann->{token},
                                  last_event_id => $seen->{stream_id});
    my @s = map { $sse->event(2) } 1 .. 7;
    is_deeply([map { $_ && $_->{data}{id} } @s], [@missed, $live->{id}],
              'SSE with Last-Event-ID: the same');
    $sse->close;
};

subtest 'replay while events keep coming: no gap, no duplicate' => sub {
    my $ws = Social::Stream->ws(token => $ann->{token});
    Social::Stream::ready($dc, $bob, $ws);
    my $first = Social::Stream::say_in($dc, $bob, 'burst start');
    my $since = $ws->event(2)->{stream_id};
    $ws->close;
    my $pid = fork() // die;
    if (!$pid) {
        Social::Stream::say_in($dc, $bob, "burst $_") for 1 .. 30;
        POSIX::_exit(0);
    }
    sleep 0.05;
    $ws = Social::Stream->ws(token => $ann->{token},
                             query => "since=$since");
    waitpid($pid, 0);
    my @got = grep { $_->{event} eq 'message.created' } $ws->events(1.5);
    my @texts = map { $_->{data}{text} } @got;
    is_deeply(\@texts, [map { "burst $_" } 1 .. 30],
              'every one once, in order');
    $ws->close;
};

subtest 'stream.reset for a position no longer kept' => sub {
    my $ws = Social::Stream->ws(token => $ann->{token});
    Social::Stream::ready($dc, $bob, $ws);
    Social::Stream::say_in($dc, $bob, 'old');
    my $old = $ws->event(2)->{stream_id};
    $ws->close;
    Social::Stream::say_in($dc, $bob, "gone $_") for 1 .. 3;
    redis_cli('XTRIM', "social:ev:$ann->{id}", 'MAXLEN', '1');

    $ws = Social::Stream->ws(token => $ann->{token}, query => "since=$old");
    my $e = $ws->event(2);
    is_deeply([$e->{event}, $e->{data}], ['stream.reset', {}],
              'stream.reset first');
    my $live = Social::Stream::say_in($dc, $bob, 'after the reset');
    my @rest = $ws->events(1);
    is_deeply([map { $_->{data}{id} } @rest], [$live->{id}],
              'then live events');
    $ws->close;

    my $sse = Social::Stream->sse(token => $ann->{token},
                                  last_event_id => 12345);
    is($sse->event(2)->{event}, 'stream.reset', 'SSE: stream.reset too');
    $sse->close;
};

subtest 'group fan-out to every online member' => sub {
    my @m = map { new_user("g$_") } 1 .. 5;
    my (undef, $g) = api('POST', '/v1/conversations',
                         { member_ids => [map { $_->{id} } @m[1 .. 4]],
                           title => 'fan-out' }, $m[0]{auth});
    my @ws = map { Social::Stream->ws(token => $_->{token}) } @m;
    Social::Stream::ready($g->{id}, $m[0], @ws);
    my $msg = Social::Stream::say_in($g->{id}, $m[2], 'to all');
    my @got = map { $_->event(1) } @ws;
    is(scalar(grep { $_ && $_->{data}{id} eq $msg->{id} } @got), 5,
       'all five members, the sender included');
    $_->close for @ws;
};

subtest 'typing reaches the others, never stored' => sub {
    my (undef, $g) = api('POST', '/v1/conversations',
                         { member_ids => [$bob->{id}, $cat->{id}],
                           title => 'typing' }, $ann->{auth});
    my $a1 = Social::Stream->ws(token => $ann->{token});
    my $a2 = Social::Stream->ws(token => $ann->{token});
    my $b = Social::Stream->ws(token => $bob->{token});
    my $c = Social::Stream->ws(token => $cat->{token});
    my $last = Social::Stream::ready($g->{id}, $bob, $a1, $a2, $b, $c);

    $a1->json({ type => 'typing', conversation_id => $g->{id} });
    my $e = $b->event(2);
    is_deeply($e, { event => 'typing', data => {
        conversation_id => $g->{id}, user_id => $ann->{id} } },
        'typing, without a stream_id');
    is($c->event(1)->{event}, 'typing', 'to every other member');
    is($a2->event(1), undef, "not to the typist's other devices");

    $a1->json({ type => 'typing', conversation_id => $g->{id} });
    is($b->event(1), undef, 'a repeat within the interval is dropped');

    $b->json({ type => 'typing', conversation_id => $dc });
    $b->json({ type => 'typing', conversation_id => '999999999' });
    $c->json({ type => 'typing', conversation_id => $dc });
    is($a1->event(1)->{data}{user_id}, $bob->{id},
       'bob typing in the direct conversation reaches ann');
    is($a1->event(1), undef, 'a non-member typing reaches nobody');
    $b->close;

    $b = Social::Stream->ws(token => $bob->{token},
                            query => "since=$last->{id}");
    my @ev = $b->events(1);
    ok(!grep({ $_->{event} eq 'typing' } @ev), 'typing is not replayed');
    $_->close for $a1, $a2, $b, $c;
};

subtest 'streams on both workers all get the event' => sub {
    my @ws = map { Social::Stream->ws(token => $cat->{token}) } 1 .. 12;
    my (undef, $c) = api('POST', '/v1/conversations',
                         { member_ids => [$cat->{id}], title => 'w' },
                         $bob->{auth});
    Social::Stream::ready($c->{id}, $bob, @ws);
    my %pids;
    for (`ss -Htnp state established '( sport = :$port )'`) {
        $pids{$1} = 1 if /pid=(\d+)/;
    }
    is(scalar keys %pids, 2, 'the streams are held by both workers');
    my $m = Social::Stream::say_in($c->{id}, $bob, 'everywhere');
    is(scalar(grep { my $e = $_->event(1); $e && $e->{data}{id} eq $m->{id} }
              @ws), 12, 'every stream got it');
    $_->close for @ws;
};

subtest 'a reload closes the streams of the old workers' => sub {
    my $ws = Social::Stream->ws(token => $ann->{token});
    my $sse = Social::Stream->sse(token => $ann->{token});
    Social::Stream::ready($dc, $bob, $ws, $sse);
    reload_nginx();
    is($ws->close_code(5 * $slow), 1001, 'close 1001');
    ok($sse->eof_within(5 * $slow), 'the SSE body ends');
    ok(wait_until(sub { (api('GET', '/readyz'))[0] == 200 }, 10 * $slow),
       'the new workers answer');
    $ws = Social::Stream->ws(token => $ann->{token});
    my $m = Social::Stream::ready($dc, $bob, $ws);
    ok($m, 'a new stream works');
    $ws->close;
};

subtest 'nginx stops: WebSocket 1001, SSE ends' => sub {
    my $ws = Social::Stream->ws(token => $ann->{token});
    my $sse = Social::Stream->sse(token => $ann->{token});
    Social::Stream::ready($dc, $bob, $ws, $sse);
    my $t0 = time;
    stop_nginx();
    ok(time - $t0 < 4, 'the stop did not wait for the streams');
    is($ws->close_code(2), 1001, 'close 1001');
    ok($sse->eof_within(2), 'the SSE body ends');
};

done_testing();
