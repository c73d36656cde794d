#!/usr/bin/env bash
# Three machines on this one host, to watch the restaurant lose one. Each
# machine is a network namespace (m1, m2, m3) on a bridge of its own, with
# an address on a private subnet that exists only there (10.77.0.0/24, no
# route out); this host is 10.77.0.254 on the bridge. Every machine runs a
# RabbitMQ node (rabbit@mN, the three in one cluster), one
# `fastfood serve --workers 0` on mN:7777 and two `fastfood worker`
# processes; m1 runs the PostgreSQL primary, m2 and m3 its standbys, either
# of which confirms a commit (synchronous_standby_names 'ANY 1 (*)').
# Every process is given every database host and every broker node. The
# RabbitMQ nodes pause a node cut off from the other two
# (pause_minority) and notice a silent node within 7.5 to 12.5 s
# (net_ticktime 10, or $LAB_NET_TICKTIME).
#
#   scripts/lab.sh up [--dir DIR] [--owner PID] [--prep-time T] [--patroni]
#                               make the lab (about 40 s); its URLs go to DIR/lab.env
#   scripts/lab.sh urls         print DIR/lab.env: SERVERS, DATABASE_URL, AMQP_URL
#   scripts/lab.sh status       per machine: link, processes, RabbitMQ, PostgreSQL role
#   scripts/lab.sh leader [broker|database]
#                               which machine leads the `orders` queue, which holds the primary
#   scripts/lab.sh kill mN      kill -9 every process of mN at once, as a power cut would
#   scripts/lab.sh start mN     start what is not running on mN again (also: up mN)
#   scripts/lab.sh failover     promote the standby with the most WAL once the primary's
#                               machine is dead, the other one follows it
#                               (with --patroni: wait until Patroni has)
#   scripts/lab.sh cut mN [--all]
#                               cut mN off from the other two machines (with --all, from
#                               this host too); its processes keep running
#   scripts/lab.sh slow mN [--rate R] [--loss P]
#                               a slow, lossy link: R bit/s each way (default 1mbit) with a
#                               deep queue, and P% of packets lost each way (default 5)
#   scripts/lab.sh heal [mN]    undo cut and slow (of every machine without mN)
#   scripts/lab.sh down         remove everything `up` made; safe to run twice
#
# Failover is an operator step by default: when the primary's machine is gone,
# `failover` promotes the standby that has received the most WAL (pg_ctl
# promote), and refuses while the old primary still runs (never two
# primaries). The other standby is pointed at the new primary, which waits
# for it; the old machine, started again, is rebuilt as one more standby of
# the new primary (pg_basebackup).
#
# With `up --patroni`, Patroni takes that step by itself: etcd runs on the
# three machines, PostgreSQL on m1 and m2 only, Patroni beside each (synchronous_mode,
# ttl 10 s), and promotes the synchronous standby about 10 s after the
# primary's machine dies; a machine started again comes back as a standby
# (pg_rewind). `failover` then only waits for a primary.
#
# Run as root. The binary is $FASTFOOD_BIN, or target/release/fastfood
# (built when missing). --prep-time (default 2s) is each order's preparation
# time. --owner PID leaves a watcher that takes the lab down once that
# process is gone, however it ended (the tests use it). The settings may
# also come from the environment: LAB_DIR, LAB_OWNER, LAB_PREP_TIME,
# LAB_HA=patroni.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF="$ROOT/scripts/$(basename "$0")"
NET=10.77.0 # the lab's /24: machines .1 .2 .3, this host .254
HOST_ADDR="$NET.254"
MACHINES=(m1 m2 m3)
BRIDGE=fflab0
DIR=${LAB_DIR:-/tmp/fastfood-lab}
OWNER=${LAB_OWNER:-}
PREP_TIME=${LAB_PREP_TIME:-2s}
HA=${LAB_HA:-} # patroni: Patroni with etcd promotes the standby by itself
RATE=1mbit
LOSS=5
ALL=
TARGET=
WHAT=
# How long a RabbitMQ node may take to start (after a kill -9 it recovers first).
START_TIMEOUT=240
# Seconds of silence after which an Erlang node counts another as gone.
NET_TICKTIME=${LAB_NET_TICKTIME:-10}

die() {
  echo "lab: $*" >&2
  exit 1
}
say() { echo "lab: $*" >&2; }
usage() {
  sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

num() { echo "${1#m}"; }        # m2 -> 2
addr() { echo "$NET.$(num "$1")"; } # m2 -> 10.77.0.2
veth() { echo "fflab-$1"; }     # the host's end of mN's cable
mdir() { echo "$DIR/$1"; }
nsx() { # mN CMD...: run CMD on machine mN
  local m=$1
  shift
  ip netns exec "$m" "$@"
}
has_ns() { [ -e "/var/run/netns/$1" ]; }
is_lab_dir() { [ -f "$DIR/lab.id" ]; }
# The directory of the lab that made the machines now on this host.
machines_dir() { sed -n 's/^# lab: //p' /etc/netns/m1/hosts 2>/dev/null || true; }
need_lab() {
  is_lab_dir || die "no lab in $DIR: run '$0 up' first (or give --dir)"
  local owner
  owner=$(machines_dir)
  [ -z "$owner" ] || [ "$owner" = "$DIR" ] ||
    die "the machines on this host are the lab in $owner, not $DIR: give --dir $owner"
  # shellcheck source=/dev/null
  . "$DIR/lab.conf"
}
need_machine() {
  case "$TARGET" in m1 | m2 | m3) ;; *) die "name a machine: m1, m2 or m3" ;; esac
}
wait_for() { # SECONDS WHAT CMD...: retry CMD every 0.3 s until it succeeds
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  # In a subshell: a trap that runs meanwhile keeps this shell's stderr.
  until ("$@") >/dev/null 2>&1; do
    ((SECONDS < deadline)) || {
      say "$what: not within ${limit}s"
      return 1
    }
    sleep 0.3
  done
}
alive() { # PIDFILE: the pid it names is running (a zombie is not)
  [ -s "$1" ] || return 1
  local state
  state=$(ps -o stat= -p "$(head -1 "$1")" 2>/dev/null) || return 1
  case "$state" in Z*) return 1 ;; esac
}

