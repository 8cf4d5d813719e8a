#!/usr/bin/env bash
# Installs the test tools the suite drives from the outside, idempotently, and prints the
# variables that tell the tests where they are (scripts/test.sh evals them):
#   TICKWATCH_SCHEMATHESIS  Schemathesis (pinned), in a venv under the user's cache
#   TICKWATCH_PLAYWRIGHT    playwright-core (pinned, from npm) under the user's cache: the
#                           web dashboard's browser test drives Chromium with it
#   TICKWATCH_CHROMIUM      Debian's Chromium (packages chromium and chromium-driver)
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
PLAYWRIGHT_VERSION=1.65.2
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

if ! command -v chromium >/dev/null 2>&1; then
  echo "tools: installing Debian's chromium and chromium-driver" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  $sudo apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >&2
fi
# A Korean font, so the dashboard's screenshots read as users see them (Hangul, not boxes).
if command -v fc-list >/dev/null 2>&1 && ! fc-list | grep -qi nanum; then
  echo "tools: installing Debian's fonts-nanum (Korean) for the browser test's screenshots" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq fonts-nanum >&2 || \
    echo "tools: no Korean font; the screenshots show Hangul as boxes" >&2
fi
echo "export TICKWATCH_CHROMIUM=$(command -v chromium)"

playwright=$cache/playwright-core-$PLAYWRIGHT_VERSION
if [ ! -f "$playwright/node_modules/playwright-core/package.json" ]; then
  echo "tools: installing playwright-core $PLAYWRIGHT_VERSION into $playwright" >&2
  rm -rf "$playwright"
  mkdir -p "$playwright"
  # Only the driver: the browser is Debian's, so nothing is downloaded at install time.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund \
    --prefix "$playwright" "playwright-core@$PLAYWRIGHT_VERSION" >&2
fi
echo "export TICKWATCH_PLAYWRIGHT=$playwright/node_modules/playwright-core"
