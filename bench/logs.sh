#!/usr/bin/env bash
# API Logs at scale: seeds ROWS (default 1,000,000) audit rows for one seller,
# then times the first page, a filtered page and a page deep into the cursor,
# in the seller's view and in the admin's. Server time is curl's total on
# loopback. The first view after start (nothing cached yet) is reported on its
# own; the table gives medians of 5.
#   bench/logs.sh [ROWS]              SQLite
#   bench/logs.sh [ROWS] --postgres   a fresh database on $BENCH_POSTGRES_URL
# KEYGATE_BENCH_DB=path keeps the seeded SQLite file there and reuses it when
# it already exists (seeding 1M rows takes a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=1000000 BACKEND=SQLite
for arg in "$@"; do
  case $arg in
    --postgres) BACKEND=PostgreSQL ;;
    *[!0-9]* | '') echo "usage: bench/logs.sh [ROWS] [--postgres]" >&2; exit 2 ;;
    *) ROWS=$arg ;;
  esac
done
PORT=${BENCH_PORT:-18090}
cargo build --release -q --bin keygate --example seed_logs
KG=target/release/keygate
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
export DATABASE_URL="${KEYGATE_BENCH_DB:-$WORK/logs.db}" KEYGATE_PASSWORD='benchmark password 123' RUST_LOG=warn
if [[ $BACKEND == PostgreSQL ]]; then
  PG_ADMIN=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
  DB=keygate_logs_$$
  psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
  trap 'kill "${SERVER:-0}" 2>/dev/null || true; sleep 0.5; psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null; rm -rf "$WORK"' EXIT
  export DATABASE_URL="${PG_ADMIN%/*}/$DB?sslmode=disable"
fi
if [[ $BACKEND == PostgreSQL || ! -e "$DATABASE_URL" ]]; then
  $KG user create --email seller@bench.test >/dev/null 2>&1
  $KG user create --email admin@bench.test --role admin >/dev/null 2>&1
  time target/release/examples/seed_logs "$DATABASE_URL" seller@bench.test "$ROWS"
fi
$KG serve --bind 127.0.0.1:$PORT >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
B="http://127.0.0.1:$PORT"
login() {
  local jar="$WORK/$1.cookies" csrf
  csrf=$(curl -s -c "$jar" -b "$jar" "$B/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
  curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf_token=$csrf" --data-urlencode "email=$1" \
    --data-urlencode "password=$KEYGATE_PASSWORD" "$B/login"
}
login seller@bench.test
login admin@bench.test
JAR="$WORK/seller@bench.test.cookies"
page() { curl -s -o "$WORK/page.html" -w '%{time_total}' -b "$JAR" "$B$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_page() { for _ in 1 2 3 4 5; do page "$1"; echo; done | median; }
ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
# A cursor deep in the log: the id of a row about 90 % of the way back.
DEEP_ID=$((ROWS / 10))
CURSOR=$(printf 'v1:%s' "$DEEP_ID" | base64 | tr '+/' '-_' | tr -d '=')
FILTER="outcome=insufficient_scope&method=GET"
# One row in a hundred is an OAuth app's (examples/seed_logs.rs).
APP="app=kgc_SeedAppBench0001"

COLD=$(page "/settings/logs")
grep -q "<svg class=\"chart\"" "$WORK/page.html" || { echo "the first page has no chart" >&2; head -c 600 "$WORK/page.html" >&2; exit 1; }
# A busy scope's 30 days of addresses are read in the background; time the
# steady state, after that.
settle() {
  local start=$SECONDS
  while page "$1" >/dev/null && grep -q "Still reading the last 30 days" "$WORK/page.html"; do
    [ $((SECONDS - start)) -lt 60 ] || { echo "the address book was never built" >&2; exit 1; }
    sleep 0.2
  done
}
settle "/settings/logs"
FIRST=$(time_page "/settings/logs")
FILTERED_COLD=$(page "/settings/logs?$FILTER&path=%2Fapi")
FILTERED=$(time_page "/settings/logs?$FILTER")
APP_COLD=$(page "/settings/logs?$APP&method=POST")
APP_FILTERED=$(time_page "/settings/logs?$APP")
DEEP=$(time_page "/settings/logs?cursor=$CURSOR")
grep -q "Older" "$WORK/page.html" || { echo "the deep page did not render rows" >&2; exit 1; }
# Once the 10-second cache has expired: chart and bursts from SQL, the
# address book brought up to date.
sleep 11
EXPIRED=$(page "/settings/logs")

JAR="$WORK/admin@bench.test.cookies"
ADMIN_COLD=$(page "/admin/logs")
grep -q "seller@bench.test" "$WORK/page.html" || { echo "the admin page shows no seller rows" >&2; exit 1; }
settle "/admin/logs"
ADMIN_FIRST=$(time_page "/admin/logs")
ADMIN_FILTERED=$(time_page "/admin/logs?$FILTER")
ADMIN_APP_COLD=$(page "/admin/logs?$APP&method=POST")
ADMIN_APP=$(time_page "/admin/logs?$APP")
ADMIN_DEEP=$(time_page "/admin/logs?cursor=$CURSOR")
sleep 11
ADMIN_EXPIRED=$(page "/admin/logs")

cat <<TABLE

| API Logs with $ROWS rows ($BACKEND), median of 5 | seller | admin | target |
|---|---|---|---|
| first page | $(ms "$FIRST") ms | $(ms "$ADMIN_FIRST") ms | < 50 ms |
| filtered page (outcome + method) | $(ms "$FILTERED") ms | $(ms "$ADMIN_FILTERED") ms | < 50 ms |
| one OAuth app's rows (1 % of them) | $(ms "$APP_FILTERED") ms | $(ms "$ADMIN_APP") ms | < 50 ms |
| page deep in the cursor (id $DEEP_ID) | $(ms "$DEEP") ms | $(ms "$ADMIN_DEEP") ms | < 50 ms |
| first view after start (nothing cached) | $(ms "$COLD") ms | $(ms "$ADMIN_COLD") ms | |
| first page, cache expired (one view) | $(ms "$EXPIRED") ms | $(ms "$ADMIN_EXPIRED") ms | < 50 ms |
| a filtered page whose chart is not cached | $(ms "$FILTERED_COLD") ms | | < 50 ms |
| one app's rows (and POST), chart not cached | $(ms "$APP_COLD") ms | $(ms "$ADMIN_APP_COLD") ms | < 50 ms |
TABLE
