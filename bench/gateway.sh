# The gateway's own cost: an authenticated, rate-limited request (token
# check, revocation mirror, one EVALSHA of the GCRA script in Redis) to a
# handler that does no I/O of its own (GET /t/whoami), next to the nginx
# "return 200" ceiling in the same run; and the same request with the
# limits off.  nginx: 2 workers; wrk -t2 -c50.

. "$(dirname "$0")/lib.sh"

CONNS=50

limited() {
    # one user: a rate and a burst that never refuse during the run
    bench_nginx_start \
        '/^social_limit_fallback/i social_limit read rate=1000r/s burst=100000000;'
}

limited

api="http://127.0.0.1:$BENCH_PORT"
curl -fs -XPOST "$api/v1/users" -d '{"username":"bench_gw",
    "email":"bench_gw@example.com","password":"correct horse"}' >/dev/null
token=$(curl -fs -XPOST "$api/oauth/token" -d '{"grant_type":"password",
    "username":"bench_gw","password":"correct horse"}' \
    | sed 's/.*"access_token":"\([^"]*\)".*/\1/')

cat >"$BENCH_DIR/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA

curl -fsi "$api/t/whoami" -H "Authorization: Bearer $token" \
    | grep -qi '^RateLimit-Limit' || { echo "not limited" >&2; exit 1; }

base=$(median_of "$BENCH_RUNS" wrk_once "http://127.0.0.1:$BASE_PORT/" $CONNS)
gw=$(median_of "$BENCH_RUNS" wrk_once "$api/t/whoami" $CONNS \
     "$BENCH_DIR/auth.lua")

bench_nginx_stop
bench_nginx_start
plain=$(median_of "$BENCH_RUNS" wrk_once "$api/t/whoami" $CONNS \
        "$BENCH_DIR/auth.lua")

row() {
    read -r rps p50 p99 bad <<<"$2"
    printf '%-46s %10s %9s %9s %6s\n' "$1" "$rps" "$p50" "$p99" "${bad:-0}"
}

printf '\nGateway, median of %d runs of %d s (wrk -t2 -c%d)\n' \
    "$BENCH_RUNS" "$BENCH_SECONDS" "$CONNS"
printf '%-46s %10s %9s %9s %6s\n' "" "req/s" "p50 ms" "p99 ms" "non2xx"
row "nginx return 200 (ceiling)" "$base"
row "GET /t/whoami, token + rate limit (Redis)" "$gw"
row "GET /t/whoami, token only" "$plain"
printf 'limited / ceiling = %.2f   token only / ceiling = %.2f\n' \
    "$(awk "BEGIN { split(\"$gw\", a, \" \"); split(\"$base\", b, \" \");
                    print a[1] / b[1] }")" \
    "$(awk "BEGIN { split(\"$plain\", a, \" \"); split(\"$base\", b, \" \");
                    print a[1] / b[1] }")"
