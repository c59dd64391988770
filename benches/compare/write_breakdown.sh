#!/usr/bin/env bash
# Where one client's replicated write spends its time, read from the nodes'
# own /metrics around a run: 3 nodes (fsync, TLS between them), one client
# writing through the leader. Prints the client's rate, p50, p99 and CPU per
# write over the three nodes, and per node: WAL fsyncs and their mean, raft
# batches (proposal to apply) and their mean, CreateDevice calls and their
# mean. With PERF=1 (PERF=follower), also records a CPU profile of the leader (a follower) into
# /tmp/single-perf.data (perf report --no-children --sort dso,symbol).
# CLIENTS=N runs N concurrent clients instead of one (group commit then
# carries many writes per raft entry).
#
#   benches/compare/write_breakdown.sh
#   CLIENTS=100 PERF=1 benches/compare/write_breakdown.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
find_bins
command -v curl >/dev/null || { echo "apt-get install curl"; exit 1; }
WORK=$(mktemp -d); PIDS=(); OUT=/dev/null
trap cleanup EXIT
three_nodes
# /metrics, and each node's CPU ticks (utime + stime from /proc) as a last line.
scrape() {
  for i in 1 2 3; do
    curl -s "http://127.0.0.$i:9464/metrics" > "$WORK/m$i-$1"
    awk '{print "cpu_ticks", $14 + $15}' "/proc/${NODE_PIDS[$((i-1))]}/stat" >> "$WORK/m$i-$1"
    awk '/^VmHWM/ {print "peak_rss_kib", $2}' "/proc/${NODE_PIDS[$((i-1))]}/status" >> "$WORK/m$i-$1"
  done
}
"$BENCH" register --endpoint "127.0.0.$L:5415$L" --concurrency 1 --count 300 --max-seconds 10 --prefix warm --output json >/dev/null
scrape a
C=${CLIENTS:-1}
# The client's own CPU too: on a shared machine it bounds what the servers can reach.
/usr/bin/time -f "%U %S" -o "$WORK/client-cpu" \
  "$BENCH" register --endpoint "127.0.0.$L:5415$L" --server-pid "$(IFS=,; echo "${NODE_PIDS[*]}")" --concurrency "$C" --count $((3000 * (C < 100 ? C : 100))) --max-seconds 20 --prefix one --output json > "$WORK/run.json"
scrape b
if [ -n "${PERF:-}" ]; then
  LP=${NODE_PIDS[$((L-1))]}
  [ "$PERF" = follower ] && LP=${NODE_PIDS[$((F-1))]}
  "$BENCH" register --endpoint "127.0.0.$L:5415$L" --concurrency "$C" --count $((6000 * C)) --max-seconds 12 --prefix perf --output json > /dev/null &
  LOAD=$!
  perf record -F 999 ${PERF_CALL_GRAPH:--g} -p "$LP" -o /tmp/single-perf.data -- sleep 8 2>/dev/null
  wait "$LOAD"
fi
python3 - "$WORK" "$L" <<'PY'
import json, os, re, sys
work, L = sys.argv[1], int(sys.argv[2])
run = json.load(open(f"{work}/run.json"))
client_cpu = sum(map(float, open(f"{work}/client-cpu").read().split()[-2:]))
print("client: ops/s %.0f p50 %d us p99 %d us cpu/write (3 nodes) %.1f us; the client's own cpu/write %.1f us" % (run["ops_per_sec"], run["p50_us"], run["p99_us"], run["server_cpu_us_per_op"] or 0, 1e6 * client_cpu / max(run["operations"], 1)))
def val(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")) or line.startswith(name + " "):
            if labels and labels not in line: continue
            return float(line.split()[-1])
    return 0.0
for i in (1, 2, 3):
    a, b = open(f"{work}/m{i}-a").read(), open(f"{work}/m{i}-b").read()
    d = lambda n, l="": val(b, n, l) - val(a, n, l)
    fs_n, fs_s = d("idreg_store_wal_fsync_seconds_count"), d("idreg_store_wal_fsync_seconds_sum")
    bt_n, bt_s = d("idreg_raft_batch_seconds_count"), d("idreg_raft_batch_seconds_sum")
    g_n = d("idreg_grpc_request_seconds_count", 'method="CreateDevice"'); g_s = d("idreg_grpc_request_seconds_sum", 'method="CreateDevice"')
    role = "leader" if i == L else "follower"
    writes = run["ops"] if "ops" in run else run["ops_per_sec"] * run.get("seconds", 1)
    cpu_us = d("cpu_ticks") * 1e6 / os.sysconf("SC_CLK_TCK") / max(writes, 1)
    print(f"node {i} ({role}): cpu/write {cpu_us:.0f} us; peak RSS {val(b, 'peak_rss_kib') / 1024:.0f} MiB; fsyncs {fs_n:.0f} mean {1e6*fs_s/max(fs_n,1):.0f} us; batches {bt_n:.0f} mean {1e6*bt_s/max(bt_n,1):.0f} us; CreateDevice {g_n:.0f} mean {1e6*g_s/max(g_n,1):.0f} us")
PY
