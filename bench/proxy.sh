#!/usr/bin/env bash
# keygate as a gateway (SPEC §11 "Performance"), against nginx's own proxy,
# in one run on loopback. See bench/README.md, section "Proxy".
#   bench/proxy.sh
# An nginx upstream answers a small fixed JSON body; then, with wrk at
# BENCH_CONNECTIONS (64) for BENCH_DURATION (15s) each:
#   A  nginx proxy_pass (a second nginx, keep-alive pool) -> the upstream
#   B  keygate --upstream (gate, limit, audit row, assertion) -> the upstream
#   C  keygate /gate/check decisions (X-Original-Method/-URI, from a trusted proxy)
#   D  keygate GET /api/v1/token (the gate's baseline, as in bench/run.sh)
# CPU per request = the server's user + system time (/proc/PID/stat; for A
# the proxy nginx's master and workers, never the upstream or wrk) ÷ the
# requests wrk counted. Exits non-zero only when the setup fails.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-15s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${BENCH_ROUNDS:-3}
# keygate's HTTP workers and nginx's worker_processes, the same on both sides.
WORKERS=${BENCH_WORKERS:-1}
NGINX=${BENCH_NGINX:-/usr/sbin/nginx}

die() { echo "bench/proxy.sh: $*" >&2; exit 1; }
command -v wrk >/dev/null || { echo "installing wrk" >&2; apt-get install -y -qq wrk >/dev/null; }
[[ -x $NGINX ]] || die "no nginx at $NGINX (BENCH_NGINX)"
if [[ -z ${BENCH_KEYGATE:-} ]]; then
  export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
  cargo build --release -q --bin keygate
fi
# BENCH_KEYGATE runs another build (an older commit, say) with the same bench.
KG=${BENCH_KEYGATE:-target/release/keygate}
SPEC=bench/upstream.yaml

WORK=$(mktemp -d)
PIDS=()
# Only the processes this script started, by their ids.
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP_PORT=$(free_port) NX_PORT=$(free_port) KG_PORT=$(free_port)
[[ $UP_PORT != "$NX_PORT" && $NX_PORT != "$KG_PORT" && $UP_PORT != "$KG_PORT" ]] || die "could not find three free ports"

# nginx_conf NAME SERVER-BLOCK [HTTP-LINES]: an nginx of its own in $WORK/NAME.
nginx_conf() {
  local dir=$WORK/$1
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes $WORKERS;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  # keygate (actix) does not close a client's connection after N requests.
  keepalive_requests 100000000;
  keepalive_timeout 75s;
${3:-}
  server {
$2
  }
}
CONF
}
# The upstream: one small fixed JSON body on every path.
BODY='{"items":[{"sku":"MUG-1","title":"Mug","price_cents":1200},{"sku":"TEE-2","title":"T-shirt","price_cents":2500}],"next_cursor":null}'
nginx_conf upstream "    listen 127.0.0.1:$UP_PORT;
    location / { default_type application/json; return 200 '$BODY'; }"
# A: nginx's proxy, with a keep-alive pool to the upstream and the
# forwarding headers keygate also adds.
nginx_conf proxy "    listen 127.0.0.1:$NX_PORT;
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Request-Id \$request_id;
    }" "  upstream bench_upstream {
    server 127.0.0.1:$UP_PORT;
    keepalive 128;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
  }"
start_nginx() { # NAME -> the master's pid in NGINX_PID
  "$NGINX" -p "$WORK/$1" -c "$WORK/$1/nginx.conf" -e "$WORK/$1/error.log" &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
}
start_nginx upstream
UP_PID=$NGINX_PID
start_nginx proxy
NX_PID=$NGINX_PID

export DATABASE_URL="$WORK/bench.db" KEYGATE_PASSWORD='benchmark password 123' RUST_LOG=${RUST_LOG:-warn}
$KG --api-spec "$SPEC" user create --email bench@keygate.test >/dev/null 2>&1 || die "keygate user create failed"
# The token of bench/run.sh (personal, so every scope of the catalogue: items:read).
TOKEN=$($KG --api-spec "$SPEC" token create --email bench@keygate.test --name proxy --kind personal --expires-in never) ||
  die "keygate token create failed"
