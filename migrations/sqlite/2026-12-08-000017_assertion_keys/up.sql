-- The keys that sign Keygate-Assertion (SPEC §11), ES256. One current key
-- (retired_at NULL) signs; retired keys stay published at
-- /.well-known/jwks.json until every assertion they signed has expired.
-- Made by the first instance that needs one, replaced by `keygate keys rotate`.
CREATE TABLE assertion_keys (
    -- Random, base64url; the JOSE header's `kid`.
    kid TEXT PRIMARY KEY,
    -- The public key as a JWK: {"kty":"EC","crv":"P-256","x":…,"y":…}.
    public_jwk TEXT NOT NULL,
    -- PKCS#8 DER, base64url; when `sealed` is 1, XChaCha20-Poly1305 under a
    -- key derived from --secrets-key (never stored here) and the kid.
    -- Emptied when the key is retired: only the current key signs.
    private_key TEXT NOT NULL,
    sealed INTEGER NOT NULL CHECK (sealed IN (0, 1)),
    created_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP
);
-- At most one current key: of two instances making the first key at once,
-- or two rotations at once, one insert wins.
CREATE UNIQUE INDEX assertion_keys_one_current ON assertion_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
