# Shared by the cluster benchmark scripts (sourced). Expects BIN (the idreg
# binary), WORK (a scratch dir), OUT (the JSON lines file) and the PIDS array.

# status_field ENDPOINT FIELD [--local]: one field of `idreg cluster status`.
status_field() {
  "$BIN" cluster status --endpoint "$1" -o json ${3:-} 2>/dev/null \
    | python3 -c "import json,sys; v = json.load(sys.stdin).get('$2'); print('' if v is None else v)" 2>/dev/null || true
}

# wait_leader ENDPOINT: the leader's address, once one is elected (30 s at most).
wait_leader() {
  local leader=""
  for _ in $(seq 150); do
    leader=$(status_field "$1" leader_addr)
    [ -n "$leader" ] && { echo "$leader"; return 0; }
    sleep 0.2
  done
  echo "no leader elected" >&2
  return 1
}

# catch_up LEADER NODE_ADDR DEVICES: snapshot on the leader, start node 4
# empty at NODE_ADDR, add it, and time until it has applied all the leader
# had (add-node returns when openraft counts the learner caught up; the
# user's measure is the node having applied everything). Appends a
# "catch-up" line to OUT.
catch_up() {
  local leader=$1 addr=$2 devices=$3
  "$BIN" cluster snapshot --endpoint "$leader" >/dev/null
  "$BIN" serve --node-id 4 --data-dir "$WORK/node4" --grpc-addr "$addr" --coap-addr off \
    --kek-file "$WORK/kek" --initial-cluster-state existing >"$WORK/node4.log" 2>&1 &
  PIDS+=($!)
  sleep 1
  local t0 t1 target installed
  t0=$(date +%s.%N)
  "$BIN" cluster add-node 4 "$addr" --endpoint "$leader" >/dev/null
  target=$(status_field "$leader" applied_index --local)
  until [ "$(status_field "$addr" applied_index --local)" -ge "$target" ]; do sleep 0.05; done
  t1=$(date +%s.%N)
  installed=$(status_field "$addr" snapshots_installed --local)
  python3 -c "import json; print(json.dumps({'name': 'catch-up', 'devices': $devices, 'seconds': $t1 - $t0, 'snapshots_installed': ${installed:-0}}))" | tee -a "$OUT"
}
