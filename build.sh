#!/usr/bin/env bash
#
# The one entry point: deps, build, migrate, run, stop, test, bench, and
# the operations: rotate-keys, backup, restore, install (the image).
#
#   ./build.sh run      the whole API on http://127.0.0.1:8080
#                       (--cluster: the split deployment, conf/cluster/;
#                       --tls, --profile NAME, --nodes N)
#   ./build.sh test     the whole test suite (--memcheck: under valgrind)
#
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$ROOT/build
RUN=${SOCIAL_RUN_DIR:-$ROOT/.run}
KEYS=$RUN/keys
NGX_SRC=/usr/share/nginx/src
NGINX=/usr/sbin/nginx
PGBIN=/usr/lib/postgresql/15/bin

# load order: core first, the others resolve its symbols
MODULES=(core gateway users posts chat)

RUN_HTTP_PORT=${SOCIAL_HTTP_PORT:-8080}
RUN_HTTPS_PORT=${SOCIAL_HTTPS_PORT:-8443}
RUN_PG_PORT=${SOCIAL_PG_PORT:-15432}
RUN_REDIS_PORT=${SOCIAL_REDIS_PORT:-16379}
# the cluster's service instances: blue base+1..6, green base+11..16
RUN_CLUSTER_PORT_BASE=${SOCIAL_CLUSTER_PORT_BASE:-9100}

TEST_PG_PORT=${TEST_NGINX_PG_PORT:-25432}
# the test suite's second PostgreSQL: ssl=on, TLS connections only
TEST_PG_TLS_PORT=${TEST_NGINX_PG_TLS_PORT:-$((TEST_PG_PORT + 1))}
TEST_REDIS_PORT=${TEST_NGINX_REDIS_PORT:-26379}

# deps --build: what compiles the modules (the image's first stage);
# deps --runtime: what runs them (the image); deps: everything run, test
# and bench need
BUILD_PACKAGES=(nginx nginx-dev libpq-dev libhiredis-dev libjansson-dev
                libssl-dev pkg-config make gcc)
RUNTIME_PACKAGES=(nginx libpq5 libhiredis0.14 libjansson4 ca-certificates)
PACKAGES=("${BUILD_PACKAGES[@]}" postgresql postgresql-client redis-server
          openssl curl libtest-base-perl libtest-longstring-perl
          liblist-moreutils-perl libhttp-message-perl liburi-perl
          libtext-diff-perl libipc-run-perl libio-socket-ssl-perl
          libyaml-libyaml-perl valgrind wrk chromium)

# the browser tests and the OpenAPI check (t/js/): puppeteer-core drives
# Debian's chromium (no browser download), ajv validates
JS=$ROOT/t/js

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: ./build.sh COMMAND [ARGS]

  deps [--build|--runtime]
                    install what is missing (apt-get): everything, or only
                    what compiles the modules, or only what runs them
  build             compile the modules into build/ (incremental)
  migrate           apply schema migrations to the database of 'run'
  run [--cluster | --tls | --profile NAME | --nodes N] [--check]
                    start PostgreSQL, Redis and nginx under .run/,
                    print the URL (safe to re-run: restarts nginx);
                    --cluster: a gateway and two instances of each
                    service instead (conf/cluster/); --tls: also https
                    on 8443 and PostgreSQL over TLS, with a local CA;
                    --profile: conf/profiles/NAME.conf (staging,
                    production); --nodes N: N nginx nodes (8080, 8081, ...)
                    sharing one PostgreSQL and one Redis; --check: only
                    write each node's configuration (nginx.conf.new) and
                    check it with nginx -t, start nothing
  deploy blue|green build, start that colour's service instances and
                    switch the cluster's gateway to them (graceful reload)
  stop              stop what 'run' started
  rotate-keys       a new token signing key, current at once (graceful
                    reload); tokens of the old keys stay valid
  retire-key KID    drop a key that signs no more (its tokens stop working)
  backup [FILE]     a consistent PostgreSQL backup (pg_dump) of 'run'
  restore FILE      bring 'run''s database back to FILE's state (the API
                    stopped); Redis keeps nothing that outlives it
  install DIR [--profile NAME]
                    the modules and their configuration laid out for the
                    image (Dockerfile); production by default
  k8s-config [--profile NAME]
                    the ConfigMap of deploy/k8s/ (production by default)
  test [--memcheck] [--pg-tls] [t/FILE.t ...]
                    the test suite against a throw-away PostgreSQL
                    and Redis (and a second PostgreSQL with ssl=on, TLS
                    only, for t/070-tls.t); --memcheck runs nginx under
                    valgrind; --pg-tls: every suite against that second
                    one, with sslmode=verify-full
  bench [NAME ...]  the benchmarks in bench/ (all by default)
EOF
}

# ---------------------------------------------------------------- deps

cmd_deps() {
    local missing=() p installed wanted=("${PACKAGES[@]}")
    case ${1:-} in
        --build) wanted=("${BUILD_PACKAGES[@]}") ;;
        --runtime) wanted=("${RUNTIME_PACKAGES[@]}") ;;
        '') ;;
        *) die "unknown deps option: $1 (--build or --runtime)" ;;
    esac
    # one dpkg-query for all (it is run before every run and test)
    installed=" $(dpkg-query -W -f='${Package} ${Status}\n' "${wanted[@]}" \
                  2>/dev/null | awk '/ install ok installed$/ { print $1 }' \
                  | tr '\n' ' ')"
    for p in "${wanted[@]}"; do
        [[ $installed == *" $p "* ]] || missing+=("$p")
    done
    # node and npm from Debian unless the machine has its own
    [ -n "${1:-}" ] || command -v npm >/dev/null || missing+=(nodejs npm)
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" -eq 0 ] \
            || die "missing packages (${missing[*]}); run as root"
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null
    fi
    [ -n "${1:-}" ] || npm_deps
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

