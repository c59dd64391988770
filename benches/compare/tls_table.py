#!/usr/bin/env python3
"""Prints the idreg-vs-etcd table of a compare run (registry.sh, cluster.sh)
from its JSON lines: per operation and concurrency, both systems with TLS side
by side, and what TLS costs each (its share of the plaintext throughput lost,
and the extra server CPU per operation).

Rows carry "transport": "tls" or "plain"; register pairs with etcd-put, get
with etcd-get. Register rows at concurrency 64 are fills, reported apart; of two rows of
one kind, the first is the measurement. Rows with a "paired_round" are one client's
writes in rounds that alternate the two systems, compared round by round; an
"aged" row before them (cluster.sh with AGE_WRITES) says how many writes both
systems took first, and how many reused WAL files each idreg node had."""

import json
import sys

PEER = {"register": "etcd-put", "get": "etcd-get"}


def fmt(x, spec="{:.0f}"):
    return "-" if x is None else spec.format(x)


def main(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    by = {}
    for r in rows:
        # The first row of a kind is the measured one; later ones are loads.
        if "transport" in r and "concurrency" in r and r["concurrency"] != 64 and "paired_round" not in r:
            by.setdefault((r["name"], r["concurrency"], r["transport"]), r)
    print(
        f"{'op':9} {'conc':>5} {'idreg TLS ops/s':>15} {'etcd TLS ops/s':>14} {'ratio':>6} "
        f"{'idreg p50/p99 µs':>17} {'etcd p50/p99 µs':>16} {'idreg cpu µs/op':>15} {'etcd cpu µs/op':>14} "
        f"{'TLS cost idreg':>14} {'TLS cost etcd':>13}"
    )
    keys = sorted({(n, c) for (n, c, _) in by if n in PEER}, key=lambda k: (k[0] != "register", k[1]))
    for name, conc in keys:
        it, ip = by.get((name, conc, "tls")), by.get((name, conc, "plain"))
        et, ep = by.get((PEER[name], conc, "tls")), by.get((PEER[name], conc, "plain"))
        if not (it and et):
            continue

        def cost(tls, plain):
            # Throughput lost to TLS, and CPU per op added by it.
            if not plain:
                return "-"
            lost = 1 - tls["ops_per_sec"] / plain["ops_per_sec"]
            a, b = tls.get("server_cpu_us_per_op"), plain.get("server_cpu_us_per_op")
            cpu = f"/{(a / b - 1) * 100:+.0f}%cpu" if a and b else ""
            return f"{lost * 100:.0f}%{cpu}"

        print(
            f"{name:9} {conc:>5} {it['ops_per_sec']:>15.0f} {et['ops_per_sec']:>14.0f} "
            f"{it['ops_per_sec'] / et['ops_per_sec']:>6.2f} "
            f"{str(it['p50_us']) + '/' + str(it['p99_us']):>17} {str(et['p50_us']) + '/' + str(et['p99_us']):>16} "
            f"{fmt(it.get('server_cpu_us_per_op'), '{:.1f}'):>15} {fmt(et.get('server_cpu_us_per_op'), '{:.1f}'):>14} "
            f"{cost(it, ip):>14} {cost(et, ep):>13}"
        )
    paired_rounds(rows)
    for r in rows:
        if r.get("concurrency") == 64 and r["name"] in ("register", "etcd-fill"):
            print(
                f"fill {r['name']} ({r.get('transport')}): {r['operations']} in {r['seconds']:.0f} s "
                f"= {r['ops_per_sec']:.0f}/s, errors {r['errors']}"
            )
        if r["name"] == "disk":
            print(f"disk after fill: idreg {r['idreg_kb'] / 1024:.0f} MiB, etcd {r['etcd_kb'] / 1024:.0f} MiB")


def paired_rounds(rows):
    """One client's write in rounds that alternate the two systems: per
    transport, idreg's p50 over etcd's in each round, and their median."""
    for transport in ("plain", "tls"):
        rounds = {}
        for r in rows:
            if r.get("transport") == transport and "paired_round" in r:
                rounds.setdefault(r["paired_round"], {})[r["name"]] = r
        ratios = [
            pair["register"]["p50_us"] / pair["etcd-put"]["p50_us"]
            for _, pair in sorted(rounds.items())
            if "register" in pair and "etcd-put" in pair
        ]
        if not ratios:
            continue
        ordered = sorted(ratios)
        median = ordered[len(ordered) // 2]
        aged = next((r for r in rows if r["name"] == "aged" and r.get("transport") == transport), None)
        after = ""
        if aged:
            after = (
                f" after {aged['writes']} writes each at 100 clients"
                f" (reused WAL files per idreg node: {aged['reused_wal_files']})"
            )
        print(
            f"one client, {transport}, {len(ratios)} paired rounds{after}: p50 idreg/etcd median "
            f"{median:.2f}x (rounds: {' '.join(f'{x:.2f}' for x in ratios)})"
        )


if __name__ == "__main__":
    main(sys.argv[1])
