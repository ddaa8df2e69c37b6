-- A realistic data set for benchmarks and index checks: 10,000 users,
-- 200 follows each, 100,000 posts (a tenth of them replies, a twentieth
-- shares), 200,000 likes, notifications, and 2,000 conversations with
-- 100,000 messages.  Ids are set explicitly in ranges of their own, as
-- time-ordered ids would order them.

BEGIN;

INSERT INTO users (id, username, email, display_name)
SELECT g, 'user' || g, 'user' || g || '@example.com', 'User ' || g
FROM generate_series(1, 10000) g;

INSERT INTO credentials (user_id, password_hash)
SELECT id, '$scrypt$ln=15,r=8,p=1$c2VlZA$aGFzaA' FROM users;

-- each user follows the 200 users after it (wrapping around)
INSERT INTO follows (follower_id, followee_id, id)
SELECT u, 1 + (u + k - 1) % 10000, 1000000 + (u - 1) * 200 + k
FROM generate_series(1, 10000) u, generate_series(1, 200) k;

INSERT INTO posts (id, author_id, text, reply_to_id, share_of_id)
SELECT 10000000 + g, 1 + (g * 7919) % 10000,
       'post number ' || g || ' with some text in it',
       CASE WHEN g % 10 = 0 AND g > 100 THEN 10000000 + g - 50 END,
       CASE WHEN g % 20 = 5 AND g > 100 THEN 10000000 + g - 99 END
FROM generate_series(1, 100000) g;

INSERT INTO likes (post_id, user_id, id)
SELECT 10000000 + 1 + (g * 31) % 100000, 1 + (g * 17) % 10000, 20000000 + g
FROM generate_series(1, 200000) g
ON CONFLICT DO NOTHING;

INSERT INTO notifications (id, user_id, type, actor_id, post_id)
SELECT 30000000 + g, 1 + g % 10000, 'like', 1 + (g + 1) % 10000,
       10000000 + 1 + g % 100000
FROM generate_series(1, 200000) g;

INSERT INTO conversations (id, kind, direct_key, last_activity_id)
SELECT 40000000 + g, 'direct', g || ':' || (g + 1), 40000000 + g
FROM generate_series(1, 2000) g;

INSERT INTO conversation_members (conversation_id, user_id)
SELECT 40000000 + g, u
FROM generate_series(1, 2000) g, LATERAL (VALUES (g), (g + 1)) m(u);

INSERT INTO messages (id, conversation_id, sender_id, text)
SELECT 50000000 + g, 40000000 + 1 + g % 2000, 1 + g % 2000 + g % 2,
       'message ' || g
FROM generate_series(1, 100000) g;

-- the counters the API keeps, as the rows above imply
UPDATE users u SET followers_count = f.n
FROM (SELECT followee_id, count(*) n FROM follows GROUP BY 1) f
WHERE u.id = f.followee_id;

UPDATE users u SET following_count = f.n
FROM (SELECT follower_id, count(*) n FROM follows GROUP BY 1) f
WHERE u.id = f.follower_id;

UPDATE users u SET posts_count = p.n
FROM (SELECT author_id, count(*) n FROM posts GROUP BY 1) p
WHERE u.id = p.author_id;

UPDATE posts p SET likes_count = l.n
FROM (SELECT post_id, count(*) n FROM likes GROUP BY 1) l
WHERE p.id = l.post_id;

UPDATE posts p SET replies_count = c.n
FROM (SELECT reply_to_id, count(*) n FROM posts
      WHERE reply_to_id IS NOT NULL GROUP BY 1) c
WHERE p.id = c.reply_to_id;

UPDATE posts p SET shares_count = c.n
FROM (SELECT share_of_id, count(*) n FROM posts
      WHERE share_of_id IS NOT NULL GROUP BY 1) c
WHERE p.id = c.share_of_id;

COMMIT;

ANALYZE;