pg_opts() {     # datadir port [test|run] [tls]
    local opts="-p $2 -k $1 -c listen_addresses=127.0.0.1 -c max_connections=200"
    [ "${3:-}" = test ] \
        && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [ "${4:-}" = tls ] \
        && opts="$opts -c ssl=on -c ssl_cert_file=$1/server.crt -c ssl_key_file=$1/server.key"
    printf '%s\n' "$opts"
}

# tlsdir: serve TLS with tlsdir's certificate (make_tls), to TCP clients
# over TLS only, restarting a server that runs without it; a server set
# up so once keeps TLS
pg_start() {    # datadir port logfile [test|run] [tlsdir]
    local data=$1 port=$2 logf=$3 mode=${4:-run} tlsdir=${5:-} tls=
    if [ ! -f "$data/PG_VERSION" ]; then
        mkdir -p "$data"
        chown postgres: "$data"
        chmod 700 "$data"
        # a throw-away server's files need not reach the disk
        runuser -u postgres -- "$PGBIN/initdb" -D "$data" -A trust \
            -U social -E UTF8 --locale=C.UTF-8 \
            $([ "$mode" = run ] || echo --no-sync) >/dev/null
    fi
    if [ -n "$tlsdir" ]; then
        install -o postgres -m 600 "$tlsdir/server.crt" "$tlsdir/server.key" \
            "$data/"
        # TCP connections over TLS only
        sed -i 's/^host /hostssl /' "$data/pg_hba.conf"
    fi
    # once over TLS, always (its clients can only connect so)
    [ ! -f "$data/server.crt" ] || tls=tls
    touch "$logf" && chown postgres: "$logf"
    if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1
    then
        if [ -z "$tls" ] \
            || [ "$(psql_at "$port" postgres -tAc 'SHOW ssl' 2>/dev/null)" = on ]
        then
            return 0
        fi
        pg_stop "$data"
    fi
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" -l "$logf" -w -t 30 \
        -o "$(pg_opts "$data" "$port" "$mode" "$tls")" start >/dev/null \
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

# The keys of 'run' (KEYS): KID.key files, "signing" names the one that
# signs, keys.conf lists them all for nginx (every listed key verifies).
# Created on the first run only: a key that goes missing later is an
# error, never silently replaced (its tokens would all stop working).
keys_prepare() {
    if [ ! -e "$KEYS/signing" ]; then
        make_keys "$KEYS"
        (umask 077; printf 'main\n' >"$KEYS/signing")
    fi
    keys_check
    keys_write_conf
}

keys_check() {
    local f kid mode
    [ -d "$KEYS" ] || die "no key folder $KEYS"
    mode=$(stat -c %a "$KEYS")
    [ $((8#$mode & 8#077)) -eq 0 ] \
        || die "key folder $KEYS is open to group or others (mode $mode): chmod 700 $KEYS"
    [ -f "$KEYS/signing" ] || die "$KEYS/signing is missing (it names the signing key)"
    kid=$(cat "$KEYS/signing")
    [ -e "$KEYS/$kid.key" ] \
        || die "the signing key \"$kid\" has no key file $KEYS/$kid.key"
    for f in "$KEYS"/*.key; do
        [ -f "$f" ] || die "key file $f is not a regular file"
        [ -r "$f" ] || die "key file $f is not readable"
        mode=$(stat -c %a "$f")
        [ $((8#$mode & 8#077)) -eq 0 ] \
            || die "key file $f is readable by group or others (mode $mode): chmod 600 $f"
        [ "$(stat -c %s "$f")" -ge 32 ] \
            || die "key file $f is too short (an HS256 secret needs 32 bytes or more)"
        case $(basename "$f" .key) in
            *[!A-Za-z0-9_.-]*) die "key file $f: a key id is letters, digits, _ . -" ;;
        esac
    done
}

keys_write_conf() {
    local f
    (
        umask 077
        {
            printf '# written by build.sh from the key files here\n'
            for f in "$KEYS"/*.key; do
                printf 'social_jwt_key %s %s;\n' "$(basename "$f" .key)" "$f"
            done
            printf 'social_jwt_signing_key %s;\n' "$(cat "$KEYS/signing")"
        } >"$KEYS/keys.conf.new"
        mv "$KEYS/keys.conf.new" "$KEYS/keys.conf"
    )
}

# ------------------------------------------------------------------ tls

# A local CA and a certificate it signed for localhost and 127.0.0.1
# (DIR/ca.crt, server.crt, server.key), made once with openssl; clients
# trust ca.crt.  Private keys readable by root only.
make_tls() {    # dir
    local dir=$1
    [ -f "$dir/server.crt" ] && [ -f "$dir/server.key" ] && return 0
    log "a local CA and a server certificate in $dir"
    mkdir -p "$dir"
    chmod 755 "$dir"
    (
        umask 077
        cd "$dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -nodes -keyout ca.key -out ca.crt -days 3650 \
            -subj "/CN=ngx_social local CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -nodes -keyout server.key -out server.csr \
            -subj "/CN=localhost" 2>/dev/null
        printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
            "extendedKeyUsage=serverAuth" "basicConstraints=CA:FALSE" \
            >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key \
            -CAcreateserial -days 825 -extfile server.ext \
            -out server.crt 2>/dev/null
        rm -f server.csr server.ext ca.srl
        chmod 644 ca.crt server.crt
    ) || die "openssl could not make the certificates in $dir"
}

# ---------------------------------------------------------- configuration

PROFILE_FILE=
PROFILE_TLS=off

# conf/profiles/NAME.conf, checked: one directive per line, at the top
# level or in events { } or http { }
profile_load() {    # name
    PROFILE_FILE=$ROOT/conf/profiles/$1.conf
    case $1 in
        ''|*[!A-Za-z0-9_-]*) PROFILE_FILE=/nonexistent ;;
    esac
    if [ ! -f "$PROFILE_FILE" ]; then
        die "unknown profile \"$1\" (conf/profiles/ has: $(cd "$ROOT/conf/profiles" && ls ./*.conf | sed 's|^\./||; s|\.conf$||' | paste -sd ' '))"
    fi
    profile_lines >/dev/null
    PROFILE_TLS=$(profile_lines | awk -F'\t' '$1 == "main" && $2 ~ /^tls / {
        v = $2; sub(/^tls +/, "", v); sub(/;$/, "", v); print v }')
    case ${PROFILE_TLS:-off} in
        off|on|required) ;;
        *) die "$PROFILE_FILE: tls is off, on or required, not \"$PROFILE_TLS\"" ;;
    esac
}

# the profile as "context<TAB>directive" lines
profile_lines() {
    [ -n "$PROFILE_FILE" ] || return 0
    awk -v f="$PROFILE_FILE" '
        function bad(m) {
            printf "build.sh: %s line %d: %s\n", f, NR, m > "/dev/stderr"
            failed = 1
            exit 1
        }
        { sub(/#.*/, ""); gsub(/^[ \t]+|[ \t]+$/, "") }
        $0 == "" { next }
        /^(events|http)[ \t]*\{$/ {
            if (ctx != "") bad("a block inside a block")
            ctx = $1
            next
        }
        $0 == "}" {
            if (ctx == "") bad("\"}\" without a block")
            ctx = ""
            next
        }
        /[{}]/ { bad("only events { } and http { } blocks") }
        !/;$/ { bad("a directive on one line, ending with \";\"") }
        { print (ctx == "" ? "main" : ctx) "\t" $0 }
        END { if (!failed && ctx != "") bad("a block is not closed") }
    ' "$PROFILE_FILE"
}

# FILE with the profile's directives of one context put in: each replaces
# the directive of the same name (social_limit: the same group) in that
# context, or is added (main: before the first block, events: at its
# end, http: before the first server block of social.conf)
profile_apply() {   # file main|events|http
    local file=$1 ctx=$2
    [ -n "$PROFILE_FILE" ] || { cat "$file"; return 0; }
    profile_lines | awk -F'\t' -v ctx="$ctx" '$1 == ctx && $2 !~ /^tls / {
        print $2 }' | awk -v ctx="$ctx" '
        function key(line,    w) {
            split(line, w, /[ \t]+/)
            return w[1] == "social_limit" ? w[1] " " w[2] : w[1]
        }
        function add(    i) {
            for (i = 1; i <= n; i++) {
                if (!(k[i] in done)) {
                    print (ctx == "events" ? "    " : "") o[i]
                }
            }
            added = 1
        }
        FILENAME == "-" { n++; o[n] = $0; k[n] = key($0); want[k[n]] = $0; next }
        {
            line = $0
            sub(/^[ \t]+/, "", line)
            mine = ctx == "events" ? (block == "events" && depth == 1) \
                                   : depth == 0
            if (mine && line !~ /^#/ && (key(line) in want)) {
                if (!(key(line) in done)) {
                    print substr($0, 1, length($0) - length(line)) \
                          want[key(line)]
                }
                done[key(line)] = 1
                next
            }
            if (!added && depth == 0 && ((ctx == "main" && line ~ /\{/) \
                || (ctx == "http" && line ~ /^server[ \t]*\{/)))
            {
                add()
            }
            if (!added && ctx == "events" && block == "events" \
                && depth == 1 && line ~ /^\}/)
            {
                add()
            }
            if (depth == 0 && line ~ /^[a-z_]+[ \t]*\{/) {
                block = line
                sub(/[ \t]*\{.*/, "", block)
            }
            t = line
            sub(/#.*/, "", t)
            depth += gsub(/\{/, "{", t) - gsub(/\}/, "}", t)
            print
        }
        END { if (!added) add() }
    ' - "$file"
}

# Where a configuration's parts are (set before render_social):
#   R_LISTEN, R_TLS_LISTEN   the plain and the TLS listen parameters
#   R_TLS                    off, on or required
#   R_TLS_CERT, R_TLS_KEY    the edge certificate and key
#   R_HTTPS_PORT             the port in redirects to https ("" for 443)
#   R_KEYS_CONF              the keys.conf to include
#   R_PG                     "conninfo" or "include FILE" (PostgreSQL and
#                            Redis settings from a secrets file)
#   R_REDIS                  host:port (unless R_PG includes a file)

# conf/social.conf (and conf/tls.conf) for one nginx
render_social() {
    local tmp
    tmp=$(mktemp)
    {
        if [ "${R_PG#include }" != "$R_PG" ]; then
            sed -e "s|^social_pg_conninfo .*|$R_PG;|" \
                -e '/^social_redis_address /d' "$ROOT/conf/social.conf"
        else
            sed -e "s|^social_pg_conninfo .*|social_pg_conninfo \"$R_PG\";|" \
                -e "s|^social_redis_address .*|social_redis_address $R_REDIS;|" \
                "$ROOT/conf/social.conf"
        fi
    } | sed -e "s|listen 127\.0\.0\.1:8080;|listen $R_LISTEN;|" \
            -e "s|^social_jwt_key main keys/main\.key;|include $R_KEYS_CONF;|" \
        >"$tmp"
    if [ "$R_TLS" = required ]; then
        # the plain server's "location / { social_api; }", replaced
        TLS_REQUIRED=$(sed -e 's/^/    /' -e 's/^ *$//' \
                           -e "s|\$host:8443|\$host${R_HTTPS_PORT:+:$R_HTTPS_PORT}|" \
                           "$ROOT/conf/tls-required.conf") \
            perl -0pi -e 's/^    location \/ \{\n        social_api;\n    \}\n/$ENV{TLS_REQUIRED}\n/m or die "conf\/social.conf: no location \/\n"' "$tmp"
    fi
    profile_apply "$tmp" http
    rm -f "$tmp"
    if [ "$R_TLS" != off ]; then
        printf '\n'
        sed -e "s|listen 127\.0\.0\.1:8443 ssl http2;|listen $R_TLS_LISTEN ssl http2;|" \
            -e "s|ssl_certificate tls/server\.crt;|ssl_certificate $R_TLS_CERT;|" \
            -e "s|ssl_certificate_key tls/server\.key;|ssl_certificate_key $R_TLS_KEY;|" \
            "$ROOT/conf/tls.conf"
    fi
}

# the nginx.conf around it: prefix-relative logs, pid and temp files
nginx_conf() {  # modules-dir pid-file temp-dir social.conf
    local mods=$1 so tmp
    tmp=$(mktemp)
    {
        for so in "${MODULES[@]}"; do
            printf 'load_module %s/ngx_social_%s_module.so;\n' "$mods" "$so"
        done
        cat <<EOF2
worker_processes auto;
# password hashing (scrypt, 32 MiB each): at most 4 at once per worker
thread_pool default threads=4;
pid $2;
error_log logs/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log logs/access.log;
    client_body_temp_path $3/body;
    proxy_temp_path $3/proxy;
    fastcgi_temp_path $3/fastcgi;
    uwsgi_temp_path $3/uwsgi;
    scgi_temp_path $3/scgi;

    include $4;
}
EOF2
    } >"$tmp"
    profile_apply "$tmp" main >"$tmp.main"
    profile_apply "$tmp.main" events
    rm -f "$tmp" "$tmp.main"
}

# ----------------------------------------------------------------- run

# node N of 'run': its folder (the nginx prefix) and ports
node_dir() {
    if [ "$1" -eq 1 ]; then printf '%s\n' "$RUN"; else printf '%s\n' "$RUN/node$1"; fi
}

# the configuration of node N into its folder (SUFFIX: beside the live one)
node_conf() {   # n tls suffix
    local n=$1 dir
    dir=$(node_dir "$n")
    mkdir -p "$dir/logs" "$dir/tmp"
    R_LISTEN=127.0.0.1:$((RUN_HTTP_PORT + n - 1))
    R_TLS_LISTEN=127.0.0.1:$((RUN_HTTPS_PORT + n - 1))
    R_TLS=$2
    R_TLS_CERT=$RUN/tls/server.crt
    R_TLS_KEY=$RUN/tls/server.key
    R_HTTPS_PORT=$((RUN_HTTPS_PORT + n - 1))
    R_KEYS_CONF=$KEYS/keys.conf
    R_PG="host=127.0.0.1 port=$RUN_PG_PORT dbname=social user=social"
    [ "$2" = off ] \
        || R_PG="$R_PG sslmode=verify-full sslrootcert=$RUN/tls/ca.crt"
    R_REDIS=127.0.0.1:$RUN_REDIS_PORT
    render_social >"$dir/social.conf$3"
    nginx_conf "$BUILD" "$dir/nginx.pid" "$dir/tmp" "$dir/social.conf$3" \
        >"$dir/nginx.conf$3"
}

# conf/cluster/cluster.sh with the ports and folders of this run
cluster() {
    CLUSTER_DIR=$RUN/cluster CLUSTER_HTTP_PORT=$RUN_HTTP_PORT \
    CLUSTER_PORT_BASE=$RUN_CLUSTER_PORT_BASE CLUSTER_PG_PORT=$RUN_PG_PORT \
    CLUSTER_REDIS_PORT=$RUN_REDIS_PORT CLUSTER_KEYS=$KEYS \
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

nodes_stop() {  # from: the nodes numbered from this one on
    local n
    for n in $(seq "$1" 9); do nginx_stop "$(node_dir "$n")/nginx.pid"; done
}

cmd_run() {
    local pgdata mode=single nodes=1 tls=off check=0 n dir
    while [ $# -gt 0 ]; do
        case $1 in
            --cluster) mode=cluster ;;
            --check) check=1 ;;
            --tls) tls=on ;;
            --profile)
                [ $# -ge 2 ] || die "--profile needs a name (conf/profiles/NAME.conf)"
                profile_load "$2"
                shift ;;
            --nodes)
                [ $# -ge 2 ] || die "--nodes needs a number (1 to 9)"
                case $2 in
                    [1-9]) nodes=$2 ;;
                    *) die "--nodes takes 1 to 9, not \"$2\"" ;;
                esac
                shift ;;
            *) die "unknown run option: $1 (--cluster, --tls, --profile NAME, --nodes N, --check)" ;;
        esac
        shift
    done
    if [ $mode = cluster ] && { [ "$nodes" -gt 1 ] || [ $tls != off ] \
        || [ -n "$PROFILE_FILE" ] || [ $check = 1 ]; }
    then
        die "--cluster takes no --nodes, --tls, --profile or --check"
    fi
    case $PROFILE_TLS in
        required) tls=required ;;
        on) tls=on ;;
    esac

    cmd_deps
    cmd_build
    mkdir -p "$RUN/logs" "$RUN/tmp"
    chmod 755 "$RUN"
    keys_prepare

    # every configuration is checked before anything starts
    if [ $mode = single ]; then
        [ $tls = off ] || make_tls "$RUN/tls"
        for n in $(seq "$nodes"); do
            dir=$(node_dir "$n")
            node_conf "$n" $tls .new
            $NGINX -q -t -p "$dir/" -c "$dir/nginx.conf.new" \
                || die "the nginx configuration of node $n is not valid"
            [ $check = 0 ] || log "node $n: $dir/nginx.conf.new is valid"
        done
        [ $check = 0 ] || return 0
    fi

    pgdata=$(pg_datadir "$RUN")
    if [ $tls = off ]; then
        pg_start "$pgdata" "$RUN_PG_PORT" "$RUN/logs/postgresql.log"
    else
        pg_start "$pgdata" "$RUN_PG_PORT" "$RUN/logs/postgresql.log" run \
            "$RUN/tls"
    fi
    printf '%s\n' "$pgdata" >"$RUN/pgdata"
    redis_start "$RUN/redis" "$RUN_REDIS_PORT" yes
    migrate_at "$RUN_PG_PORT"
    for n in $(seq "$nodes"); do
        ln -sfn "$ROOT/web" "$(node_dir "$n")/web"
    done

    if [ $mode = cluster ]; then
        nodes_stop 1
        cluster start
        return
    fi

    cluster stop
    nodes_stop $((nodes + 1))
    for n in $(seq "$nodes"); do
        dir=$(node_dir "$n")
        rm -f "$dir/nginx.conf.new" "$dir/social.conf.new"
        node_conf "$n" $tls ""
        nginx_stop "$dir/nginx.pid"
        $NGINX -p "$dir/" -c "$dir/nginx.conf" || die "nginx (node $n) did not start"
    done

    for n in $(seq "$nodes"); do
        for _ in $(seq 50); do
            curl -fsS "http://127.0.0.1:$((RUN_HTTP_PORT + n - 1))/healthz" \
                >/dev/null 2>&1 && break
            sleep 0.1
        done
        log "the API is on http://127.0.0.1:$((RUN_HTTP_PORT + n - 1))/$(
            [ $tls = off ] || printf ' and https://127.0.0.1:%s/ (CA: %s)' \
                $((RUN_HTTPS_PORT + n - 1)) "$RUN/tls/ca.crt")"
    done
    log "./build.sh stop stops it"
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
    nodes_stop 1
    redis_stop "$RUN/redis"
    [ -f "$RUN/pgdata" ] && pg_stop "$(cat "$RUN/pgdata")"
    log "stopped"
}

