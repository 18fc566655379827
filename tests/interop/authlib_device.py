"""A third-party OAuth client nobody here wrote (authlib), through keygate's
device authorization grant (RFC 8628), unmodified.

    python authlib_device.py BASE CLIENT_ID CLIENT_SECRET [CA_FILE]

BASE is keygate's public URL (the issuer); CA_FILE, a PEM certificate to
trust for it. authlib plays the app on a host without a browser: RFC 8414
metadata (validated by authlib's own validator, with the device
authorization endpoint), the device authorization request with the
session's client authentication (client_secret_basic), then authlib's
device-code grant (`fetch_token` with `DEVICE_CODE_GRANT_TYPE`) in a loop
that waits the server's interval and 5 s more after each slow_down
(RFC 8628 §3.5). It polls twice at once first and must hear
authorization_pending and then slow_down. It prints the user code as a step
line; the test (tests/api/interop.rs) plays the seller and types it on
/device. Then an API call and a refresh. Prints one JSON line per step;
exits non-zero on the first failure.
"""

import json
import os
import re
import sys
import time

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE

BASE, CLIENT_ID, CLIENT_SECRET = sys.argv[1:4]
VERIFY = sys.argv[4] if len(sys.argv) > 4 else True
if VERIFY is not True:
    # requests lets REQUESTS_CA_BUNDLE win over a session's own `verify`
    # (psf/requests#3829): point it at CA_FILE, as authlib_flow.py does.
    os.environ["REQUESTS_CA_BUNDLE"] = VERIFY


def step(name, **facts):
    print(json.dumps({"step": name, **facts}), flush=True)


def fail(why):
    print(json.dumps({"failed": why}), flush=True)
    sys.exit(1)


import authlib  # noqa: E402

step("client", authlib=authlib.__version__)

raw = requests.get(f"{BASE}/.well-known/oauth-authorization-server", verify=VERIFY).json()
metadata = AuthorizationServerMetadata(raw)
metadata.validate()
if metadata["issuer"] != BASE:
    fail(f"issuer {metadata['issuer']} is not {BASE}")
if DEVICE_CODE_GRANT_TYPE not in metadata["grant_types_supported"]:
    fail("the metadata does not offer the device code grant")
device_endpoint = metadata.get("device_authorization_endpoint")
if not device_endpoint:
    fail("the metadata names no device_authorization_endpoint")
step("metadata", device_authorization_endpoint=device_endpoint, validated=True)

session = OAuth2Session(
    CLIENT_ID,
    CLIENT_SECRET,
    scope="orders:read",
    token_endpoint_auth_method="client_secret_basic",
)
asked = session.post(
    device_endpoint,
    data={"scope": "orders:read"},
    auth=session.client_auth("client_secret_basic"),
    withhold_token=True,
)
if asked.status_code != 200:
    fail(f"device authorization answered {asked.status_code}: {asked.text}")
device = asked.json()
for field in ("device_code", "user_code", "verification_uri", "expires_in"):
    if field not in device:
        fail(f"the device authorization answer has no {field}")
if not re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", device["user_code"]):
    fail(f"user_code {device['user_code']} is not XXXX-XXXX")
interval = device.get("interval", 5)


def poll():
    """The tokens, or the OAuth error's code."""
    try:
        return session.fetch_token(
            metadata["token_endpoint"],
            grant_type=DEVICE_CODE_GRANT_TYPE,
            device_code=device["device_code"],
        )
    except OAuthError as e:
        return e.error


first = poll()
if first != "authorization_pending":
    fail(f"the first poll answered {first!r}")
second = poll()
if second != "slow_down":
    fail(f"polling at once again answered {second!r}, not slow_down")
interval += 5
step("slow_down", interval=interval)

step(
    "device_authorization",
    user_code=device["user_code"],
    verification_uri=device["verification_uri"],
    verification_uri_complete=device.get("verification_uri_complete"),
    expires_in=device["expires_in"],
)

deadline = time.monotonic() + device["expires_in"]
token = None
pending = 0
while token is None:
    if time.monotonic() > deadline:
        fail("the device code expired before the seller answered")
    time.sleep(interval)
    answer = poll()
    if answer == "authorization_pending":
        pending += 1
    elif answer == "slow_down":
        interval += 5
    elif isinstance(answer, str):
        fail(f"polling answered {answer}")
    else:
        token = answer
if token.get("token_type", "").lower() != "bearer" or not token["access_token"].startswith("kgo_"):
    fail(f"unexpected token answer {sorted(token)}")
step("device_code_grant", scope=token["scope"], expires_in=token["expires_in"], pending_polls=pending)

me = session.get(f"{BASE}/api/v1/token")
if me.status_code != 200 or me.json().get("kind") != "oauth" or me.json().get("client_id") != CLIENT_ID:
    fail(f"/api/v1/token answered {me.status_code}")
step("api_call", kind="oauth")

old_refresh = token["refresh_token"]
renewed = session.refresh_token(metadata["token_endpoint"], refresh_token=old_refresh)
if renewed["refresh_token"] == old_refresh:
    fail("the refresh did not rotate the refresh token")
step("refresh", rotated=True)

again = poll()
if again != "invalid_grant":
    fail(f"a spent device code answered {again!r}")
step("single_use", error=again)
print(json.dumps({"passed": "authlib-device"}), flush=True)
