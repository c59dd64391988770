#!/usr/bin/env bash
# Replicated writes on 3 nodes: idreg vs a 3-member etcd 3.4 cluster, same
# disk, same client stack (`idreg-bench`), same concurrency, in one run; each
# first in plaintext (idreg --insecure), then with TLS on the client and peer
# ports (idreg's default: mTLS with roles; etcd with --client-cert-auth and
# peer TLS), so the share of throughput TLS costs each is measured. One
# client's write is measured again in paired rounds (PAIRED_ROUNDS, default
# 7), the two systems taking turns, to see past run-to-run noise. Then, on
# the TLS cluster, idreg's revocation propagation and a new node's catch-up
# from a snapshot.
#
#   benches/compare/cluster.sh [POPULATION]     # default 1000000 (catch-up size)
#   AGE_WRITES=1000000 benches/compare/cluster.sh 50000
#
# AGE_WRITES=N measures one client's write in a steady state instead of on
# fresh data directories: before the paired rounds both clusters take N more
# writes at 100 clients, enough for every idreg node to reuse WAL files (a
# node in service does; a fresh one grows its first WAL file, and an fsync
# of a growing file also commits its new length). The run records whether
# each node did, and writes to benches/results/cluster-aged.jsonl.
#
# Needs a release build (cargo build --release) and etcd-server 3.4. Writes
# raw JSON lines to benches/results/cluster.jsonl and prints a table.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
POP=${1:-1000000}
find_bins
command -v etcd >/dev/null || { echo "apt-get install etcd-server"; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n 20000

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/idreg-cluster-bench.XXXXXX")
PIDS=()
trap cleanup EXIT
AGE=${AGE_WRITES:-0}
OUT=benches/results/cluster.jsonl
[ "$AGE" -gt 0 ] && OUT=benches/results/cluster-aged.jsonl
: > "$OUT"
make_kek
make_pki 4
PKI=$WORK/pki
join() { local IFS=,; echo "$*"; }

# start_clusters TRANSPORT: three idreg nodes (client 5215N, peer 5216N) and
# three etcd members (client 5237N, peer 5238N) on 127.0.0.1-3; sets LEADER,
# ELEADER, IPIDS, EPIDS and the client flags I and E.
start_clusters() {
  local t=$1 tls=""
  if [ "$t" = tls ]; then
    SECURITY=(--pki-dir "$PKI"); tls=tls
    unset IDREG_INSECURE_CLIENT
  else
    SECURITY=(--insecure); export IDREG_INSECURE_CLIENT=1
  fi
  NODE_FLAGS=(--coap-max-peers 20000)
  TAG=$t- start_cluster 3 5215 5216 5684 || { tail "$WORK"/$t-n3-*.log; exit 1; }
  IDREG_PIDS=("${NODE_PIDS[@]}")
  start_etcd3 "$t" 5237 5238 $tls
  IPIDS=$(join "${IDREG_PIDS[@]}"); EPIDS=$(join "${ETCD_PIDS[@]}")

  # Both sides' clients talk to the leader.
  local id
  id=$(wait_leader 127.0.0.1:52151) || { tail "$WORK"/$t-n3-*.log; exit 1; }
  LEADER=127.0.0.$id:5215$id
  ELEADER=$(etcd_leader 5237 $tls) || { tail "$WORK"/$t-etcd*.log; exit 1; }
  echo "$t: idreg leader $LEADER, etcd leader $ELEADER"
  I=(--endpoint "$LEADER" --server-pid "$IPIDS")
  E=(--etcd "$ELEADER" --server-pid "$EPIDS")
  [ "$t" = tls ] && E+=(--etcd-tls)
  return 0
}

stop_clusters() {
  for p in "${IDREG_PIDS[@]}" "${ETCD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${IDREG_PIDS[@]}" "${ETCD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

# run TRANSPORT ARGS...: one `idreg-bench` row, tagged with its transport
# (and with ROUND's number when set: a paired round, read apart).
run() {
  local t=$1 round=""; shift
  [ -n "${ROUND:-}" ] && round="\"paired_round\":$ROUND,"
  "$BENCH" "$@" --output json | sed "s/^{/{\"transport\":\"$t\",$round/" | tee -a "$OUT"
}

for T in plain tls; do
  start_clusters $T
  for C in 1 100 1000; do
    N=$(( C == 1 ? 2000 : C == 100 ? 50000 : 100000 ))
    run $T register "${I[@]}" --concurrency $C --count $N --max-seconds 120 --prefix c$C
    run $T etcd-put "${E[@]}" --concurrency $C --count $N --max-seconds 120
  done
  if [ "$AGE" -gt 0 ]; then
    run $T register "${I[@]}" --concurrency 100 --count "$AGE" --max-seconds 1200 --prefix age
    run $T etcd-put "${E[@]}" --concurrency 100 --count "$AGE" --max-seconds 1200
    # RocksDB logs each WAL file it takes from its recycle list.
    reused=()
    for i in 1 2 3; do reused+=("$(grep -c 'from recycle list' "$WORK/$T-n3-$i/db/LOG" || true)"); done
    echo "{\"transport\":\"$T\",\"name\":\"aged\",\"writes\":$AGE,\"reused_wal_files\":[$(join "${reused[@]}")]}" | tee -a "$OUT"
  fi
  # One client's write again, paired: a single run of a few seconds a side
  # is within this machine's run-to-run noise (±15 %), so the two take
  # turns in short rounds, who goes first swapped each round, and
  # tls_table.py compares the p50s round by round.
  for R in $(seq "${PAIRED_ROUNDS:-7}"); do
    if [ $((R % 2)) = 1 ]; then order="idreg etcd"; else order="etcd idreg"; fi
    for side in $order; do
      if [ $side = idreg ]; then
        ROUND=$R run $T register "${I[@]}" --concurrency 1 --count 500 --max-seconds 60 --prefix p$R
      else
        ROUND=$R run $T etcd-put "${E[@]}" --concurrency 1 --count 500 --max-seconds 60
      fi
    done
  done
  [ $T = tls ] || stop_clusters
done

# Revocation: acknowledged by the leader -> every node's front refuses.
run tls revoke --endpoint "$LEADER" --count 200 \
  --fronts 127.0.0.1:56841,127.0.0.2:56842,127.0.0.3:56843

# A new node catching up from a snapshot at POP devices.
run tls register "${I[@]}" --concurrency 100 --count "$POP" --max-seconds 3000 --prefix pop
catch_up "$LEADER" 127.0.0.4:52154 127.0.0.4:52164 "$POP"
# The new node answers from its own replica: every read must find its device.
run tls get --endpoint 127.0.0.4:52154 --concurrency 1 --count 5000 --prefix pop --population "$POP"

python3 benches/compare/tls_table.py "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in rows:
    if r['name'] == 'revoke':
        print(f"revocation propagated to all 3 fronts: p50 {r['p50_us']/1000:.1f} ms, p99 {r['p99_us']/1000:.1f} ms, max {r['max_us']/1000:.1f} ms over {r['operations']} rounds, {r['errors']} failed")
    if r['name'] == 'register' and r['operations'] > 100000:
        print(f"load ({r['transport']}): {r['operations']} devices at {r['ops_per_sec']:.0f}/s (3 nodes, 100 clients)")
    if r['name'] == 'catch-up':
        print(f"new node caught up with {r['devices']} devices ({r.get('population')} of them written for it) in {r['seconds']:.1f} s, snapshots installed: {r['snapshots_installed']}")
    if r['name'] == 'get':
        print(f"GetDevice on the new node: {r['operations']} found, {r['errors']} missing, p50 {r['p50_us']} µs, p99 {r['p99_us']} µs")
PY
