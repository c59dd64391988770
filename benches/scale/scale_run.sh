#!/usr/bin/env bash
# The scale run: bulk-load N devices (default 10,000,000; half PSK, half P-256
# keys) into a 3-node cluster on this machine, then report the import rate,
# RocksDB size on disk and resident memory per node, GetDevice and
# handshake-lookup latency at that size, and a new node's catch-up time from a
# snapshot. The import is bounded by MAX_SECONDS (default 3000): if it cannot
# finish, the report says how far it got.
#
#   benches/scale/scale_run.sh [N] [MAX_SECONDS]
#
# Needs a release build. Raw JSON lines go to benches/results/scale.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
N=${1:-10000000}
MAX=${2:-3000}
find_bins

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/idreg-scale.XXXXXX")
PIDS=()
trap cleanup EXIT
OUT=benches/results/scale.jsonl
: > "$OUT"
make_kek
make_pki 4
IC=1=127.0.0.1:52261,2=127.0.0.2:52262,3=127.0.0.3:52263
NODE_PIDS=()
for i in 1 2 3; do
  "$BIN" serve --node-id $i --data-dir "$WORK/n$i" --grpc-addr 127.0.0.$i:5225$i \
    --peer-addr 127.0.0.$i:5226$i --coap-addr off --pki-dir "$WORK/pki" \
    --kek-file "$WORK/kek" --initial-cluster $IC >"$WORK/n$i.log" 2>&1 &
  NODE_PIDS+=($!); PIDS+=($!)
done
LEADER_ID=$(wait_leader 127.0.0.1:52251)
LEADER=127.0.0.$LEADER_ID:5225$LEADER_ID
PIDLIST=$(IFS=,; echo "${NODE_PIDS[*]}")

echo "== importing $N devices into 3 nodes (leader $LEADER), at most $MAX s"
"$BENCH" import --endpoint "$LEADER" --count "$N" --prefix s --streams 4 \
  --max-seconds "$MAX" --server-pid "$PIDLIST" -o json | tee -a "$OUT"
CREATED=$(tail -1 "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["created"])')

# Let followers apply everything, then measure each node.
sleep 5
for i in 1 2 3; do
  python3 - "$i" "$(du -sk "$WORK/n$i/db" | cut -f1)" "$(awk '/VmRSS/{print $2}' /proc/${NODE_PIDS[$((i-1))]}/status)" >> "$OUT" <<'PY'
import json, sys
print(json.dumps({"name": "node", "node": int(sys.argv[1]), "rocksdb_kb": int(sys.argv[2]), "rss_kb": int(sys.argv[3])}))
PY
done
tail -3 "$OUT"

echo "== reads at $CREATED devices"
"$BENCH" get --endpoint 127.0.0.2:52252 -o json --concurrency 1 --count 20000 --prefix s --population "$CREATED" | tee -a "$OUT"
"$BENCH" lookup --data-dir "$WORK/n2" --kek-file "$WORK/kek" --prefix s --population "$CREATED" --count 200000 -o json | tee -a "$OUT"

echo "== a new node catches up"
catch_up "$LEADER" 127.0.0.4:52254 127.0.0.4:52264 "$CREATED"

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in rows:
    n = r["name"]
    if n == "import":
        print(f"import: {r['created']} of {r['devices']} devices in {r['seconds']:.0f} s = {r['devices_per_sec']:.0f}/s, "
              f"{r['failed']} failed, server CPU {r['server_cpu_us_per_device']:.0f} µs/device (3 nodes)")
    elif n == "node":
        print(f"node {r['node']}: RocksDB {r['rocksdb_kb']/1024:.0f} MiB, RSS {r['rss_kb']/1024:.0f} MiB")
    elif n in ("get", "lookup-psk", "lookup-key"):
        print(f"{n}: p50 {r['p50_us']} µs, p99 {r['p99_us']} µs, max {r['max_us']} µs, {r['errors']} errors")
    elif n == "catch-up":
        print(f"new node caught up with {r['devices']} devices in {r['seconds']:.1f} s (snapshots installed: {r['snapshots_installed']})")
PY
