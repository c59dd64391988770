# Shared by the cluster benchmark scripts (sourced). Expects BIN (the idreg
# binary), WORK (a scratch dir), OUT (the JSON lines file) and the PIDS array.

# cleanup: for `trap cleanup EXIT`: kills every process in PIDS and
# removes WORK.
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"; }

# find_bins: BIN (idreg) and BENCH (idreg-bench) from IDREG_BIN and
# IDREG_BENCH_BIN, else the release build; exits if either is missing.
find_bins() {
  BIN=${IDREG_BIN:-${CARGO_TARGET_DIR:-target}/release/idreg}
  BENCH=${IDREG_BENCH_BIN:-$(dirname "$BIN")/idreg-bench}
  [ -x "$BIN" ] && [ -x "$BENCH" ] || { echo "build first: cargo build --release (looked for $BIN and $BENCH)"; exit 1; }
}

# three_nodes: a fresh PKI and KEK and a 3-node cluster (client ports
# 5415i); sets L to the leader's number and F to a follower's.
three_nodes() {
  make_pki 3; make_kek
  start_cluster 3 5415 5416 5784
  L=$(wait_leader 127.0.0.1:54151)
  F=$(( L % 3 + 1 ))
}

# make_pki N: a PKI for nodes 1..N on 127.0.0.N in $WORK/pki. The CLI and
# the bench client then act as its admin (IDREG_CACERT, IDREG_CERT, IDREG_KEY).
make_pki() {
  local args=() i
  for i in $(seq "$1"); do args+=(--node "$i=127.0.0.$i,localhost"); done
  "$BIN" pki init --out "$WORK/pki" "${args[@]}" >/dev/null
  export IDREG_CACERT=$WORK/pki/peer-ca.crt IDREG_CERT=$WORK/pki/admin.crt IDREG_KEY=$WORK/pki/admin.key
}

# make_kek: a random key-encryption key in $WORK/kek, owner-only.
make_kek() {
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/kek"
  chmod 600 "$WORK/kek"
}

# start_cluster N GRPC PEER COAP: nodes 1..N founded together on 127.0.0.i,
# client port ${GRPC}i, peer ${PEER}i, CoAP ${COAP}i (e.g. 5315 5316 5684;
# COAP "off": no device front), data and log under $WORK/${TAG}nN-i, the KEK
# of make_kek. Security is the PKI of make_pki unless SECURITY is set (an
# array, e.g. SECURITY=(--insecure)); NODE_FLAGS (an array) adds flags to
# every node; TAG keeps two clusters of one script apart. Their PIDs go to
# NODE_PIDS (and PIDS); returns once a leader is elected.
start_cluster() {
  local n=$1 grpc=$2 peer=$3 coap=$4 i ic="" at sec=(--pki-dir "$WORK/pki")
  [ -n "${SECURITY+set}" ] && sec=("${SECURITY[@]}")
  for i in $(seq "$n"); do ic="${ic:+$ic,}$i=127.0.0.$i:$peer$i"; done
  NODE_PIDS=()
  for i in $(seq "$n"); do
    at=off; [ "$coap" = off ] || at=127.0.0.$i:$coap$i
    "$BIN" serve --node-id "$i" --data-dir "$WORK/${TAG:-}n$n-$i" --grpc-addr "127.0.0.$i:$grpc$i" \
      --peer-addr "127.0.0.$i:$peer$i" --coap-addr "$at" --coap-cert-addr off \
      "${sec[@]}" --kek-file "$WORK/kek" --initial-cluster "$ic" \
      --coap-session-file off ${NODE_FLAGS[@]+"${NODE_FLAGS[@]}"} >"$WORK/${TAG:-}n$n-$i.log" 2>&1 &
    NODE_PIDS+=($!); PIDS+=($!)
  done
  wait_leader "127.0.0.1:${grpc}1" >/dev/null
}

# status_field ENDPOINT FIELD [--local]: one field of `idreg cluster status`.
status_field() {
  "$BIN" cluster status --endpoint "$1" -o json ${3:-} 2>/dev/null \
    | python3 -c "import json,sys; v = json.load(sys.stdin).get('$2'); print('' if v is None else v)" 2>/dev/null || true
}

# wait_leader ENDPOINT: the leader's node id, once one is elected (30 s at
# most). (Its leader_addr is a peer address; clients need its client port.)
wait_leader() {
  local leader=""
  for _ in $(seq 150); do
    leader=$(status_field "$1" leader_id)
    [ -n "$leader" ] && [ "$leader" != 0 ] && { echo "$leader"; return 0; }
    sleep 0.2
  done
  echo "no leader elected" >&2
  return 1
}

