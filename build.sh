#!/usr/bin/env bash
#
# The one entry point: deps, build, migrate, run, stop, test, bench.
#
#   ./build.sh run      the whole API on http://127.0.0.1:8080
#                       (--cluster: the split deployment, conf/cluster/)
#   ./build.sh test     the whole test suite (--memcheck: under valgrind)
#
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$ROOT/build
RUN=$ROOT/.run
NGX_SRC=/usr/share/nginx/src
NGINX=/usr/sbin/nginx
PGBIN=/usr/lib/postgresql/15/bin

# load order: core first, the others resolve its symbols
MODULES=(core gateway users posts chat)

RUN_HTTP_PORT=${SOCIAL_HTTP_PORT:-8080}
RUN_PG_PORT=${SOCIAL_PG_PORT:-15432}
RUN_REDIS_PORT=${SOCIAL_REDIS_PORT:-16379}
# the cluster's service instances: blue base+1..6, green base+11..16
RUN_CLUSTER_PORT_BASE=${SOCIAL_CLUSTER_PORT_BASE:-9100}

TEST_PG_PORT=${TEST_NGINX_PG_PORT:-25432}
TEST_REDIS_PORT=${TEST_NGINX_REDIS_PORT:-26379}

PACKAGES=(nginx nginx-dev libpq-dev libhiredis-dev libjansson-dev libssl-dev
          pkg-config make gcc postgresql postgresql-client redis-server
          libtest-base-perl libtest-longstring-perl liblist-moreutils-perl
          libhttp-message-perl liburi-perl libtext-diff-perl libipc-run-perl
          valgrind wrk curl chromium)

# the browser tests and the OpenAPI check (t/js/): puppeteer-core drives
# Debian's chromium (no browser download), ajv validates
JS=$ROOT/t/js

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: ./build.sh COMMAND [ARGS]

  deps              install what is missing (apt-get)
  build             compile the modules into build/ (incremental)
  migrate           apply schema migrations to the database of 'run'
  run [--cluster]   start PostgreSQL, Redis and nginx under .run/,
                    print the URL (safe to re-run: restarts nginx);
                    --cluster: a gateway and two instances of each
                    service instead (conf/cluster/)
  deploy blue|green build, start that colour's service instances and
                    switch the cluster's gateway to them (graceful reload)
  stop              stop what 'run' started
  test [--memcheck] [t/FILE.t ...]
                    the test suite against a throw-away PostgreSQL
                    and Redis; --memcheck runs nginx under valgrind
  bench [NAME ...]  the benchmarks in bench/ (all by default)
EOF
}

# ---------------------------------------------------------------- deps

cmd_deps() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q 'install ok installed' || missing+=("$p")
    done
    # node and npm from Debian unless the machine has its own
    command -v npm >/dev/null || missing+=(nodejs npm)
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] \
            || die "missing packages (${missing[*]}); run as root"
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null
    fi
    npm_deps
}

# t/js/node_modules as package-lock.json has it, again when the lock changed
npm_deps() {
    [ "$JS/node_modules/.package-lock.json" -nt "$JS/package-lock.json" ] \
        && return 0
    log "npm ci in t/js"
    (cd "$JS" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund \
        --loglevel=error >/dev/null) || die "npm ci failed in t/js"
}

# --------------------------------------------------------------- build

# the service modules, then the test suite's own (t/ngx_social_test_*)
module_dirs() {
    local m
    for m in "${MODULES[@]}"; do printf '%s\n' "$ROOT/ngx_social_$m"; done
    for m in "$ROOT"/t/ngx_social_test_*/; do
        if [ -f "$m/config" ]; then printf '%s\n' "${m%/}"; fi
    done
}

test_sos() {
    local m
    for m in "$ROOT"/t/ngx_social_test_*/; do
        if [ -f "$m/config" ]; then
            printf '%s\n' "$BUILD/$(basename "$m")_module.so"
        fi
    done
}

