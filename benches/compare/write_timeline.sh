#!/usr/bin/env bash
# Where one client's replicated write waits, idreg against etcd, read from
# the system calls of every process on the path: 3 idreg nodes and a
# 3-member etcd 3.4 cluster (plaintext, or TLS=1), one client writing to
# each leader in turn. perf records each process's socket reads and writes
# and its WAL fsyncs; write_timeline.py finds, for every write, when the
# leader read the request, sent the entry to each follower, fsynced, heard
# each follower's answer and sent the response, and when the followers read,
# fsynced and answered, and prints the medians side by side.
#
#   benches/compare/write_timeline.sh            # plaintext
#   TLS=1 benches/compare/write_timeline.sh
#
# Tracing slows every system call: compare the columns, not absolute times.
# WRITES=N sizes each client's run (it must outlast the traced second);
# EXTRA_EVENTS=sched:sched_switch,sched:sched_wakeup adds scheduler events;
# KEEP=DIR keeps the decoded traces and the parser's arguments.
#
# Needs root (or perf_event_paranoid <= 1), perf and etcd-server 3.4.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
find_bins
command -v etcd >/dev/null || { echo "apt-get install etcd-server"; exit 1; }
command -v perf >/dev/null || { echo "apt-get install linux-perf"; exit 1; }
command -v ss >/dev/null || { echo "apt-get install iproute2"; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/idreg-timeline.XXXXXX")
PIDS=()
trap cleanup EXIT
make_kek
make_pki 3
PKI=$WORK/pki
N=${WRITES:-1500}

SECURITY=(--insecure); tls=""; E=(); export IDREG_INSECURE_CLIENT=1
if [ -n "${TLS:-}" ]; then
  SECURITY=(--pki-dir "$PKI"); tls=tls; E=(--etcd-tls); unset IDREG_INSECURE_CLIENT
fi
start_cluster 3 5245 5246 off
IDREG_PIDS=("${NODE_PIDS[@]}")
start_etcd3 t 5247 5248 $tls
id=$(wait_leader 127.0.0.1:52451)
ILEADER=127.0.0.$id:5245$id
ELEADER=$(etcd_leader 5247 $tls)
echo "idreg leader $ILEADER, etcd leader $ELEADER; $N writes a side"

EVENTS=syscalls:sys_enter_read,syscalls:sys_exit_read,syscalls:sys_enter_recvfrom,syscalls:sys_exit_recvfrom
EVENTS=$EVENTS,syscalls:sys_enter_write,syscalls:sys_exit_write,syscalls:sys_enter_writev,syscalls:sys_exit_writev
EVENTS=$EVENTS,syscalls:sys_enter_sendto,syscalls:sys_exit_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_exit_sendmsg
EVENTS=$EVENTS,syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync,syscalls:sys_enter_fsync,syscalls:sys_exit_fsync
EVENTS=$EVENTS${EXTRA_EVENTS:+,$EXTRA_EVENTS}

# traced SIDE SERVER_PIDS ARGS...: one client's writes, the client and the
# servers under perf for a second (only they: perf's own writes would be
# traced too with -a), and each process's sockets for the parser.
traced() {
  local side=$1 servers=$2; shift 2
  "$BENCH" "$@" --concurrency 1 --count 300 --max-seconds 30 --output json >/dev/null
  "$BENCH" "$@" --concurrency 1 --count "$N" --max-seconds 60 --output json >"$WORK/$side.json" &
  local client=$!
  sleep 0.3
  ss -tnpH >"$WORK/$side.ss"
  perf record -q -p "$client,$servers" -e "$EVENTS" -o "$WORK/$side.data" -- sleep "${SECONDS_TRACED:-1}" 2>/dev/null
  wait $client
  perf script -i "$WORK/$side.data" -F comm,pid,tid,cpu,time,event,trace 2>/dev/null >"$WORK/$side.txt"
  echo "$side: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("p50 %d us, %.0f writes/s" % (r["p50_us"], r["ops_per_sec"]))' "$WORK/$side.json") (client pid $client)"
  echo "$client" >"$WORK/$side.client"
}
traced idreg "$(IFS=,; echo "${IDREG_PIDS[*]}")" register --endpoint "$ILEADER" --prefix t
traced etcd "$(IFS=,; echo "${ETCD_PIDS[*]}")" etcd-put --etcd "$ELEADER" "${E[@]}"

ARGS=("idreg:$(cat "$WORK/idreg.client"):${IDREG_PIDS[$((id-1))]}:$(IFS=,; echo "${IDREG_PIDS[*]}")"
  "etcd:$(cat "$WORK/etcd.client"):$(ss -tlnpH "sport = :${ELEADER##*:}" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2):$(IFS=,; echo "${ETCD_PIDS[*]}")")
python3 benches/compare/write_timeline.py "$WORK" "${ARGS[@]}"
# KEEP=DIR keeps the traces: python3 benches/compare/write_timeline.py DIR $(cat DIR/args)
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP"; cp "$WORK"/*.txt "$WORK"/*.ss "$KEEP"/; echo "${ARGS[*]}" >"$KEEP/args"
fi
