"""Per-write timeline from `perf script` system-call events (write_timeline.sh).

Usage: write_timeline.py WORK SIDE:CLIENT_PID:LEADER_PID:ALL_SERVER_PIDS ...

For each side, WORK/SIDE.txt holds `perf script -F comm,pid,tid,cpu,time,event,trace`
output and WORK/SIDE.ss `ss -tnpH` taken while the connections were open.
A write starts at the client's first send to the leader after it last
received from it; the steps of that write are the first matching events
after it, each following the one it depends on. Prints the median time of
each step after the client's send, side by side.
"""

import os
import re
import statistics
import sys
from collections import defaultdict

EVENT = re.compile(r"^\s*.+?\s+(\d+)/(\d+)\s+\[\d+\]\s+([\d.]+):\s+syscalls:sys_(enter|exit)_(\w+):\s*(.*)$")
READS = {"read", "recvfrom"}
SENDS = {"write", "writev", "sendto", "sendmsg"}
SYNCS = {"fdatasync", "fsync"}


def sockets(path):
    """(pid, fd) -> pid at the other end of that TCP connection."""
    owner, conns = {}, []
    for line in open(path):
        parts = line.split()
        if len(parts) < 5:
            continue
        local, remote = parts[3], parts[4]
        for pid, fd in re.findall(r"pid=(\d+),fd=(\d+)", line):
            owner[local] = int(pid)
            conns.append((int(pid), int(fd), remote))
    return {(pid, fd): owner[remote] for pid, fd, remote in conns if remote in owner}


def events(path, pids, peer_of):
    """Per pid, a time-ordered list of (t, kind, peer, bytes): kind is rx
    (a read returned data), tx (a send entered), sync0 (an fsync entered)
    or sync1 (it returned)."""
    pending, out = {}, defaultdict(list)
    for line in open(path):
        m = EVENT.match(line)
        if not m:
            continue
        pid, tid, t, edge, call, rest = int(m[1]), int(m[2]), float(m[3]) * 1e6, m[4], m[5], m[6]
        if pid not in pids:
            continue
        if call in SYNCS:
            out[pid].append((t, "sync0" if edge == "enter" else "sync1", None, 0))
        elif edge == "enter":
            fd = re.search(r"fd: (0x[0-9a-f]+)", rest)
            pending[tid] = (t, int(fd[1], 16) if fd else None)
        elif tid in pending:
            t_enter, fd = pending.pop(tid)
            ret = int(rest.strip(), 16) if rest.strip().startswith("0x") else -1
            if 0 < ret < 1 << 62 and (pid, fd) in peer_of:
                kind = "rx" if call in READS else "tx"
                out[pid].append((t if kind == "rx" else t_enter, kind, peer_of[(pid, fd)], ret))
            elif 0 < ret < 1 << 62 and call in SENDS:
                out[pid].append((t_enter, "file", None, ret))
    for evs in out.values():
        evs.sort()
    return out


def first(evs, after, kind, peer=None, before=float("inf"), min_bytes=0):
    for t, k, p, n in evs:
        if after <= t < before and k == kind and (peer is None or p == peer) and n >= min_bytes:
            return t
    return None


def last(evs, after, before, kind, peer=None):
    found = None
    for t, k, p, _ in evs:
        if after <= t < before and k == kind and (peer is None or p == peer):
            found = t
    return found


# A request or a response carries a message; h2's control frames (window
# updates, pings, settings acks: 9-17 bytes) do not. A TLS record adds ~29.
MESSAGE_BYTES = 30 + (29 if os.environ.get("TLS") else 0)


def timeline(work, side, client, leader, servers):
    peer_of = sockets(f"{work}/{side}.ss")
    evs = events(f"{work}/{side}.txt", {client, *servers}, peer_of)
    followers = [p for p in servers if p != leader]
    starts, received = [], True
    for t, k, p, n in evs[client]:
        if p != leader:
            continue
        if k == "tx" and received and n >= MESSAGE_BYTES:
            starts.append(t)
            received = False
        elif k == "rx" and n >= MESSAGE_BYTES:
            received = True
    steps = defaultdict(list)
    for t0, t_next in zip(starts, starts[1:]):
        lev, cev = evs[leader], evs[client]
        l_rx = first(lev, t0, "rx", client, t_next)
        if l_rx is None:
            continue
        row = {"leader reads the request": l_rx}
        acks = []
        # Each follower's part is found from its fsync backwards (the read
        # that brought the entry, the leader's send of it) and forwards (its
        # answer, the leader's read of it): a commit index or heartbeat
        # exchanged in between is then not taken for the entry.
        for f in followers:
            fev = evs[f]
            s0 = first(fev, l_rx, "sync0", None, t_next)
            s1 = s0 and first(fev, s0, "sync1", None, t_next)
            f_rx = s1 and last(fev, l_rx, s0, "rx", leader)
            tx = f_rx and last(lev, l_rx, f_rx, "tx", f)
            f_tx = tx and first(fev, s1, "tx", leader, t_next)
            ack = f_tx and first(lev, f_tx, "rx", f, t_next)
            if ack:
                acks.append((ack, tx, f_rx, s0, s1, f_tx))
        if not acks:
            continue
        row["leader sends the entry (first follower)"] = min(a[1] for a in acks)
        ack, tx, f_rx, s0, s1, f_tx = min(acks)
        row["quorum follower reads it"] = f_rx
        row["quorum follower's fsync starts"] = s0
        row["quorum follower's fsync ends"] = s1
        row["quorum follower answers"] = f_tx
        row["leader reads the answer"] = ack
        s0 = first(lev, l_rx, "sync0", None, t_next)
        s1 = s0 and first(lev, s0, "sync1", None, t_next)
        if s0 and s1:
            row["leader's fsync starts"] = s0
            row["leader's fsync ends"] = s1
        for i, f in enumerate(followers):
            t = first(lev, ack, "tx", f, t_next)
            if t:
                row[f"leader sends follower {i + 1} the commit"] = t
        files = [t for t, k, _, _ in lev if ack <= t < t_next and k == "file"]
        if files:
            row["leader's first file write after the answer"] = files[0]
            row["leader's last file write after the answer"] = files[-1]
        c_rx = first(cev, ack, "rx", leader, t_next, MESSAGE_BYTES)
        if c_rx is None:
            continue
        resp = last(lev, ack, c_rx, "tx", client)
        if resp:
            row["leader sends the response"] = resp
        row["client reads the response"] = c_rx
        for name, t in row.items():
            steps[name].append(t - t0)
    return steps, len(starts)


def main():
    work, sides = sys.argv[1], sys.argv[2:]
    results = {}
    for spec in sides:
        side, client, leader, servers = spec.split(":")
        servers = [int(p) for p in servers.split(",")]
        results[side], n = timeline(work, side, int(client), int(leader), servers)
        complete = len(results[side].get("client reads the response", []))
        print(f"{side}: {n} writes traced, {complete} with every step found")
    names = []
    for steps in results.values():
        names += [n for n in steps if n not in names]
    names.sort(key=lambda n: statistics.median(next(iter(results.values())).get(n, [0])))
    title = "median µs after the client's send"
    print(f"\n{title:<44}" + "".join(f"| {s:>8} " for s in results))
    for name in names:
        cells = "".join(
            f"| {statistics.median(results[s][name]):8.0f} " if results[s].get(name) else "|        - "
            for s in results
        )
        print(f"{name:<44}{cells}")


if __name__ == "__main__":
    main()
