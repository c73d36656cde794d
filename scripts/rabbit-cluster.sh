#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this one machine, for the cluster
# experiments and tests. Each node has its own name (PREFIX1@localhost …),
# AMQP port, distribution port, config file, data and log directories, all
# under one directory (CLUSTER_DIR); the nodes share the machine's Erlang
# cookie (the `rabbitmq` user's), so `rabbitmqctl -n NODE` reaches them. The
# machine's own node (rabbit@localhost on 5672) is never touched.
#
#   scripts/rabbit-cluster.sh up       start the three nodes and join them
#   scripts/rabbit-cluster.sh urls     the AMQP URLs, comma-separated (for --broker)
#   scripts/rabbit-cluster.sh status   each node: running or not, and its port
#   scripts/rabbit-cluster.sh kill N   kill -9 node N (1, 2 or 3), as a crash would
#   scripts/rabbit-cluster.sh stop N   stop node N cleanly
#   scripts/rabbit-cluster.sh start N  start node N again (it rejoins by itself)
#   scripts/rabbit-cluster.sh down     stop every node and remove CLUSTER_DIR
#
# Settings (environment): CLUSTER_DIR (default /tmp/fastfood-cluster),
# CLUSTER_PREFIX (node names, default ff), CLUSTER_PORT (the first node's
# AMQP port, default 5681; the others take the next two; each node's
# distribution port is its AMQP port + 20000), CLUSTER_OWNER (a pid: `up`
# leaves a watcher that takes the cluster down once that process is gone,
# however it ended; the tests use it). Run as root (RabbitMQ's
# scripts then run the nodes as the `rabbitmq` user) or as `rabbitmq`.
set -euo pipefail

DIR=${CLUSTER_DIR:-/tmp/fastfood-cluster}
PREFIX=${CLUSTER_PREFIX:-ff}
PORT=${CLUSTER_PORT:-5681}
NODES=(1 2 3)
# How long a node may take to start (after a kill -9 it recovers first).
START_TIMEOUT=${CLUSTER_START_TIMEOUT:-120}

node() { echo "$PREFIX$1@localhost"; }
amqp_port() { echo $((PORT + $1 - 1)); }
dist_port() { echo $((PORT + $1 - 1 + 20000)); }
ctl() { # N ARGS...: rabbitmqctl on node N
  local n=$1; shift
  rabbitmqctl -q -n "$(node "$n")" "$@"
}

# The environment that makes node N its own node.
node_env() {
  local n=$1 base="$DIR/node$1"
  export RABBITMQ_NODENAME="$(node "$n")"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$(amqp_port "$n")"
  export RABBITMQ_DIST_PORT="$(dist_port "$n")"
  export RABBITMQ_MNESIA_BASE="$base/mnesia"
  export RABBITMQ_LOG_BASE="$base/log"
  export RABBITMQ_PID_FILE="$base/pid"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins"
  export RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf"
  # The management plugin's port, should it be enabled: AMQP port + 10000
  # (15681, 15682, 15683), so that the nodes do not all ask for 15672.
  export RABBITMQ_SERVER_START_ARGS="-rabbitmq_management listener [{port,$((10000 + $(amqp_port "$n")))}]"
}

start_node() { # N: starts node N and waits until it has booted
  local n=$1
  (
    node_env "$n"
    rabbitmq-server -detached >/dev/null 2>&1
  )
  local deadline=$((SECONDS + START_TIMEOUT))
  # `-detached` returns before the node registers: retry until it answers.
  until ctl "$n" await_startup --timeout 10 >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      echo "node $(node "$n") did not start within ${START_TIMEOUT}s; see $DIR/node$n/log" >&2
      return 1
    fi
    sleep 0.5
  done
}

pid_of() { # N: the OS pid of node N's beam, if its pid file names a live one
  local file="$DIR/node$1/pid"
  [ -s "$file" ] || return 1
  local pid; pid=$(cat "$file")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

check_node() { # N
  case "${1:-}" in 1 | 2 | 3) ;; *) echo "give a node number: 1, 2 or 3" >&2; exit 2 ;; esac
  [ -d "$DIR/node$1" ] || { echo "no cluster in $DIR: run '$0 up' first" >&2; exit 1; }
}

