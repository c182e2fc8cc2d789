#!/usr/bin/env python3
"""Where a transfer's time went, from the nodes' logs.

    NO_COLOR=1 RUST_LOG=info,torronto::chunks=trace torronto node ... >nK.log 2>&1   (each node)
    tests/bench/chunk_timeline.py [--rate MBIT] [--json] LOG...
(or shaped.py --chunk-trace, which does both).

Each node logs every chunk request it sends, every one it receives and every chunk it
receives (`ask|wanted|got PEER INDEX FILE`, see `trace_chunk` in native-node/src/driver.rs). Given one log
per node, this prints, from the first request on:
  - per node: its first request and chunk, its last chunk, what it got and how much of it
    came from the seeder (the one node that neither asked for nor received a chunk);
  - the chunks each node received in each second, and, with --rate (the nodes' downlink
    in Mbit/s), how many short of what that link carries they were: the start, the
    middle and the tail of a run, in chunks;
  - the seeder: chunks it sent for the first time and again (duplicates), by the second
    they arrived, and the requests waiting on it, per node, every half second;
  - who fed whom: over a window of the run (`--window FROM TO`, seconds; the middle half
    by default), the Mbit/s of chunk payload each node received from each participant,
    what each one sent, and the requests each node had waiting on each peer on average.
    A link that carries little while requests wait on it is held up in the network
    (TCP, queues); one with few requests waiting is held up by the asking node;
  - one-way delays, over the same window, when the nodes share a clock (the shaped-links
    benchmark): a sender logs when each chunk's header goes to its socket (`owd sent`, on a
    connection it names once: `owd conn N peer ADDR`), a receiver when the header arrives
    (`owd got from ADDR`). In each half second a receiver's least delay from any sender
    is its own downlink's part; what a sender's delay to it adds is the sender's: the
    median over its receivers says how much its own uplink (socket and queue) holds its
    chunks back.
A node is named by its log file (`n3.log` is n3) and known by the address it prints on
stdout when it starts (`torronto node ADDR ... ready`): log both streams."""

import argparse
import collections
import datetime
import json
import math
import os
import re
import statistics
import sys

CHUNK = 64 * 1024
# Payload of a full-sized frame on Ethernet: TCP/IP headers and framing take the rest.
PAYLOAD = 1448 / 1514

