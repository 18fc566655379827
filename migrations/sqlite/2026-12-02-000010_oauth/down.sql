DROP TABLE oauth_refresh_tokens;
DROP TABLE oauth_codes;
DELETE FROM api_tokens WHERE kind = 'oauth';
CREATE TABLE api_tokens_old AS SELECT id, public_id, seller_id, name, description, kind, scopes, secret_hash,
    secret_issued_at, previous_secret_hash, previous_secret_expires_at, expires_at, lifetime_days,
    created_at, created_by, revoked_at, revoked_by, last_used_at, last_used_ip, rate_limit_per_minute FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_old RENAME TO api_tokens;
DROP TABLE oauth_grants;
DROP TABLE oauth_apps;
