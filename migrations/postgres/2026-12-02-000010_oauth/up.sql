-- The OAuth 2.0 authorization server (SPEC §8). Apps, one grant per seller
-- and app, codes, refresh tokens; access tokens are `api_tokens` rows of
-- kind 'oauth', so the gate, its cache and `token_revision` serve them as
-- they serve API tokens. Codes and OAuth tokens are stored as SHA-256
-- digests of their secrets; client secrets as argon2id PHC strings.

CREATE TABLE oauth_apps (
    id BIGSERIAL PRIMARY KEY,
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
    id BIGSERIAL PRIMARY KEY,
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
    id BIGSERIAL PRIMARY KEY,
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
    id BIGSERIAL PRIMARY KEY,
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
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_kind_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_kind_check CHECK (kind IN ('personal', 'service', 'oauth'));
ALTER TABLE api_tokens ADD COLUMN oauth_grant_id BIGINT REFERENCES oauth_grants (id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD COLUMN oauth_family TEXT;
CREATE INDEX api_tokens_family_idx ON api_tokens (oauth_family);
CREATE INDEX api_tokens_grant_idx ON api_tokens (oauth_grant_id);

-- The gate's revision (see 000005). An insert no longer bumps it: a new
-- token's id is fresh from the RNG, so no instance can have remembered
-- anything about it, and OAuth refreshes insert at hundreds a second.
DROP TRIGGER api_tokens_revision_insert_delete ON api_tokens;
CREATE TRIGGER api_tokens_revision_delete AFTER DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();
DROP TRIGGER api_tokens_revision_update ON api_tokens;
CREATE TRIGGER api_tokens_revision_update AFTER UPDATE OF
    public_id, seller_id, name, kind, scopes, secret_hash, secret_issued_at,
    previous_secret_hash, previous_secret_expires_at, expires_at, created_at,
    revoked_at, rate_limit_per_minute, oauth_grant_id
ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();
-- An access token's scopes and life follow its grant and its app.
CREATE TRIGGER oauth_grants_revision AFTER UPDATE OF scopes, revoked_at OR DELETE ON oauth_grants
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();
CREATE TRIGGER oauth_apps_revision AFTER UPDATE OF name, scopes, suspended_at OR DELETE ON oauth_apps
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();
