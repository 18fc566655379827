#!/usr/bin/env bash
# A curl walk through every row of the gate's error table against a real
# keygate on a throw-away SQLite file, then the audit rows it produced.
# Needs curl and python3 (for its sqlite3 module). Run from the repo root.
set -u
KG=${KEYGATE_BIN:-target/debug/keygate}   # build first: cargo build
D=$(mktemp -d); export DATABASE_URL=$D/kg.db KEYGATE_PASSWORD='correct horse battery staple' RUST_LOG=warn
$KG user create --email ana@shop.example 2>/dev/null
ORDERS=$($KG token create --email ana@shop.example --name "orders only" --kind service --scope orders:read)
REVOKED=$($KG token create --email ana@shop.example --name "to revoke" --kind service --scope orders:read)
EXPIRED=$($KG token create --email ana@shop.example --name "old" --kind service --scope orders:read --expires-in 1)
$KG token revoke "${REVOKED:4:16}" 2>/dev/null
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"update api_tokens set expires_at='2026-11-01 00:00:00' where name='old'\"); c.commit()" "$D/kg.db"
forge() { python3 - "$1" <<'PY'
import sys, zlib, secrets, string
A = string.digits + string.ascii_uppercase + string.ascii_lowercase
body = "kgs_" + sys.argv[1] + "_" + "".join(secrets.choice(A) for _ in range(32))
n = zlib.crc32(body.encode()); out = ""
for _ in range(6): out = A[n % 62] + out; n //= 62
print(body + out)
PY
}
WRONG=$(forge "${ORDERS:4:16}")
UNKNOWN=$(forge "AAAAAAAAAAAAAAAA")
MISTYPED="${ORDERS:0:30}X${ORDERS:31}"
$KG serve --bind 127.0.0.1:8095 --rate-limit-per-minute 3 --trusted-proxy 127.0.0.1 2>/dev/null &
PID=$!; sleep 1.5
run() { # description, then curl args
  echo "## $1"; shift
  local shown=""; for a in "$@"; do shown+=" $(printf '%q' "$a")"; done
  echo "\$ curl -si$shown http://127.0.0.1:8095$URL" | sed -e "s/$ORDERS/\$ORDERS/g" -e "s/$REVOKED/\$REVOKED/g" -e "s/$EXPIRED/\$EXPIRED/g"
  curl -si "$@" "http://127.0.0.1:8095$URL" | grep -iE '^(HTTP/|www-authenticate|retry-after|x-ratelimit-remaining)|^\{' | sed 's/^/    /'
  echo
}
URL=/api/v1/token
run "no Authorization header"
run "malformed token" -H "Authorization: Bearer kgs_not_a_token"
run "bad checksum (one character mistyped)" -H "Authorization: Bearer $MISTYPED"
run "unknown id (well-formed, valid checksum)" -H "Authorization: Bearer $UNKNOWN"
run "wrong secret for a real id" -H "Authorization: Bearer $WRONG"
run "revoked" -H "Authorization: Bearer $REVOKED"
run "expired" -H "Authorization: Bearer $EXPIRED"
URL=/api/v1/products
run "valid token without the scope (orders:read only)" -H "Authorization: Bearer $ORDERS"
URL=/api/v1/orders?limit=1
for i in 1 2; do curl -s -o /dev/null -w "(request $i: %{http_code}) " -H "Authorization: Bearer $ORDERS" "http://127.0.0.1:8095$URL"; done; echo
run "over the per-minute limit (3/min: the 403 above and these two 200s already counted)" -H "Authorization: Bearer $ORDERS"
URL=/api/v1/token
run "plain HTTP from a non-loopback client, via the trusted proxy" -H "X-Forwarded-For: 203.0.113.7" -H "X-Forwarded-Proto: http" -H "Authorization: Bearer $ORDERS"
kill -TERM $PID; wait $PID; echo "keygate exit status after SIGTERM: $?"; echo
echo "## audit rows those calls produced (read after the graceful shutdown)"
python3 - "$D/kg.db" <<'PY'
import sqlite3,sys
c=sqlite3.connect(sys.argv[1])
print("    id | request | status | outcome | token_id | required_scope | ip")
for r in c.execute("select id, method||' '||path, status, outcome, coalesce(token_id,'-'), coalesce(required_scope,'-'), ip from audit_events where kind='api' order by id"):
    print("    " + " | ".join(str(x) for x in r))
n = c.execute("select count(*) from audit_events where token_id is not null and (detail like '%kgs_%' or path like '%kgs_%' or user_agent like '%kgs_%')").fetchone()[0]
print("    rows containing a token string:", n)
PY
