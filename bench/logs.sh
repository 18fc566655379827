#!/usr/bin/env bash
# API Logs at scale: seeds ROWS (default 1,000,000) audit rows for one seller,
# then times the first page, a filtered page and a page deep into the cursor.
#   bench/logs.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
PORT=${BENCH_PORT:-18090}
cargo build --release -q --bin keygate --example seed_logs
KG=target/release/keygate
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export DATABASE_URL="$WORK/logs.db" KEYGATE_PASSWORD='benchmark password 123' RUST_LOG=warn
$KG user create --email seller@bench.test >/dev/null 2>&1
time target/release/examples/seed_logs "$DATABASE_URL" seller@bench.test "$ROWS"
$KG serve --bind 127.0.0.1:$PORT >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
B="http://127.0.0.1:$PORT"
JAR="$WORK/cookies"
CSRF=$(curl -s -c "$JAR" -b "$JAR" "$B/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
curl -s -o /dev/null -c "$JAR" -b "$JAR" --data-urlencode "csrf_token=$CSRF" --data-urlencode "email=seller@bench.test" \
  --data-urlencode "password=$KEYGATE_PASSWORD" "$B/login"
page() { curl -s -o "$WORK/page.html" -w '%{time_total}' -b "$JAR" "$B$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_page() { for _ in 1 2 3 4 5; do page "$1"; echo; done | median; }
FIRST=$(time_page "/settings/logs")
FILTERED=$(time_page "/settings/logs?outcome=insufficient_scope&method=GET")
# A cursor deep in the log: the id of a row about 90 % of the way back.
DEEP_ID=$((ROWS / 10))
CURSOR=$(printf 'v1:%s' "$DEEP_ID" | base64 | tr '+/' '-_' | tr -d '=')
DEEP=$(time_page "/settings/logs?cursor=$CURSOR")
grep -q "Older" "$WORK/page.html" || { echo "the deep page did not render rows" >&2; exit 1; }
ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
cat <<TABLE

| API Logs with $ROWS rows (SQLite), median of 5 | time | target |
|---|---|---|
| first page | $(ms "$FIRST") ms | < 50 ms |
| filtered page (outcome + method) | $(ms "$FILTERED") ms | < 50 ms |
| page deep in the cursor (id $DEEP_ID) | $(ms "$DEEP") ms | < 50 ms |
TABLE
