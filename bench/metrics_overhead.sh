#!/usr/bin/env bash
# What recording metrics costs `POST /order`: two builds of fastfood, one
# with the metrics and one without (e.g. the commit before them), measured in
# the same run, alternating, each time against a fresh embedded server
# (`serve --prep-time 0`, 2 workers, its own data directory), with a scraper
# reading /metrics every second as Prometheus would.
#
#   bash bench/metrics_overhead.sh WITH_BIN WITHOUT_BIN [ROUNDS]
#
# Prints each run's requests/s and p99, then the median of each side and
# their ratio. Needs wrk and curl. Loopback only; every run is bounded.
set -euo pipefail

WITH=${1:?the fastfood binary with metrics}
WITHOUT=${2:?the fastfood binary without metrics}
ROUNDS=${3:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
CONNECTIONS=${CONNECTIONS:-16}
PORT=${PORT:-7833}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastfood-metrics-bench.XXXXXX")
SERVER=
SCRAPER=

cleanup() {
  for pid in $SCRAPER $SERVER; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/order.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "cheeseburger, fries, cola"
LUA

# run NAME BIN: one measured run; appends "NAME rps p99" to results.
run() {
  local name=$1 bin=$2 dir
  dir=$(mktemp -d "$WORK/data.XXXXXX")
  "$bin" serve --listen "127.0.0.1:$PORT" --data-dir "$dir" --prep-time 0 >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
  done
  (while true; do curl -s "http://127.0.0.1:$PORT/metrics" >/dev/null; sleep 1; done) &
  SCRAPER=$!
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/order.lua" \
    "http://127.0.0.1:$PORT/order" >"$WORK/wrk.out" 2>&1
  kill "$SCRAPER" 2>/dev/null || true
  wait "$SCRAPER" 2>/dev/null || true
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  SERVER= SCRAPER=
  local rps p99 non2xx
  rps=$(awk '/^Requests\/sec/ { print $2 }' "$WORK/wrk.out")
  p99=$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.out")
  non2xx=$(awk '/Non-2xx/ { print $5 }' "$WORK/wrk.out")
  printf '%-8s %10s req/s  p99 %-8s %s\n' "$name" "$rps" "$p99" "${non2xx:+non-2xx: $non2xx}"
  echo "$name $rps" >>"$WORK/results"
  rm -rf "$dir"
}

for round in $(seq "$ROUNDS"); do
  # Alternate which goes first, so a trend in the machine's load hits both.
  if ((round % 2)); then
    run with "$WITH"
    run without "$WITHOUT"
  else
    run without "$WITHOUT"
    run with "$WITH"
  fi
done

median() {
  awk -v n="$1" '$1 == n { print $2 }' "$WORK/results" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
with=$(median with)
without=$(median without)
echo "median: with metrics $with req/s, without $without req/s, ratio $(awk -v a="$with" -v b="$without" 'BEGIN { printf "%.3f", a / b }')"
