# The Redis adapter, one request at a time, against the suite's Redis
# ($TEST_NGINX_REDIS_PORT) through the test module's /t/redis/ routes:
# binary and empty values, reply types, MULTI/EXEC, pipelines, EVALSHA
# with the EVAL fallback, pub/sub without listeners, the handshake (ACL
# user, database, a refused AUTH), the command timeout, a disabled adapter,
# a refused port and a connect timeout.  Concurrency and outages are in
# 031-redis-live.t.

use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;

# a port nothing listens on
{
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die "no free port: $!";
    $ENV{TEST_NGINX_REDIS_DEAD_PORT} = $s->sockport;
    close $s;
}

# a listener whose accept queue is full: connects to it hang (the SYN is
# dropped), filled by our own connections until one of them hangs
our ($BlackHole, @BlackHoleClients);
$BlackHole = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 1) or die "listen: $!";
$ENV{TEST_NGINX_REDIS_HOLE_PORT} = $BlackHole->sockport;
for (1 .. 16) {
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $BlackHole->sockport,
                                  Timeout => 0.3)
        or last;
    push @BlackHoleClients, $c;
}

# an ACL user for the AUTH user password handshake
sub redis_command {
    my (@args) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_REDIS_PORT},
                                  Timeout => 3)
        or die "cannot connect to Redis: $!";
    print $s join '', '*', scalar @args, "\r\n",
        map { '$' . length($_) . "\r\n$_\r\n" } @args;
    my $line = <$s>;
    close $s;
    return $line;
}

redis_command(qw(ACL SETUSER t030user reset on >t030secret ~* &* +@all))
    =~ /^\+OK/ or die "ACL SETUSER failed";

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value('http_config',
            "social_redis_address 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n");
    }

    if (!defined $block->config) {
        $block->set_value('config', "location /t/ { social_api; }\n");
    }

    if (!defined $block->error_log && !defined $block->no_error_log) {
        $block->set_value('no_error_log', "[error]\n[alert]\n[crit]\n");
    }
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a value with NUL and control bytes round-trips
--- request eval
[
'POST /t/redis/cmd
{"argv": ["DEL", "t030:bin"]}',
'POST /t/redis/cmd
{"argv": ["SET", "t030:bin", "a\u0000b\u0001c\r\n$3"]}',
'POST /t/redis/cmd
{"argv": ["GET", "t030:bin"]}',
'POST /t/redis/cmd
{"argv": ["STRLEN", "t030:bin"]}',
]
--- response_body eval
[
qq{{"reply":0}},
qq{{"reply":{"status":"OK"}}},
qq{{"reply":"a\\u0000b\\u0001c\\r\\n\$3"}},
qq{{"reply":9}},
]



=== TEST 2: bytes that are not UTF-8 (base64 in and out), in keys too
--- request eval
[
'POST /t/redis/cmd
{"argv": ["SET", {"b64": "dDAzMDr/AA=="}, {"b64": "AP8BgA=="}]}',
'POST /t/redis/cmd
{"argv": ["GET", {"b64": "dDAzMDr/AA=="}]}',
'POST /t/redis/cmd
{"argv": ["STRLEN", {"b64": "dDAzMDr/AA=="}]}',
'POST /t/redis/cmd
{"argv": ["GETRANGE", {"b64": "dDAzMDr/AA=="}, 1, 1]}',
]
--- response_body eval
[
qq{{"reply":{"status":"OK"}}},
qq{{"reply":{"b64":"AP8BgA=="}}},
qq{{"reply":4}},
qq{{"reply":{"b64":"/w=="}}},
]



=== TEST 3: empty values and an empty key
--- request eval
[
'POST /t/redis/cmd
{"argv": ["SET", "t030:empty", ""]}',
'POST /t/redis/cmd
{"argv": ["GET", "t030:empty"]}',
'POST /t/redis/cmd
{"argv": ["EXISTS", "t030:empty"]}',
'POST /t/redis/cmd
{"argv": ["SET", "", "under the empty key"]}',
'POST /t/redis/cmd
{"argv": ["GET", ""]}',
'POST /t/redis/cmd
{"argv": ["DEL", "", "t030:empty"]}',
'POST /t/redis/cmd
{"argv": ["GET", "t030:empty"]}',
]
--- response_body eval
[
qq{{"reply":{"status":"OK"}}},
qq{{"reply":""}},
qq{{"reply":1}},
qq{{"reply":{"status":"OK"}}},
qq{{"reply":"under the empty key"}},
qq{{"reply":2}},
qq{{"reply":null}},
]



