# Shared by the benchmarks (sourced).  ./build.sh bench has started a
# scratch PostgreSQL and Redis and exported TEST_NGINX_* for them.
#
# One nginx with two workers serves both the API (conf/social.conf on
# BENCH_PORT) and the baseline, a plain "return 200" of a small JSON body
# (BASE_PORT): the ceiling every figure is divided by, measured in the
# same run on the same workers.

set -euo pipefail

BENCH_PORT=${BENCH_PORT:-18080}
BASE_PORT=${BASE_PORT:-18081}
BENCH_DIR=$(mktemp -d /tmp/ngx-social-bench.XXXXXX)
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

psql_bench() {
    psql -X -q -h 127.0.0.1 -p "$TEST_NGINX_PG_PORT" -U social -d social \
        -v ON_ERROR_STOP=1 "$@"
}

# bench_nginx_start [sed expressions for conf/social.conf ...]
bench_nginx_start() {
    local so expr
    mkdir -p "$BENCH_DIR/logs" "$BENCH_DIR/tmp"
    sed -e "s/listen 127.0.0.1:8080/listen 127.0.0.1:$BENCH_PORT/" \
        -e "s/port=15432/port=$TEST_NGINX_PG_PORT/" \
        -e "s/127.0.0.1:16379/127.0.0.1:$TEST_NGINX_REDIS_PORT/" \
        -e "s| keys/| $TEST_NGINX_KEYS_DIR/|" \
        -e "/^social_limit /d" \
        "$TEST_NGINX_CONF_DIR/social.conf" >"$BENCH_DIR/social.conf"
    for expr in "$@"; do
        sed -i -e "$expr" "$BENCH_DIR/social.conf"
    done
    {
        for so in $TEST_NGINX_LOAD_MODULES; do
            printf 'load_module %s;\n' "$so"
        done
        cat <<CONF
worker_processes 2;
${BENCH_RLIMIT:+worker_rlimit_nofile $BENCH_RLIMIT;}
thread_pool default threads=4;
pid $BENCH_DIR/nginx.pid;
error_log $BENCH_DIR/logs/error.log warn;
events { worker_connections ${BENCH_WORKER_CONNECTIONS:-4096}; }
http {
    access_log off;
    client_body_temp_path $BENCH_DIR/tmp;
    include $BENCH_DIR/social.conf;
    server {
        listen 127.0.0.1:$BASE_PORT;
        location / {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
    }
}
CONF
    } >"$BENCH_DIR/nginx.conf"
    "$TEST_NGINX_BINARY" -p "$BENCH_DIR/" -c "$BENCH_DIR/nginx.conf"
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$BENCH_PORT/readyz" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "nginx did not become ready" >&2
    cat "$BENCH_DIR/logs/error.log" >&2
    exit 1
}

bench_nginx_stop() {
    local pid
    [ -f "$BENCH_DIR/nginx.pid" ] || return 0
    pid=$(cat "$BENCH_DIR/nginx.pid")
    kill -QUIT "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}

trap 'bench_nginx_stop 2>/dev/null; rm -rf "$BENCH_DIR"' EXIT

# wrk_once URL CONNS [LUA] -> "rps p50_ms p99_ms"
wrk_once() {
    local url=$1 conns=$2 lua=${3:-} out
    out=$(wrk -t2 -c"$conns" -d"${BENCH_SECONDS}s" --latency \
          ${lua:+-s "$lua"} "$url")
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v
        }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, bad }
    ' <<<"$out"
}

# median_of N CMD... -> the run whose first field is the median
median_of() {
    local n=$1 i
    shift
    for i in $(seq "$n"); do "$@"; done | sort -n -k1,1 | sed -n "$(( (n + 1) / 2 ))p"
}
