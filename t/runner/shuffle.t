# Fixture for t/000-runner.t: 8 blocks, shuffled unless TEST_NGINX_NO_SHUFFLE.
use Test::Nginx::Socket 'no_plan';
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('config', 'location = /t { return 200 "ok\n"; }');
    $block->set_value('request', 'GET /t');
    $block->set_value('response_body', "ok\n");
});
run_tests();
__DATA__

=== TEST 1: block 1

=== TEST 2: block 2

=== TEST 3: block 3

=== TEST 4: block 4

=== TEST 5: block 5

=== TEST 6: block 6

=== TEST 7: block 7

=== TEST 8: block 8
