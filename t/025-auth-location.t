# "social_auth required | optional | off" on plain nginx locations, and
# $social_user_id for logs and proxying.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use File::Temp qw(tempdir);
use Test::More;
use Social::Test;

my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
open my $fh, '>', "$dir/page.txt" or die $!;
print {$fh} "static page\n";
close $fh;

start_nginx(server => <<"EOF");
    location /required/ {
        social_auth required;
        alias $dir/;
        add_header X-User \$social_user_id;
    }

    location /optional/ {
        social_auth optional;
        alias $dir/;
        add_header X-User \$social_user_id;
    }

    location /open/ {
        alias $dir/;
        add_header X-User \$social_user_id;
    }
EOF

my $u = 'al' . int(rand(1e6));
my (undef, $me) = api('POST', '/v1/users', { username => $u,
    email => "$u\@example.com", password => 'correct horse' });
my (undef, $t) = api('POST', '/oauth/token', { grant_type => 'password',
    username => $u, password => 'correct horse' });
my $auth = { Authorization => "Bearer $t->{access_token}" };
my $bad = { Authorization => "Bearer $t->{access_token}x" };

my ($st, $j, $h, $body) = api('GET', '/required/page.txt', undef, $auth);
is($st, 200, 'required, with a token: served');
is($body, "static page\n", 'the file');
is($h->{'x-user'}, $me->{id}, '$social_user_id is the user');

($st, $j, $h) = api('GET', '/required/page.txt');
is($st, 401, 'required, without a token: 401');
is($j->{error}{code}, 'unauthorized', 'in the contract shape');
is($h->{'www-authenticate'}, 'Bearer', 'WWW-Authenticate: Bearer');

($st, $j, $h) = api('GET', '/required/page.txt', undef, $bad);
is($st, 401, 'required, a bad token: 401');
is($h->{'www-authenticate'}, 'Bearer error="invalid_token"',
   'error="invalid_token"');

($st, undef, $h) = api('GET', '/optional/page.txt');
is($st, 200, 'optional, without a token: served');
ok(!exists $h->{'x-user'}, 'no user');

($st, undef, $h) = api('GET', '/optional/page.txt', undef, $auth);
is($h->{'x-user'}, $me->{id}, 'optional, with a token: the user');

($st) = api('GET', '/optional/page.txt', undef, $bad);
is($st, 401, 'optional, a bad token: 401 all the same');

($st, undef, $h) = api('GET', '/open/page.txt', undef, $bad);
is($st, 200, 'off: the token is not looked at');
ok(!exists $h->{'x-user'}, 'and there is no user');

api('POST', '/oauth/revoke', { token => $t->{access_token} });
($st) = api('GET', '/required/page.txt', undef, $auth);
is($st, 401, 'a revoked token: 401');

stop_nginx();
done_testing();
