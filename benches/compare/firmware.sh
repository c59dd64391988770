#!/usr/bin/env bash
# Firmware delivery on a 3-node cluster (`idreg-bench firmware`): DEVICES
# DTLS sessions (PSK), spread over the three device fronts, each fetch a
# whole image in 1 KiB Block2 blocks at once; MB/s and the three nodes' CPU
# per block. The peer in the same run is libcoap's coap-server-openssl
# serving the same number of bytes (PUT to its /example_data) to the same
# number of sessions, fetched by the same client the same way.
# Then CreateDevice latency from 8 clients, idle and while a 10 MiB release
# uploads through raft.
#
#   benches/compare/firmware.sh [DEVICES] [IMAGE_KIB]   # default 1000 256
#
# Needs a release build (cargo build --release). Writes JSON lines to
# benches/results/firmware.jsonl and prints them.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
DEVICES=${1:-1000}
IMAGE_KIB=${2:-256}
find_bins
command -v coap-server-openssl >/dev/null || { echo "apt-get install libcoap3-bin"; exit 1; }
ulimit -n 65536 2>/dev/null || true

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/idreg-firmware-bench.XXXXXX")
PIDS=()
trap cleanup EXIT
OUT=benches/results/firmware.jsonl
: > "$OUT"
make_kek
make_pki 3

start_cluster 3 5325 5326 5694
PIDLIST=$(IFS=,; echo "${NODE_PIDS[*]}")

PEER_KEY=firmware-bench-peer-key
coap-server-openssl -A 127.0.0.1 -p 56960 -k "$PEER_KEY" >"$WORK/libcoap.log" 2>&1 &
LPID=$!; PIDS+=($LPID)
sleep 0.5
# The same number of bytes for the peer to serve.
head -c $((IMAGE_KIB * 1024)) /dev/urandom > "$WORK/peer.bin"
coap-client-openssl -m put -b 1024 -f "$WORK/peer.bin" -u bench -k "$PEER_KEY" \
  coaps://127.0.0.1:56961/example_data >/dev/null

"$BENCH" firmware --endpoint 127.0.0.1:53251 \
  --fronts 127.0.0.1:56941,127.0.0.2:56942,127.0.0.3:56943 \
  --devices "$DEVICES" --image-kib "$IMAGE_KIB" --server-pid "$PIDLIST" \
  --peer 127.0.0.1:56961 --peer-key "$PEER_KEY" --peer-pid "$LPID" -o json | tee -a "$OUT"
