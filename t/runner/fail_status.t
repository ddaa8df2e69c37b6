# Fixture for t/000-runner.t: TEST 2 must fail on its status code only.
use Test::Nginx::Socket 'no_plan';
no_shuffle();
run_tests();
__DATA__

=== TEST 1: passes
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok

=== TEST 2: wrong status
--- config
location = /t { return 404 "ok\n"; }
--- request
GET /t
--- response_body
ok