module_sos() {
    local m
    for m in "${MODULES[@]}"; do
        printf '%s\n' "$BUILD/ngx_social_${m}_module.so"
    done
}

cmd_build() {
    local dir args=() stale=0
    [ -f "$NGX_SRC/configure" ] || die "nginx-dev is missing: ./build.sh deps"

    # configure again only when the set of modules or a module's config
    # (its source list) changed
    if [ ! -f "$BUILD/Makefile" ] \
        || [ "$(module_dirs)" != "$(cat "$BUILD/modules.list" 2>/dev/null)" ]
    then
        stale=1
    else
        for dir in $(module_dirs); do
            [ "$dir/config" -nt "$BUILD/Makefile" ] && stale=1
        done
    fi

    if [ $stale -eq 1 ]; then
        log "configuring against $($NGINX -v 2>&1 | sed 's/.*: //')"
        for dir in $(module_dirs); do args+=("--add-dynamic-module=$dir"); done
        mkdir -p "$BUILD"
        (
            cd "$NGX_SRC"
            # shellcheck disable=SC1091
            . ./conf_flags
            ./configure "${NGX_CONF_FLAGS[@]}" \
                --with-cc-opt="-O2 -g -Wall -Wextra -Werror -fPIC" \
                --with-ld-opt="-fPIC" \
                "${args[@]}" --builddir="$BUILD"
        ) >"$BUILD/configure.log" 2>&1 \
            || { tail -n 30 "$BUILD/configure.log"; die "configure failed"; }
        module_dirs >"$BUILD/modules.list"
    fi

    if ! make -s -j"$(nproc)" -f "$BUILD/Makefile" -C "$NGX_SRC" modules \
        >"$BUILD/make.log" 2>&1
    then
        grep -v 'Entering\|Leaving' "$BUILD/make.log" >&2
        die "build failed"
    fi
}

# ------------------------------------------- PostgreSQL and Redis servers

# PostgreSQL refuses root: the data folder belongs to the postgres user and
# must be reachable by it; a checkout under a private home is not.
pg_datadir() {
    local base=$1
    if runuser -u postgres -- test -x "$base" 2>/dev/null; then
        printf '%s\n' "$base/pg"
    else
        printf '/var/lib/ngx-social/%s/pg\n' \
            "$(printf '%s' "$base" | md5sum | cut -c1-12)"
    fi
}

pg_opts() {     # datadir port [test]
    local opts="-p $2 -k $1 -c listen_addresses=127.0.0.1 -c max_connections=200"
    [ "${3:-}" = test ] \
        && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    printf '%s\n' "$opts"
}

pg_start() {    # datadir port logfile [test]
    local data=$1 port=$2 logf=$3
    if [ ! -f "$data/PG_VERSION" ]; then
        mkdir -p "$data"
        chown postgres: "$data"
        chmod 700 "$data"
        runuser -u postgres -- "$PGBIN/initdb" -D "$data" -A trust \
            -U social -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    touch "$logf" && chown postgres: "$logf"
    if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1
    then
        return 0
    fi
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" -l "$logf" -w -t 30 \
        -o "$(pg_opts "$data" "$port" "${4:-}")" start >/dev/null \
        || { tail -n 20 "$logf"; die "PostgreSQL did not start"; }
    psql_at "$port" postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'social'" | grep -q 1 \
        || psql_at "$port" postgres -qc "CREATE DATABASE social"
}

pg_stop() {
    local data=$1
    [ -f "$data/postmaster.pid" ] || return 0
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" -m fast -w stop \
        >/dev/null 2>&1 || true
}

psql_at() {     # port db args...
    local port=$1 db=$2
    shift 2
    psql -X -h 127.0.0.1 -p "$port" -U social -d "$db" -v ON_ERROR_STOP=1 "$@"
}

