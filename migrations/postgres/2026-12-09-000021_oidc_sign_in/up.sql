-- Signing in with the portal's own accounts (SPEC §12).

-- Who an account is at the OpenID Provider: linked by (issuer, sub), never
-- by email alone. An account signed in only through the provider has an
-- empty password_hash (no password works for it).
CREATE TABLE oidc_identities (
    id BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_sign_in_at TIMESTAMP NOT NULL,
    UNIQUE (issuer, subject)
);
CREATE INDEX oidc_identities_account_idx ON oidc_identities (account_id);

-- Sign-ins sent to the provider and not back yet: what the callback needs
-- (nonce, PKCE verifier, where to return), keyed by the SHA-256 of the
-- state. Single use (the callback deletes the row) and short-lived; expired
-- rows are deleted whenever a sign-in starts.
CREATE TABLE oidc_pending (
    id BIGSERIAL PRIMARY KEY,
    state_hash TEXT NOT NULL UNIQUE,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX oidc_pending_expires_idx ON oidc_pending (expires_at);
