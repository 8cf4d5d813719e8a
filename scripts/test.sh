#!/usr/bin/env bash
# The test command: make sure the services are usable and the test tools installed
# (scripts/tools.sh), clear what an interrupted earlier run left behind, then run the whole
# test suite (unit, integration and end-to-end tests against
# the real RabbitMQ, PostgreSQL and SQLite).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
eval "$(scripts/tools.sh)"
scripts/clean-test-leftovers.sh || echo "test: could not clear leftovers of earlier runs (continuing)"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
