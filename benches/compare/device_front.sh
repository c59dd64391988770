#!/usr/bin/env bash
# Device front vs libcoap's coap-server-openssl, driven by the same Rust client
# (`idreg-bench handshake|coap`, on idreg-dtls's client) in the same run, on
# loopback. idreg serves PSK and certificate devices on one port.
#
#   benches/compare/device_front.sh [SECONDS] [BIG_SESSIONS]   # default 10 100000
#
# Needs a release build (cargo build --release) and libcoap3-bin. Writes the
# raw JSON lines to benches/results/device_front.jsonl and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
BIG=${2:-100000}
source benches/lib.sh
find_bins
command -v coap-server-openssl >/dev/null || { echo "apt-get install libcoap3-bin"; exit 1; }
# One UDP socket per client session.
ulimit -n 400000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
PIDS=()
trap cleanup EXIT
PSK='bench-secret-0123456789'
OUT=benches/results/device_front.jsonl
: > "$OUT"

# idreg, single node, with one PSK device and one certificate device.
"$BIN" serve --data-dir "$WORK/idreg" --grpc-addr 127.0.0.1:52051 --peer-addr 127.0.0.1:52052 \
  --coap-addr 127.0.0.1:56841 --coap-max-peers 200000 --coap-session-file off >"$WORK/idreg.log" 2>&1 &
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

run() { "$BENCH" "$@" --output json | tee -a "$OUT"; }
CERT=(--mode cert --device-cert "$WORK/dev.crt" --device-key "$WORK/dev.key")
for C in 4 16; do
  run handshake --target 127.0.0.1:56841 --server-pid "$IDREG" --concurrency $C --duration "$SECS"
  run handshake --target 127.0.0.1:56861 --server-pid "$LPSK" --path / --concurrency $C --duration "$SECS"
  run handshake --target 127.0.0.1:56841 "${CERT[@]}" --server-pid "$IDREG" --concurrency $C --duration "$SECS"
  run handshake --target 127.0.0.1:56871 "${CERT[@]}" --server-pid "$LCERT" --path / --concurrency $C --duration "$SECS"
done
run coap --target 127.0.0.1:56841 --server-pid "$IDREG" --sessions 64 --concurrency 64 --duration "$SECS"
run coap --target 127.0.0.1:56861 --server-pid "$LPSK" --path / --sessions 64 --concurrency 64 --duration "$SECS"
# Memory per idle session: 10,000 sessions held open, a few of them busy.
run coap --target 127.0.0.1:56841 --server-pid "$IDREG" --sessions 10000 --concurrency 4 --duration 2
run coap --target 127.0.0.1:56861 --server-pid "$LPSK" --path / --sessions 10000 --concurrency 4 --duration 2
# idreg alone at BIG sessions (libcoap's session lookup walks a list: opening
# 100,000 sessions would take hours). A fresh node, so the 10,000 above do
# not count. One client process holds at most PER sessions (one socket each,
# under the open-file limit); the processes open theirs, wait for each other,
# then GET together, and their rows are merged into one.
kill "$IDREG"; wait "$IDREG" 2>/dev/null || true
"$BIN" serve --data-dir "$WORK/idreg" --grpc-addr 127.0.0.1:52051 --peer-addr 127.0.0.1:52052 \
  --coap-addr 127.0.0.1:56841 --coap-max-peers 200000 --coap-session-file off >"$WORK/idreg2.log" 2>&1 &
IDREG=$!; PIDS+=("$IDREG")
for _ in $(seq 100); do "$BIN" device get none --endpoint 127.0.0.1:52051 2>&1 | grep -q NotFound && break; sleep 0.2; done
PER=$(( $(ulimit -n) - 1000 )); [ "$PER" -gt 15000 ] && PER=15000
NPROC=$(( (BIG + PER - 1) / PER ))
CLIENTS=()
for i in $(seq 0 $((NPROC - 1))); do
  N=$(( BIG - i * PER )); [ "$N" -gt "$PER" ] && N=$PER
  "$BENCH" coap --target 127.0.0.1:56841 --server-pid "$IDREG" --sessions "$N" --concurrency 1 \
    --duration "$SECS" --source-block "$i" --start-file "$WORK/go" --output json \
    >"$WORK/big-$i.json" 2>"$WORK/big-$i.err" &
  CLIENTS+=($!)
done
for _ in $(seq 3600); do
  [ "$(cat "$WORK"/big-*.err 2>/dev/null | grep -c '^ready')" -ge "$NPROC" ] && break
  for p in "${CLIENTS[@]}"; do kill -0 "$p" 2>/dev/null || { cat "$WORK"/big-*.err; exit 1; }; done
  sleep 1
done
touch "$WORK/go"
for p in "${CLIENTS[@]}"; do wait "$p"; done
python3 - "$BIG" "$WORK"/big-*.json >>"$OUT" <<'PY'
import json, sys, statistics
big = int(sys.argv[1]); rows = [json.load(open(f)) for f in sys.argv[2:]]
ops = sum(r['operations'] for r in rows)
# Every client samples the server's CPU over the same window: the mean of
# their totals is the server's CPU for all of them.
cpu = statistics.mean(r['server_cpu_us_per_op'] * r['operations'] for r in rows) / ops
before = min(r['server_rss_kb_before'] for r in rows)
loaded = max(r['server_rss_kb_after'] for r in rows)
m = dict(rows[0], sessions=big, concurrency=sum(r['concurrency'] for r in rows), operations=ops,
         errors=sum(r['errors'] for r in rows), ops_per_sec=sum(r['ops_per_sec'] for r in rows),
         p50_us=int(statistics.median(r['p50_us'] for r in rows)), p90_us=max(r['p90_us'] for r in rows),
         p99_us=max(r['p99_us'] for r in rows), max_us=max(r['max_us'] for r in rows),
         server_cpu_us_per_op=cpu, server_rss_kb_before=before, server_rss_kb_after=loaded,
         server_bytes_per_session=(loaded - before) * 1024 / big, clients=len(rows))
print(json.dumps(m))
PY
tail -1 "$OUT"

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'bench':10} {'mode':5} {'server':8} {'conc':>4} {'sess':>6} {'ops/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'cpu µs/op':>10} {'B/session':>10} {'errors':>6}")
for r in rows:
    server = 'idreg' if r['target'].endswith('56841') else 'libcoap'
    cpu = r.get('server_cpu_us_per_op'); bps = r.get('server_bytes_per_session')
    print(f"{r['name']:10} {r['mode']:5} {server:8} {r['concurrency']:>4} {r['sessions']:>6} {r['ops_per_sec']:>9.0f} {r['p50_us']:>8} {r['p99_us']:>8} "
          f"{(f'{cpu:.1f}' if cpu is not None else '-'):>10} {(f'{bps:.0f}' if bps is not None and r['sessions'] >= 1000 else '-'):>10} {r['errors']:>6}")
PY
