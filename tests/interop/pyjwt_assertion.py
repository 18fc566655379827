"""A JWT library nobody here wrote (PyJWT, with its PyJWKClient) verifies
Keygate-Assertion values against keygate's live key set, unmodified.

    python pyjwt_assertion.py JWKS_URL ISSUER AUDIENCE KID=JWT [KID=JWT ...]

Each KID=JWT is an assertion and the key id it must be signed with. For
each, PyJWKClient fetches /.well-known/jwks.json and picks the key by the
token's `kid`; jwt.decode checks the ES256 signature, `iss`, `aud`, `exp`
and `iat`. The script also checks that a tampered signature and another
audience are refused. Prints one JSON line per assertion and
{"passed": "pyjwt"} at the end; exits non-zero on the first failure.
"""

import json
import sys

import jwt
from jwt import PyJWKClient

JWKS_URL, ISSUER, AUDIENCE = sys.argv[1:4]
EXPECTED = [arg.split("=", 1) for arg in sys.argv[4:]]
REQUIRED = ["iss", "sub", "aud", "exp", "iat", "jti"]


def verify(token, client, audience=AUDIENCE):
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": REQUIRED},
    )


def refused(token, client, audience=AUDIENCE):
    try:
        verify(token, client, audience)
    except jwt.PyJWTError as e:
        return type(e).__name__
    raise SystemExit(f"accepted what it should refuse: {token}")


for kid, token in EXPECTED:
    # A new client each time, as a fresh upstream would start: no key kept.
    client = PyJWKClient(JWKS_URL, cache_keys=False)
    header = jwt.get_unverified_header(token)
    if header.get("kid") != kid or header.get("alg") != "ES256":
        raise SystemExit(f"header {header} is not ES256 with kid {kid}")
    claims = verify(token, client)
    for claim in ["token_id", "token_kind", "scope"]:
        if claim not in claims:
            raise SystemExit(f"{claim} is missing from {claims}")
    head, body, signature = token.split(".")
    tampered = f"{head}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    print(
        json.dumps(
            {
                "kid": kid,
                "typ": header.get("typ"),
                "claims": claims,
                "tampered": refused(tampered, client),
                "other_audience": refused(token, client, "https://someone-else.example"),
            }
        ),
        flush=True,
    )

print(json.dumps({"passed": "pyjwt"}), flush=True)
