# The home feed: own and followed users' posts and shares, newest first,
# through follow, post, share, delete and unfollow, each step read both
# from the cached feed and after Redis was flushed; pagination without
# gaps or duplicates while posts arrive; a feed deeper than its cache;
# large accounts fanned out after the answer; a cached page read without
# a script (what each worker keeps of posts, the rest in one pipeline) is
# the page the script answers, and follows every write.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Test;

start_nginx(workers => 2, replace => {
    'social_posts_sync_fanout 1000;' => 'social_posts_sync_fanout 3;',
    'social_feed_size 500;' => 'social_feed_size 25;',
});

sub post {
    my ($u, $text) = @_;
    my ($st, $p) = api('POST', '/v1/posts', { text => $text }, $u->{auth});
    die "post: $st" unless $st == 201;
    return $p->{id};
}

sub feed {
    my ($u, $q) = @_;
    my ($st, $j, $h) = api('GET', '/v1/feed' . ($q ? "?$q" : ''), undef,
                           $u->{auth});
    die "feed: $st" unless $st == 200;
    return wantarray ? ($j, $h) : [map { $_->{id} } @{ $j->{items} }];
}

sub ids { return scalar feed(@_) }

# each step is checked on the cached feed, then rebuilt from PostgreSQL
sub feed_is {
    my ($u, $want, $what) = @_;
    is_deeply(ids($u), $want, "$what (cached)");
    redis_cli('FLUSHALL');
    is_deeply(ids($u), $want, "$what (rebuilt)");
    is_deeply(ids($u), $want, "$what (cached again)");
}

my $reader = new_user('fr');
my $writer = new_user('fw');
my $other = new_user('fo');

subtest 'follow, post, share, delete, unfollow' => sub {
    my $own = post($reader, 'my own');
    my $w1 = post($writer, 'before the follow');
    post($other, 'never followed');
    feed_is($reader, [$own], 'own posts only');

    api('POST', "/v1/users/$writer->{id}/follow", undef, $reader->{auth});
    feed_is($reader, [$w1, $own], 'a follow brings the recent posts in');

    my $w2 = post($writer, 'after the follow');
    feed_is($reader, [$w2, $w1, $own], 'a new post is in at once');

    my (undef, $s) = api('POST', "/v1/posts/$own/share", undef,
                         $writer->{auth});
    my ($j) = feed($reader);
    is($j->{items}[0]{id}, $s->{id}, 'a share is in');
    is($j->{items}[0]{share_of}{id}, $own, 'with share_of');
    feed_is($reader, [$s->{id}, $w2, $w1, $own], 'a share (as a post)');

    api('DELETE', "/v1/posts/$w1", undef, $writer->{auth});
    feed_is($reader, [$s->{id}, $w2, $own], 'a deleted post is out');

    api('DELETE', "/v1/posts/$own/share", undef, $writer->{auth});
    feed_is($reader, [$w2, $own], 'an unshared share is out');

    api('DELETE', "/v1/users/$writer->{id}/follow", undef, $reader->{auth});
    feed_is($reader, [$own], 'an unfollow takes the posts out');

    ($j) = feed($reader);
    is($j->{next_cursor}, undef, 'one page: no next_cursor');
};

subtest 'pagination: no gap, no duplicate while posts arrive' => sub {
    my $u = new_user('fp');
    my $w = new_user('fq');
    api('POST', "/v1/users/$w->{id}/follow", undef, $u->{auth});
    my @all = map { post($w, "p$_") } 1 .. 12;
    my (@seen, $cursor, $pages);
    while (1) {
        my ($j, $h) = feed($u, 'limit=5' . ($cursor ? "&max_id=$cursor" : ''));
        push @seen, map { $_->{id} } @{ $j->{items} };
        post($w, 'meanwhile') if ++$pages == 1;
        last unless $j->{next_cursor};
        like($h->{link}, qr/max_id=$j->{next_cursor}>; rel="next"/,
             'a Link header mirrors next_cursor');
        $cursor = $j->{next_cursor};
    }
    is_deeply(\@seen, [reverse @all], 'every post once, newest first');
    my $newer = ids($u, "since_id=$all[-1]");
    is(scalar @$newer, 1, 'since_id: what arrived meanwhile');
    my ($st, $j) = api('GET', '/v1/feed?limit=abc', undef, $u->{auth});
    is($st, 422, 'a bad limit: 422');
    ($st) = api('GET', '/v1/feed');
    is($st, 401, 'anonymous: 401');
};

subtest 'a feed deeper than its cache pages on from PostgreSQL' => sub {
    my $u = new_user('fd');
    my @all = map { post($u, "deep $_") } 1 .. 40;
    for my $flush (0, 1) {
        redis_cli('FLUSHALL') if $flush;
        my (@seen, $cursor);
        while (1) {
            my ($j) = feed($u, 'limit=7' . ($cursor ? "&max_id=$cursor" : ''));
            push @seen, map { $_->{id} } @{ $j->{items} };
            last unless $j->{next_cursor};
            $cursor = $j->{next_cursor};
        }
        is_deeply(\@seen, [reverse @all],
                  'all 40 through a cache of 25' . ($flush ? ', rebuilt' : ''));
    }
    is_deeply(ids($u, "since_id=$all[5]&limit=100"), [reverse @all[6 .. 39]],
              'since_id past the cache');
};

