#!/usr/bin/env bash
# The cluster rows of the benchmarks, in one run: a quorum `orders` queue
# replicated over a three-node RabbitMQ cluster on this machine
# (scripts/rabbit-cluster.sh; each confirm waits for two nodes), held against
# the classic queue on the machine's own node (127.0.0.1:5672, in a virtual
# host of its own), each measured the same way, one after the other:
#
# - the broker's own publisher-confirm rate at CONNECTIONS in flight
#   (`limits amqp`, persistent messages, lapin), what /order can hope for;
# - /order: `fastfood rush --closed-loop --no-collect --no-board`, CONNECTIONS
#   counters ordering back to back at a server with no workers; only 201s
#   count (the rush's orders_per_s), every other answer is shown beside;
# - kitchen capacity: a server with 2 workers at prep time 0 then starts on
#   the data that rush left, every order still waiting in the queue, and cooks
#   them all: orders waiting when it first answers / time until none is left.
#
#   bash bench/cluster.sh                     # about 3 minutes after the build
#   SECONDS_PER_RUN=15 bash bench/cluster.sh
#
# Needs root and rabbitmq-server (the three nodes take about 20 s to start),
# RabbitMQ answering on 127.0.0.1:5672 (guest/guest) with rabbitmqctl, cargo,
# curl and jq. bench/run.sh runs it for its cluster rows (RESULTS=FILE: the
# rows are added there, in run.sh's format, instead of printed).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
CONNECTIONS=${CONNECTIONS:-16}
CLASSIC_HOST=${CLASSIC_HOST:-127.0.0.1:5672}
VHOST=fastfood-bench-cluster-$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastfood-bench-cluster.XXXXXX")
STANDALONE=0
if [ -z "${RESULTS:-}" ]; then STANDALONE=1; RESULTS=$WORK/results.tsv; fi
# The three nodes, on ports and names of their own, in a directory the
# rabbitmq user can reach ($WORK is private); taken down at exit, or by the
# script's own watcher should this shell die.
CLUSTER_DIR="${TMPDIR:-/tmp}/fastfood-bench-cluster-nodes-$$"
cluster() {
  CLUSTER_DIR="$CLUSTER_DIR" CLUSTER_PREFIX=fastfood-bench-cluster- CLUSTER_PORT=${CLUSTER_PORT:-5791} CLUSTER_OWNER=$$ \
    scripts/rabbit-cluster.sh "$@"
}
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -d "$CLUSTER_DIR" ]; then cluster down >/dev/null 2>&1 || true; fi
  rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# name, value, unit, the row it is held against (or -), note
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; }
skip_all() { # why
  echo "$1" >&2
  record "limit: confirmed publish, classic, one node, $CONNECTIONS in flight" "-" "" - "$1"
  record "limit: confirmed publish, quorum, 3-node cluster, $CONNECTIONS in flight" "-" "" - "$1"
  for queue in "classic, one node" "quorum, 3-node cluster"; do
    record "/order, $queue (rush)" "-" "" - "$1"
    record "kitchen capacity, $queue, 2 workers" "-" "" - "$1"
  done
  exit 0
}

if [ "$(id -u)" != 0 ] || ! command -v rabbitmq-server >/dev/null; then skip_all "not measured: needs root and rabbitmq-server"; fi
if ! rabbitmqctl -q add_vhost "$VHOST" >/dev/null 2>&1; then skip_all "not measured: no RabbitMQ answers rabbitmqctl here"; fi
rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null

if [ "$STANDALONE" = 1 ]; then
  echo "== building (release)" >&2
  cargo build --release --bin fastfood --example limits >&2
fi
BIN=./target/release/fastfood
LIMITS=./target/release/examples/limits
# A benchmark measures the restaurant, not its logging.
export RUST_LOG="${RUST_LOG:-warn}"

echo "== starting the three nodes" >&2
if ! cluster up >"$WORK/cluster-up.log" 2>&1; then
  skip_all "not measured: the cluster did not start ($(tail -1 "$WORK/cluster-up.log"))"
fi
rabbitmqctl -q -n fastfood-bench-cluster-1@localhost add_vhost "$VHOST" >/dev/null
rabbitmqctl -q -n fastfood-bench-cluster-1@localhost set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null
CLASSIC_URL=amqp://guest:guest@$CLASSIC_HOST/$VHOST
CLUSTER_URLS=$(cluster urls | sed "s|,|/$VHOST,|g; s|\$|/$VHOST|")

