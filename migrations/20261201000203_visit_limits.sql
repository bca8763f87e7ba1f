-- Visit limits: after max_visits human clicks a link answers like an expired one, or sends
-- visitors to expired_url (which also serves links past expires_at).
ALTER TABLE links
    ADD COLUMN max_visits  BIGINT,
    ADD COLUMN expired_url TEXT;

-- Human clicks per short code, counted by the consumer in the statement that stores the
-- clicks (only newly stored ones, so redeliveries do not count twice). url-api reads it with
-- a limited link instead of writing per redirect.
CREATE TABLE link_visits (
    short_code    TEXT   PRIMARY KEY,
    human_visits  BIGINT NOT NULL DEFAULT 0
);
