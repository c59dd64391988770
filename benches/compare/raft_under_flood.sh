#!/usr/bin/env bash
# Raft under a handshake flood: 3 nodes (fsync, TLS between them), one
# client's replicated writes through the leader, first idle, then while
# the leader's device front takes full DTLS handshakes from CONC clients
# at once (PSK; the client shares the machine, as a flood's load would).
# Prints the writes' rate, p50, p99 and max both times, the handshakes'
# rate, and the raft term and leader before and after: an election during
# the flood would show as a new term.
#
#   benches/compare/raft_under_flood.sh            # CONC=64
#   CONC=512 benches/compare/raft_under_flood.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
find_bins
WORK=$(mktemp -d); PIDS=(); OUT=/dev/null
trap cleanup EXIT
three_nodes
EP=127.0.0.$L:5415$L
PSK=bench-secret-0123456789
"$BIN" device add bench-device --psk-identity bench-device --psk "$PSK" --endpoint "$EP" >/dev/null
"$BENCH" register --endpoint "$EP" --concurrency 1 --count 300 --max-seconds 10 --prefix warm --output json >/dev/null
term() { echo "term $(status_field "$EP" term) leader $(status_field "$EP" leader_id)"; }
writes() {
  "$BENCH" register --endpoint "$EP" --concurrency 1 --count 100000 --max-seconds 15 --prefix "$1" --output json \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print('$1 writes: %.0f/s, p50 %d us, p99 %d us, max %d us' % (d['ops_per_sec'], d['p50_us'], d['p99_us'], d['max_us']))"
}
echo "before: $(term)"
writes idle
"$BENCH" handshake --endpoint "$EP" --target "127.0.0.$L:5784$L" --mode psk --identity bench-device \
  --psk "$PSK" --concurrency "${CONC:-64}" --duration 20 --output json > "$WORK/hs.json" &
HS=$!
sleep 2
writes flood
wait "$HS"
python3 -c "import json; d=json.load(open('$WORK/hs.json')); print('handshakes: %.0f/s, %d failed, p99 %d us' % (d['ops_per_sec'], d['errors'], d['p99_us']))"
echo "after: $(term)"
