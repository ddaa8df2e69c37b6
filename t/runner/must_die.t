# Fixture for t/000-runner.t: must_die passes when nginx refuses the config,
# and the load_module lines of TEST_NGINX_LOAD_MODULES come first.
use Test::Nginx::Socket 'no_plan';
no_shuffle();
run_tests();
__DATA__

=== TEST 1: bad directive, nginx must die
--- config
location = /t { no_such_directive_here on; }
--- must_die
--- error_log
unknown directive "no_such_directive_here"

=== TEST 2: the running server still works after a must_die block
--- config
location = /t { return 200 "alive\n"; }
--- request
GET /t
--- response_body
alive
