-- Timestamps are UTC, stored as native TIMESTAMP (without time zone).
CREATE TABLE accounts (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('seller', 'admin')),
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE sessions (
    id BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_account_idx ON sessions (account_id);

CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    public_id TEXT NOT NULL UNIQUE,
    seller_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL CHECK (kind IN ('personal', 'service')),
    scopes TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    secret_issued_at TIMESTAMP NOT NULL,
    previous_secret_hash TEXT,
    previous_secret_expires_at TIMESTAMP,
    expires_at TIMESTAMP,
    -- Set when the expiry was chosen as a number of days: rotation grants that many again.
    lifetime_days INTEGER,
    created_at TIMESTAMP NOT NULL,
    created_by BIGINT NOT NULL REFERENCES accounts (id),
    revoked_at TIMESTAMP,
    revoked_by BIGINT REFERENCES accounts (id),
    last_used_at TIMESTAMP,
    last_used_ip TEXT,
    rate_limit_per_minute INTEGER
);
CREATE INDEX api_tokens_seller_idx ON api_tokens (seller_id, created_at);

-- One trail for API requests and portal security events (Settings -> API Logs).
-- No foreign keys: the trail outlives the rows it mentions.
CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    occurred_at TIMESTAMP NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('api', 'security')),
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    seller_id BIGINT,
    actor_id BIGINT,
    subject TEXT,
    token_id TEXT,
    method TEXT,
    path TEXT,
    status INTEGER,
    required_scope TEXT,
    ip TEXT,
    user_agent TEXT,
    latency_us BIGINT,
    request_id TEXT,
    detail TEXT
);
CREATE INDEX audit_events_seller_idx ON audit_events (seller_id, id);
CREATE INDEX audit_events_time_idx ON audit_events (occurred_at);
CREATE INDEX audit_events_throttle_idx ON audit_events (event, subject, occurred_at);
CREATE INDEX audit_events_ip_idx ON audit_events (event, ip, occurred_at);
