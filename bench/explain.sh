# Index check: the API's queries on the realistic data set of seed.sql,
# each with EXPLAIN ANALYZE; fails if any plan scans a large table whole.

. "$(dirname "$0")/lib.sh"

psql_bench -f "$BENCH_SCRIPT_DIR/seed.sql" >/dev/null

check() {   # title, query
    local plan
    plan=$(psql_bench -tA -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING ON) $2")
    if grep -q "Seq Scan" <<<"$plan"; then
        printf 'FAIL %-40s (sequential scan)\n%s\n' "$1" "$plan"
        return 1
    fi
    printf 'ok   %-40s %s\n' "$1" \
        "$(grep -o 'Execution Time: .*' <<<"$plan")"
}

rc=0
check "user by username" \
    "SELECT id FROM users WHERE lower(username) = lower('User4242')" || rc=1
check "user by email" \
    "SELECT id FROM users WHERE lower(email) = lower('user42@example.com')" || rc=1
check "followers page" \
    "SELECT follower_id FROM follows WHERE followee_id = 4242 AND id < 9000000 ORDER BY id DESC LIMIT 21" || rc=1
check "following page" \
    "SELECT followee_id FROM follows WHERE follower_id = 4242 ORDER BY id DESC LIMIT 21" || rc=1
check "relationship" \
    "SELECT 1 FROM follows WHERE follower_id = 42 AND followee_id = 43" || rc=1
check "author's posts page" \
    "SELECT id FROM posts WHERE author_id = 4242 AND deleted_at IS NULL ORDER BY id DESC LIMIT 21" || rc=1
check "feed rebuild (200 followees)" \
    "SELECT id FROM posts WHERE author_id = ANY (ARRAY(SELECT followee_id FROM follows WHERE follower_id = 4242) || 4242::bigint) AND deleted_at IS NULL ORDER BY id DESC LIMIT 500" || rc=1
check "replies page" \
    "SELECT id FROM posts WHERE reply_to_id = 10000950 AND deleted_at IS NULL ORDER BY id DESC LIMIT 21" || rc=1
check "likers page" \
    "SELECT user_id FROM likes WHERE post_id = 10004242 ORDER BY id DESC LIMIT 21" || rc=1
check "viewer's liked flags (20 posts)" \
    "SELECT post_id FROM likes WHERE user_id = 42 AND post_id = ANY (ARRAY(SELECT generate_series(10000001, 10000020)::bigint))" || rc=1
check "viewer's share of a post" \
    "SELECT id FROM posts WHERE author_id = 42 AND share_of_id = 10000005 AND deleted_at IS NULL" || rc=1
check "notifications page" \
    "SELECT id FROM notifications WHERE user_id = 4242 ORDER BY id DESC LIMIT 21" || rc=1
check "mark notifications read" \
    "SELECT count(*) FROM notifications WHERE user_id = 4242 AND id <= 40000000 AND NOT read" || rc=1
check "conversation list (by newest message)" \
    "SELECT c.id FROM conversation_members me JOIN LATERAL (SELECT cv.id, COALESCE((SELECT max(m.id) FROM messages m WHERE m.conversation_id = cv.id), cv.last_activity_id) AS act FROM conversations cv WHERE cv.id = me.conversation_id) c ON true WHERE me.user_id = 42 ORDER BY c.act DESC LIMIT 21" || rc=1
check "last message of a conversation" \
    "SELECT id FROM messages WHERE conversation_id = 40000042 ORDER BY id DESC LIMIT 1" || rc=1
check "direct conversation of a pair" \
    "SELECT id FROM conversations WHERE direct_key = '42:43'" || rc=1
check "message history page" \
    "SELECT id FROM messages WHERE conversation_id = 40000042 ORDER BY id DESC LIMIT 21" || rc=1
check "unread count" \
    "SELECT count(*) FROM messages WHERE conversation_id = 40000042 AND id > 50000000 AND sender_id <> 42" || rc=1
exit $rc
