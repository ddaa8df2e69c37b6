# docs/openapi.yaml against real answers: t/js/openapi.test.js calls every
# operation of the document (successes and errors, the stream over
# WebSocket and SSE) and fails on any answer that disagrees with it; it
# also checks that the document is valid OpenAPI 3.1 and covers every
# endpoint of the contract.  The rate limits are on, the login one as
# configured (to see a 429), the others high enough not to refuse.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Test;
use Social::Node;

my $missing = node_ready();
ok(!$missing, 'node and the npm packages are installed') or diag($missing);

if (!$missing) {
    start_nginx(limits => 1, replace => {
        'social_limit read rate=100r/s burst=200;' =>
            'social_limit read rate=1000r/s burst=1000;',
        'social_limit write rate=20r/s burst=40;' =>
            'social_limit write rate=1000r/s burst=1000;',
    });
    node_test('openapi.test.js');
    stop_nginx();
}

done_testing();
