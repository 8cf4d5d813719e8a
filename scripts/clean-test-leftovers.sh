#!/usr/bin/env bash
# Deletes what an interrupted test run may have left: broker queues and exchanges under the
# test prefixes (twt-, twbench-) and PostgreSQL databases named tw_test_*. Tests remove their
# own; this only sweeps up after crashes.
set -euo pipefail
AMQP_HOST=${AMQP_HOST:-127.0.0.1}
PG_HOST=${PG_HOST:-127.0.0.1}
api="http://$AMQP_HOST:15672/api"

for kind in queues exchanges; do
  curl -sf -u guest:guest "$api/$kind/%2F?columns=name" \
    | python3 -c 'import json,sys; [print(x["name"]) for x in json.load(sys.stdin) if x["name"].startswith(("twt-","twbench-"))]' \
    | while read -r name; do
        curl -sf -u guest:guest -X DELETE "$api/$kind/%2F/$name" >/dev/null || true
      done
done

if command -v psql >/dev/null 2>&1; then
  psql -h "$PG_HOST" -U postgres -d test -tAc "select datname from pg_database where datname like 'tw_test_%'" \
    | while read -r db; do
        [ -n "$db" ] && psql -h "$PG_HOST" -U postgres -d test -qc "drop database if exists \"$db\" with (force)" >/dev/null || true
      done
fi
