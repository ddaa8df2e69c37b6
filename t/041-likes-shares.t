# Likes and shares: idempotent, exact counters under concurrency, the
# viewer's flags, shares as posts with share_of, the likers list, and the
# cached copies never behind an acknowledged write (two workers).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Test;

start_nginx(workers => 2);

my $author = new_user('la');
my $fan = new_user('lf');

sub post {
    my ($u, $text) = @_;
    my ($st, $p) = api('POST', '/v1/posts', { text => $text }, $u->{auth});
    die "post: $st" unless $st == 201;
    return $p;
}

sub get {
    my ($id, $u) = @_;
    my (undef, $p) = api('GET', "/v1/posts/$id", undef, $u ? $u->{auth} : {});
    return $p;
}

subtest 'like and unlike are idempotent; flags follow the viewer' => sub {
    my $p = post($author, 'like me');
    get($p->{id}, $fan);    # cached, with the fan's flags
    my ($st, $j) = api('POST', "/v1/posts/$p->{id}/like", undef,
                       $fan->{auth});
    is($st, 200, 'like');
    is_deeply($j, { liked => JSON::PP::true, likes_count => 1 }, 'body');
    ($st, $j) = api('POST', "/v1/posts/$p->{id}/like", undef, $fan->{auth});
    is($j->{likes_count}, 1, 'again: still 1');
    my $g = get($p->{id}, $fan);
    ok($g->{liked}, 'liked for the fan');
    is($g->{likes_count}, 1, 'likes_count');
    ok(!get($p->{id}, $author)->{liked}, 'not for the author');
    ok(!get($p->{id})->{liked}, 'not anonymously');

    ($st, $j) = api('DELETE', "/v1/posts/$p->{id}/like", undef,
                    $fan->{auth});
    is_deeply($j, { liked => JSON::PP::false, likes_count => 0 }, 'unlike');
    ($st, $j) = api('DELETE', "/v1/posts/$p->{id}/like", undef,
                    $fan->{auth});
    is($j->{likes_count}, 0, 'again: still 0');
    $g = get($p->{id}, $fan);
    ok(!$g->{liked}, 'not liked any more');
    is($g->{likes_count}, 0, 'likes_count');

    my (undef, $n) = api('GET', '/v1/notifications', undef, $author->{auth});
    ok(!grep({ $_->{type} eq 'like' && $_->{post_id} eq $p->{id} }
             @{ $n->{items} }), 'the unliked like notifies no more');
};

subtest '30 users liking at once count exactly 30' => sub {
    my $p = post($author, 'popular');
    my @fans = map { new_user("lx$_") } 1 .. 30;
    get($p->{id});
    my @res = parallel(30, sub {
        my ($i) = @_;
        my ($st) = api('POST', "/v1/posts/$p->{id}/like", undef,
                       $fans[$i]{auth});
        my ($st2) = api('POST', "/v1/posts/$p->{id}/like", undef,
                        $fans[$i]{auth});
        return [$st, $st2];
    });
    is_deeply([map { @$_ } @res], [(200) x 60], 'every like answered');
    is(get($p->{id})->{likes_count}, 30, 'the cached count: 30');
    is(psql("SELECT likes_count FROM posts WHERE id = $p->{id}"), 30,
       'the stored count: 30');
    is(psql("SELECT count(*) FROM likes WHERE post_id = $p->{id}"), 30,
       'thirty likes');
    @res = parallel(30, sub {
        my ($i) = @_;
        my ($st) = api('DELETE', "/v1/posts/$p->{id}/like", undef,
                       $fans[$i]{auth});
        return $st;
    });
    is(get($p->{id})->{likes_count}, 0, 'all unliked: 0');

    my (undef, $l) = api('GET', "/v1/posts/$p->{id}/likes");
    is_deeply($l->{items}, [], 'no likers');
    api('POST', "/v1/posts/$p->{id}/like", undef, $_->{auth})
        for @fans[0 .. 2];
    (undef, $l) = api('GET', "/v1/posts/$p->{id}/likes?limit=2");
    is_deeply([map { $_->{username} } @{ $l->{items} }],
              [$fans[2]{name}, $fans[1]{name}], 'likers, newest first');
    (undef, $l) = api('GET', "/v1/posts/$p->{id}/likes?limit=2"
                      . "&max_id=$l->{next_cursor}");
    is_deeply([map { $_->{username} } @{ $l->{items} }], [$fans[0]{name}],
              'then the last');
};

