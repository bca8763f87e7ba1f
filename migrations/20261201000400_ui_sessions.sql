-- Dashboard sessions: an API key exchanged for a random session id. Only SHA-256 digests
-- are kept: of the session id (the cookie) and of the key it was opened with, so a key
-- removed from the configuration ends its sessions and a database leak reveals neither.
CREATE TABLE ui_sessions (
    id_digest   BYTEA       PRIMARY KEY,
    owner       TEXT        NOT NULL,
    key_digest  BYTEA       NOT NULL,
    csrf_token  TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);

-- Expired sessions are purged by expiry.
CREATE INDEX ui_sessions_expires_idx ON ui_sessions (expires_at);
