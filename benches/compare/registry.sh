#!/usr/bin/env bash
# Single-node registry writes and reads: idreg vs etcd 3.4, both on the same
# disk, driven by the same Rust gRPC client stack (`idreg-bench`) in one run,
# each both with mutual TLS (idreg's default; etcd with --cert-file,
# --key-file, --client-cert-auth) and in plaintext (idreg --insecure), so the
# share of throughput TLS and authorisation cost each is measured too.
#
#   benches/compare/registry.sh [POPULATION]      # default 1000000
#
# Needs a release build (cargo build --release) and etcd-server 3.4
# (apt-get install etcd-server). Writes the raw JSON lines to
# benches/results/registry.jsonl and prints a table with idreg/etcd ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
POP=${1:-1000000}
source benches/lib.sh
find_bins
command -v etcd >/dev/null || { echo "apt-get install etcd-server"; exit 1; }

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/idreg-bench.XXXXXX")
PIDS=()
trap cleanup EXIT
OUT=benches/results/registry.jsonl
: > "$OUT"

# One PKI for both systems: the node certificate serves idreg's and etcd's
# client ports, the admin certificate is the client of both.
"$BIN" pki init --out "$WORK/pki" --node 1=127.0.0.1,localhost >/dev/null
PKI=$WORK/pki
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/kek"; chmod 600 "$WORK/kek"

declare -A IDREG_PID ETCD_PID
"$BIN" serve --data-dir "$WORK/idreg-tls" --grpc-addr 127.0.0.1:52051 --peer-addr 127.0.0.1:52052 \
  --coap-addr off --pki-dir "$PKI" --kek-file "$WORK/kek" >"$WORK/idreg-tls.log" 2>&1 &
IDREG_PID[tls]=$!; PIDS+=($!)
"$BIN" serve --data-dir "$WORK/idreg-plain" --grpc-addr 127.0.0.1:52061 --peer-addr 127.0.0.1:52062 \
  --coap-addr off --insecure --kek-file "$WORK/kek" >"$WORK/idreg-plain.log" 2>&1 &
IDREG_PID[plain]=$!; PIDS+=($!)
etcd --name bench --data-dir "$WORK/etcd-tls" --quota-backend-bytes 8589934592 \
  --cert-file "$PKI/node-1.crt" --key-file "$PKI/node-1.key" \
  --client-cert-auth --trusted-ca-file "$PKI/client-ca.crt" \
  --listen-client-urls https://127.0.0.1:52379 --advertise-client-urls https://127.0.0.1:52379 \
  --listen-peer-urls http://127.0.0.1:52380 --initial-advertise-peer-urls http://127.0.0.1:52380 \
  --initial-cluster bench=http://127.0.0.1:52380 >"$WORK/etcd-tls.log" 2>&1 &
ETCD_PID[tls]=$!; PIDS+=($!)
etcd --name bench --data-dir "$WORK/etcd-plain" --quota-backend-bytes 8589934592 \
  --listen-client-urls http://127.0.0.1:52389 --advertise-client-urls http://127.0.0.1:52389 \
  --listen-peer-urls http://127.0.0.1:52390 --initial-advertise-peer-urls http://127.0.0.1:52390 \
  --initial-cluster bench=http://127.0.0.1:52390 >"$WORK/etcd-plain.log" 2>&1 &
ETCD_PID[plain]=$!; PIDS+=($!)

TLS_CLIENT=(--cacert "$PKI/peer-ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key")
declare -A IDREG_ARGS ETCD_ARGS
IDREG_ARGS[tls]="--endpoint 127.0.0.1:52051 ${TLS_CLIENT[*]}"
IDREG_ARGS[plain]="--endpoint 127.0.0.1:52061 --insecure"
ETCD_ARGS[tls]="--etcd 127.0.0.1:52379 --etcd-tls ${TLS_CLIENT[*]}"
ETCD_ARGS[plain]="--etcd 127.0.0.1:52389 --insecure"
for T in tls plain; do
  for _ in $(seq 100); do
    "$BIN" device get none ${IDREG_ARGS[$T]} 2>&1 | grep -q NotFound && break; sleep 0.2
  done
done
for _ in $(seq 100); do ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:52389 endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
for _ in $(seq 100); do
  ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:52379 --cacert "$PKI/peer-ca.crt" \
    --cert "$PKI/admin.crt" --key "$PKI/admin.key" endpoint health >/dev/null 2>&1 && break; sleep 0.2
done

# run TRANSPORT ARGS...: one `idreg-bench` row, tagged with its transport.
run() {
  local t=$1; shift
  "$BENCH" "$@" --output json | sed "s/^{/{\"transport\":\"$t\",/" | tee -a "$OUT"
}
I() { echo "${IDREG_ARGS[$1]} --server-pid ${IDREG_PID[$1]}"; }
E() { echo "${ETCD_ARGS[$1]}"; }

# Writes: one client (latency-bound, one fsync each) and 100 (group commit).
for C in 1 100; do
  N=$(( C == 1 ? 3000 : 100000 ))
  for T in tls plain; do
    run $T register $(I $T) --concurrency $C --count $N --max-seconds 120 --prefix c$C
    run $T etcd-put $(E $T) --server-pid ${ETCD_PID[$T]} --concurrency $C --count $N --max-seconds 120
  done
done

# Reads at POP keys: fill every store, then point reads spread over all of them.
for T in tls plain; do
  run $T register $(I $T) --concurrency 64 --count "$POP" --max-seconds 3000 --prefix pop
  run $T etcd-fill $(E $T) --count "$POP" --prefix pop
done
for C in 1 100; do
  N=$(( C == 1 ? 20000 : 300000 ))
  for T in tls plain; do
    run $T get $(I $T) --concurrency $C --count $N --prefix pop --population "$POP"
    run $T etcd-get $(E $T) --server-pid ${ETCD_PID[$T]} --concurrency $C --count $N --prefix pop --population "$POP"
  done
done
du -sk "$WORK/idreg-tls" "$WORK/etcd-tls" | tee "$WORK/du"
printf '{"name":"disk","idreg_kb":%s,"etcd_kb":%s}\n' \
  "$(awk 'NR==1{print $1}' "$WORK/du")" "$(awk 'NR==2{print $1}' "$WORK/du")" >> "$OUT"

python3 benches/compare/tls_table.py "$OUT"
