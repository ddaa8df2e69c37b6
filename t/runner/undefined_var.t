# Fixture for t/000-runner.t: an undefined $TEST_NGINX_ variable bails out.
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: undefined variable
--- config
location = /t { return 200 "$TEST_NGINX_SURELY_UNDEFINED_VAR\n"; }
--- request
GET /t
--- response_body
x
