-- An admin can suspend an account (SPEC §12): its sessions end, and the gate
-- refuses its tokens with `account_suspended` until it is reinstated. The
-- gate reads `suspended_at` with each token row, so a change to it bumps
-- `token_revision` like a revocation: every instance drops its cached rows.
ALTER TABLE accounts ADD COLUMN suspended_at TIMESTAMP;
-- The admin who suspended it (no foreign key: SQLite cannot drop a column
-- that has one, and the audit trail keeps who did it anyway).
ALTER TABLE accounts ADD COLUMN suspended_by BIGINT;
-- Shown on /admin/sellers; set on each successful sign-in.
ALTER TABLE accounts ADD COLUMN last_sign_in_at TIMESTAMP;

UPDATE accounts SET last_sign_in_at = (
    SELECT max(occurred_at) FROM audit_events
    WHERE kind = 'security' AND event = 'login_succeeded' AND subject = accounts.email
);

CREATE TRIGGER accounts_revision_suspension AFTER UPDATE OF suspended_at ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_token_revision();
