# The chat routes at the HTTP level: a token is required everywhere (401
# with WWW-Authenticate), wrong methods are 405 with Allow, paths beside
# the routes are 404, all in the contract's JSON error shape.

use Test::Nginx::Socket 'no_plan';

use FindBin;
use lib "$FindBin::Bin/common";
use Social::Blocks;

no_shuffle();

run_tests();

__DATA__

=== TEST 1: every chat route needs a token
--- request eval
[
"POST /v1/conversations\n{\"member_ids\": [\"1\"]}",
"GET /v1/conversations",
"GET /v1/conversations/1",
"POST /v1/conversations/1/members\n{\"user_ids\": [\"2\"]}",
"DELETE /v1/conversations/1/members/2",
"POST /v1/conversations/1/messages\n{\"text\": \"hi\"}",
"GET /v1/conversations/1/messages",
"POST /v1/conversations/1/read\n{\"message_id\": \"1\"}",
"GET /v1/stream",
]
--- error_code eval
[401, 401, 401, 401, 401, 401, 401, 401, 401]
--- response_headers eval
[("WWW-Authenticate: Bearer") x 9]
--- response_body_like eval
[(qr/^\{"error":\{"code":"unauthorized","message":"[^"]+","request_id":"[0-9a-f]{32}"\}\}$/) x 9]



=== TEST 2: a token that is not one is refused, also as ?access_token=
--- request eval
[
"GET /v1/stream?access_token=abc",
"GET /v1/conversations?access_token=abc",
]
--- more_headers eval
["Accept: text/event-stream", ""]
--- error_code eval
[401, 401]
--- response_body_like eval
[qr/"code":"unauthorized"/, qr/"code":"unauthorized"/]



=== TEST 3: wrong methods are 405 with Allow
--- request eval
[
"PUT /v1/conversations",
"PATCH /v1/conversations/1",
"GET /v1/conversations/1/members",
"PUT /v1/conversations/1/messages",
"GET /v1/conversations/1/read",
"POST /v1/stream",
"DELETE /v1/stream",
]
--- error_code eval
[405, 405, 405, 405, 405, 405, 405]
--- response_headers eval
[
"Allow: GET, POST, HEAD",
"Allow: GET, HEAD",
"Allow: POST",
"Allow: GET, POST, HEAD",
"Allow: POST",
"Allow: GET, HEAD",
"Allow: GET, HEAD",
]
--- response_body_like eval
[(qr/"code":"method_not_allowed"/) x 7]



=== TEST 4: paths beside the routes are 404
--- request eval
[
"GET /v1/conversations/1/nothing",
"GET /v1/conversations/1/members/2/x",
"GET /v1/stream/x",
"GET /v1/conversation",
]
--- error_code eval
[404, 404, 404, 404]
--- response_body_like eval
[(qr/"code":"not_found"/) x 4]
