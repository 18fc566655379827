DROP TRIGGER oauth_apps_revision ON oauth_apps;
DROP TRIGGER oauth_grants_revision ON oauth_grants;
DELETE FROM api_tokens WHERE kind = 'oauth';
ALTER TABLE api_tokens DROP COLUMN oauth_family;
ALTER TABLE api_tokens DROP COLUMN oauth_grant_id;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_kind_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_kind_check CHECK (kind IN ('personal', 'service'));
DROP TRIGGER api_tokens_revision_delete ON api_tokens;
CREATE TRIGGER api_tokens_revision_insert_delete AFTER INSERT OR DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();
DROP TABLE oauth_refresh_tokens;
DROP TABLE oauth_codes;
DROP TABLE oauth_grants;
DROP TABLE oauth_apps;