port=7950
SERVER_PID=
start_server() { # data dir, args...
  local dir=$1; shift
  port=$((port + 1))
  "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$dir" --prep-time 0 --queue-capacity 1000000 --max-orders 1000000 \
    --max-connections 100000 --max-connections-per-client 100000 "$@" >>"$WORK/server-$port.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  URL=http://127.0.0.1:$port
  for _ in $(seq 1 400); do
    curl -fsS "$URL/healthz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "no answer from $URL; its log:" >&2; tail -5 "$WORK/server-$port.log" >&2; exit 1
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
# Orders not yet READY (TAKEN or PREPARING), from the server's /metrics.
unfinished() {
  curl -fsS "$URL/metrics" | awk '/^fastfood_orders\{status="(TAKEN|PREPARING)"\}/ { n += $2 } END { print n + 0 }'
}

confirms() { # label, url, limits args...
  local label=$1 url=$2; shift 2
  if "$LIMITS" amqp --url "$url" --duration 5s --window "$CONNECTIONS" "$@" >"$WORK/amqp.json" 2>"$WORK/amqp.err"; then
    record "limit: confirmed publish, $label, $CONNECTIONS in flight" "$(jq '.confirmed_per_s|floor' "$WORK/amqp.json")" "msg/s" - \
      "limits amqp: lapin, persistent, p50 $(jq .latency.p50_ms "$WORK/amqp.json") ms, p99 $(jq .latency.p99_ms "$WORK/amqp.json") ms"
  else
    record "limit: confirmed publish, $label, $CONNECTIONS in flight" "-" "" - "failed: $(tail -1 "$WORK/amqp.err")"
  fi
}

restaurant() { # label, the confirm row, the /order row and the kitchen row held against (or -), broker args...
  local label=$1 confirm_row=$2 order_against=$3 kitchen_against=$4; shift 4
  local dir=$WORK/data-${label//[^a-z0-9]/-}
  echo "== $label: /order, then the kitchen" >&2
  start_server "$dir" --workers 0 "$@"
  "$BIN" rush --target "$URL" --closed-loop --connections "$CONNECTIONS" --no-collect --no-board \
    --duration "${SECONDS_PER_RUN}s" --drain 30s --no-chart --json >"$WORK/rush.json" 2>"$WORK/rush.err"
  stop_server
  local against=$order_against
  [ "$against" = - ] && against=$confirm_row
  record "/order, $label (rush)" "$(jq '.orders_per_s|floor' "$WORK/rush.json")" "201s/s" "$against" \
    "rush --closed-loop --connections $CONNECTIONS --no-board, ${SECONDS_PER_RUN}s, no workers; refused: $(jq -c '.order_errors' "$WORK/rush.json"); /order p50 $(jq .order_latency.p50_ms "$WORK/rush.json") ms, p99 $(jq .order_latency.p99_ms "$WORK/rush.json") ms"

  start_server "$dir" --workers 2 "$@"
  local t0 waiting left t1
  t0=$(date +%s.%N)
  waiting=$(unfinished)
  left=$waiting
  for _ in $(seq 1 1200); do
    [ "$left" = 0 ] && break
    sleep 0.1
    left=$(unfinished)
  done
  t1=$(date +%s.%N)
  stop_server
  if [ "$left" != 0 ]; then
    record "kitchen capacity, $label, 2 workers" "-" "" - "not measured: $left of $waiting orders still not READY after 2 minutes"
    return
  fi
  record "kitchen capacity, $label, 2 workers" "$(awk -v n="$waiting" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')" "orders/s" "$kitchen_against" \
    "prefetch 1, prep 0: the $waiting orders the rush left waiting, all READY in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
}

confirms "classic, one node" "$CLASSIC_URL"
confirms "quorum, 3-node cluster" "${CLUSTER_URLS%%,*}" --quorum
restaurant "classic, one node" "limit: confirmed publish, classic, one node, $CONNECTIONS in flight" - - \
  --broker "$CLASSIC_URL"
restaurant "quorum, 3-node cluster" "limit: confirmed publish, quorum, 3-node cluster, $CONNECTIONS in flight" \
  "/order, classic, one node (rush)" "kitchen capacity, classic, one node, 2 workers" \
  --broker "$CLUSTER_URLS" --queue-type quorum

if [ "$STANDALONE" = 1 ]; then
  limit_of() { awk -F'\t' -v n="$1" '$1 == n { print $2 }' "$RESULTS" | tail -1; }
  echo
  echo "fastfood cluster benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)"
  printf '%-62s %10s %-9s %7s  %s\n' "scenario" "figure" "unit" "ratio" "notes"
  while IFS=$'\t' read -r name value unit limit note; do
    ratio=""
    if [ "$limit" != "-" ] && [ "$value" != "-" ]; then
      l=$(limit_of "$limit")
      [ -n "$l" ] && [ "$l" != "-" ] && ratio=$(awk -v a="$value" -v b="$l" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
    fi
    printf '%-62s %10s %-9s %7s  %s\n' "$name" "$value" "$unit" "$ratio" "$note"
  done <"$RESULTS"
  echo "(ratio: the figure divided by the row it is held against: the cluster's rows by the classic ones, /order by its broker's confirms)"
  echo "load while it ran (uptime at the end): $(uptime)"
fi
