-- Chat: at most one unread "message" notification per user and
-- conversation, so that coalescing holds under concurrent messages (the
-- insert of a message's notification does nothing on conflict).
CREATE UNIQUE INDEX notifications_message_unread
    ON notifications (user_id, conversation_id)
    WHERE type = 'message' AND NOT read;

