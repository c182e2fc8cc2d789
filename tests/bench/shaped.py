#!/usr/bin/env python3
"""Shaped-links replication benchmark (issue 14): torronto, aria2 and rqbit in one topology
of network namespaces with capped uplinks and downlinks, timed against the peer-assisted
lower bound.

  tests/bench/shaped.py [--case uniform|hetero|both] [--size MiB] [--nodes N] [--rounds N]
                        [--only TOOL,...] [--torronto [LABEL=]PATH]... [--private]
                        [--timeout SECS] [--work DIR] [--keep] [--timeline] [--queues] [--oracle-pacer] [--chunk-trace]
                        [--upload-limits NODES[,SEEDER]] [--auto-upload-limit]

Runs as root (it makes namespaces and qdiscs), Python 3 standard library only.

Topology: a hub namespace (tsh-hub) holds a Linux bridge with 10.77.0.254, where the
tracker of tests/bench/bench.py listens. Each participant has its own namespace (tsh-0 the
seeder, tsh-1..tsh-N the nodes) with `lo` up and a veth `eth0` at 10.77.0.(i+1) plugged into
the bridge. Upload cap: an htb class on the participant's eth0 egress; download cap: an htb
class on the hub-side end of its veth (egress towards the participant). htb counts whole
frames, headers included, so a transfer's payload gets about 95 % of the rate at best.
Stale tsh-* namespaces are deleted at start; everything (namespaces, processes, the work
folder unless --keep or --work) is removed on exit, Ctrl-C and SIGTERM included.

No delay: this kernel has no netem (nor fq_codel, fq or sfq: htb classes keep their default
leaf), and a user-space relay adding delay would itself cost CPU on a 2-core machine and
blur what is measured. The links here are rate-limited only, with sub-millisecond latency.

Cases:
  uniform  seeder up 100 / down 100 Mbit/s, every node up 100 / down 100
  hetero   seeder up 200 / down 200, nodes up 50 (odd-numbered) or 100 (even), down 100

The lower bound (F the file size in bits, u_s the seeder's uplink, u_i the nodes' uplinks,
d_min the least node downlink, all bit/s; N nodes):
  T_min = max(F / u_s, N * F / (u_s + sum u_i), F / d_min)
the seeder must send every bit once, the N copies must cross the uplinks taken together,
and the slowest downlink must take a whole copy. For 128 MiB both cases give 10.74 s.

Tools, their order rotating each round, the same topology for all:
  torronto  every participant runs `torronto node --listen 10.77.0.X:7001 --open` (a row
            `private` with `--secret` instead, given --private) with a peers file naming all;
            `--torronto LABEL=PATH` (repeatable) gives each build its own row. The seeder
            joins and inserts the file before the clock (untimed). The clock starts just
            before the nodes are told `join` and stops when every node's DIR/<name> exists
            with the full size (a node renames it there only once every chunk is verified).
  aria2     a torrent made by transmission-create for the tracker; the seeder aria2c checks
            its copy (--check-integrity) and announces itself complete before the clock; the
            clock starts just before the leechers start (each bound to its own address,
            --seed-ratio=0.0 so they trade until all are done) and stops when every one has run
            its --on-bt-download-complete hook.
  rqbit     as aria2 (when rqbit is on PATH): the seeder's announce before the clock, the
            leechers' HTTP APIs polled until each says finished.
Flags of aria2 and rqbit as in tests/bench/replication.sh.

--chunk-trace runs the torronto nodes with RUST_LOG=info,torronto::chunks=trace and prints,
after each torronto run, tests/bench/chunk_timeline.py on their logs: when each node got
its chunks and from whom, how far short of its downlink it was each second, what the
seeder sent twice, who fed whom mid-run, with the requests waiting on each link, and the
one-way delay each sender's uplink adds to its chunks (the trace costs the nodes some CPU:
compare timings without it).

--queues samples, four times a second over each timed run, the backlog of every participant's
uplink (the htb on its eth0) and downlink (the htb on the hub's end of its veth) with `tc`,
and prints per participant the median and 90th percentile of the queueing delay each makes
(backlog over the link's rate; also in results.json): whose own uplink is full, whose
downlink is (ten `tc` a sample cost a little CPU: compare timings without it).

--oracle-pacer adds, for each torronto build, a row LABEL+oracle in which a thread of this
script acts as a perfect automatic limit: every quarter second it reads each participant's
own uplink queue from its htb and, knowing the link's rate, limits (`torronto limit`) those
whose queue passes 8 ms to 95 % of their uplink's payload rate, raising a limit by 1 % a
tick up to 97 % while under 3 ms is queued. No real node can see the queue in its modem or
know its line's rate: the row bounds what an automatic limit could reach.

--auto-upload-limit adds, for each torronto build, a row LABEL+auto run with every node's
`--auto-upload-limit`: uploads held at 95 % of what an uplink was seen to carry while the
peers it sends to report its chunks queue (core/src/node/uplink.rs).

--upload-limits NODES[,SEEDER] adds, for each torronto build, a row LABEL@NODES[/SEEDER] run
with `--upload-limit` on every node at NODES (a fraction, like 0.95) of its uplink's payload
rate (rate x 1448/1514), and on the seeder at SEEDER of its own (no limit on the seeder when
SEEDER is left out): what an operator who knows each link's rate would set. Such a limit
keeps a node's uplink queue short, so the acknowledgements and requests of its downloads
do not wait behind its uploads (README, "Why the 50 Mbit/s nodes starve").

Per run: wall seconds; that over T_min; seeder copies (the seeder's eth0 tx bytes during the
run over F: 1.0 is each byte sent once, frame headers add a few per cent); node uplink use
(the mean over nodes of tx bits / (uplink rate x seconds)). Every copy is checked by SHA-256
after the clock stops; a wrong one fails the run. Rows also go to WORK/results.json.
"""

