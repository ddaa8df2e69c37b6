# Fixture for t/000-runner.t, run with TEST_NGINX_USE_VALGRIND: master_on()
# is overridden (valgrind forces a single process).
use Test::Nginx::Socket 'no_plan';
master_on();
run_tests();
__DATA__

=== TEST 1: under valgrind
--- config
location = /t { return 200 "vg\n"; }
--- request
GET /t
--- response_body
vg
