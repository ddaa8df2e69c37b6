# Registration under concurrency, and how passwords are stored.  (How free
# the event loop stays while passwords are hashed is measured by
# bench/users.sh, not asserted here.)

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Test;

start_nginx();

subtest 'simultaneous registrations of one username: exactly one wins' => sub {
    my $u = 'race' . int(rand(1e6));
    my @st = parallel(8, sub {
        my $i = shift;
        my ($st, $j) = api('POST', '/v1/users', {
            username => $i % 2 ? uc $u : $u,
            email => "$u.$i\@example.com", password => 'correct horse' });
        return [$st, $st == 409 ? $j->{error}{code} : 'created'];
    });
    is(scalar(grep { $_->[0] == 201 } @st), 1, 'one 201');
    is(scalar(grep { $_->[0] == 409 && $_->[1] eq 'username_taken' } @st), 7,
       'seven username_taken');
    is(psql("SELECT count(*) FROM users WHERE lower(username) = '$u'"), 1,
       'one row');
    is(psql("SELECT count(*) FROM credentials c JOIN users u ON u.id = "
            . "c.user_id WHERE lower(u.username) = '$u'"), 1,
       'with its credentials');
};

subtest 'the password is stored as a salted scrypt hash' => sub {
    my $u = 'hash' . int(rand(1e6));
    for my $i (1, 2) {
        api('POST', '/v1/users', { username => "$u$i",
            email => "$u$i\@example.com", password => 'same password' });
    }
    my @h = split /\n/, psql("SELECT password_hash FROM credentials c JOIN "
        . "users u ON u.id = c.user_id WHERE u.username LIKE '$u%' "
        . "ORDER BY u.username");
    is(scalar @h, 2, 'two hashes');
    like($h[0], qr/^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+\/]{22}\$[A-Za-z0-9+\/]{43}$/,
         'PHC form with its parameters');
    isnt($h[0], $h[1], 'different salts, different hashes');
    unlike($h[0], qr/same password/, 'no plain text');
};

stop_nginx();
done_testing();
