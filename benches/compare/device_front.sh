#!/usr/bin/env bash
# Device front vs libcoap's coap-server-openssl, driven by the same Rust client
# (`idreg bench handshake|coap`) in the same run, on loopback.
#
#   benches/compare/device_front.sh [SECONDS]
#
# Needs a release build (cargo build --release) and libcoap3-bin. Writes the
# raw JSON lines to benches/results/device_front.jsonl and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
BIN=${IDREG_BIN:-${CARGO_TARGET_DIR:-target}/release/idreg}
[ -x "$BIN" ] || { echo "build first: cargo build --release (looked for $BIN)"; exit 1; }
command -v coap-server-openssl >/dev/null || { echo "apt-get install libcoap3-bin"; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
PSK='bench-secret-0123456789'
OUT=benches/results/device_front.jsonl
: > "$OUT"

# idreg, single node, with one PSK device and one certificate device.
"$BIN" serve --data-dir "$WORK/idreg" --grpc-addr 127.0.0.1:52051 --peer-addr 127.0.0.1:52052 \
  --coap-addr 127.0.0.1:56841 --coap-cert-addr 127.0.0.1:56851 \
  --coap-max-peers 20000 >"$WORK/idreg.log" 2>&1 &
IDREG=$!; PIDS+=("$IDREG")
# The CLI acts as the admin of the development PKI the node makes.
export IDREG_CACERT=$WORK/idreg/pki/peer-ca.crt IDREG_CERT=$WORK/idreg/pki/admin.crt IDREG_KEY=$WORK/idreg/pki/admin.key
for _ in $(seq 100); do "$BIN" device get none --endpoint 127.0.0.1:52051 2>&1 | grep -q NotFound && break; sleep 0.2; done
E=(--endpoint 127.0.0.1:52051)
"$BIN" device add bench-device --psk-identity bench-device --psk "$PSK" "${E[@]}" >/dev/null
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$WORK/dev.key"
openssl req -new -x509 -key "$WORK/dev.key" -subj /CN=bench-cert -days 2 -out "$WORK/dev.crt" 2>/dev/null
"$BIN" device add bench-cert --certificate "$WORK/dev.crt" "${E[@]}" >/dev/null

# libcoap: PSK on 56861 (DTLS = port+1), certificate on 56871.
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$WORK/srv.key"
openssl req -new -x509 -key "$WORK/srv.key" -subj /CN=localhost -days 2 -out "$WORK/srv.crt" 2>/dev/null
coap-server-openssl -A 127.0.0.1 -p 56860 -k "$PSK" >"$WORK/libcoap-psk.log" 2>&1 &
LPSK=$!; PIDS+=("$LPSK")
coap-server-openssl -A 127.0.0.1 -p 56870 -c "$WORK/srv.crt" -j "$WORK/srv.key" -R "$WORK/dev.crt" >"$WORK/libcoap-cert.log" 2>&1 &
LCERT=$!; PIDS+=("$LCERT")
sleep 1

run() { "$BIN" bench "$@" --output json | tee -a "$OUT"; }
CERT=(--mode cert --device-cert "$WORK/dev.crt" --device-key "$WORK/dev.key")
for C in 4 16; do
  run handshake --target 127.0.0.1:56841 --server-pid "$IDREG" --concurrency $C --duration "$SECS"
  run handshake --target 127.0.0.1:56861 --server-pid "$LPSK" --path / --concurrency $C --duration "$SECS"
  run handshake --target 127.0.0.1:56851 "${CERT[@]}" --server-pid "$IDREG" --concurrency $C --duration "$SECS"
  run handshake --target 127.0.0.1:56871 "${CERT[@]}" --server-pid "$LCERT" --path / --concurrency $C --duration "$SECS"
done
run coap --target 127.0.0.1:56841 --server-pid "$IDREG" --sessions 64 --concurrency 64 --duration "$SECS"
run coap --target 127.0.0.1:56861 --server-pid "$LPSK" --path / --sessions 64 --concurrency 64 --duration "$SECS"
# Memory per idle session: 10,000 sessions held open, a few of them busy.
run coap --target 127.0.0.1:56841 --server-pid "$IDREG" --sessions 10000 --concurrency 4 --duration 2
run coap --target 127.0.0.1:56861 --server-pid "$LPSK" --path / --sessions 10000 --concurrency 4 --duration 2

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'bench':10} {'mode':5} {'server':8} {'conc':>4} {'sess':>6} {'ops/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'cpu µs/op':>10} {'B/session':>10} {'errors':>6}")
for r in rows:
    server = 'idreg' if r['target'].endswith(('56841', '56851')) else 'libcoap'
    cpu = r.get('server_cpu_us_per_op'); bps = r.get('server_bytes_per_session')
    print(f"{r['name']:10} {r['mode']:5} {server:8} {r['concurrency']:>4} {r['sessions']:>6} {r['ops_per_sec']:>9.0f} {r['p50_us']:>8} {r['p99_us']:>8} "
          f"{(f'{cpu:.1f}' if cpu is not None else '-'):>10} {(f'{bps:.0f}' if bps is not None and r['sessions'] >= 1000 else '-'):>10} {r['errors']:>6}")
PY
