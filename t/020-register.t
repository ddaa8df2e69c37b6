# Registration: POST /v1/users, its validation and uniqueness rules.

use Test::Nginx::Socket 'no_plan';

use FindBin;
use lib "$FindBin::Bin/common";
use Social::Blocks;

no_shuffle();

run_tests();

__DATA__

=== TEST 1: a new user gets the own view, 201
--- request
POST /v1/users
{"username": "reg_alice", "email": "reg_alice@example.com", "password": "correct horse", "display_name": "Alice \u00e9\ud83d\ude00"}
--- error_code: 201
--- response_headers
Content-Type: application/json; charset=utf-8
--- response_body_like chomp
^\{"id":"\d+","username":"reg_alice","display_name":"Alice \xc3\xa9\xf0\x9f\x98\x80","bio":"","created_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","followers_count":0,"following_count":0,"posts_count":0,"email":"reg_alice\@example\.com"\}$



=== TEST 2: the username is taken case-insensitively
--- request
POST /v1/users
{"username": "REG_ALICE", "email": "other1@example.com", "password": "correct horse"}
--- error_code: 409
--- response_body_like chomp
^\{"error":\{"code":"username_taken","message":"[^"]+","request_id":"[0-9a-f]{32}"\}\}$



=== TEST 3: the email is taken case-insensitively
--- request
POST /v1/users
{"username": "reg_other", "email": "Reg_Alice@Example.com", "password": "correct horse"}
--- error_code: 409
--- response_body_like chomp
"code":"email_taken"



=== TEST 4: display_name defaults to the username
--- request
POST /v1/users
{"username": "reg_bob", "email": "reg_bob@example.com", "password": "12345678"}
--- error_code: 201
--- response_body_like chomp
"username":"reg_bob","display_name":"reg_bob"



=== TEST 5: every missing field is named
--- request
POST /v1/users
{}
--- error_code: 422
--- response_body_like chomp
"fields":\{"username":"is required","email":"is required","password":"is required"\}



=== TEST 6: wrong types are 422
--- request
POST /v1/users
{"username": 42, "email": ["a@b"], "password": true, "display_name": {}}
--- error_code: 422
--- response_body_like chomp
"fields":\{"username":"must be a string","email":"must be a string","password":"must be a string","display_name":"must be a string"\}



=== TEST 7: username length and characters
--- request eval
[
"POST /v1/users\n{\"username\": \"ab\", \"email\": \"x1\@example.com\", \"password\": \"12345678\"}",
"POST /v1/users\n{\"username\": \"" . ("a" x 31) . "\", \"email\": \"x2\@example.com\", \"password\": \"12345678\"}",
"POST /v1/users\n{\"username\": \"caf\\u00e9\", \"email\": \"x3\@example.com\", \"password\": \"12345678\"}",
"POST /v1/users\n{\"username\": \"a-b\", \"email\": \"x4\@example.com\", \"password\": \"12345678\"}",
]
--- error_code eval
[422, 422, 422, 422]
--- response_body_like eval
[
qr/"username":"is too short"/,
qr/"username":"is too long"/,
qr/"username":"may contain only letters, digits and underscores"/,
qr/"username":"may contain only letters, digits and underscores"/,
]



=== TEST 8: usernames of exactly 3 and 30 characters are accepted
--- request eval
[
"POST /v1/users\n{\"username\": \"r_3\", \"email\": \"r3\@example.com\", \"password\": \"12345678\"}",
"POST /v1/users\n{\"username\": \"" . ("r" x 30) . "\", \"email\": \"r30\@example.com\", \"password\": \"12345678\"}",
]
--- error_code eval
[201, 201]



=== TEST 9: password length counts bytes: 8 to 1024
--- request eval
[
"POST /v1/users\n{\"username\": \"pw_short\", \"email\": \"pw1\@example.com\", \"password\": \"1234567\"}",
"POST /v1/users\n{\"username\": \"pw_long\", \"email\": \"pw2\@example.com\", \"password\": \"" . ("p" x 1025) . "\"}",
"POST /v1/users\n{\"username\": \"pw_bytes\", \"email\": \"pw3\@example.com\", \"password\": \"\\u00e9\\u00e9\\u00e9\\u00e9\"}",
"POST /v1/users\n{\"username\": \"pw_max\", \"email\": \"pw4\@example.com\", \"password\": \"" . ("p" x 1024) . "\"}",
]
--- error_code eval
[422, 422, 201, 201]
--- response_body_like eval
[
qr/"password":"is too short"/,
qr/"password":"is too long"/,
qr/"username":"pw_bytes"/,
qr/"username":"pw_max"/,
]



=== TEST 10: NUL in a string is 422
--- request
POST /v1/users
{"username": "nul_user", "email": "nul@example.com", "password": "12345678", "display_name": "a\u0000b"}
--- error_code: 422
--- response_body_like chomp
"fields":\{"display_name":"must not contain NUL characters"\}



=== TEST 11: display_name counts characters, at most 100
--- request eval
[
"POST /v1/users\n{\"username\": \"dn_101\", \"email\": \"dn1\@example.com\", \"password\": \"12345678\", \"display_name\": \"" . ("\\ud83d\\ude00" x 101) . "\"}",
"POST /v1/users\n{\"username\": \"dn_100\", \"email\": \"dn2\@example.com\", \"password\": \"12345678\", \"display_name\": \"" . ("\\ud83d\\ude00" x 100) . "\"}",
]
--- error_code eval
[422, 201]



=== TEST 12: malformed email addresses
--- request eval
[
"POST /v1/users\n{\"username\": \"em_1\", \"email\": \"no-at-sign\", \"password\": \"12345678\"}",
"POST /v1/users\n{\"username\": \"em_2\", \"email\": \"two\@\@example.com\", \"password\": \"12345678\"}",
"POST /v1/users\n{\"username\": \"em_3\", \"email\": \"sp ace\@example.com\", \"password\": \"12345678\"}",
"POST /v1/users\n{\"username\": \"em_4\", \"email\": \"\@example.com\", \"password\": \"12345678\"}",
]
--- error_code eval
[422, 422, 422, 422]
--- response_body_like eval
[
qr/"email":"is not an email address"/,
qr/"email":"is not an email address"/,
qr/"email":"is not an email address"/,
qr/"email":"is not an email address"/,
]



=== TEST 13: a body that is not JSON is 400, not an object 422
--- request eval
["POST /v1/users\n{\"username\": ", "POST /v1/users\n\"alice\""]
--- error_code eval
[400, 422]
