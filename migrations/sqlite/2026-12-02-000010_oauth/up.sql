-- The OAuth 2.0 authorization server (SPEC §8). Apps, one grant per seller
-- and app, codes, refresh tokens; access tokens are `api_tokens` rows of
-- kind 'oauth', so the gate, its cache and `token_revision` serve them as
-- they serve API tokens. Codes and OAuth tokens are stored as SHA-256
-- digests of their secrets; client secrets as argon2id PHC strings.

CREATE TABLE oauth_apps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    owner_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    homepage TEXT,
    -- One URI or prefix a line.
    redirect_uris TEXT NOT NULL,
    redirect_prefixes TEXT NOT NULL,
    scopes TEXT NOT NULL,
    confidential INTEGER NOT NULL,
    secret_id TEXT,
    secret_hash TEXT,
    previous_secret_id TEXT,
    previous_secret_hash TEXT,
    previous_secret_expires_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    suspended_at TIMESTAMP,
    suspended_by BIGINT REFERENCES accounts (id)
);
CREATE INDEX oauth_apps_owner_idx ON oauth_apps (owner_id);

CREATE TABLE oauth_grants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id BIGINT NOT NULL REFERENCES oauth_apps (id) ON DELETE CASCADE,
    seller_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    UNIQUE (app_id, seller_id)
);
CREATE INDEX oauth_grants_seller_idx ON oauth_grants (seller_id);

CREATE TABLE oauth_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id TEXT NOT NULL UNIQUE,
    secret_digest TEXT NOT NULL,
    grant_id BIGINT NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    -- As the authorize request sent it; NULL when it named none.
    redirect_uri TEXT,
    scopes TEXT NOT NULL,
    code_challenge TEXT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    -- The chain of tokens the exchange started.
    family TEXT
);

CREATE TABLE oauth_refresh_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id TEXT NOT NULL UNIQUE,
    secret_digest TEXT NOT NULL,
    grant_id BIGINT NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    family TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    used_ip TEXT,
    successor_id BIGINT,
    -- The pair this token was exchanged for, encrypted under a key derived
    -- from this token's own secret (the refresh grace; SPEC §8).
    successor_sealed TEXT,
    revoked_at TIMESTAMP
);
CREATE INDEX oauth_refresh_tokens_family_idx ON oauth_refresh_tokens (family);
CREATE INDEX oauth_refresh_tokens_grant_idx ON oauth_refresh_tokens (grant_id);

-- `api_tokens` takes the kind 'oauth', and an access token's grant and chain.
-- SQLite cannot change a CHECK in place: the table is rebuilt.
CREATE TABLE api_tokens_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id TEXT NOT NULL UNIQUE,
    seller_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL CHECK (kind IN ('personal', 'service', 'oauth')),
    scopes TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    secret_issued_at TIMESTAMP NOT NULL,
    previous_secret_hash TEXT,
    previous_secret_expires_at TIMESTAMP,
    expires_at TIMESTAMP,
    lifetime_days INTEGER,
    created_at TIMESTAMP NOT NULL,
    created_by BIGINT NOT NULL REFERENCES accounts (id),
    revoked_at TIMESTAMP,
    revoked_by BIGINT REFERENCES accounts (id),
    last_used_at TIMESTAMP,
    last_used_ip TEXT,
    rate_limit_per_minute INTEGER,
    oauth_grant_id BIGINT REFERENCES oauth_grants (id) ON DELETE CASCADE,
    oauth_family TEXT
);
INSERT INTO api_tokens_new (id, public_id, seller_id, name, description, kind, scopes, secret_hash,
    secret_issued_at, previous_secret_hash, previous_secret_expires_at, expires_at, lifetime_days,
    created_at, created_by, revoked_at, revoked_by, last_used_at, last_used_ip, rate_limit_per_minute)
SELECT id, public_id, seller_id, name, description, kind, scopes, secret_hash,
    secret_issued_at, previous_secret_hash, previous_secret_expires_at, expires_at, lifetime_days,
    created_at, created_by, revoked_at, revoked_by, last_used_at, last_used_ip, rate_limit_per_minute
FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE INDEX api_tokens_seller_idx ON api_tokens (seller_id, created_at);
CREATE INDEX api_tokens_family_idx ON api_tokens (oauth_family);
CREATE INDEX api_tokens_grant_idx ON api_tokens (oauth_grant_id);

-- The gate's revision (see 000005). An insert no longer bumps it: a new
-- token's id is fresh from the RNG, so no instance can have remembered
-- anything about it, and OAuth refreshes insert at hundreds a second.
CREATE TRIGGER api_tokens_revision_delete AFTER DELETE ON api_tokens
BEGIN
    UPDATE token_revision SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER api_tokens_revision_update AFTER UPDATE OF
    public_id, seller_id, name, kind, scopes, secret_hash, secret_issued_at,
    previous_secret_hash, previous_secret_expires_at, expires_at, created_at,
    revoked_at, rate_limit_per_minute, oauth_grant_id
ON api_tokens
BEGIN
    UPDATE token_revision SET value = value + 1 WHERE id = 1;
END;
-- An access token's scopes and life follow its grant and its app.
CREATE TRIGGER oauth_grants_revision_update AFTER UPDATE OF scopes, revoked_at ON oauth_grants
BEGIN
    UPDATE token_revision SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER oauth_grants_revision_delete AFTER DELETE ON oauth_grants
BEGIN
    UPDATE token_revision SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER oauth_apps_revision_update AFTER UPDATE OF name, scopes, suspended_at ON oauth_apps
BEGIN
    UPDATE token_revision SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER oauth_apps_revision_delete AFTER DELETE ON oauth_apps
BEGIN
    UPDATE token_revision SET value = value + 1 WHERE id = 1;
END;
