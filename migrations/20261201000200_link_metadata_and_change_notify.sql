-- Link metadata (title, description, tags), per-link query forwarding, and a
-- notification on every change so each url-api replica drops its cached copy.
ALTER TABLE links
    ADD COLUMN title         TEXT,
    ADD COLUMN description   TEXT,
    ADD COLUMN tags          TEXT[]      NOT NULL DEFAULT '{}',
    ADD COLUMN forward_query BOOLEAN     NOT NULL DEFAULT true,
    ADD COLUMN updated_at    TIMESTAMPTZ;

-- `tags @> '{x}'` filters of the list endpoint.
CREATE INDEX links_tags_idx ON links USING GIN (tags);

-- Every insert and update of a link (edits, deletes, and creations that replace a cached
-- "no such code") sends its short code on channel `links_changed`. A trigger rather than
-- a NOTIFY in each write path: no write can forget it. NOTIFY is delivered at commit.
CREATE FUNCTION links_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('links_changed', NEW.short_code);
    RETURN NULL;
END
$$;

CREATE TRIGGER links_notify_change
    AFTER INSERT OR UPDATE ON links
    FOR EACH ROW EXECUTE FUNCTION links_notify_change();
