#!/bin/sh
# Runs the web client's tests in real headless Chromium against the real
# server binary. Installs what is missing: Debian's chromium and CJK fonts
# (apt), playwright-core (npm ci), the server binary (cargo build).
# Usage (from anywhere): client-web/test.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ] || ! fc-list :lang=zh 2>/dev/null | grep -q .; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
fi
[ -d "$here/node_modules/playwright-core" ] || npm ci --prefix "$here" --no-audit --no-fund
if [ -z "${VILLAGEHUB_BIN:-}" ]; then
  (cd "$repo" && cargo build -p villagehub)
fi
cd "$repo"
exec node --test client-web/tests/
