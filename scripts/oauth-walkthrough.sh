#!/usr/bin/env bash
# The OAuth flow for integrators, end to end with curl, against a real keygate
# on a throw-away SQLite file: register an app, the seller signs in and
# allows it (curl plays the browser), the code for tokens, an API call, a
# refresh, the refresh grace and a reuse, revocation; then the audit rows.
# Needs curl and python3. Run from the repo root after `cargo build`.
set -u
KG=${KEYGATE_BIN:-target/debug/keygate}
PORT=8096; BASE=http://127.0.0.1:$PORT
D=$(mktemp -d); export DATABASE_URL=$D/kg.db KEYGATE_PASSWORD='correct horse battery staple' RUST_LOG=warn
$KG user create --email ana@shop.example 2>/dev/null
$KG user create --email dev@erp.example --sample-data false 2>/dev/null
say() { printf '\n## %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; }
json() { python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=2))' | sed 's/^/    /'; }

say "register an app (its owner is dev@erp.example)"
show "keygate app create --email dev@erp.example --name 'Acme ERP' --redirect-uri https://erp.example/oauth/callback --scope orders:read --scope products:read"
APP=$($KG app create --email dev@erp.example --name 'Acme ERP' --redirect-uri https://erp.example/oauth/callback --scope orders:read --scope products:read)
echo "    $APP" | sed -E 's/"kgcs_[^"]+"/"kgcs_…(shown once)"/'
CLIENT_ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$APP")
SECRET=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_secret"])' "$APP")

$KG serve --bind 127.0.0.1:$PORT --public-url $BASE 2>/dev/null &
PID=$!; sleep 1.5

say "the authorization URL the app sends the seller to (PKCE S256, state)"
VERIFIER=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
CHALLENGE=$(python3 -c 'import base64,hashlib,sys; print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).rstrip(b"=").decode())' "$VERIFIER")
AUTHORIZE="$BASE/oauth/authorize?response_type=code&client_id=$CLIENT_ID&redirect_uri=https%3A%2F%2Ferp.example%2Foauth%2Fcallback&scope=orders%3Aread&state=order-sync-42&code_challenge=$CHALLENGE&code_challenge_method=S256"
echo "    $AUTHORIZE"

say "the seller's browser (curl with a cookie jar): sign in, see the consent page, Allow"
J=$D/cookies
csrf() { grep -o 'name="csrf_token" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//'; }
T=$(curl -s -c $J -b $J $BASE/login | csrf)
curl -s -o /dev/null -c $J -b $J --data-urlencode "csrf_token=$T" --data-urlencode email=ana@shop.example --data-urlencode "password=$KEYGATE_PASSWORD" $BASE/login
PAGE=$(curl -s -c $J -b $J "$AUTHORIZE")
echo "$PAGE" | grep -oE '<h1>.*</h1>|Registered by <strong>[^<]*</strong>|See your [^<]*' | sed -E 's/<[^>]+>//g; s/^/    /'
FORM=$(echo "$PAGE" | python3 -c 'import sys,re,html; f=sys.stdin.read(); f=f[f.index("action=\"/oauth/authorize\""):]; f=f[:f.index("</form>")]; print("&".join(html.unescape(k)+"="+__import__("urllib.parse").parse.quote(html.unescape(v)) for k,v in re.findall(r"<input type=\"hidden\" name=\"([^\"]+)\" value=\"([^\"]*)\"", f)))')
CALLBACK=$(curl -s -o /dev/null -w '%{redirect_url}' -c $J -b $J --data "$FORM&decision=allow" $BASE/oauth/authorize)
echo "    303 → ${CALLBACK}" | sed -E 's/code=kgac_[A-Za-z0-9_]+/code=kgac_…/'
CODE=$(python3 -c 'import sys,urllib.parse as u; print(u.parse_qs(u.urlparse(sys.argv[1]).query)["code"][0])' "$CALLBACK")

say "the code for tokens (client_secret_basic)"
show "curl -s -u \"\$CLIENT_ID:\$CLIENT_SECRET\" -d grant_type=authorization_code -d code=\$CODE -d redirect_uri=https://erp.example/oauth/callback -d code_verifier=\$VERIFIER $BASE/oauth/token"
TOKENS=$(curl -s -u "$CLIENT_ID:$SECRET" -d grant_type=authorization_code -d "code=$CODE" -d redirect_uri=https://erp.example/oauth/callback -d "code_verifier=$VERIFIER" $BASE/oauth/token)
echo "$TOKENS" | json | sed -E 's/"kg(o|r)_[A-Za-z0-9_]+"/"kg\1_…"/'
ACCESS=$(echo "$TOKENS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
REFRESH=$(echo "$TOKENS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')

say "an API call with the access token"
show "curl -s -H \"Authorization: Bearer \$ACCESS\" $BASE/api/v1/token"
curl -s -H "Authorization: Bearer $ACCESS" $BASE/api/v1/token | json

say "refresh: a new pair (always store both)"
show "curl -s -u \"\$CLIENT_ID:\$CLIENT_SECRET\" -d grant_type=refresh_token -d refresh_token=\$REFRESH $BASE/oauth/token"
NEW=$(curl -s -u "$CLIENT_ID:$SECRET" -d grant_type=refresh_token -d "refresh_token=$REFRESH" $BASE/oauth/token)
echo "$NEW" | json | sed -E 's/"kg(o|r)_[A-Za-z0-9_]+"/"kg\1_…"/'

say "the same refresh token again within the grace (the answer was lost): the same pair"
AGAIN=$(curl -s -u "$CLIENT_ID:$SECRET" -d grant_type=refresh_token -d "refresh_token=$REFRESH" $BASE/oauth/token)
python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print("    same access token:", a["access_token"]==b["access_token"], "· same refresh token:", a["refresh_token"]==b["refresh_token"])' "$NEW" "$AGAIN"

say "the new refresh token is used; then the old one again: a reuse, the chain is revoked"
NEW_REFRESH=$(echo "$NEW" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
NEWER=$(curl -s -u "$CLIENT_ID:$SECRET" -d grant_type=refresh_token -d "refresh_token=$NEW_REFRESH" $BASE/oauth/token)
curl -s -u "$CLIENT_ID:$SECRET" -d grant_type=refresh_token -d "refresh_token=$REFRESH" $BASE/oauth/token | json
NEWEST=$(echo "$NEWER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
echo "    the newest access token now: $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $NEWEST" $BASE/api/v1/token)"

say "revocation (RFC 7009) of a fresh chain"
CODE2=$(curl -s -o /dev/null -w '%{redirect_url}' -c $J -b $J "${AUTHORIZE/order-sync-42/again}" | python3 -c 'import sys,urllib.parse as u; print(u.parse_qs(u.urlparse(sys.stdin.read()).query)["code"][0])')
T2=$(curl -s -u "$CLIENT_ID:$SECRET" -d grant_type=authorization_code -d "code=$CODE2" -d redirect_uri=https://erp.example/oauth/callback -d "code_verifier=$VERIFIER" $BASE/oauth/token)
A2=$(echo "$T2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'); R2=$(echo "$T2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
echo "    (the grant already covers orders:read: no consent page, straight back with a code)"
show "curl -s -o /dev/null -w '%{http_code}' -u \"\$CLIENT_ID:\$CLIENT_SECRET\" -d token=\$REFRESH2 $BASE/oauth/revoke"
echo "    $(curl -s -o /dev/null -w '%{http_code}' -u "$CLIENT_ID:$SECRET" -d "token=$R2" $BASE/oauth/revoke)"
echo "    its access token now: $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $A2" $BASE/api/v1/token)"

say "the wrong endpoint (source document 000's pitfall)"
show "curl -s -d grant_type=refresh_token $BASE/api/oauth/token"
curl -s -d grant_type=refresh_token $BASE/api/oauth/token | json

kill -TERM $PID; wait $PID 2>/dev/null
say "the security events those steps wrote"
python3 - "$D/kg.db" <<'PY'
import sqlite3,sys
c=sqlite3.connect(sys.argv[1])
for r in c.execute("select id, event, outcome, coalesce(detail,'') from audit_events where kind='security' and event not like 'login%' and event <> 'account_created' order by id"):
    print("    " + " | ".join(str(x) for x in r))
for t in ("oauth_codes","oauth_refresh_tokens"):
    n=c.execute(f"select count(*) from {t} where secret_digest not like 'sha256:%'").fetchone()[0]
    print(f"    {t}: rows not stored as a SHA-256 digest: {n}")
PY
rm -rf "$D"
