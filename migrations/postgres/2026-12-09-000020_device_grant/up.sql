-- The device authorization grant (RFC 8628, SPEC §8). An app must have it
-- turned on (off by default). A device authorization is one row: the
-- device code's digest (SHA-256, like codes), the user code's digest (the
-- code is 8 letters of 20: it is looked up by digest, never stored
-- readable), its state (pending, allowed, denied), the polling interval
-- (it grows by 5 s on each slow_down) and, once allowed, the grant.
ALTER TABLE oauth_apps ADD COLUMN device_flow INTEGER NOT NULL DEFAULT 0;

CREATE TABLE oauth_device_codes (
    id BIGSERIAL PRIMARY KEY,
    public_id TEXT NOT NULL UNIQUE,
    secret_digest TEXT NOT NULL,
    user_code_digest TEXT NOT NULL UNIQUE,
    app_id BIGINT NOT NULL REFERENCES oauth_apps (id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'allowed', 'denied')),
    interval_secs INTEGER NOT NULL,
    last_polled_at TIMESTAMP,
    seller_id BIGINT REFERENCES accounts (id) ON DELETE CASCADE,
    grant_id BIGINT REFERENCES oauth_grants (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    decided_at TIMESTAMP,
    -- When the tokens were issued (single use), and the chain they started.
    used_at TIMESTAMP,
    family TEXT,
    -- An expired code polled once is recorded once.
    expiry_recorded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX oauth_device_codes_app_idx ON oauth_device_codes (app_id);
CREATE INDEX oauth_device_codes_expires_idx ON oauth_device_codes (expires_at);
