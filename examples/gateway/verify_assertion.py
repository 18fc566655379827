"""How an upstream checks Keygate-Assertion, the identity keygate (or the
nginx / Caddy asking keygate) adds to every request it lets through: with
PyJWT (pip install "PyJWT[crypto]"), its PyJWKClient fetching keygate's
published keys. Believe Keygate-Seller and friends only when the assertion
verifies, if anyone but keygate can reach your API.

    python verify_assertion.py KEYGATE_PUBLIC_URL AUDIENCE ASSERTION

KEYGATE_PUBLIC_URL is keygate's --public-url (the `iss`), AUDIENCE its
--upstream-audience (the `aud`; with --upstream, the upstream's origin by
default). Prints the verified claims as JSON, or the reason and exit 1.
tests/api/proxies.rs runs this file against a live keygate.
"""

import json
import sys

import jwt
from jwt import PyJWKClient


class KeygateAssertions:
    def __init__(self, keygate_url, audience):
        self.issuer = keygate_url
        self.audience = audience
        # Caches the key set, and fetches it again for a `kid` it has not
        # seen (after `keygate keys rotate`).
        self.keys = PyJWKClient(f"{keygate_url}/.well-known/jwks.json")

    def verify(self, assertion):
        """The claims: sub (the seller), scope, token_id, token_kind,
        client_id (OAuth), exp, iat, jti. Raises jwt.PyJWTError."""
        key = self.keys.get_signing_key_from_jwt(assertion)
        return jwt.decode(
            assertion,
            key.key,
            algorithms=["ES256"],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
        )


if __name__ == "__main__":
    keygate_url, audience, assertion = sys.argv[1:4]
    try:
        claims = KeygateAssertions(keygate_url, audience).verify(assertion)
    except jwt.PyJWTError as refused:
        print(f"refused: {type(refused).__name__}: {refused}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(claims))
