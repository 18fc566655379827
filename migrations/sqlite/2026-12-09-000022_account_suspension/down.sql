DROP TRIGGER accounts_revision_suspension;
ALTER TABLE accounts DROP COLUMN last_sign_in_at;
ALTER TABLE accounts DROP COLUMN suspended_by;
ALTER TABLE accounts DROP COLUMN suspended_at;
