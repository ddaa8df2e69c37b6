# /metrics: every line is valid Prometheus text exposition, families are
# whole, and the request figures count exactly what was sent (by route
# and status, across both workers, errors and plain locations included);
# per-worker CPU and memory; the JSON access log names the route.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use IO::Socket::INET;
use JSON::PP;
use Test::More;
use Social::Test;

start_nginx(workers => 2, server => <<'EOF');
    access_log logs/social.log social_json;

    location /static/ {
        social_metrics_route static;
        return 200 "static\n";
    }

    location /plain/ {
        return 204;
    }

    location /quiet/ {
        social_metrics_route off;
        return 204;
    }
EOF

# metrics() -> (text, { "name{labels}" => value })
sub metrics {
    my ($st, undef, $h, $body) = api('GET', '/metrics');
    is($st, 200, 'GET /metrics');
    my %v;
    for (split /\n/, $body) {
        next if /^#/;
        my ($k, $val) = /^(\S+) (\S+)$/ or next;
        $v{$k} = $val;
    }
    return ($body, \%v, $h);
}

# the Prometheus text format, line by line, and whole families
sub valid_exposition {
    my ($text) = @_;
    my (%type, %seen, @bad, $current);
    my $name = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
    my $value = qr/-?(?:[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|\+Inf|NaN)/;
    my $labels = qr/\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"
                     (?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\}/x;
    for my $line (split /\n/, $text) {
        if ($line =~ /^# HELP ($name) \S/) {
            next;
        }
        if ($line =~ /^# TYPE ($name) (counter|gauge|histogram)$/) {
            push @bad, "second TYPE: $line" if $type{$1}++;
            $current = $1;
            next;
        }
        if ($line =~ /^($name)($labels)? ($value)$/) {
            my $family = $1;
            $family =~ s/_(bucket|sum|count)$//
                if !$type{$family} && $type{$family =~ s/_(bucket|sum|count)$//r};
            push @bad, "no TYPE before: $line" unless $type{$family};
            push @bad, "family split: $line"
                if $seen{$family} && $family ne ($current // '');
            $seen{$family} = 1;
            $current = $family;
            next;
        }
        push @bad, "malformed: $line";
    }
    ok(!@bad, 'every line is valid exposition format') or diag(join "\n", @bad);
}

my @sent = (
    (['GET', '/healthz', 200]) x 3,
    (['GET', '/v1/users/@nobody_metrics', 404]) x 2,
    ['GET', '/v1/nothing', 404],
    ['DELETE', '/healthz', 405],
    (['GET', '/static/a', 200]) x 4,
    (['GET', '/plain/b', 204]) x 2,
    ['GET', '/quiet/c', 204],
);

# spread over both workers: concurrent connections
my @st = parallel(scalar @sent, sub {
    my ($m, $p) = @{ $sent[shift] };
    return (api($m, $p))[0];
});
is_deeply(\@st, [map { $_->[2] } @sent], 'the requests were answered');

# a body over 1 MiB, refused on its Content-Length before it is sent
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . nginx_port())
    or die "connect: $!";
print {$sock} "POST /v1/users HTTP/1.1\r\nHost: localhost\r\n"
    . "Content-Length: 2000000\r\nConnection: close\r\n\r\n";
my $status = <$sock>;
close $sock;
like($status, qr{^HTTP/1\.1 413}, 'a body over 1 MiB refused');

my ($text, $v, $h) = metrics();
like($h->{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'content type');
valid_exposition($text);

is($v->{'social_http_requests_total{route="/healthz",status="200"}'}, 3,
   '/healthz 200 three times');
is($v->{'social_http_requests_total{route="/healthz",status="405"}'}, 1,
   'a wrong method counts under the path\'s route');
is($v->{'social_http_requests_total{route="/v1/users/{id}",status="404"}'},
   2, 'a route pattern, not the path');
is($v->{'social_http_requests_total{route="unmatched",status="404"}'}, 1,
   'a path of no route');
is($v->{'social_http_requests_total{route="static",status="200"}'}, 4,
   'a named plain location');
is($v->{'social_http_requests_total{route="other",status="204"}'}, 2,
   'an unnamed plain location');
ok(!grep({ /status="204"/ && !/route="other"/ } keys %$v),
   'social_metrics_route off is not counted');
is($v->{'social_http_requests_total{route="/v1/users",status="413"}'}, 1,
   'an error page counts under the API route of the path');

is($v->{'social_http_request_duration_seconds_count{route="static"}'}, 4,
   'histogram count');
is($v->{'social_http_request_duration_seconds_bucket{route="static",le="+Inf"}'},
   4, '+Inf bucket is the count');
my @b = map { $v->{"social_http_request_duration_seconds_bucket{route=\"static\",le=\"$_\"}"} }
        qw(0.001 0.005 0.1 1 10 +Inf);
is_deeply([sort { $a <=> $b } @b], \@b, 'buckets are cumulative');
ok(defined $v->{'social_http_request_duration_seconds_sum{route="static"}'},
   'histogram sum');
is($v->{'social_http_errors_total{route="/healthz"}'}, 0, 'no 5xx');

for my $w (0, 1) {
    my $cpu = 0;
    $cpu += $v->{"social_worker_cpu_seconds_total{worker=\"$w\",mode=\"$_\"}"}
        for qw(user system);
    ok($cpu > 0, "worker $w CPU time");
    ok($v->{"social_worker_resident_memory_bytes{worker=\"$w\"}"} > 1e6,
       "worker $w resident memory");
}
ok(defined $v->{'social_pg_connections{state="idle"}'}, 'pool figures');
ok(defined $v->{'social_streams_open'}, 'open streams');

# the Grafana dashboards use only names /metrics has
my %family = map { $_ => 1 } $text =~ /^# TYPE (\S+)/mg;
for my $d (qw(overview performance)) {
    open my $g, '<', "$ENV{TEST_NGINX_CONF_DIR}/grafana/$d.json" or die $!;
    my $json = decode_json(do { local $/; <$g> });
    close $g;
    my @names = map { /\b(social_[a-z_]+)/g }
                map { $_->{expr} } map { @{ $_->{targets} } }
                @{ $json->{panels} };
    my @unknown = grep { !$family{$_} && !$family{s/_(bucket|sum|count)$//r} }
                  @names;
    ok(@names && !@unknown, "dashboard $d uses metrics that exist")
        or diag("unknown: @unknown");
}

# the figures of both workers: a scrape sees every earlier one (it is
# counted itself once it is logged)
my $v2;
(undef, $v2) = metrics() for 1 .. 4;
is($v2->{'social_http_requests_total{route="/metrics",status="200"}'}, 4,
   'every scrape counted, whichever worker served it');

# the JSON access log
my $root = $ENV{TEST_NGINX_SERVROOT} ? "$ENV{TEST_NGINX_SERVROOT}-flow"
                                     : "$ENV{PWD}/t/servroot-flow";
wait_until(sub { -s "$root/logs/social.log" });
open my $fh, '<', "$root/logs/social.log" or die $!;
my @log = map { decode_json($_) } <$fh>;
close $fh;
my ($line) = grep { $_->{uri} eq '/v1/users/@nobody_metrics' } @log;
is($line->{route}, '/v1/users/{id}', 'access log: route');
is($line->{status}, 404, 'access log: status');
like($line->{request_id}, qr/^[0-9a-f]{32}$/, 'access log: request id');
ok(exists $line->{user_id} && exists $line->{upstream_time},
   'access log: user id and upstream time');

stop_nginx();
done_testing();
