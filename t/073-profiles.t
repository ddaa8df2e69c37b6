# Profiles (conf/profiles/): ./build.sh run --profile NAME configures
# nginx with it.  Production: TLS required (the plain port answers health
# checks and metrics, redirects the rest with 308), its workers, limits,
# body size and CORS origins.  Staging: TLS beside plain HTTP, its own
# origins.  Bad input (an unknown profile or flag) is a clear error and
# nothing is written or started.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use HTTP::Tiny;
use Test::More;
use Social::Run;
use Social::Test qw(forget_limits);

my $ca = "$ENV{TEST_NGINX_TLS_DIR}/ca.crt";
my $http = HTTP::Tiny->new(timeout => 10, max_redirect => 0,
                           verify_SSL => 1,
                           SSL_options => { SSL_ca_file => $ca });

sub plain { $http->request($_[0], 'http://localhost:' . node_port(1) . $_[1],
                           $_[2] || {}) }
sub tls { $http->request($_[0], 'https://localhost:' . https_port(1) . $_[1],
                         $_[2] || {}) }

sub file_text {
    open my $fh, '<', $_[0] or die "$_[0]: $!";
    local $/;
    return scalar <$fh>;
}

subtest 'bad input: a clear error, nothing started' => sub {
    fresh_run();
    my $dir = run_dir() . '/nothing';
    for my $case (
        [['--profile', 'nope'], qr/unknown profile "nope" \(conf\/profiles\/ has: production staging\)/],
        [['--profile'], qr/--profile needs a name/],
        [['--nodes', '0'], qr/--nodes takes 1 to 9, not "0"/],
        [['--bogus'], qr/unknown run option: --bogus/],
        [['--cluster', '--tls'], qr/--cluster takes no/])
    {
        my ($args, $message) = @$case;
        my ($rc, $out) = build_sh({ SOCIAL_RUN_DIR => $dir }, 'run', @$args);
        isnt($rc, 0, "run @$args: a non-zero exit");
        like($out, $message, "run @$args: says why");
    }
    ok(!-e $dir, 'no run folder, so nothing started');
};

subtest 'production: TLS required, its limits and origins' => sub {
    fresh_run();
    my ($rc, $out) = build_sh({ SOCIAL_PG_PORT => $ENV{TEST_NGINX_PG_TLS_PORT} },
                              'run', '--profile', 'production', '--check');
    is($rc, 0, 'run --profile production --check') or diag $out;
    my $conf = file_text(run_dir() . '/nginx.conf.new');
    like($conf, qr/^worker_processes 2;$/m, 'its workers');
    like($conf, qr/^    worker_connections 16384;$/m, 'its connections');
    my $social = file_text(run_dir() . '/social.conf.new');
    like($social, qr/sslmode=verify-full sslrootcert=\S+ca\.crt"/,
         'PostgreSQL over TLS, verified');
    start_nodes(1);

    my $r = plain('GET', '/v1/users/me');
    is($r->{status}, 308, 'plain http: a permanent redirect');
    is($r->{headers}{location},
       'https://localhost:' . https_port(1) . '/v1/users/me',
       'to the same path over https');
    is(plain('GET', '/readyz')->{status}, 200, 'health checks on plain http');
    $r = tls('GET', '/v1/users/me');
    is($r->{status}, 401, 'the API over https');
    like($r->{headers}{'strict-transport-security'}, qr/max-age=/, 'HSTS');

    $r = tls('OPTIONS', '/v1/users/me', { headers => {
        Origin => 'https://app.example.com',
        'Access-Control-Request-Method' => 'PATCH' } });
    is($r->{status}, 204, 'a preflight from the production origin');
    is($r->{headers}{'access-control-allow-origin'},
       'https://app.example.com', 'allowed');
    $r = tls('OPTIONS', '/v1/users/me', { headers => {
        Origin => 'https://staging.example.com',
        'Access-Control-Request-Method' => 'PATCH' } });
    ok(!$r->{headers}{'access-control-allow-origin'},
       'the staging origin is not');

    $r = tls('POST', '/v1/posts', { content => 'x' x (1024 * 1024 + 1),
        headers => { 'Content-Type' => 'application/json' } });
    is($r->{status}, 413, 'a body over 1 MiB');

    forget_limits();
    $r = tls('GET', '/v1/users/@nobody_here');
    is($r->{headers}{'ratelimit-limit'}, 100, 'the read burst of production');
    stop_nodes();
};

subtest 'staging: TLS beside plain http, its origins' => sub {
    fresh_run();
    my ($rc, $out) = build_sh({ SOCIAL_PG_PORT => $ENV{TEST_NGINX_PG_TLS_PORT} },
                              'run', '--profile', 'staging', '--check');
    is($rc, 0, 'run --profile staging --check') or diag $out;
    like(file_text(run_dir() . '/nginx.conf.new'),
         qr/^error_log logs\/error\.log info;$/m, 'its log level');
    start_nodes(1);
    is(plain('GET', '/v1/users/me')->{status}, 401, 'the API on plain http');
    is(tls('GET', '/v1/users/me')->{status}, 401, 'and on https');
    my $r = plain('OPTIONS', '/v1/users/me', { headers => {
        Origin => 'http://localhost:3000',
        'Access-Control-Request-Method' => 'GET' } });
    is($r->{headers}{'access-control-allow-origin'}, 'http://localhost:3000',
       'a staging origin');
    $r = plain('GET', '/v1/users/@nobody_here');
    is($r->{headers}{'ratelimit-limit'}, 400, 'the read burst of staging');
    stop_nodes();
};

done_testing();