# One keygate for B, C and D: proxy mode, 127.0.0.1 trusted to ask /gate/check.
# shellcheck disable=SC2086  # BENCH_SERVE_ARGS is a list of flags
$KG serve --api-spec "$SPEC" --bind "127.0.0.1:$KG_PORT" --public-url "http://127.0.0.1:$KG_PORT" \
  --workers "$WORKERS" --upstream "http://127.0.0.1:$UP_PORT" --trusted-proxy 127.0.0.1 \
  --rate-limit-per-minute 100000000 ${BENCH_SERVE_ARGS:-} >"$WORK/keygate.log" 2>&1 &
KG_PID=$!
PIDS+=("$KG_PID")

UP="http://127.0.0.1:$UP_PORT" NX="http://127.0.0.1:$NX_PORT" KGB="http://127.0.0.1:$KG_PORT"
for url in "$UP/" "$NX/" "$KGB/healthz"; do
  for _ in $(seq 100); do curl -s -o /dev/null "$url" && break; sleep 0.1; done
done

# Every path must answer as it should before anything is measured: a
# benchmark of refusals is meaningless.
ITEMS=/api/v1/items
expect() { # WANT NAME CURL-ARGS...
  local want=$1 name=$2 got; shift 2
  got=$(curl -s -o "$WORK/answer" -w '%{http_code}' "$@") || got="no answer"
  if [[ " $want " != *" $got "* ]]; then
    echo "bench/proxy.sh: $name answered $got, expected $want:" >&2
    head -c 400 "$WORK/answer" >&2 || true
    echo >&2
    tail -5 "$WORK/keygate.log" "$WORK/upstream/error.log" "$WORK/proxy/error.log" >&2 2>/dev/null || true
    exit 1
  fi
}
AUTH="Authorization: Bearer $TOKEN"
ORIGINAL=(-H "X-Original-Method: GET" -H "X-Original-URI: $ITEMS")
expect 200 "the upstream" "$UP$ITEMS"
expect 200 "A (nginx proxy)" -H "$AUTH" "$NX$ITEMS"
expect 200 "B (keygate proxy)" -H "$AUTH" "$KGB$ITEMS"
grep -q '"MUG-1"' "$WORK/answer" || die "B did not pass the upstream's body on"
expect 401 "B without a token" "$KGB$ITEMS"
expect "200 204" "C (/gate/check)" -H "$AUTH" "${ORIGINAL[@]}" "$KGB/gate/check"
expect 200 "D (/api/v1/token)" -H "$AUTH" "$KGB/api/v1/token"

