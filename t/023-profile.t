# Profiles: GET /v1/users/{id or @username} (cached in Redis, invalidated
# by writes, read from PostgreSQL when Redis is away) and PATCH
# /v1/users/me, including a password change that revokes the other tokens.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Time::HiRes ();
use Social::Test;

sub login {
    my ($user, $pass) = @_;
    my ($st, $j) = api('POST', '/oauth/token', { grant_type => 'password',
                       username => $user, password => $pass });
    return $st == 200 ? $j : undef;
}

sub auth {
    my ($t) = @_;
    return { Authorization => "Bearer $t->{access_token}" };
}

sub register {
    my ($u) = @_;
    my ($st, $j) = api('POST', '/v1/users', { username => $u,
        email => "$u\@example.com", password => 'correct horse' });
    die "register $u: $st" unless $st == 201;
    return $j->{id};
}

start_nginx(workers => 2);

my $u = 'pf' . int(rand(1e6));
my $id = register($u);
my $t = login($u, 'correct horse');

subtest 'public profiles by id and by @username' => sub {
    my ($st, $j) = api('GET', "/v1/users/$id");
    is($st, 200, 'by id');
    is_deeply([sort keys %$j], [sort qw(id username display_name bio
        created_at followers_count following_count posts_count)],
        'the public view: no email');
    is($j->{username}, $u, 'username');

    ($st, $j) = api('GET', '/v1/users/@' . uc $u);
    is($st, 200, 'by @username, case-insensitively');
    is($j->{id}, $id, 'the same user');

    for my $bad ('abc', '0', '-1', '99999999999999999999', '12a', '@',
                 '@nobody_at_all') {
        my ($st2, $e) = api('GET', "/v1/users/$bad");
        is($st2, 404, "$bad: 404");
        is($e->{error}{code}, 'not_found', "$bad: not_found");
    }
};

subtest 'the cache is filled by reads and emptied by writes' => sub {
    redis_cli('DEL', "social:user:$id");
    api('GET', "/v1/users/$id");
    ok(wait_until(sub { redis_cli('EXISTS', "social:user:$id") eq '1' }, 2),
       'a read fills the cache');

    my ($st, $j) = api('PATCH', '/v1/users/me',
                       { display_name => "Pat \x{1F600}", bio => 'hi' },
                       auth($t));
    is($st, 200, 'PATCH');
    is($j->{display_name}, "Pat \x{1F600}", 'the own view shows it');
    is($j->{email}, "$u\@example.com", 'with the email');
    is(redis_cli('EXISTS', "social:user:$id"), '0',
       'the cached view is gone when the write is answered');

    my @views = parallel(6, sub { (api('GET', "/v1/users/$id"))[1]{bio} });
    is_deeply(\@views, [('hi') x 6], 'every worker reads the new view');

    ($st, $j) = api('PATCH', '/v1/users/me', { bio => undef }, auth($t));
    is($j->{bio}, 'hi', 'a null field leaves the value');
};

subtest 'PATCH validation' => sub {
    my @cases = (
        [{ bio => 'b' x 501 }, 'bio', 'is too long'],
        [{ display_name => 'd' x 101 }, 'display_name', 'is too long'],
        [{ bio => 5 }, 'bio', 'must be a string'],
        [{ display_name => "a\x{0}b" }, 'display_name',
         'must not contain NUL characters'],
        [{ password => 'new password 1' }, 'current_password',
         'is required to change the password'],
        [{ password => 'short', current_password => 'correct horse' },
         'password', 'is too short'],
        [{ password => 'new password 1', current_password => 'wrong one' },
         'current_password', 'is wrong'],
    );
    for my $c (@cases) {
        my ($st, $j) = api('PATCH', '/v1/users/me', $c->[0], auth($t));
        is($st, 422, "422 for $c->[1]");
        is($j->{error}{fields}{$c->[1]}, $c->[2], $c->[2]);
    }
    is((api('PATCH', '/v1/users/me', { bio => 'x' }))[0], 401,
       'without a token: 401');
    my ($st, $j) = api('GET', "/v1/users/$id");
    is($j->{bio}, 'hi', 'nothing refused was stored');
};

subtest 'a password change revokes every other token' => sub {
    my $other = login($u, 'correct horse');
    is((api('GET', '/v1/users/me', undef, auth($other)))[0], 200,
       'another session works first');

    my ($st) = api('PATCH', '/v1/users/me',
                   { password => 'new password 1',
                     current_password => 'correct horse' }, auth($t));
    is($st, 200, 'changed');
    select(undef, undef, undef, 1);

    my @mine = parallel(6, sub {
        (api('GET', '/v1/users/me', undef, auth($t)))[0] });
    is_deeply(\@mine, [(200) x 6], 'the token that changed it still works');
    my @others = parallel(6, sub {
        (api('GET', '/v1/users/me', undef, auth($other)))[0] });
    is_deeply(\@others, [(401) x 6], 'the other session is refused');

    for my $rt ($t->{refresh_token}, $other->{refresh_token}) {
        my ($s2, $j) = api('POST', '/oauth/token',
            { grant_type => 'refresh_token', refresh_token => $rt });
        is($j->{error}, 'invalid_grant', 'its refresh tokens are revoked');
    }

    ok(!login($u, 'correct horse'), 'the old password no longer works');
    ok(login($u, 'new password 1'), 'the new one does');
};

subtest 'a token of the seconds after a change is not void' => sub {
    my $w = 'pn' . int(rand(1e6));
    my $wid = register($w);
    my ($pass, $late, $start) = ('correct horse', 0, 0.15);
    # a change late in its second (rounded up, the next second was void
    # too): where in its second a change lands moves with the hashing's
    # time, so each try starts where the previous one would have landed it
    for my $try (1 .. 6) {
        my $now = Time::HiRes::time();
        Time::HiRes::sleep(int($now) + 1 + $start - $now);
        my $tok = login($w, $pass);
        my $next = "password number $try";
        my ($st) = api('PATCH', '/v1/users/me',
                       { password => $next, current_password => $pass },
                       auth($tok));
        die "change: $st" unless $st == 200;
        $pass = $next;
        my $at = psql('SELECT extract(epoch FROM tokens_valid_after) '
                      . "FROM credentials WHERE user_id = $wid");
        my $frac = $at - int($at);
        if ($frac < 0.5 || $frac > 0.9) {
            $start = $start + 0.7 - $frac;
            $start -= int($start) if $start >= 1;
            $start += 1 if $start < 0;
            next;
        }
        $late = 1;
        $now = Time::HiRes::time();
        Time::HiRes::sleep(int($at) + 1.02 - $now) if $now < int($at) + 1.02;
        my $fresh = login($w, $pass);
        is((api('GET', '/v1/users/me', undef, auth($fresh)))[0], 200,
           'a login in the next second: its token works');
        last;
    }
    ok($late, 'a change late in its second was made');
};

stop_nginx();

# Redis away: profiles come from PostgreSQL

start_nginx(unready => 1,
            replace => { "127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}" =>
                         '127.0.0.1:1' });

subtest 'profiles are served with Redis down' => sub {
    my ($st, $j) = api('GET', "/v1/users/$id");
    is($st, 200, 'by id');
    is($j->{username}, $u, 'from PostgreSQL');
    my $t2 = login($u, 'new password 1');
    ($st, $j) = api('PATCH', '/v1/users/me', { bio => 'offline' },
                    auth($t2));
    is($st, 200, 'and written');
    is((api('GET', "/v1/users/$id"))[1]{bio}, 'offline', 'and read back');
};

stop_nginx();
done_testing();