subtest 'a large account fans out after the answer' => sub {
    my $star = new_user('fs');
    my @fans = map { new_user("ff$_") } 1 .. 5;
    api('POST', "/v1/users/$star->{id}/follow", undef, $_->{auth})
        for @fans;
    ids($_) for @fans;    # cached feeds to fan out into
    my $p = post($star, 'to many');
    is_deeply(ids($star), [$p], 'the author sees it at once');
    ok(wait_until(sub { !grep { !@{ ids($_) } } @fans }, 5),
       'five followers of a limit of three get it');
    is_deeply([map { ids($_)->[0] } @fans], [($p) x 5], 'that post');
};

subtest 'a cached page without a script: the same, every write in' => sub {
    my $r = new_user('fx');
    my $a = new_user('fy');
    my $b = new_user('fz');
    api('POST', "/v1/users/$_->{id}/follow", undef, $r->{auth}) for $a, $b;
    my $orig = post($b, "an original \x{1F600} \x{4E2D}e\x{301}");
    my $p1 = post($a, 'first');
    my (undef, $reply) = api('POST', '/v1/posts',
                             { text => 'a reply', reply_to_id => $p1 },
                             $b->{auth});
    my (undef, $s) = api('POST', "/v1/posts/$orig/share", undef, $a->{auth});
    api('POST', "/v1/posts/$p1/like", undef, $r->{auth});
    api('POST', "/v1/posts/$orig/like", undef, $b->{auth});

    redis_cli('FLUSHALL');
    my ($want) = feed($r);    # the script's page, filled from PostgreSQL
    is(scalar @{ $want->{items} }, 4, 'four posts');
    is($want->{items}[0]{share_of}{author}{id}, $b->{id},
       'the share with its original and its author');
    my $same = 1;
    for (1 .. 6) {            # both workers, past their first pages
        my ($j) = feed($r);
        $same &&= is_deeply($j, $want, "read $_ is the same page");
    }

    # the pages are read without a script now, each in one round trip:
    # its ids (ZREVRANGEBYLEX) with the posts' counters (MGET) and the
    # viewer's flags (HMGET) of the page as the workers read it last, the
    # authors' generation and the epoch (GET); texts and authors from
    # the workers' copies
    my $want = { zrevrangebylex => 4, mget => 4, hmget => 4, get => 8 };
    is_deeply(redis_calls_until(sub { feed($r) for 1 .. 4 }, $want),
              $want, 'four pages: one round trip each, of plain commands');

    my $seen = sub {
        my ($what, $check) = @_;
        my $ok = 1;
        for (1 .. 4) {
            my ($j) = feed($r);
            $ok &&= $check->($j);
        }
        ok($ok, "$what, on every read");
    };

    api('PATCH', '/v1/users/me', { display_name => 'Renamed B' },
        $b->{auth});
    $seen->('a new display name of an original\'s author', sub {
        $_[0]{items}[0]{share_of}{author}{display_name} eq 'Renamed B'
        && $_[0]{items}[1]{author}{display_name} eq 'Renamed B'
    });

    api('POST', "/v1/posts/$orig/like", undef, $r->{auth});
    $seen->('a like of the viewer and its count', sub {
        my $o = $_[0]{items}[0]{share_of};
        $o->{liked} && $o->{likes_count} == 2
    });

    api('DELETE', "/v1/posts/$reply->{id}", undef, $b->{auth});
    $seen->('a deleted post is out', sub {
        join(',', map { $_->{id} } @{ $_[0]{items} }) eq "$s->{id},$p1,$orig"
    });

    redis_cli('INCR', 'social:epoch');
    $seen->('a new cache epoch: the same page again', sub {
        join(',', map { $_->{id} } @{ $_[0]{items} }) eq "$s->{id},$p1,$orig"
        && $_[0]{items}[1]{liked} && $_[0]{items}[1]{likes_count} == 1
    });

    # the workers' last pages are now wrong guesses
    my $p2 = post($a, 'newer');
    $seen->('a new post first', sub {
        join(',', map { $_->{id} } @{ $_[0]{items} })
            eq "$p2,$s->{id},$p1,$orig"
    });
    my (undef, $j) = api('GET', '/v1/feed?limit=2', undef, $r->{auth});
    is_deeply([map { $_->{id} } @{ $j->{items} }], [$p2, $s->{id}],
              'a shorter page of the same feed');

    # the authors' generation starts again above any before
    redis_cli('FLUSHALL');
    feed($r) for 1 .. 6;
    api('PATCH', '/v1/users/me', { display_name => 'Again B' }, $b->{auth});
    $seen->('Redis emptied, then a new display name', sub {
        $_[0]{items}[1]{share_of}{author}{display_name} eq 'Again B'
    });
};

subtest 'workers that keep few posts, or none' => sub {
    my $r = new_user('fk');
    my $a = new_user('fl');
    api('POST', "/v1/users/$a->{id}/follow", undef, $r->{auth});
    my @mine = map { post($a, "kept $_ " . ('x' x 100)) } 1 .. 8;
    api('POST', "/v1/posts/$mine[0]/share", undef, $r->{auth});
    for my $size (700, 0) {
        stop_nginx();
        start_nginx(workers => 2, replace => {
            'social_posts_local_cache 16m;' =>
                "social_posts_local_cache $size;" });
        my ($want) = feed($r);
        is(scalar @{ $want->{items} }, 9, "$size bytes: nine posts");
        my $same = 1;
        for (1 .. 6) {
            my ($j) = feed($r);
            $same &&= is_deeply($j, $want, "$size bytes: read $_ the same");
        }
    }
};

stop_nginx();
done_testing();
