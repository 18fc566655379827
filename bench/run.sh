#!/usr/bin/env bash
# keygate benchmark: one command, one summary table. See bench/README.md.
#   bench/run.sh              SQLite (a fresh file)
#   bench/run.sh --postgres   PostgreSQL (a fresh database on $BENCH_POSTGRES_URL)
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=sqlite
[[ "${1:-}" == "--postgres" ]] && BACKEND=postgres
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
PORT=${BENCH_PORT:-18080}
PG_ADMIN=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}

command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q --bin keygate --example loadgen --example signin_flood --example oauth_load
# BENCH_KEYGATE runs another build of keygate (an older commit, say) with the
# same bench, so two builds can be compared on one machine in one sitting.
KG=${BENCH_KEYGATE:-target/release/keygate}
WORK=$(mktemp -d)
# Never `kill 0` (the whole process group) once the server is gone.
stop_server() { if [[ -n ${SERVER:-} ]]; then kill "$SERVER" 2>/dev/null || true; fi; }
trap 'stop_server; rm -rf "$WORK"' EXIT

if [[ $BACKEND == postgres ]]; then
  DB=keygate_bench_$$
  psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
  trap 'stop_server; psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null; rm -rf "$WORK"' EXIT
  # Loopback: no TLS between keygate and PostgreSQL (libpq would otherwise
  # negotiate it, sslmode=prefer). Across a network, keep TLS on.
  export DATABASE_URL="${PG_ADMIN%/*}/$DB?sslmode=disable"
else
  export DATABASE_URL="$WORK/bench.db"
fi
export KEYGATE_PASSWORD='benchmark password 123' RUST_LOG=${RUST_LOG:-warn}

$KG user create --email bench@keygate.test >/dev/null 2>&1
PERSONAL=$($KG token create --email bench@keygate.test --name personal --kind personal --expires-in never)
SERVICE=$($KG token create --email bench@keygate.test --name service --kind service --scope orders:read)
ID=${PERSONAL:4:16}
# A wrong secret for the real id, and an unknown id, both with valid checksums.
forge() { python3 bench/forge.py "$1" "$2"; }
WRONG=$(forge kgp_ "$ID")
UNKNOWN=$(forge kgp_ "ZZZZZZZZZZZZZZZZ")

# An OAuth app for the OAuth figures (a confidential client, secret in JSON).
APP_JSON=$($KG app create --email bench@keygate.test --name "bench app" --redirect-uri http://127.0.0.1:9/callback)
CLIENT_ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$APP_JSON")
CLIENT_SECRET=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$APP_JSON")

# shellcheck disable=SC2086  # BENCH_SERVE_ARGS is a list of flags
$KG serve --bind 127.0.0.1:$PORT --rate-limit-per-minute 100000000 --oauth-token-rate-per-minute 100000000 \
  ${BENCH_SERVE_ARGS:-} >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

PEAK_RSS=0
sample_rss() { local kb; kb=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status 2>/dev/null || echo 0); ((kb > PEAK_RSS)) && PEAK_RSS=$kb || true; }

