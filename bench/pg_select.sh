# One indexed single-row SELECT through the PostgreSQL adapter behind an
# HTTP endpoint (GET /t/pg/user?id=N), next to pgbench running the same
# prepared query over the same number of connections, and the nginx
# "return 200" ceiling, all in one run.
#
# Connections: nginx runs 2 workers with social_pg_pool_size 4 (8 in all);
# pgbench runs 8 clients on 2 threads.

. "$(dirname "$0")/lib.sh"

ROWS=10000
CONNS=64

psql_bench -c "INSERT INTO users (id, username, email)
               SELECT g, 'bench' || g, 'bench' || g || '@example.com'
               FROM generate_series(1, $ROWS) g ON CONFLICT DO NOTHING" \
           -c "ANALYZE users"

cat >"$BENCH_DIR/select.sql" <<SQL
\set id random(1, $ROWS)
SELECT id::text, username FROM users WHERE id = :id;
SQL

cat >"$BENCH_DIR/user.lua" <<LUA
request = function()
    return wrk.format("GET", "/t/pg/user?id=" .. math.random(1, $ROWS))
end
LUA

bench_nginx_start "s/social_pg_pool_size 8;/social_pg_pool_size ${POOL:-4};/" \
    "s/social_pg_pipeline_depth 16;/social_pg_pipeline_depth ${DEPTH:-16};/"

curl -fs "http://127.0.0.1:$BENCH_PORT/t/pg/user?id=1" >/dev/null

pgbench_once() {
    pgbench -h 127.0.0.1 -p "$TEST_NGINX_PG_PORT" -U social -n -M prepared \
        -c 8 -j 2 -T "$BENCH_SECONDS" -f "$BENCH_DIR/select.sql" social \
        2>/dev/null | awk '/^tps = / { printf "%.0f\n", $3 }'
}

base=$(median_of "$BENCH_RUNS" wrk_once "http://127.0.0.1:$BASE_PORT/" $CONNS)
api=$(median_of "$BENCH_RUNS" wrk_once "http://127.0.0.1:$BENCH_PORT/" $CONNS \
      "$BENCH_DIR/user.lua")
pgb=$(median_of "$BENCH_RUNS" pgbench_once)

read -r base_rps base_p50 base_p99 _ <<<"$base"
read -r api_rps api_p50 api_p99 api_bad <<<"$api"

printf '\nPostgreSQL adapter, median of %d runs of %d s (wrk -t2 -c%d)\n' \
    "$BENCH_RUNS" "$BENCH_SECONDS" "$CONNS"
printf '%-44s %10s %9s %9s\n' "" "req/s" "p50 ms" "p99 ms"
printf '%-44s %10s %9s %9s\n' "nginx return 200 (ceiling)" \
    "$base_rps" "$base_p50" "$base_p99"
printf '%-44s %10s %9s %9s\n' "GET /t/pg/user?id=N (8 PG connections)" \
    "$api_rps" "$api_p50" "$api_p99"
printf '%-44s %10s\n' "pgbench -S-style, same query, 8 clients" "$pgb"
printf 'adapter / pgbench = %.2f   adapter / ceiling = %.2f   non-2xx: %s\n' \
    "$(awk "BEGIN { print $api_rps / $pgb }")" \
    "$(awk "BEGIN { print $api_rps / $base_rps }")" \
    "${api_bad:-0}"
