# The web client (web/) in headless Chromium: the page's CSP allows no
# inline script; two people sign up (an API error is shown), follow
# each other, see each other's posts and notifications without reloading,
# chat live both ways with typing indicators and read markers, a post of
# HTML stays text, the stream comes back after nginx restarts (stopped and
# started again as this suite does, the way ./build.sh run restarts it)
# with the messages sent meanwhile, and a page whose WebSocket cannot
# connect streams over SSE; no page put a token in a URL but the stream's.
# t/js/web.test.js drives the browser.
#
# SOCIAL_SCREENSHOT=docs/web-client.png ./build.sh test t/080-web.t
# takes the README's screenshot.

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
    my %nginx = (workers => 2);
    start_nginx(%nginx);
    node_test('web.test.js', nginx => \%nginx);
    stop_nginx();
}

done_testing();
