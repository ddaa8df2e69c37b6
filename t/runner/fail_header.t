# Fixture for t/000-runner.t: an expected header is missing.
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: missing header
--- config
location = /t { add_header X-Here yes; return 200 "ok\n"; }
--- request
GET /t
--- response_headers
X-Here: yes
X-Missing: expected
--- response_body
ok