=== TEST 4: reply types: nil, integer, error, nested arrays
--- request eval
[
'POST /t/redis/cmd
{"argv": ["DEL", "t030:list"]}',
'POST /t/redis/cmd
{"argv": ["RPUSH", "t030:list", "x", "", "z"]}',
'POST /t/redis/cmd
{"argv": ["LRANGE", "t030:list", 0, -1]}',
'POST /t/redis/cmd
{"argv": ["INCR", "t030:list"]}',
'POST /t/redis/cmd
{"argv": ["EVAL", "return {1, {2, \"two\"}, false}", 0]}',
'POST /t/redis/cmd
{"argv": ["NOSUCHCOMMAND", "x"]}',
]
--- response_body eval
[
qr/^\{"reply":[01]\}$/,
qq{{"reply":3}},
qq{{"reply":["x","","z"]}},
qq{{"reply":{"error":"WRONGTYPE Operation against a key holding the wrong kind of value"}}},
qq{{"reply":[1,[2,"two"],null]}},
qr/^\{"reply":\{"error":"ERR unknown command 'NOSUCHCOMMAND'/,
]



=== TEST 5: user data is never a format string
--- request eval
[
'POST /t/redis/cmd
{"argv": ["SET", "t030:fmt %s %b %d", "%s%s%s%n \r\n*1\r\n$4\r\nPING"]}',
'POST /t/redis/cmd
{"argv": ["GET", "t030:fmt %s %b %d"]}',
]
--- response_body eval
[
qq{{"reply":{"status":"OK"}}},
qq{{"reply":"%s%s%s%n \\r\\n*1\\r\\n\$4\\r\\nPING"}},
]



=== TEST 6: MULTI/EXEC: the handler gets EXEC's reply
--- request eval
[
'POST /t/redis/multi
{"commands": [["SET", "t030:tx", 5], ["INCR", "t030:tx"],
              ["INCRBY", "t030:tx", 10], ["GET", "t030:tx"]]}',
'POST /t/redis/multi
{"commands": [["SET", "t030:tx", "text"], ["INCR", "t030:tx"],
              ["GET", "t030:tx"]]}',
'POST /t/redis/multi
{"commands": [["SET", "t030:tx", 1], ["NOSUCHCOMMAND"]]}',
'POST /t/redis/cmd
{"argv": ["GET", "t030:tx"]}',
]
--- response_body eval
[
qq{{"reply":[{"status":"OK"},6,16,"16"]}},
qq{{"reply":[{"status":"OK"},{"error":"ERR value is not an integer or out of range"},"text"]}},
qr/^\{"reply":\{"error":"EXECABORT /,
qq{{"reply":"text"}},
]



=== TEST 7: EVALSHA falls back to EVAL on NOSCRIPT, then the script is loaded
--- request eval
[
'POST /t/redis/cmd
{"argv": ["DEL", "t030:eval"]}',
'POST /t/redis/cmd
{"argv": ["SCRIPT", "FLUSH"]}',
'POST /t/redis/cmd
{"argv": ["SCRIPT", "EXISTS", "c79e4384ae2352bd9f80228d59b78b274fbb242f"]}',
'POST /t/redis/eval
{"keys": ["t030:eval"], "args": ["a\u0000b"]}',
'POST /t/redis/cmd
{"argv": ["SCRIPT", "EXISTS", "c79e4384ae2352bd9f80228d59b78b274fbb242f"]}',
'POST /t/redis/eval
{"keys": ["t030:eval"], "args": [""]}',
]
--- response_body eval
[
qr/^\{"reply":[01]\}$/,
qq{{"reply":{"status":"OK"}}},
qq{{"reply":[0]}},
qq{{"sha1":"c79e4384ae2352bd9f80228d59b78b274fbb242f","reply":["t030:eval","a\\u0000b",1]}},
qq{{"reply":[1]}},
qq{{"sha1":"c79e4384ae2352bd9f80228d59b78b274fbb242f","reply":["t030:eval","",2]}},
]



=== TEST 8: the command connection refuses pub/sub commands
--- request eval
[
'POST /t/redis/cmd
{"argv": ["SUBSCRIBE", "t030:ch"]}',
'POST /t/redis/cmd
{"argv": ["psubscribe", "t030:*"]}',
'POST /t/redis/cmd
{"argv": ["PING"]}',
]
--- error_code eval
[500, 500, 200]
--- response_body eval
[
qr/"code":"internal_error"/,
qr/"code":"internal_error"/,
qq{{"reply":{"status":"PONG"}}},
]



=== TEST 9: publish without listeners; a listener that times out (its subscription went live: one resync)
--- request eval
[
'POST /t/redis/publish
{"channel": "t030:nobody", "message": "hello"}',
'GET /t/redis/listen?channel=t030:quiet&timeout=200',
'POST /t/redis/cmd
{"argv": ["PUBSUB", "NUMSUB", "t030:quiet"]}',
'GET /t/redis/status',
]
--- error_code eval
[200, 504, 200, 200]
--- response_body eval
[
qr/^\{"receivers":0,"pid":\d+\}$/,
qr/^\{"error":\{"code":"timeout","message":"no message before the timeout","pid":\d+,"resyncs":1\}\}$/,
qq{{"reply":["t030:quiet",0]}},
qr/"connected":true,"subscriber":true,.*"channels":0,"listeners":0\}$/,
]



=== TEST 10: handshake with an ACL user and a database
--- http_config
    social_redis_address 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    social_redis_user t030user;
    social_redis_password t030secret;
    social_redis_database 3;
--- request eval
[
'POST /t/redis/cmd
{"argv": ["ACL", "WHOAMI"]}',
'POST /t/redis/cmd
{"argv": ["CLIENT", "INFO"]}',
'POST /t/redis/publish
{"channel": "t030:acl", "message": "m"}',
'GET /t/redis/status',
]
--- response_body eval
[
qq{{"reply":"t030user"}},
qr/ db=3 .* user=t030user /,
qr/^\{"receivers":0,/,
qr/"connected":true,"subscriber":true,/,
]



=== TEST 11: a refused AUTH: commands fail fast, the error is logged once
--- http_config
    social_redis_address 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    social_redis_user t030user;
    social_redis_password wrong;
--- request eval
[
'POST /t/redis/cmd
{"argv": ["PING"]}',
'POST /t/redis/cmd
{"argv": ["PING"]}',
'GET /t/redis/status',
]
--- error_code eval
[503, 503, 200]
--- response_body eval
[
qr/"code":"redis_unavailable"/,
qr/"code":"redis_unavailable"/,
qr/^\{"connected":false,"subscriber":false,/,
]
--- error_log
command connection to "127.0.0.1:
failed: WRONGPASS invalid username-password pair
--- no_error_log
[alert]
[crit]



=== TEST 12: no reply within the command timeout: 503, the stalled connection is replaced
--- http_config
    social_redis_address 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    social_redis_command_timeout 800ms;
--- request eval
[
'POST /t/redis/cmd
{"argv": ["BLPOP", "t030:never", 3]}',
'POST /t/redis/cmd
{"argv": ["PING"]}',
'GET /t/redis/status',
]
--- error_code eval
[503, 200, 200]
--- response_body eval
[
qr/"code":"redis_unavailable"/,
qq{{"reply":{"status":"PONG"}}},
qr/^\{"connected":true,.*"errors":1,"timeouts":1,"reconnects":1,/,
]
--- error_log
social redis: no reply within 800 ms
command connection to "127.0.0.1:
lost: no reply in time, reconnecting
--- no_error_log
[alert]
[crit]



=== TEST 13: no social_redis_address: commands fail fast with a clear error
--- http_config
--- request eval
[
'POST /t/redis/cmd
{"argv": ["PING"]}',
'POST /t/redis/multi
{"commands": [["PING"]]}',
'POST /t/redis/eval
{"keys": [], "args": []}',
'GET /t/redis/status',
]
--- error_code eval
[503, 503, 503, 200]
--- response_body eval
[
qr/^\{"error":\{"code":"redis_unavailable","message":"Redis did not answer: down, timed out or not configured",/,
qr/"code":"redis_unavailable"/,
qr/"code":"redis_unavailable"/,
qr/^\{"connected":false,"subscriber":false,"pid":\d+,"commands":0,"errors":3,/,
]



=== TEST 14: nothing listens on the port: commands fail fast
--- http_config
    social_redis_address 127.0.0.1:$TEST_NGINX_REDIS_DEAD_PORT;
--- request eval
[
'POST /t/redis/cmd
{"argv": ["PING"]}',
'POST /t/redis/cmd
{"argv": ["PING"]}',
'GET /t/redis/listen?channel=t030:dead&timeout=100',
]
--- error_code eval
[503, 503, 504]
--- response_body eval
[
qr/"code":"redis_unavailable"/,
qr/"code":"redis_unavailable"/,
qr/"code":"timeout"/,
]
--- timeout: 2
--- error_log
command connection to "127.0.0.1:
subscriber connection to "127.0.0.1:
failed: Connection refused
--- no_error_log
[alert]
[crit]



=== TEST 15: a connect that hangs ends at the connect timeout
--- http_config
    social_redis_address 127.0.0.1:$TEST_NGINX_REDIS_HOLE_PORT;
    social_redis_connect_timeout 200ms;
    social_redis_command_timeout 5s;
--- request eval
[
'POST /t/redis/cmd
{"argv": ["PING"]}',
'POST /t/redis/cmd
{"argv": ["PING"]}',
'GET /t/redis/status',
]
--- error_code eval
[503, 503, 200]
--- response_body eval
[
qr/"code":"redis_unavailable"/,
qr/"code":"redis_unavailable"/,
qr/^\{"connected":false,/,
]
--- timeout: 2
--- error_log
failed: connect timed out
--- no_error_log
[alert]
[crit]



=== TEST 16: a unix socket address that does not exist fails fast
--- http_config
    social_redis_address unix:/nonexistent/t030-redis.sock;
--- request
POST /t/redis/cmd
{"argv": ["PING"]}
--- error_code: 503
--- response_body_like: "code":"redis_unavailable"
--- error_log
failed: No such file or directory
--- no_error_log
[alert]
[crit]



=== TEST 17: a name is resolved at configuration time
--- http_config
    social_redis_address localhost:$TEST_NGINX_REDIS_PORT;
--- request
POST /t/redis/cmd
{"argv": ["ECHO", "via localhost"]}
--- response_body chomp
{"reply":"via localhost"}



=== TEST 18: a malformed address stops the configuration
--- http_config
    social_redis_address 127.0.0.1:notaport;
--- request
GET /t/redis/status
--- must_die



=== TEST 19: a pipeline: every reply in order, errors and nils included
--- request eval
[
'POST /t/redis/pipeline
{"commands": [["SET", "t030:pipe", 5], ["INCR", "t030:pipe"],
              ["NOSUCHCOMMAND"], ["GET", "t030:nothing"],
              ["MGET", "t030:pipe", "t030:nothing"], ["GET", "t030:pipe"]]}',
'POST /t/redis/pipeline
{"commands": [["ECHO", ""]]}',
]
--- response_body eval
[
qr/^\{"replies":\[\{"status":"OK"\},6,\{"error":"ERR unknown command[^}]*\},null,\["6",null\],"6"\]\}$/,
qq{{"replies":[""]}},
]
--- no_error_log
[alert]
[crit]



=== TEST 20: a pipeline while Redis is away fails fast, as a whole
--- http_config
    social_redis_address unix:/nonexistent/t030-redis.sock;
--- request
POST /t/redis/pipeline
{"commands": [["PING"], ["PING"]]}
--- error_code: 503
--- response_body_like: "code":"redis_unavailable"
--- no_error_log
[alert]
[crit]
