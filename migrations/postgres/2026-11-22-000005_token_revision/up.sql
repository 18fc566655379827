-- The gate keeps token rows in memory. Every change that can alter a gate
-- decision bumps this one counter (by trigger, so the CLI, other instances
-- and hand-written SQL bump it too); each instance polls it and drops its
-- cached rows when it moves. `last_used_*` is not in the list: it changes
-- once a minute per token and never changes a decision.
CREATE TABLE token_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO token_revision (id, value) VALUES (1, 0);

CREATE FUNCTION keygate_bump_token_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE token_revision SET value = value + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_revision_insert_delete AFTER INSERT OR DELETE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();

CREATE TRIGGER api_tokens_revision_update AFTER UPDATE OF
    public_id, seller_id, name, kind, scopes, secret_hash, secret_issued_at,
    previous_secret_hash, previous_secret_expires_at, expires_at, created_at,
    revoked_at, rate_limit_per_minute
ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();
