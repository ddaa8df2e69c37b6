#!/usr/bin/env bash
#
# The Redis adapter: a GET that costs one Redis GET, measured with wrk,
# next to redis-benchmark's GET at the same concurrency and the nginx
# "return 200" ceiling, all on this machine in one run.  Starts its own
# Redis and nginx on loopback and stops them; writes the medians into
# docs/PERFORMANCE.md under "## Redis adapter".
#
#   bench/redis_get.sh            (BENCH_RUNS=3 BENCH_SECONDS=10 CONNS=50)
#
# nginx: 2 workers, the test module's GET /t/redis/get/{key} (one GET on
# the worker's pipelined command connection, answered as JSON).
# wrk: -t1 -cCONNS.  redis-benchmark: -c CONNS -t get, not pipelined.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
NGINX=/usr/sbin/nginx
DOC=$ROOT/docs/PERFORMANCE.md

HTTP_PORT=${BENCH_HTTP_PORT:-18480}
BASE_PORT=${BENCH_BASE_PORT:-18481}
REDIS_PORT=${BENCH_REDIS_PORT:-16480}
RUNS=${BENCH_RUNS:-3}
SECONDS_EACH=${BENCH_SECONDS:-10}
CONNS=${CONNS:-50}

DIR=$(mktemp -d /tmp/ngx-social-bench-redis.XXXXXX)
chmod 755 "$DIR"

VALUE=0123456789abcdef0123456789abcdef    # 32 bytes

log() { printf '==> %s\n' "$*" >&2; }

cleanup() {
    [ -f "$DIR/nginx.pid" ] && kill -QUIT "$(cat "$DIR/nginx.pid")" 2>/dev/null
    [ -f "$DIR/redis.pid" ] && kill "$(cat "$DIR/redis.pid")" 2>/dev/null
    sleep 0.5
    rm -rf "$DIR"
}
trap cleanup EXIT

redis_start() {
    local as=()
    [ "$(id -u)" -eq 0 ] && { chown redis: "$DIR"; as=(runuser -u redis --); }
    "${as[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --save '' --appendonly no --dir "$DIR" --daemonize yes \
        --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
    for _ in $(seq 50); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return
        sleep 0.1
    done
    echo "Redis did not start" >&2
    exit 1
}

nginx_start() {
    mkdir -p "$DIR/logs" "$DIR/tmp"
    cat >"$DIR/nginx.conf" <<CONF
load_module $BUILD/ngx_social_core_module.so;
load_module $BUILD/ngx_social_test_redis_module.so;
worker_processes 2;
pid $DIR/nginx.pid;
error_log $DIR/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/tmp;
    social_redis_address 127.0.0.1:$REDIS_PORT;

    server {
        listen 127.0.0.1:$HTTP_PORT;
        location /t/ { social_api; }
    }

    server {
        listen 127.0.0.1:$BASE_PORT;
        location / {
            default_type application/json;
            return 200 '{"value":"$VALUE"}';
        }
    }
}
CONF
    "$NGINX" -p "$DIR/" -c "$DIR/nginx.conf"
    for _ in $(seq 50); do
        curl -fs "http://127.0.0.1:$HTTP_PORT/t/redis/get/bench:get" \
            2>/dev/null | grep -q "$VALUE" && return
        sleep 0.1
    done
    echo "nginx did not answer" >&2
    cat "$DIR/logs/error.log" >&2
    exit 1
}

# wrk_once URL -> "rps non2xx"
wrk_once() {
    wrk -t1 -c"$CONNS" -d"${SECONDS_EACH}s" "$1" | awk '
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END { printf "%.0f %d\n", rps, bad }'
}

redis_benchmark_once() {
    redis-benchmark -p "$REDIS_PORT" -c "$CONNS" -t get \
        -n $((SECONDS_EACH * 80000)) -q 2>/dev/null \
        | tr '\r' '\n' | awk '/^GET: .* requests per second/ {
            printf "%.0f\n", $2 }' | tail -n 1
}

