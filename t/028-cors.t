# CORS: per origin list; preflights answered 204 before authentication,
# with the allowed methods and headers only for allowed origins; Vary:
# Origin wherever CORS is configured; nothing for other origins.

use Test::Nginx::Socket 'no_plan';

use FindBin;
use lib "$FindBin::Bin/common";
use Social::Blocks;

our $conf = <<'CONF';
social_cors_origins https://app.example.com http://localhost:3000;
error_page 400 401 403 404 405 408 413 414 494 500 502 503 504 @social_error;
location @social_error { social_error_page; }
location / {
    social_api;
}
location /files/ {
    social_auth required;
    social_cors_credentials on;
    social_cors_max_age 1h;
    social_cors_methods GET;
    return 200 "file\n";
}
location /nocors/ {
    social_cors_origins https://other.example.com;
    return 200 "x\n";
}
CONF

run_tests();

__DATA__

=== TEST 1: a preflight from an allowed origin: 204 with what it may do
--- config eval
$::conf
--- request
OPTIONS /v1/users/me
--- more_headers
Origin: https://app.example.com
Access-Control-Request-Method: PATCH
Access-Control-Request-Headers: authorization, content-type
--- error_code: 204
--- response_headers
Access-Control-Allow-Origin: https://app.example.com
Access-Control-Allow-Methods: GET, HEAD, POST, PUT, PATCH, DELETE
Access-Control-Allow-Headers: Authorization, Content-Type, Idempotency-Key, X-Request-Id, Last-Event-ID
Access-Control-Max-Age: 600
Vary: Origin
!Access-Control-Allow-Credentials
--- response_body



=== TEST 2: a preflight from another origin: no CORS headers
--- config eval
$::conf
--- request
OPTIONS /v1/users/me
--- more_headers
Origin: https://evil.example.com
Access-Control-Request-Method: PATCH
--- error_code: 204
--- response_headers
!Access-Control-Allow-Origin
!Access-Control-Allow-Methods
!Access-Control-Allow-Headers
Vary: Origin



=== TEST 3: an allowed origin's request: the origin, exposed headers, Vary
--- config eval
$::conf
--- request
GET /healthz
--- more_headers
Origin: http://localhost:3000
--- error_code: 200
--- response_headers
Access-Control-Allow-Origin: http://localhost:3000
Access-Control-Expose-Headers: X-Request-Id, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, Link
Vary: Origin
--- response_body chomp
{"status":"ok"}



=== TEST 4: another origin's request is answered without CORS headers
--- config eval
$::conf
--- request
GET /healthz
--- more_headers
Origin: https://evil.example.com
--- error_code: 200
--- response_headers
!Access-Control-Allow-Origin
!Access-Control-Expose-Headers
Vary: Origin



=== TEST 5: errors carry the headers too (the browser can read a 401)
--- config eval
$::conf
--- request
GET /v1/users/me
--- more_headers
Origin: https://app.example.com
--- error_code: 401
--- response_headers
Access-Control-Allow-Origin: https://app.example.com
Vary: Origin
--- response_body_like chomp
"code":"unauthorized"



=== TEST 6: a preflight is answered before social_auth; credentials, max-age
--- config eval
$::conf
--- request
OPTIONS /files/a
--- more_headers
Origin: https://app.example.com
Access-Control-Request-Method: GET
--- error_code: 204
--- response_headers
Access-Control-Allow-Origin: https://app.example.com
Access-Control-Allow-Credentials: true
Access-Control-Allow-Methods: GET
Access-Control-Max-Age: 3600



=== TEST 7: OPTIONS without Access-Control-Request-Method is no preflight
--- config eval
$::conf
--- request
OPTIONS /healthz
--- more_headers
Origin: https://app.example.com
--- error_code: 405
--- response_headers
Access-Control-Allow-Origin: https://app.example.com
!Access-Control-Allow-Methods



=== TEST 8: a location's own list replaces the server's
--- config eval
$::conf
--- request
GET /nocors/x
--- more_headers
Origin: https://app.example.com
--- error_code: 200
--- response_headers
!Access-Control-Allow-Origin
Vary: Origin



=== TEST 9: "*" allows any origin, answered with that origin
--- config
social_cors_origins *;
location / {
    social_api;
}
--- request
GET /healthz
--- more_headers
Origin: https://anything.example.org
--- error_code: 200
--- response_headers
Access-Control-Allow-Origin: https://anything.example.org



=== TEST 10: without social_cors_origins there is no CORS at all
--- config
location / {
    social_api;
}
--- request
OPTIONS /healthz
--- more_headers
Origin: https://app.example.com
Access-Control-Request-Method: GET
--- error_code: 405
--- response_headers
!Access-Control-Allow-Origin
!Vary
