#!/usr/bin/env bash
# Single-node registry writes and reads: idreg vs etcd 3.4, both on the same
# disk, driven by the same Rust gRPC client stack (`idreg bench`) in one run.
#
#   benches/compare/registry.sh [POPULATION]      # default 1000000
#
# Needs a release build (cargo build --release) and etcd-server 3.4
# (apt-get install etcd-server). Writes the raw JSON lines to
# benches/results/registry.jsonl and prints a table with idreg/etcd ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
POP=${1:-1000000}
BIN=${IDREG_BIN:-${CARGO_TARGET_DIR:-target}/release/idreg}
[ -x "$BIN" ] || { echo "build first: cargo build --release (looked for $BIN)"; exit 1; }
command -v etcd >/dev/null || { echo "apt-get install etcd-server"; exit 1; }

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/idreg-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
OUT=benches/results/registry.jsonl
: > "$OUT"

"$BIN" serve --data-dir "$WORK/idreg" --grpc-addr 127.0.0.1:52051 --coap-addr off \
  >"$WORK/idreg.log" 2>&1 &
IDREG=$!; PIDS+=("$IDREG")
etcd --name bench --data-dir "$WORK/etcd" --quota-backend-bytes 8589934592 \
  --listen-client-urls http://127.0.0.1:52379 --advertise-client-urls http://127.0.0.1:52379 \
  --listen-peer-urls http://127.0.0.1:52380 --initial-advertise-peer-urls http://127.0.0.1:52380 \
  --initial-cluster bench=http://127.0.0.1:52380 >"$WORK/etcd.log" 2>&1 &
ETCD=$!; PIDS+=("$ETCD")
for _ in $(seq 100); do "$BIN" device get none --endpoint 127.0.0.1:52051 2>&1 | grep -q NotFound && break; sleep 0.2; done
for _ in $(seq 100); do ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:52379 endpoint health >/dev/null 2>&1 && break; sleep 0.2; done

I=(--endpoint 127.0.0.1:52051 --output json)
E=(--etcd 127.0.0.1:52379)
run() { "$BIN" bench "$@" | tee -a "$OUT"; }

# Writes: one client (latency-bound, one fsync each) and 64 (group commit).
run register "${I[@]}" --server-pid "$IDREG" --concurrency 1 --count 3000 --max-seconds 60 --prefix c1
run etcd-put "${E[@]}" --output json --server-pid "$ETCD" --concurrency 1 --count 3000 --max-seconds 60
run register "${I[@]}" --server-pid "$IDREG" --concurrency 64 --count 100000 --max-seconds 120 --prefix c64
run etcd-put "${E[@]}" --output json --server-pid "$ETCD" --concurrency 64 --count 100000 --max-seconds 120

# Reads at POP keys: fill both stores, then point reads spread over all of them.
run register "${I[@]}" --server-pid "$IDREG" --concurrency 64 --count "$POP" --max-seconds 3000 --prefix pop
run etcd-fill "${E[@]}" --output json --count "$POP" --prefix pop
for C in 1 64; do
  N=$(( C == 1 ? 20000 : 300000 ))
  run get "${I[@]}" --server-pid "$IDREG" --concurrency $C --count $N --prefix pop --population "$POP"
  run etcd-get "${E[@]}" --output json --server-pid "$ETCD" --concurrency $C --count $N --prefix pop --population "$POP"
done
du -sk "$WORK/idreg" "$WORK/etcd" | tee "$WORK/du"
printf '{"name":"disk","idreg_kb":%s,"etcd_kb":%s}\n' \
  "$(awk 'NR==1{print $1}' "$WORK/du")" "$(awk 'NR==2{print $1}' "$WORK/du")" >> "$OUT"

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
pairs = {'register': 'etcd-put', 'get': 'etcd-get'}
def fmt(x, f='{:.1f}'): return '-' if x is None else f.format(x)
print(f"{'op':9} {'conc':>4} {'idreg ops/s':>11} {'etcd ops/s':>10} {'ratio':>6} {'idreg p50/p99 µs':>17} {'etcd p50/p99 µs':>16} {'idreg cpu µs/op':>15} {'etcd cpu µs/op':>14}")
# Each idreg row is followed by its etcd row (the order the script runs them).
for r, p in zip(rows, rows[1:]):
    if pairs.get(r['name']) != p['name']: continue
    print(f"{r['name']:9} {r['concurrency']:>4} {r['ops_per_sec']:>11.0f} {p['ops_per_sec']:>10.0f} {r['ops_per_sec']/p['ops_per_sec']:>6.2f} "
          f"{str(r['p50_us'])+'/'+str(r['p99_us']):>17} {str(p['p50_us'])+'/'+str(p['p99_us']):>16} "
          f"{fmt(r.get('server_cpu_us_per_op')):>15} {fmt(p.get('server_cpu_us_per_op')):>14}")
for r in rows:
    if r['name'] == 'register' and r['operations'] > 100000 or r['name'] == 'etcd-fill':
        print(f"fill {r['name']}: {r['operations']} in {r['seconds']:.0f} s = {r['ops_per_sec']:.0f}/s, errors {r['errors']}")
    if r['name'] == 'disk':
        print(f"disk after fill: idreg {r['idreg_kb']/1024:.0f} MiB, etcd {r['etcd_kb']/1024:.0f} MiB")
PY