# median_of N CMD... -> the output line whose first field is the median
median_of() {
    local n=$1 i
    shift
    for i in $(seq "$n"); do "$@"; done | sort -n -k1,1 \
        | sed -n "$(( (n + 1) / 2 ))p"
}

write_doc() {   # api base rb bad
    local api=$1 base=$2 rb=$3 bad=$4 section
    section=$(cat <<MD
## Redis adapter (\`bench/redis_get.sh\`)

\`GET /t/redis/get/{key}\` costs one Redis \`GET\` of a 32-byte value on the
worker's pipelined command connection and answers it as JSON; it is
measured next to \`redis-benchmark -t get\` (not pipelined) at the same
concurrency and the nginx \`return 200\` ceiling (the same JSON body from
the same two workers). nginx: 2 workers; wrk \`-t1 -c$CONNS\`;
redis-benchmark \`-c $CONNS\`. Median of $RUNS runs of $SECONDS_EACH s, $(nproc) cores,
$(date +%F).

| | req/s |
| --- | ---: |
| nginx \`return 200\` (ceiling) | $base |
| \`GET /t/redis/get/{key}\` through the adapter | $api |
| \`redis-benchmark -t get -c $CONNS\` | $rb |

**Adapter / redis-benchmark = $(awk "BEGIN { printf \"%.2f\", $api / $rb }")**;
adapter / ceiling = $(awk "BEGIN { printf \"%.2f\", $api / $base }"). wrk saw $bad non-2xx answers.

The adapter pipelines: every command issued in one turn of a worker's event
loop is appended to hiredis's buffer and written by one posted write event
at the end of that turn, and one read brings back the replies of all of
them, so the Redis round trip is shared by all the requests of the turn.
MD
)
    mkdir -p "$(dirname "$DOC")"
    [ -f "$DOC" ] || printf '# Performance\n' >"$DOC"
    # replace the section (up to the next "## ") or append it
    awk -v section="$section" '
        /^## Redis adapter/ { print section; skip = 1; done = 1; next }
        skip && /^## / { skip = 0; print "" }
        !skip { print }
        END { if (!done) { print ""; print section } }
    ' "$DOC" >"$DOC.new"
    mv "$DOC.new" "$DOC"
}

main() {
    local api base rb api_rps api_bad base_rps
    "$ROOT/build.sh" build
    redis_start
    redis-cli -p "$REDIS_PORT" set bench:get "$VALUE" >/dev/null
    redis-cli -p "$REDIS_PORT" set key:__rand_int__ "$VALUE" >/dev/null
    nginx_start

    log "nginx return 200, $RUNS x ${SECONDS_EACH}s"
    base=$(median_of "$RUNS" wrk_once "http://127.0.0.1:$BASE_PORT/")
    log "GET through the adapter, $RUNS x ${SECONDS_EACH}s"
    api=$(median_of "$RUNS" wrk_once \
          "http://127.0.0.1:$HTTP_PORT/t/redis/get/bench:get")
    log "redis-benchmark GET, $RUNS x ~${SECONDS_EACH}s"
    rb=$(median_of "$RUNS" redis_benchmark_once)

    read -r base_rps _ <<<"$base"
    read -r api_rps api_bad <<<"$api"

    printf '\nRedis adapter, median of %d runs of %d s, %d connections\n' \
        "$RUNS" "$SECONDS_EACH" "$CONNS"
    printf '%-46s %10s\n' "nginx return 200 (ceiling)" "$base_rps"
    printf '%-46s %10s\n' "GET /t/redis/get/{key} (one Redis GET)" "$api_rps"
    printf '%-46s %10s\n' "redis-benchmark -t get" "$rb"
    printf 'adapter / redis-benchmark = %.2f   adapter / ceiling = %.2f\n' \
        "$(awk "BEGIN { print $api_rps / $rb }")" \
        "$(awk "BEGIN { print $api_rps / $base_rps }")"

    write_doc "$api_rps" "$base_rps" "$rb" "${api_bad:-0}"
    log "written to $DOC"
}

main "$@"
