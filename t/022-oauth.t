# OAuth 2.0: the token endpoint (password and refresh_token grants),
# revocation, and access tokens as the API checks them: tampered,
# expired, wrong key, and ES256 verified with the public key only.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Digest::SHA qw(hmac_sha256);
use JSON::PP;
use MIME::Base64 qw(encode_base64url);
use Test::More;
use Time::HiRes qw(time);
use Social::Test;

my $KEYS = $ENV{TEST_NGINX_KEYS_DIR};
my $FORM = { 'Content-Type' => 'application/x-www-form-urlencoded' };

sub slurp {
    open my $fh, '<', shift or die $!;
    local $/;
    my $s = <$fh>;
    $s =~ s/[\r\n]+\z//;
    return $s;
}

# a token as the server would make it, with whatever header and claims
sub jwt {
    my ($header, $claims, $secret) = @_;
    my $h = encode_base64url(ref $header ? encode_json($header) : $header);
    my $c = encode_base64url(encode_json($claims));
    my $sig = defined $secret
              ? encode_base64url(hmac_sha256("$h.$c", $secret)) : '';
    return "$h.$c.$sig";
}

sub me {
    my ($token) = @_;
    return api('GET', '/v1/users/me', undef,
               { Authorization => "Bearer $token" });
}

sub login {
    my ($user, $pass) = @_;
    return api('POST', '/oauth/token',
               { grant_type => 'password', username => $user,
                 password => $pass });
}

sub register {
    my ($u) = @_;
    my ($st, $j) = api('POST', '/v1/users', { username => $u,
        email => "$u\@example.com", password => 'correct horse' });
    die "register $u: $st" unless $st == 201;
    return $j->{id};
}

start_nginx();

my $u = 'oa' . int(rand(1e6));
my $uid = register($u);

subtest 'password grant, form-encoded and JSON, by username or email' => sub {
    my ($st, $j, $h) = api('POST', '/oauth/token',
        "grant_type=password&username=$u&password=correct+horse", $FORM);
    is($st, 200, 'form: 200');
    is($h->{'cache-control'}, 'no-store', 'Cache-Control: no-store');
    is($h->{pragma}, 'no-cache', 'Pragma: no-cache');
    is($j->{token_type}, 'Bearer', 'token_type');
    is($j->{expires_in}, 900, 'expires_in: 15 minutes');
    like($j->{refresh_token}, qr/^[A-Za-z0-9_-]{43}$/, 'refresh token');
    is($j->{scope}, 'social', 'scope');

    ($st, $j) = login("$u\@EXAMPLE.com", 'correct horse');
    is($st, 200, 'JSON, by email, case-insensitively');

    my ($st2, $me) = me($j->{access_token});
    is($st2, 200, 'the access token opens /v1/users/me');
    is($me->{id}, $uid, 'as this user');
    is($me->{email}, "$u\@example.com", 'the own view has the email');
};

