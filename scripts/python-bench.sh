#!/usr/bin/env bash
# The Python baseline of `tickwatch bench drain`: installs aio-pika (pinned) into a venv
# under the user's cache, idempotently, and prints the venv's python, for
#   tickwatch bench drain --roles alerts --python "$(scripts/python-bench.sh)"
set -euo pipefail

AIO_PIKA_VERSION=10.2.1
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tickwatch
venv=$cache/venv-aio-pika-$AIO_PIKA_VERSION

if ! "$venv/bin/python" -c "import aio_pika" >/dev/null 2>&1; then
  echo "python-bench: installing aio-pika $AIO_PIKA_VERSION into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "aio-pika==$AIO_PIKA_VERSION" >&2
fi
echo "$venv/bin/python"
