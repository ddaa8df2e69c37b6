# Streams, with a load client of our own (bench/stream_load.c, epoll):
# (a) STREAMS idle WebSocket streams of as many users on one node (2
#     workers): the workers' resident memory per stream (RSS after every
#     stream is open and replayed, minus RSS before; nginx restarted for
#     each run so that every run starts cold);
# (b) RATE messages/s to a group of MEMBERS users, every member connected
#     over WebSocket: delivery latency from send to receipt (p50, p99) and
#     whether every message reached every member;
# (c) a reconnect with ?since= that misses 1000 events: the time from the
#     handshake to the last replayed event.
# Users are rows made in SQL; the client mints their tokens with the
# bench's key.  Median of BENCH_RUNS runs.

. "$(dirname "$0")/lib.sh"

STREAMS=${STREAMS:-10000}
MEMBERS=${MEMBERS:-100}
RATE=${RATE:-200}
HOLD=${HOLD:-20}

BENCH_WORKER_CONNECTIONS=$((STREAMS + 1024))
BENCH_RLIMIT=$((2 * STREAMS + 4096))
ulimit -n $((STREAMS + 4096))

cc -O2 -Wall -Wextra -o "$BENCH_DIR/stream_load" \
    "$BENCH_SCRIPT_DIR/stream_load.c" -lcrypto

key=$TEST_NGINX_KEYS_DIR/main.key

psql_bench -c "INSERT INTO users (username, email)
    SELECT 'bench_s' || g, 'bench_s' || g || '@example.com'
    FROM generate_series(1, $STREAMS) g"
psql_bench -Atc "SELECT id FROM users WHERE username LIKE 'bench\_s%'
    ORDER BY id" >"$BENCH_DIR/ids"
head -n "$MEMBERS" "$BENCH_DIR/ids" >"$BENCH_DIR/members"

# the workers' resident memory, KiB
workers_rss() {
    ps --ppid "$(cat "$BENCH_DIR/nginx.pid")" -o rss= \
        | awk '{ s += $1 } END { print s }'
}

idle_once() {
    local before after out pid
    bench_nginx_start
    sleep 1
    before=$(workers_rss)
    out=$BENCH_DIR/idle.out
    "$BENCH_DIR/stream_load" idle "$BENCH_PORT" "$key" "$BENCH_DIR/ids" \
        "$STREAMS" "$HOLD" >"$out" &
    pid=$!
    for _ in $(seq 600); do
        grep -q '^open' "$out" 2>/dev/null && break
        sleep 0.2
    done
    sleep 3
    after=$(workers_rss)
    open=$(awk '/^open/ { print $2 }' "$out")
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    bench_nginx_stop
    sleep 1
    awk -v b="$before" -v a="$after" -v n="$open" 'BEGIN {
        printf "%.0f %s %s %s\n", (a - b) * 1024 / n, n, b, a }'
}

fanout_once() {
    "$BENCH_DIR/stream_load" fanout "$BENCH_PORT" "$key" \
        "$BENCH_DIR/members" "$conversation" "$RATE" "$BENCH_SECONDS" \
        | awk '{ for (i = 1; i < NF; i += 2) v[$i] = $(i + 1)
                 printf "%s %s %s %s %s %s %s\n", v["p99_ms"], v["p50_ms"],
                     v["max_ms"], v["received"], v["expected"], v["sent"],
                     v["rate"] }'
}

# (a) idle streams

printf '\nIdle WebSocket streams: %d users, one stream each, 2 workers\n' \
    "$STREAMS"
printf '%-8s %12s %10s %14s %14s\n' run bytes/stream streams \
    "RSS before KiB" "RSS after KiB"
idle=""
for i in $(seq "$BENCH_RUNS"); do
    r=$(idle_once)
    idle="$idle$r"$'\n'
    # shellcheck disable=SC2086
    printf '%-8s %12s %10s %14s %14s\n' "$i" $r
done
printf 'median bytes/stream: %s\n' \
    "$(printf '%s' "$idle" | sort -n | sed -n "$(( (BENCH_RUNS + 1) / 2 ))p" \
       | cut -d' ' -f1)"

# (b) fan-out to a group

bench_nginx_start
conversation=$(psql_bench -Atc "
    WITH c AS (INSERT INTO conversations (kind, title)
               VALUES ('group', 'bench') RETURNING id),
    m AS (INSERT INTO conversation_members (conversation_id, user_id, role)
          SELECT c.id, u.id, CASE WHEN u.id = (SELECT min(id) FROM users
              WHERE username LIKE 'bench\_s%') THEN 'admin' ELSE 'member' END
          FROM c, (SELECT id FROM users WHERE username LIKE 'bench\_s%'
                   ORDER BY id LIMIT $MEMBERS) u)
    SELECT id FROM c" | head -n 1)

printf '\nGroup of %d members, all connected, %d messages/s for %d s\n' \
    "$MEMBERS" "$RATE" "$BENCH_SECONDS"
printf '%-8s %9s %9s %9s %10s %10s %7s %9s\n' run p99_ms p50_ms max_ms \
    received expected sent "msg/s"
fan=""
for i in $(seq "$BENCH_RUNS"); do
    r=$(fanout_once)
    fan="$fan$r"$'\n'
    # shellcheck disable=SC2086
    printf '%-8s %9s %9s %9s %10s %10s %7s %9s\n' "$i" $r
done
printf 'median run (by p99): %s\n' \
    "$(printf '%s' "$fan" | sort -n | sed -n "$(( (BENCH_RUNS + 1) / 2 ))p")"

# (c) replay of 1000 missed events (stored as ngx_social_events.c does)

user=$(head -n 1 "$BENCH_DIR/ids")
event='{"event" : "message.created", "data" : {"id" : "254918366655938585", "conversation_id" : "254918362306445327", "sender_id" : "254918352592437249", "text" : "a message of a typical length, with a few words in it", "created_at" : "2026-12-05T10:00:00.123Z"}}'
base=$(redis-cli -p "$TEST_NGINX_REDIS_PORT" EVAL "
    local prev = redis.call('GET', KEYS[2]) or '0-0'
    local base = redis.call('XADD', KEYS[1], '*', 'p', prev, 'e', ARGV[2])
    prev = base
    for i = 1, tonumber(ARGV[1]) do
        prev = redis.call('XADD', KEYS[1], '*', 'p', prev, 'e', ARGV[2])
    end
    redis.call('SET', KEYS[2], prev)
    redis.call('PEXPIRE', KEYS[1], 3600000)
    return base" 2 "social:ev:$user" "social:evl:$user" 1000 "$event")
since=$(( ${base%-*} * 1000000 + ${base#*-} ))

printf '\nReplay: a reconnect with since= that missed 1000 events\n'
rep=""
for i in $(seq "$BENCH_RUNS"); do
    r=$("$BENCH_DIR/stream_load" replay "$BENCH_PORT" "$key" "$BENCH_DIR/ids" \
        "$since" 1000 | awk '{ print $4, $2 }')
    rep="$rep$r"$'\n'
    printf 'run %s: %s ms for %s events\n' "$i" ${r% *} ${r#* }
done
printf 'median: %s ms\n' \
    "$(printf '%s' "$rep" | sort -n | sed -n "$(( (BENCH_RUNS + 1) / 2 ))p" \
       | cut -d' ' -f1)"
