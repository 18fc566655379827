"""A third-party OAuth client nobody here wrote (authlib), through every flow
of keygate's authorization server, unmodified.

    python authlib_flow.py BASE CLIENT_ID CLIENT_SECRET EMAIL PASSWORD [CA_FILE]

BASE is keygate's public URL (the issuer); CA_FILE, a PEM certificate to
trust for it when it serves TLS with a certificate of its own. The script
plays the seller's browser with `requests` (sign-in and consent) and authlib
plays the app: RFC 8414 metadata (validated by authlib's own validator), the
authorization URL with PKCE S256 and state, the code exchange, an API call,
a refresh, introspection and revocation. It checks `state` and `iss` on the
callback. Prints one JSON line per step; exits non-zero on the first failure.
"""

import json
import os
import re
import secrets
import sys
from html import unescape
from urllib.parse import parse_qs, urlparse

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

BASE, CLIENT_ID, CLIENT_SECRET, EMAIL, PASSWORD = sys.argv[1:6]
VERIFY = sys.argv[6] if len(sys.argv) > 6 else True
if VERIFY is not True:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment
    # win over a session's own `verify` (psf/requests#3829), and authlib's
    # session calls pass none of their own: point the variable at CA_FILE.
    os.environ["REQUESTS_CA_BUNDLE"] = VERIFY
REDIRECT = "https://erp.example/oauth/callback"


def step(name, **facts):
    print(json.dumps({"step": name, **facts}), flush=True)


def fail(why):
    print(json.dumps({"failed": why}), flush=True)
    sys.exit(1)


def csrf(html):
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if not found:
        fail("no CSRF field on the page")
    return unescape(found.group(1))


# 1. Discovery, validated by authlib.
raw = requests.get(f"{BASE}/.well-known/oauth-authorization-server", verify=VERIFY).json()
metadata = AuthorizationServerMetadata(raw)
metadata.validate()
if metadata["issuer"] != BASE:
    fail(f"issuer {metadata['issuer']} is not {BASE}")
step("metadata", issuer=metadata["issuer"], validated=True)

# 2. The app's authorization URL, with PKCE and state.
app = OAuth2Session(
    CLIENT_ID,
    CLIENT_SECRET,
    scope="orders:read products:read",
    redirect_uri=REDIRECT,
    code_challenge_method="S256",
    token_endpoint_auth_method="client_secret_basic",
)
app.verify = VERIFY
verifier = secrets.token_urlsafe(48)
url, state = app.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)
step("authorization_url", state=state)

# 3. The seller's browser: sign in, then consent.
browser = requests.Session()
browser.verify = VERIFY
login_page = browser.get(f"{BASE}/login")
signed_in = browser.post(
    f"{BASE}/login",
    data={"csrf_token": csrf(login_page.text), "email": EMAIL, "password": PASSWORD, "next": "/settings/tokens"},
    allow_redirects=False,
)
if signed_in.status_code != 303:
    fail(f"sign-in answered {signed_in.status_code}")
consent = browser.get(url, allow_redirects=False)
if consent.status_code != 200:
    fail(f"authorize answered {consent.status_code}: {consent.headers.get('location')}")
form = consent.text[consent.text.index('action="/oauth/authorize"'):]
form = form[: form.index("</form>")]
fields = {unescape(k): unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)}
fields["decision"] = "allow"
allowed = browser.post(f"{BASE}/oauth/authorize", data=fields, allow_redirects=False)
callback = allowed.headers.get("location", "")
if allowed.status_code != 303 or not callback.startswith(REDIRECT):
    fail(f"consent answered {allowed.status_code} to {callback}")
params = parse_qs(urlparse(callback).query)
if params.get("iss") != [BASE]:
    fail(f"iss {params.get('iss')} is not {BASE} (RFC 9207)")
if params.get("state") != [state]:
    fail("state did not come back unchanged")
step("callback", iss=params["iss"][0], state_unchanged=True)

# 4. The code for tokens (authlib checks state again).
token = app.fetch_token(metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier)
if token.get("token_type") != "Bearer" or not token["access_token"].startswith("kgo_"):
    fail(f"unexpected token answer {sorted(token)}")
step("code_exchange", expires_in=token["expires_in"], scope=token["scope"])

# 5. A protected resource with the access token.
me = app.get(f"{BASE}/api/v1/token")
if me.status_code != 200 or me.json().get("kind") != "oauth":
    fail(f"/api/v1/token answered {me.status_code}")
orders = app.get(f"{BASE}/api/v1/orders?limit=2")
if orders.status_code != 200:
    fail(f"/api/v1/orders answered {orders.status_code}")
step("api_call", kind=me.json()["kind"], client_id=me.json()["client_id"], orders=len(orders.json()["data"]))

# 6. Refresh: a new pair.
old_refresh = token["refresh_token"]
renewed = app.refresh_token(metadata["token_endpoint"], refresh_token=old_refresh)
if renewed["refresh_token"] == old_refresh or renewed["access_token"] == token["access_token"]:
    fail("the refresh did not rotate both tokens")
step("refresh", rotated=True)

# 7. Introspection of the new access token, then revocation of the chain.
seen = app.introspect_token(metadata["introspection_endpoint"], token=renewed["access_token"]).json()
if not seen.get("active") or seen.get("client_id") != CLIENT_ID:
    fail(f"introspection said {seen}")
step("introspection", active=seen["active"], token_type=seen["token_type"])
revoked = app.revoke_token(metadata["revocation_endpoint"], token=renewed["refresh_token"], token_type_hint="refresh_token")
if revoked.status_code != 200:
    fail(f"revocation answered {revoked.status_code}")
after = app.get(f"{BASE}/api/v1/token")
if after.status_code != 401:
    fail(f"after revocation the API answered {after.status_code}")
step("revocation", api_after=after.status_code)
print(json.dumps({"passed": "authlib"}), flush=True)
