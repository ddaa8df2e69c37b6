# Fixture for t/000-runner.t: a client timeout without --- abort fails.
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: too slow
--- config
location = /slow { limit_rate_after 1; limit_rate 1; return 200 "hello world\n"; }
--- request
GET /slow
--- timeout: 0.2
--- ignore_response
