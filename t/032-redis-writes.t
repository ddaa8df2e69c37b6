# A script marked as a write waits for its outcome while Redis answers:
# queued behind slow commands past the command timeout (1 s), a write
# still gets its reply, where a read gives up; a write on a connection
# that answers nothing at all does give up (the connection is replaced).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Time::HiRes qw(sleep);
use Social::Test;

start_nginx(workers => 1);

# a script that keeps Redis busy for $ms milliseconds
sub busy {
    my ($ms) = @_;
    return ['EVAL', "local function now() local t = redis.call('TIME') "
        . "return t[1] * 1000 + t[2] / 1000 end "
        . "local s = now() "
        . "repeat for i = 1, 100000 do end until now() - s >= $ms "
        . "return 1", '0'];
}

redis_cli('DEL', 't032:w', 't032:r');
api('POST', '/t/redis/eval', { keys => ['t032:x'], args => ['x'] });  # cached

# in the worker's pipeline: busy, busy (done 1.4 s from now), the write,
# the read (sent 0.2 s from now)
my @res = parallel(4, sub {
    my ($i) = @_;
    sleep(0.15) if $i >= 2;
    sleep(0.05) if $i == 3;
    my ($path, $body) =
          $i < 2  ? ('/t/redis/cmd', { argv => busy(700) })
        : $i == 2 ? ('/t/redis/write', { keys => ['t032:w'], args => ['w'] })
        :           ('/t/redis/eval', { keys => ['t032:r'], args => ['r'] });
    my ($st, $j) = api('POST', $path, $body);
    return { status => $st, body => $j };
});

is_deeply([sort map { $_->{status} } @res[0, 1]], [200, 503],
          'busy commands: the first answered in time, the second not');
is($res[2]{status}, 200, 'the write waited for its reply');
is_deeply($res[2]{body}{reply}, ['t032:w', 'w', 1], 'its outcome');
is($res[3]{status}, 503, 'the read behind it gave up');
is(redis_cli('GET', 't032:r'), 1, 'though Redis ran it');

# nothing answered for a whole timeout: the write gives up too, and the
# connection is replaced
@res = parallel(2, sub {
    my ($i) = @_;
    sleep(0.15) if $i == 1;
    my ($st, $j) = $i == 0
        ? api('POST', '/t/redis/cmd', { argv => busy(2500) })
        : api('POST', '/t/redis/write', { keys => ['t032:s'], args => ['s'] });
    return { status => $st };
});
is($res[1]{status}, 503, 'a stalled connection: the write gets no reply');
ok(wait_until(sub {
    my ($st, $j) = api('POST', '/t/redis/cmd', { argv => ['PING'] });
    $st == 200;
}, 5), 'Redis answers again on a new connection');
ok(scalar(grep { /no reply in time, reconnecting/ } error_log_since()),
   'logged as a stalled connection');

stop_nginx();
done_testing();
