#!/usr/bin/env bash
# The cost of metrics on the device front's hot paths: PSK handshakes and
# CoAP GETs against two single nodes in the same run, one with
# `--metrics-addr off` (no /metrics, no RocksDB statistics) and one with
# /metrics on and scraped every second (15x Prometheus's default rate).
# The runs alternate off/on, ROUNDS times, so drift on a noisy machine hits
# both alike. The server's CPU per operation is the figure (from /proc).
#
#   benches/compare/metrics_cost.sh [SECONDS] [ROUNDS]   # default 10 3
#
# Needs a release build. Writes benches/results/metrics_cost.jsonl (each
# row with "metrics": "off" | "on") and prints the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
ROUNDS=${2:-3}
source benches/lib.sh
find_bins
command -v curl >/dev/null || { echo "apt-get install curl"; exit 1; }

WORK=$(mktemp -d)
PIDS=()
trap cleanup EXIT
PSK='bench-secret-0123456789'
OUT=benches/results/metrics_cost.jsonl
: > "$OUT"

# node NAME GRPC COAP METRICS: a single node with one PSK device.
node() {
  "$BIN" serve --data-dir "$WORK/$1" --grpc-addr "127.0.0.1:$2" --peer-addr "127.0.0.1:$(( $2 + 1 ))" \
    --coap-addr "127.0.0.1:$3" --coap-cert-addr off --coap-session-file off \
    --metrics-addr "$4" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  export IDREG_CACERT=$WORK/$1/pki/peer-ca.crt IDREG_CERT=$WORK/$1/pki/admin.crt IDREG_KEY=$WORK/$1/pki/admin.key
  for _ in $(seq 100); do "$BIN" device get none --endpoint "127.0.0.1:$2" 2>&1 | grep -q NotFound && break; sleep 0.2; done
  "$BIN" device add bench-device --psk-identity bench-device --psk "$PSK" --endpoint "127.0.0.1:$2" >/dev/null
}
node off 53051 56941 off
OFF=${PIDS[-1]}
node on 53061 56951 127.0.0.1:59464
ON=${PIDS[-1]}
# The scraper: every second, the whole /metrics page.
( while sleep 1; do curl -s -o /dev/null http://127.0.0.1:59464/metrics || true; done ) &
PIDS+=($!)
curl -sf http://127.0.0.1:59464/metrics | grep -q '^idreg_store_block_cache_total' || { echo "metrics node has no RocksDB statistics"; exit 1; }

# run off|on BENCH-ARGS…: one bench run, tagged.
run() {
  local m=$1; shift
  "$BENCH" "$@" --output json | python3 -c "
import json, sys
r = json.loads(sys.stdin.read()); r['metrics'] = '$m'; print(json.dumps(r))" | tee -a "$OUT"
}
handshakes() { run "$1" handshake --target "127.0.0.1:$2" --server-pid "$3" --concurrency 4 --duration "$SECS"; }
gets() { run "$1" coap --target "127.0.0.1:$2" --server-pid "$3" --sessions 64 --concurrency 64 --duration "$SECS"; }
# Odd rounds run "off" first, even rounds "on" first.
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then A=(off 56941 "$OFF") B=(on 56951 "$ON"); else A=(on 56951 "$ON") B=(off 56941 "$OFF"); fi
  handshakes "${A[@]}"; handshakes "${B[@]}"
  gets "${A[@]}"; gets "${B[@]}"
done

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
print("| Path | Round | CPU/op off (µs) | CPU/op on (µs) | on / off |")
print("|---|---:|---:|---:|---:|")
for name in ("handshake", "coap"):
    off = [r for r in rows if r["name"] == name and r["metrics"] == "off"]
    on = [r for r in rows if r["name"] == name and r["metrics"] == "on"]
    for i, (a, b) in enumerate(zip(off, on), 1):
        ca, cb = a["server_cpu_us_per_op"], b["server_cpu_us_per_op"]
        print(f"| {name} | {i} | {ca:.2f} | {cb:.2f} | {cb / ca:.3f} |")
    # Means weighted by operations, over all rounds.
    def mean(rs):
        return sum(r["server_cpu_us_per_op"] * r["operations"] for r in rs) / sum(r["operations"] for r in rs)
    ca, cb = mean(off), mean(on)
    print(f"| {name} | all | {ca:.2f} | {cb:.2f} | {cb / ca:.3f} |")
PY
