# The split deployment (conf/cluster/): the users part of the API through
# the gateway; a service instance reached directly believes no identity
# header; requests still answered with one instance of each service
# stopped; deploy to the other colour under a steady wrk load with no
# failed request; deploy refuses an unknown colour or a stopped cluster;
# the stream over WebSocket and SSE through the gateway, with events from
# the chat and the posts instances.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/common";

use File::Copy qw(copy);
use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);
use Social::Stream;
use Social::Test qw(wait_until redis_cli);

# instances: base+1..6, base+11..16; below the ephemeral port range, and
# apart for suites run side by side with their own TEST_NGINX_PORT
my $base = ($ENV{TEST_NGINX_PORT} || 1984) + 200;
my $gw = $base;
my $root = ($ENV{TEST_NGINX_SERVROOT} || "$ENV{PWD}/t/servroot") . '-cluster';
my $conf = "$root/conf";
my $json = JSON::PP->new->utf8->canonical;

# conf/cluster as it is, but limits that a load test does not reach
remove_tree($root);
make_path($conf);
for my $f (glob "$ENV{TEST_NGINX_CONF_DIR}/cluster/*") {
    copy($f, $conf) or die "$f: $!";
}
{
    open my $in, '<', "$conf/gateway.conf" or die $!;
    my $text = do { local $/; <$in> };
    close $in;
    $text =~ s/social_limit read .*;/social_limit read rate=1000r\/s burst=10000000;/
        or die 'no read limit';
    open my $out, '>', "$conf/gateway.conf" or die $!;
    print {$out} $text;
    close $out;
}

$ENV{CLUSTER_DIR} = "$root/run";
$ENV{CLUSTER_HTTP_PORT} = $gw;
$ENV{CLUSTER_PORT_BASE} = $base;
$ENV{CLUSTER_PG_PORT} = $ENV{TEST_NGINX_PG_PORT};
$ENV{CLUSTER_REDIS_PORT} = $ENV{TEST_NGINX_REDIS_PORT};
$ENV{CLUSTER_KEYS} = $ENV{TEST_NGINX_KEYS_DIR};
$ENV{CLUSTER_MODULES} = $ENV{TEST_NGINX_LOAD_MODULES};
$ENV{CLUSTER_NGINX} = $ENV{TEST_NGINX_BINARY} || 'nginx';

sub cluster { system('bash', "$conf/cluster.sh", @_) == 0 }

END { cluster('stop') if -d "$root/run" }

# req(PORT, METHOD, PATH, BODY?, HEADERS?) -> (status, JSON, headers)
sub req {
    my ($port, $method, $path, $body, $headers) = @_;
    my %h = %{ $headers || {} };
    my %args = (headers => \%h);
    if (defined $body) {
        $args{content} = $json->encode($body);
        $h{'Content-Type'} = 'application/json';
    }
    my $host = $port == $gw ? '127.0.0.1' : '127.0.0.2';
    my $r = HTTP::Tiny->new(timeout => 10, keep_alive => 0)
        ->request($method, "http://$host:$port$path", \%args);
    my $j = eval { $json->decode($r->{content}) };
    return ($r->{status}, $j, $r->{headers});
}

sub api { req($gw, @_) }

# buckets other tests left with their own limits
redis_cli('EVAL', "for _, k in ipairs(redis.call('KEYS', 'social:rl:*')) "
          . "do redis.call('DEL', k) end", 0);

ok(cluster('start'), 'the cluster starts: a gateway and both sets');

# the users part of the API, through the gateway
my ($st, $j, $h);
my $u = 'cl' . int(rand(1e6));
my $v = 'cv' . int(rand(1e6));
($st, my $me) = api('POST', '/v1/users', { username => $u,
    email => "$u\@example.com", password => 'correct horse' });
is($st, 201, 'register');
($st, my $other) = api('POST', '/v1/users', { username => $v,
    email => "$v\@example.com", password => 'correct horse' });
