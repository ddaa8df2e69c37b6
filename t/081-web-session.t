# The web client's session in headless Chromium, with access tokens of 4
# seconds: refreshes across expiry (two tabs, one rotation at a time), a
# password change, a session ended by a reused refresh token, logging out
# in one tab.  t/js/session.test.js drives the browser.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use Test::More;
use Social::Test;
use Social::Node;

my $missing = node_ready(browser => 1);
ok(!$missing, 'node, the npm packages and chromium are installed')
    or diag($missing);

if (!$missing) {
    start_nginx(replace => { 'social_jwt_ttl 15m;' => 'social_jwt_ttl 4s;' });
    node_test('session.test.js', env => { SOCIAL_JWT_TTL => 4 });
    stop_nginx();
}

done_testing();
