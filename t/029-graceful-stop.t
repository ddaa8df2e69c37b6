# A graceful stop (or the old workers of a reload) answers every request
# the workers already hold, including those that wait for work with no
# timer of their own: a rate limit verdict from Redis (the checks of a
# turn go as one background command) and passwords hashed in the thread
# pool.  A worker used to exit under them ("open socket left in
# connection"), and their clients got no answer.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Time::HiRes qw(sleep);
use Social::Test;

# runs the requests at once; QUIT reaches nginx after `delay` seconds
sub stopped_under {
    my ($delay, @requests) = @_;
    my $master = nginx_pid();
    my @res = parallel(@requests + 1, sub {
        my ($i) = @_;
        if ($i == @requests) {
            sleep $delay;
            kill 'QUIT', $master;
            return 0;
        }
        return (api(@{ $requests[$i] }))[0];
    });
    pop @res;
    stop_nginx();
    return @res;
}

forget_limits();

subtest 'requests waiting for the rate limit verdict' => sub {
    start_nginx(workers => 2, limits => 1);

    # Redis holds every command for 0.8 s: the verdicts come late
    redis_cli('CLIENT', 'PAUSE', 800, 'ALL');
    my @st = stopped_under(0.3, map { ['GET', "/v1/users/\@nobody_$_"] }
                                    1 .. 4);
    is_deeply(\@st, [(404) x 4], 'each answered (404, no such user)');
};

subtest 'logins whose passwords are being hashed' => sub {
    start_nginx(workers => 2);
    my $u = new_user('graceful');
    my $login = ['POST', '/oauth/token', { grant_type => 'password',
                 username => $u->{name}, password => 'correct horse' }];

    # eight scrypt hashes on two cores: most are still out at 0.1 s
    my @st = stopped_under(0.1, ($login) x 8);
    is_deeply(\@st, [(200) x 8], 'each answered with its tokens');
};

done_testing();