# ---------------------------------------------------------------- network

net_up() {
  ip link add "$BRIDGE" type bridge
  ip addr add "$HOST_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local m
  for m in "${MACHINES[@]}"; do
    ip netns add "$m"
    ip link add "$(veth "$m")" type veth peer name eth0 netns "$m"
    ip link set "$(veth "$m")" master "$BRIDGE" up
    nsx "$m" ip link set lo up
    nsx "$m" ip addr add "$(addr "$m")/24" dev eth0
    nsx "$m" ip link set eth0 up
    # `ip netns exec` mounts these over /etc/hosts: the machines know each
    # other by name, and only there.
    mkdir -p "/etc/netns/$m"
    {
      echo "# written by fastfood's scripts/lab.sh up; removed by lab.sh down"
      echo "# lab: $DIR"
      echo "127.0.0.1 localhost"
      echo "::1 localhost"
      local o
      for o in "${MACHINES[@]}"; do echo "$(addr "$o") $o"; done
    } >"/etc/netns/$m/hosts"
  done
  for m in "${MACHINES[@]}"; do
    wait_for 10 "$m reaching m1" nsx "$m" ping -c1 -W1 m1
  done
}

subnet_in_use() {
  ip -4 -o addr show | grep -q " inet $NET\." && return 0
  ip -4 route show match "$NET.0/24" | grep -vq '^default' && return 0
  return 1
}

# Undo cut and slow on mN.
heal_machine() {
  local m=$1
  has_ns "$m" || return 0
  nsx "$m" nft delete table inet fflab_cut 2>/dev/null || true
  nsx "$m" nft delete table inet fflab_slow 2>/dev/null || true
  nsx "$m" tc qdisc del dev eth0 root 2>/dev/null || true
  tc qdisc del dev "$(veth "$m")" root 2>/dev/null || true
  ip link set "$(veth "$m")" up 2>/dev/null || true
}

cut_machine() {
  local m=$1
  nsx "$m" nft delete table inet fflab_cut 2>/dev/null || true
  # Whatever comes from or goes to the other machines is dropped; this
  # host (.254) still reaches mN unless --all.
  nsx "$m" nft -f - <<EOF
table inet fflab_cut {
  chain in {
    type filter hook input priority 0; policy accept;
    iifname "eth0" ip saddr $NET.0/24 ip saddr != $HOST_ADDR drop
  }
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "eth0" ip daddr $NET.0/24 ip daddr != $HOST_ADDR drop
  }
}
EOF
  if [ -n "$ALL" ]; then
    ip link set "$(veth "$m")" down
    say "$m is cut off from every machine and from this host (its cable is unplugged)"
  else
    say "$m is cut off from the other machines; this host still reaches it at $(addr "$m")"
  fi
}

slow_machine() {
  local m=$1
  case "$LOSS" in '' | *[!0-9]*) die "--loss takes a whole percentage, 0 to 100" ;; esac
  ((LOSS <= 100)) || die "--loss takes a whole percentage, 0 to 100"
  # No netem in this kernel: a token bucket at a low rate with a queue of
  # a second's worth of bytes delays what it cannot send at once, both ways
  # (mN's own end of the cable, and the host's end towards mN).
  nsx "$m" tc qdisc replace dev eth0 root tbf rate "$RATE" burst 4kb latency 1s ||
    die "tc refused the rate $RATE (give e.g. 1mbit, 500kbit)"
  tc qdisc replace dev "$(veth "$m")" root tbf rate "$RATE" burst 4kb latency 1s
  nsx "$m" nft delete table inet fflab_slow 2>/dev/null || true
  nsx "$m" nft -f - <<EOF
table inet fflab_slow {
  chain in {
    type filter hook input priority 0; policy accept;
    iifname "eth0" numgen random mod 100 < $LOSS drop
  }
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "eth0" numgen random mod 100 < $LOSS drop
  }
}
EOF
  say "$m's link is slow: $RATE each way, queue up to 1s, $LOSS% of packets lost each way"
}

