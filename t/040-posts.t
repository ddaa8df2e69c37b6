# Posts: create (text counted in characters, replies, mentions,
# Idempotency-Key, under concurrency too), get, delete by the author only,
# replies and a user's posts as lists, and every kind of bad input.

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use JSON::PP ();
use Social::Test;

start_nginx(workers => 2);

my $alice = new_user('pa');
my $bob = new_user('pb');

sub post {
    my ($u, $body, $headers) = @_;
    return api('POST', '/v1/posts', $body, { %{ $u->{auth} },
                                             %{ $headers || {} } });
}

subtest 'a post, as created and as read' => sub {
    my ($st, $p, $h) = post($alice, { text => 'hello world' });
    is($st, 201, 'created');
    like($p->{id}, qr/^\d+$/, 'id is a decimal string');
    is_deeply($p->{author}, { id => $alice->{id}, username => $alice->{name},
                              display_name => $alice->{name} }, 'author');
    is($p->{text}, 'hello world', 'text');
    like($p->{created_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
         'created_at');
    is($p->{reply_to_id}, undef, 'reply_to_id null');
    is($p->{share_of}, undef, 'share_of null');
    is_deeply([@$p{qw(likes_count shares_count replies_count)}], [0, 0, 0],
              'counters');
    ok(!$p->{liked} && !$p->{shared}, 'flags false');
    is($h->{'content-type'}, 'application/json; charset=utf-8', 'JSON');

    my ($st2, $g, undef, $raw) = api('GET', "/v1/posts/$p->{id}");
    is($st2, 200, 'read back');
    is_deeply($g, $p, 'the same post');
    (undef, undef, undef, my $raw2) = api('GET', "/v1/posts/$p->{id}");
    is($raw2, $raw, 'the same bytes from the cache');

    my (undef, $me) = api('GET', '/v1/users/me', undef, $alice->{auth});
    is($me->{posts_count}, 1, 'posts_count');
};

subtest 'text is counted in characters and stored exactly' => sub {
    for my $text ("😀" x 5000, "漢" x 5000, ("e\x{301}" x 2500),
                  "a\x{1F469}\x{200D}\x{1F4BB}b", "<b>&amp;</b>\n\t\"'\\") {
        my ($st, $p) = post($alice, { text => $text });
        is($st, 201, sprintf('%d characters: created', length $text));
        my (undef, $g) = api('GET', "/v1/posts/$p->{id}");
        ok($g->{text} eq $text, 'stored exactly');
    }
    my ($st, $j) = post($alice, { text => "😀" x 5001 });
    is($st, 422, '5001 emoji: 422');
    is($j->{error}{fields}{text}, 'is too long', 'too long');
    ($st, $j) = post($alice, { text => '' });
    is($st, 422, 'empty: 422');
    ($st, $j) = post($alice, { text => "a\x{0}b" });
    is($st, 422, 'NUL: 422');
    ($st, $j) = post($alice, { text => 42 });
    is($j->{error}{fields}{text}, 'must be a string', 'a number: 422');
    ($st, $j) = post($alice, {});
    is($j->{error}{fields}{text}, 'is required', 'missing: 422');
    ($st, $j) = post($alice, '[1]');
    is($st, 422, 'not an object: 422');
    ($st, $j) = post($alice, '{"text":');
    is($st, 400, 'malformed: 400');
    is($j->{error}{code}, 'invalid_json', 'invalid_json');
    ($st) = api('POST', '/v1/posts', { text => 'x' });
    is($st, 401, 'without a token: 401');
};

subtest 'replies' => sub {
    my (undef, $parent) = post($alice, { text => 'parent' });
    my ($st, $r) = post($bob, { text => 'a reply',
                                reply_to_id => $parent->{id} });
    is($st, 201, 'reply created');
    is($r->{reply_to_id}, $parent->{id}, 'reply_to_id');
    my (undef, $g) = api('GET', "/v1/posts/$parent->{id}");
    is($g->{replies_count}, 1, 'replies_count');
    my (undef, $l) = api('GET', "/v1/posts/$parent->{id}/replies");
    is_deeply([map { $_->{id} } @{ $l->{items} }], [$r->{id}], 'listed');

    for my $bad ('abc', '0', '99999999999999999999', 12) {
        ($st, my $j) = post($bob, { text => 'x', reply_to_id => $bad });
        is($st, 422, "reply_to_id $bad: 422");
        ok($j->{error}{fields}{reply_to_id}, 'named');
    }
    ($st, my $j) = post($bob, { text => 'x', reply_to_id => '123456789' });
    is($j->{error}{fields}{reply_to_id}, 'is not a post',
       'an unknown post: 422');

    my (undef, $gone) = post($alice, { text => 'to be deleted' });
    is((api('DELETE', "/v1/posts/$gone->{id}", undef, $alice->{auth}))[0],
       204, 'deleted');
    ($st, $j) = post($bob, { text => 'late', reply_to_id => $gone->{id} });
    is($st, 422, 'replying to a deleted post: 422');
    ($st) = api('GET', "/v1/posts/$gone->{id}/replies");
    is($st, 404, 'replies of a deleted post: 404');

    is((api('DELETE', "/v1/posts/$r->{id}", undef, $bob->{auth}))[0], 204,
       'the reply deleted');
    (undef, $g) = api('GET', "/v1/posts/$parent->{id}");
    is($g->{replies_count}, 0, 'replies_count back to 0');
    (undef, $l) = api('GET', "/v1/posts/$parent->{id}/replies");
    is_deeply($l->{items}, [], 'gone from the list');
};

subtest 'delete: the author only, then 404 everywhere' => sub {
    my (undef, $p) = post($alice, { text => 'mine' });
    my ($st, $j) = api('DELETE', "/v1/posts/$p->{id}", undef, $bob->{auth});
    is($st, 403, 'someone else: 403');
    is($j->{error}{code}, 'forbidden', 'forbidden');
    ($st) = api('DELETE', "/v1/posts/$p->{id}");
    is($st, 401, 'anonymous: 401');
    my (undef, $before) = api('GET', '/v1/users/me', undef, $alice->{auth});
    ($st) = api('DELETE', "/v1/posts/$p->{id}", undef, $alice->{auth});
    is($st, 204, 'the author: 204');
    ($st) = api('GET', "/v1/posts/$p->{id}");
    is($st, 404, 'then 404');
    ($st) = api('DELETE', "/v1/posts/$p->{id}", undef, $alice->{auth});
    is($st, 404, 'deleting again: 404');
    my (undef, $after) = api('GET', '/v1/users/me', undef, $alice->{auth});
    is($after->{posts_count}, $before->{posts_count} - 1, 'posts_count');
    my (undef, $l) = api('GET', "/v1/users/$alice->{id}/posts?limit=100");
    ok(!grep({ $_->{id} eq $p->{id} } @{ $l->{items} }),
       'not in the user\'s posts');
    for my $bad ('abc', '0', '-1', '99999999999999999999', '1.5') {
        ($st) = api('GET', "/v1/posts/$bad");
        is($st, 404, "GET /v1/posts/$bad: 404");
        ($st) = api('DELETE', "/v1/posts/$bad", undef, $alice->{auth});
        is($st, 404, "DELETE /v1/posts/$bad: 404");
    }
};

subtest 'a user\'s posts, newest first, by id or @username' => sub {
    my $carol = new_user('pc');
    my @ids = map { (post($carol, { text => "p$_" }))[1]{id} } 1 .. 5;
    my (undef, $l) = api('GET', "/v1/users/\@$carol->{name}/posts?limit=3");
    is_deeply([map { $_->{id} } @{ $l->{items} }], [reverse @ids[2 .. 4]],
              'the newest three');
    is($l->{next_cursor}, $ids[2], 'next_cursor');
    (undef, $l) = api('GET', "/v1/users/$carol->{id}/posts?limit=3"
                      . "&max_id=$l->{next_cursor}");
    is_deeply([map { $_->{id} } @{ $l->{items} }], [reverse @ids[0 .. 1]],
              'then the rest');
    is($l->{next_cursor}, undef, 'the last page');
    my ($st) = api('GET', '/v1/users/@nobody_here_x/posts');
    is($st, 404, 'no such user: 404');
    ($st, my $j) = api('GET', "/v1/users/$carol->{id}/posts?limit=0");
    is($st, 422, 'limit=0: 422');
};

subtest 'mentions notify, at most 10, never yourself' => sub {
    my @m = map { new_user("pm$_") } 1 .. 11;
    my $text = join(' ', map { "\@$_->{name}" } @m)
               . " \@$alice->{name} mail\@$m[0]{name}.com";
    my ($st, $p) = post($alice, { text => $text });
    is($st, 201, 'posted');
    my @got = map {
        my (undef, $l) = api('GET', '/v1/notifications', undef,
                             $_->{auth});
        scalar grep { $_->{type} eq 'mention'
                      && $_->{post_id} eq $p->{id} } @{ $l->{items} }
    } @m;
    is_deeply(\@got, [(1) x 10, 0], 'the first 10 mentioned, once each');
    my (undef, $l) = api('GET', '/v1/notifications', undef, $alice->{auth});
    ok(!grep({ $_->{type} eq 'mention' } @{ $l->{items} }),
       'no notification to yourself');
};

subtest 'Idempotency-Key: the first answer, one post' => sub {
    my $dave = new_user('pd');
    my $key = { 'Idempotency-Key' => 'k-' . rand() };
    my ($st, $p, undef, $raw) = post($dave, { text => 'once' }, $key);
    is($st, 201, 'created');
    my ($st2, undef, undef, $raw2) = post($dave, { text => 'once' }, $key);
    is($st2, 201, 'the repeat: the same status');
    is($raw2, $raw, 'and the same body');
    my (undef, $l) = api('GET', "/v1/users/$dave->{id}/posts");
    is(scalar @{ $l->{items} }, 1, 'one post');
    ($st) = post($dave, { text => 'other' },
                 { 'Idempotency-Key' => 'k2-' . rand() });
    is($st, 201, 'another key: another post');
    ($st) = post($bob, { text => 'once' }, $key);
    is($st, 201, 'the same key of another user: another post');

    my ($bad, $j) = post($dave, { text => 'x' },
                         { 'Idempotency-Key' => 'x' x 65 });
    is($bad, 422, 'a key over 64 bytes: 422');
    ok($j->{error}{fields}{'Idempotency-Key'}, 'named');

    my $k3 = { 'Idempotency-Key' => 'k3-' . rand() };
    ($st) = post($dave, { text => '' }, $k3);
    is($st, 422, 'a refused attempt...');
    ($st) = post($dave, { text => 'now fine' }, $k3);
    is($st, 201, '... is not remembered');

    my $k4 = { 'Idempotency-Key' => 'k4-' . rand() };
    my @res = parallel(8, sub {
        my ($s, undef, undef, $body) = post($dave, { text => 'racing' }, $k4);
        return [$s, $body];
    });
    is_deeply([map { $_->[0] } @res], [(201) x 8], 'eight concurrent: 201');
    is(scalar(keys %{{ map { $_->[1] => 1 } @res }}), 1,
       'all with the same body');
    (undef, $l) = api('GET', "/v1/users/$dave->{id}/posts?limit=100");
    is(scalar(grep { $_->{text} eq 'racing' } @{ $l->{items} }), 1,
       'one post');
};

subtest 'Redis flushed: reads come back from PostgreSQL, the same' => sub {
    my (undef, $p) = post($alice, { text => 'survives' });
    my (undef, $a1) = api('GET', "/v1/posts/$p->{id}", undef, $bob->{auth});
    redis_cli('FLUSHALL');
    my (undef, $a2) = api('GET', "/v1/posts/$p->{id}", undef, $bob->{auth});
    is_deeply($a2, $a1, 'the same post');
};

subtest 'cached posts: read without a script, following every write' => sub {
    my (undef, $p) = post($alice, { text => 'read often' });
    my (undef, $s) = api('POST', "/v1/posts/$p->{id}/share", undef,
                         $bob->{auth});
    my @reads = (
        [ "/v1/posts/$p->{id}", $bob->{auth} ],
        [ "/v1/posts/$s->{id}", undef ],
        [ "/v1/users/$alice->{id}/posts?limit=5", $bob->{auth} ],
    );
    my @want = map { (api('GET', $_->[0], undef, $_->[1]))[1] } @reads;
    for my $r (0 .. $#reads) {
        my $same = 1;
        for (1 .. 6) {          # both workers, past their first reads
            my (undef, $j) = api('GET', $reads[$r][0], undef, $reads[$r][1]);
            $same &&= is_deeply($j, $want[$r], "$reads[$r][0]: read $_");
        }
    }
    # per read: the posts' counters (MGET), the viewer's flags (HMGET, none
    # for no viewer), the authors' generation and the epoch (GET); no
    # script, and no author or text asked: the workers' copies
    my $want = { mget => 6, hmget => 4, get => 12 };
    is_deeply(redis_calls_until(sub {
                  api('GET', $_->[0], undef, $_->[1]) for @reads, @reads },
                  $want),
              $want, 'six reads: one round trip each, of plain commands');

    api('POST', "/v1/posts/$p->{id}/like", undef, $bob->{auth});
    my $ok = 1;
    for (1 .. 4) {
        my (undef, $j) = api('GET', "/v1/posts/$p->{id}", undef,
                             $bob->{auth});
        my (undef, $a) = api('GET', "/v1/posts/$s->{id}");
        $ok &&= $j->{liked} && $j->{likes_count} == 1 && $j->{shared}
                && !$a->{share_of}{liked}
                && $a->{share_of}{likes_count} == 1;
    }
    ok($ok, 'a like shows at once, to the viewer and to anyone');

    api('DELETE', "/v1/posts/$p->{id}", undef, $alice->{auth});
    $ok = 1;
    for (1 .. 4) {
        my ($st) = api('GET', "/v1/posts/$p->{id}", undef, $bob->{auth});
        my ($st2) = api('GET', "/v1/posts/$s->{id}");
        $ok &&= $st == 404 && $st2 == 404;
    }
    ok($ok, 'deleted: 404, and so is its share');
};

stop_nginx();
done_testing();
