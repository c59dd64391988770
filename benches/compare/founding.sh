#!/usr/bin/env bash
# Founding a 3-node cluster, ROUNDS times (default 6): how long until a
# leader is known, in which term (1: one election; more: the founders'
# votes split and they stood again), and one client's 2 000 writes right
# after, whose max shows a write caught in a second election. One line per
# round, then a summary.
#
#   benches/compare/founding.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
find_bins
ROUNDS=${1:-6}
OUT=/dev/null
again=0; stalls=0
for r in $(seq "$ROUNDS"); do
  WORK=$(mktemp -d); PIDS=()
  make_pki 3; make_kek
  t0=$(date +%s%N)
  start_cluster 3 5415 5416 5784
  L=$(wait_leader 127.0.0.1:54151)
  t1=$(date +%s%N)
  run=$("$BENCH" register --endpoint "127.0.0.$L:5415$L" --concurrency 1 --count 2000 \
    --max-seconds 30 --prefix f --output json)
  term=$(status_field "127.0.0.$L:5415$L" term)
  read -r p50 max < <(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["p50_us"], r["max_us"])' "$run")
  echo "round $r: leader $L known after $(( (t1 - t0) / 1000000 )) ms, term $term; writes p50 ${p50} us, max ${max} us"
  [ "$term" -gt 1 ] && again=$((again + 1))
  [ "$max" -gt 100000 ] && stalls=$((stalls + 1))
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
done
echo "$ROUNDS foundings: $again elected more than once; $stalls had a write over 100 ms"
