#!/usr/bin/env bash
# Start the PostgreSQL and Redis servers the test suite (and the scale-out bench) use,
# on 127.0.0.1 only. Idempotent: already-running servers are left alone.
# Installs the Debian packages first when they are missing and we may (root + apt).
set -euo pipefail

PG_USER=openmaas PG_PASSWORD=openmaas PG_DB=openmaas_test
PG_PORT=${OPENMAAS_TEST_PG_PORT:-5432} REDIS_PORT=${OPENMAAS_TEST_REDIS_PORT:-6379}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

need=()
command -v pg_lsclusters >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# PostgreSQL: the distribution's cluster, listening on loopback only.
read -r ver cluster _ < <(pg_lsclusters -h | head -1) || true
if [ -z "${ver:-}" ]; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1); cluster=main
  as_root pg_createcluster "$ver" "$cluster" -p "$PG_PORT" >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$ver" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -q online; then
  as_root pg_ctlcluster "$ver" "$cluster" start -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c fsync=on"
fi
psql_pg() { as_root runuser -u postgres -- psql -p "$PG_PORT" -qtAX "$@"; }
for _ in $(seq 50); do psql_pg -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
if [ "$(psql_pg -c "select 1 from pg_roles where rolname='$PG_USER'")" != 1 ]; then
  psql_pg -c "create role $PG_USER login password '$PG_PASSWORD' createdb"
fi
if [ "$(psql_pg -c "select 1 from pg_database where datname='$PG_DB'")" != 1 ]; then
  psql_pg -c "create database $PG_DB owner $PG_USER"
fi

# Redis: a private instance without persistence, loopback only.
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
    --logfile /tmp/openmaas-redis.log >/dev/null
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB redis://127.0.0.1:$REDIS_PORT/0"
