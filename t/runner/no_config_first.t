# Fixture for t/000-runner.t: the first block needs a config.
use Test::Nginx::Socket 'no_plan';
no_shuffle();
run_tests();
__DATA__

=== TEST 1: no config
--- request
GET /t
--- response_body
x
