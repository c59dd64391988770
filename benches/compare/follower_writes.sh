#!/usr/bin/env bash
# Replicated writes through the leader and through a follower of one
# 3-node cluster (fsync on, TLS between nodes), 100 clients each, ROUNDS
# rounds alternating: what forwarding a batch to the leader costs.
#
#   benches/compare/follower_writes.sh [ROUNDS] [COUNT]   # default 2 20000
#
# Needs a release build. Prints one row per run: round, via, writes/s, p50
# and p99 (µs), CPU per write over the three nodes (µs).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-2}
COUNT=${2:-20000}
source benches/lib.sh
find_bins
WORK=$(mktemp -d); PIDS=(); OUT=/dev/null
trap cleanup EXIT
three_nodes
echo "round via writes/s p50_us p99_us cpu_us_per_write"
for round in $(seq "$ROUNDS"); do
  for who in $L $F; do
    "$BENCH" register --endpoint "127.0.0.$who:5415$who" --server-pid "$(IFS=,; echo "${NODE_PIDS[*]}")" \
      --concurrency 100 --count "$COUNT" --max-seconds 15 --prefix "r$round-n$who" --output json \
      | python3 -c "import json,sys; r=json.load(sys.stdin); print($round, 'leader' if $who==$L else 'follower', round(r['ops_per_sec']), r['p50_us'], r['p99_us'], round(r.get('server_cpu_us_per_op') or 0, 1))"
  done
done
