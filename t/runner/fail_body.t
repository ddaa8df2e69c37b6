# Fixture for t/000-runner.t: the response body check must fail.
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: wrong body
--- config
location = /t { return 200 "hello\n"; }
--- request
GET /t
--- response_body
goodbye
