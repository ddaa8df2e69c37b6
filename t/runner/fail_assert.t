# Fixture for t/000-runner.t: an "Assertion ... failed" log line fails.
use Test::Nginx::Socket 'no_plan';
run_tests();
__DATA__

=== TEST 1: assertion in the log
--- config
location = /t { return 200 "ok\n"; }
--- init
open my $fh, '>>', "$ENV{TEST_NGINX_SERVER_ROOT}/logs/error.log" or die $!;
print $fh "nginx: src/x.c:1: f: Assertion `p != NULL' failed.\n";
close $fh;
--- request
GET /t
--- response_body
ok
