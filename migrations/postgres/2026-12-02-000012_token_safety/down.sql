DROP TABLE token_leaks;
DROP TABLE token_reminders;
DROP TRIGGER api_tokens_revision_update ON api_tokens;
CREATE TRIGGER api_tokens_revision_update AFTER UPDATE OF
    public_id, seller_id, name, kind, scopes, secret_hash, secret_issued_at,
    previous_secret_hash, previous_secret_expires_at, expires_at, created_at,
    revoked_at, rate_limit_per_minute, oauth_grant_id
ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();
ALTER TABLE api_tokens DROP COLUMN allowed_ips;