redis_start() { # dir port persist
    local dir=$1 port=$2 persist=$3 conf=()
    mkdir -p "$dir"
    chown redis: "$dir" 2>/dev/null || true
    if [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null
    then
        return 0
    fi
    if [ "$persist" = yes ]; then
        conf=(--appendonly yes --appendfsync everysec --save '')
    else
        conf=(--appendonly no --save '')
    fi
    runuser -u redis -- redis-server --port "$port" --bind 127.0.0.1 \
        --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" "${conf[@]}" \
        || die "Redis did not start"
    for _ in $(seq 50); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    die "Redis did not answer on port $port"
}

redis_stop() {
    local dir=$1 pid
    [ -f "$dir/redis.pid" ] || return 0
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/redis.pid"
}

# ------------------------------------------------------------- migrate

# conf/migrations/NNNN_name.sql, each applied once in its own transaction
# and recorded in schema_migrations.
migrate_at() {  # port
    local port=$1 f v
    psql_at "$port" social -qc "CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())"
    for f in "$ROOT"/conf/migrations/[0-9]*.sql; do
        [ -e "$f" ] || continue
        v=$(basename "$f" | sed 's/^0*\([0-9][0-9]*\)_.*/\1/')
        if psql_at "$port" social -tAc \
            "SELECT 1 FROM schema_migrations WHERE version = $v" | grep -q 1
        then
            continue
        fi
        log "migration $(basename "$f")"
        { cat "$f"
          printf "\nINSERT INTO schema_migrations (version, name) VALUES (%s, '%s');\n" \
              "$v" "$(basename "$f" .sql)"
        } | psql_at "$port" social -q -1 -f - >/dev/null
    done
}

cmd_migrate() {
    migrate_at "$RUN_PG_PORT"
}

# ----------------------------------------------------------------- keys

# Token signing keys: files readable by root only (nginx reads them as it
# starts), never in the repository.  DIR/main.key is an HS256 secret;
# for the tests also an ES256 key pair and a second secret.
make_keys() {   # dir [test]
    local dir=$1
    (
        umask 077
        mkdir -p "$dir"
        [ -f "$dir/main.key" ] || openssl rand -base64 48 >"$dir/main.key"
        if [ "${2:-}" = test ] && [ ! -f "$dir/es256.pem" ]; then
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
                -out "$dir/es256.pem" 2>/dev/null
            openssl pkey -in "$dir/es256.pem" -pubout -out "$dir/es256.pub"
            openssl rand -base64 48 >"$dir/other.key"
        fi
    )
}

# ----------------------------------------------------------------- run

# conf/social.conf with the ports of this run
social_conf() {
    sed -e "s/listen 127.0.0.1:8080/listen 127.0.0.1:$RUN_HTTP_PORT/" \
        -e "s/port=15432/port=$RUN_PG_PORT/" \
        -e "s/127.0.0.1:16379/127.0.0.1:$RUN_REDIS_PORT/" \
        "$ROOT/conf/social.conf"
}

nginx_conf() {  # prefix
    local prefix=$1 so
    {
        for so in $(module_sos); do printf 'load_module %s;\n' "$so"; done
        cat <<EOF
worker_processes auto;
# password hashing (scrypt, 32 MiB each): at most 4 at once per worker
thread_pool default threads=4;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log $prefix/logs/access.log;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;

    include $prefix/social.conf;
}
EOF
    }
}

# conf/cluster/cluster.sh with the ports and folders of this run
cluster() {
    CLUSTER_DIR=$RUN/cluster CLUSTER_HTTP_PORT=$RUN_HTTP_PORT \
    CLUSTER_PORT_BASE=$RUN_CLUSTER_PORT_BASE CLUSTER_PG_PORT=$RUN_PG_PORT \
    CLUSTER_REDIS_PORT=$RUN_REDIS_PORT CLUSTER_KEYS=$RUN/keys \
    CLUSTER_MODULES="$(module_sos | tr "\n" " ")" CLUSTER_NGINX=$NGINX \
        bash "$ROOT/conf/cluster/cluster.sh" "$@"
}

