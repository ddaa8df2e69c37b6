# The core runtime: routing, JSON errors for everything (nginx's own
# included), request bodies and request ids.

use Test::Nginx::Socket 'no_plan';

use FindBin;
use lib "$FindBin::Bin/common";
use Social::Blocks;

run_tests();

__DATA__

=== TEST 1: /healthz answers JSON
--- request
GET /healthz
--- error_code: 200
--- response_headers
Content-Type: application/json; charset=utf-8
--- response_body chomp
{"status":"ok"}



=== TEST 2: HEAD /healthz has the headers and no body
--- request
HEAD /healthz
--- error_code: 200
--- response_headers
Content-Type: application/json; charset=utf-8
--- response_body



=== TEST 3: an unknown path is a JSON 404
--- request
GET /v1/nothing/here
--- error_code: 404
--- response_headers
Content-Type: application/json; charset=utf-8
--- response_body_like chomp
^\{"error":\{"code":"not_found","message":"[^"]+","request_id":"[0-9a-f]{32}"\}\}$



=== TEST 4: a path that differs only by a trailing slash is unknown
--- request
GET /healthz/
--- error_code: 404
--- response_body_like chomp
"code":"not_found"



=== TEST 5: a wrong method is 405 with Allow
--- request
DELETE /healthz
--- error_code: 405
--- response_headers
Allow: GET, HEAD
Content-Type: application/json; charset=utf-8
--- response_body_like chomp
^\{"error":\{"code":"method_not_allowed",



=== TEST 6: a body over 1 MiB is 413 JSON, refused before it is read
--- request eval
"POST /t/pg/echo\n" . ("x" x (1024 * 1024 + 1))
--- error_code: 413
--- response_headers
Content-Type: application/json; charset=utf-8
--- response_body_like chomp
^\{"error":\{"code":"payload_too_large",
--- error_log
client intended to send too large body
--- no_error_log
[alert]
[crit]



=== TEST 7: a body of exactly 1 MiB is read and parsed
--- request eval
"POST /t/pg/echo\n" . '{"text":"' . ("a" x (1024 * 1024 - 11)) . '"}'
--- error_code: 200
--- response_body_like chomp
^\{"bigint":null,"text":"a+","bool":null,



=== TEST 8: malformed JSON is 400 invalid_json
--- request
POST /t/pg/echo
{"text": "unterminated
--- error_code: 400
--- response_body_like chomp
^\{"error":\{"code":"invalid_json","message":"malformed JSON



=== TEST 9: invalid UTF-8 is 400 invalid_json
--- request eval
"POST /t/pg/echo\n{\"text\": \"\xff\xfe\"}"
--- error_code: 400
--- response_body_like chomp
"code":"invalid_json"



=== TEST 10: overlong UTF-8 is 400 invalid_json
--- request eval
"POST /t/pg/echo\n{\"text\": \"\xc0\xaf\"}"
--- error_code: 400
--- response_body_like chomp
"code":"invalid_json"



=== TEST 11: an escaped lone surrogate is 400 invalid_json
--- request
POST /t/pg/echo
{"text": "\ud800"}
--- error_code: 400
--- response_body_like chomp
"code":"invalid_json"



=== TEST 12: an empty body where one is required is 400
--- request
POST /t/pg/echo
--- error_code: 400
--- response_body_like chomp
"code":"invalid_json","message":"a JSON body is required"



=== TEST 13: JSON that is not an object is 422 with fields
--- request
POST /t/pg/echo
[1, 2, 3]
--- error_code: 422
--- response_body_like chomp
^\{"error":\{"code":"validation_failed","message":"[^"]+","request_id":"[0-9a-f]{32}","fields":\{"body":"must be an object"\}\}\}$



=== TEST 14: duplicate keys are refused
--- request
POST /t/pg/echo
{"text": "a", "text": "b"}
--- error_code: 400
--- response_body_like chomp
"code":"invalid_json"



=== TEST 15: a sane client X-Request-Id is echoed, in the body too
--- request
GET /nothing
--- more_headers
X-Request-Id: abc.DEF_1:2-3
--- error_code: 404
--- response_headers
X-Request-Id: abc.DEF_1:2-3
--- response_body_like chomp
"request_id":"abc\.DEF_1:2-3"



=== TEST 16: an insane X-Request-Id is replaced
--- request
GET /healthz
--- more_headers
X-Request-Id: bad id with spaces
--- response_headers_like
X-Request-Id: [0-9a-f]{32}



=== TEST 17: an X-Request-Id over 128 characters is replaced
--- request eval
"GET /healthz"
--- more_headers eval
"X-Request-Id: " . ("a" x 129)
--- response_headers_like
X-Request-Id: [0-9a-f]{32}



=== TEST 18: an X-Request-Id of exactly 128 characters is echoed
--- request
GET /healthz
--- more_headers eval
"X-Request-Id: " . ("a" x 128)
--- response_headers eval
"X-Request-Id: " . ("a" x 128)



=== TEST 19: each response gets its own id
--- pipelined_requests eval
["GET /healthz", "GET /healthz"]
--- error_code eval
[200, 200]
--- response_headers_like eval
["X-Request-Id: [0-9a-f]{28}0001", "X-Request-Id: [0-9a-f]{28}0002"]



=== TEST 20: nginx's own 400 for a malformed request is JSON
--- raw_request eval
"GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: again\r\n\r\n"
--- error_code: 400
--- response_headers
Content-Type: application/json; charset=utf-8
--- response_body_like chomp
^\{"error":\{"code":"bad_request",
--- no_error_log
[alert]
[crit]



=== TEST 21: an error from a proxied upstream (502) is JSON
--- config
error_page 400 401 403 404 405 408 413 414 494 500 502 503 504 @social_error;
location @social_error { social_error_page; }
location = /up { proxy_pass http://127.0.0.1:1; }
--- request
GET /up
--- error_code: 502
--- response_headers
Content-Type: application/json; charset=utf-8
--- response_body_like chomp
^\{"error":\{"code":"bad_gateway",
--- error_log
connect() failed
--- no_error_log
[alert]
[crit]



=== TEST 22: valid JSON that is not an object (a string, a number) is 422
--- request eval
["POST /t/pg/echo\n\"text\"", "POST /t/pg/echo\n42", "POST /t/pg/echo\nnull"]
--- error_code eval
[422, 422, 422]
--- response_body_like eval
[qr/"code":"validation_failed"/, qr/"code":"validation_failed"/, qr/"code":"validation_failed"/]



=== TEST 23: /readyz is 200 when PostgreSQL and Redis answer
--- http_config eval
qq{social_pg_conninfo "host=127.0.0.1 port=$ENV{TEST_NGINX_PG_PORT} dbname=social user=social";
social_redis_address 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};}
--- request
GET /readyz
--- error_code: 200
--- response_body chomp
{"status":"ok","postgresql":"ok","redis":"ok"}



=== TEST 24: /readyz names Redis when it does not answer
--- http_config eval
qq{social_pg_conninfo "host=127.0.0.1 port=$ENV{TEST_NGINX_PG_PORT} dbname=social user=social";
social_redis_address 127.0.0.1:1;}
--- request
GET /readyz
--- error_code: 503
--- response_body chomp
{"status":"unavailable","postgresql":"ok","redis":"down"}
--- no_error_log
[alert]
[crit]