LINE = re.compile(r"^(\S+Z)\s+TRACE torronto::chunks: (ask|got|wanted) (\S+) (\d+) (.*)$")
READY = re.compile(r"torronto node (\S+) \(")
OWD_CONN = re.compile(r"owd conn (\d+) peer (\S+)")
OWD_SENT = re.compile(r"owd sent conn (\d+) index (\d+) us (\d+)")
OWD_GOT = re.compile(r"owd got from (\S+) index (\d+) us (\d+)")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def stamp(text):
    return datetime.datetime.strptime(text[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def read_logs(paths):
    """{node: {"addr": str|None, "ask": [(t, peer, (file, index))], "got": [...], "wanted": [...]}}"""
    nodes = {}
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        if name in nodes:
            raise SystemExit(f"chunk_timeline.py: two logs named {name}: a node is named by its log file")
        # owd: chunk headers sent (to host, index, wall-clock us) and arrived (from host, ...).
        node = nodes[name] = {"addr": None, "ask": [], "got": [], "wanted": [], "sent_at": [], "arrived_at": []}
        conn_peer = {}
        try:
            f = open(path, errors="replace")
        except OSError as e:
            raise SystemExit(f"chunk_timeline.py: cannot read {path}: {e.strerror}")
        with f:
            for line in f:
                line = COLOUR.sub("", line)
                m = LINE.match(line)
                if "owd " in line:
                    if c := OWD_CONN.search(line):
                        conn_peer[c.group(1)] = c.group(2)
                    elif c := OWD_SENT.search(line):
                        node["sent_at"].append((c.group(1), int(c.group(2)), int(c.group(3))))
                    elif c := OWD_GOT.search(line):
                        node["arrived_at"].append((c.group(1), int(c.group(2)), int(c.group(3))))
                elif m:
                    node[m.group(2)].append((stamp(m.group(1)), m.group(3), (m.group(5), int(m.group(4)))))
                elif node["addr"] is None and (r := READY.search(line)):
                    node["addr"] = r.group(1)
        # A connection's peer is named once, at its first request, perhaps after the first
        # chunk sent on it.
        node["sent_at"] = [(conn_peer.get(conn), index, us) for conn, index, us in node["sent_at"]]
    return nodes


def running_totals(changes, times):
    """For each of `times` (ascending), the sum so far of the (time, key, change) `changes`
    (sorted) per key: (time, Counter), the Counter updated in place."""
    level, k = collections.Counter(), 0
    for at in times:
        while k < len(changes) and changes[k][0] <= at:
            level[changes[k][1]] += changes[k][2]
            k += 1
        yield at, level


def pairs(nodes, fetchers, by_addr, t0, start, stop):
    """Who fed whom between `start` and `stop` (seconds from t0): chunks and Mbit/s of payload
    received by each fetcher from each participant (named through `by_addr`), and the
    requests it had waiting on each, on average (sampled every 0.1 s)."""
    span = max(stop - start, 1e-9)
    chunks, waiting = {}, {}
    for name in fetchers:
        n = nodes[name]
        counts = collections.Counter(by_addr.get(peer, peer) for t, peer, _ in n["got"] if start <= t - t0 < stop)
        chunks[name] = dict(counts)
        changes = sorted([(t - t0, by_addr.get(peer, peer), 1) for t, peer, _ in n["ask"]]
                         + [(t - t0, by_addr.get(peer, peer), -1) for t, peer, _ in n["got"]])
        samples = max(1, math.ceil((stop - start) / 0.1 - 1e-9))
        total = collections.Counter()
        for _, level in running_totals(changes, [start + i * 0.1 for i in range(samples)]):
            for peer, v in level.items():
                total[peer] += max(0, v)
        waiting[name] = {peer: round(v / samples, 3) for peer, v in total.items() if v}
    mbit = {r: {s: round(c * CHUNK * 8 / span / 1e6, 3) for s, c in row.items()} for r, row in chunks.items()}
    return {"from": round(start, 3), "to": round(stop, 3), "chunks": chunks, "mbit": mbit, "waiting": waiting}


def one_way(nodes, t0, start, stop, step=0.5):
    """Each sender's share of the one-way delay of its chunk headers (sent to arrived; the
    nodes must share a clock), over STEP-second windows between START and STOP: in each
    window a receiver's least delay from any sender is its own downlink's part, and what a
    sender's delay to it adds is the sender's; a sender's figure is the median of that over
    its receivers. {sender: [per-window figures, ms]}, and the median delay of each pair."""
    by_addr = {n["addr"]: name for name, n in nodes.items() if n["addr"]}
    sent = collections.defaultdict(list)  # (sender, receiver, index) -> [us]
    for name, n in nodes.items():
        for to, index, us in n["sent_at"]:
            if to in by_addr:
                sent[(name, by_addr[to], index)].append(us)
    delays = collections.defaultdict(list)  # (window, receiver, sender) -> [ms]
    for name, n in nodes.items():
        for frm, index, us in n["arrived_at"]:
            at = us / 1e6 - t0
            before = [x for x in sent.get((by_addr.get(frm), name, index), []) if x <= us]
            if frm in by_addr and before and start <= at < stop:
                delays[(int((at - start) / step), name, by_addr[frm])].append((us - max(before)) / 1000)
    shares, pairs_ms = collections.defaultdict(list), collections.defaultdict(list)
    for w in sorted({k[0] for k in delays}):
        added = collections.defaultdict(list)
        for receiver in nodes:
            medians = {s: statistics.median(v) for (ww, r, s), v in delays.items() if ww == w and r == receiver and len(v) > 1}
            if len(medians) < 2:
                continue
            least = min(medians.values())
            for sender, ms in medians.items():
                added[sender].append(ms - least)
                pairs_ms[(sender, receiver)].append(ms)
        for sender, v in added.items():
            if len(v) > 1:
                shares[sender].append(round(statistics.median(v), 1))
    return dict(shares), {f"{s}>{r}": round(statistics.median(v), 1) for (s, r), v in pairs_ms.items()}


def analyse(nodes, rate_mbit=None, window=None):
    events = [e[0] for n in nodes.values() for e in n["ask"] + n["got"]]
    if not events:
        raise SystemExit("no chunk trace in these logs: run the nodes with RUST_LOG=info,torronto::chunks=trace")
    t0 = min(events)
    by_addr = {n["addr"]: name for name, n in nodes.items() if n["addr"]}
    seeders = [name for name, n in nodes.items() if not n["got"] and not n["ask"] and n["addr"]]
    seeder = seeders[0] if len(seeders) == 1 else None
    seeder_addr = nodes[seeder]["addr"] if seeder else None
    fetchers = sorted((name for name, n in nodes.items() if n["got"] or n["ask"]), key=lambda s: (len(s), s))
    end = max(events) - t0
    seconds = int(end) + 1
    report = {"nodes": {}, "seeder": seeder, "per_second": {}, "short": {}, "seeder_sent": [], "seeder_again": [],
              "waiting_on_seeder": []}
    for name in fetchers:
        n = nodes[name]
        got = n["got"]
        report["nodes"][name] = {
            "first_ask": round(min(e[0] for e in n["ask"]) - t0, 3) if n["ask"] else None,
            "first_chunk": round(got[0][0] - t0, 3) if got else None,
            "last_chunk": round(got[-1][0] - t0, 3) if got else None,
            "chunks": len(got),
            "from_seeder": sum(1 for e in got if e[1] == seeder_addr) if seeder_addr else None,
            "received_twice": len(got) - len({e[2] for e in got}),
        }
        counts = [0] * seconds
        for t, _, _ in got:
            counts[int(t - t0)] += 1
        report["per_second"][name] = counts
        if rate_mbit and got:
            full = rate_mbit * 1e6 / 8 * PAYLOAD / CHUNK
            # The last second counts only up to the node's last chunk.
            report["short"][name] = [round(full * min(1.0, (got[-1][0] - t0) - s) - c)
                                     for s, c in enumerate(counts) if s <= got[-1][0] - t0]
    if seeder_addr:
        sent = collections.defaultdict(list)  # chunk -> times it arrived from the seeder
        for name in fetchers:
            for t, peer, chunk in nodes[name]["got"]:
                if peer == seeder_addr:
                    sent[chunk].append(t - t0)
        first, again = [0] * seconds, [0] * seconds
        for times in sent.values():
            times.sort()
            first[int(times[0])] += 1
            for t in times[1:]:
                again[int(t)] += 1
        report["seeder_sent"], report["seeder_again"] = first, again
        changes = []  # (t, node, +1 asked | -1 received)
        for name in fetchers:
            changes += [(t - t0, name, 1) for t, peer, _ in nodes[name]["ask"] if peer == seeder_addr]
            changes += [(t - t0, name, -1) for t, peer, _ in nodes[name]["got"] if peer == seeder_addr]
        changes.sort()
        every_half_second = [i / 2 for i in range(int(end * 2) + 1)]
        for at, waiting in running_totals(changes, every_half_second):
            report["waiting_on_seeder"].append((at, [max(0, waiting[n]) for n in fetchers]))
    start, stop = window if window else (end / 4, end * 3 / 4)
    report["pairs"] = pairs(nodes, fetchers, by_addr, t0, start, stop)
    report["one_way"], report["one_way_pairs"] = one_way(nodes, t0, start, stop)
    report["unknown_peers"] = sorted({e[1] for n in nodes.values() for e in n["got"]} - set(by_addr))
    return report


def print_report(r, rate_mbit):
    fetchers = list(r["nodes"])
    print(f"seeder: {r['seeder'] or 'not found (no single node that received nothing)'}; times in seconds "
          f"from the first request")
    print("node   first ask  first chunk  last chunk  chunks  from seeder  received twice")
    def cell(v):
        return "-" if v is None else v
    for name, n in r["nodes"].items():
        print(f"{name:<6} {cell(n['first_ask']):>9} {cell(n['first_chunk']):>12} {cell(n['last_chunk']):>11} "
              f"{n['chunks']:>7} {cell(n['from_seeder']):>12} {n['received_twice']:>15}")
    print("\nchunks received in each second" + (f" (short of {rate_mbit} Mbit/s in brackets)" if rate_mbit else ""))
    print("second " + " ".join(f"{n:>10}" for n in fetchers))
    seconds = max((len(c) for c in r["per_second"].values()), default=0)
    for s in range(seconds):
        cells = []
        for n in fetchers:
            c = r["per_second"][n][s] if s < len(r["per_second"][n]) else 0
            short = r["short"].get(n, [])
            cells.append(f"{c:>4}" + (f" ({short[s]:>3})" if s < len(short) else "      "))
        print(f"{s:>6} " + " ".join(f"{c:>10}" for c in cells))
    if rate_mbit:
        print("short in all: " + ", ".join(f"{n} {sum(r['short'][n])}" for n in fetchers if n in r["short"]))
    if r["seeder_sent"]:
        print("\nthe seeder's chunks in each second: first copies / again")
        print(" ".join(f"{s}:{a}/{b}" for s, (a, b) in enumerate(zip(r["seeder_sent"], r["seeder_again"]))))
        print(f"in all: {sum(r['seeder_sent'])} chunks, {sum(r['seeder_again'])} sent again")
        print("\nrequests waiting on the seeder, every half second: " + " ".join(fetchers))
        for at, counts in r["waiting_on_seeder"]:
            print(f"{at:>6.1f} {sum(counts):>4}  " + " ".join(f"{c:>3}" for c in counts))
    p = r["pairs"]
    senders = sorted({s for row in p["mbit"].values() for s in row} | set(fetchers), key=lambda s: (len(s), s))
    print(f"\nMbit/s received by each node (row) from each participant (column), {p['from']:.1f}-{p['to']:.1f} s")
    print("node   " + " ".join(f"{s:>6}" for s in senders) + "   total")
    for name in fetchers:
        row = p["mbit"].get(name, {})
        print(f"{name:<6} " + " ".join(f"{row.get(s, 0):>6.1f}" for s in senders) + f"  {sum(row.values()):>6.1f}")
    sent = {s: sum(row.get(s, 0) for row in p["mbit"].values()) for s in senders}
    print("sent   " + " ".join(f"{sent[s]:>6.1f}" for s in senders))
    print("requests waiting, on average, by each node (row) on each participant (column)")
    for name in fetchers:
        row = p["waiting"].get(name, {})
        print(f"{name:<6} " + " ".join(f"{row.get(s, 0):>6.1f}" for s in senders))
    if r["one_way"]:
        print("\none-way delay each sender adds to its chunk headers, ms (median over its receivers of its delay less"
              " the receiver's least from anyone, per half second): median / 90th percentile")
        for name in sorted(r["one_way"], key=lambda s: (len(s), s)):
            v = sorted(r["one_way"][name])
            print(f"{name:<6} {statistics.median(v):>6.1f} / {v[max(0, (len(v) * 9) // 10 - 1)]:>6.1f}")
    if r["unknown_peers"]:
        print(f"\nchunks came from peers with no log here: {', '.join(r['unknown_peers'])}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("logs", nargs="+", help="one log per node")
    p.add_argument("--rate", type=float, help="the nodes' downlink in Mbit/s: print how many chunks short each was")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--window", type=float, nargs=2, metavar=("FROM", "TO"),
                   help="seconds from the first request over which to tell who fed whom (default: the middle half)")
    a = p.parse_args()
    if a.window and not a.window[0] < a.window[1]:
        raise SystemExit(f"chunk_timeline.py: --window {a.window[0]:g} {a.window[1]:g}: FROM must come before TO")
    report = analyse(read_logs(a.logs), a.rate, a.window)
    if a.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print_report(report, a.rate)


if __name__ == "__main__":
    main()