# ------------------------------------------------------------ key rotation

# every nginx master 'run' started: its prefix (the pid file's folder
# holds nginx.conf)
running_nginx() {
    local pidf
    for pidf in "$RUN"/nginx.pid "$RUN"/node*/nginx.pid "$RUN"/cluster/*/nginx.pid; do
        [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null \
            && dirname "$pidf"
    done
    return 0
}

# a graceful reload of each running nginx, after every one checked its
# configuration; waits until the old workers are gone, so a request
# made afterwards is served with the new keys
reload_all() {
    local dir pid old=()
    for dir in $(running_nginx); do
        $NGINX -q -t -p "$dir/" -c "$dir/nginx.conf" || return 1
    done
    for dir in $(running_nginx); do
        pid=$(cat "$dir/nginx.pid")
        mapfile -t -O "${#old[@]}" old < <(ps -o pid= --ppid "$pid" | tr -d " ")
        kill -HUP "$pid"
        log "reloaded nginx $pid ($dir)"
    done
    for pid in "${old[@]}"; do
        for _ in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
}

cmd_rotate_keys() {
    local kid old
    [ $# -eq 0 ] || die "rotate-keys takes no arguments"
    keys_prepare
    old=$(cat "$KEYS/signing")
    kid=k$(date -u +%Y%m%d%H%M%S)
    [ -e "$KEYS/$kid.key" ] && kid=$kid-$$
    (umask 077; openssl rand -base64 48 >"$KEYS/$kid.key")
    printf '%s\n' "$kid" >"$KEYS/signing"
    keys_write_conf
    if ! reload_all; then
        rm -f "$KEYS/$kid.key"
        printf '%s\n' "$old" >"$KEYS/signing"
        keys_write_conf
        die "nginx refused the new key; \"$old\" stays the signing key"
    fi
    log "new tokens are signed with key \"$kid\"; those of \"$old\" stay valid"
    log "until they expire (then: ./build.sh retire-key $old)"
    printf '%s\n' "$kid"
}

cmd_retire_key() {
    local kid=${1:-}
    [ $# -eq 1 ] || die "retire-key needs a key id (the names of $KEYS/*.key)"
    keys_prepare
    [ -f "$KEYS/$kid.key" ] || die "no key \"$kid\" in $KEYS"
    [ "$kid" != "$(cat "$KEYS/signing")" ] \
        || die "\"$kid\" signs new tokens: rotate-keys first"
    mv "$KEYS/$kid.key" "$KEYS/$kid.key.retired"
    keys_write_conf
    if ! reload_all; then
        mv "$KEYS/$kid.key.retired" "$KEYS/$kid.key"
        keys_write_conf
        die "nginx refused the configuration; \"$kid\" stays"
    fi
    rm -f "$KEYS/$kid.key.retired"
    log "key \"$kid\" retired: its tokens are refused"
}

# --------------------------------------------------------------- backups

BACKUPS=${SOCIAL_BACKUP_DIR:-$RUN/backups}

# the schema version this build migrates to
schema_version() {
    local f v=0
    for f in "$ROOT"/conf/migrations/[0-9]*.sql; do
        f=$(basename "$f")
        f=${f%%_*}
        [ $((10#$f)) -gt "$v" ] && v=$((10#$f))
    done
    printf '%s\n' "$v"
}

# the schema version recorded in a backup (its schema_migrations rows),
# empty when it has none
backup_version() {  # file
    pg_restore -a -t schema_migrations -f - "$1" 2>/dev/null \
        | awk -F'\t' '/^COPY / { rows = 1; next }
                      rows && /^\\\.$/ { rows = 0 }
                      rows && $1 + 0 > v { v = $1 + 0 }
                      END { if (v) print v }'
}

pg_answers() {
    psql_at "$RUN_PG_PORT" postgres -tAc 'SELECT 1' >/dev/null 2>&1
}

# pg_dump's custom format: one consistent snapshot (a repeatable-read
# transaction), compressed; written beside its final name and renamed, so
# a failed backup leaves no file that looks whole
cmd_backup() {
    local file=${1:-} v started started_ns ms size
    [ $# -le 1 ] || die "backup takes at most a file name"
    pg_answers || die "PostgreSQL does not answer on port $RUN_PG_PORT (./build.sh run starts it)"
    v=$(psql_at "$RUN_PG_PORT" social -tAc \
        'SELECT max(version) FROM schema_migrations' 2>/dev/null) \
        || die "database social has no schema_migrations: nothing to back up"
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    if [ -z "$file" ]; then
        mkdir -p "$BACKUPS"
        chmod 700 "$BACKUPS"
        file=$BACKUPS/social-$(date -u +%Y%m%dT%H%M%SZ)-v$v.dump
    fi
    [ -e "$file" ] && die "$file exists; choose another name"
    started_ns=$(date +%s%N)
    (umask 077
     pg_dump -h 127.0.0.1 -p "$RUN_PG_PORT" -U social -d social -Fc -Z 6 \
         -f "$file.partial") \
        || { rm -f "$file.partial"; die "pg_dump failed; no backup written"; }
    mv "$file.partial" "$file"
    size=$(stat -c %s "$file")
    ms=$((($(date +%s%N) - started_ns) / 1000000))
    log "backup $file: $(numfmt --to=iec-i --suffix=B "$size") ($size bytes), taken at $started, schema version $v, in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s"
    printf '%s\n' "$file"
}

# Checks FILE (whole, of this schema version), then restores it into a
# new database and swaps it in for "social": a refused or failed restore
# changes nothing.  The API must be stopped (no connection to "social").
cmd_restore() {
    local file=${1:-} want v n pgdata err
    [ $# -eq 1 ] || die "restore needs one backup file (./build.sh backup wrote it)"
    [ -f "$file" ] && [ -r "$file" ] || die "no readable backup file \"$file\""
    pg_restore -l "$file" >/dev/null 2>&1 \
        || die "$file is not a backup of pg_dump's custom format (or is cut short)"
    err=$(pg_restore -f /dev/null "$file" 2>&1) \
        || die "$file is truncated or damaged: ${err##*error: }"
    v=$(backup_version "$file")
    [ -n "$v" ] || die "$file holds no schema_migrations: not a backup of ngx_social"
    want=$(schema_version)
    [ "$v" = "$want" ] \
        || die "$file is of schema version $v, this build's schema is version $want: restore it with the build it was taken with"

    # a stopped instance is started, an empty one created (PostgreSQL and
    # Redis only)
    if ! pg_answers; then
        mkdir -p "$RUN/logs"
        chmod 755 "$RUN"
        pgdata=$(pg_datadir "$RUN")
        pg_start "$pgdata" "$RUN_PG_PORT" "$RUN/logs/postgresql.log"
        printf '%s\n' "$pgdata" >"$RUN/pgdata"
    fi
    redis-cli -p "$RUN_REDIS_PORT" ping 2>/dev/null | grep -q PONG \
        || redis_start "$RUN/redis" "$RUN_REDIS_PORT" yes

    # the connections of an API just stopped may take a moment to go
    n=$(psql_at "$RUN_PG_PORT" postgres -qtA <<'SQL'
DO $$ BEGIN
    FOR i IN 1..20 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity
                              WHERE datname = 'social');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT string_agg(DISTINCT coalesce(nullif(application_name, ''),
                                    'unnamed'), ', ')
FROM pg_stat_activity WHERE datname = 'social';
SQL
)
    [ -z "$n" ] || die "database social is in use ($n): stop the API first (./build.sh stop)"

    log "restoring $file (schema version $v)"
    PGOPTIONS='-c client_min_messages=warning' \
        psql_at "$RUN_PG_PORT" postgres -qc 'DROP DATABASE IF EXISTS social_restore' \
        -c 'CREATE DATABASE social_restore' >/dev/null
    if ! err=$(pg_restore -h 127.0.0.1 -p "$RUN_PG_PORT" -U social \
            -d social_restore --single-transaction --exit-on-error \
            --no-owner "$file" 2>&1)
    then
        psql_at "$RUN_PG_PORT" postgres -qc 'DROP DATABASE social_restore'
        die "the restore failed, database social is unchanged: $err"
    fi

    # Redis: every key of the application goes (caches, feeds, stream
    # replay, limits), so nothing read or cached after the backup
    # survives it; all of it is rebuilt from PostgreSQL on demand
    redis_forget "$RUN_REDIS_PORT" \
        || { psql_at "$RUN_PG_PORT" postgres -qc 'DROP DATABASE social_restore'
             die "Redis did not answer; database social is unchanged"; }

    psql_at "$RUN_PG_PORT" postgres -q -1 \
        -c 'ALTER DATABASE social RENAME TO social_replaced' \
        -c 'ALTER DATABASE social_restore RENAME TO social' \
        || die "database social is in use: stop the API first (./build.sh stop)"
    psql_at "$RUN_PG_PORT" postgres -qc 'DROP DATABASE social_replaced'
    log "restored: database social is as in $file; ./build.sh run serves it"
}

# deletes the application's keys (social:*) from Redis database 0
redis_forget() {    # port
    redis-cli -p "$1" --eval /dev/stdin , <<'LUA' >/dev/null
local cursor = '0'
repeat
    local r = redis.call('SCAN', cursor, 'MATCH', 'social:*', 'COUNT', 1000)
    cursor = r[1]
    if #r[2] > 0 then redis.call('UNLINK', unpack(r[2])) end
until cursor == '0'
return 1
LUA
}

# ----------------------------------------------------------------- image

# the configuration of the image: all interfaces, the keys, certificate
# and connection settings (PostgreSQL, Redis) from mounted secrets
IMAGE_ETC=/etc/ngx-social
IMAGE_PREFIX=/var/lib/ngx-social
IMAGE_MODULES=/usr/lib/nginx/modules

image_conf() {  # nginx|social
    R_LISTEN=8080
    R_TLS_LISTEN=8443
    R_TLS=$PROFILE_TLS
    R_TLS_CERT=$IMAGE_ETC/tls/tls.crt
    R_TLS_KEY=$IMAGE_ETC/tls/tls.key
    R_HTTPS_PORT=
    R_KEYS_CONF=$IMAGE_ETC/keys/keys.conf
    R_PG="include $IMAGE_ETC/secrets/connections.conf"
    R_REDIS=
    case $1 in
        social) render_social ;;
        # the JSON access log (its format is social.conf's, so after it)
        nginx) nginx_conf "$IMAGE_MODULES" /tmp/nginx.pid /tmp \
                   "$IMAGE_ETC/social.conf" \
                   | sed -e '/^    access_log logs\/access\.log;$/d' \
                         -e 's|^    include \(.*\);$|&\n    access_log logs/access.log social_json;|' ;;
    esac
}

image_profile() {   # [--profile NAME]
    case ${1:-} in
        '') profile_load production ;;
        --profile) [ $# -ge 2 ] || die "--profile needs a name"; profile_load "$2" ;;
        *) die "unknown option: $1 (--profile NAME)" ;;
    esac
}

# ./build.sh install DIR: the modules and the configuration under DIR as
# the image lays them out (the Dockerfile copies DIR to /); the logs are
# the container's stdout and stderr
cmd_install() {
    local dest=${1:-} so
    [ -n "$dest" ] || die "install needs a destination folder"
    shift
    image_profile "$@"
    for so in $(module_sos); do
        [ -f "$so" ] || die "$so is missing: ./build.sh build"
    done
    mkdir -p "$dest$IMAGE_MODULES" "$dest$IMAGE_ETC" "$dest$IMAGE_PREFIX/logs"
    module_sos | xargs install -m 644 -t "$dest$IMAGE_MODULES"
    image_conf nginx >"$dest$IMAGE_ETC/nginx.conf"
    image_conf social >"$dest$IMAGE_ETC/social.conf"
    ln -sf /dev/stderr "$dest$IMAGE_PREFIX/logs/error.log"
    ln -sf /dev/stdout "$dest$IMAGE_PREFIX/logs/access.log"
}

# ./build.sh k8s-config: the ConfigMap with the same two files
cmd_k8s_config() {
    local f
    image_profile "$@"
    cat <<EOF2
# The configuration of the pods: written by ./build.sh k8s-config
# (conf/social.conf, conf/tls.conf and conf/profiles/production.conf);
# t/074-manifests.t checks that it is up to date.
apiVersion: v1
kind: ConfigMap
metadata:
  name: ngx-social-config
  labels:
    app.kubernetes.io/name: ngx-social
data:
EOF2
    for f in nginx social; do
        printf '  %s.conf: |\n' "$f"
        image_conf $f | sed -e 's/^/    /' -e 's/^ *$//'
    done
}

# ---------------------------------------------------------------- test

TEST_TMP=

test_teardown() {
    [ -n "$TEST_TMP" ] || return 0
    redis_stop "$TEST_TMP/redis"
    pg_stop "$TEST_TMP/pg"
    pg_stop "$TEST_TMP/pg-tls"
    rm -rf "$TEST_TMP"
}

# A throw-away PostgreSQL and Redis, migrated, for tests and benchmarks,
# torn down on exit; the environment tells the suites where they are.
# Tests also get a second PostgreSQL with ssl=on that takes TLS
# connections only (TEST_NGINX_PG_TLS_*; its certificate, for localhost
# and 127.0.0.1, and the CA that signed it in TEST_NGINX_TLS_DIR).
scratch_services() {    # test | bench
    local mode=$1 so mods=""

    TEST_TMP=$(mktemp -d /tmp/ngx-social-$mode.XXXXXX)
    chmod 755 "$TEST_TMP"
    trap test_teardown EXIT

    # tests: the TLS server starts beside the other
    if [ "$mode" = test ]; then
        make_tls "$TEST_TMP/tls"
        { pg_start "$TEST_TMP/pg-tls" "$TEST_PG_TLS_PORT" \
              "$TEST_TMP/postgresql-tls.log" test "$TEST_TMP/tls"
          migrate_at "$TEST_PG_TLS_PORT" 2>/dev/null; } &
    fi
    pg_start "$TEST_TMP/pg" "$TEST_PG_PORT" "$TEST_TMP/postgresql.log" "$mode"
    redis_start "$TEST_TMP/redis" "$TEST_REDIS_PORT" no
    migrate_at "$TEST_PG_PORT"
    make_keys "$TEST_TMP/keys" "$mode"

    for so in $(module_sos) $(test_sos); do mods="$mods $so"; done

    export TEST_NGINX_BINARY=$NGINX
    export TEST_NGINX_LOAD_MODULES=${mods# }
    export TEST_NGINX_SERVROOT=$TEST_TMP/servroot
    export TEST_NGINX_CONF_DIR=$ROOT/conf
    export TEST_NGINX_PG_PORT=$TEST_PG_PORT
    export TEST_NGINX_PG_DATA=$TEST_TMP/pg
    export TEST_NGINX_PG_LOG=$TEST_TMP/postgresql.log
    TEST_NGINX_PG_OPTS=$(pg_opts "$TEST_TMP/pg" "$TEST_PG_PORT" "$mode")
    export TEST_NGINX_PG_OPTS
    export TEST_NGINX_REDIS_PORT=$TEST_REDIS_PORT
    export TEST_NGINX_KEYS_DIR=$TEST_TMP/keys
    export TEST_NGINX_PORT=${TEST_NGINX_PORT:-1984}

    [ "$mode" = test ] || return 0
    wait $! || die "the TLS PostgreSQL did not start ($TEST_TMP/postgresql-tls.log)"
    export TEST_NGINX_TLS_DIR=$TEST_TMP/tls
    export TEST_NGINX_PG_TLS_PORT=$TEST_PG_TLS_PORT
    export TEST_NGINX_PG_TLS_DATA=$TEST_TMP/pg-tls
    export TEST_NGINX_PG_TLS_LOG=$TEST_TMP/postgresql-tls.log
    TEST_NGINX_PG_TLS_OPTS=$(pg_opts "$TEST_TMP/pg-tls" "$TEST_PG_TLS_PORT" \
                             test tls)
    export TEST_NGINX_PG_TLS_OPTS
}

# the suites' PostgreSQL is the TLS one, reached with sslmode=verify-full
pg_tls_env() {
    export TEST_NGINX_PG_PORT=$TEST_NGINX_PG_TLS_PORT
    export TEST_NGINX_PG_DATA=$TEST_NGINX_PG_TLS_DATA
    export TEST_NGINX_PG_LOG=$TEST_NGINX_PG_TLS_LOG
    export TEST_NGINX_PG_OPTS=$TEST_NGINX_PG_TLS_OPTS
    export TEST_NGINX_PG_SSL="sslmode=verify-full sslrootcert=$TEST_NGINX_TLS_DIR/ca.crt"
}

cmd_test() {
    local memcheck=0 tls=0 files=() rc=0
    while [ $# -gt 0 ]; do
        case $1 in
            --memcheck) memcheck=1 ;;
            --pg-tls) tls=1 ;;
            -*) die "unknown test option: $1" ;;
            *) files+=("$1") ;;
        esac
        shift
    done

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

    [ ${#files[@]} -gt 0 ] || files=("$ROOT"/t/*.t)
    [ $tls -eq 0 ] || pg_tls_env
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
    deps)    cmd_deps "$@" ;;
    build)   cmd_build ;;
    migrate) cmd_migrate ;;
    run)     cmd_run "$@" ;;
    stop)    cmd_stop ;;
    deploy)  cmd_deploy "$@" ;;
    rotate-keys) cmd_rotate_keys "$@" ;;
    retire-key)  cmd_retire_key "$@" ;;
    backup)  cmd_backup "$@" ;;
    restore) cmd_restore "$@" ;;
    install) cmd_install "$@" ;;
    k8s-config) cmd_k8s_config "$@" ;;
    test)    cmd_test "$@" ;;
    bench)   cmd_bench "$@" ;;
    -h|--help|help) usage ;;
    *)       usage >&2; die "unknown command: $command" ;;
esac
