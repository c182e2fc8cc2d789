#!/usr/bin/env python3
"""Scale benchmark (issue 13): N real release nodes on loopback, each with at most
--max-links links, replicate one file; the table gives, per N, the time until every node
holds the file, the time until every node's Query counts N participants and least
replication N, the most links any node had, peak RSS per node, and control bytes (every
header, list and gossip message sent, from each node's /metrics) as a share of chunk
payload bytes, in all and by kind of message.

    tests/bench/scale.py [--nodes 8,32,64,128,256] [--size MiB] [--max-links N] [--keep]

Every node's peers file names node 0 and up to three random nodes started before it;
each node starts with --join, dials a few of those and learns the rest by gossip. The
clock of a row starts when the file is inserted on node 0 (after every node has joined
and gossip has counted everyone) and stops when DIR/<name> has the full size on every
node (a node renames it there only once every chunk is verified). Builds torronto in
release mode; kills everything it starts on exit.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(REPO, "target", "release", "torronto")


def ephemeral_range():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    return low, high


_next_port = [None]


def free_port():
    """A port below the ephemeral range: with hundreds of nodes dialling, a port the
    kernel handed out as free may meanwhile be some node's outgoing source port, and
    the node meant to listen there would fail to start."""
    if _next_port[0] is None:
        low, _ = ephemeral_range()
        _next_port[0] = max(1024, low - 12000)
    while True:
        port = _next_port[0]
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def query(port, root):
    out = subprocess.run(
        [BIN, "query", "--node", f"127.0.0.1:{port}", "--json"],
        capture_output=True, text=True, env=dict(os.environ, XDG_STATE_HOME=root), timeout=30,
    )
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
    return 0


KINDS = ["have", "gossip", "requests", "file_lists", "other"]


def control_by_kind(nodes):
    """Control bytes sent by all nodes, by kind of message."""
    total = dict.fromkeys(KINDS, 0)
    for node in nodes:
        for kind in KINDS:
            total[kind] += metric(node["mport"], f'torronto_control_sent_bytes_by_kind_total{{kind="{kind}"}}')
    return total


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run(n, size_mib, max_links, keep):
    root = tempfile.mkdtemp(prefix=f"torronto-scale-{n}-")
    nodes = []
    try:
        ports = [free_port() for _ in range(n)]
        for i, port in enumerate(ports):
            d = os.path.join(root, f"n{i}")
            os.makedirs(os.path.join(d, "share"))
            peers = {0} | set(random.sample(range(i), min(3, i))) if i > 0 else set()
            with open(os.path.join(d, "peers.txt"), "w") as f:
                f.writelines(f"127.0.0.1:{ports[p]}\n" for p in sorted(peers))
            mport = free_port()
            log = open(os.path.join(d, "node.log"), "w")
            proc = subprocess.Popen(
                [BIN, "node", "--listen", f"127.0.0.1:{port}", "--dir", os.path.join(d, "share"),
                 "--peers", os.path.join(d, "peers.txt"), "--join", "--max-links", str(max_links),
                 "--metrics", f"127.0.0.1:{mport}", "--min-free", "0"],
                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, XDG_STATE_HOME=root, RUST_LOG="warn"),
            )
            nodes.append({"port": port, "mport": mport, "dir": d, "proc": proc})
            time.sleep(0.02)

        def everyone_counted(name=None):
            for node in nodes:
                st = query(node["port"], root)
                if st is None or st.get("participants") != n:
                    return False
                if name is not None:
                    files = st.get("files", [])
                    if name not in files or st["leastReplication"][files.index(name)] != n:
                        return False
            return True

        t0 = time.time()
        while not everyone_counted():
            dead = [i for i, node in enumerate(nodes) if node["proc"].poll() is not None]
            if dead:
                raise SystemExit(f"{n} nodes: node(s) {dead} exited; see their node.log (--keep)")
            if time.time() - t0 > 300:
                seen = [(query(node["port"], root) or {}) for node in nodes]
                counts = sorted((st.get("participants", -1), len(st.get("peers", []))) for st in seen)
                raise SystemExit(f"{n} nodes: gossip did not count everyone in 300 s; (participants, links): {counts}")
            time.sleep(1)
        gossip_s = time.time() - t0

        src = os.path.join(root, "payload.bin")
        with open(src, "wb") as f:
            f.write(random.randbytes(size_mib * 1024 * 1024))
        size = os.path.getsize(src)
        before = control_by_kind(nodes)
        start = time.time()
        subprocess.run([BIN, "insert", "--node", f"127.0.0.1:{ports[0]}", src], check=True,
                       capture_output=True, env=dict(os.environ, XDG_STATE_HOME=root))
        pending = list(range(n))
        while pending:
            pending = [i for i in pending
                       if not (os.path.exists(p := os.path.join(nodes[i]["dir"], "share", "payload.bin"))
                               and os.path.getsize(p) == size)]
            if time.time() - start > 900:
                raise SystemExit(f"{n} nodes: {len(pending)} still without the file after 900 s")
            time.sleep(0.05)
        replicate_s = time.time() - start
        while not everyone_counted("payload.bin"):
            if time.time() - start > 900:
                raise SystemExit(f"{n} nodes: status never reached least replication {n}")
            time.sleep(1)
        status_s = time.time() - start
        after = control_by_kind(nodes)
        by_kind = {k: after[k] - before[k] for k in KINDS}
        control = sum(by_kind.values())
        payload = sum(metric(node["mport"], "torronto_sent_bytes_total") for node in nodes)
        links = max(len(query(node["port"], root)["peers"]) for node in nodes)
        rss = [peak_rss_kib(node["proc"].pid) / 1024 for node in nodes]
        return {
            "nodes": n, "replicate_s": replicate_s, "status_s": status_s, "gossip_s": gossip_s,
            "links": links, "rss_max": max(rss), "rss_median": statistics.median(rss),
            "control_pct": 100.0 * control / max(payload, 1), "payload_mib": payload / 2**20,
            "kinds_pct": {k: 100.0 * v / max(payload, 1) for k, v in by_kind.items()},
        }
    finally:
        for node in nodes:
            node["proc"].send_signal(signal.SIGKILL)
        for node in nodes:
            node["proc"].wait()
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="8,32,64,128,256")
    ap.add_argument("--size", type=int, default=16, help="MiB")
    ap.add_argument("--max-links", type=int, default=32)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "torronto-node"], cwd=REPO, check=True)
    print(f"{args.size} MiB to every node, --max-links {args.max_links}, loopback, release build, "
          f"{os.cpu_count()} cores")
    print("| nodes | replicated (s) | status exact (s) | gossip at start (s) | most links | peak RSS max / median (MiB) "
          "| control / payload | of which " + " / ".join(KINDS) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.nodes.split(",")]:
        r = run(n, args.size, args.max_links, args.keep)
        print(f"| {r['nodes']} | {r['replicate_s']:.1f} | {r['status_s']:.1f} | {r['gossip_s']:.1f} | {r['links']} "
              f"| {r['rss_max']:.1f} / {r['rss_median']:.1f} | {r['control_pct']:.2f} % "
              f"(payload {r['payload_mib']:.0f} MiB) | "
              + " / ".join(f"{r['kinds_pct'][k]:.2f}" for k in KINDS) + " % |", flush=True)


if __name__ == "__main__":
    main()
