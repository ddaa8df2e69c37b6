# Blue-green under load: wrk on a proxied, authenticated route
# (GET /v1/users/@name through the gateway, a cached profile) while
# cluster.sh deploys the other colour 3 s into a 10 s run; once with a
# connection per request, once with kept-alive connections.  Prints what
# wrk counted: requests, non-2xx answers, socket errors, p50/p99.

. "$(dirname "$0")/lib.sh"

CONF=$BENCH_DIR/cluster-conf
mkdir -p "$CONF"
cp "$BENCH_SCRIPT_DIR"/../conf/cluster/* "$CONF/"
sed -i 's|^social_limit read .*|social_limit read rate=1000r/s burst=100000000;|' \
    "$CONF/gateway.conf"

export CLUSTER_DIR=$BENCH_DIR/cluster CLUSTER_HTTP_PORT=$BENCH_PORT \
       CLUSTER_PORT_BASE=${CLUSTER_PORT_BASE:-$((BASE_PORT + 100))} \
       CLUSTER_PG_PORT=$TEST_NGINX_PG_PORT \
       CLUSTER_REDIS_PORT=$TEST_NGINX_REDIS_PORT \
       CLUSTER_KEYS=$TEST_NGINX_KEYS_DIR \
       CLUSTER_MODULES=$TEST_NGINX_LOAD_MODULES \
       CLUSTER_NGINX=$TEST_NGINX_BINARY
trap 'bash "$CONF/cluster.sh" stop; rm -rf "$BENCH_DIR"' EXIT
bash "$CONF/cluster.sh" start

api="http://127.0.0.1:$BENCH_PORT"
curl -fs -XPOST "$api/v1/users" -d '{"username":"bench_bg",
    "email":"bench_bg@example.com","password":"correct horse"}' >/dev/null
token=$(curl -fs -XPOST "$api/oauth/token" -d '{"grant_type":"password",
    "username":"bench_bg","password":"correct horse"}' \
    | sed 's/.*"access_token":"\([^"]*\)".*/\1/')

run() {     # label colour [close]
    local lua=$BENCH_DIR/bg.lua out
    printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" >"$lua"
    [ -n "${3:-}" ] && printf 'wrk.headers["Connection"] = "close"\n' >>"$lua"
    ( sleep 3; bash "$CONF/cluster.sh" deploy "$2" >/dev/null 2>&1 ) &
    out=$(wrk -t2 -c50 -d10s --latency -s "$lua" "$api/v1/users/@bench_bg")
    wait
    printf '%-34s %8s %8s %-40s %s %s\n' "$1" \
        "$(awk '/requests in/ { print $1 }' <<<"$out")" \
        "$(awk '/Non-2xx/ { print $NF }' <<<"$out" | grep . || echo 0)" \
        "$(grep 'Socket errors' <<<"$out" | sed 's/ *Socket errors: //' || true)" \
        "$(awk '$1 == "50%" { print $2 }' <<<"$out")" \
        "$(awk '$1 == "99%" { print $2 }' <<<"$out")"
}

printf '\nBlue-green switch during a 10 s wrk run (-t2 -c50)\n'
printf '%-34s %8s %8s %-40s %s\n' "" requests non-2xx "socket errors" "p50 p99"
run "to green, a connection a request" green close
run "to blue, a connection a request" blue close
run "to green, kept-alive connections" green
run "to blue, kept-alive connections" blue
