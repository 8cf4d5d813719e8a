#!/usr/bin/env bash
# Makes sure the services tickwatch needs are up and usable on this machine, idempotently:
# RabbitMQ with the management and consistent-hash plugins, and PostgreSQL. Starts a local
# service that is installed but stopped. Prints what it checked; fails with a clear message.
set -euo pipefail

AMQP_HOST=${AMQP_HOST:-127.0.0.1}
PG_HOST=${PG_HOST:-127.0.0.1}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() { # host port seconds
  for _ in $(seq 1 "$3"); do port_open "$1" "$2" && return 0; sleep 1; done
  return 1
}

# --- RabbitMQ -------------------------------------------------------------------------
if ! port_open "$AMQP_HOST" 5672; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "services: RabbitMQ is not answering on $AMQP_HOST:5672; starting it (rabbitmq-server -detached)"
    rabbitmq-server -detached || true
  fi
  wait_port "$AMQP_HOST" 5672 90 || {
    echo "services: RabbitMQ is not reachable on $AMQP_HOST:5672. Install it (apt install rabbitmq-server)" >&2
    echo "          and start it (rabbitmq-server -detached), or: docker compose -f deploy/compose.yaml up -d rabbitmq" >&2
    exit 1
  }
fi
if command -v rabbitmq-plugins >/dev/null 2>&1; then
  # Enabling an enabled plugin is a no-op, so this is safe on every run.
  rabbitmq-plugins enable --quiet rabbitmq_management rabbitmq_consistent_hash_exchange >/dev/null
fi
wait_port "$AMQP_HOST" 15672 60 || {
  echo "services: the RabbitMQ management API is not answering on $AMQP_HOST:15672;" >&2
  echo "          enable it: rabbitmq-plugins enable rabbitmq_management rabbitmq_consistent_hash_exchange" >&2
  exit 1
}
for _ in $(seq 1 30); do
  if curl -sf -u guest:guest "http://$AMQP_HOST:15672/api/exchanges/%2F/amq.direct" >/dev/null 2>&1; then break; fi
  sleep 1
done
if ! curl -sf -u guest:guest "http://$AMQP_HOST:15672/api/overview" | grep -q '"name":"x-consistent-hash"'; then
  echo "services: the rabbitmq_consistent_hash_exchange plugin is not enabled:" >&2
  echo "          rabbitmq-plugins enable rabbitmq_consistent_hash_exchange" >&2
  exit 1
fi
echo "services: RabbitMQ up on $AMQP_HOST:5672 (management and consistent-hash plugins enabled)"

# --- PostgreSQL -----------------------------------------------------------------------
if ! port_open "$PG_HOST" 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "services: PostgreSQL is not answering on $PG_HOST:5432; starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_port "$PG_HOST" 5432 60 || {
    echo "services: PostgreSQL is not reachable on $PG_HOST:5432 (tests use postgres://postgres@$PG_HOST/test)" >&2
    exit 1
  }
fi
if command -v psql >/dev/null 2>&1; then
  for _ in $(seq 1 30); do
    psql -h "$PG_HOST" -U postgres -d test -tAc 'select 1' >/dev/null 2>&1 && break
    sleep 1
  done
  psql -h "$PG_HOST" -U postgres -d test -tAc 'select 1' >/dev/null || {
    echo "services: PostgreSQL answers but database "test" is not usable as user postgres" >&2
    exit 1
  }
fi
echo "services: PostgreSQL up on $PG_HOST:5432"
