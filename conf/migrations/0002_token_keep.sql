-- A password change voids every access token issued until then but the
-- one that made the change: its id is kept beside the mark.
ALTER TABLE credentials ADD COLUMN tokens_keep_jti text;
