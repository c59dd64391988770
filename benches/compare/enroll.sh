#!/usr/bin/env bash
# EST-coaps enrollment (`idreg-bench enroll`): devices with manufacturer
# certificates handshake and POST a CSR to /.well-known/est/sen, on one node
# and on three (devices spread over every node's front). No open EST-coaps
# server is packaged to compare with (libest's is not in Debian), so the
# peer in the same run is the same node's certificate handshake + one GET
# (`idreg-bench handshake --mode cert`): the ratio is what enrollment adds
# to the handshake a device makes anyway.
#
#   benches/compare/enroll.sh [COUNT]     # default 3000 enrollments per setup
#
# Needs a release build (cargo build --release). Writes JSON lines to
# benches/results/enroll.jsonl and prints them.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
COUNT=${1:-3000}
find_bins
ulimit -n 65536 2>/dev/null || true

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/idreg-enroll-bench.XXXXXX")
PIDS=()
trap cleanup EXIT
OUT=benches/results/enroll.jsonl
: > "$OUT"
make_kek
make_pki 3
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$WORK/dev.key"
openssl req -new -x509 -key "$WORK/dev.key" -subj /CN=bench-cert -days 2 -out "$WORK/dev.crt" 2>/dev/null

# start N: nodes 1..N on 127.0.0.i (client 5315i, peer 5316i, CoAP 5684i).
start() {
  start_cluster "$1" 5315 5316 5684
  # The device CA is made by the leader just after founding.
  for _ in $(seq 100); do "$BIN" ca show --endpoint 127.0.0.1:53151 >/dev/null 2>&1 && break; sleep 0.2; done
}

stop() { for p in "${NODE_PIDS[@]}"; do kill "$p"; done; wait "${NODE_PIDS[@]}" 2>/dev/null || true; }

join() { local IFS=,; echo "$*"; }

for n in 1 3; do
  start "$n"
  E=(--endpoint 127.0.0.1:53151)
  "$BIN" device add bench-cert --certificate "$WORK/dev.crt" "${E[@]}" >/dev/null
  fronts=(); for i in $(seq "$n"); do fronts+=("127.0.0.$i:5684$i"); done
  "$BENCH" handshake "${E[@]}" --target 127.0.0.1:56841 --mode cert --device-cert "$WORK/dev.crt" \
    --device-key "$WORK/dev.key" --concurrency 16 --duration 10 --server-pid "${NODE_PIDS[0]}" -o json \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['nodes']=$n; print(json.dumps(d))" | tee -a "$OUT"
  "$BENCH" enroll "${E[@]}" --fronts "$(join "${fronts[@]}")" --count "$COUNT" --concurrency 16 \
    --server-pid "$(join "${NODE_PIDS[@]}")" -o json \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['nodes']=$n; print(json.dumps(d))" | tee -a "$OUT"
  stop
done
