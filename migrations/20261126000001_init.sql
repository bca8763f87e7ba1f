-- Links: one row per short code. A deleted link keeps its row (deleted_at set) so the
-- code is never handed out again and redirects answer 410 instead of 404.
CREATE TABLE links (
    id            BIGSERIAL PRIMARY KEY,
    short_code    TEXT        NOT NULL,
    long_url      TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ,
    owner_key_id  TEXT        NOT NULL,
    deleted_at    TIMESTAMPTZ,
    CONSTRAINT links_short_code_key UNIQUE (short_code),
    CONSTRAINT links_short_code_len CHECK (char_length(short_code) BETWEEN 1 AND 64)
);

-- Keyset pagination of an owner's links, newest first.
CREATE INDEX links_owner_created_idx ON links (owner_key_id, created_at DESC, id DESC);

-- Clicks: one row per ClickEvent. event_id is the idempotency key: a redelivered
-- event hits the unique constraint and is skipped by INSERT ... ON CONFLICT DO NOTHING.
CREATE TABLE clicks (
    id              BIGSERIAL PRIMARY KEY,
    event_id        UUID        NOT NULL,
    short_code      TEXT        NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    ip              INET,
    user_agent      TEXT,
    referer         TEXT,
    country_code    TEXT        NOT NULL DEFAULT 'Unknown',
    device_type     TEXT        NOT NULL DEFAULT 'unknown',
    browser         TEXT        NOT NULL DEFAULT 'unknown',
    traffic_source  TEXT        NOT NULL DEFAULT 'direct',
    stored_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT clicks_event_id_key UNIQUE (event_id)
);

-- Every analytics query filters by short_code and a time range; the breakdown
-- columns are covered so GROUP BY over one link's range is an index-only scan.
CREATE INDEX clicks_code_time_idx ON clicks (short_code, occurred_at)
    INCLUDE (country_code, device_type, browser, traffic_source);
