#!/usr/bin/env bash
# Deletes what an interrupted test run may have left: broker queues under the test prefixes
# (twt-, twbench-) of prefixes nobody consumes any more — so tests running at the same moment
# keep theirs — then the exchanges of prefixes with no queue left, and
# PostgreSQL test databases (tw_test_*) nobody is connected to. Tests remove their own; this
# only sweeps up after crashes.
set -euo pipefail
AMQP_HOST=${AMQP_HOST:-127.0.0.1}
PG_HOST=${PG_HOST:-127.0.0.1}
api="http://$AMQP_HOST:15672/api"

# A test prefix is dead when none of its queues has a consumer; classic queues must also have
# been idle for 10 minutes (quorum queues do not report idleness).
queues=$(curl -sf -u guest:guest "$api/queues/%2F?columns=name,consumers,idle_since,messages_unacknowledged" || echo '[]')
printf '%s' "$queues" | python3 -c '
import json, sys, datetime
now = datetime.datetime.utcnow()
queues = [q for q in json.load(sys.stdin) if q["name"].startswith(("twt-", "twbench-"))]
prefix = lambda n: n.split(".")[0]
busy = {prefix(q["name"]) for q in queues if q.get("consumers", 0) or q.get("messages_unacknowledged", 0)}
for q in queues:
    if prefix(q["name"]) in busy:
        continue
    idle = q.get("idle_since")
    if idle:
        try:
            since = datetime.datetime.strptime(idle[:19], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
        if (now - since).total_seconds() < 600:
            continue
    print(q["name"])
' | while read -r name; do
  curl -sf -u guest:guest -X DELETE "$api/queues/%2F/$name" >/dev/null || true
done

# Exchanges of a test prefix (`twt-<tag>-<id>`) whose queues are all gone.
remaining=$(curl -sf -u guest:guest "$api/queues/%2F?columns=name" || echo '[]')
curl -sf -u guest:guest "$api/exchanges/%2F?columns=name" | REMAINING="$remaining" python3 -c '
import json, os, sys
prefix = lambda n: ".".join(n.split(".")[:1])
live = {prefix(q["name"]) for q in json.loads(os.environ["REMAINING"])}
for e in json.load(sys.stdin):
    n = e["name"]
    if n.startswith(("twt-", "twbench-")) and prefix(n) not in live:
        print(n)
' | while read -r name; do
  curl -sf -u guest:guest -X DELETE "$api/exchanges/%2F/$name" >/dev/null || true
done

if command -v psql >/dev/null 2>&1; then
  psql -h "$PG_HOST" -U postgres -d test -tAc \
    "select datname from pg_database d where datname like 'tw_test_%' and not exists (select 1 from pg_stat_activity a where a.datname = d.datname)" \
    | while read -r db; do
        [ -n "$db" ] && psql -h "$PG_HOST" -U postgres -d test -qc "drop database if exists \"$db\"" >/dev/null || true
      done
fi
