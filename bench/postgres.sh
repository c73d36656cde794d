#!/usr/bin/env bash
# The PostgreSQL (--database) rows of the benchmark suite alone, each held
# against what PostgreSQL itself commits here (pgbench, measured in the same
# run): /order with the in-process queue and with RabbitMQ, the kitchen's
# capacity, and /order after PRELOAD (100,000) orders collected.
#
#   bash bench/postgres.sh
#   PRELOAD=20000 bash bench/postgres.sh
#
# Needs what bench/run.sh needs, pgbench and psql, and PostgreSQL at
# PG_HOST:PG_PORT (127.0.0.1:5432, user postgres, trust).
ONLY=postgres exec bash "$(dirname "$0")/run.sh" "$@"
