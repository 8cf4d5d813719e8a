#!/usr/bin/env bash
# The fault suite: builds the release binary, then runs every role as its own process on a
# vhost and a PostgreSQL database of its own, injects one fault per run and prints what the
# users would have seen (lost, duplicated, out of order, dead-lettered, time to recover).
#   scripts/chaos.sh                               every fault
#   scripts/chaos.sh --faults kill-alerts,poison-flood
# `broker-restart` stops and starts the local RabbitMQ application (rabbitmqctl): run the
# whole suite where nothing else uses the broker. The table also goes to target/chaos.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
cargo build --release --bin tickwatch -p tickwatch -q
cargo build --release --bin chaos -p tickwatch-tests -q
exec target/release/chaos --binary target/release/tickwatch --out target/chaos.md "$@"
