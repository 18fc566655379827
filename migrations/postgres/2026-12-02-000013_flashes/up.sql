-- One-time flashes (issue 18): a secret to show once, after the POST that
-- made it redirected (303) to the page that shows it. Bound to the session
-- that made it, encrypted under a key derived from that session's cookie
-- (which the database never holds), deleted when shown, good for minutes.
CREATE TABLE flashes (
    id BIGSERIAL PRIMARY KEY,
    session_id BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX flashes_session_idx ON flashes (session_id, kind, subject);
CREATE INDEX flashes_expiry_idx ON flashes (expires_at);
