# Fixture for t/000-runner.t: SKIP drops TEST 2, LAST stops after TEST 3.
use Test::Nginx::Socket;
repeat_each(2);
plan tests => repeat_each() * (2 * blocks());
run_tests();
__DATA__

=== TEST 1: runs
--- config
location = /t { return 200 "one\n"; }
--- request
GET /t
--- response_body
one

=== TEST 2: skipped
--- SKIP
--- config
location = /t { return 500; }
--- request
GET /t
--- response_body
never

=== TEST 3: runs, and is the last
--- LAST
--- config
location = /t { return 200 "three\n"; }
--- request
GET /t
--- response_body
three

=== TEST 4: after LAST
--- config
location = /t { return 500; }
--- request
GET /t
--- response_body
never