link_state() { # mN: up, cut, unplugged, slow (or several)
  local m=$1 out=()
  if ! ip link show "$(veth "$m")" 2>/dev/null | grep -q 'state UP'; then
    out+=(unplugged)
  elif nsx "$m" nft list table inet fflab_cut >/dev/null 2>&1; then
    out+=(cut)
  fi
  nsx "$m" nft list table inet fflab_slow >/dev/null 2>&1 && out+=(slow)
  ((${#out[@]})) || out=(up)
  (IFS=+; echo "${out[*]}")
}

# ---------------------------------------------------------------- RabbitMQ

# The node's own environment file, in place of Debian's
# /etc/rabbitmq/rabbitmq-env.conf (which names rabbit@localhost and binds
# epmd and the distribution to 127.0.0.1: no cluster across machines).
rabbit_files() {
  local m=$1 base
  base="$(mdir "$m")/rabbit"
  mkdir -p "$base/mnesia" "$base/log"
  echo '[].' >"$base/enabled_plugins"
  cat >"$base/env.conf" <<EOF
NODENAME=rabbit@$m
MNESIA_BASE=$base/mnesia
LOG_BASE=$base/log
PID_FILE=$base/pid
ENABLED_PLUGINS_FILE=$base/enabled_plugins
CONFIG_FILE=$base/rabbitmq.conf
SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none"
EOF
  # guest may log in from the other machines: this is a lab. A node that
  # loses the other two pauses itself (closing its clients' connections, so
  # they go to a node of the majority) and resumes by itself once it sees
  # them again; a node that stops answering is noticed after 7.5 to 12.5 s
  # (net_ticktime 10; Erlang's default 60).
  cat >"$base/rabbitmq.conf" <<EOF
listeners.tcp.1 = $(addr "$m"):5672
listeners.tcp.2 = 127.0.0.1:5672
loopback_users.guest = false
disk_free_limit.absolute = 50MB
log.file.level = warning
cluster_partition_handling = pause_minority
net_ticktime = $NET_TICKTIME
EOF
  chown -R rabbitmq:rabbitmq "$base"
}

rctl() { # mN ARGS...: rabbitmqctl on mN's node, from mN
  local m=$1
  shift
  RABBITMQ_CONF_ENV_FILE="$(mdir "$m")/rabbit/env.conf" nsx "$m" rabbitmqctl -q -n "rabbit@$m" "$@"
}
rabbit_launch() { # mN: start the node, without waiting
  local m=$1
  RABBITMQ_CONF_ENV_FILE="$(mdir "$m")/rabbit/env.conf" nsx "$m" rabbitmq-server -detached >/dev/null 2>&1
}
rabbit_await() { # mN
  wait_for "$START_TIMEOUT" "RabbitMQ node rabbit@$1 starting (see $(mdir "$1")/rabbit/log)" \
    rctl "$1" await_startup --timeout 10
}
rabbit_pid_alive() { alive "$(mdir "$1")/rabbit/pid"; }
rabbit_running() { rabbit_pid_alive "$1" && rctl "$1" await_startup --timeout 3 >/dev/null 2>&1; }

rabbit_up() {
  local m out
  for m in "${MACHINES[@]}"; do rabbit_files "$m"; done
  for m in "${MACHINES[@]}"; do rabbit_launch "$m"; done
  for m in "${MACHINES[@]}"; do rabbit_await "$m"; done
  for m in m2 m3; do
    # rabbitmqctl logs harmless errors while a node joins: shown on failure only.
    if ! out=$({ rctl "$m" stop_app && rctl "$m" join_cluster rabbit@m1 && rctl "$m" start_app; } 2>&1); then
      echo "$out" >&2
      die "rabbit@$m could not join rabbit@m1"
    fi
  done
}

# The machine whose node leads the `orders` quorum queue, asked of a node
# that is running and not cut off (a cut node may believe a stale leader).
orders_leader() {
  local m line
  for m in "${MACHINES[@]}"; do
    [ "$(link_state "$m")" = up ] || [ "$(link_state "$m")" = slow ] || continue
    rabbit_pid_alive "$m" || continue
    line=$(rctl "$m" list_queues --no-table-headers --timeout 10 name leader 2>/dev/null |
      awk '$1 == "orders" { print $2 }') || continue
    if [ -n "$line" ]; then
      echo "${line#rabbit@}"
      return 0
    fi
  done
  return 1
}

# ---------------------------------------------------------------- PostgreSQL

PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || PGBIN=
pgdata() { echo "$(mdir "$1")/pg/data"; }
pgrun() { echo "$(mdir "$1")/pg/run"; }
as_pg() { # mN CMD ARGS...: a PostgreSQL tool on mN, as the postgres user
  local m=$1 cmd=$2
  shift 2
  nsx "$m" runuser -u postgres -- "$PGBIN/$cmd" "$@"
}
pg_running() { alive "$(pgdata "$1")/postmaster.pid"; }
psql_on() { # mN SQL: through mN's socket (works whatever its network)
  "$PGBIN/psql" -X -q -At -w -h "$(pgrun "$1")" -p 5432 -U postgres -d postgres -c "$2"
}
pg_role() { # mN: primary, standby, starting, down (or none: no PostgreSQL there)
  [ -d "$(pgdata "$1")" ] || {
    echo none
    return
  }
  pg_running "$1" || {
    echo down
    return
  }
  case "$(psql_on "$1" 'select pg_is_in_recovery()' 2>/dev/null)" in
    f) echo primary ;;
    t) echo standby ;;
    *) echo starting ;;
  esac
}
pg_start() { # mN
  local m=$1
  local out
  # (After a kill -9 it says "another server might be running": the pid
  # file left behind; shown on failure only.)
  out=$(as_pg "$m" pg_ctl -D "$(pgdata "$m")" -w -t 120 -l "$(mdir "$m")/pg/postgres.log" \
    -o "-p 5432 -k $(pgrun "$m") -c listen_addresses=$(addr "$m"),127.0.0.1" start 2>&1) ||
    die "PostgreSQL on $m did not start: $out (see $(mdir "$m")/pg/postgres.log)"
}
pg_dirs() { # mN
  mkdir -p "$(mdir "$1")/pg/run"
  chown -R postgres:postgres "$(mdir "$1")/pg"
}
pg_primary_init() { # mN
  local m=$1
  pg_dirs "$m"
  as_pg "$m" initdb -D "$(pgdata "$m")" -A trust -U postgres --no-sync -E UTF8 >"$(mdir "$m")/pg/initdb.log" 2>&1 ||
    die "initdb failed: see $(mdir "$m")/pg/initdb.log"
  # Trust for the lab's subnet: the other machines, and this host's tests.
  {
    echo "host all all $NET.0/24 trust"
    echo "host replication all $NET.0/24 trust"
  } >>"$(pgdata "$m")/pg_hba.conf"
  pg_start "$m"
  psql_on "$m" 'create database fastfood'
}
# What a standby on mN connects to: PRIMARY, named by its machine (the
# primary lists it in pg_stat_replication under that name).
pg_conninfo() { # mN PRIMARY
  echo "host=$2 port=5432 user=postgres application_name=$1"
}
# Point the stopped standby on mN at PRIMARY (a running one: `alter system`).
pg_point_at() { # mN PRIMARY
  local auto
  auto="$(pgdata "$1")/postgresql.auto.conf"
  sed -i '/^primary_conninfo/d' "$auto"
  echo "primary_conninfo = '$(pg_conninfo "$1" "$2")'" >>"$auto"
}
# A standby of PRIMARY on mN: a fresh copy over the lab's network.
pg_standby_init() { # mN PRIMARY
  local m=$1 primary=$2
  pg_dirs "$m"
  pg_forget_shm "$m"
  rm -rf "$(pgdata "$m")"
  as_pg "$m" pg_basebackup -h "$primary" -p 5432 -U postgres -D "$(pgdata "$m")" -R -X stream -c fast ||
    die "pg_basebackup of $m from $primary failed"
  # A promoted standby is given its synchronous_standby_names by `failover`,
  # never its primary's.
  sed -i '/^synchronous_standby_names/d' "$(pgdata "$m")/postgresql.auto.conf"
  pg_point_at "$m" "$primary"
  pg_start "$m"
}
# Streaming standbys of the primary on PRIMARY, e.g. "m2:quorum m3:quorum".
pg_standbys_of() { # PRIMARY
  psql_on "$1" "select coalesce(string_agg(application_name || ':' || sync_state, ' ' order by application_name), '') from pg_stat_replication where state = 'streaming'" 2>/dev/null
}
streams_from() { # mN PRIMARY: mN's standby streams from PRIMARY
  case " $(pg_standbys_of "$2") " in *" $1:"*) return 0 ;; esac
  return 1
}
has_sync() { # PRIMARY: it sees a standby that can confirm its commits
  [ "$(psql_on "$1" "select count(*) from pg_stat_replication where sync_state in ('sync', 'quorum')")" -ge 1 ]
}
# From now on a commit on PRIMARY waits until one of its standbys, whichever
# answers first, has it on disk (ANY 1: a quorum of one; see deploy.md).
pg_synchronous() { # PRIMARY
  local p=$1
  psql_on "$p" "alter system set synchronous_standby_names = 'ANY 1 (*)'" >/dev/null
  psql_on "$p" 'select pg_reload_conf()' >/dev/null
  wait_for 60 "a standby of $p becoming synchronous" has_sync "$p"
}
pg_primary_machine() {
  if [ "$HA" = patroni ]; then
    # Patroni moves it: whichever machine's server is out of recovery.
    local m
    for m in "${MACHINES[@]}"; do
      [ "$(pg_role "$m")" = primary ] && {
        echo "$m"
        return
      }
    done
    echo none
  else
    cat "$DIR/pg-primary"
  fi
}

