#!/usr/bin/env bash
# The fastfood benchmark suite: every scenario in one run, side by side with
# the limits of this machine measured in the same run.
#
#   bash bench/run.sh                 # everything (about 10 minutes)
#   PRELOAD=20000 bash bench/run.sh   # a shorter "after N collected orders"
#   PAIRS=5 bash bench/postgres.sh    # PostgreSQL after N collected: 5 pairs with a fresh database (3)
#   SKIP_BOARDS_10K=1 bash bench/run.sh
#   BROKER=0 bash bench/run.sh        # leave out the RabbitMQ scenarios
#   PREFETCH=32 bash bench/run.sh     # the prefetch of the broker kitchen's fast rows
#   POSTGRES=0 bash bench/run.sh      # leave out the PostgreSQL (--database) rows
#   ONLY=postgres bash bench/run.sh   # the limits and the PostgreSQL rows only (bench/postgres.sh)
#   CLUSTER=0 bash bench/run.sh       # leave out the three-node cluster rows
#
# Needs: cargo, curl, jq; wrk if installed (apt-get install -y wrk), else
# `limits load`; RabbitMQ at $AMQP_URL for the broker scenarios, which run
# when RabbitMQ answers there (a confirmed publish), unless BROKER=0. The broker
# scenarios use their own virtual host (fastfood-bench) when rabbitmqctl is
# here, so they never touch another restaurant's `orders` queue.
# Traffic is loopback only; every step is bounded in time.
#
# Throughput counts durable 201s only: a refusal (503 queue_full, …) answers
# fast and would inflate a requests/s figure, so refusals are counted apart
# and shown beside each figure. The servers get a queue far larger than a run
# can fill (QUEUE_CAPACITY), so the queue's capacity is not what /order
# measures; a run that still reaches it shows its 503s in the notes.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
CONNECTIONS=${CONNECTIONS:-16}
PRELOAD=${PRELOAD:-100000}
WAITING=${WAITING:-10000}
QUEUE_CAPACITY=${QUEUE_CAPACITY:-1000000}
# Nobody collects in the /order runs: the restaurant's bound on live orders
# (--max-orders) is raised to its most, like the queue, so it is not what
# /order measures either.
MAX_ORDERS=${MAX_ORDERS:-1000000}
AMQP_BASE=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672}
AMQP_BASE=${AMQP_BASE%/}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastfood-bench.XXXXXX")
RESULTS=$WORK/results.tsv
PIDS=()
# PostgreSQL for the --database rows (trust auth, as the tests use it).
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_BASE=postgres://postgres@$PG_HOST:$PG_PORT
PG_DBS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "${PG_DBS[@]}"; do
    psql -X -q "$PG_BASE/postgres" -c "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building (release)" >&2
cargo build --release --bin fastfood --example limits --example boards >&2
BIN=./target/release/fastfood
EX=./target/release/examples
if pgrep -x rustc >/dev/null; then
  echo "warning: a build is running on this machine; the figures will be noisy" >&2
fi

# Servers and workers log each order at info level, for students; a
# benchmark measures the restaurant, not its logging.
export RUST_LOG="${RUST_LOG:-warn}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
HAVE_WRK=0; command -v wrk >/dev/null && HAVE_WRK=1
# The broker scenarios run if RabbitMQ answers (checked below, by publishing
# to it), unless BROKER=0 asks to leave them out.
HAVE_BROKER=1
if [ "${BROKER:-1}" = 0 ]; then HAVE_BROKER=0; fi

# name, value, unit, limit name (or -), note
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; }
limit_of() { awk -F'\t' -v n="$1" '$1 == n { print $2 }' "$RESULTS" | tail -1; }

port=7900
next_port() { port=$((port + 1)); echo "$port"; }

wait_up() { # URL [pid]
  for _ in $(seq 1 200); do
    curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "no answer from $1" >&2; return 1
}