TOTAL_SENT=0
TICK=$(getconf CLK_TCK)
# The server's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
# run NAME URL TOKEN -> sets RPS, P50, P99 (ms) and CPU (server µs per
# request answered); adds to TOTAL_SENT for /api/ URLs
run() {
  local name=$1 url=$2 token=$3 out before after answered
  before=$(cpu_ticks)
  out=$(BENCH_TOKEN=$token wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s bench/count.lua "$url")
  after=$(cpu_ticks)
  answered=$(awk '/requests in/ {print $1}' <<<"$out")
  CPU=$(awk -v t="$((after - before))" -v hz="$TICK" -v n="$answered" 'BEGIN {printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0)}')
  RPS=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  read -r _ P50 P99 < <(grep '^LAT' <<<"$out")
  P50=$(awk -v us="$P50" 'BEGIN {printf "%.2f", us/1000}')
  P99=$(awk -v us="$P99" 'BEGIN {printf "%.2f", us/1000}')
  local sent; sent=$(awk '/^SENT/ {print $2}' <<<"$out")
  [[ $url == */api/* ]] && TOTAL_SENT=$((TOTAL_SENT + sent))
  sample_rss
  printf '  %-34s %10s req/s   p50 %7s ms   p99 %7s ms   CPU %6s µs/req   (%s sent; peak RSS so far %s MiB)\n' \
    "$name" "$RPS" "$P50" "$P99" "$CPU" "$sent" "$((PEAK_RSS / 1024))" >&2
}

echo "keygate bench: $BACKEND, wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, $(nproc) cores" >&2
B="http://127.0.0.1:$PORT"
oauth() { BENCH_SERVER_PID=$SERVER target/release/examples/oauth_load "$B" bench@keygate.test "$KEYGATE_PASSWORD" \
  "$CLIENT_ID" "$CLIENT_SECRET" http://127.0.0.1:9/callback "$@"; }
OAUTH_ACCESS=$(oauth access | awk '/^ACCESS/ {print $2}')
run "warm-up (token)" "$B/api/v1/token" "$PERSONAL"
run "warm-up (OAuth token)" "$B/api/v1/token" "$OAUTH_ACCESS"

# Each round measures every figure once, back to back, so a noisy stretch of
# the machine hits a round, not one figure; the table gives medians of rounds.
H_R=() H_50=() H_99=() H_CPU=() T_R=() T_50=() T_99=() T_CPU=() O_R=() O_99=() O_CPU=() FL_R=() FLOOD_SENT=0
A_R=() A_99=() A_CPU=() SAME_ROUND=()
for round in $(seq "$ROUNDS"); do
  run "GET /healthz [$round]" "$B/healthz" ""; H_R+=("$RPS") H_50+=("$P50") H_99+=("$P99") H_CPU+=("$CPU")
  run "GET /api/v1/token [$round]" "$B/api/v1/token" "$PERSONAL"; T_R+=("$RPS") T_50+=("$P50") T_99+=("$P99") T_CPU+=("$CPU")
  # The same round's ratios, shown beside the medians': on a machine that
  # changes speed between measurements, these pair figures measured together.
  SAME_ROUND+=("$(awk -v t="$CPU" -v h="${H_CPU[-1]}" -v tr="$RPS" -v hr="${H_R[-1]}" 'BEGIN {printf "%.2f× / %.3f", (h > 0 ? t / h : 0), (hr > 0 ? tr / hr : 0)}')")
  run "GET /api/v1/orders?limit=20 [$round]" "$B/api/v1/orders?limit=20" "$SERVICE"; O_R+=("$RPS") O_99+=("$P99") O_CPU+=("$CPU")
  run "GET /api/v1/token, OAuth [$round]" "$B/api/v1/token" "$OAUTH_ACCESS"; A_R+=("$RPS") A_99+=("$P99") A_CPU+=("$CPU")
  # Flood: valid-token traffic while two other clients send wrong secrets
  # for a real id and unknown ids, as fast as they are answered.
  BENCH_TOKEN=$WRONG wrk -t1 -c16 -d"$DURATION" -s bench/count.lua "$B/api/v1/token" >"$WORK/flood1" &
  F1=$!
  BENCH_TOKEN=$UNKNOWN wrk -t1 -c16 -d"$DURATION" -s bench/count.lua "$B/api/v1/token" >"$WORK/flood2" &
  F2=$!
  run "GET /api/v1/token under flood [$round]" "$B/api/v1/token" "$PERSONAL"; FL_R+=("$RPS")
  wait $F1 $F2
  for f in flood1 flood2; do FLOOD_SENT=$((FLOOD_SENT + $(awk '/^SENT/ {print $2}' "$WORK/$f"))); done
done
TOTAL_SENT=$((TOTAL_SENT + FLOOD_SENT))
printf '  %-34s %10s invalid-token requests sent by the flood clients\n' "flood (all rounds)" "$FLOOD_SENT" >&2
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
H_RPS=$(median "${H_R[@]}") H_P50=$(median "${H_50[@]}") H_P99=$(median "${H_99[@]}")
T_RPS=$(median "${T_R[@]}") T_P50=$(median "${T_50[@]}") T_P99=$(median "${T_99[@]}")
O_RPS=$(median "${O_R[@]}") O_P99=$(median "${O_99[@]}") FL_RPS=$(median "${FL_R[@]}")
H_CPU_US=$(median "${H_CPU[@]}") T_CPU_US=$(median "${T_CPU[@]}") O_CPU_US=$(median "${O_CPU[@]}")
A_RPS=$(median "${A_R[@]}") A_P99=$(median "${A_99[@]}") A_CPU_US=$(median "${A_CPU[@]}")
sample_rss

# The token endpoint. SPEC §6's figures first: refresh chains at 4
# connections (each spends its current refresh token, a real client's
# pattern) and code exchanges by 4 clients; then the same at 32 for the
# contended case. Each prints count, per second, p50, p99, errors, server
# CPU µs per operation and the argon2 pool's share of it, measured over its
# timed phase only. Each run collects its codes from addresses of its own
# (BENCH_ADDRESS_NET), which the authorize limit has not seen.
token_endpoint() { # NAME NET LABEL MODE ARGS: prints a line, sets the array NAME
  local name=$1 net=$2 label=$3; shift 3
  local line; line=$(BENCH_ADDRESS_NET=$net oauth "$@")
  read -r -a "$name" <<<"$line"
  local -n f=$name
  printf '  %-34s %10s req/s   p50 %7s ms   p99 %7s ms   CPU %6s µs/req   (%s done, %s errors, argon2 %s%% of the CPU)\n' \
    "POST /oauth/token $label" "${f[2]}" "${f[3]}" "${f[4]}" "${f[6]}" "${f[1]}" "${f[5]}" "${f[7]}" >&2
}
token_endpoint RF4 20 "refresh, 4 chains" refresh 4 "${DURATION%s}"
token_endpoint EX4 10 "exchange, 4 clients" exchange "${BENCH_CODES:-1000}" 4
token_endpoint RF32 30 "refresh, 32 chains" refresh 32 "${DURATION%s}"
token_endpoint EX32 40 "exchange, 32 clients" exchange "${BENCH_CODES:-1000}" 32
sample_rss

# An argon2 flood: failed sign-ins from 64 addresses at once, each costing
# an argon2 check; the peak RSS must stay bounded through it.
read -r _ SI_CHECKED SI_BUSY SI_THROTTLED < <(target/release/examples/signin_flood "$B" "${BENCH_SIGNINS:-2000}" 64 2>/dev/null)
sample_rss
printf '  %-34s %10s checked, %s answered 503 (argon2 queue full), %s throttled; peak RSS so far %s MiB\n' \
  "sign-in flood (signin_flood)" "$SI_CHECKED" "$SI_BUSY" "$SI_THROTTLED" "$((PEAK_RSS / 1024))" >&2

# The audit ratio: a mix of valid, missing and wrong tokens from a client that
# counts exactly what it sent, then SIGTERM; every request must have its row.
AUDIT_OUT=$(target/release/examples/loadgen "$B/api/v1/token" 5 "$CONNECTIONS" "$PERSONAL" "" "$WRONG" "$UNKNOWN" 2>/dev/null)
AUDIT_SENT=$(awk '/^SENT/ {print $2}' <<<"$AUDIT_OUT")
printf '  %-34s %10s requests sent, valid + missing + wrong tokens\n' "audit phase (loadgen)" "$AUDIT_SENT" >&2
sample_rss
kill -TERM $SERVER; wait $SERVER || true
SERVER=
if [[ $BACKEND == postgres ]]; then
  ROWS=$(psql "$DATABASE_URL" -Atc "SELECT coalesce(sum(coalesce(request_count, 1)), 0) FROM audit_events WHERE user_agent = 'keygate-bench-loadgen'")
  ALL_ROWS=$(psql "$DATABASE_URL" -Atc "SELECT coalesce(sum(coalesce(request_count, 1)), 0) FROM audit_events WHERE kind = 'api'")
else
  count_rows() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$DATABASE_URL" "$1"; }
  # A summary row stands for request_count refused requests (see the
  # README: refusals without a valid token past 60 a minute per address).
  ROWS=$(count_rows "select coalesce(sum(coalesce(request_count, 1)), 0) from audit_events where user_agent = 'keygate-bench-loadgen'")
  ALL_ROWS=$(count_rows "select coalesce(sum(coalesce(request_count, 1)), 0) from audit_events where kind = 'api'")
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}'; }
GATE=$(ratio "$T_RPS" "$H_RPS")
AUDIT=$(awk -v a="$ROWS" -v b="$AUDIT_SENT" 'BEGIN {printf "%.6f", (b > 0 ? a / b : 0)}')
FLOOD=$(ratio "$FL_RPS" "$T_RPS")
RSS_MB=$(awk -v kb="$PEAK_RSS" 'BEGIN {printf "%.1f", kb/1024}')
# pass VALUE OP TARGET [NAME]: yes or NO; a missed target is named in the last line.
pass() {
  local ok; ok=$(awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == ">=" ? v >= t : (op == "<=" ? v <= t : v == t)); print (ok ? "yes" : "NO") }')
  [[ $ok == NO ]] && echo "${4:-?}" >>"$WORK/missed"
  echo "$ok"
}
# SPEC §6 sets the token endpoint's rates and p99 for SQLite; on
# PostgreSQL the figures are shown and only errors count.
if [[ $BACKEND == sqlite ]]; then
  sqlite_only() { pass "$@"; }
  RF_TARGET="≥ 1600/s; p99 ≤ 10 ms; no error" EX_TARGET="≥ 600/s; p99 ≤ 10 ms; no error"
else
  sqlite_only() { echo "—"; }
  RF_TARGET="no error (rate and p99: SQLite's)" EX_TARGET=$RF_TARGET
fi

cat <<TABLE

| measure ($BACKEND; medians of $ROUNDS rounds) | value | target | met |
|---|---|---|---|
| gate ratio: /api/v1/token req/s ÷ /healthz req/s | $GATE ($T_RPS ÷ $H_RPS) | ≥ 0.5 | $(pass "$GATE" ">=" 0.5 "gate ratio") |
| /healthz latency p50 / p99 | $H_P50 / $H_P99 ms | — | — |
| server CPU per request: /healthz | $H_CPU_US µs | — | — |
| server CPU per request: /api/v1/token, ÷ /healthz | $T_CPU_US µs, $(ratio "$T_CPU_US" "$H_CPU_US")× | ≤ 2.0× | $(pass "$(ratio "$T_CPU_US" "$H_CPU_US")" "<=" 2.0 "token CPU ÷ healthz") |
| the same round's token CPU ÷ healthz CPU / gate ratio, each round | $(printf '%s; ' "${SAME_ROUND[@]}" | sed 's/; $//') | — | — |
| server CPU per request: /api/v1/orders?limit=20, ÷ /healthz | $O_CPU_US µs, $(ratio "$O_CPU_US" "$H_CPU_US")× | — | — |
| /api/v1/token latency p50 / p99 | $T_P50 / $T_P99 ms | p99 ≤ 10 ms | $(pass "$T_P99" "<=" 10 "token p99") |
| OAuth access token: gate ratio; CPU per request ÷ the API token's | $(ratio "$A_RPS" "$H_RPS") ($A_RPS ÷ $H_RPS); $A_CPU_US µs, $(ratio "$A_CPU_US" "$T_CPU_US")× | ≥ 0.5; ≈ 1× | $(pass "$(ratio "$A_RPS" "$H_RPS")" ">=" 0.5 "OAuth gate ratio") |
| OAuth access token: /api/v1/token p99 | $A_P99 ms | p99 ≤ 10 ms | $(pass "$A_P99" "<=" 10 "OAuth p99") |
| POST /oauth/token refresh, 4 chains: refreshes/s; p50 / p99; CPU; argon2's share | ${RF4[2]}/s; ${RF4[3]} / ${RF4[4]} ms; ${RF4[6]} µs; ${RF4[7]}% (${RF4[5]} errors) | $RF_TARGET | $(sqlite_only "${RF4[2]}" ">=" 1600 "refreshes/s") $(sqlite_only "${RF4[4]}" "<=" 10 "refresh p99") $(pass "${RF4[5]}" "==" 0 "refresh errors") |
| POST /oauth/token code exchange, 4 clients: exchanges/s; p50 / p99; CPU; argon2's share | ${EX4[2]}/s; ${EX4[3]} / ${EX4[4]} ms; ${EX4[6]} µs; ${EX4[7]}% (${EX4[5]} errors) | $EX_TARGET | $(sqlite_only "${EX4[2]}" ">=" 600 "exchanges/s") $(sqlite_only "${EX4[4]}" "<=" 10 "exchange p99") $(pass "${EX4[5]}" "==" 0 "exchange errors") |
| the same at 32 chains / 32 clients: per second; p50 / p99; CPU; argon2's share | refresh ${RF32[2]}/s; ${RF32[3]} / ${RF32[4]} ms; ${RF32[6]} µs; ${RF32[7]}% (${RF32[5]} errors); exchange ${EX32[2]}/s; ${EX32[3]} / ${EX32[4]} ms; ${EX32[6]} µs; ${EX32[7]}% (${EX32[5]} errors) | no error | $(pass "$((RF32[5] + EX32[5]))" "==" 0 "errors at 32") |
| /api/v1/orders?limit=20 req/s, p99 | $O_RPS, $O_P99 ms | p99 ≤ 10 ms | $(pass "$O_P99" "<=" 10 "orders p99") |
| audit ratio: rows ÷ requests sent (loadgen phase, after SIGTERM) | $AUDIT ($ROWS ÷ $AUDIT_SENT) | exactly 1 | $(pass "$AUDIT" "==" 1 "audit ratio") |
| all API rows ÷ requests wrk wrote (wrk drops its in-flight requests at the end) | $(ratio "$ALL_ROWS" "$((TOTAL_SENT + AUDIT_SENT))") ($ALL_ROWS ÷ $((TOTAL_SENT + AUDIT_SENT))) | — | — |
| flood retention | $FLOOD ($FL_RPS ÷ $T_RPS; the flood sent $FLOOD_SENT invalid tokens) | ≥ 0.8 | $(pass "$FLOOD" ">=" 0.8 "flood retention") |
| peak RSS of the server, through an argon2 flood of $((SI_CHECKED + SI_BUSY + SI_THROTTLED)) failed sign-ins ($SI_CHECKED checked, $SI_BUSY refused 503) | $RSS_MB MiB | ≤ 256 MiB | $(pass "$RSS_MB" "<=" 256 "peak RSS") |
TABLE
if [[ -s "$WORK/missed" ]]; then
  echo; echo "targets missed: $(paste -sd, "$WORK/missed" | sed 's/,/, /g')"
else
  echo; echo "every target met"
fi
