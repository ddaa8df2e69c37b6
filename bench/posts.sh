# Posts on the data set of seed.sql (10,000 users following 200 each,
# 100,000 posts) plus a star followed by all 10,000: GET /v1/posts/{id}
# (cached, with the viewer's flags), GET /v1/feed of 20 posts warm (the
# cached feed) and cold (every user's first read, rebuilt from
# PostgreSQL), POST /v1/posts by an ordinary user (200 followers, fanned
# out before the answer) and by the star (10,000 followers, after it),
# POST like; with the nginx "return 200" ceiling of the same run and the
# workers' resident memory.  nginx: 2 workers; wrk -t2 -c50.

. "$(dirname "$0")/lib.sh"

CONNS=50
STAR=10001

psql_bench -f "$BENCH_SCRIPT_DIR/seed.sql" >/dev/null
psql_bench <<SQL >/dev/null
INSERT INTO users (id, username, email, display_name)
VALUES ($STAR, 'star', 'star@example.com', 'Star');
INSERT INTO follows (follower_id, followee_id, id)
SELECT u, $STAR, 5000000 + u FROM generate_series(1, 10000) u;
UPDATE users SET followers_count = 10000 WHERE id = $STAR;
UPDATE users SET following_count = following_count + 1 WHERE id <= 10000;
ANALYZE;
SQL

bench_nginx_start

