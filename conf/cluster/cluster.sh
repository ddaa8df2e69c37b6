#!/usr/bin/env bash
#
# The split deployment on one machine: a gateway nginx in front of two
# instances each of the users, posts and chat services, in a blue and a
# green set; one set is live, the other stands by.  ./build.sh run
# --cluster, stop and deploy call this; the cluster test too.
#
#   cluster.sh start            the gateway (blue live) and both sets
#   cluster.sh deploy COLOUR    reload COLOUR's instances (the current
#                               build and configuration, gracefully) and
#                               wait until they are ready, then switch the
#                               gateway to them with a graceful reload; the
#                               other set stands by (a deploy back to it
#                               is the rollback)
#   cluster.sh stop             everything, by pid
#
# The instances listen on 127.0.0.2, where no client connection's
# ephemeral end holds their ports (clients of 127.0.0.1 use 127.0.0.1), and
# both sets bind them when the cluster starts, before any load.
#
# Environment: CLUSTER_DIR (state and logs), CLUSTER_HTTP_PORT (the
# gateway, on 127.0.0.1), CLUSTER_PORT_BASE (instance ports on 127.0.0.2:
# blue base+1..6, green base+11..16), CLUSTER_PG_PORT, CLUSTER_REDIS_PORT, CLUSTER_KEYS (the
# token keys folder), CLUSTER_MODULES (the .so files, core first).
set -euo pipefail

CONF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NGINX=${CLUSTER_NGINX:-/usr/sbin/nginx}
DIR=${CLUSTER_DIR:?}

# deploy and stop act on the cluster as it was started
if [ "${1:-}" != start ] && [ -f "$DIR/settings" ]; then
    # shellcheck disable=SC1091
    . "$DIR/settings"
fi
ROLES=(users users posts posts chat chat)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

colour_offset() {
    case $1 in
        blue) echo 0 ;;
        green) echo 10 ;;
        *) die "unknown colour \"$1\" (blue or green)" ;;
    esac
}

# the templates' ports (8080, 15432, 16379, 91NN), key and web folders,
# ours; the folder's keys.conf (build.sh's rotated keys) when it has one,
# in place of the template's key (before the folder is put in its path)
localize() {    # file
    local subst=() nn
    for nn in 01 02 03 04 05 06 11 12 13 14 15 16; do
        subst+=(-e "s/127\.0\.0\.2:91$nn\([; ]\)/127.0.0.2:$((CLUSTER_PORT_BASE + 10#$nn))\1/")
    done
    [ -f "$CLUSTER_KEYS/keys.conf" ] && subst+=(
        -e "s|^social_jwt_key main keys/main\.key;|include $CLUSTER_KEYS/keys.conf;|")
    sed "${subst[@]}" \
        -e "s/127\.0\.0\.1:8080/127.0.0.1:$CLUSTER_HTTP_PORT/" \
        -e "s/port=15432/port=$CLUSTER_PG_PORT/" \
        -e "s/127\.0\.0\.1:16379/127.0.0.1:$CLUSTER_REDIS_PORT/" \
        -e "s| keys/| $CLUSTER_KEYS/|" \
        -e "s| web/;| $CONF/../../web/;|" "$1"
}

nginx_conf() { # name workers
    local name=$1 so
    for so in $CLUSTER_MODULES; do printf 'load_module %s;\n' "$so"; done
    cat <<CONF
worker_processes $2;
thread_pool default threads=2;
pid $DIR/$name/nginx.pid;
error_log $DIR/$name/logs/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path $DIR/$name/tmp/body;
    proxy_temp_path $DIR/$name/tmp/proxy;
    fastcgi_temp_path $DIR/$name/tmp/fastcgi;
    uwsgi_temp_path $DIR/$name/tmp/uwsgi;
    scgi_temp_path $DIR/$name/tmp/scgi;
    include $DIR/$name/social.conf;
}
CONF
}

running() {     # name
    [ -f "$DIR/$1/nginx.pid" ] && kill -0 "$(cat "$DIR/$1/nginx.pid")" 2>/dev/null
}

write_conf() {  # name port role workers conf
    local name=$1 port=$2 role=$3
    mkdir -p "$DIR/$name/logs" "$DIR/$name/tmp"
    nginx_conf "$name" "$4" >"$DIR/$name/nginx.conf"
    localize "$5" | sed -e "s/127\.0\.0\.2:9100;/127.0.0.2:$port;/" \
        -e "s|include role.conf;|include $CONF/$role.conf;|" \
        -e "s|include upstreams.conf;|include $DIR/upstreams.conf;|" \
        >"$DIR/$name/social.conf"
}

