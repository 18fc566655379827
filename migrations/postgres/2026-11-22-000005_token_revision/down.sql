DROP TRIGGER api_tokens_revision_update ON api_tokens;
DROP TRIGGER api_tokens_revision_insert_delete ON api_tokens;
DROP FUNCTION keygate_bump_token_revision();
DROP TABLE token_revision;