subtest 'shares: a post with share_of, once per user' => sub {
    my $p = post($author, 'share me');
    my ($st, $s) = api('POST', "/v1/posts/$p->{id}/share", undef,
                       $fan->{auth});
    is($st, 201, 'shared: 201');
    is($s->{author}{id}, $fan->{id}, 'by the fan');
    is($s->{share_of}{id}, $p->{id}, 'share_of is the original');
    is($s->{share_of}{shares_count}, 1, 'whose shares_count is 1');
    ok($s->{share_of}{shared}, 'and shared by the viewer');
    my ($st2, $s2) = api('POST', "/v1/posts/$p->{id}/share", undef,
                         $fan->{auth});
    is($st2, 200, 'again: 200');
    is($s2->{id}, $s->{id}, 'the same share');
    ($st2, $s2) = api('POST', "/v1/posts/$s->{id}/share", undef,
                      $fan->{auth});
    is($s2->{id}, $s->{id}, 'sharing the share: the same share');
    ok(get($p->{id}, $fan)->{shared}, 'shared flag');
    is(get($p->{id})->{shares_count}, 1, 'shares_count 1');
    my (undef, $me) = api('GET', '/v1/users/me', undef, $fan->{auth});
    is($me->{posts_count}, 1, 'a share is a post of the sharer');

    api('POST', "/v1/posts/$s->{id}/like", undef, $fan->{auth});
    is(get($p->{id})->{likes_count}, 1, 'liking a share likes the original');

    ($st) = api('DELETE', "/v1/posts/$p->{id}/share", undef, $fan->{auth});
    is($st, 204, 'unshared: 204');
    ($st) = api('DELETE', "/v1/posts/$p->{id}/share", undef, $fan->{auth});
    is($st, 204, 'again: 204');
    is(get($p->{id})->{shares_count}, 0, 'shares_count 0');
    ok(!get($p->{id}, $fan)->{shared}, 'not shared');
    ($st) = api('GET', "/v1/posts/$s->{id}");
    is($st, 404, 'the share is gone');

    my @fans = map { new_user("ls$_") } 1 .. 10;
    my @res = parallel(10, sub {
        my ($i) = @_;
        my ($a) = api('POST', "/v1/posts/$p->{id}/share", undef,
                      $fans[$i]{auth});
        my ($b) = api('POST', "/v1/posts/$p->{id}/share", undef,
                      $fans[$i]{auth});
        return [$a, $b];
    });
    is_deeply([map { @$_ } @res], [(201, 200) x 10], '201 then 200 each');
    is(get($p->{id})->{shares_count}, 10, 'ten concurrent sharers: 10');
};

subtest 'a share deleted as a post: the original not shared any more' => sub {
    my $p = post($author, 'shared, then not');
    api('POST', "/v1/posts/$p->{id}/like", undef, $fan->{auth});
    my (undef, $s) = api('POST', "/v1/posts/$p->{id}/share", undef,
                         $fan->{auth});
    my $ok = 1;
    $ok &&= get($p->{id}, $fan)->{shared} for 1 .. 4;   # cached, both workers
    ok($ok, 'shared, on every read');
    is((api('DELETE', "/v1/posts/$s->{id}", undef, $fan->{auth}))[0], 204,
       'the share deleted by DELETE /v1/posts/{id}');
    my @reads = map { get($p->{id}, $fan) } 1 .. 4;
    is_deeply([map { [@$_{qw(shared liked shares_count likes_count)}] }
               @reads],
              [([JSON::PP::false, JSON::PP::true, 0, 1]) x 4],
              'not shared, still liked, on every read');
    ($ok) = api('POST', "/v1/posts/$p->{id}/share", undef, $fan->{auth});
    is($ok, 201, 'shared again: a new share');
    ok(get($p->{id}, $fan)->{shared}, 'shared again');
};

subtest 'a deleted post takes its shares and likes with it' => sub {
    my $p = post($author, 'short-lived');
    my (undef, $s) = api('POST', "/v1/posts/$p->{id}/share", undef,
                         $fan->{auth});
    my (undef, $before) = api('GET', '/v1/users/me', undef, $fan->{auth});
    is((api('DELETE', "/v1/posts/$p->{id}", undef, $author->{auth}))[0], 204,
       'deleted');
    is((api('GET', "/v1/posts/$s->{id}"))[0], 404, 'its share: 404');
    my (undef, $after) = api('GET', '/v1/users/me', undef, $fan->{auth});
    is($after->{posts_count}, $before->{posts_count} - 1,
       'the sharer\'s posts_count');
    for my $m (['POST', 'like'], ['DELETE', 'like'], ['POST', 'share']) {
        my ($st) = api($m->[0], "/v1/posts/$p->{id}/$m->[1]", undef,
                       $fan->{auth});
        is($st, 404, "$m->[0] $m->[1] of a deleted post: 404");
    }
    is((api('GET', "/v1/posts/$p->{id}/likes"))[0], 404, 'its likers: 404');
    for my $bad ('x', '0', '99999999999999999999') {
        is((api('POST', "/v1/posts/$bad/like", undef, $fan->{auth}))[0], 404,
           "like $bad: 404");
    }
    is((api('POST', "/v1/posts/$p->{id}/like"))[0], 401, 'anonymous: 401');
};

subtest 'notifications of likes and shares, never to yourself' => sub {
    my $p = post($author, 'notify me');
    api('POST', "/v1/posts/$p->{id}/like", undef, $fan->{auth});
    api('POST', "/v1/posts/$p->{id}/share", undef, $fan->{auth});
    api('POST', "/v1/posts/$p->{id}/like", undef, $author->{auth});
    my (undef, $n) = api('GET', '/v1/notifications?limit=5', undef,
                         $author->{auth});
    my @mine = grep { ($_->{post_id} // '') eq $p->{id} } @{ $n->{items} };
    is_deeply([map { $_->{type} } @mine], ['share', 'like'],
              'share and like, newest first; not the own like');
    is($mine[0]{actor}{id}, $fan->{id}, 'the actor');
};

stop_nginx();
done_testing();
