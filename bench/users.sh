# Users: GET /v1/users/{id} answered from the Redis cache; GET
# /v1/users/me (token verification, revocation check, one query) next to
# GET /t/pg/user?id=N (the same kind of query, no token); and GET /healthz
# while 16 logins hash passwords at full rate.  All with the nginx
# "return 200" ceiling of the same run.  nginx: 2 workers,
# "thread_pool default threads=4".

. "$(dirname "$0")/lib.sh"

CONNS=50

bench_nginx_start

api="http://127.0.0.1:$BENCH_PORT"
curl -fs -XPOST "$api/v1/users" -d '{"username":"bench_user",
    "email":"bench_user@example.com","password":"correct horse"}' >/dev/null
token=$(curl -fs -XPOST "$api/oauth/token" -d '{"grant_type":"password",
    "username":"bench_user","password":"correct horse"}' \
    | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
id=$(curl -fs "$api/v1/users/@bench_user" | sed 's/.*"id":"\([0-9]*\)".*/\1/')
curl -fs "$api/v1/users/$id" >/dev/null

cat >"$BENCH_DIR/me.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA

cat >"$BENCH_DIR/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"grant_type":"password","username":"bench_user","password":"correct horse"}'
wrk.headers["Content-Type"] = "application/json"
LUA

base=$(median_of "$BENCH_RUNS" wrk_once "http://127.0.0.1:$BASE_PORT/" $CONNS)
profile=$(median_of "$BENCH_RUNS" wrk_once "$api/v1/users/$id" $CONNS)
me=$(median_of "$BENCH_RUNS" wrk_once "$api/v1/users/me" $CONNS \
     "$BENCH_DIR/me.lua")
plain=$(median_of "$BENCH_RUNS" wrk_once "$api/t/pg/user?id=$id" $CONNS)

# /healthz while 16 clients log in without pause
wrk -t1 -c16 -d"$((BENCH_SECONDS + 2))s" -s "$BENCH_DIR/login.lua" \
    "$api/oauth/token" >"$BENCH_DIR/logins.txt" &
sleep 1
health=$(wrk_once "$api/healthz" 10)
wait
logins=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$BENCH_DIR/logins.txt")

row() {
    read -r rps p50 p99 bad <<<"$2"
    printf '%-46s %10s %9s %9s %6s\n' "$1" "$rps" "$p50" "$p99" "${bad:-0}"
}

printf '\nUsers, median of %d runs of %d s (wrk -t2 -c%d)\n' \
    "$BENCH_RUNS" "$BENCH_SECONDS" "$CONNS"
printf '%-46s %10s %9s %9s %6s\n' "" "req/s" "p50 ms" "p99 ms" "non2xx"
row "nginx return 200 (ceiling)" "$base"
row "GET /v1/users/{id} (Redis cache)" "$profile"
row "GET /v1/users/me (token + query)" "$me"
row "GET /t/pg/user?id=N (query, no token)" "$plain"
row "GET /healthz during 16 logins (-c10)" "$health"
printf 'logins meanwhile: %s/s\n' "$logins"
printf 'profile / ceiling = %.2f\n' \
    "$(awk "BEGIN { split(\"$profile\", a, \" \"); split(\"$base\", b, \" \");
                    print a[1] / b[1] }")"