# access tokens of users 1..10000 and the star, signed with the test key
# (HS256, as nginx issues them)
perl -MDigest::SHA=hmac_sha256 -MMIME::Base64 -e '
    sub b64u { my $s = encode_base64(shift, ""); $s =~ tr{+/}{-_};
               $s =~ s/=+$//; return $s }
    open my $f, "<", $ARGV[0] or die; local $/; my $key = <$f>;
    $key =~ s/[\r\n]+\z//;
    my $h = b64u(q({"alg":"HS256","typ":"JWT","kid":"main"}));
    my $now = time;
    for my $id (1 .. 10000, $ARGV[1]) {
        my $p = b64u(sprintf q({"sub":"%d","iat":%d,"exp":%d,"jti":"%032x"}),
                     $id, $now, $now + 3600, $id);
        print "$h.$p.", b64u(hmac_sha256("$h.$p", $key)), "\n";
    }' "$TEST_NGINX_KEYS_DIR/main.key" "$STAR" >"$BENCH_DIR/tokens"

api="http://127.0.0.1:$BENCH_PORT"
tail -n 1 "$BENCH_DIR/tokens" >"$BENCH_DIR/star"
head -n 20 "$BENCH_DIR/tokens" >"$BENCH_DIR/viewers"
head -n 200 "$BENCH_DIR/tokens" >"$BENCH_DIR/readers"
seq 10000001 10000500 >"$BENCH_DIR/hot"
seq 10000001 10100000 >"$BENCH_DIR/all"

curl -fs "$api/v1/users/me" \
     -H "Authorization: Bearer $(head -n 1 "$BENCH_DIR/tokens")" >/dev/null \
    || { echo "a minted token was refused" >&2; exit 1; }

# request(): a random token of the first file, and for GET /v1/posts or
# POST like a random post id of the second
cat >"$BENCH_DIR/req.lua" <<'LUA'
local tokens, ids = {}, {}
local method, path, body

function init(args)
    for l in io.lines(args[1]) do tokens[#tokens + 1] = l end
    if args[2] ~= "-" then
        for l in io.lines(args[2]) do ids[#ids + 1] = l end
    end
    method, path = args[3], args[4]
    if method == "POST" and path == "/v1/posts" then
        body = '{"text":"a benchmark post of some forty characters"}'
    end
    math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
    local p = path
    if #ids > 0 then
        p = string.format(path, ids[math.random(#ids)])
    end
    return wrk.format(method, p, {
        ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)],
        ["Content-Type"] = "application/json" }, body)
end
LUA

# each user once, in order: every feed read is a first one
cat >"$BENCH_DIR/cold.lua" <<'LUA'
local tokens, i, step = {}, 0, 1
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("first", counter)
end

function init(args)
    for l in io.lines(args[1]) do tokens[#tokens + 1] = l end
    step = tonumber(args[2])
    i = first - 1 - step
end

function request()
    i = i + step
    if i >= #tokens - 1 then
        wrk.thread:stop()
        i = 0
    end
    return wrk.format("GET", "/v1/feed", {
        ["Authorization"] = "Bearer " .. tokens[i + 1] })
end
LUA

# wrk_req NAME TOKENS IDS METHOD PATH: the median run, "rps p50 p99 bad"
wrk_req() {
    local out
    out=$(median_of "$BENCH_RUNS" wrk_script "$api/" $CONNS "$2" "$3" "$4" "$5")
    printf '%s\n' "$out"
}

wrk_script() {  # url conns tokens ids method path
    local out
    out=$(wrk -t2 -c"$2" -d"${BENCH_SECONDS}s" --latency \
          -s "$BENCH_DIR/req.lua" "$1" -- "$3" "$4" "$5" "$6")
    wrk_parse <<<"$out"
}

wrk_parse() {
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
    '
}

warm() {        # tokens ids method path: 3 s, not measured
    wrk -t2 -c$CONNS -d3s -s "$BENCH_DIR/req.lua" "$api/" \
        -- "$1" "$2" "$3" "$4" >/dev/null
}

rss_kb() {
    local pids
    pids=$(pgrep -P "$(cat "$BENCH_DIR/nginx.pid")" | tr '\n' ',')
    ps -o rss= -p "${pids%,}" | awk '{ s += $1 } END { print s }'
}

base=$(median_of "$BENCH_RUNS" wrk_once "http://127.0.0.1:$BASE_PORT/" $CONNS)

warm "$BENCH_DIR/viewers" "$BENCH_DIR/hot" GET "/v1/posts/%s"
get=$(wrk_req get "$BENCH_DIR/viewers" "$BENCH_DIR/hot" GET "/v1/posts/%s")

warm "$BENCH_DIR/readers" - GET /v1/feed
feed=$(wrk_req feed "$BENCH_DIR/readers" - GET /v1/feed)

cold_runs=()
for _ in $(seq "$BENCH_RUNS"); do
    redis-cli -p "$TEST_NGINX_REDIS_PORT" INCR social:epoch >/dev/null
    cold_runs+=("$(wrk -t2 -c$CONNS -d60s --latency -s "$BENCH_DIR/cold.lua" \
                   "$api/" -- "$BENCH_DIR/tokens" 2 | wrk_parse)")
done
cold=$(printf '%s\n' "${cold_runs[@]}" | sort -n -k1,1 \
       | sed -n "$(( (BENCH_RUNS + 1) / 2 ))p")

like=$(wrk_req like "$BENCH_DIR/tokens" "$BENCH_DIR/all" POST \
       "/v1/posts/%s/like")
write=$(wrk_req post "$BENCH_DIR/tokens" - POST /v1/posts)

# the star's posts: one author's posts queue on its row (posts_count) and
# its fan-out runs after the answers; the backlog is drained and timed
# before anything else is measured
star=$(wrk_req star "$BENCH_DIR/star" - POST /v1/posts)
start=$(date +%s%N)
newest=$(curl -fs "$api/v1/users/$STAR/posts?limit=1" \
         | sed 's/{"items":\[{"id":"\([0-9]*\)".*/\1/')
for _ in $(seq 600); do
    curl -fs "$api/v1/feed?limit=1" -H "Authorization: Bearer $(sed -n \
         '150p' "$BENCH_DIR/tokens")" | grep -q "\"id\":\"$newest\"" && break
    sleep 0.1
done
drained=$(( ($(date +%s%N) - start) / 1000000 ))
stars=$(curl -fs "$api/v1/users/$STAR" | sed 's/.*"posts_count":\([0-9]*\).*/\1/')
rss=$(rss_kb)

# one post of an ordinary user and one of the star, the queue idle: how
# long until they are answered, and the star's in a follower's feed
sleep 2
ordinary=$(curl -fs -o /dev/null -w '%{time_total}' -XPOST "$api/v1/posts" \
    -H "Authorization: Bearer $(sed -n '151p' "$BENCH_DIR/tokens")" \
    -d '{"text":"once"}' | awk '{ printf "%d", $1 * 1000 }')
for t in $(seq 101 150); do
    curl -fs "$api/v1/feed" -H "Authorization: Bearer $(sed -n "${t}p" \
         "$BENCH_DIR/tokens")" >/dev/null
done
start=$(date +%s%N)
id=$(curl -fs -XPOST "$api/v1/posts" -H "Authorization: Bearer \
$(cat "$BENCH_DIR/star")" -d '{"text":"to all"}' \
    | sed 's/{"id":"\([0-9]*\)".*/\1/')
answered=$(( ($(date +%s%N) - start) / 1000000 ))
last=$(sed -n '150p' "$BENCH_DIR/tokens")
for _ in $(seq 200); do
    curl -fs "$api/v1/feed?limit=1" -H "Authorization: Bearer $last" \
        | grep -q "\"id\":\"$id\"" && break
    sleep 0.01
done
reached=$(( ($(date +%s%N) - start) / 1000000 ))
lost=$(grep -c 'fell behind' "$BENCH_DIR/logs/error.log" || true)

row() {
    read -r rps p50 p99 bad <<<"$2"
    printf '%-46s %10s %9s %9s %6s %7s\n' "$1" "$rps" "$p50" "$p99" \
        "${bad:-0}" "$(awk "BEGIN { split(\"$base\", b, \" \");
                                    printf \"%.3f\", $rps / b[1] }")"
}

printf '\nPosts, median of %d runs of %d s (wrk -t2 -c%d)\n' \
    "$BENCH_RUNS" "$BENCH_SECONDS" "$CONNS"
printf '%-46s %10s %9s %9s %6s %7s\n' "" "req/s" "p50 ms" "p99 ms" \
    "non2xx" "/ceil"
row "nginx return 200 (ceiling)" "$base"
row "GET /v1/posts/{id} (cached, viewer flags)" "$get"
row "GET /v1/feed, 20 posts (cached feed)" "$feed"
row "GET /v1/feed, 20 posts (cold: rebuilt)" "$cold"
row "POST /v1/posts (200 followers, sync)" "$write"
row "POST /v1/posts (10,000 followers, async)" "$star"
row "POST /v1/posts/{id}/like" "$like"
printf 'workers resident memory after the runs: %s KiB\n' "$rss"
printf 'star: %s posts; their fan-out to 10,000 feeds drained %s ms after '\
'the load ended\n' "$stars" "$drained"
printf 'one post when idle: ordinary user answered in %s ms; star answered in '\
'%s ms, in a follower feed after %s ms\n' "$ordinary" "$answered" "$reached"
printf 'fan-out fell behind (cache epoch moved): %s times\n' "$lost"