# Brings mN's PostgreSQL back: as what it was, or, if it was the primary
# before a failover, as a fresh standby of the new primary.
pg_start_machine() { # mN
  local m=$1 primary
  [ -d "$(pgdata "$m")" ] || [ -d "$(mdir "$m")/pg" ] || return 0
  pg_running "$m" && return 0
  primary=$(pg_primary_machine)
  if [ "$primary" = "$m" ]; then
    pg_start "$m"
    say "PostgreSQL on $m is back, the primary"
    return 0
  fi
  [ "$(pg_role "$primary")" = primary ] ||
    die "the primary is on $primary, which is not running: start $primary first"
  if [ -f "$(pgdata "$m")/standby.signal" ]; then
    # Its primary may have changed while it was away.
    pg_point_at "$m" "$primary"
    pg_start "$m"
    if ! wait_for 30 "the standby on $m streaming from $primary" streams_from "$m" "$primary"; then
      # It has WAL the new primary never had (a timeline it cannot follow).
      say "rebuilding $m as $primary's standby"
      as_pg "$m" pg_ctl -D "$(pgdata "$m")" -m immediate -t 10 stop >/dev/null 2>&1 || true
      pg_standby_init "$m" "$primary"
    fi
  else
    say "$m held the primary before the failover: rebuilding it as $primary's standby"
    pg_standby_init "$m" "$primary"
  fi
  pg_synchronous "$primary"
  say "PostgreSQL on $m is back, a synchronous standby of $primary"
}

# Remove the System V memory a killed postmaster leaves behind (a clean
# stop removes its own).
pg_forget_shm() { # mN
  local pidfile shmid
  pidfile="$(pgdata "$1")/postmaster.pid"
  [ -f "$pidfile" ] || return 0
  shmid=$(sed -n 7p "$pidfile" | awk '{ print $2 }')
  # Only a segment nobody has attached any more.
  if [ -n "$shmid" ] && ipcs -m | awk -v id="$shmid" '$2 == id && $6 == 0 { found = 1 } END { exit !found }'; then
    ipcrm -m "$shmid" 2>/dev/null || true
  fi
}

