DROP TRIGGER api_tokens_revision_update;
DROP TRIGGER api_tokens_revision_delete;
DROP TRIGGER api_tokens_revision_insert;
DROP TABLE token_revision;
