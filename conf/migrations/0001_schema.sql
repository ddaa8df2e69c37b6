-- The system of record.  Applied by ./build.sh migrate, once, in one
-- transaction, and recorded in schema_migrations.

-- Ids are 64-bit and time-ordered: milliseconds since 2025-01-01 in the
-- high bits, a sequence in the low 22, so a newer row has a larger id and
-- ids double as pagination cursors on every node.
CREATE SEQUENCE social_id_seq;

CREATE FUNCTION social_next_id() RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT ((floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
             - 1735689600000) << 22)
           | (nextval('social_id_seq') % 4194304)
$$;

CREATE TABLE users (
    id               bigint PRIMARY KEY DEFAULT social_next_id(),
    username         text NOT NULL,
    email            text NOT NULL,
    display_name     text NOT NULL DEFAULT '',
    bio              text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    followers_count  integer NOT NULL DEFAULT 0,
    following_count  integer NOT NULL DEFAULT 0,
    posts_count      integer NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- A password hash in PHC form (algorithm, parameters, salt, hash), so the
-- parameters can be raised and old hashes upgraded at the next login.
-- tokens_valid_after voids every access token issued before it.
CREATE TABLE credentials (
    user_id             bigint PRIMARY KEY
                        REFERENCES users (id) ON DELETE CASCADE,
    password_hash       text NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    tokens_valid_after  timestamptz NOT NULL DEFAULT '-infinity'
);

-- Refresh tokens are stored hashed.  Each use rotates: the old row gets
-- rotated_at; presenting a rotated token revokes its whole family.
CREATE TABLE refresh_tokens (
    id          bigint PRIMARY KEY DEFAULT social_next_id(),
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   bigint NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked_at  timestamptz
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Revoked access tokens, until they would have expired anyway: the truth
-- that Redis and every worker mirror.
CREATE TABLE revoked_tokens (
    jti         text PRIMARY KEY,
    user_id     bigint NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);

CREATE TABLE follows (
    follower_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id           bigint NOT NULL DEFAULT social_next_id(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);

-- followers of a user, newest first; following of a user, newest first
CREATE INDEX follows_followee ON follows (followee_id, id DESC);
CREATE UNIQUE INDEX follows_follower ON follows (follower_id, id DESC);

-- A share is a post with share_of_id; a reply has reply_to_id.  Deleted
-- posts keep their row (deleted_at) so counters and ids stay stable, and
-- are 404 everywhere.
CREATE TABLE posts (
    id             bigint PRIMARY KEY DEFAULT social_next_id(),
    author_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text           text NOT NULL DEFAULT '',
    reply_to_id    bigint REFERENCES posts (id),
    share_of_id    bigint REFERENCES posts (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    likes_count    integer NOT NULL DEFAULT 0,
    shares_count   integer NOT NULL DEFAULT 0,
    replies_count  integer NOT NULL DEFAULT 0
);

CREATE INDEX posts_author ON posts (author_id, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX posts_replies ON posts (reply_to_id, id DESC)
    WHERE reply_to_id IS NOT NULL AND deleted_at IS NULL;
CREATE UNIQUE INDEX posts_one_share ON posts (author_id, share_of_id)
    WHERE share_of_id IS NOT NULL AND deleted_at IS NULL;

CREATE TABLE likes (
    post_id     bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id          bigint NOT NULL DEFAULT social_next_id(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);

-- likers of a post, newest first
CREATE UNIQUE INDEX likes_post ON likes (post_id, id DESC);
CREATE INDEX likes_user ON likes (user_id, post_id);

CREATE TABLE notifications (
    id               bigint PRIMARY KEY DEFAULT social_next_id(),
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type             text NOT NULL CHECK (type IN ('follow', 'like', 'share',
                                                   'reply', 'mention',
                                                   'message')),
    actor_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id          bigint,
    conversation_id  bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    read             boolean NOT NULL DEFAULT false,
    CHECK (user_id <> actor_id)
);

CREATE INDEX notifications_user ON notifications (user_id, id DESC);

CREATE TABLE conversations (
    id                bigint PRIMARY KEY DEFAULT social_next_id(),
    kind              text NOT NULL CHECK (kind IN ('direct', 'group')),
    title             text,
    -- "low:high" user ids of a direct conversation: one per pair
    direct_key        text UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_message_id   bigint,
    last_activity_id  bigint NOT NULL DEFAULT social_next_id(),
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

-- Membership, role and the read marker (the last message read).
CREATE TABLE conversation_members (
    conversation_id    bigint NOT NULL
                       REFERENCES conversations (id) ON DELETE CASCADE,
    user_id            bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role               text NOT NULL DEFAULT 'member'
                       CHECK (role IN ('admin', 'member')),
    joined_at          timestamptz NOT NULL DEFAULT now(),
    last_read_id       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);

CREATE INDEX conversation_members_user ON conversation_members (user_id);

CREATE TABLE messages (
    id               bigint PRIMARY KEY DEFAULT social_next_id(),
    conversation_id  bigint NOT NULL
                     REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text             text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX messages_conversation ON messages (conversation_id, id DESC);

-- Idempotency-Key: per user and route, 24 hours.  A row without status is
-- a request in progress; a concurrent repeat waits for it.
CREATE TABLE idempotency_keys (
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    route       text NOT NULL,
    key         text NOT NULL,
    status      integer,
    body        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, route, key)
);

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
