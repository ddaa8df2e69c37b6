# Fixture for t/000-runner.t: TEST_NGINX_LOAD_MODULES is set by the self-test
# to a missing .so; nginx must die trying to load it.
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: the load_module line is written
--- config
location = /t { return 200; }
--- must_die
--- error_log
ngx_runner_missing_module.so