# start_etcd3 TAG CLIENT PEER [tls]: a 3-member etcd 3.4 cluster on
# 127.0.0.1-3, client ports ${CLIENT}i, peer ${PEER}i (e.g. 5237 5238),
# data and logs under $WORK/TAG-etcdI. With "tls", both ports use the PKI of
# make_pki and require client certificates (etcd's --client-cert-auth and
# --peer-client-cert-auth). PIDs go to ETCD_PIDS (and PIDS).
start_etcd3() {
  local tag=$1 client=$2 peer=$3 tls=${4:-} url=http i ec
  [ -n "$tls" ] && url=https
  ec=e1=$url://127.0.0.1:${peer}1,e2=$url://127.0.0.2:${peer}2,e3=$url://127.0.0.3:${peer}3
  ETCD_PIDS=()
  for i in 1 2 3; do
    local flags=()
    [ -n "$tls" ] && flags=(--cert-file "$WORK/pki/node-$i.crt" --key-file "$WORK/pki/node-$i.key"
      --client-cert-auth --trusted-ca-file "$WORK/pki/client-ca.crt"
      --peer-cert-file "$WORK/pki/node-$i.crt" --peer-key-file "$WORK/pki/node-$i.key"
      --peer-client-cert-auth --peer-trusted-ca-file "$WORK/pki/peer-ca.crt")
    etcd --name e$i --data-dir "$WORK/$tag-etcd$i" --quota-backend-bytes 8589934592 "${flags[@]}" \
      --listen-client-urls $url://127.0.0.$i:$client$i --advertise-client-urls $url://127.0.0.$i:$client$i \
      --listen-peer-urls $url://127.0.0.$i:$peer$i --initial-advertise-peer-urls $url://127.0.0.$i:$peer$i \
      --initial-cluster $ec --initial-cluster-state new >"$WORK/$tag-etcd$i.log" 2>&1 &
    ETCD_PIDS+=($!); PIDS+=($!)
  done
}

# etcd_leader CLIENT [tls]: host:port of the leader of start_etcd3's
# cluster, once one is elected (30 s at most; the admin certificate of
# make_pki with "tls").
etcd_leader() {
  local client=$1 tls=${2:-} url=http auth=() leader=""
  if [ -n "$tls" ]; then
    url=https
    auth=(--cacert "$WORK/pki/peer-ca.crt" --cert "$WORK/pki/admin.crt" --key "$WORK/pki/admin.key")
  fi
  for _ in $(seq 150); do
    leader=$(ETCDCTL_API=3 etcdctl "${auth[@]}" \
      --endpoints $url://127.0.0.1:${client}1,$url://127.0.0.2:${client}2,$url://127.0.0.3:${client}3 \
      endpoint status -w json 2>/dev/null | python3 -c '
import json,sys
for s in json.load(sys.stdin):
    if s["Status"]["leader"] == s["Status"]["header"]["member_id"]: print(s["Endpoint"].split("://")[-1])' 2>/dev/null || true)
    [ -n "$leader" ] && { echo "$leader"; return 0; }
    sleep 0.2
  done
  echo "etcd elected no leader" >&2
  return 1
}

# catch_up LEADER NODE_ADDR PEER_ADDR POPULATION: snapshot on the leader,
# start node 4 empty at NODE_ADDR (client) and PEER_ADDR (raft) with the
# PKI of make_pki, add it, and time until it has applied all the leader
# had (add-node returns when openraft counts the learner caught up; the
# user's measure is the node having applied everything). Appends a
# "catch-up" line to OUT: "devices" is what the new node then holds (its
# /metrics), "population" the devices the caller wrote for it, a part of
# that when earlier runs wrote to the same cluster.
catch_up() {
  local leader=$1 addr=$2 peer=$3 population=$4
  "$BIN" cluster snapshot --endpoint "$leader" >/dev/null
  "$BIN" serve --node-id 4 --data-dir "$WORK/node4" --grpc-addr "$addr" --peer-addr "$peer" \
    --coap-addr off --pki-dir "$WORK/pki" --kek-file "$WORK/kek" --initial-cluster-state existing \
    >"$WORK/node4.log" 2>&1 &
  PIDS+=($!)
  sleep 1
  local t0 t1 target installed
  t0=$(date +%s.%N)
  "$BIN" cluster add-node 4 "$peer" --endpoint "$leader" >/dev/null
  target=$(status_field "$leader" applied_index --local)
  until [ "$(status_field "$addr" applied_index --local)" -ge "$target" ]; do sleep 0.05; done
  t1=$(date +%s.%N)
  installed=$(status_field "$addr" snapshots_installed --local)
  local held
  held=$(metric "${addr%:*}:9464" idreg_registry_devices)
  python3 -c "import json; print(json.dumps({'name': 'catch-up', 'devices': ${held:-None}, 'population': $population, 'seconds': $t1 - $t0, 'snapshots_installed': ${installed:-0}}))" | tee -a "$OUT"
}

# metric HOST:PORT NAME: the value of an unlabelled series on a node's
# /metrics, as an integer, or nothing.
metric() {
  python3 - "$1" "$2" 2>/dev/null <<'PY' || true
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in text.splitlines():
    if line.startswith(sys.argv[2] + " "):
        print(int(float(line.split()[-1])))
PY
}
