# The gateway's own cost: an authenticated, rate-limited request (token
# check, revocation mirror, the GCRA script in Redis, one call a loop turn) to a
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

# The machine is shared: the ceiling and the request are measured in
# turns (ceiling, request, ceiling, request, ...), so that both see the
# same load, and the ratio is the median of each turn's ratio.
paired() {     # URL [LUA] -> "median-ratio" and the medians, one per line
    local i base run ratios=() bases=() runs=()
    for i in $(seq "$BENCH_RUNS"); do
        base=$(wrk_once "http://127.0.0.1:$BASE_PORT/" $CONNS)
        run=$(wrk_once "$1" $CONNS "${2:-}")
        bases+=("$base")
        runs+=("$run")
        ratios+=("$(awk "BEGIN { split(\"$run\", a, \" \");
                                 split(\"$base\", b, \" \");
                                 printf \"%.2f\", a[1] / b[1] }")")
    done
    printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(( (BENCH_RUNS + 1) / 2 ))p"
    printf '%s\n' "${bases[@]}" | sort -n -k1,1 \
        | sed -n "$(( (BENCH_RUNS + 1) / 2 ))p"
    printf '%s\n' "${runs[@]}" | sort -n -k1,1 \
        | sed -n "$(( (BENCH_RUNS + 1) / 2 ))p"
}

mapfile -t limited_out < <(paired "$api/t/whoami" "$BENCH_DIR/auth.lua")

bench_nginx_stop
bench_nginx_start
mapfile -t plain_out < <(paired "$api/t/whoami" "$BENCH_DIR/auth.lua")

row() {
    read -r rps p50 p99 bad <<<"$2"
    printf '%-46s %10s %9s %9s %6s\n' "$1" "$rps" "$p50" "$p99" "${bad:-0}"
}

printf '\nGateway, median of %d runs of %d s (wrk -t2 -c%d), in turns with the ceiling\n' \
    "$BENCH_RUNS" "$BENCH_SECONDS" "$CONNS"
printf '%-46s %10s %9s %9s %6s\n' "" "req/s" "p50 ms" "p99 ms" "non2xx"
row "nginx return 200 (ceiling, limited turns)" "${limited_out[1]}"
row "GET /t/whoami, token + rate limit (Redis)" "${limited_out[2]}"
row "nginx return 200 (ceiling, token turns)" "${plain_out[1]}"
row "GET /t/whoami, token only" "${plain_out[2]}"
printf 'limited / ceiling = %s   token only / ceiling = %s (medians of the turns)\n' \
    "${limited_out[0]}" "${plain_out[0]}"
