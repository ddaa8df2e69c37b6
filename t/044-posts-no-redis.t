# Posts without Redis: every read and write is served from PostgreSQL
# alone, exactly; nothing waits for the cache that is not there.

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
done_testing();
