# The Redis adapter: a GET that costs one Redis GET of a 32-byte value
# (GET /t/redis/get/{key}, answered as JSON), next to redis-benchmark's
# GET (not pipelined) at the same concurrency and the nginx "return 200"
# ceiling, all in one run.  nginx: 2 workers; wrk -t2 -c50.

. "$(dirname "$0")/lib.sh"

CONNS=50
VALUE=0123456789abcdef0123456789abcdef

redis-cli -p "$TEST_NGINX_REDIS_PORT" set bench:get "$VALUE" >/dev/null
redis-cli -p "$TEST_NGINX_REDIS_PORT" set key:__rand_int__ "$VALUE" >/dev/null

bench_nginx_start

curl -fs "http://127.0.0.1:$BENCH_PORT/t/redis/get/bench:get" | grep -q "$VALUE"

redis_benchmark_once() {
    redis-benchmark -p "$TEST_NGINX_REDIS_PORT" -c "$CONNS" -t get \
        -n $((BENCH_SECONDS * 80000)) -q 2>/dev/null \
        | tr '\r' '\n' \
        | awk '/^GET: .* requests per second/ { printf "%.0f\n", $2 }' \
        | tail -n 1
}

base=$(median_of "$BENCH_RUNS" wrk_once "http://127.0.0.1:$BASE_PORT/" $CONNS)
api=$(median_of "$BENCH_RUNS" wrk_once \
      "http://127.0.0.1:$BENCH_PORT/t/redis/get/bench:get" $CONNS)
rb=$(median_of "$BENCH_RUNS" redis_benchmark_once)

read -r base_rps base_p50 base_p99 _ <<<"$base"
read -r api_rps api_p50 api_p99 api_bad <<<"$api"

printf '\nRedis adapter, median of %d runs of %d s (wrk -t2 -c%d)\n' \
    "$BENCH_RUNS" "$BENCH_SECONDS" "$CONNS"
printf '%-44s %10s %9s %9s\n' "" "req/s" "p50 ms" "p99 ms"
printf '%-44s %10s %9s %9s\n' "nginx return 200 (ceiling)" \
    "$base_rps" "$base_p50" "$base_p99"
printf '%-44s %10s %9s %9s\n' "GET /t/redis/get/{key} (one Redis GET)" \
    "$api_rps" "$api_p50" "$api_p99"
printf '%-44s %10s\n' "redis-benchmark -t get, same concurrency" "$rb"
printf 'adapter / redis-benchmark = %.2f   adapter / ceiling = %.2f   non-2xx: %s\n' \
    "$(awk "BEGIN { print $api_rps / $rb }")" \
    "$(awk "BEGIN { print $api_rps / $base_rps }")" "${api_bad:-0}"
