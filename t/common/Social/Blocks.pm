package Social::Blocks;

# Defaults for the Test::Nginx block suites: the API locations as
# conf/social.conf has them, the contract's body limit, the test
# PostgreSQL (and Redis), and no [error] in the log unless a block
# expects one.  Works under the upstream Test::Nginx and t/lib alike.

use strict;
use warnings;

use Test::Nginx::Socket ();

sub import {
    Test::Nginx::Socket::no_root_location();
    Test::Nginx::Socket::add_block_preprocessor(\&defaults);
}

sub defaults {
    my $block = shift;

    if (!defined $block->http_config) {
        my $ssl = $ENV{TEST_NGINX_PG_SSL} ? " $ENV{TEST_NGINX_PG_SSL}" : '';
        $block->set_value('http_config', <<"EOF");
social_pg_conninfo "host=127.0.0.1 port=$ENV{TEST_NGINX_PG_PORT} dbname=social user=social$ssl";
EOF
    }

    if (!defined $block->config) {
        $block->set_value('config', <<'EOF');
error_page 400 401 403 404 405 408 413 414 494 500 502 503 504 @social_error;
location @social_error { social_error_page; }
location / {
    client_max_body_size 1m;
    client_body_buffer_size 1m;
    social_api;
}
EOF
    }

    if (!defined $block->no_error_log && !defined $block->error_log) {
        $block->set_value('no_error_log', "[error]\n[alert]\n[crit]\n");
    }

    $block->set_value('timeout', 10) unless defined $block->timeout;
}

1;