# a loopback port can be held for a moment by a client connection's
# ephemeral end: nginx retries for 2.5 s, then this a few times more
start_one() {   # name port role workers conf
    local try
    write_conf "$@"
    for try in 1 2 3 4; do
        "$NGINX" -q -p "$DIR/$1/" -c "$DIR/$1/nginx.conf" 2>>"$DIR/$1/logs/start.log" \
            && return 0
        sleep 1
    done
    die "$1 did not start (see $DIR/$1/logs/error.log and start.log)"
}

# the workers of a running nginx
workers() {     # name
    ps -o pid= --ppid "$(cat "$DIR/$1/nginx.pid")" | tr -d ' '
}

# a graceful reload: new workers start, the old ones finish and exit
reload_one() {  # name
    local old pid
    old=$(workers "$1")
    "$NGINX" -q -t -p "$DIR/$1/" -c "$DIR/$1/nginx.conf" \
        || die "$1: the new configuration is not valid"
    kill -HUP "$(cat "$DIR/$1/nginx.pid")"
    for pid in $old; do
        for _ in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
}

ready() {       # port
    local i
    for i in $(seq 100); do
        curl -fs "http://$1/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

instance_port() {   # colour i
    echo $((CLUSTER_PORT_BASE + $(colour_offset "$1") + $2))
}

# each instance of the colour started, or reloaded with the current build
start_colour() {    # colour [reload]
    local colour=$1 i name
    for i in 1 2 3 4 5 6; do
        name=$colour-$i
        if ! running "$name"; then
            start_one "$name" "$(instance_port "$colour" $i)" \
                "${ROLES[$((i - 1))]}" 1 "$CONF/service.conf"
        elif [ -n "${2:-}" ]; then
            write_conf "$name" "$(instance_port "$colour" $i)" \
                "${ROLES[$((i - 1))]}" 1 "$CONF/service.conf"
            reload_one "$name" &
        fi
    done
    wait
    for i in 1 2 3 4 5 6; do
        ready "127.0.0.2:$(instance_port "$colour" $i)" \
            || die "$colour-$i is not ready (see $DIR/$colour-$i/logs/error.log)"
    done
}

stop_one() {    # name
    local pidf=$DIR/$1/nginx.pid pid
    [ -f "$pidf" ] || return 0
    pid=$(cat "$pidf")
    kill -QUIT "$pid" 2>/dev/null || { rm -f "$pidf"; return 0; }
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$pid" 2>/dev/null || true
    rm -f "$pidf"
}

stop_colour() {
    local i
    for i in 1 2 3 4 5 6; do stop_one "$1-$i" & done
    wait
}

cmd_start() {
    local colour
    mkdir -p "$DIR"
    declare -p CLUSTER_HTTP_PORT CLUSTER_PORT_BASE CLUSTER_PG_PORT \
        CLUSTER_REDIS_PORT CLUSTER_KEYS CLUSTER_MODULES >"$DIR/settings"
    colour=$(cat "$DIR/live" 2>/dev/null || echo blue)
    colour_offset "$colour" >/dev/null
    start_colour blue
    start_colour green
    localize "$CONF/upstreams-$colour.conf" >"$DIR/upstreams.conf"
    printf '%s\n' "$colour" >"$DIR/live"
    running gateway || start_one gateway "$CLUSTER_HTTP_PORT" none 2 \
        "$CONF/gateway.conf"
    ready "127.0.0.1:$CLUSTER_HTTP_PORT" || die "the gateway is not ready"
    log "cluster: gateway on http://127.0.0.1:$CLUSTER_HTTP_PORT/, $colour live"
}

cmd_deploy() {
    local colour=${1:-} live
    [ -n "$colour" ] || die "deploy needs a colour: blue or green"
    colour_offset "$colour" >/dev/null
    running gateway || die "the cluster is not running (./build.sh run --cluster)"
    live=$(cat "$DIR/live")
    if [ "$colour" = "$live" ]; then
        log "$colour is live already"
        return 0
    fi

    log "reloading the $colour instances with the current build"
    start_colour "$colour" reload

    localize "$CONF/upstreams-$colour.conf" >"$DIR/upstreams.conf"
    printf '%s\n' "$colour" >"$DIR/live"

    log "switching the gateway to $colour (graceful reload)"
    if ! (reload_one gateway); then
        localize "$CONF/upstreams-$live.conf" >"$DIR/upstreams.conf"
        printf '%s\n' "$live" >"$DIR/live"
        die "the gateway was not switched; $live stays live"
    fi

    log "$colour is live; $live stands by"
}


cmd_stop() {
    local name
    [ -d "$DIR" ] || return 0
    stop_one gateway
    for name in "$DIR"/*/nginx.pid; do
        [ -e "$name" ] || continue
        stop_one "$(basename "$(dirname "$name")")" &
    done
    wait
}

case ${1:-} in
    start) cmd_start ;;
    deploy) shift; cmd_deploy "$@" ;;
    stop) cmd_stop ;;
    *) die "usage: cluster.sh start | deploy blue|green | stop" ;;
esac