import argparse
import atexit
import concurrent.futures
import ctypes
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the tracker's helpers: wait_seeder, rqbit_done)

PREFIX = "tsh-"
HUB = PREFIX + "hub"
SUBNET = "10.77.0"
HUB_ADDR = SUBNET + ".254"
TRACKER_PORT = 6969
NODE_PORT = 7001
BT_PORT = 6881
RQBIT_API_PORT = 3030
MBIT = 1_000_000
# TCP over 1500-byte frames carries 1448 payload bytes (timestamps on) in the 1514 htb counts.
PAYLOAD = 1448 / 1514
NAME = "bench.bin"
CLONE_NEWNET = 0x40000000

CASES = {
    # case -> (seeder (up, down), node i -> (up, down)), Mbit/s
    "uniform": ((100, 100), lambda i: (100, 100)),
    "hetero": ((200, 200), lambda i: (50 if i % 2 else 100, 100)),
}


def netns(i):
    return f"{PREFIX}{i}"


def addr(i):
    return f"{SUBNET}.{i + 1}"


def step(msg):
    print(f"\033[1m==> {msg}\033[0m", file=sys.stderr, flush=True)


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


# ---------------------------------------------------------------------------------------
# Processes and cleanup

procs = []  # every process started and not yet stopped


def spawn(cmd, log, ns=None, env=None):
    """Starts CMD (in namespace NS) in its own process group, output to LOG."""
    full = (["ip", "netns", "exec", ns] if ns else []) + [str(c) for c in cmd]
    with open(log, "ab") as out:
        p = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env)
    procs.append(p)
    return p


def stop(ps):
    for p in ps:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in ps:
        p.wait()
        if p in procs:
            procs.remove(p)


