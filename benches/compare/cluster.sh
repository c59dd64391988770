#!/usr/bin/env bash
# Replicated writes on 3 nodes: idreg vs a 3-member etcd 3.4 cluster, same
# disk, same client stack (`idreg bench`), same concurrency, in one run; then
# idreg's revocation propagation and a new node's catch-up from a snapshot.
#
#   benches/compare/cluster.sh [POPULATION]     # default 1000000 (catch-up size)
#
# Needs a release build (cargo build --release) and etcd-server 3.4. Writes
# raw JSON lines to benches/results/cluster.jsonl and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
POP=${1:-1000000}
BIN=${IDREG_BIN:-${CARGO_TARGET_DIR:-target}/release/idreg}
[ -x "$BIN" ] || { echo "build first: cargo build --release (looked for $BIN)"; exit 1; }
command -v etcd >/dev/null || { echo "apt-get install etcd-server"; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n 20000

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/idreg-cluster-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
OUT=benches/results/cluster.jsonl
: > "$OUT"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/kek"

IC=1=127.0.0.1:52151,2=127.0.0.2:52152,3=127.0.0.3:52153
IDREG_PIDS=()
for i in 1 2 3; do
  "$BIN" serve --node-id $i --data-dir "$WORK/idreg$i" --grpc-addr 127.0.0.$i:5215$i \
    --coap-addr 127.0.0.$i:5684$i --coap-cert-addr off --coap-max-peers 20000 \
    --kek-file "$WORK/kek" --initial-cluster $IC >"$WORK/idreg$i.log" 2>&1 &
  IDREG_PIDS+=($!); PIDS+=($!)
done
EC=e1=http://127.0.0.1:52381,e2=http://127.0.0.2:52382,e3=http://127.0.0.3:52383
ETCD_PIDS=()
for i in 1 2 3; do
  etcd --name e$i --data-dir "$WORK/etcd$i" --quota-backend-bytes 8589934592 \
    --listen-client-urls http://127.0.0.$i:5237$i --advertise-client-urls http://127.0.0.$i:5237$i \
    --listen-peer-urls http://127.0.0.$i:5238$i --initial-advertise-peer-urls http://127.0.0.$i:5238$i \
    --initial-cluster $EC --initial-cluster-state new >"$WORK/etcd$i.log" 2>&1 &
  ETCD_PIDS+=($!); PIDS+=($!)
done
join() { local IFS=,; echo "$*"; }
IPIDS=$(join "${IDREG_PIDS[@]}"); EPIDS=$(join "${ETCD_PIDS[@]}")

# Both sides' clients talk to the leader.
LEADER=$(wait_leader 127.0.0.1:52151) || { tail "$WORK"/idreg*.log; exit 1; }
ELEADER=""
for _ in $(seq 150); do
  ELEADER=$(ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:52371,127.0.0.2:52372,127.0.0.3:52373 \
    endpoint status -w json 2>/dev/null | python3 -c '
import json,sys
for s in json.load(sys.stdin):
    if s["Status"]["leader"] == s["Status"]["header"]["member_id"]: print(s["Endpoint"])' 2>/dev/null || true)
  [ -n "$ELEADER" ] && break; sleep 0.2
done
[ -n "$ELEADER" ] || { echo "etcd elected no leader"; exit 1; }
echo "idreg leader $LEADER, etcd leader $ELEADER"

I=(--endpoint "$LEADER" --output json --server-pid "$IPIDS")
E=(--etcd "$ELEADER" --output json --server-pid "$EPIDS")
run() { "$BIN" bench "$@" | tee -a "$OUT"; }
for C in 1 100 1000; do
  N=$(( C == 1 ? 2000 : C == 100 ? 50000 : 100000 ))
  run register "${I[@]}" --concurrency $C --count $N --max-seconds 120 --prefix c$C
  run etcd-put "${E[@]}" --concurrency $C --count $N --max-seconds 120
done

# Revocation: acknowledged by the leader -> every node's front refuses.
run revoke --endpoint "$LEADER" --output json --count 200 \
  --fronts 127.0.0.1:56841,127.0.0.2:56842,127.0.0.3:56843

# A new node catching up from a snapshot at POP devices.
run register "${I[@]}" --concurrency 100 --count "$POP" --max-seconds 3000 --prefix pop
catch_up "$LEADER" 127.0.0.4:52154 "$POP"
# The new node answers from its own replica: every read must find its device.
run get --endpoint 127.0.0.4:52154 --output json --concurrency 1 --count 5000 --prefix pop --population "$POP"

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'conc':>5} {'idreg ops/s':>11} {'etcd ops/s':>10} {'ratio':>6} {'idreg p50/p99 µs':>18} {'etcd p50/p99 µs':>18} {'idreg cpu µs/op':>15} {'etcd cpu µs/op':>14}")
for r, p in zip(rows, rows[1:]):
    if r['name'] != 'register' or p['name'] != 'etcd-put': continue
    f = lambda x: '-' if x is None else f'{x:.0f}'
    print(f"{r['concurrency']:>5} {r['ops_per_sec']:>11.0f} {p['ops_per_sec']:>10.0f} {r['ops_per_sec']/p['ops_per_sec']:>6.2f} "
          f"{str(r['p50_us'])+'/'+str(r['p99_us']):>18} {str(p['p50_us'])+'/'+str(p['p99_us']):>18} {f(r['server_cpu_us_per_op']):>15} {f(p['server_cpu_us_per_op']):>14}")
for r in rows:
    if r['name'] == 'revoke':
        print(f"revocation propagated to all 3 fronts: p50 {r['p50_us']/1000:.1f} ms, p99 {r['p99_us']/1000:.1f} ms, max {r['max_us']/1000:.1f} ms over {r['operations']} rounds, {r['errors']} failed")
    if r['name'] == 'register' and r['operations'] > 100000:
        print(f"load: {r['operations']} devices at {r['ops_per_sec']:.0f}/s (3 nodes, 100 clients)")
    if r['name'] == 'catch-up':
        print(f"new node caught up with {r['devices']} devices in {r['seconds']:.1f} s, snapshots installed: {r['snapshots_installed']}")
    if r['name'] == 'get':
        print(f"GetDevice on the new node: {r['operations']} found, {r['errors']} missing, p50 {r['p50_us']} µs, p99 {r['p99_us']} µs")
PY
