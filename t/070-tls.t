# Encryption in transit.  The edge: conf/tls.conf's server (TLS 1.2 and
# 1.3, the Mozilla intermediate ciphers, HTTP/2, HSTS) serves the API and
# the stream (wss://).  PostgreSQL: the adapter connects with
# sslmode=verify-full to a server that takes TLS connections only (the
# suite's second PostgreSQL), connects again after that server restarts,
# refuses a server its CA did not sign, and cannot connect without TLS.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use Test::More;
use Social::Stream;
use Social::Test;

my $tls_dir = $ENV{TEST_NGINX_TLS_DIR} or die "TEST_NGINX_TLS_DIR is not set";
my $ca = "$tls_dir/ca.crt";
my $port = $ENV{TEST_NGINX_PORT} || 1984;
my $https = $port + 100;
my $pg_tls = $ENV{TEST_NGINX_PG_TLS_PORT};
my $json = JSON::PP->new->utf8->canonical;

# conf/tls.conf with this suite's port and the suite's certificate
sub tls_server {
    open my $fh, '<', "$ENV{TEST_NGINX_CONF_DIR}/tls.conf" or die $!;
    my $text = do { local $/; <$fh> };
    close $fh;
    $text =~ s/listen 127\.0\.0\.1:8443 /listen 127.0.0.1:$https /
        or die 'tls.conf: no listen';
    $text =~ s{ tls/server\.}{ $tls_dir/server.}g == 2
        or die 'tls.conf: no certificate';
    return $text;
}

# PostgreSQL over TLS: the whole conninfo (with the TLS settings of
# --pg-tls, if any) points at the TLS-only server with these
sub pg_tls_conninfo {
    my ($extra) = @_;
    my $ssl = $ENV{TEST_NGINX_PG_SSL} ? " $ENV{TEST_NGINX_PG_SSL}" : '';
    return { "port=$ENV{TEST_NGINX_PG_PORT} dbname=social user=social$ssl\"" =>
             "port=$pg_tls dbname=social user=social $extra\"" };
}

sub psql_tls {
    local $ENV{TEST_NGINX_PG_PORT} = $pg_tls;
    return psql(@_);
}