def our_namespaces():
    out = run("ip", "netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def delete_namespaces():
    for ns in our_namespaces():
        subprocess.run(["ip", "netns", "del", ns], check=False)


cleanup_work = None  # the work folder to remove on exit, if any


def cleanup():
    stop(list(procs))
    delete_namespaces()
    if cleanup_work:
        shutil.rmtree(cleanup_work, ignore_errors=True)


def on_signal(signum, _frame):
    sys.exit(128 + signum)


# ---------------------------------------------------------------------------------------
# Topology and shaping


def build_topology(participants):
    delete_namespaces()
    run("ip", "netns", "add", HUB)
    run("ip", "-n", HUB, "link", "set", "lo", "up")
    run("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", HUB, "addr", "add", f"{HUB_ADDR}/24", "dev", "br0")
    run("ip", "-n", HUB, "link", "set", "br0", "up")
    for i in range(participants):
        ns = netns(i)
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", HUB, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "-n", HUB, "link", "set", f"v{i}", "master", "br0")
        run("ip", "-n", HUB, "link", "set", f"v{i}", "up")
        run("ip", "-n", ns, "addr", "add", f"{addr(i)}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")


leaf_qdisc = None  # fq_codel where the kernel has it; else htb's default leaf


def shape(ns, dev, mbit):
    global leaf_qdisc
    subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], capture_output=True)
    # r2q and an explicit quantum keep htb from warning that its computed quantum is big.
    run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10", "r2q", "1000")
    run("tc", "-n", ns, "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
        "rate", f"{mbit}mbit", "ceil", f"{mbit}mbit", "quantum", "1514")
    if leaf_qdisc is None:
        ok = subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "fq_codel"],
                            capture_output=True).returncode == 0
        leaf_qdisc = "fq_codel" if ok else "default"
    elif leaf_qdisc == "fq_codel":
        run("tc", "-n", ns, "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "fq_codel")


def apply_case(case, nodes):
    (sup, sdown), node = CASES[case]
    rates = [(sup, sdown)] + [node(i) for i in range(1, nodes + 1)]
    for i, (up, down) in enumerate(rates):
        shape(netns(i), "eth0", up)
        shape(HUB, f"v{i}", down)
    return rates


def t_min(size, rates):
    """The peer-assisted lower bound, its three terms (seconds) and what they are made of
    (F, u_s, Σu_i, d_min in bits and bit/s)."""
    f = size * 8
    us = rates[0][0] * MBIT
    sum_ui = sum(u for u, _ in rates[1:]) * MBIT
    dmin = min(d for _, d in rates[1:]) * MBIT
    n = len(rates) - 1
    terms = (f / us, n * f / (us + sum_ui), f / dmin)
    return max(terms), terms, (f, us, sum_ui, dmin)


def tx_bytes(i):
    link = json.loads(run("ip", "-n", netns(i), "-s", "-j", "link", "show", "eth0"))
    return link[0]["stats64"]["tx"]["bytes"]


def counters(participants):
    return [tx_bytes(i) for i in range(participants)]


class Periodic:
    """Calls `tick` every PERIOD seconds on a thread of its own, from `start` to `stop`."""

    PERIOD = 0.25

    def tick(self):
        raise NotImplementedError

    def start(self):
        self.running = True

        def loop():
            while self.running:
                self.tick()
                time.sleep(self.PERIOD)
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.running = False
        self.thread.join()
        return self


class Timeline(Periodic):
    """Every participant's bytes sent and received, sampled every 50 ms from the hub's end
    of its veth (where rx is what the participant sent): where a run's time goes."""

    PERIOD = 0.05

    def __init__(self, participants):
        self.n = participants
        self.samples = []  # (seconds since the clock started, [tx], [rx])

    def read(self):
        # One `ip` per sample: /sys shows the namespace it was mounted in, not the hub.
        links = {link["ifname"]: link["stats64"] for link in json.loads(run("ip", "-s", "-j", "link", "show"))}
        ends = [links[f"v{i}"] for i in range(self.n)]
        return [e["rx"]["bytes"] for e in ends], [e["tx"]["bytes"] for e in ends]

    def start(self, clock):
        self.clock, self.base = clock, self.read()
        super().start()

    def tick(self):
        tx, rx = self.read()
        self.samples.append((time.time() - self.clock, [a - b for a, b in zip(tx, self.base[0])],
                             [a - b for a, b in zip(rx, self.base[1])]))

    def first(self, cond):
        return next((t for t, tx, rx in self.samples if cond(tx, rx)), float("nan"))

    def milestones(self, size, done):
        """When the seeder's uplink got busy and finished, and when each node had half and
        all of its bytes: the start, the middle and the tail of a run."""
        seeder_total = self.samples[-1][1][0] if self.samples else 0
        lines = ["    timeline (s): seeder sent 1 MiB at {:.2f}, 50 % of its bytes at {:.2f}, 99 % at {:.2f}, "
                 "all at {:.2f}".format(self.first(lambda tx, rx: tx[0] >= 1 << 20),
                                        self.first(lambda tx, rx: tx[0] >= seeder_total / 2),
                                        self.first(lambda tx, rx: tx[0] >= 0.99 * seeder_total),
                                        self.first(lambda tx, rx: tx[0] >= seeder_total))]
        for i in range(1, self.n):
            got = [self.first(lambda tx, rx, q=q: rx[i] >= q * size) for q in (0.01, 0.5, 0.9)]
            lines.append(f"      n{i}: 1 % at {got[0]:.2f}, 50 % at {got[1]:.2f}, 90 % at {got[2]:.2f}, "
                         f"done at {done.get(f'n{i}', done.get(f'l{i}', float('nan'))):.2f}")
        # What the seeder sent in each second of the run.
        def sent_by(t):
            return max((tx[0] for at, tx, rx in self.samples if at <= t), default=0)
        per_second = [f"{(sent_by(sec + 1) - sent_by(sec)) * 8 / 1e6:.0f}"
                      for sec in range(int(self.samples[-1][0]) + 1 if self.samples else 0)]
        lines.append("      seeder Mbit/s per second: " + " ".join(per_second))
        return "\n".join(lines)


class Queues(Periodic):
    """What waits in every participant's uplink (the htb on its eth0) and downlink (the htb
    on the hub's end of its veth), sampled four times a second from `tc`: where a run's
    packets queue, as delay (backlog over the link's rate). A node's own full uplink holds
    up the acknowledgements and requests of its downloads; a full downlink is its peers'."""

    def __init__(self, rates):
        self.rates = rates  # (up, down) Mbit/s per participant
        self.up = [[] for _ in rates]
        self.down = [[] for _ in rates]

    @staticmethod
    def backlogs(ns, devs):
        """Bytes waiting in the root htb of each of DEVS in namespace NS (None: not shaped)."""
        qdiscs = json.loads(run("tc", "-n", ns, "-s", "-j", "qdisc", "show") or "[]")
        # The root htb's backlog counts what waits in its leaf.
        found = {q["dev"]: q.get("backlog", 0) for q in qdiscs if q.get("kind") == "htb" and q.get("root")}
        return [found.get(dev) for dev in devs]

    def tick(self):
        downs = self.backlogs(HUB, [f"v{i}" for i in range(len(self.rates))])
        for i, (up_mbit, down_mbit) in enumerate(self.rates):
            (up,) = self.backlogs(netns(i), ["eth0"])
            for series, backlog, mbit in ((self.up, up, up_mbit), (self.down, downs[i], down_mbit)):
                if backlog is not None:
                    series[i].append(backlog * 8 / (mbit * MBIT) * 1000)

    def summary(self):
        """Per participant, the median and 90th percentile of each direction's delay, ms."""
        def spread(ms):
            ms = sorted(ms)
            return [round(statistics.median(ms), 1), round(ms[(len(ms) * 9) // 10 - 1 if len(ms) > 1 else 0], 1)] if ms else None
        return {"up": [spread(ms) for ms in self.up], "down": [spread(ms) for ms in self.down]}

    def report(self):
        q = self.summary()
        lines = ["    queueing delay, ms (median / 90th percentile of samples 4 a second; backlog over the link's rate):"]
        for i, (up, down) in enumerate(self.rates):
            def show(d):
                return f"{d[0]:5.1f} / {d[1]:5.1f}" if d else "    -"
            name = "seeder" if i == 0 else f"n{i}"
            lines.append(f"      {name:6s}  up {up:3d} Mbit/s: {show(q['up'][i])}   down {down:3d} Mbit/s: {show(q['down'][i])}")
        return "\n".join(lines)


class OraclePacer(Periodic):
    """What an automatic upload limit could reach with perfect knowledge: every quarter
    second it reads each participant's own uplink queue from its htb (no real node can see
    the queue in its modem) and, knowing the link's rate, holds back only those whose queue
    builds. A participant whose uplink queue passes HIGH_MS is limited to SHARE of its
    uplink's payload rate; while limited with less than LOW_MS queued, its limit rises 1 % a
    tick, to CEILING at most; one whose queue never builds is never limited. Limits go
    through `torronto limit`, as an operator's would."""

    HIGH_MS, LOW_MS, SHARE, CEILING = 8.0, 3.0, 0.95, 0.97

    def __init__(self, rates, set_limit):
        self.payload = [up * MBIT / 8 * PAYLOAD for up, _ in rates]  # bytes/s each uplink carries
        self.set_limit = set_limit  # (participant, bytes per second)
        self.limits = [None] * len(rates)

    def tick(self):
        for i, capacity in enumerate(self.payload):
            (backlog,) = Queues.backlogs(netns(i), ["eth0"])
            queued_ms = (backlog or 0) * PAYLOAD / capacity * 1000
            limit = self.limits[i]
            if queued_ms > self.HIGH_MS:
                limit = self.SHARE * capacity
            elif limit and queued_ms < self.LOW_MS:
                limit = min(limit * 1.01, self.CEILING * capacity)
            if limit != self.limits[i]:
                try:
                    self.set_limit(i, int(limit))
                    self.limits[i] = limit
                except RuntimeError as e:
                    print(f"    oracle pacer: {e}", file=sys.stderr)

    def shares(self):
        """Each participant's last limit as a share of its uplink (None: never limited)."""
        return [round(limit / capacity, 3) if limit else None for limit, capacity in zip(self.limits, self.payload)]


def enter_hub():
    """Moves this process into the hub namespace: the tracker, the nodes' control ports and
    rqbit's APIs are reached over the bridge from here. `ip -n` still works from anywhere."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{HUB}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns into the hub namespace")
    os.close(fd)


def wait_port(host, port, secs=20):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def wait_done(targets, start, timeout):
    """Polls TARGETS ({name: callable}) until all are true or TIMEOUT seconds after START;
    returns (seconds of the last, names not done, {name: seconds})."""
    done = {}
    while len(done) < len(targets) and time.time() < start + timeout:
        for name, check in targets.items():
            if name not in done and check():
                done[name] = time.time() - start
        time.sleep(0.02)
    missing = [n for n in targets if n not in done]
    return (max(done.values()) if done and not missing else None), missing, done


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_complete(path, size):
    def check():
        try:
            return os.stat(path).st_size == size
        except OSError:
            return False
    return check


# ---------------------------------------------------------------------------------------
# The tools


class Bench:
    def __init__(self, args, work, file, size, digest):
        self.args, self.work, self.file, self.size, self.digest = args, work, file, size, digest
        self.n = args.nodes + 1
        self.torrent = None
        self.joined = None  # when each torronto node's join was answered, for --timeline
        self.rates = None  # the case's (up, down) per participant, set as each case starts

    def tracker_url(self):
        return f"http://{HUB_ADDR}:{TRACKER_PORT}"

    def reset_tracker(self):
        urllib.request.urlopen(self.tracker_url() + "/reset", timeout=5).read()

    def make_torrent(self):
        if self.torrent:
            return self.torrent
        self.torrent = os.path.join(self.work, "bench.torrent")
        run("transmission-create", "-o", self.torrent, "-t", self.tracker_url() + "/announce", self.file)
        return self.torrent

    def timed(self, start_clock_and_go, targets):
        """Reads the counters, runs START_CLOCK_AND_GO (which returns the start time), waits
        for TARGETS, reads the counters again; returns the measurements."""
        os.sync()  # dirty pages of the setup are written back before the clock, not during
        before = counters(self.n)
        sampler = Timeline(self.n) if self.args.timeline else None  # an `ip` every 50 ms: only when asked
        queues = Queues(self.rates) if self.args.queues else None  # ten `tc` a sample: only when asked
        if sampler:
            sampler.start(time.time())  # the clock starts within microseconds of this
        if queues:
            queues.start()
        start = start_clock_and_go()
        seconds, missing, done = wait_done(targets, start, self.args.timeout)
        timeline = sampler.stop() if sampler else None
        if queues:
            print(queues.stop().report(), file=sys.stderr)
        after = counters(self.n)
        if timeline and not missing:
            print(timeline.milestones(self.size, done), file=sys.stderr)
            if self.joined:
                print("      joins answered at " + " ".join(f"{t:.2f}" for t in self.joined), file=sys.stderr)
                self.joined = None
        tx = [a - b for a, b in zip(after, before)]
        per_node = {k: round(v, 3) for k, v in done.items()}
        extra = {"queues": queues.summary()} if queues else {}
        if missing:
            return {"ok": False, "error": f"timed out after {self.args.timeout} s; not done: {', '.join(missing)}",
                    "tx": tx, "per_node": per_node, **extra}
        return {"ok": True, "seconds": round(seconds, 3), "tx": tx, "per_node": per_node, **extra}

    def verify(self, paths, result):
        if not result["ok"]:
            return result
        bad = [p for p in paths if not os.path.isfile(p) or os.path.getsize(p) != self.size or sha256(p) != self.digest]
        if bad:
            result.update(ok=False, error="wrong copies: " + ", ".join(bad))
        return result

    # torronto ---------------------------------------------------------------------------

    def torronto(self, tool, base):
        binary = tool["path"]
        secure = []
        if tool["private"]:
            secret = os.path.join(base, "net.secret")
            run(binary, "secret", "new", "--out", secret)
            secure = ["--secret", secret]
        with open(os.path.join(base, "peers.txt"), "w") as f:
            f.writelines(f"{addr(i)}:{NODE_PORT}\n" for i in range(self.n))
        tokens = [secrets.token_hex(16) for _ in range(self.n)]
        envs = []
        nodes = []
        for i in range(self.n):
            d = os.path.join(base, f"n{i}")
            os.makedirs(d)
            # Every node listens on the same port in its own namespace: each gets its own
            # state folder, where a node registers its token under its port.
            env = dict(os.environ, NO_COLOR="1", TORRONTO_TOKEN=tokens[i], XDG_STATE_HOME=os.path.join(base, f"state{i}"))
            if self.args.chunk_trace:
                env["RUST_LOG"] = "info,torronto::chunks=trace"
                env.pop("JOURNAL_STREAM", None)  # logs with timestamps, as chunk_timeline.py reads them

            envs.append(env)
            cmd = [binary, "node", "--listen", f"{addr(i)}:{NODE_PORT}", "--dir", d,
                   "--peers", os.path.join(base, "peers.txt")] + (secure or ["--open"])
            nodes_share, seeder_share = tool.get("limits") or (None, None)
            share = seeder_share if i == 0 else nodes_share
            if share:
                cmd += ["--upload-limit", str(int(self.rates[i][0] * MBIT / 8 * PAYLOAD * share))]
            if tool.get("auto"):
                cmd += ["--auto-upload-limit"]
            if i == 0:
                # The insert comes over the bridge, not loopback: a remote insert by path
                # reaches only --insert-from folders.
                cmd += ["--insert-from", os.path.dirname(self.file)]
            nodes.append(spawn(cmd, os.path.join(base, f"n{i}.log"), ns=netns(i), env=env))
        try:
            for i in range(self.n):
                wait_port(addr(i), NODE_PORT)

            def cli(i, *a):
                r = subprocess.run([binary, *a, "--node", f"{addr(i)}:{NODE_PORT}", *secure],
                                   env=envs[i], capture_output=True, text=True)
                if r.returncode != 0:
                    raise RuntimeError(f"torronto {' '.join(a)} on node {i}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[:300]}")

            cli(0, "join")
            cli(0, "insert", self.file)

            def go():
                # All told at once, as the BitTorrent leechers are all started at once: one
                # after another, each join waited for answers queued behind the data the
                # nodes told before were already sending (0.6 s for the eighth).
                start = time.time()
                self.joined = []

                def join(i):
                    cli(i, "join")
                    self.joined.append(time.time() - start)
                with concurrent.futures.ThreadPoolExecutor(self.n - 1) as pool:
                    list(pool.map(join, range(1, self.n)))
                self.joined.sort()
                return start

            targets = {f"n{i}": file_complete(os.path.join(base, f"n{i}", NAME), self.size) for i in range(1, self.n)}
            pacer = None
            if tool.get("oracle"):
                pacer = OraclePacer(self.rates, lambda i, rate: cli(i, "limit", "--upload-limit", str(rate)))
                pacer.start()
            try:
                result = self.timed(go, targets)
            finally:
                if pacer:
                    shares = pacer.stop().shares()
                    print("    oracle pacer, last limits (share of each uplink; - for none): " +
                          " ".join("-" if sh is None else f"{sh:g}" for sh in shares), file=sys.stderr)
        finally:
            stop(nodes)
        if self.args.chunk_trace:
            down = min(d for _, d in self.rates[1:])
            logs = [os.path.join(base, f"n{i}.log") for i in range(self.n)]
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chunk_timeline.py")
            subprocess.run([sys.executable, script, "--rate", str(down), *logs], stdout=sys.stderr, check=False)
        return self.verify([os.path.join(base, f"n{i}", NAME) for i in range(1, self.n)], result)

    # aria2 ------------------------------------------------------------------------------

    def aria_args(self, i, d):
        a = addr(i)
        return [f"--dir={d}", "--seed-ratio=0.0", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                "--enable-peer-exchange=true", f"--listen-port={BT_PORT}", f"--interface={a}", "--disable-ipv6=true",
                f"--bt-external-ip={a}", "--file-allocation=falloc", "--auto-file-renaming=false", "--allow-overwrite=true",
                "--summary-interval=0", "--console-log-level=warn", "--no-conf=true", "--bt-save-metadata=false"]

    def seed_dir(self, base):
        d = os.path.join(base, "seed")
        os.makedirs(d)
        try:
            os.link(self.file, os.path.join(d, NAME))
        except OSError:
            shutil.copy(self.file, os.path.join(d, NAME))
        return d

    def wait_seeder(self, port):
        if bench.wait_seeder(self.tracker_url(), port, 120) != 0:
            raise RuntimeError("the seeder did not announce itself complete")

    def bt_swarm(self, base, seeder_cmd, leecher_cmd, leecher_done, env=None):
        """One BitTorrent seeder in namespace 0, started on a link of the file, checked and
        announced complete before the clock; the leechers (LEECHER_CMD(i, dir)) started on the
        clock, each in its own namespace, timed until LEECHER_DONE(i) for every one."""
        self.make_torrent()
        self.reset_tracker()
        started = [spawn(seeder_cmd(self.seed_dir(base)), os.path.join(base, "seed.log"), ns=netns(0), env=env)]
        try:
            self.wait_seeder(BT_PORT)

            def go():
                start = time.time()
                for i in range(1, self.n):
                    d = os.path.join(base, f"l{i}")
                    os.makedirs(d)
                    started.append(spawn(leecher_cmd(i, d), os.path.join(base, f"l{i}.log"), ns=netns(i), env=env))
                return start

            targets = {f"l{i}": (lambda i: lambda: leecher_done(i))(i) for i in range(1, self.n)}
            result = self.timed(go, targets)
        finally:
            stop(started)
        return self.verify([os.path.join(base, f"l{i}", NAME) for i in range(1, self.n)], result)

    def aria2(self, tool, base):
        torrent = self.make_torrent()
        hook = os.path.join(base, "hook.sh")
        with open(hook, "w") as f:
            f.write('#!/bin/sh\ntouch "$(dirname "$3")/.complete"\n')
        os.chmod(hook, 0o755)
        return self.bt_swarm(
            base,
            lambda d: ["aria2c", *self.aria_args(0, d), "--check-integrity=true", torrent],
            lambda i, d: ["aria2c", *self.aria_args(i, d), f"--on-bt-download-complete={hook}", torrent],
            lambda i: os.path.exists(os.path.join(base, f"l{i}", ".complete")))

    # rqbit ------------------------------------------------------------------------------

    def rqbit_cmd(self, i, d, *extra):
        a = addr(i)
        return ["rqbit", "--disable-dht", "--disable-dht-persistence", "--disable-upnp-port-forward", "--disable-lsd",
                "--http-api-listen-addr", f"{a}:{RQBIT_API_PORT}", "--listen-ip", a, "--listen-port", str(BT_PORT),
                "--announce-port", str(BT_PORT), "--ipv4-only", "download", "--output-folder", d, *extra, self.torrent]

    def rqbit(self, tool, base):
        self.make_torrent()
        all_peers = ",".join(f"{addr(i)}:{BT_PORT}" for i in range(self.n))
        return self.bt_swarm(
            base,
            lambda d: self.rqbit_cmd(0, d, "--overwrite"),
            lambda i, d: self.rqbit_cmd(i, d, "--initial-peers", all_peers),
            lambda i: bench.rqbit_done(f"{addr(i)}:{RQBIT_API_PORT}"),
            env=dict(os.environ, HOME=base, XDG_CACHE_HOME=os.path.join(base, "cache")))


# ---------------------------------------------------------------------------------------
# Report


def report(case, rows, tmin, tools):
    print(f"\n### {case}: T_min {tmin:.2f} s (payload at most 1448/1514 of each rate: the best reachable is about "
          f"{tmin / PAYLOAD:.2f} s = {1 / PAYLOAD:.3f} × T_min)\n")
    print("| tool | round | seconds | × T_min | seeder copies | node uplink use |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["ok"]:
            print(f"| {r['tool']} | {r['round']} | {r['seconds']:.2f} | {r['x_tmin']:.2f} | {r['seeder_copies']:.2f} "
                  f"| {r['node_uplink_use'] * 100:.0f} % |")
        else:
            print(f"| {r['tool']} | {r['round']} | failed: {r['error']} | | | |")
    med = {}
    for t in tools:
        secs = [r["seconds"] for r in rows if r["tool"] == t["label"] and r["ok"]]
        med[t["label"]] = statistics.median(secs) if secs else None
    print("\nmedians: " + "; ".join(f"{k} {v:.2f} s ({v / tmin:.2f} × T_min)" if v else f"{k} failed" for k, v in med.items()))
    for t in tools:
        if t["kind"] != "torronto":
            continue
        mine = med[t["label"]]
        for other in ("aria2", "rqbit"):
            if other in med and mine and med[other]:
                print(f"ratio {t['label']}/{other} (medians): {mine / med[other]:.2f}")
        if mine is None:
            print(f"{t['label']}: no successful run")
        else:
            verdict = "within" if mine <= 1.10 * tmin else "NOT within"
            print(f"{t['label']} is {verdict} 1.10 × T_min ({mine:.2f} s against {1.10 * tmin:.2f} s)")
            copies = statistics.median(r["seeder_copies"] for r in rows if r["tool"] == t["label"] and r["ok"])
            print(f"{t['label']}'s seeder sent the file {copies:.2f} times (median; about 1 is the target, "
                  f"{1 / PAYLOAD:.2f} with frame headers)")


# ---------------------------------------------------------------------------------------


def limit_shares(text):
    """NODES[,SEEDER] for --upload-limits: fractions of an uplink, above 0 and at most 1."""
    try:
        shares = [float(x) for x in text.split(",")]
    except ValueError:
        shares = []
    if not 1 <= len(shares) <= 2 or not all(0 < x <= 1 for x in shares):
        raise argparse.ArgumentTypeError(f"{text!r}: give NODES or NODES,SEEDER, fractions like 0.95")
    return (shares[0], shares[1] if len(shares) == 2 else None)


def parse_args():
    p = argparse.ArgumentParser(description="shaped-links replication benchmark (see the header of this file)")
    p.add_argument("--case", choices=["uniform", "hetero", "both"], default="both")
    p.add_argument("--size", type=int, default=128, help="file size in MiB")
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--only", default="", help="comma-separated tools or labels: torronto, private, aria2, rqbit, LABEL")
    p.add_argument("--torronto", action="append", default=[], metavar="[LABEL=]PATH")
    p.add_argument("--private", action="store_true", help="also run torronto with --secret instead of --open")
    p.add_argument("--timeout", type=float, default=180, help="seconds a run may take before it counts as failed")
    p.add_argument("--work", help="work folder (kept); default a fresh one under /tmp, removed unless --keep")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--timeline", action="store_true", help="print when each run's bytes moved (start, middle, tail)")
    p.add_argument("--oracle-pacer", action="store_true",
                   help="add a row LABEL+oracle per torronto build: limits set while it runs from each uplink's own queue "
                        "and known rate (what an automatic limit could reach)")
    p.add_argument("--queues", action="store_true",
                   help="print how long packets waited in each uplink and downlink (tc backlogs, 4 samples a second)")
    p.add_argument("--auto-upload-limit", action="store_true",
                   help="add a row LABEL+auto per torronto build, run with --auto-upload-limit")
    p.add_argument("--upload-limits", metavar="NODES[,SEEDER]", type=limit_shares,
                   help="also run each torronto build with --upload-limit at these fractions of each uplink's payload rate")
    p.add_argument("--chunk-trace", action="store_true",
                   help="trace torronto's chunk requests and arrivals and print tests/bench/chunk_timeline.py's report")
    a = p.parse_args()
    if a.size <= 0 or a.nodes <= 0 or a.rounds <= 0 or a.nodes > 200:
        p.error("--size, --nodes (at most 200) and --rounds take positive numbers")
    return a


def torronto_builds(specs):
    """[(label, path)] from the --torronto arguments; the repo's release build if none."""
    if not specs:
        path = os.path.join(REPO, "target", "release", "torronto")
        if not os.access(path, os.X_OK):
            step("building torronto (release)")
            subprocess.run(["cargo", "build", "--release", "-p", "torronto-node", "--quiet"], cwd=REPO, check=True)
            meta = json.loads(run("cargo", "metadata", "--format-version", "1", "--no-deps", cwd=REPO))
            path = os.path.join(meta["target_directory"], "release", "torronto")
        return [("torronto", path)]
    out = []
    for s in specs:
        label, _, path = s.partition("=") if "=" in s else ("torronto", "", s)
        path = os.path.abspath(path)
        if not os.access(path, os.X_OK):
            sys.exit(f"--torronto {s}: {path} is not an executable")
        out.append((label, path))
    if len({label for label, _ in out}) != len(out):
        sys.exit("--torronto: give each build its own LABEL=")
    return out


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit("shaped.py makes network namespaces: run it as root")
    os.environ["PATH"] = os.path.expanduser("~/.cargo/bin") + os.pathsep + os.environ.get("PATH", "")
    only = {x for x in args.only.split(",") if x}

    def wanted(kind, label):
        return not only or kind in only or label in only

    def limited_label(label):
        """The row of build `label` run with --upload-limits (no comma: --only splits on commas)."""
        nodes, seeder = args.upload_limits
        return f"{label}@{nodes:g}" + ("" if seeder is None else f"/{seeder:g}")

    tools = []
    spec_labels = {s.partition("=")[0] for s in args.torronto if "=" in s}
    limited = {limited_label(l) for l in spec_labels | {"torronto"}} if args.upload_limits else set()
    limited |= {f"{l}+oracle" for l in spec_labels | {"torronto"}} if args.oracle_pacer else set()
    limited |= {f"{l}+auto" for l in spec_labels | {"torronto"}} if args.auto_upload_limit else set()
    if not only or only & ({"torronto", "private"} | spec_labels | limited):
        for label, path in torronto_builds(args.torronto):
            plabel = "private" if label == "torronto" else f"{label}-private"
            if wanted("torronto", label):
                tools.append({"label": label, "kind": "torronto", "path": path, "private": False})
            if args.upload_limits and (wanted("torronto", label) or limited_label(label) in only):
                tools.append({"label": limited_label(label), "kind": "torronto", "path": path, "private": False,
                              "limits": args.upload_limits})
            if args.oracle_pacer and (wanted("torronto", label) or f"{label}+oracle" in only):
                tools.append({"label": f"{label}+oracle", "kind": "torronto", "path": path, "private": False,
                              "oracle": True})
            if args.auto_upload_limit and (wanted("torronto", label) or f"{label}+auto" in only):
                tools.append({"label": f"{label}+auto", "kind": "torronto", "path": path, "private": False,
                              "auto": True})
            if (args.private and not only) or "private" in only or plabel in only:
                tools.append({"label": plabel, "kind": "torronto", "path": path, "private": True})
    if wanted("aria2", "aria2"):
        missing = [c for c in ("aria2c", "transmission-create") if not shutil.which(c)]
        if missing:
            print(f"aria2: {', '.join(missing)} not installed, skipped")
        else:
            tools.append({"label": "aria2", "kind": "aria2"})
    if wanted("rqbit", "rqbit"):
        if shutil.which("rqbit") and shutil.which("transmission-create"):
            tools.append({"label": "rqbit", "kind": "rqbit"})
        else:
            print("rqbit: not installed, skipped")
    if not tools:
        sys.exit("no tool to run")

    global cleanup_work
    if args.work:
        work = os.path.abspath(args.work)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="torronto-shaped.", dir="/tmp")
        if not args.keep:
            cleanup_work = work
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    file = os.path.join(data, NAME)
    size = args.size * 1024 * 1024
    if not (os.path.isfile(file) and os.path.getsize(file) == size):
        step(f"creating a {args.size} MiB random file in {work}")
        with open(file, "wb") as f:
            for _ in range(args.size):
                f.write(os.urandom(1 << 20))
    digest = sha256(file)

    n = args.nodes + 1
    step(f"building the topology: hub + {n} namespaces ({PREFIX}*)")
    build_topology(n)
    enter_hub()
    spawn(["python3", os.path.join(HERE, "bench.py"), "tracker", TRACKER_PORT, os.path.join(work, "tracker.log"), HUB_ADDR],
          os.path.join(work, "tracker.out"))
    wait_port(HUB_ADDR, TRACKER_PORT)

    b = Bench(args, work, file, size, digest)
    cases = ["uniform", "hetero"] if args.case == "both" else [args.case]
    results = []
    summaries = []
    for case in cases:
        rates = apply_case(case, args.nodes)
        b.rates = rates
        tmin, (t1, t2, t3), (f_bits, us, sum_ui, dmin) = t_min(size, rates)
        summary = (f"{case}: seeder up/down {rates[0][0]}/{rates[0][1]} Mbit/s, nodes "
                   + ", ".join(f"{u}/{d}" for u, d in rates[1:]) + f" (htb leaf: {leaf_qdisc}, no delay)\n"
                   f"  T_min = max(F/u_s = {f_bits}/{us} = {t1:.2f} s, "
                   f"N·F/(u_s+Σu_i) = {args.nodes}·{f_bits}/({us}+{sum_ui}) = {t2:.2f} s, "
                   f"F/d_min = {f_bits}/{dmin} = {t3:.2f} s) = {tmin:.2f} s")
        print(summary, flush=True)
        summaries.append(summary)
        case_rows = []
        for rnd in range(1, args.rounds + 1):
            for k in range(len(tools)):
                tool = tools[(k + rnd - 1) % len(tools)]
                base = os.path.join(work, f"{case}-{tool['label']}-r{rnd}")
                shutil.rmtree(base, ignore_errors=True)
                os.makedirs(base)
                step(f"{case}, round {rnd}: {tool['label']}, 1 seeder + {args.nodes} nodes, {args.size} MiB")
                try:
                    r = getattr(b, tool["kind"])(tool, base)
                except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
                    detail = e.stderr.strip()[:300] if isinstance(e, subprocess.CalledProcessError) and e.stderr else ""
                    r = {"ok": False, "error": f"{e} {detail}".strip()}
                row = {"case": case, "tool": tool["label"], "round": rnd, "ok": r["ok"], "t_min": round(tmin, 3),
                       "seconds": r.get("seconds"), "error": r.get("error"), "tx_bytes": r.get("tx"),
                       "per_node_seconds": r.get("per_node")}
                if r["ok"]:
                    secs = r["seconds"]
                    tx = r["tx"]
                    row["x_tmin"] = round(secs / tmin, 3)
                    row["seeder_copies"] = round(tx[0] / size, 3)
                    row["node_uplink_use"] = round(statistics.mean(
                        tx[i] * 8 / (rates[i][0] * MBIT * secs) for i in range(1, n)), 3)
                    print(f"    {secs:.2f} s, {row['x_tmin']:.2f} × T_min, seeder copies {row['seeder_copies']:.2f}, "
                          f"node uplink use {row['node_uplink_use'] * 100:.0f} %", file=sys.stderr)
                else:
                    print(f"    FAILED: {row['error']}", file=sys.stderr)
                case_rows.append(row)
                results.append(row)
                with open(os.path.join(work, "results.json"), "w") as f:
                    json.dump(results, f, indent=1)
                if not args.keep:
                    for entry in os.listdir(base):
                        p = os.path.join(base, entry)
                        if os.path.isdir(p):
                            shutil.rmtree(p, ignore_errors=True)
        report(case, case_rows, tmin, tools)
    print(f"\n{args.size} MiB, 1 seeder + {args.nodes} nodes, {os.cpu_count()} cores; rows in {os.path.join(work, 'results.json')}"
          + ("" if cleanup_work is None else " (removed on exit; --keep keeps it)"))


if __name__ == "__main__":
    main()
