#!/usr/bin/env bash
# One command for the bench (bench/README.md):
#
#   bench/run.sh [fanout|broadcast|reconnect|ingest|idle|cluster|all|smoke] [flags…]
#
# Builds the release binaries, installs the ws@8 peer (npm ci) if needed,
# then `villagehub-bench run SCENARIO FLAGS…`, which seeds a scratch data
# dir, starts villagehub (and the peer, side by side; for `cluster`, a
# redis-server and 3 nodes), runs the generator, stops everything and
# appends the results to bench/RESULTS.md. Honours CARGO_TARGET_DIR.
# Flags are those of `villagehub-bench run --help`, e.g.
#   bench/run.sh fanout --groups 20 --members 250 --rate 5 --duration 20
#   bench/run.sh idle --target ours
#   bench/run.sh cluster --groups 20 --members 250 --rate 20
#   bench/run.sh smoke --cluster
set -euo pipefail
cd "$(dirname "$0")/.."

scenario="${1:-fanout}"
[ $# -gt 0 ] && shift

cargo build --release -p villagehub -p villagehub-bench
if [ ! -d bench/peers/node_modules/ws ]; then
  (cd bench/peers && npm ci --no-audit --no-fund)
fi

# Workers hold up to 9,000 connections each and the server up to 19,000:
# ask for the machine's limit (20,000 here) in case the shell has less.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

release="${CARGO_TARGET_DIR:-target}/release"
bench="$release/villagehub-bench"
server=(--server-bin "$release/villagehub")
for a in "$@"; do
  # The caller's own server (binary or running one) wins.
  case "$a" in --server-bin | --server-bin=* | --server-url | --server-url=*) server=() ;; esac
done
args="$(printf ' %q' "$@")"
case "$scenario" in
  smoke)
    exec "$bench" smoke "${server[@]}" "$@"
    ;;
  all)
    for s in fanout broadcast reconnect ingest idle cluster; do
      BENCH_COMMAND="bench/run.sh $s$args" "$bench" run "$s" "${server[@]}" "$@"
    done
    ;;
  *)
    BENCH_COMMAND="bench/run.sh $scenario$args" exec "$bench" run "$scenario" "${server[@]}" "$@"
    ;;
esac
