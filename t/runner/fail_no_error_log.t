# Fixture for t/000-runner.t: a no_error_log pattern appears, so it fails.
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: a 404 from the root location logs an [error]
--- config
--- request
GET /missing.html
--- error_code: 404
--- no_error_log
[error]