TICK=$(getconf CLK_TCK)
# ticks PID...: user + system CPU time of these processes so far, in clock ticks.
ticks() {
  local total=0 pid
  for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$total"
}
# split PID: keygate's CPU ticks so far in its HTTP workers and its audit
# writer (threads alive now; the rest is the process's total minus these).
split() {
  local t comm ticks http=0 audit=0
  for t in /proc/"$1"/task/*; do
    ticks=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null) || continue
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    case $comm in
      actix-rt*) http=$((http + ticks)) ;;
      keygate-audit*) audit=$((audit + ticks)) ;;
    esac
  done
  echo "$http $audit"
}
# The nginx master and its workers.
nginx_pids() { echo "$1" $(ps -o pid= --ppid "$1"); }

# measure NAME URL PIDS [wrk -H args...] -> sets REQ, P99 (ms), CPU_S, CPU_US, BAD
measure() {
  local name=$1 url=$2 pids=$3; shift 3
  local before up_before out after up_after
  local split_before=(0 0) split_after=(0 0)
  [[ $pids == "$KG_PID" ]] && read -r -a split_before < <(split "$KG_PID")
  # shellcheck disable=SC2086
  before=$(ticks $pids) up_before=$(ticks $(nginx_pids "$UP_PID"))
  out=$(BENCH_TOKEN=$TOKEN wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/count.lua "$@" "$url") ||
    die "wrk failed for $name"
  # shellcheck disable=SC2086
  after=$(ticks $pids) up_after=$(ticks $(nginx_pids "$UP_PID"))
  [[ $pids == "$KG_PID" ]] && read -r -a split_after < <(split "$KG_PID")
  REQ=$(awk '/requests in/ {print $1}' <<<"$out")
  # wrk counts answers with a status over 399 ("Non-2xx or 3xx responses")
  # and socket errors; both must be 0 (the curl checks above saw 200/204).
  BAD=$(awk '/Non-2xx or 3xx responses/ {print $NF}' <<<"$out")
  BAD=$((${BAD:-0} + $(awk '/Socket errors/ {gsub(",", ""); n = $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")))
  local p99_us; read -r _ _ p99_us < <(grep '^LAT' <<<"$out")
  P99=$(awk -v us="$p99_us" 'BEGIN {printf "%.2f", us / 1000}')
  CPU_S=$(awk -v t="$((after - before))" -v hz="$TICK" 'BEGIN {printf "%.2f", t / hz}')
  CPU_US=$(awk -v t="$((after - before))" -v hz="$TICK" -v n="$REQ" 'BEGIN {printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0)}')
  local up_us; up_us=$(awk -v t="$((up_after - up_before))" -v hz="$TICK" -v n="$REQ" 'BEGIN {printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0)}')
  # keygate: µs per request in the HTTP worker(s) / the audit writer / the rest.
  SPLIT=—
  if [[ $pids == "$KG_PID" ]]; then
    SPLIT=$(awk -v h="$((split_after[0] - split_before[0]))" -v a="$((split_after[1] - split_before[1]))" \
      -v t="$((after - before))" -v hz="$TICK" -v n="$REQ" \
      'BEGIN {k = (n > 0 ? 1e6 / hz / n : 0); printf "%.1f / %.1f / %.1f", h * k, a * k, (t - h - a) * k}')
  fi
  printf '  %-36s %9s requests  p99 %7s ms  CPU %6s s = %6s µs/req (%s)  non-2xx %s  (upstream nginx %s µs/req)\n' \
    "$name" "$REQ" "$P99" "$CPU_S" "$CPU_US" "$SPLIT" "$BAD" "$up_us" >&2
}

NX_PIDS=$(nginx_pids "$NX_PID")
[[ $(wc -w <<<"$NX_PIDS") -eq $((WORKERS + 1)) ]] || die "the proxy nginx has not $WORKERS worker(s): $NX_PIDS"
echo "keygate proxy bench: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS round(s), $WORKERS worker(s) for keygate and each nginx, $(nproc) cores" >&2
echo "  upstream nginx :$UP_PORT, proxy nginx :$NX_PORT (pids $NX_PIDS), keygate :$KG_PORT (pid $KG_PID)" >&2

# Warm-up: connections, pools and caches, not measured.
WARM_DURATION=${BENCH_WARMUP:-3s}
warm() { BENCH_TOKEN=$TOKEN wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARM_DURATION" -s bench/count.lua "$@" >/dev/null || die "wrk failed (warm-up)"; }
warm "$NX$ITEMS"
warm "$KGB$ITEMS"
warm -H "X-Original-Method: GET" -H "X-Original-URI: $ITEMS" "$KGB/gate/check"
warm "$KGB/api/v1/token"

A_REQ=() A_99=() A_CPU=() A_US=() B_REQ=() B_99=() B_CPU=() B_US=() C_REQ=() C_99=() C_CPU=() C_US=() D_REQ=() D_99=() D_CPU=() D_US=()
SAME_ROUND=() BAD_A=0 BAD_B=0 BAD_C=0 BAD_D=0
for round in $(seq "$ROUNDS"); do
  measure "A nginx proxy_pass [$round]" "$NX$ITEMS" "$NX_PIDS"
  A_REQ+=("$REQ") A_99+=("$P99") A_CPU+=("$CPU_S") A_US+=("$CPU_US") A_SPLIT=$SPLIT BAD_A=$((BAD_A + BAD))
  measure "B keygate proxy [$round]" "$KGB$ITEMS" "$KG_PID"
  B_REQ+=("$REQ") B_99+=("$P99") B_CPU+=("$CPU_S") B_US+=("$CPU_US") B_SPLIT=$SPLIT BAD_B=$((BAD_B + BAD))
  measure "C keygate /gate/check [$round]" "$KGB/gate/check" "$KG_PID" -H "X-Original-Method: GET" -H "X-Original-URI: $ITEMS"
  C_REQ+=("$REQ") C_99+=("$P99") C_CPU+=("$CPU_S") C_US+=("$CPU_US") C_SPLIT=$SPLIT BAD_C=$((BAD_C + BAD))
  measure "D keygate GET /api/v1/token [$round]" "$KGB/api/v1/token" "$KG_PID"
  SAME_ROUND+=("$(awk -v a="${A_US[-1]}" -v b="${B_US[-1]}" -v c="${C_US[-1]}" -v d="$CPU_US" \
    'BEGIN {printf "%.2f / %.2f", (a > 0 ? b / a : 0), (d > 0 ? c / d : 0)}')")
  D_REQ+=("$REQ") D_99+=("$P99") D_CPU+=("$CPU_S") D_US+=("$CPU_US") D_SPLIT=$SPLIT BAD_D=$((BAD_D + BAD))
done
kill -0 "$KG_PID" 2>/dev/null || die "keygate exited during the run: $(tail -5 "$WORK/keygate.log")"

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
# verdict VALUE TARGET BAD: PASS or FAIL (a leg with a non-2xx answer fails).
verdict() { awk -v v="$1" -v t="$2" -v bad="$3" 'BEGIN {print (bad == 0 && v <= t ? "PASS" : (bad > 0 ? "FAIL (non-2xx)" : "FAIL"))}'; }
for leg in A B C D; do
  declare -n req=${leg}_REQ p99=${leg}_99 cpu=${leg}_CPU us=${leg}_US
  printf -v "${leg}_M_REQ" '%s' "$(median "${req[@]}")"
  printf -v "${leg}_M_99" '%s' "$(median "${p99[@]}")"
  printf -v "${leg}_M_CPU" '%s' "$(median "${cpu[@]}")"
  printf -v "${leg}_M_US" '%s' "$(median "${us[@]}")"
  unset -n req p99 cpu us
done
BA=$(ratio "$B_M_US" "$A_M_US") CD=$(ratio "$C_M_US" "$D_M_US")
LAST=""
[[ $ROUNDS -gt 1 ]] && WHAT="medians of $ROUNDS rounds" LAST=" (last round)" || WHAT="one round"

cat <<TABLE

| leg ($WHAT; wrk -c$CONNECTIONS -d$DURATION; $WORKERS worker) | requests | p99 | server CPU | CPU per request | of which HTTP worker / audit writer / rest$LAST | non-2xx |
|---|---|---|---|---|---|---|
| A nginx \`proxy_pass\` → upstream | $A_M_REQ | $A_M_99 ms | $A_M_CPU s | $A_M_US µs | — | $BAD_A |
| B keygate \`--upstream\` → upstream | $B_M_REQ | $B_M_99 ms | $B_M_CPU s | $B_M_US µs | $B_SPLIT µs | $BAD_B |
| C keygate \`/gate/check\` | $C_M_REQ | $C_M_99 ms | $C_M_CPU s | $C_M_US µs | $C_SPLIT µs | $BAD_C |
| D keygate \`GET /api/v1/token\` | $D_M_REQ | $D_M_99 ms | $D_M_CPU s | $D_M_US µs | $D_SPLIT µs | $BAD_D |

| target (SPEC §11) | value | target | result |
|---|---|---|---|
| CPU per request B ÷ A | $BA | ≤ 2.0 | $(verdict "$BA" 2.0 $((BAD_A + BAD_B))) |
| CPU per request C ÷ D | $CD | ≤ 1.0 | $(verdict "$CD" 1.0 $((BAD_C + BAD_D))) |
| p99 of B at $CONNECTIONS connections | $B_M_99 ms | ≤ 10 ms | $(verdict "$B_M_99" 10 "$BAD_B") |
| each round's own B ÷ A / C ÷ D | $(printf '%s; ' "${SAME_ROUND[@]}" | sed 's/; $//') | — | — |
TABLE
