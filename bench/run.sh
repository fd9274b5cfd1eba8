#!/usr/bin/env bash
# One command for the bench (bench/README.md):
#
#   bench/run.sh [fanout|broadcast|reconnect|ingest|idle|cluster|all|smoke] [flags…]
#
# Builds the release binaries, installs the ws@8 peer (npm ci) if needed,
# then `villagehub-bench run SCENARIO FLAGS…`, which seeds a scratch data
# dir, starts villagehub (and the peer, side by side), runs the generator,
# stops everything and appends the results to bench/RESULTS.md.
# Flags are those of `villagehub-bench run --help`, e.g.
#   bench/run.sh fanout --groups 20 --members 250 --rate 5 --duration 20
#   bench/run.sh idle --target ours
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

bench=target/release/villagehub-bench
args="$(printf ' %q' "$@")"
case "$scenario" in
  smoke)
    exec "$bench" smoke --server-bin target/release/villagehub "$@"
    ;;
  all)
    for s in fanout broadcast reconnect ingest idle; do
      BENCH_COMMAND="bench/run.sh $s$args" "$bench" run "$s" "$@"
    done
    ;;
  *)
    BENCH_COMMAND="bench/run.sh $scenario$args" exec "$bench" run "$scenario" "$@"
    ;;
esac