failover() {
  local old new="" m
  if [ "$HA" = patroni ]; then
    wait_for 60 "Patroni electing a primary" has_primary ||
      die "no primary after 60 s: see $DIR/m1/patroni.log and $DIR/m2/patroni.log"
    say "Patroni promotes by itself: the primary is on $(pg_primary_machine)"
    return 0
  fi
  old=$(pg_primary_machine)
  if pg_running "$old"; then
    die "the primary on $old is still running: a failover now would make two primaries. Kill its machine first ('$0 kill $old')"
  fi
  # A commit was confirmed by one standby at least, not necessarily by
  # each: promote the one that has the most WAL on disk (m2 on a tie).
  local lsn best="" others=() missing=()
  for m in "${MACHINES[@]}"; do
    if [ "$m" = "$old" ] || [ ! -d "$(pgdata "$m")" ]; then continue; fi
    if [ "$(pg_role "$m")" != standby ]; then
      missing+=("$m")
      continue
    fi
    lsn=$(psql_on "$m" 'select pg_last_wal_receive_lsn()') || lsn=
    if [ -n "$lsn" ] && { [ -z "$best" ] ||
      [ "$(psql_on "$m" "select pg_wal_lsn_diff('$lsn', '$best') > 0")" = t ]; }; then
      [ -n "$new" ] && others+=("$new")
      new=$m
      best=$lsn
    else
      others+=("$m")
    fi
  done
  [ -n "$new" ] || die "no standby is running to promote"
  ((${#missing[@]} == 0)) ||
    say "the standby on ${missing[*]} is not running: an order only it confirmed may be missing on $new"
  as_pg "$new" pg_ctl -D "$(pgdata "$new")" -w -t 60 promote >/dev/null
  wait_for 30 "$new leaving recovery" role_is "$new" primary
  echo "$new" >"$DIR/pg-primary"
  # The other standby follows the new primary (it moves onto the new
  # timeline by itself: recovery_target_timeline is `latest`).
  for m in "${others[@]}"; do
    psql_on "$m" "alter system set primary_conninfo = '$(pg_conninfo "$m" "$new")'" >/dev/null
    psql_on "$m" 'select pg_reload_conf()' >/dev/null
  done
  if ((${#others[@]})) && psql_on "$new" "alter system set synchronous_standby_names = 'ANY 1 (*)'" >/dev/null &&
    psql_on "$new" 'select pg_reload_conf()' >/dev/null &&
    wait_for 30 "${others[*]} streaming from $new" has_sync "$new"; then
    say "promoted the standby on $new (WAL up to $best): it is the primary, ${others[*]} its standby; '$0 start $old' makes $old one too"
  else
    # Alone: it would wait forever for a standby that is not there.
    psql_on "$new" 'alter system reset synchronous_standby_names' >/dev/null
    psql_on "$new" 'select pg_reload_conf()' >/dev/null
    say "promoted the standby on $new (WAL up to $best): it is the primary and commits alone until '$0 start $old' makes $old its standby"
  fi
}

# ---------------------------------------------------------------- Patroni

# etcd on every machine (three members: it keeps a majority when one dies),
# Patroni beside each PostgreSQL server (m1, m2).
etcd_cluster() {
  local out=() m
  for m in "${MACHINES[@]}"; do out+=("$m=http://$(addr "$m"):2380"); done
  (IFS=,; echo "${out[*]}")
}
etcd_start() { # mN
  local m=$1 a
  a=$(addr "$m")
  alive "$(mdir "$m")/etcd.pid" && return 0
  launch "$m" etcd etcd --name "$m" --data-dir "$(mdir "$m")/etcd" \
    --listen-peer-urls "http://$a:2380" --initial-advertise-peer-urls "http://$a:2380" \
    --listen-client-urls "http://$a:2379,http://127.0.0.1:2379" --advertise-client-urls "http://$a:2379" \
    --initial-cluster "$(etcd_cluster)" --initial-cluster-state new --initial-cluster-token fastfood-lab --pre-vote
}
etcd_healthy() { curl -fsS -m 2 "http://$(addr "$1"):2379/health" | grep -q '"health":"true"'; }

patroni_files() { # mN
  local m=$1 a d hosts=() o
  a=$(addr "$m")
  d=$(mdir "$m")
  for o in "${MACHINES[@]}"; do hosts+=("$(addr "$o"):2379"); done
  pg_dirs "$m"
  # ttl 10 s: a dead primary's lock expires within 10 s, then the
  # synchronous standby takes it. synchronous_mode: only a standby that
  # had every commit may be promoted; alone, the primary commits alone.
  cat >"$d/patroni.yml" <<EOF
scope: fastfood-lab
name: $m
restapi:
  listen: $a:8008
  connect_address: $a:8008
etcd3:
  hosts: $(IFS=,; echo "${hosts[*]}")
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 3
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_log_hints: 'on'
  initdb:
    - encoding: UTF8
    - auth: trust
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host all all $NET.0/24 trust
    - host replication all 127.0.0.1/32 trust
    - host replication all $NET.0/24 trust
postgresql:
  listen: $a,127.0.0.1:5432
  connect_address: $a:5432
  data_dir: $(pgdata "$m")
  bin_dir: $PGBIN
  pgpass: $d/pg/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: $(pgrun "$m")
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
EOF
  chown postgres:postgres "$d/patroni.yml"
}
patroni_start() { # mN
  local m=$1
  alive "$(mdir "$m")/patroni.pid" && return 0
  launch "$m" patroni env HOME=/var/lib/postgresql \
    setpriv --reuid=postgres --regid=postgres --init-groups patroni "$(mdir "$m")/patroni.yml"
}
role_is() { [ "$(pg_role "$1")" = "$2" ]; }
has_primary() { [ "$(pg_primary_machine)" != none ]; }
role_known() { role_is "$1" primary || role_is "$1" standby; }

patroni_up() {
  local m
  for m in "${MACHINES[@]}"; do etcd_start "$m"; done
  for m in "${MACHINES[@]}"; do wait_for 60 "etcd on $m (see $DIR/$m/etcd.log)" etcd_healthy "$m"; done
  patroni_files m1
  patroni_files m2
  patroni_start m1
  wait_for 240 "Patroni making m1 the primary (see $DIR/m1/patroni.log)" role_is m1 primary
  psql_on m1 'create database fastfood'
  patroni_start m2
  wait_for 240 "Patroni making m2 a standby (see $DIR/m2/patroni.log)" role_is m2 standby
  wait_for 60 "the standby on m2 becoming synchronous" has_sync m1
}

# Patroni brings mN's server back: a standby of the primary now (rewound,
# or copied anew), or the primary again if no other took over.
patroni_start_machine() { # mN
  local m=$1 role primary
  etcd_start "$m"
  [ -f "$(mdir "$m")/patroni.yml" ] || return 0
  patroni_start "$m"
  wait_for 240 "Patroni starting PostgreSQL on $m (see $DIR/$m/patroni.log)" role_known "$m"
  role=$(pg_role "$m")
  primary=$(pg_primary_machine)
  if [ "$role" = standby ] && [ "$primary" != none ]; then
    wait_for 60 "the standby on $m becoming synchronous" has_sync "$primary" || true
  fi
  say "PostgreSQL on $m is back under Patroni: the $role"
}

# ---------------------------------------------------------------- fastfood

find_bin() {
  if [ -n "${FASTFOOD_BIN:-}" ]; then
    [ -x "$FASTFOOD_BIN" ] || die "FASTFOOD_BIN=$FASTFOOD_BIN is not an executable"
    BIN=$(realpath "$FASTFOOD_BIN")
    return
  fi
  BIN="$ROOT/target/release/fastfood"
  if [ ! -x "$BIN" ]; then
    say "building $BIN (cargo build --release)"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  fi
}

db_url() { # HOSTS...: the URL every process uses, every database host in it
  local out=() h
  for h in "$@"; do out+=("$h:5432"); done
  echo "postgres://postgres@$(IFS=,; echo "${out[*]}")/fastfood?target_session_attrs=read-write"
}
# The machines with a PostgreSQL server: all three (with --patroni, m1 and m2).
pg_machines() {
  if [ "$HA" = patroni ]; then echo m1 m2; else echo "${MACHINES[@]}"; fi
}
broker_urls() { # HOSTS...: first the process's own node, then the others
  local out=() h
  for h in "$@"; do out+=("amqp://guest:guest@$h:5672/%2f"); done
  (IFS=,; echo "${out[*]}")
}
own_first() { # mN: m2 -> m2 m3 m1
  local i n
  n=$(num "$1")
  for i in 0 1 2; do echo "m$(((n - 1 + i) % 3 + 1))"; done
}

launch() { # mN NAME CMD...: a process on mN in the background, its pid in mN/NAME.pid, its output in mN/NAME.log
  local m=$1 name=$2
  shift 2
  local d
  d=$(mdir "$m")
  # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
  nsx "$m" setsid sh -c 'echo $$ >"$0"; exec "$@"' "$d/$name.pid" "$@" \
    </dev/null >>"$d/$name.log" 2>&1 &
}
ff_launch() { # mN NAME ARGS...: one fastfood process on mN
  local m=$1 name=$2
  shift 2
  launch "$m" "$name" "$BIN" "$@"
}
ff_names=(serve worker1 worker2)
ff_start_machine() { # mN: the processes of mN that are not running
  local m=$1 d name
  d=$(mdir "$m")
  mkdir -p "$d/data"
  # shellcheck disable=SC2046
  local common=(--data-dir "$d/data" --database "$(db_url $(pg_machines))"
    --broker "$(broker_urls $(own_first "$m"))" --queue-type quorum --prep-time "$PREP_TIME")
  for name in "${ff_names[@]}"; do
    alive "$d/$name.pid" && continue
    rm -f "$d/$name.pid"
    if [ "$name" = serve ]; then
      ff_launch "$m" serve serve --workers 0 --listen "$(addr "$m"):7777" \
        --allowed-hosts "$m,$(addr "$m")" "${common[@]}"
    else
      ff_launch "$m" "$name" worker "${common[@]}"
    fi
  done
}
ready() { curl -fsS -m 2 -o /dev/null "http://$(addr "$1"):7777/readyz"; }

# ---------------------------------------------------------------- commands

write_env() {
  local servers=() m
  for m in "${MACHINES[@]}"; do servers+=("http://$(addr "$m"):7777"); done
  local hosts=()
  for m in $(pg_machines); do hosts+=("$(addr "$m")"); done
  # Unquoted on purpose: a shell sources it as is (no globbing in an
  # assignment), and a test reads KEY=VALUE lines.
  cat >"$DIR/lab.env" <<EOF
LAB_DIR=$DIR
SERVERS=$(IFS=,; echo "${servers[*]}")
DATABASE_URL=$(db_url "${hosts[@]}")
AMQP_URL=$(broker_urls "$(addr m1)" "$(addr m2)" "$(addr m3)")
QUEUE_TYPE=quorum
PREP_TIME=$PREP_TIME
WORKERS=6
EOF
}

up_lab() {
  [ "$(id -u)" = 0 ] || die "run as root: the lab makes namespaces and a bridge"
  [ -n "$PGBIN" ] || die "no PostgreSQL in /usr/lib/postgresql"
  local tool
  for tool in nft ping tc rabbitmq-server curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install nftables iputils-ping iproute2 rabbitmq-server curl)"
  done
  if [ "$HA" = patroni ]; then
    for tool in patroni etcd; do
      command -v "$tool" >/dev/null || die "--patroni needs Patroni and etcd (apt-get install patroni etcd-server)"
    done
  fi
  [ -e "$DIR" ] && die "$DIR exists: the lab is up already, or left over ('$0 down' removes it)"
  case "$DIR" in /*) ;; *) die "--dir must be an absolute path" ;; esac
  case "$DIR" in *[[:space:]]*) die "--dir must have no spaces" ;; esac
  local m
  for m in "${MACHINES[@]}"; do
    has_ns "$m" && die "a namespace $m exists already ('$0 down' removes a lab left over)"
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && die "a link $BRIDGE exists already ('$0 down' removes it)"
  subnet_in_use && die "$NET.0/24 is in use on this host: the lab needs it for itself"
  find_bin

  trap 'trap - EXIT INT TERM; say "the lab did not come up; removing what was made"; down_lab; exit 1' EXIT INT TERM
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  local id
  id="$$-$(date +%s%N)"
  echo "$id" >"$DIR/lab.id"
  local user
  for user in rabbitmq postgres; do
    runuser -u "$user" -- test -x "$DIR" ||
      die "the $user user cannot reach $DIR (a directory above it is private): pick another --dir"
  done
  cat >"$DIR/lab.conf" <<EOF
BIN=$BIN
PREP_TIME=$PREP_TIME
HA=$HA
EOF
  echo m1 >"$DIR/pg-primary"
  if [ -n "$OWNER" ]; then
    kill -0 "$OWNER" 2>/dev/null || die "--owner $OWNER is no running process"
    # Detached from the caller's terminal and pipes, so nobody waits for it;
    # it leaves alone a lab that is not the one it was started for.
    # shellcheck disable=SC2016 # the watcher's own arguments
    setsid bash -c 'same() { [ "$(cat "$2/lab.id" 2>/dev/null)" = "$3" ]; }
      while kill -0 "$1" 2>/dev/null && same "$@"; do sleep 1; done
      same "$@" && exec "$4" down --dir "$2"' \
      watcher "$OWNER" "$DIR" "$id" "$SELF" </dev/null >/dev/null 2>&1 &
  fi

  say "network: bridge $BRIDGE ($HOST_ADDR), m1 m2 m3 on $NET.0/24"
  net_up
  say "RabbitMQ: rabbit@m1, rabbit@m2, rabbit@m3 in one cluster"
  rabbit_up
  if [ "$HA" = patroni ]; then
    say "PostgreSQL under Patroni (etcd on m1 m2 m3): primary on m1, synchronous standby on m2"
    patroni_up
  else
    say "PostgreSQL: primary on m1, standbys on m2 and m3 (either confirms a commit)"
    pg_primary_init m1
    pg_standby_init m2 m1
    pg_standby_init m3 m1
    pg_synchronous m1
  fi
  write_env
  say "fastfood: a server and two workers on each machine (prep time $PREP_TIME)"
  for m in "${MACHINES[@]}"; do
    ff_start_machine "$m"
    # The first one creates the schema (and the queues) before the others come.
    [ "$m" = m1 ] && wait_for 180 "the server on m1 ready (see $DIR/m1/serve.log)" ready m1
  done
  for m in "${MACHINES[@]}"; do
    wait_for 180 "the server on $m ready (see $DIR/$m/serve.log)" ready "$m"
  done
  trap - EXIT INT TERM
  say "the lab is up; its URLs are in $DIR/lab.env:"
  cat "$DIR/lab.env"
}

start_machine() { # mN
  local m=$1
  has_ns "$m" || die "no machine $m: run '$0 up' first"
  if ! rabbit_pid_alive "$m"; then
    rabbit_launch "$m"
    rabbit_await "$m"
    say "rabbit@$m is back (it rejoins the cluster by itself)"
  fi
  if [ "$HA" = patroni ]; then
    patroni_start_machine "$m"
  else
    pg_start_machine "$m"
  fi
  ff_start_machine "$m"
  wait_for 180 "the server on $m ready (see $DIR/$m/serve.log)" ready "$m"
  say "$m is up"
}

# kill -9 of every process in mN's namespace, again for any that was
# starting meanwhile, until none is left.
kill_all() { # mN: prints how many it killed
  local m=$1 pids p deadline=$((SECONDS + 20))
  local -A seen=()
  while pids=$(ip netns pids "$m" | tr '\n' ' ') && [ -n "${pids// /}" ]; do
    for p in $pids; do seen[$p]=1; done
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    ((SECONDS < deadline)) || {
      say "some processes of $m would not die: $pids"
      break
    }
    sleep 0.1
  done
  echo "${#seen[@]}"
}

kill_machine() { # mN
  local m=$1 n
  has_ns "$m" || die "no machine $m"
  n=$(kill_all "$m")
  say "killed every process of $m ($n)"
}

down_lab() {
  local m owner
  owner=$(machines_dir)
  if [ -n "$owner" ] && [ "$owner" != "$DIR" ] && [ -f "$owner/lab.id" ]; then
    # Another lab's machines: they are not this one's to remove.
    is_lab_dir && rm -rf "$DIR"
    say "the machines on this host are the lab in $owner, left alone ('$0 down --dir $owner' removes it)"
    return 0
  fi
  for m in "${MACHINES[@]}"; do
    has_ns "$m" || continue
    # A clean immediate stop takes its shared memory with it.
    if [ -n "$PGBIN" ] && [ -d "$(pgdata "$m")" ] && pg_running "$m"; then
      as_pg "$m" pg_ctl -D "$(pgdata "$m")" -m immediate -t 10 stop >/dev/null 2>&1 || true
    fi
    kill_all "$m" >/dev/null
    [ -n "$PGBIN" ] && pg_forget_shm "$m"
    ip netns del "$m"
  done
  for m in "${MACHINES[@]}"; do
    ip link del "$(veth "$m")" 2>/dev/null || true
    if [ -f "/etc/netns/$m/hosts" ] && grep -q 'scripts/lab.sh' "/etc/netns/$m/hosts"; then
      rm -f "/etc/netns/$m/hosts"
      rmdir "/etc/netns/$m" 2>/dev/null || true
    fi
  done
  rmdir /etc/netns 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  if is_lab_dir; then
    rm -rf "$DIR"
  fi
  say "the lab is down"
}

status_lab() {
  need_lab
  local m role rabbit procs name leader="" primary
  leader=$(orders_leader) || leader=""
  primary=$(pg_primary_machine)
  printf '%-7s %-10s %-15s %-9s %-9s %s\n' machine address link rabbitmq postgres fastfood
  for m in "${MACHINES[@]}"; do
    if ! has_ns "$m"; then
      echo "$m: no such machine"
      continue
    fi
    if rabbit_running "$m"; then rabbit=running; elif rabbit_pid_alive "$m"; then rabbit=starting; else rabbit=down; fi
    [ "$leader" = "$m" ] && rabbit="$rabbit*"
    role=$(pg_role "$m")
    procs=()
    for name in "${ff_names[@]}" etcd patroni; do
      alive "$(mdir "$m")/$name.pid" && procs+=("$name")
    done
    ((${#procs[@]})) || procs=(none)
    printf '%-7s %-10s %-15s %-9s %-9s %s\n' "$m" "$(addr "$m")" "$(link_state "$m")" "$rabbit" "$role" "${procs[*]}"
  done
  if [ -n "$leader" ]; then
    echo "* leads the orders queue (rabbit@$leader)"
  else
    echo "orders queue leader: not known (no node answered, or no queue yet)"
  fi
  echo "PostgreSQL primary: $primary ($(pg_role "$primary"))"
  if [ "$(pg_role "$primary")" = primary ]; then
    # quorum: one of ANY 1 (*); sync: Patroni's synchronous_mode.
    echo "its standbys (name:sync_state): $(pg_standbys_of "$primary")"
  fi
}

leader_cmd() {
  need_lab
  local b d
  b=$(orders_leader) || b=none
  d=$(pg_primary_machine)
  [ "$(pg_role "$d")" = primary ] || d=none
  case "$WHAT" in
    broker) echo "$b" ;;
    database) echo "$d" ;;
    *)
      echo "broker=$b"
      echo "database=$d"
      ;;
  esac
}

CMD=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=${2:?--dir needs a directory}; shift ;;
    --dir=*) DIR=${1#--dir=} ;;
    --owner) OWNER=${2:?--owner needs a pid}; shift ;;
    --owner=*) OWNER=${1#--owner=} ;;
    --prep-time) PREP_TIME=${2:?--prep-time needs a duration}; shift ;;
    --prep-time=*) PREP_TIME=${1#--prep-time=} ;;
    --rate) RATE=${2:?--rate needs a rate}; shift ;;
    --rate=*) RATE=${1#--rate=} ;;
    --loss) LOSS=${2:?--loss needs a percentage}; shift ;;
    --loss=*) LOSS=${1#--loss=} ;;
    --all) ALL=1 ;;
    --patroni) HA=patroni ;;
    m1 | m2 | m3) TARGET=$1 ;;
    broker | database) WHAT=$1 ;;
    -h | --help) usage ;;
    *) say "unknown argument: $1"; usage ;;
  esac
  shift
done
DIR=${DIR%/}

case "$CMD" in
  up)
    if [ -n "$TARGET" ]; then
      need_lab
      start_machine "$TARGET"
    else
      up_lab
    fi
    ;;
  start)
    need_lab
    need_machine
    start_machine "$TARGET"
    ;;
  down) down_lab ;;
  urls)
    need_lab
    cat "$DIR/lab.env"
    ;;
  status) status_lab ;;
  leader) leader_cmd ;;
  kill)
    need_lab
    need_machine
    kill_machine "$TARGET"
    ;;
  failover)
    need_lab
    failover
    ;;
  cut)
    need_lab
    need_machine
    cut_machine "$TARGET"
    ;;
  slow)
    need_lab
    need_machine
    slow_machine "$TARGET"
    ;;
  heal)
    need_lab
    if [ -n "$TARGET" ]; then
      heal_machine "$TARGET"
      say "$TARGET's link is whole again"
    else
      for m in "${MACHINES[@]}"; do heal_machine "$m"; done
      say "every link is whole again"
    fi
    ;;
  *) usage ;;
esac
