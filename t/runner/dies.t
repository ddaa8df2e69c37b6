# Fixture for t/000-runner.t: the test script dies with nginx running;
# END must still stop nginx.
use Test::Nginx::Socket 'no_plan';
no_shuffle();
add_block_preprocessor(sub { die "preprocessor died\n" if $_[0]->name =~ /TEST 2/ });
run_tests();
__DATA__

=== TEST 1: starts nginx
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok

=== TEST 2: dies before running
--- request
GET /t
--- response_body
ok
