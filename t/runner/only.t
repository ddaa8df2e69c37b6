# Fixture for t/000-runner.t: only TEST 2 runs (ONLY).
use Test::Nginx::Socket;
plan tests => 2 * blocks();
run_tests();
__DATA__

=== TEST 1: not run
--- config
location = /t { return 500; }
--- request
GET /t
--- response_body
never

=== TEST 2: the only one
--- ONLY
--- config
location = /t { return 200 "only\n"; }
--- request
GET /t
--- response_body
only

=== TEST 3: not run either
--- config
location = /t { return 500; }
--- request
GET /t
--- response_body
never
