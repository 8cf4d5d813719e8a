#!/usr/bin/env bash
# Installs the test tools the suite drives from the outside, idempotently, and prints the
# variables that tell the tests where they are (scripts/test.sh evals them):
#   TICKWATCH_SCHEMATHESIS  Schemathesis (pinned), in a venv under the user's cache
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tickwatch
venv=$cache/venv-schemathesis-$SCHEMATHESIS_VERSION

if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
  echo "tools: installing Schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
fi
echo "export TICKWATCH_SCHEMATHESIS=$venv/bin/schemathesis"