SERVER_PID=
# Every load generator here is one client on 127.0.0.1: the connection caps
# are left to the descriptor limit.
start_server() { # data-dir, extra args...
  local dir=$1; shift
  local p; p=$(next_port)
  "$BIN" serve --listen "127.0.0.1:$p" --data-dir "$dir" --prep-time "${PREP:-0}" --queue-capacity "$QUEUE_CAPACITY" --max-orders "$MAX_ORDERS" \
    --max-connections 100000 --max-connections-per-client 100000 "$@" >"$WORK/server-$p.log" 2>&1 &
  SERVER_PID=$!; PIDS+=("$SERVER_PID")
  URL="http://127.0.0.1:$p"
  wait_up "$URL"
}
stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
# Orders a broker scenario left in the queue belong to its data directory:
# the next scenario's kitchen would only drop them ("not in the store").
purge_orders() {
  if [ "$BROKER_URL" = "$AMQP_BASE/fastfood-bench" ]; then
    rabbitmqctl purge_queue -p fastfood-bench orders >/dev/null 2>&1 || true
  fi
}
rss_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# POST with CONNECTIONS connections for SECONDS_PER_RUN; only answers with
# status EXPECT (201 for /order) count. Prints: EXPECT-answers/s, p50, p99
# (of every answer), and the rest by status ("none", or e.g. "503:84079,socket:3").
order_load() { # url [expect]
  local expect=${2:-201}
  if [ "$HAVE_WRK" = 1 ]; then
    cat >"$WORK/order.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "cheeseburger, fries, cola"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  expect = tonumber(args[1]) or 201
  ok, others = 0, {}
end
function response(status)
  if status == expect then ok = ok + 1 else others[status] = (others[status] or 0) + 1 end
end
function done(summary)
  local total, refused = 0, {}
  for _, t in ipairs(threads) do
    total = total + t:get("ok")
    for status, n in pairs(t:get("others")) do refused[status] = (refused[status] or 0) + n end
  end
  local e = summary.errors
  local socket = e.connect + e.read + e.write + e.timeout
  local list = {}
  for status, n in pairs(refused) do table.insert(list, status .. ":" .. n) end
  if socket > 0 then table.insert(list, "socket:" .. socket) end
  table.sort(list)
  io.write(string.format("OK_PER_S %.0f\n", total / (summary.duration / 1e6)))
  io.write("REFUSED " .. (#list > 0 and table.concat(list, ",") or "none") .. "\n")
end
LUA
    wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s "$WORK/order.lua" "$1" -- "$expect" >"$WORK/wrk.out" 2>&1
    local rps p50 p99 refused
    rps=$(awk '$1 == "OK_PER_S" { print $2 }' "$WORK/wrk.out")
    p50=$(awk '$1 == "50%" { print $2 }' "$WORK/wrk.out")
    p99=$(awk '$1 == "99%" { print $2 }' "$WORK/wrk.out")
    refused=$(awk '$1 == "REFUSED" { print $2 }' "$WORK/wrk.out")
    echo "$rps $p50 $p99 ${refused:-unknown}"
  else
    "$EX/limits" load --url "$1" --expect "$expect" --connections "$CONNECTIONS" --duration "${SECONDS_PER_RUN}s" --body "cheeseburger" >"$WORK/load.json"
    jq -r '"\(.requests_per_s|floor) \(.latency.p50_ms)ms \(.latency.p99_ms)ms \(if (.refused|length) == 0 then "none" else (.refused|to_entries|map("\(.key):\(.value)")|join(",")) end)"' "$WORK/load.json"
  fi
}

# A closed-loop rush with collection: prints its JSON summary into $WORK/rush.json.
rush_closed() { # url, extra args...
  local url=$1; shift
  "$BIN" rush --target "$url" --closed-loop --connections "$CONNECTIONS" --max-inside 128 \
    --duration "${SECONDS_PER_RUN}s" --drain 30s --no-chart --json "$@" >"$WORK/rush.json" 2>"$WORK/rush.err"
}

echo "== limits of this machine" >&2
"$EX/limits" axum --listen 127.0.0.1:7890 >"$WORK/axum.log" 2>&1 &
AXUM_PID=$!; PIDS+=("$AXUM_PID")
sleep 0.5
read -r rps p50 p99 refused < <(order_load http://127.0.0.1:7890/order 200)
record "limit: empty axum handler" "$rps" "req/s" - "p50 $p50, p99 $p99, $CONNECTIONS connections; not 200: $refused"
kill "$AXUM_PID"; wait "$AXUM_PID" 2>/dev/null || true
"$EX/limits" fsync --dir "$WORK/fsync" --duration 3s >"$WORK/fsync.json"
record "limit: fsynced store write cycle" "$(jq .cycles_per_s "$WORK/fsync.json")" "cycles/s" - \
  "lock+append+fdatasync+unlock: p50 $(jq .latency.p50_ms "$WORK/fsync.json") ms, p99 $(jq .latency.p99_ms "$WORK/fsync.json") ms"

BROKER_URL=
BROKER_SKIPPED="skipped: BROKER=0"
if [ "$HAVE_BROKER" = 1 ]; then
  BROKER_URL=$AMQP_BASE/%2f
  if command -v rabbitmqctl >/dev/null; then
    rabbitmqctl add_vhost fastfood-bench >/dev/null 2>&1 || true
    rabbitmqctl set_permissions -p fastfood-bench guest '.*' '.*' '.*' >/dev/null 2>&1 || true
    BROKER_URL=$AMQP_BASE/fastfood-bench
  fi
  if "$EX/limits" amqp --url "$BROKER_URL" --duration 5s --window 1000 >"$WORK/amqp.json" 2>"$WORK/amqp.err"; then
    record "limit: RabbitMQ confirmed publish" "$(jq .confirmed_per_s "$WORK/amqp.json")" "msg/s" - \
      "lapin, persistent, 1000 in flight: p50 $(jq .latency.p50_ms "$WORK/amqp.json") ms"
    # What /order can hope for with CONNECTIONS requests in flight, each
    # waiting for its own confirm.
    "$EX/limits" amqp --url "$BROKER_URL" --duration 5s --window "$CONNECTIONS" >"$WORK/amqp-window.json" 2>>"$WORK/amqp.err"
    record "limit: RabbitMQ confirmed publish, $CONNECTIONS in flight" "$(jq .confirmed_per_s "$WORK/amqp-window.json")" "msg/s" - \
      "lapin, persistent, $CONNECTIONS in flight: p50 $(jq .latency.p50_ms "$WORK/amqp-window.json") ms"
  else
    echo "RabbitMQ unreachable at $BROKER_URL: $(tail -1 "$WORK/amqp.err")" >&2
    HAVE_BROKER=0
    BROKER_SKIPPED="skipped: RabbitMQ did not answer at $AMQP_BASE"
  fi
fi

kitchen() { # label, limit, server args...
  local label=$1 limit=$2; shift 2
  rush_closed "$URL"
  record "$label" "$(jq .ready_per_s "$WORK/rush.json")" "orders/s" "$limit" \
    "/order $(jq -r '.orders_per_s|floor' "$WORK/rush.json")/s; ticket→ready p50 $(jq .ticket_to_ready.p50_ms "$WORK/rush.json") ms, p99 $(jq .ticket_to_ready.p99_ms "$WORK/rush.json") ms; refused/failed: $(jq -c '.order_errors + .take_errors' "$WORK/rush.json"); unserved at the end: $(jq .unserved "$WORK/rush.json")"
}

# The rush's kitchen rows are bounded by how fast its customers order (with
# RabbitMQ, a confirm each). Here the orders are placed first, with nobody
# cooking (with RabbitMQ: --workers 0; in-process: one worker on a 1 h
# order), then a server with 2 workers at prep 0 starts on the same data and
# cooks them all: orders waiting when it answered / time until none is left.
drain() { # label, limit, dir, preparation time while filling, fill args, run args (one string each)
  local label=$1 limit=$2 dir=$3 fill_prep=$4 fill=$5 run=$6
  PREP=$fill_prep start_server "$dir" $fill
  local before
  before=$(order_load "$URL/order" | awk '{ print $1 }')
  stop_server
  start_server "$dir" $run
  local t0 waiting left t1
  t0=$(date +%s.%N)
  waiting=$(curl -fsS "$URL/orders" | jq '[.orders[] | select(.status != "READY")] | length')
  left=$waiting
  for _ in $(seq 1 1200); do
    [ "$left" = 0 ] && break
    sleep 0.1
    left=$(curl -fsS "$URL/orders" | jq '[.orders[] | select(.status != "READY")] | length')
  done
  t1=$(date +%s.%N)
  stop_server
  if [ "$left" != 0 ]; then
    record "$label" "-" "" - "$left of $waiting orders still not READY after 2 minutes"
    return
  fi
  record "$label" "$(awk -v n="$waiting" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')" "orders/s" "$limit" \
    "$waiting orders waiting (placed at ${before} 201s/s with nobody cooking), all READY in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
}
if [ "${ONLY:-}" != postgres ]; then
echo "== 1. /order with $CONNECTIONS connections" >&2
start_server "$WORK/order-embedded"
read -r rps p50 p99 refused < <(order_load "$URL/order")
record "/order, embedded" "$rps" "201s/s" "limit: empty axum handler" "durable 201s only; refused: $refused; p50 $p50, p99 $p99 (every answer); queue capacity $QUEUE_CAPACITY, nobody collects"
EMPTY_ORDER_RPS=$rps
stop_server
if [ "$HAVE_BROKER" = 1 ]; then
  start_server "$WORK/order-broker" --broker "$BROKER_URL"
  read -r rps p50 p99 refused < <(order_load "$URL/order")
  record "/order, RabbitMQ" "$rps" "201s/s" "limit: RabbitMQ confirmed publish, $CONNECTIONS in flight" "durable, confirmed 201s only; refused: $refused; p50 $p50, p99 $p99"
  stop_server; purge_orders
else
  record "/order, RabbitMQ" "-" "" - "$BROKER_SKIPPED"
fi

echo "== 2. TAKEN→READY, prep time 0, 2 workers (rush, closed loop, collecting)" >&2
start_server "$WORK/kitchen-embedded" --workers 2
kitchen "TAKEN→READY, embedded" "limit: fsynced store write cycle"
KITCHEN_FRESH=$(jq .ready_per_s "$WORK/rush.json")
stop_server
if [ "$HAVE_BROKER" = 1 ]; then
  start_server "$WORK/kitchen-broker" --workers 2 --broker "$BROKER_URL"
  kitchen "TAKEN→READY, simple + RabbitMQ" "limit: RabbitMQ confirmed publish"
  stop_server; purge_orders
  start_server "$WORK/kitchen-broker-prefetch" --workers 2 --broker "$BROKER_URL" --prefetch "${PREFETCH:-32}"
  kitchen "TAKEN→READY, simple + RabbitMQ, --prefetch ${PREFETCH:-32}" "limit: RabbitMQ confirmed publish"
  stop_server; purge_orders
  start_server "$WORK/kitchen-complex" --workers 0 --broker "$BROKER_URL"
  WORKER_PIDS=()
  for _ in 1 2; do
    "$BIN" worker --data-dir "$WORK/kitchen-complex" --prep-time 0 --broker "$BROKER_URL" >>"$WORK/workers.log" 2>&1 &
    PIDS+=("$!"); WORKER_PIDS+=("$!")
  done
  sleep 1
  kitchen "TAKEN→READY, complex, 2 worker processes" "limit: RabbitMQ confirmed publish"
  stop_server
  for pid in "${WORKER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
else
  record "TAKEN→READY, simple + RabbitMQ" "-" "" - "$BROKER_SKIPPED"
  record "TAKEN→READY, simple + RabbitMQ, --prefetch ${PREFETCH:-32}" "-" "" - "$BROKER_SKIPPED"
  record "TAKEN→READY, complex, 2 worker processes" "-" "" - "$BROKER_SKIPPED"
fi

echo "== 2b. kitchen capacity: 2 workers drain a queue filled beforehand" >&2
drain "kitchen capacity, embedded, 2 workers" "limit: fsynced store write cycle" "$WORK/drain-embedded" \
  1h "--workers 1" "--workers 2"
if [ "$HAVE_BROKER" = 1 ]; then
  purge_orders
  drain "kitchen capacity, RabbitMQ, 2 workers, prefetch 1" "limit: RabbitMQ confirmed publish" "$WORK/drain-broker-1" \
    0 "--workers 0 --broker $BROKER_URL" "--workers 2 --broker $BROKER_URL"
  purge_orders
  drain "kitchen capacity, RabbitMQ, 2 workers, --prefetch ${PREFETCH:-32}" "limit: RabbitMQ confirmed publish" "$WORK/drain-broker-n" \
    0 "--workers 0 --broker $BROKER_URL" "--workers 2 --broker $BROKER_URL --prefetch ${PREFETCH:-32}"
  purge_orders
fi

echo "== 2c. a three-node RabbitMQ cluster, quorum queue (bench/cluster.sh)" >&2
# The confirm rate, /order and the kitchen's capacity on a quorum queue of a
# three-node cluster of this machine, each held against the same on the
# classic queue of one node, measured side by side by bench/cluster.sh
# (needs root and rabbitmq-server; the nodes take about 20 s to start).
if [ "${CLUSTER:-1}" = 0 ]; then
  record "cluster rows" "-" "" - "skipped: CLUSTER=0"
elif [ "$HAVE_BROKER" != 1 ]; then
  record "cluster rows" "-" "" - "$BROKER_SKIPPED"
else
  RESULTS="$RESULTS" SECONDS_PER_RUN="$SECONDS_PER_RUN" CONNECTIONS="$CONNECTIONS" CLASSIC_HOST="${AMQP_BASE#*@}" \
    bash bench/cluster.sh || record "cluster rows" "-" "" - "failed: bench/cluster.sh stopped (its error is above)"
fi

echo "== 3. after $PRELOAD orders taken and collected" >&2
start_server "$WORK/preloaded" --workers 2
"$BIN" rush --target "$URL" --closed-loop --connections "$CONNECTIONS" --max-inside 128 --customers "$PRELOAD" \
  --duration 1h --drain 60s --no-chart --json >"$WORK/preload.json" 2>"$WORK/preload.err"
record "preload: orders taken and collected" "$(jq .collected "$WORK/preload.json")" "orders" - \
  "at $(jq -r '.orders_per_s|floor' "$WORK/preload.json")/s; live store now $(wc -c <"$WORK/preloaded/orders.json") B snapshot + $(wc -c <"$WORK/preloaded/orders.log") B log, history $(wc -c <"$WORK/preloaded/history.jsonl" 2>/dev/null || echo 0) B"
kitchen "TAKEN→READY, embedded, after $PRELOAD collected" "TAKEN→READY, embedded"
stop_server
start_server "$WORK/preloaded" --workers 2
read -r rps p50 p99 refused < <(order_load "$URL/order")
record "/order, embedded, after $PRELOAD collected" "$rps" "201s/s" "/order, embedded" "refused: $refused; p50 $p50, p99 $p99 (server restarted on the same data)"
stop_server

echo "== 3b. /order with $WAITING orders waiting uncollected" >&2
start_server "$WORK/waiting" --workers 2
"$BIN" rush --target "$URL" --closed-loop --connections "$CONNECTIONS" --customers "$WAITING" --no-collect --no-board \
  --duration 1h --no-chart --json >"$WORK/fill.json" 2>/dev/null
for _ in $(seq 1 600); do # until the kitchen has cooked them all
  [ "$(curl -fsS "$URL/orders" | jq '[.orders[] | select(.status != "READY")] | length')" = 0 ] && break
  sleep 0.5
done
record "orders waiting uncollected" "$(curl -fsS "$URL/orders" | jq '.orders | length')" "orders" - "READY, never collected"
read -r rps p50 p99 refused < <(order_load "$URL/order")
record "/order, $WAITING waiting uncollected" "$rps" "201s/s" "/order, embedded" "refused: $refused; p50 $p50, p99 $p99; no board connected"
stop_server

echo "== 4. boards" >&2
boards() { # n, orders/s, [orders live on every board]
  local live=${3:-0} name="$1 boards"
  [ "$live" != 0 ] && name="$1 boards, $live orders live"
  start_server "$WORK/boards-$1-$live" --workers 2
  "$EX/boards" --target "$URL" --boards "$1" --rate "$2" --live "$live" --duration "${BOARDS_DURATION:-10s}" --sample 10 >"$WORK/boards.json" 2>"$WORK/boards.err" || {
    record "$name" "-" "" - "failed: $(tail -1 "$WORK/boards.err")"; stop_server; return; }
  local mem; mem=$(rss_mb "$SERVER_PID")
  record "$name: publish→receive p99" "$(jq .publish_to_receive.p99_ms "$WORK/boards.json")" "ms" - \
    "p50 $(jq .publish_to_receive.p50_ms "$WORK/boards.json") ms; $(jq .changes_per_s "$WORK/boards.json") changes/s to every board; boards with every change: $(jq .boards_with_every_change "$WORK/boards.json")/$1, skipped $(jq .skipped "$WORK/boards.json"), resyncs $(jq .resyncs "$WORK/boards.json")"
  record "$name: server memory (peak RSS)" "$mem" "MB" - "connected in $(jq '.connect_s*100|floor/100' "$WORK/boards.json") s"
  stop_server
}
boards 1000 20
if [ -z "${SKIP_BOARDS_10K:-}" ]; then
  boards 10000 2
  # The same with the restaurant holding orders: a change costs what
  # changes, not what the restaurant holds (only the first board grows).
  boards 10000 2 10
  boards 10000 2 1000
fi

fi # ONLY != postgres

echo "== 5. PostgreSQL (--database)" >&2
# The limit: what PostgreSQL itself commits here, one-row INSERT … RETURNING
# per transaction with synchronous commit, as many clients as /order gets.
# A fresh database per row, dropped at the end. POSTGRES=0 leaves them out.
if [ "${POSTGRES:-1}" != 0 ] && command -v pgbench >/dev/null && pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
  pg_db() { # name: a fresh database, its URL in DB_URL (not in a subshell: cleanup drops it)
    local db=fastfood_bench_$1
    psql -X -q "$PG_BASE/postgres" -c "drop database if exists $db with (force)" -c "create database $db" >/dev/null
    PG_DBS+=("$db")
    DB_URL="$PG_BASE/$db"
  }
  pg_db pgbench
  url=$DB_URL
  psql -X -q "$url" -c "create table one (id bigserial primary key, body text not null)"
  echo "insert into one (body) values ('cheeseburger, fries, cola') returning id;" >"$WORK/insert.sql"
  tps=$(pgbench -n -c "$CONNECTIONS" -j 2 -T "$SECONDS_PER_RUN" -f "$WORK/insert.sql" "$url" 2>&1 |
    awk '/^tps/ { printf "%.0f", $3; exit }')
  record "limit: PostgreSQL one-row insert … returning" "${tps:--}" "tx/s" - "pgbench -n -c $CONNECTIONS -j 2 -T $SECONDS_PER_RUN, synchronous commit"
  # Where the time goes, from PostgreSQL's own counters: transactions
  # committed and rows written (inserted, updated, deleted) per 201, with
  # the ticket numbers' statements; and requests per store batch (/metrics).
  pg_counters() { # database URL: transactions committed, rows written, orders
    sleep 1.5 # the server's statistics are flushed about once a second
    psql -X -At -F ' ' "$1" -c "select xact_commit, tup_inserted + tup_updated + tup_deleted, \
      (select count(*) from fastfood_orders) from pg_stat_database where datname = current_database()"
  }
  per_order() { # commits, rows, orders added
    awk -v c="$1" -v r="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f commits, %.1f rows", c / n, r / n }'
  }
  pg_order_load() { # label, limit: /order on the server at $URL, in $DB_URL; records the row
    local c0 r0 n0 c1 r1 n1 rps p50 p99 refused batch
    read -r c0 r0 n0 < <(pg_counters "$DB_URL")
    read -r rps p50 p99 refused < <(order_load "$URL/order")
    batch=$(curl -fsS "$URL/metrics" | awk '/^fastfood_store_batch_size_sum/ { s = $2 } /^fastfood_store_batch_size_count/ { c = $2 } END { if (c > 0) printf "%.1f", s / c }')
    read -r c1 r1 n1 < <(pg_counters "$DB_URL")
    record "$1" "$rps" "201s/s" "$2" "refused: $refused; p50 $p50, p99 $p99; per order placed: $(per_order $((c1 - c0)) $((r1 - r0)) $((n1 - n0))); ${batch:-?} requests per store batch"
  }
  pg_db order
  start_server "$WORK/pg-embedded" --database "$DB_URL"
  pg_order_load "/order, PostgreSQL, in-process queue" "limit: PostgreSQL one-row insert … returning"
  stop_server
  if [ "$HAVE_BROKER" = 1 ]; then
    purge_orders
    pg_db order_broker
    start_server "$WORK/pg-broker" --workers 0 --broker "$BROKER_URL" --database "$DB_URL"
    pg_order_load "/order, PostgreSQL, RabbitMQ" "limit: PostgreSQL one-row insert … returning"
    stop_server
    purge_orders
  else
    record "/order, PostgreSQL, RabbitMQ" "-" "" - "$BROKER_SKIPPED"
  fi
  pg_db kitchen
  kitchen_db=$DB_URL
  drain "kitchen capacity, PostgreSQL, 2 workers" "limit: PostgreSQL one-row insert … returning" "$WORK/pg-drain" \
    1h "--workers 1 --database $kitchen_db" "--workers 2 --database $kitchen_db"
  pg_db preload
  start_server "$WORK/pg-preloaded" --database "$DB_URL"
  "$BIN" rush --target "$URL" --closed-loop --connections "$CONNECTIONS" --max-inside 128 --customers "$PRELOAD" \
    --duration 1h --drain 60s --no-chart --json >"$WORK/pg-preload.json" 2>"$WORK/pg-preload.err"
  stop_server
  record "preload (PostgreSQL): orders taken and collected" "$(jq .collected "$WORK/pg-preload.json")" "orders" - \
    "at $(jq -r '.orders_per_s|floor' "$WORK/pg-preload.json")/s; the change log now $(psql -X -At "$DB_URL" -c "select count(*) from fastfood_changes") rows (it keeps the last 100,000 versions), fastfood_orders $(psql -X -At "$DB_URL" -c "select count(*) from fastfood_orders") rows"
  # Fresh and preloaded side by side: on a shared machine one minute can be
  # a third slower than the next, so a preloaded figure held against the
  # fresh one of minutes before says more about the minutes than about the
  # log. PAIRS times in turn: a server on a new empty database, then one on
  # the preloaded database; the median of each is recorded, with each
  # pair's ratio in the notes.
  preload_db=$DB_URL
  fresh=() after=() pairs="" c_sum=0 r_sum=0 n_sum=0 refused_all=""
  for i in $(seq 1 "${PAIRS:-3}"); do
    pg_db fresh
    start_server "$WORK/pg-fresh-$i" --database "$DB_URL"
    read -r f _ _ f_refused < <(order_load "$URL/order")
    stop_server
    read -r c0 r0 n0 < <(pg_counters "$preload_db")
    start_server "$WORK/pg-preloaded" --database "$preload_db"
    read -r a _ a_p99 a_refused < <(order_load "$URL/order")
    stop_server
    read -r c1 r1 n1 < <(pg_counters "$preload_db")
    c_sum=$((c_sum + c1 - c0)) r_sum=$((r_sum + r1 - r0)) n_sum=$((n_sum + n1 - n0))
    fresh+=("$f") after+=("$a")
    pairs+="$(awk -v a="$a" -v f="$f" -v p="$a_p99" 'BEGIN { printf "%d/%d=%.2f (p99 %s) ", a, f, (f > 0 ? a / f : 0), p }')"
    [ "$f_refused $a_refused" = "none none" ] || refused_all+="pair $i: fresh $f_refused, preloaded $a_refused; "
  done
  median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  record "/order, PostgreSQL, fresh, beside the preloaded" "$(median "${fresh[@]}")" "201s/s" - \
    "median of ${PAIRS:-3}, each on a new empty database, run in turn with the row below"
  record "/order, PostgreSQL, after $PRELOAD collected" "$(median "${after[@]}")" "201s/s" "/order, PostgreSQL, fresh, beside the preloaded" \
    "median of ${PAIRS:-3}; pairs preloaded/fresh: ${pairs}; refused: ${refused_all:-none; }per order placed: $(per_order "$c_sum" "$r_sum" "$n_sum")"
else
  record "PostgreSQL rows" "-" "" - "not measured: POSTGRES=0, no pgbench, or no PostgreSQL at $PG_HOST:$PG_PORT"
fi

echo
echo "fastfood benchmarks — $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo), $(uname -r), wrk: $([ $HAVE_WRK = 1 ] && echo yes || echo no)"
printf '%-48s %12s %-9s %8s  %s\n' "scenario" "figure" "unit" "ratio" "notes"
while IFS=$'\t' read -r name value unit limit note; do
  ratio=""
  if [ "$limit" != "-" ] && [ "$value" != "-" ]; then
    l=$(limit_of "$limit")
    [ -n "$l" ] && ratio=$(awk -v a="$value" -v b="$l" 'BEGIN { if (b > 0) printf "%.3f", a / b }')
  fi
  printf '%-48s %12s %-9s %8s  %s\n' "$name" "$value" "$unit" "$ratio" "$note"
done <"$RESULTS"
echo "(ratio: the figure divided by the row it is held against: its limit, or the fresh-restaurant figure)"
echo "(201s/s: durable 201s per second only; every other answer is listed as refused beside it)"
echo "load while it ran (uptime at the end): $(uptime)"
