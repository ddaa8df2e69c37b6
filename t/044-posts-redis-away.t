# Posts without Redis: every read and write is served from PostgreSQL
# alone, exactly; nothing waits for the cache that is not there.  And a
# Redis that stalls while writes update the caches: once it answers
# again, every cached post and feed is dropped (the cache epoch moves), so
# no read misses an acknowledged write.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Test;

start_nginx(workers => 2, unready => 1, replace => {
    "127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}" => '127.0.0.1:1',
});

my $a = new_user('ra');
my $b = new_user('rb');

api('POST', "/v1/users/$a->{id}/follow", undef, $b->{auth});
my ($st, $p) = api('POST', '/v1/posts', { text => 'no cache' }, $a->{auth});
is($st, 201, 'a post');
($st, my $j) = api('POST', "/v1/posts/$p->{id}/like", undef, $b->{auth});
is_deeply([$st, $j->{likes_count}], [200, 1], 'a like');
($st, my $s) = api('POST', "/v1/posts/$p->{id}/share", undef, $b->{auth});
is($st, 201, 'a share');
($st, my $g) = api('GET', "/v1/posts/$p->{id}", undef, $b->{auth});
is_deeply([$st, @$g{qw(likes_count shares_count liked shared)}],
          [200, 1, 1, JSON::PP::true, JSON::PP::true], 'read back');
($st, my $f) = api('GET', '/v1/feed', undef, $b->{auth});
is_deeply([map { $_->{id} } @{ $f->{items} }], [$s->{id}, $p->{id}],
          'the feed');
($st) = api('DELETE', "/v1/posts/$p->{id}", undef, $a->{auth});
is($st, 204, 'deleted');
($st, $f) = api('GET', '/v1/feed', undef, $b->{auth});
is_deeply($f->{items}, [], 'the feed follows');
($st, my $n) = api('GET', '/v1/notifications', undef, $a->{auth});
is_deeply([map { $_->{type} } @{ $n->{items} }], ['follow'],
          'notifications (of the deleted post: gone)');

stop_nginx();

start_nginx(workers => 2);

subtest 'cache updates lost in a Redis stall: the epoch moves' => sub {
    my $c = new_user('rc');
    my $d = new_user('rd');
    api('POST', "/v1/users/$c->{id}/follow", undef, $d->{auth});
    my (undef, $p) = api('POST', '/v1/posts', { text => 'cached' },
                         $c->{auth});
    api('GET', "/v1/posts/$p->{id}", undef, $d->{auth});
    my (undef, $f) = api('GET', '/v1/feed', undef, $d->{auth});
    is(scalar @{ $f->{items} }, 1, 'feed cached with one post');
    my $epoch = redis_cli('GET', 'social:epoch') || 0;

    redis_cli('CLIENT', 'PAUSE', 2500, 'ALL');
    my ($st, $j) = api('POST', "/v1/posts/$p->{id}/like", undef,
                       $d->{auth});
    is_deeply([$st, $j->{likes_count}], [200, 1],
              'a like answered while Redis stalls');
    ($st, my $q) = api('POST', '/v1/posts', { text => 'during the stall' },
                       $c->{auth});
    is($st, 201, 'a post too');

    ok(wait_until(sub { (redis_cli('GET', 'social:epoch') || 0) > $epoch },
                  10), 'the epoch moved once Redis answered');
    my (undef, $g) = api('GET', "/v1/posts/$p->{id}", undef, $d->{auth});
    is_deeply([$g->{likes_count}, $g->{liked}], [1, JSON::PP::true],
              'the like is seen');
    (undef, $f) = api('GET', '/v1/feed', undef, $d->{auth});
    is_deeply([map { $_->{id} } @{ $f->{items} }], [$q->{id}, $p->{id}],
              'the post is in the feed');
};

stop_nginx();
done_testing();
