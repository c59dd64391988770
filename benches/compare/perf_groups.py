#!/usr/bin/env python3
"""Groups a node's CPU samples by what their stacks were doing: the shares
BENCHMARKS.md gives for the leader and a follower at 100 clients.

    CLIENTS=100 PERF=1 PERF_CALL_GRAPH="--call-graph dwarf,32768" benches/compare/write_breakdown.sh
    python3 benches/compare/perf_groups.py /tmp/single-perf.data
    python3 benches/compare/perf_groups.py /tmp/single-perf.data apply_entries MemTableInserter GetImpl WriteToWAL

A sample counts in the first group whose markers all appear in its stack, in the order below, so a handler's own stack counts as the handler
even though an h2 connection polled it. With a ROOT and MARKERS after the
file, the samples under ROOT are split by the first marker each contains.
"""

import collections
import subprocess
import sys

# (group, marker or markers that must all appear), first match wins.
GROUPS = [
    ("applying entries", "apply_entries"),
    ("state-machine worker, other", "core::sm::worker"),
    ("replication to followers", "replication::ReplicationCore"),
    ("openraft's core (a follower's log append too)", "RaftCore"),
    ("log store (the leader's flush on the pool)", "log_store"),
    ("CreateDevice handler and its layers", "DeviceRegistryServer"),
    ("proposer", "proposer"),
    ("HTTP/2 server connections (frames, TLS, sockets)", ("h2::proto::connection", "h2::server")),
    ("HTTP/2 client connections (to peers)", "h2::proto::connection"),
    ("hyper's task per stream", "hyper::"),
    ("tokio's I/O driver", "tokio::runtime::io"),
    ("tokio's scheduler", "tokio::runtime::scheduler"),
    ("RocksDB in the background", "rocksdb::"),
]


def stacks(path):
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "ip,sym"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [s for s in out.split("\n\n") if s.strip()]


def has(stack, marker):
    markers = (marker,) if isinstance(marker, str) else marker
    return all(m in stack for m in markers)


def share(n, total):
    return f"{100 * n / total:5.1f} %"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    all_stacks = stacks(sys.argv[1])
    total = len(all_stacks)
    if total == 0:
        sys.exit("no samples with stacks in " + sys.argv[1])
    if len(sys.argv) > 2:
        root, markers = sys.argv[2], sys.argv[3:]
        under = [s for s in all_stacks if root in s]
        print(f"{share(len(under), total)}  {root}")
        split = collections.Counter(next((m for m in markers if m in s), "other") for s in under)
        for marker, n in split.most_common():
            print(f"  {share(n, total)}  {marker}")
        return
    counts = collections.Counter(next((g for g, m in GROUPS if has(s, m)), "other") for s in all_stacks)
    print(f"{total} samples")
    for group, n in counts.most_common():
        print(f"{share(n, total)}  {group}")


if __name__ == "__main__":
    main()