urls() {
  local out=() n
  for n in "${NODES[@]}"; do out+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

up() {
  if [ -d "$DIR" ]; then
    echo "$DIR exists: the cluster is up already, or left over ('$0 down' removes it)" >&2
    exit 1
  fi
  for n in "${NODES[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$(amqp_port "$n")") 2>/dev/null; then
      echo "port $(amqp_port "$n") is taken; pick other ports with CLUSTER_PORT" >&2
      exit 1
    fi
  done
  mkdir -p "$DIR"
  # A node that fails to start or join leaves nothing behind.
  trap 'echo "the cluster did not come up; removing what was started" >&2; down' EXIT
  for n in "${NODES[@]}"; do
    local base="$DIR/node$n"
    mkdir -p "$base/mnesia" "$base/log"
    echo '[].' >"$base/enabled_plugins"
    # Debian's /etc/rabbitmq/rabbitmq.conf pins the listener to 5672: each
    # node has a file of its own instead.
    cat >"$base/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$(amqp_port "$n")
loopback_users.guest = true
disk_free_limit.absolute = 50MB
log.file.level = warning
EOF
  done
  chown -R rabbitmq:rabbitmq "$DIR"
  if [ "$(id -u)" = 0 ] && ! runuser -u rabbitmq -- test -w "$DIR/node1"; then
    echo "the rabbitmq user cannot reach $DIR (a directory above it is private): pick another CLUSTER_DIR" >&2
    exit 1
  fi
  echo "starting $(node 1), $(node 2), $(node 3) in $DIR" >&2
  for n in "${NODES[@]}"; do start_node "$n"; done
  local joined
  for n in 2 3; do
    # rabbitmqctl logs harmless errors while a node joins: shown on failure only.
    if ! joined=$({ ctl "$n" stop_app && ctl "$n" join_cluster "$(node 1)" && ctl "$n" start_app; } 2>&1); then
      echo "$(node "$n") could not join $(node 1):" >&2
      echo "$joined" >&2
      return 1
    fi
  done
  ctl 1 await_startup >/dev/null
  if [ -n "${CLUSTER_OWNER:-}" ]; then
    # Detached from the caller's terminal and pipes, so nobody waits for it.
    CLUSTER_DIR="$DIR" CLUSTER_PREFIX="$PREFIX" CLUSTER_PORT="$PORT" setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 1; done; exec "$3" down' \
      watcher "$CLUSTER_OWNER" "$DIR" "$(realpath "$0")" </dev/null >/dev/null 2>&1 &
  fi
  trap - EXIT
  echo "cluster up: --broker $(urls)" >&2
}

down() {
  [ -d "$DIR" ] || return 0
  local n pid
  for n in "${NODES[@]}"; do
    if pid=$(pid_of "$n"); then
      # Quick and certain: the data goes with it.
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  for n in "${NODES[@]}"; do
    while pid_of "$n" >/dev/null; do sleep 0.1; done
  done
  rm -rf "$DIR"
  echo "cluster down, $DIR removed" >&2
}

status() {
  [ -d "$DIR" ] || { echo "no cluster in $DIR"; return 0; }
  local n
  for n in "${NODES[@]}"; do
    if pid_of "$n" >/dev/null && ctl "$n" await_startup --timeout 2 >/dev/null 2>&1; then
      echo "$(node "$n") running on 127.0.0.1:$(amqp_port "$n")"
    else
      echo "$(node "$n") not running (port $(amqp_port "$n"))"
    fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  urls) urls ;;
  kill)
    check_node "${2:-}"
    pid=$(pid_of "$2") || { echo "$(node "$2") is not running" >&2; exit 1; }
    kill -9 "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    ;;
  stop)
    check_node "${2:-}"
    ctl "$2" stop >/dev/null
    ;;
  start)
    check_node "${2:-}"
    pid_of "$2" >/dev/null || start_node "$2"
    ;;
  *)
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
