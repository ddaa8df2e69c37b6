# Rate limits: exact across two workers, per user or per address, the
# RateLimit headers on every answer of a limited route (429s included),
# operational routes never limited, and while Redis is away the node's own
# shared-memory limiter (or, if so configured, none).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use File::Temp qw(tempdir);
use Test::More;
use Social::Test;

my %limits = (
    'social_limit read rate=100r/s burst=200;' =>
        'social_limit read rate=1r/m burst=5;',
    'social_limit write rate=20r/s burst=40;' =>
        'social_limit write rate=1r/m burst=3;',
    'social_limit login rate=10r/m burst=10;' =>
        'social_limit login rate=1r/m burst=2;',
);

redis_cli('EVAL', "for _, k in ipairs(redis.call('KEYS', 'social:rl:*')) "
          . "do redis.call('DEL', k) end", 0);

my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
open my $fh, '>', "$dir/page.txt" or die $!;
print {$fh} "page\n";
close $fh;

# a plain location (as a proxied service would be) under the same limits
start_nginx(workers => 2, limits => 1, replace => \%limits,
            server => <<"EOF");
    location /plain/ {
        social_auth optional;
        social_limit_location on;
        alias $dir/;
    }
EOF

subtest 'a limit of 5 admits exactly 5 of 20 concurrent requests' => sub {
    my @res = parallel(20, sub {
        my ($st, $j, $h) = api('GET', '/v1/users/@nobody_limits');
        return [$st, $h->{'ratelimit-limit'}, $h->{'ratelimit-remaining'},
                $h->{'retry-after'}, $j->{error}{code}];
    });
    my @admitted = grep { $_->[0] == 404 } @res;
    my @refused = grep { $_->[0] == 429 } @res;
    is(scalar @admitted, 5, 'five admitted (and answered 404)');
    is(scalar @refused, 15, 'fifteen refused');
    is($refused[0][4], 'rate_limited', 'rate_limited');
    ok($refused[0][3] >= 1, 'with Retry-After');
    ok(!grep({ $_->[1] ne '5' } @res), 'RateLimit-Limit on every answer');
    is_deeply([sort map { $_->[2] } @admitted], [0, 1, 2, 3, 4],
              'RateLimit-Remaining counts down');
};

subtest 'operational routes are not limited' => sub {
    my @st = map { (api('GET', '/healthz'))[0] } 1 .. 10;
    is_deeply(\@st, [(200) x 10], '/healthz');
};

subtest 'writes have their own limit, per user when authenticated' => sub {
    my $u = 'lim' . int(rand(1e6));
    my ($st) = api('POST', '/v1/users', { username => $u,
        email => "$u\@example.com", password => 'correct horse' });
    is($st, 201, 'a write from this address');
    my @st = map { (api('POST', '/v1/users', {}))[0] } 1 .. 3;
    is_deeply(\@st, [422, 422, 429], 'then two more, then refused');

    my (undef, $t) = api('POST', '/oauth/token', { grant_type => 'password',
        username => $u, password => 'correct horse' });
    my $auth = { Authorization => "Bearer $t->{access_token}" };
    @st = map { (api('PATCH', '/v1/users/me', { bio => "b$_" }, $auth))[0] }
          1 .. 4;
    is_deeply(\@st, [200, 200, 200, 429],
              'the user has a bucket of its own');
};

subtest 'a plain location: the same limits, in the access phase' => sub {
    my ($st, $j, $h) = api('GET', '/plain/page.txt');
    is($st, 429, 'the address spent its reads on the API: refused');
    is($j->{error}{code}, 'rate_limited', 'as JSON, through error_page');
    ok($h->{'retry-after'} >= 1, 'with Retry-After');
    is($h->{'ratelimit-limit'}, 5, 'and the RateLimit headers');

    # a user of its own (the address's write bucket is spent too)
    redis_cli('DEL', 'social:rl:write:a:127.0.0.1');
    my $u = 'pl' . int(rand(1e6));
    api('POST', '/v1/users', { username => $u, email => "$u\@example.com",
                               password => 'correct horse' });
    my (undef, $t) = api('POST', '/oauth/token', { grant_type => 'password',
        username => $u, password => 'correct horse' });
    my $auth = { Authorization => "Bearer $t->{access_token}" };
    my @res = parallel(9, sub {
        my ($st, undef, $h, $body) = api('GET', '/plain/page.txt', undef,
                                         $auth);
        return [$st, $h->{'ratelimit-remaining'}, $body];
    });
    my @ok = grep { $_->[0] == 200 } @res;
    is(scalar @ok, 5, 'a user: exactly 5 of 9 concurrent requests served');
    is(scalar(grep { $_->[0] == 429 } @res), 4, 'the others refused');
    is($ok[0][2], "page\n", 'the file');
    is_deeply([sort map { $_->[1] } @ok], [0, 1, 2, 3, 4],
              'RateLimit-Remaining counts down');
};

subtest 'the token endpoint has the strict login limit' => sub {
    redis_cli('EVAL', "for _, k in ipairs(redis.call('KEYS', "
              . "'social:rl:login:*')) do redis.call('DEL', k) end", 0);
    my @st = map {
        (api('POST', '/oauth/token', { grant_type => 'password',
             username => 'nobody_limits', password => 'guess' }))[0]
    } 1 .. 3;
    is_deeply(\@st, [400, 400, 429], 'two guesses, then refused');
};

stop_nginx();

my %no_redis = (%limits,
                "127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}" => '127.0.0.1:1');

start_nginx(workers => 2, limits => 1, unready => 1, replace => \%no_redis);

subtest 'Redis away: the node limits with its shared memory' => sub {
    my @res = parallel(12, sub {
        my ($st, undef, $h) = api('GET', '/v1/users/@nobody_limits');
        return [$st, $h->{'ratelimit-limit'}];
    });
    is(scalar(grep { $_->[0] == 404 } @res), 5,
       'five admitted across both workers');
    is(scalar(grep { $_->[0] == 429 } @res), 7, 'seven refused');
    ok(!grep({ ($_->[1] // '') ne '5' } @res), 'with the headers');
};

stop_nginx();

start_nginx(limits => 1, unready => 1,
            replace => { %no_redis, 'social_limit_fallback local;' =>
                                    'social_limit_fallback open;' });

subtest 'Redis away, fallback open: requests go through' => sub {
    my @st = map { (api('GET', '/v1/users/@nobody_limits'))[0] } 1 .. 10;
    is_deeply(\@st, [(404) x 10], 'ten reads, none refused');
};

stop_nginx();
done_testing();
