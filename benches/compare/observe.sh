#!/usr/bin/env bash
# Revocation -> /rl notification (RFC 7641) at many observers spread over a
# 3-node cluster's device fronts (`idreg-bench observe`): per observer, the
# time from just before RevokeDevice to the notification counting the new
# revocation; p50/p99/max over all rounds, and the three nodes' CPU per
# notification delivered (the revocation's own raft write included).
#
# No other server notifies CoAP observers of a registry change, so the
# reference in the same run is node 1's CPU per CoAP GET round trip over an
# established session (`idreg-bench coap`): a notification is one encrypted
# datagram out (now and then confirmable, with an ACK back), a GET one in
# and one out.
#
#   benches/compare/observe.sh [OBSERVERS] [ROUNDS]   # default 10000 5
#
# Needs a release build (cargo build --release). Writes JSON lines to
# benches/results/observe.jsonl and prints them.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
OBSERVERS=${1:-10000}
ROUNDS=${2:-5}
find_bins
ulimit -n 65536 2>/dev/null || true

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/idreg-observe-bench.XXXXXX")
PIDS=()
trap cleanup EXIT
OUT=benches/results/observe.jsonl
: > "$OUT"
make_kek
make_pki 3

start_cluster 3 5315 5316 5684
E=(--endpoint 127.0.0.1:53151)
PIDLIST=$(IFS=,; echo "${NODE_PIDS[*]}")

"$BIN" device add bench-device --psk-identity bench-device --psk bench-secret-0123456789 "${E[@]}" >/dev/null
sleep 1
"$BENCH" coap "${E[@]}" --target 127.0.0.1:56841 --sessions 64 --concurrency 64 --duration 10 \
  --server-pid "${NODE_PIDS[0]}" -o json | tee -a "$OUT"
"$BENCH" observe "${E[@]}" --fronts 127.0.0.1:56841,127.0.0.2:56842,127.0.0.3:56843 \
  --observers "$OBSERVERS" --rounds "$ROUNDS" --server-pid "$PIDLIST" -o json | tee -a "$OUT"
