# Follows: idempotent follow and unfollow with exact counters under
# concurrency, the relationship body, and the followers/following lists
# with the contract's cursor pagination.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Test;

my $run = int(rand(1e6));

sub user {
    my ($name) = @_;
    my $u = "fw${run}_$name";
    my ($st, $j) = api('POST', '/v1/users', { username => $u,
        email => "$u\@example.com", password => 'correct horse' });
    die "register $u: $st" unless $st == 201;
    my (undef, $t) = api('POST', '/oauth/token', { grant_type => 'password',
        username => $u, password => 'correct horse' });
    return { id => $j->{id}, name => $u,
             auth => { Authorization => "Bearer $t->{access_token}" } };
}

sub counts {
    my ($u) = @_;
    my (undef, $j) = api('GET', "/v1/users/$u->{id}");
    return [$j->{followers_count}, $j->{following_count}];
}

start_nginx(workers => 2);

my $star = user('star');
my $fan = user('fan');

subtest 'follow and unfollow are idempotent' => sub {
    my ($st, $j) = api('POST', "/v1/users/$star->{id}/follow", undef,
                       $fan->{auth});
    is($st, 200, 'follow');
    is_deeply($j, { following => JSON::PP::true,
                    followed_by => JSON::PP::false }, 'the relationship');
    ($st, $j) = api('POST', "/v1/users/\@$star->{name}/follow", undef,
                    $fan->{auth});
    is($st, 200, 'again, by @username');
    is_deeply(counts($star), [1, 0], 'counted once');
    is_deeply(counts($fan), [0, 1], 'on both sides');

    ($st, $j) = api('POST', "/v1/users/$fan->{id}/follow", undef,
                    $star->{auth});
    ok($j->{followed_by}, 'followed_by when the other follows back');

    ($st, $j) = api('DELETE', "/v1/users/$star->{id}/follow", undef,
                    $fan->{auth});
    is($st, 200, 'unfollow');
    is_deeply($j, { following => JSON::PP::false,
                    followed_by => JSON::PP::true }, 'the relationship');
    ($st) = api('DELETE', "/v1/users/$star->{id}/follow", undef,
                $fan->{auth});
    is($st, 200, 'again');
    is_deeply(counts($star), [0, 1], 'counted once');
};

subtest 'errors' => sub {
    my ($st, $j) = api('POST', "/v1/users/$fan->{id}/follow", undef,
                       $fan->{auth});
    is($st, 422, 'following yourself: 422');
    is($j->{error}{code}, 'validation_failed', 'validation_failed');
    is((api('POST', "/v1/users/$star->{id}/follow"))[0], 401,
       'without a token: 401');
    for my $bad ('123456789', 'abc', '@no_such_user_here') {
        ($st, $j) = api('POST', "/v1/users/$bad/follow", undef,
                        $fan->{auth});
        is($st, 404, "follow $bad: 404");
        ($st) = api('GET', "/v1/users/$bad/followers");
        is($st, 404, "followers of $bad: 404");
    }
    for my $q ('limit=0', 'limit=x', 'max_id=abc', 'since_id=-3') {
        ($st, $j) = api('GET', "/v1/users/$star->{id}/followers?$q");
        is($st, 422, "$q: 422");
        ok($j->{error}{fields}, 'with fields');
    }
};

subtest 'counters are exact under concurrency' => sub {
    my $target = user('target');
    my @fans = map { user("c$_") } 1 .. 12;
    my @st = parallel(scalar @fans, sub {
        my $i = shift;
        return (api('POST', "/v1/users/$target->{id}/follow", undef,
                    $fans[$i]{auth}))[0];
    });
    is_deeply(\@st, [(200) x 12], 'twelve follows at once');
    is_deeply(counts($target), [12, 0], 'twelve followers');

    @st = parallel(8, sub {
        (api('POST', "/v1/users/$target->{id}/follow", undef,
             $fans[0]{auth}))[0];
    });
    is_deeply(counts($target), [12, 0], 'one user eight times: still 12');
    is(counts($fans[0])->[1], 1, 'and it follows one');

    @st = parallel(6, sub {
        my $i = shift;
        (api('DELETE', "/v1/users/$target->{id}/follow", undef,
             $fans[$i]{auth}))[0];
    });
    is_deeply(counts($target), [6, 0], 'six unfollows at once: 6 left');
    is(psql("SELECT count(*) FROM follows WHERE followee_id = $target->{id}"),
       6, 'as many rows');
};

subtest 'lists page without gaps or duplicates' => sub {
    my $hub = user('hub');
    my @f = map { user("p$_") } 1 .. 7;
    api('POST', "/v1/users/$hub->{id}/follow", undef, $_->{auth}) for @f;

    my (@seen, $url, $pages);
    $url = "/v1/users/$hub->{id}/followers?limit=3";
    while ($url) {
        my ($st, $j, $h) = api('GET', $url);
        is($st, 200, "page $url");
        push @seen, map { $_->{id} } @{ $j->{items} };
        $pages++;
        if (defined $j->{next_cursor}) {
            like($h->{link}, qr/^<[^>]*max_id=\Q$j->{next_cursor}\E[^>]*>; rel="next"$/,
                 'Link mirrors next_cursor');
            ($url) = $h->{link} =~ /^<([^>]+)>/;
            # a newcomer between pages shows on none of the later pages
            api('POST', "/v1/users/$hub->{id}/follow", undef,
                user("late$pages")->{auth}) if $pages == 1;
        } else {
            ok(!exists $h->{link}, 'no Link on the last page');
            $url = undef;
        }
    }
    is($pages, 3, 'three pages of 3, 3 and 1');
    is_deeply(\@seen, [map { $_->{id} } reverse @f],
              'every follower once, newest first');

    my (undef, $j) = api('GET', "/v1/users/$hub->{id}/followers?limit=500");
    is(scalar @{ $j->{items} }, 8, 'limit above 100 is clamped, not refused');

    (undef, $j) = api('GET', "/v1/users/$f[0]{id}/following");
    is_deeply([map { $_->{id} } @{ $j->{items} }], [$hub->{id}],
              'following');
    is_deeply([sort keys %{ $j->{items}[0] }],
              [sort qw(id username display_name bio created_at
                       followers_count following_count posts_count)],
              'items are public views');
};

stop_nginx();
done_testing();
