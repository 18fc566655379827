-- Tokens that protect themselves (issue 15): a per-token IP allowlist,
-- email reminders sent once per token and secret, leaked-token reports.

-- Space-separated CIDRs, normalised; NULL: any address.
ALTER TABLE api_tokens ADD COLUMN allowed_ips TEXT;

-- The allowlist is part of what the gate decides: a change bumps the revision.
DROP TRIGGER api_tokens_revision_update ON api_tokens;
CREATE TRIGGER api_tokens_revision_update AFTER UPDATE OF
    public_id, seller_id, name, kind, scopes, secret_hash, secret_issued_at,
    previous_secret_hash, previous_secret_expires_at, expires_at, created_at,
    revoked_at, rate_limit_per_minute, oauth_grant_id, allowed_ips
ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();

-- One row per reminder a token's secret gets: the instance whose INSERT
-- wins sends it, so several instances never send one twice.
CREATE TABLE token_reminders (
    id BIGSERIAL PRIMARY KEY,
    token_id BIGINT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('expiry_7_days', 'rotation_10_days', 'rotation_due')),
    secret_issued_at TIMESTAMP NOT NULL,
    claimed_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    UNIQUE (token_id, kind, secret_issued_at)
);

-- Where a secret scanner found a token; the seller's banner names it.
CREATE TABLE token_leaks (
    id BIGSERIAL PRIMARY KEY,
    token_id BIGINT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    seller_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    source TEXT NOT NULL,
    reported_at TIMESTAMP NOT NULL
);
CREATE INDEX token_leaks_seller_idx ON token_leaks (seller_id, reported_at);
