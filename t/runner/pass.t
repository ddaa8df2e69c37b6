# Fixture for t/000-runner.t: every block must pass. Core nginx only.
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_shuffle();    # TEST 13 reuses the nginx of TEST 12

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('no_error_log', "[error]\n[alert]")
        unless defined $block->no_error_log || defined $block->error_log;
});

run_tests();

__DATA__

=== TEST 1: status, body and $TEST_NGINX_* expansion
--- http_config
map $uri $mapped { default "from-http-config"; }
--- config
location = /t {
    return 200 "hello $mapped port=$TEST_NGINX_SERVER_PORT my=$TEST_NGINX_MY_VAR\n";
}
--- request
GET /t
--- response_body
hello from-http-config port=$TEST_NGINX_SERVER_PORT my=runner-value



=== TEST 2: headers: exact, repeated, absent, like, raw
--- config
location = /h {
    add_header X-One one;
    add_header X-Rep a always;
    add_header X-Rep b always;
    return 201 "created\n";
}
--- request
GET /h
--- error_code: 201
--- response_headers
X-One: one
X-Rep: a, b
!X-Absent
Content-Type: text/plain
--- response_headers_like
Server: nginx(/[\d.]+)?
Content-Length: \d+
--- raw_response_headers_like: ^HTTP/1\.1 201 Created\r\n
--- raw_response_headers_unlike: Transfer-Encoding
--- response_body_like: ^creat
--- response_body_unlike: nope



=== TEST 3: request eval array with per-request expectations
--- config
location = /a { return 200 "a\n"; }
location = /b { return 404 "no b\n"; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 404]
--- response_body eval
["a\n", "no b\n"]



=== TEST 4: more_headers, Host, POST body with Content-Length
--- config
location = /echo {
    return 200 "foo=$http_x_foo host=$host len=$content_length conn=$http_connection\n";
}
--- request
POST /echo
hello world
--- more_headers
# a comment line
X-Foo: bar
--- response_body
foo=bar host=localhost len=11 conn=close



=== TEST 5: pipelined requests on one connection
--- config
location = /a { return 200 "a\n"; }
location = /b { return 200 "bb\n"; }
--- pipelined_requests eval
["GET /a", "GET /b", "HEAD /a"]
--- error_code eval
[200, 200, 200]
--- response_body eval
["a\n", "bb\n", ""]



=== TEST 6: raw_request in chunks with a middle delay
--- config
location = /r { return 200 "raw $request_method $server_protocol\n"; }
--- raw_request eval
["GET /r HTTP/1.0\r\n", "Host: x\r\n\r\n"]
--- raw_request_middle_delay: 0.01
--- response_body
raw GET HTTP/1.0



=== TEST 7: chunked response is de-chunked
--- config
location = /c {
    default_type text/html;
    sub_filter 'a' 'b';
    sub_filter_once off;
    return 200 "aaa\n";
}
--- request
GET /c
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
bbb



=== TEST 8: error_log, grep_error_log with expansion, no_error_log
--- config
--- request
GET /nope.txt
--- error_code: 404
--- error_log
No such file or directory
--- no_error_log
[alert]
[crit]
--- grep_error_log eval: qr/open\(\) "[^"]+" failed/
--- grep_error_log_out
open() "$TEST_NGINX_SERVER_ROOT/html/nope.txt" failed



=== TEST 9: user_files and response_body as a regex
--- config
--- user_files
>>> sub/file.txt
hello file
--- request
GET /sub/file.txt
--- response_body eval
qr/^hel+o file$/m



=== TEST 10: init runs before the requests
--- config
--- init
open my $fh, '>', "$ENV{TEST_NGINX_SERVER_ROOT}/html/init.txt" or die $!;
print $fh "from init\n";
close $fh;
--- request
GET /init.txt
--- response_body
from init



=== TEST 11: log_level section, main_config, post_main_config
--- main_config
worker_rlimit_nofile 1024;
--- post_main_config
# post main config comment
--- log_level: warn
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- no_error_log
[debug]
[info]



=== TEST 12: abort: a client timeout is expected and quiet
--- config
location = /slow { limit_rate_after 1; limit_rate 1; return 200 "hello world\n"; }
location = /fast { return 200 "fast\n"; }
--- request
GET /slow
--- timeout: 200ms
--- abort
--- ignore_response



=== TEST 13: a block without config reuses the running nginx
--- request
GET /fast
--- response_body
fast



=== TEST 14: shutdown, HEAD, HTTP/1.0 request line
--- config
location = /t { return 200 "$server_protocol\n"; }
--- request
GET /t HTTP/1.0
--- shutdown
--- response_body
HTTP/1.0



=== TEST 15: tcp_listen mock behind proxy_pass, with a random port
--- config
location = /m { proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1; }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
"HTTP/1.0 200 OK\r\nX-Mock: yes\r\n\r\nmocked\n"
--- tcp_query eval
qr{^GET /m HTTP/1\.0\r\n}
--- request
GET /m
--- response_headers
X-Mock: yes
--- response_body
mocked



=== TEST 16: wait, error_code_like, response_body_filters
--- config
location = /t { return 202 "abc\n"; }
--- request
GET /t
--- wait: 0.01
--- error_code_like: ^20[0-9]$
--- response_body_filters
uc
--- response_body
ABC



=== TEST 17: an [alert] line only warns
--- config
location = /t { return 200 "ok\n"; }
--- init
open my $fh, '>>', "$ENV{TEST_NGINX_SERVER_ROOT}/logs/error.log" or die $!;
print $fh "2024/01/01 00:00:00 [alert] 1#1: runner fake alert\n";
close $fh;
--- request
GET /t
--- response_body
ok
--- no_error_log
[error]



=== TEST 18: a kept-alive connection ends with the response; wide characters
--- config
location = /t { return 200 "x=$arg_x\n"; }
--- request eval
"GET /t?x=\x{263a}"
--- more_headers
Connection: keep-alive
--- response_body
x=☺
