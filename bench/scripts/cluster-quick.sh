#!/usr/bin/env bash
# Quick cluster figure (until the generator's scenario (e) exists): Redis +
# two nodes; the generator drives node B (senders and receivers), so every
# event goes B → Redis (Lua step + PUBLISH) → B's and A's appliers → B's
# subscribers. Prints the generator's summary plus the CPU that node A and
# Redis spent, per delivery.
#   bench/scripts/cluster-quick.sh [GROUPS MEMBERS RATE DURATION]
set -euo pipefail
cd "$(dirname "$0")/../.."
groups=${1:-20} members=${2:-250} rate=${3:-5} duration=${4:-20}
bin=target/release/villagehub bench=target/release/villagehub-bench
cargo build --release -q -p villagehub -p villagehub-bench
work=$(mktemp -d) port=$((20000 + RANDOM % 20000))
export VILLAGEHUB_TOKEN_KEY=cluster-bench-key-0123456789abcdef VILLAGEHUB_LOG=warn
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --dir "$work" --loglevel warning >/dev/null &
redis=$!
trap 'kill $redis $a $b 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.5
url="redis://127.0.0.1:$port/"
"$bin" bench-seed --data-dir "$work/a" --redis "$url" --groups "$groups" --members "$members" --tokens-out "$work/tokens.jsonl" >/dev/null
flags=(--redis "$url" --listen 127.0.0.1:0 --max-connections-per-ip 0 --ops-per-sec 1000000 --burst 1000000)
"$bin" --data-dir "$work/a" "${flags[@]}" > "$work/a.out" 2>"$work/a.err" & a=$!
"$bin" --data-dir "$work/b" "${flags[@]}" > "$work/b.out" 2>"$work/b.err" & b=$!
for _ in $(seq 100); do grep -q listening "$work/b.out" 2>/dev/null && grep -q listening "$work/a.out" && break; sleep 0.2; done
port_b=$(grep -o '127.0.0.1:[0-9]*' "$work/b.out" | cut -d: -f2)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
a0=$(ticks $a) r0=$(ticks $redis)
"$bench" run fanout --target ours --server-url "ws://127.0.0.1:$port_b/ws" --server-pid "$b" --tokens "$work/tokens.jsonl" \
  --groups "$groups" --members "$members" --rate "$rate" --duration "$duration" --no-append 2>&1 | tee "$work/bench.log" | grep -E '^fanout'
a1=$(ticks $a) r1=$(ticks $redis)
delivered=$(grep -o '"delivered":[0-9]*' "$work/bench.log" | head -1 | cut -d: -f2)
hz=$(getconf CLK_TCK)
awk -v a=$((a1 - a0)) -v r=$((r1 - r0)) -v d="$delivered" -v hz="$hz" 'BEGIN {
  printf "node A (applies only): %.2f µs per delivery; Redis: %.2f µs per delivery (%d deliveries)\n", a * 1e6 / hz / d, r * 1e6 / hz / d, d }'