# curl over TLS: (exit code, output)
sub curl {
    my @args = @_;
    open my $fh, '-|', 'curl', '-sS', '--cacert', $ca, @args,
        "https://localhost:$https/healthz" or die "curl: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

sub handshake {
    my @args = @_;
    my $out = `openssl s_client -connect 127.0.0.1:$https -CAfile $ca @args </dev/null 2>&1`;
    return $out =~ /^\s*Cipher\s*:\s*(\S+)/m && $1 ne '0000' ? $1 : '';
}

start_nginx(http => tls_server(),
            replace => pg_tls_conninfo("sslmode=verify-full sslrootcert=$ca"));

subtest 'PostgreSQL: verify-full over TLS, a TLS-only server' => sub {
    my $u = new_user('tls');
    my $v = new_user('tlsv');
    my ($st) = api('POST', "/v1/users/$u->{id}/follow", undef, $v->{auth});
    is($st, 200, 'a write over TLS');
    ($st, my $p) = api('POST', '/v1/posts', { text => 'over TLS' }, $u->{auth});
    is($st, 201, 'a post');
    ($st, my $f) = api('GET', '/v1/feed', undef, $v->{auth});
    is($f->{items}[0]{id}, $p->{id}, 'the follower\'s feed');
    is(psql_tls("SELECT count(*) FROM posts WHERE id = $p->{id}"), 1,
       'written to the TLS server');
    my $plain = psql_tls("SELECT count(*) FROM pg_stat_activity a JOIN "
        . "pg_stat_ssl s USING (pid) WHERE a.application_name = 'ngx_social' "
        . "AND NOT s.ssl");
    my $ssl = psql_tls("SELECT count(*) FROM pg_stat_activity a JOIN "
        . "pg_stat_ssl s USING (pid) WHERE a.application_name = 'ngx_social' "
        . "AND s.ssl AND s.version IN ('TLSv1.2', 'TLSv1.3')");
    ok($ssl > 0, "the pool's connections use TLS ($ssl)");
    is($plain, 0, 'none without');

    local $ENV{TEST_NGINX_PG_DATA} = $ENV{TEST_NGINX_PG_TLS_DATA};
    local $ENV{TEST_NGINX_PG_LOG} = $ENV{TEST_NGINX_PG_TLS_LOG};
    local $ENV{TEST_NGINX_PG_OPTS} = $ENV{TEST_NGINX_PG_TLS_OPTS};
    pg_server('stop');
    pg_server('start');
    ok(wait_until(sub { (api('POST', '/v1/posts', { text => 'again' },
                             $u->{auth}))[0] == 201 }, 10),
       'after a restart of PostgreSQL, connected again over TLS');
};

subtest 'the edge: TLS 1.2 and 1.3, HTTP/2, HSTS, intermediate ciphers' => sub {
    my ($rc, $out) = curl('--http2', '-o', '/dev/null', '-w',
                          '%{http_version}');
    is("$rc $out", '0 2', 'HTTP/2 over TLS, the certificate verified');
    ($rc, $out) = curl('-D', '-', '-o', '/dev/null');
    like($out, qr/^strict-transport-security: max-age=63072000\r?$/mi,
         'HSTS for two years');
    ($rc, $out) = curl('--tlsv1.3', '-o', '/dev/null', '-w', '%{http_code}');
    is("$rc $out", '0 200', 'TLS 1.3');
    ($rc, $out) = curl('--tlsv1.2', '--tls-max', '1.2', '-o', '/dev/null',
                       '-w', '%{http_code}');
    is("$rc $out", '0 200', 'TLS 1.2');
    is(handshake('-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'),
       'ECDHE-ECDSA-AES128-GCM-SHA256', 'an AEAD cipher of the profile');
    is(handshake('-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA'), '',
       'a CBC cipher is refused');
    is(handshake('-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA384'), '',
       'a SHA-2 CBC cipher too');
};

subtest 'the API and the stream over https and wss' => sub {
    my $http = HTTP::Tiny->new(timeout => 10, verify_SSL => 1,
                               SSL_options => { SSL_ca_file => $ca });
    my $u = new_user('tlsapi');
    my $r = $http->get("https://localhost:$https/v1/users/me",
                       { headers => $u->{auth} });
    is($r->{status}, 200, 'GET /v1/users/me over https');
    is(eval { $json->decode($r->{content})->{id} }, $u->{id}, 'the user');
    $r = $http->get("https://localhost:$https/nowhere");
    is($r->{status}, 404, 'an unknown path');
    like($r->{content}, qr/"error"/, 'in the JSON error shape');

    my $ws = Social::Stream->ws(token => $u->{token}, port => $https,
                                tls => $ca);
    is($ws->status, 101, 'wss:// upgrade');
    ok($ws->accept_ok, 'Sec-WebSocket-Accept');
    my $v = new_user('tlsfan');
    api('POST', "/v1/users/$u->{id}/follow", undef, $v->{auth});
    my $ev = $ws->event(5);
    is($ev && $ev->{event}, 'notification.created', 'an event over wss://');
    $ws->close;

    my $sse = Social::Stream->sse(token => $u->{token}, port => $https,
                                  tls => $ca);
    is($sse->status, 200, 'SSE over https');
    $sse->close;
    ok(wait_until(sub { (api('GET', '/metrics'))[3]
                        =~ /^social_streams_open 0$/m }, 10),
       'both streams closed');
};

stop_nginx();

subtest 'PostgreSQL: a certificate of another CA is refused' => sub {
    my $dir = tempdir(CLEANUP => 1);
    system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
           . "-nodes -keyout $dir/ca.key -out $dir/ca.crt -days 1 "
           . "-subj /CN=other >/dev/null 2>&1") == 0 or die 'openssl';
    start_nginx(unready => 1, replace => pg_tls_conninfo(
        "sslmode=verify-full sslrootcert=$dir/ca.crt"));
    ok(wait_until(sub { grep { /certificate verify failed/ }
                       error_log_since() }, 8),
       'the error log says why');
    is((api('GET', '/readyz'))[0], 503, 'not ready');
    stop_nginx();
};

subtest 'PostgreSQL: no connection without TLS' => sub {
    start_nginx(unready => 1, replace => pg_tls_conninfo('sslmode=disable'));
    ok(wait_until(sub { grep { /no encryption/ } error_log_since() }, 8),
       'the server refuses it');
    is((api('GET', '/readyz'))[0], 503, 'not ready');
    stop_nginx();
};

done_testing();
