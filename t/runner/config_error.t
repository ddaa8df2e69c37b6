# Fixture for t/000-runner.t: a config error must bail out at once.
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: unknown directive
--- config
location = /t { no_such_directive_here on; }
--- request
GET /t
--- response_body
never