($st, my $t) = api('POST', '/oauth/token', { grant_type => 'password',
    username => $u, password => 'correct horse' });
is($st, 200, 'token');
my $auth = { Authorization => "Bearer $t->{access_token}" };

($st, $j, $h) = api('GET', '/v1/users/me', undef, $auth);
is($st, 200, 'me');
is($j->{id}, $me->{id}, 'the user');
ok(defined $h->{'ratelimit-limit'}, 'limited at the gateway');
like($h->{'x-request-id'}, qr/^[0-9a-f]{32}$/, 'a request id');

($st, $j) = api('PATCH', '/v1/users/me', { bio => 'through the gateway' },
                $auth);
is($j->{bio}, 'through the gateway', 'profile update');
($st, $j) = api('POST', "/v1/users/$other->{id}/follow", undef, $auth);
is_deeply([$st, $j->{following}], [200, JSON::PP::true], 'follow');
($st, $j) = api('GET', "/v1/users/\@$v/followers");
is($j->{items}[0]{id}, $me->{id}, 'followers');
($st, $j) = api('GET', "/v1/users/\@$v");
is($j->{followers_count}, 1, 'public profile');

($st, $j) = api('GET', '/v1/users/me');
is($st, 401, 'no token: 401');
($st, $j, $h) = api('GET', '/v1/users/me',
                    undef, { Authorization => "Bearer $t->{access_token}x" });
is($st, 401, 'a bad token: 401 at the gateway');
($st, $j) = api('GET', '/nowhere');
is_deeply([$st, $j->{error}{code}], [404, 'not_found'], 'unknown path');
($st, $j) = api('GET', '/v1/posts/1');
is($j->{error}{code}, 'not_found', 'posts paths reach a posts instance');

# a service instance reached directly trusts no identity header
my $users1 = $base + 1;
for my $forged ({ 'X-User-Id' => $me->{id} },
                { 'X-Social-User-Id' => $me->{id},
                  'X-Forwarded-User' => $u, 'X-Remote-User' => $u }) {
    ($st, $j) = req($users1, 'GET', '/v1/users/me', undef, $forged);
    is($st, 401, 'direct, forged identity header: 401');
    ok(!defined $j->{email}, 'nothing of the user');
}
($st) = req($users1, 'PATCH', '/v1/users/me', { bio => 'forged' },
            { 'X-User-Id' => $me->{id} });
is($st, 401, 'direct, forged identity header: no write');
($st, $j) = api('GET', "/v1/users/\@$u");
is($j->{bio}, 'through the gateway', 'nothing changed');
($st, $j) = req($users1, 'GET', '/v1/users/me', undef, $auth);
is_deeply([$st, $j->{id}], [200, $me->{id}],
          'direct, with the token: verified by the instance itself');

# the stream through the gateway: WebSocket and SSE, events from a chat
# instance (a message) and from a posts instance (a mention)
{
    my (undef, $tv) = api('POST', '/oauth/token', { grant_type => 'password',
        username => $v, password => 'correct horse' });
    my $ws = Social::Stream->ws(port => $gw, token => $tv->{access_token});
    is($ws->status, 101, 'stream through the gateway: WebSocket 101');
    ok($ws->accept_ok, 'the handshake passed through');
    my $sse = Social::Stream->sse(port => $gw, token => $tv->{access_token});
    is($sse->status, 200, 'stream through the gateway: SSE 200');
    my $mine = Social::Stream->ws(port => $gw, token => $t->{access_token});

    my ($s1, $c) = api('POST', '/v1/conversations',
                       { member_ids => [$other->{id}] }, $auth);
    ok($s1 == 200 || $s1 == 201, 'a direct conversation');
    my ($s2, $m) = api('POST', "/v1/conversations/$c->{id}/messages",
                       { text => 'through the gateway' }, $auth);
    is($s2, 201, 'a message');
    my ($ev) = grep { $_->{event} eq 'message.created' }
        map { $ws->event(5) || () } 1 .. 2;
    is($ev && $ev->{data}{id}, $m->{id}, 'the message on the WebSocket');
    my ($sev) = grep { $_->{event} eq 'message.created' }
        map { $sse->event(5) || () } 1 .. 2;
    is($sev && $sev->{data}{id}, $m->{id}, 'the message on the SSE stream');

    my $tv_auth = { Authorization => "Bearer $tv->{access_token}" };
    my ($s3, $p) = api('POST', '/v1/posts', { text => "hello \@$u" },
                       $tv_auth);
    is($s3, 201, 'a post mentioning the other user');
    my $n;
    for (1 .. 4) {
        my $e = $mine->event(5) or last;
        next unless $e->{event} eq 'notification.created'
            && $e->{data}{type} eq 'mention';
        $n = $e;
        last;
    }
    is($n && $n->{data}{post_id}, $p->{id},
       'the mention from a posts instance on the stream');
    $_->close for $ws, $sse, $mine;
}

