-- Keys every instance shares, made once by the first instance that starts
-- (the pre-session CSRF key, …). Never shown, never logged.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