nginx_stop() {  # pidfile
    local pidf=$1 pid
    [ -f "$pidf" ] || return 0
    pid=$(cat "$pidf")
    kill -QUIT "$pid" 2>/dev/null || { rm -f "$pidf"; return 0; }
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$pid" 2>/dev/null || true
    rm -f "$pidf"
}

cmd_run() {
    local pgdata mode=single
    case ${1:-} in
        --cluster) mode=cluster ;;
        '') ;;
        *) die "unknown run option: $1" ;;
    esac
    cmd_deps
    cmd_build
    mkdir -p "$RUN/logs" "$RUN/tmp"
    chmod 755 "$RUN"

    pgdata=$(pg_datadir "$RUN")
    pg_start "$pgdata" "$RUN_PG_PORT" "$RUN/logs/postgresql.log"
    printf '%s\n' "$pgdata" >"$RUN/pgdata"
    redis_start "$RUN/redis" "$RUN_REDIS_PORT" yes
    migrate_at "$RUN_PG_PORT"
    make_keys "$RUN/keys"
    ln -sfn "$ROOT/web" "$RUN/web"

    if [ $mode = cluster ]; then
        nginx_stop "$RUN/nginx.pid"
        cluster start
        return
    fi

    cluster stop
    social_conf >"$RUN/social.conf"
    nginx_conf "$RUN" >"$RUN/nginx.conf"
    $NGINX -q -t -c "$RUN/nginx.conf" -p "$RUN/" \
        || die "the nginx configuration is not valid"
    nginx_stop "$RUN/nginx.pid"
    $NGINX -c "$RUN/nginx.conf" -p "$RUN/" || die "nginx did not start"

    for _ in $(seq 50); do
        curl -fsS "http://127.0.0.1:$RUN_HTTP_PORT/healthz" >/dev/null 2>&1 \
            && break
        sleep 0.1
    done
    log "the API is on http://127.0.0.1:$RUN_HTTP_PORT/ (./build.sh stop)"
}

cmd_deploy() {
    case ${1:-} in
        blue|green) ;;
        *) die "deploy needs a colour: blue or green" ;;
    esac
    [ -f "$RUN/cluster/gateway/nginx.pid" ] \
        || die "the cluster is not running (./build.sh run --cluster)"
    cmd_build
    cluster deploy "$1"
}

cmd_stop() {
    cluster stop
    nginx_stop "$RUN/nginx.pid"
    redis_stop "$RUN/redis"
    [ -f "$RUN/pgdata" ] && pg_stop "$(cat "$RUN/pgdata")"
    log "stopped"
}

# ---------------------------------------------------------------- test

TEST_TMP=

test_teardown() {
    [ -n "$TEST_TMP" ] || return 0
    redis_stop "$TEST_TMP/redis"
    pg_stop "$(cat "$TEST_TMP/pgdata" 2>/dev/null || echo /nonexistent)"
    rm -rf "$TEST_TMP"
}

