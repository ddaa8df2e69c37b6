# Fixture for t/000-runner.t: master_on() + workers(2), shuffled blocks,
# env_to_nginx and a counted plan.
use Test::Nginx::Socket;
master_on();
workers(2);
env_to_nginx('RUNNER_ENV_VAR');
plan tests => 2 * blocks();
run_tests();
__DATA__

=== TEST 1: one
--- config
location = /t { return 200 "one $pid\n"; }
--- request
GET /t
--- response_body_like: ^one \d+$

=== TEST 2: two
--- config
location = /t { return 200 "two\n"; }
--- request
GET /t
--- response_body
two

=== TEST 3: three
--- config
location = /t { return 200 "three\n"; }
--- request
GET /t
--- response_body
three
