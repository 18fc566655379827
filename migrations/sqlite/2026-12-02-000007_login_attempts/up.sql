-- Every sign-in attempt is claimed here before its password is checked, in
-- the same write transaction that counts the recent ones, so parallel
-- attempts see each other (and so do other instances). `outcome` is NULL
-- while the check runs, then 'failed' or 'ok'.
CREATE TABLE login_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    ip TEXT,
    started_at TIMESTAMP NOT NULL,
    outcome TEXT
);
CREATE INDEX login_attempts_subject ON login_attempts (subject, started_at);
CREATE INDEX login_attempts_ip ON login_attempts (ip, started_at);