# one instance of each service stopped
for my $i (1, 3, 5) {
    my $pid = `cat $root/run/blue-$i/nginx.pid`;
    kill 'QUIT', $pid;
    wait_until(sub { !kill 0, $pid }, 10);
}
my @st = map { (api('GET', '/v1/users/me', undef, $auth))[0] } 1 .. 10;
is_deeply(\@st, [(200) x 10], 'users: every request answered');
($st) = api('POST', '/oauth/token', { grant_type => 'password',
    username => $u, password => 'correct horse' });
is($st, 200, 'a write answered too (the refused connection is retried)');
@st = map { (api('GET', '/v1/posts/1'))[0] } 1 .. 4;
is_deeply(\@st, [(404) x 4], 'posts: answered by the other instance');
@st = map { (api('GET', '/v1/conversations/999999999', undef, $auth))[0] }
    1 .. 4;
is_deeply(\@st, [(404) x 4], 'chat: answered by the other instance');

# blue-green under load: wrk on a proxied route while deploy switches.
# A connection per request: an exiting nginx worker closes its idle
# kept-alive connections at once, and a request a client sent on one in
# that instant gets no answer (wrk counts a read error, a browser sends it
# again); docs/PERFORMANCE.md has the figures of both kinds of load.
open my $lua, '>', "$root/auth.lua" or die $!;
print {$lua} "wrk.headers[\"Authorization\"] = \"Bearer $t->{access_token}\"\n",
             "wrk.headers[\"Connection\"] = \"close\"\n";
close $lua;

my $wrk_pid = open(my $wrk, '-|', 'wrk', '-t1', '-c8', '-d6s', '-s',
                   "$root/auth.lua", "http://127.0.0.1:$gw/v1/users/\@$u")
    or die "wrk: $!";
sleep 2;
ok(cluster('deploy', 'green'), 'deploy green');
my $out = do { local $/; <$wrk> };
close $wrk;
my ($requests) = $out =~ /(\d+) requests in/;
ok($requests && $requests > 100, "wrk ran ($requests requests)");
unlike($out, qr/Socket errors/, 'no socket error') or diag($out);
unlike($out, qr/Non-2xx/, 'no failed response') or diag($out);
note($out);

is(`cat $root/run/live`, "green\n", 'green is live');
ok(kill(0, `cat $root/run/blue-2/nginx.pid`), 'blue stands by');
($st, $j) = api('GET', '/v1/users/me', undef, $auth);
is_deeply([$st, $j->{id}], [200, $me->{id}], 'answered by green');
ok(cluster('deploy', 'green'), 'deploying the live colour does nothing');

ok(!cluster('deploy', 'purple'), 'an unknown colour fails');
{
    local $ENV{CLUSTER_DIR} = "$root/none";
    ok(!cluster('deploy', 'blue'), 'a cluster that is not running: fails');
}

ok(cluster('stop'), 'stop');
ok(!glob("$root/run/*/nginx.pid"), 'everything stopped');

done_testing();
