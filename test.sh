#!/usr/bin/env bash
# Runs every villagehub test: the Rust workspace (unit, protocol examples,
# integration tests against the real binary and a real redis-server, the
# fuzz corpus, the bench's smoke run), then the web client in real headless
# Chromium. Installs what the tests
# need when it is missing (Debian packages via apt-get, npm packages via
# npm ci), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")"

apt_missing=()
[ -x /usr/bin/chromium ] || apt_missing+=(chromium)
fc-list :lang=zh 2>/dev/null | grep -q . || apt_missing+=(fonts-noto-cjk)
command -v redis-server >/dev/null || apt_missing+=(redis-server)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "== installing ${apt_missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

echo "== cargo test (workspace)"
cargo test --workspace --quiet 2>&1

echo "== web client in headless Chromium"
VILLAGEHUB_BIN="$PWD/target/debug/villagehub" client-web/test.sh