subtest 'logins under concurrency each get their own tokens' => sub {
    my @res = parallel(12, sub {
        my $i = shift;
        my ($st, $j) = login($u, $i % 3 ? 'correct horse' : 'wrong horse');
        return [$st, $j->{refresh_token} // $j->{error}];
    });
    my @ok = grep { $_->[0] == 200 } @res;
    is(scalar @ok, 8, 'eight right passwords: 200');
    is(scalar(grep { $_->[0] == 400 && $_->[1] eq 'invalid_grant' } @res), 4,
       'four wrong ones: invalid_grant');
    my %distinct = map { $_->[1] => 1 } @ok;
    is(scalar keys %distinct, 8, 'eight different refresh tokens');
    is(psql("SELECT count(DISTINCT family_id) FROM refresh_tokens "
            . "WHERE user_id = $uid"), 2 + 8, 'eight new families');
};

subtest 'token endpoint errors per RFC 6749 section 5.2' => sub {
    my @cases = (
        [{ grant_type => 'password', username => $u, password => 'wrong one' },
         'invalid_grant'],
        [{ grant_type => 'password', username => 'nobody_here',
           password => 'correct horse' }, 'invalid_grant'],
        [{ username => $u, password => 'correct horse' }, 'invalid_request'],
        [{ grant_type => 'password', username => $u }, 'invalid_request'],
        [{ grant_type => 'refresh_token' }, 'invalid_request'],
        [{ grant_type => 'client_credentials' }, 'unsupported_grant_type'],
        [{ grant_type => 'refresh_token', refresh_token => 'made-up' },
         'invalid_grant'],
        [{ grant_type => ['password'] }, 'invalid_request'],
    );
    for my $c (@cases) {
        my ($st, $j, $h) = api('POST', '/oauth/token', $c->[0]);
        is($st, 400, "400 for " . encode_json($c->[0]));
        is($j->{error}, $c->[1], $c->[1]);
        ok(length $j->{error_description}, 'with a description');
        is($h->{'cache-control'}, 'no-store', 'not cached');
    }
    my ($st, $j) = api('POST', '/oauth/token', "grant_type=pass%00word",
                       $FORM);
    is($j->{error}, 'invalid_request', 'NUL in a form value');
};

subtest 'refresh tokens rotate; a reused one revokes its family' => sub {
    my (undef, $t1) = login($u, 'correct horse');
    my ($st, $t2) = api('POST', '/oauth/token',
        { grant_type => 'refresh_token', refresh_token => $t1->{refresh_token} });
    is($st, 200, 'refreshed');
    isnt($t2->{refresh_token}, $t1->{refresh_token}, 'a new refresh token');
    is((me($t2->{access_token}))[0], 200, 'a working access token');

    my ($st3, $t3) = api('POST', '/oauth/token',
        { grant_type => 'refresh_token', refresh_token => $t2->{refresh_token} });
    is($st3, 200, 'the new one rotates too');

    ($st, my $j) = api('POST', '/oauth/token',
        { grant_type => 'refresh_token', refresh_token => $t1->{refresh_token} });
    is($st, 400, 'the first, already rotated, is refused');
    is($j->{error}, 'invalid_grant', 'invalid_grant');

    ($st) = api('POST', '/oauth/token',
        { grant_type => 'refresh_token', refresh_token => $t3->{refresh_token} });
    is($st, 400, 'and the whole family with it');

    my (undef, $other) = login($u, 'correct horse');
    ($st) = api('POST', '/oauth/token', { grant_type => 'refresh_token',
        refresh_token => $other->{refresh_token} });
    is($st, 200, 'another login is another family, untouched');
};

subtest 'revocation (RFC 7009)' => sub {
    my (undef, $t) = login($u, 'correct horse');
    my ($st, undef, $h) = api('POST', '/oauth/revoke',
                              "token=$t->{refresh_token}", $FORM);
    is($st, 200, 'a refresh token');
    is($h->{'cache-control'}, 'no-store', 'not cached');
    ($st) = api('POST', '/oauth/token', { grant_type => 'refresh_token',
        refresh_token => $t->{refresh_token} });
    is($st, 400, 'no longer refreshes');

    is((api('POST', '/oauth/revoke', { token => 'unknown-token' }))[0], 200,
       'an unknown token: 200 all the same');
    my ($st2, $j) = api('POST', '/oauth/revoke', {});
    is($st2, 400, 'no token: 400');
    is($j->{error}, 'invalid_request', 'invalid_request');
    is((api('POST', '/oauth/revoke', { token => $t->{access_token} }))[0],
       200, 'an access token');
    is(psql("SELECT count(*) FROM revoked_tokens WHERE user_id = $uid"), 1,
       'is recorded as revoked');
};

subtest 'access tokens: every tampering is 401' => sub {
    my $secret = slurp("$KEYS/main.key");
    my $now = time;
    my %c = (sub => $uid, iat => int($now), exp => int($now) + 600,
             jti => 'a' x 32);
    my $hs = '{"alg":"HS256","typ":"JWT","kid":"main"}';

    is((me(jwt($hs, \%c, $secret)))[0], 200,
       'a token made with the key is accepted (the forgeries below are fair)');

    my %bad = (
        'alg none' => jwt('{"alg":"none","typ":"JWT","kid":"main"}', \%c,
                          undef),
        'alg swapped to ES256' =>
            jwt('{"alg":"ES256","typ":"JWT","kid":"main"}', \%c, $secret),
        'unknown kid' => jwt('{"alg":"HS256","typ":"JWT","kid":"k9"}', \%c,
                             $secret),
        'header reformatted' =>
            jwt('{"alg": "HS256","typ":"JWT","kid":"main"}', \%c, $secret),
        'another secret' => jwt($hs, \%c, slurp("$KEYS/other.key")),
        'expired' => jwt($hs, { %c, exp => int($now) - 1 }, $secret),
        'claims changed after signing' => do {
            my ($h, undef, $s) = split /\./, jwt($hs, \%c, $secret);
            "$h." . encode_base64url(encode_json({ %c, sub => 1 })) . ".$s";
        },
        'a jti missing' => jwt($hs, { sub => $uid, iat => $c{iat},
                                      exp => $c{exp} }, $secret),
        'not a JWT' => 'garbage',
        'empty signature' => do {
            my ($h, $p) = split /\./, jwt($hs, \%c, $secret);
            "$h.$p.";
        },
    );
    for my $name (sort keys %bad) {
        my ($st, $j, $h) = me($bad{$name});
        is($st, 401, "$name: 401");
        is($j->{error}{code}, 'unauthorized', "$name: unauthorized");
        like($h->{'www-authenticate'}, qr/^Bearer error="invalid_token"$/,
             "$name: WWW-Authenticate");
    }

    my ($st, undef, $h) = api('GET', '/v1/users/me');
    is($st, 401, 'no token: 401');
    is($h->{'www-authenticate'}, 'Bearer', 'WWW-Authenticate: Bearer');
    ($st) = api('GET', '/v1/users/me', undef,
                { Authorization => "Basic dXNlcjpwYXNz" });
    is($st, 401, 'not a bearer token: 401');
};

subtest 'an old hash is upgraded at the next login' => sub {
    my $w = 'up' . int(rand(1e6));
    my $wid = register($w);
    my $salt = 'c2FsdHNhbHRzYWx0c2FsdA';
    my $hex = `openssl kdf -keylen 32 -kdfopt pass:'correct horse' -kdfopt hexsalt:73616c7473616c7473616c7473616c74 -kdfopt n:16384 -kdfopt r:8 -kdfopt p:1 SCRYPT`;
    $hex =~ s/[:\s]//g;
    my $hash = encode_base64url(pack('H*', $hex));
    $hash =~ tr{-_}{+/};
    psql("UPDATE credentials SET password_hash = "
         . "'\$scrypt\$ln=14,r=8,p=1\$$salt\$$hash' WHERE user_id = $wid");
    my ($st) = login($w, 'correct horse');
    is($st, 200, 'the old (ln=14) hash verifies');
    like(psql("SELECT password_hash FROM credentials WHERE user_id = $wid"),
         qr/^\$scrypt\$ln=15,r=8,p=1\$/, 'and is stored again with ln=15');
    is((login($w, 'correct horse'))[0], 200, 'which verifies too');
    is((login($w, 'wrong horse'))[0], 400, 'a wrong password still fails');
};

subtest 'unknown user and wrong password cost the same time' => sub {
    my (@unknown, @wrong);
    for (1 .. 7) {
        my $t0 = time;
        login('no_such_user_' . int(rand(1e6)), 'correct horse');
        push @unknown, time - $t0;
        $t0 = time;
        login($u, 'not the password');
        push @wrong, time - $t0;
    }
    # the fastest of each: the work itself, least disturbed by other
    # processes on a shared machine.  Without the dummy hash an unknown
    # user costs one indexed lookup, about 2% of a scrypt verification:
    # a factor of two either way still tells the two apart.
    my $m1 = (sort { $a <=> $b } @unknown)[0];
    my $m2 = (sort { $a <=> $b } @wrong)[0];
    my $ratio = $m1 / $m2;
    note(sprintf "fastest unknown %.1f ms, wrong password %.1f ms",
         $m1 * 1000, $m2 * 1000);
    ok($ratio > 0.5 && $ratio < 2, "within a factor of 2 (ratio $ratio)");
};

stop_nginx();

# two workers: a revocation made in one holds in the other within a second,
# and after a restart (it is loaded from PostgreSQL)

start_nginx(workers => 2);

subtest 'a revoked access token is refused by every worker' => sub {
    my (undef, $t) = login($u, 'correct horse');
    my @before = parallel(10, sub { (me($t->{access_token}))[0] });
    is_deeply(\@before, [(200) x 10], 'accepted everywhere first');

    is((api('POST', '/oauth/revoke', { token => $t->{access_token} }))[0],
       200, 'revoked');
    select(undef, undef, undef, 1);
    my @after = parallel(20, sub { (me($t->{access_token}))[0] });
    is_deeply(\@after, [(401) x 20], 'refused everywhere within a second');

    my (undef, $t2) = login($u, 'correct horse');
    is((me($t2->{access_token}))[0], 200, 'a new token works');

    stop_nginx();
    start_nginx(workers => 2);
    my @restart = parallel(10, sub { (me($t->{access_token}))[0] });
    is_deeply(\@restart, [(401) x 10], 'still refused after a restart');
};

stop_nginx();

# ES256: one node signs with the private key; another holds the public key
# only and verifies what the first issued.

start_nginx(http => "social_jwt_key es $KEYS/es256.pem;\n"
                    . "social_jwt_signing_key es;");

my (undef, $es) = login($u, 'correct horse');
my ($h64) = split /\./, $es->{access_token};
is(decode_json(MIME::Base64::decode_base64url($h64))->{alg}, 'ES256',
   'issued with ES256');
is((me($es->{access_token}))[0], 200, 'accepted where it was issued');

stop_nginx();

start_nginx(replace => {
    "social_jwt_key main $KEYS/main.key;" =>
    "social_jwt_key es $KEYS/es256.pub;" });

is((me($es->{access_token}))[0], 200,
   'accepted by a node that holds only the public key');
my ($hh, $pp, $ss) = split /\./, $es->{access_token};
my @sig = split //, MIME::Base64::decode_base64url($ss);
$sig[10] = chr(ord($sig[10]) ^ 1);
is((me("$hh.$pp." . encode_base64url(join '', @sig)))[0], 401,
   'a flipped bit in the signature is 401');

stop_nginx();
done_testing();
