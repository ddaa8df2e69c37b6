-- Posts: a version that every change of a post's counters or state bumps,
-- so that cached copies are only ever replaced by newer ones; indexes for
-- what a deleted post takes with it and for the likers list.
ALTER TABLE posts ADD COLUMN version bigint NOT NULL DEFAULT 0;

CREATE INDEX notifications_post ON notifications (post_id)
    WHERE post_id IS NOT NULL;

-- a user's shares of a post, live or not (unshare, the viewer's flag)
CREATE INDEX posts_share_of ON posts (share_of_id, author_id)
    WHERE share_of_id IS NOT NULL;