# A throw-away PostgreSQL and Redis, migrated, for tests and benchmarks,
# torn down on exit; the environment tells the suites where they are.
scratch_services() {    # test | bench
    local mode=$1 pgdata so mods=""

    TEST_TMP=$(mktemp -d /tmp/ngx-social-$mode.XXXXXX)
    chmod 755 "$TEST_TMP"
    trap test_teardown EXIT

    pgdata=$TEST_TMP/pg
    printf '%s\n' "$pgdata" >"$TEST_TMP/pgdata"
    pg_start "$pgdata" "$TEST_PG_PORT" "$TEST_TMP/postgresql.log" "$mode"
    redis_start "$TEST_TMP/redis" "$TEST_REDIS_PORT" no
    migrate_at "$TEST_PG_PORT"
    make_keys "$TEST_TMP/keys" "$mode"

    for so in $(module_sos) $(test_sos); do mods="$mods $so"; done

    export TEST_NGINX_BINARY=$NGINX
    export TEST_NGINX_LOAD_MODULES=${mods# }
    export TEST_NGINX_SERVROOT=$TEST_TMP/servroot
    export TEST_NGINX_CONF_DIR=$ROOT/conf
    export TEST_NGINX_PG_PORT=$TEST_PG_PORT
    export TEST_NGINX_PG_DATA=$pgdata
    export TEST_NGINX_PG_LOG=$TEST_TMP/postgresql.log
    TEST_NGINX_PG_OPTS=$(pg_opts "$pgdata" "$TEST_PG_PORT" "$mode")
    export TEST_NGINX_PG_OPTS
    export TEST_NGINX_REDIS_PORT=$TEST_REDIS_PORT
    export TEST_NGINX_KEYS_DIR=$TEST_TMP/keys
    export TEST_NGINX_PORT=${TEST_NGINX_PORT:-1984}
}

cmd_test() {
    local memcheck=0 files=() rc=0
    while [ $# -gt 0 ]; do
        case $1 in
            --memcheck) memcheck=1 ;;
            -*) die "unknown test option: $1" ;;
            *) files+=("$1") ;;
        esac
        shift
    done
    [ ${#files[@]} -gt 0 ] || files=("$ROOT"/t/*.t)

    cmd_deps
    cmd_build
    scratch_services test

    if [ $memcheck -eq 1 ]; then
        mkdir -p "$TEST_TMP/valgrind"
        export TEST_NGINX_USE_VALGRIND=1
        export TEST_NGINX_VALGRIND_LOGDIR=$TEST_TMP/valgrind
        export TEST_NGINX_VALGRIND_SUPPRESS=$ROOT/t/valgrind.suppress
        export TEST_NGINX_TIMEOUT=${TEST_NGINX_TIMEOUT:-20}
    fi

    # the upstream Test::Nginx when installed, else the runner in t/lib
    if ! perl -MTest::Nginx::Socket -e1 2>/dev/null; then
        export PERL5LIB=$ROOT/t/lib${PERL5LIB:+:$PERL5LIB}
    fi

    (cd "$ROOT" && prove ${PROVE_FLAGS:-} "${files[@]}") || rc=$?

    if [ $memcheck -eq 1 ]; then
        if grep -l . "$TEST_TMP"/valgrind/*.log >/dev/null 2>&1; then
            log "valgrind reported errors:"
            cat "$TEST_TMP"/valgrind/*.log >&2
            rc=1
        else
            log "valgrind: no errors"
        fi
    fi
    return $rc
}

# --------------------------------------------------------------- bench

# ./build.sh bench [NAME ...]: bench/NAME.sh against scratch servers with
# production durability settings; each prints its figures.
cmd_bench() {
    local names=("$@") n rc=0
    if [ ${#names[@]} -eq 0 ]; then
        for n in "$ROOT"/bench/*.sh; do
            [ "$(basename "$n")" = lib.sh ] || names+=("$(basename "$n" .sh)")
        done
    fi
    for n in "${names[@]}"; do
        [ -f "$ROOT/bench/$n.sh" ] || die "no benchmark bench/$n.sh"
    done

    cmd_deps
    cmd_build
    scratch_services bench

    for n in "${names[@]}"; do
        log "bench $n"
        bash "$ROOT/bench/$n.sh" || rc=$?
    done
    return $rc
}

# ---------------------------------------------------------------- main

[ $# -gt 0 ] || { usage; exit 1; }
command=$1
shift
case $command in
    deps)    cmd_deps ;;
    build)   cmd_build ;;
    migrate) cmd_migrate ;;
    run)     cmd_run "$@" ;;
    stop)    cmd_stop ;;
    deploy)  cmd_deploy "$@" ;;
    test)    cmd_test "$@" ;;
    bench)   cmd_bench "$@" ;;
    -h|--help|help) usage ;;
    *)       usage; exit 1 ;;
esac
