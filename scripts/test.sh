#!/usr/bin/env bash
# The test command: make sure the services are usable and the test tools installed
# (scripts/tools.sh), clear what an interrupted earlier run left behind, then run the whole
# test suite (unit, integration and end-to-end tests against
# the real RabbitMQ, PostgreSQL and SQLite).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
eval "$(scripts/tools.sh)"
# The market-data files some tests run on: TICKWATCH_DATA_DIR, else the workplace's
# shared data folder beside this checkout (or at /work/shared/data).
if [ -z "${TICKWATCH_DATA_DIR:-}" ]; then
  for dir in "$PWD/../shared/data" /work/shared/data; do
    if [ -f "$dir/SOURCES.md" ]; then TICKWATCH_DATA_DIR="$(cd "$dir" && pwd)"; break; fi
  done
fi
if [ -z "${TICKWATCH_DATA_DIR:-}" ] || [ ! -d "$TICKWATCH_DATA_DIR" ]; then
  echo "test: set TICKWATCH_DATA_DIR to the directory of the market-data files (the shared data folder)" >&2
  exit 2
fi
export TICKWATCH_DATA_DIR
scripts/clean-test-leftovers.sh || echo "test: could not clear leftovers of earlier runs (continuing)"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
