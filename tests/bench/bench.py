#!/usr/bin/env python3
"""Helpers for tests/bench/replication.sh (Python 3 standard library only).

  bench.py tracker PORT LOGFILE [HOST] a tiny HTTP BitTorrent tracker on HOST:PORT (HOST
                                      127.0.0.1 unless given; shaped.py binds its bridge)
  bench.py wait-seeder URL PORT SECS  until the tracker has seen PORT announce left=0
  bench.py wait STARTFILE SECS OUTJSON ROLE=PID,... TARGET...
                                      polls until every TARGET is done; samples CPU use
      TARGET: file:PATH:SIZE          PATH exists with SIZE bytes
              exists:PATH             PATH exists
              rqbit:HTTPADDR          rqbit's API says torrent 0 is finished
  bench.py query-latency HOST:PORT DIR COUNT ROUNDS TOKEN
                                      inserts COUNT small files, then times ROUNDS Queries
  bench.py table RESULTS.json SIZE_MIB  prints the summary table, and BROKEN FLOOR where a
                                      tool beat the floor (tests/bench/floor) in a round
  bench.py estimate RESULTS.json SIZE_MIB N HASH.json NET.json WRITE.json
                                      the floor predicted from the per-byte costs measured,
                                      beside the floor measured
"""

import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---------------------------------------------------------------------------------------
# Tracker


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        out = b"d"
        for k in sorted(v, key=lambda k: k.encode() if isinstance(k, str) else k):
            out += bencode(k) + bencode(v[k])
        return out + b"e"
    raise TypeError(type(v))


def tracker(port, logfile, host="127.0.0.1"):
    swarms = {}  # info_hash -> {peer_id: {"ip","port","left"}}
    lock = threading.Lock()
    log = open(logfile, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/reset":
                with lock:
                    swarms.clear()
                log.write(f"{time.time():.3f} reset\n")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if url.path == "/state":
                with lock:
                    body = json.dumps(
                        {h.hex(): list(p.values()) for h, p in swarms.items()}
                    ).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            q = urllib.parse.parse_qs(url.query, encoding="latin-1", keep_blank_values=True)
            try:
                info_hash = q["info_hash"][0].encode("latin-1")
                peer_id = q["peer_id"][0].encode("latin-1")
                pport = int(q["port"][0])
                left = int(q.get("left", ["-1"])[0])
                event = q.get("event", [""])[0]
            except (KeyError, ValueError):
                body = bencode({"failure reason": "bad announce"})
            else:
                ip = self.client_address[0]
                with lock:
                    swarm = swarms.setdefault(info_hash, {})
                    if event == "stopped":
                        swarm.pop(peer_id, None)
                    else:
                        swarm[peer_id] = {"ip": ip, "port": pport, "left": left}
                    others = [p for pid, p in swarm.items() if pid != peer_id]
                log.write(f"{time.time():.3f} announce port={pport} left={left} event={event!r} -> {len(others)} peers\n")
                peers = b"".join(socket.inet_aton(p["ip"]) + struct.pack(">H", p["port"]) for p in others)
                body = bencode({"interval": 5, "min interval": 1, "complete": 0, "incomplete": 0, "peers": peers})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer((host, port), Handler).serve_forever()


def wait_seeder(url, port, secs):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/state", timeout=2) as r:
                state = json.load(r)
            for peers in state.values():
                if any(p["port"] == port and p["left"] == 0 for p in peers):
                    return 0
        except OSError:
            pass
        time.sleep(0.1)
    print(f"the seeder on port {port} did not announce itself complete within {secs} s", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------------------
# Waiting for completion, with CPU sampling

CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """User+system CPU seconds of a process (its threads included), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except OSError:
        return None


def thread_cpu(pid):
    """CPU seconds per thread of a process: {tid: (name, seconds)}."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                raw = f.read()
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            out[tid] = (name, (int(fields[11]) + int(fields[12])) / CLK)
        except (OSError, ValueError):
            pass
    return out


def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v), idle


def rqbit_done(addr):
    try:
        with urllib.request.urlopen(f"http://{addr}/torrents/0/stats/v1", timeout=1) as r:
            s = json.load(r)
    except (OSError, ValueError):
        return False
    return bool(s.get("finished")) or (
        s.get("total_bytes", 0) > 0 and s.get("progress_bytes") == s.get("total_bytes") and s.get("state") == "live"
    )


def target_done(t):
    kind, rest = t.split(":", 1)
    if kind == "file":
        path, size = rest.rsplit(":", 1)
        try:
            return os.stat(path).st_size == int(size)
        except OSError:
            return False
    if kind == "exists":
        return os.path.exists(rest)
    if kind == "rqbit":
        return rqbit_done(rest)
    raise SystemExit(f"unknown target {t}")


def wait(startfile, secs, out, pids, targets):
    """Samples the CPU time of the PIDS already running, tells the script it is ready
    (STARTFILE.ready), then waits for STARTFILE, which holds the start time. Processes
    started after the clock are listed in STARTFILE.pids (role=pid,...; counted from zero)."""
    pids = dict(p.split("=", 1) for p in pids.split(",") if p)  # role -> pid
    cpu0 = {r: proc_cpu(p) for r, p in pids.items()}
    threads0 = {r: thread_cpu(p) for r, p in pids.items()}
    tot0, idle0 = machine_cpu()
    open(startfile + ".ready", "w").close()
    give_up = time.time() + 60
    while not os.path.exists(startfile):
        if time.time() > give_up:
            raise SystemExit("the script never started the clock")
        time.sleep(0.005)
    with open(startfile) as f:
        start = float(f.read().strip())
    done = {}
    deadline = start + secs
    # `top` snapshots (1 s in, then every 3 s) come from their own thread: `top -b -n1`
    # takes about 0.16 s to sample, and polled from this loop it left the targets
    # unwatched meanwhile, so whatever finished just after 1.0 s was timed at about 1.2 s.
    snaps = []
    stop_snaps = threading.Event()

    def snapshots():
        while not stop_snaps.wait(max(0.0, start + 1.0 + 3.0 * len(snaps) - time.time())):
            t = time.time()
            try:
                top = subprocess.run(["top", "-b", "-n1", "-w", "160"], capture_output=True, text=True, timeout=5).stdout
            except (OSError, subprocess.SubprocessError):
                top = ""
            snaps.append({"t": round(t - start, 2), "top": "\n".join(top.splitlines()[:16])})

    snapper = threading.Thread(target=snapshots, daemon=True)
    snapper.start()
    while len(done) < len(targets):
        now = time.time()
        for t in targets:
            if t not in done and target_done(t):
                done[t] = time.time() - start
        if len(done) == len(targets):
            break
        if now > deadline:
            break
        time.sleep(0.02)
    stop_snaps.set()
    end = time.time()
    tot1, idle1 = machine_cpu()
    try:
        with open(startfile + ".pids") as f:
            for p in f.read().strip().split(","):
                if p:
                    r, pid = p.split("=", 1)
                    pids[r] = pid
                    cpu0[r] = 0.0
    except OSError:
        pass
    threads = {}
    for r, p in pids.items():
        before = threads0.get(r, {})
        by_name = {}
        for tid, (name, sec) in thread_cpu(p).items():
            d = sec - before.get(tid, (name, 0.0))[1]
            if d > 0:
                by_name[name] = by_name.get(name, 0.0) + d
        threads[r] = {k: round(v, 2) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1])}
    cpu = {}
    for r, p in pids.items():
        c1 = proc_cpu(p)
        if cpu0[r] is not None and c1 is not None:
            cpu[r] = round(c1 - cpu0[r], 2)
    busy = 1.0 - (idle1 - idle0) / max(1, tot1 - tot0)
    result = {
        "ok": len(done) == len(targets),
        "seconds": round(max(done.values()) if done else end - start, 3),
        "per_target": done,
        "cpu_seconds": cpu,
        "threads": threads,
        "machine_busy": round(busy, 3),
        "ncpu": os.cpu_count(),
        "top": snaps,
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    if not result["ok"]:
        missing = [t for t in targets if t not in done]
        print(f"timed out after {secs} s; not done: {missing}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------
# Query latency over the wire protocol


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise ConnectionError("node closed the connection")
        buf += b
    return bytes(buf)


def send_msg(s, header):
    h = json.dumps(header, separators=(",", ":")).encode()
    s.sendall(struct.pack(">I", len(h)) + h)


def recv_frame(s):
    (n,) = struct.unpack(">I", recv_exact(s, 4))
    return recv_exact(s, n)


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def pct(xs, p):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def query_latency(addr, d, count, rounds, token):
    os.makedirs(d, exist_ok=True)
    rng = random.Random(7)
    t0 = time.time()
    s = connect(addr)
    for i in range(count):
        path = os.path.join(d, f"small-{i:04d}.bin")
        with open(path, "wb") as f:
            f.write(rng.randbytes(rng.randint(1024, 10240)))
        send_msg(s, {"Action": 2, "Files": [{"FileName": path}], "Token": token})
        reply = json.loads(recv_frame(s))
        if reply.get("Code") != 0:
            raise SystemExit(f"insert {path}: {reply}")
    s.close()
    insert_s = time.time() - t0

    def one(sock):
        """One Query round trip; returns (ms, status JSON bytes). A status too large
        for a header comes as a body frame, announced by "Body": "status"."""
        t = time.perf_counter()
        send_msg(sock, {"Action": 3, "Token": token})
        raw = recv_frame(sock)
        if json.loads(raw).get("Body") == "status":
            raw = recv_frame(sock)
        dt = (time.perf_counter() - t) * 1000
        return dt, raw

    # fresh connection per Query, as `torronto query` does
    fresh = []
    size = 0
    nfiles = None
    for _ in range(rounds):
        t = time.perf_counter()
        sock = connect(addr)
        _, raw = one(sock)
        fresh.append((time.perf_counter() - t) * 1000)
        sock.close()
        size = len(raw)
        nfiles = json.loads(raw).get("numFiles")
    # one persistent connection
    sock = connect(addr)
    kept = [one(sock)[0] for _ in range(rounds)]
    sock.close()
    print(
        json.dumps(
            {
                "files": nfiles,
                "insert_seconds": round(insert_s, 2),
                "reply_bytes": size,
                "fresh_median_ms": round(statistics.median(fresh), 2),
                "fresh_p99_ms": round(pct(fresh, 99), 2),
                "kept_median_ms": round(statistics.median(kept), 2),
                "kept_p99_ms": round(pct(kept, 99), 2),
                "rounds": rounds,
            }
        )
    )


# ---------------------------------------------------------------------------------------
# Table


def table(path, size_mib):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rounds = sorted({r.get("round", 1) for r in rows})
    mib = lambda kib: f"{kib / 1024:.1f} MiB" if kib else "?"
    print(f"{'tool':<10} {'round':>5} {'seconds':>8} {'MiB/s':>8} {'leecher RSS max':>16} {'seeder RSS':>11}  ok")
    for r in rows:
        if r.get("seconds") is None:
            print(f"{r['tool']:<10} {r.get('round', 1):>5} {'failed':>8}")
            continue
        rate = r["leechers"] * size_mib / r["seconds"]
        # The floor's receivers are not a tool's processes: no memory figure for them.
        lrss, srss = ("-", "-") if r["tool"] == "floor" else (mib(r["leecher_rss_kib"]), mib(r["seeder_rss_kib"]))
        print(
            f"{r['tool']:<10} {r.get('round', 1):>5} {r['seconds']:>8.2f} {rate:>8.1f} "
            f"{lrss:>16} {srss:>11}  {'yes' if r['ok'] else 'NO'}"
        )
    seconds = {}  # (tool, round) -> seconds
    for r in rows:
        if r.get("seconds"):
            seconds[(r["tool"], r.get("round", 1))] = r["seconds"]
    # A floor is the least any tool can take; a tool under it in the same round means the
    # floor does more than it must, and its figures bound nothing.
    broken = [(n, t, s, seconds[("floor", n)]) for (t, n), s in sorted(seconds.items())
              if t != "floor" and ("floor", n) in seconds and s < seconds[("floor", n)]]
    for n, t, s, f in broken:
        print(f"BROKEN FLOOR: round {n}: {t} took {s:.2f} s, the floor {f:.2f} s")
    if not broken and any(t == "floor" for t, _ in seconds) and len({t for t, _ in seconds}) > 1:
        print("the floor held: no tool beat it in any round")
    # On a machine busy with other work the wall clock also measures each tool's share of
    # the cores (more runnable threads, more share); the work itself is the CPU it used.
    cpu = {}  # (tool, round) -> CPU-seconds of all its processes in the timed window
    for r in rows:
        c = r.get("cpu_seconds") or {}
        if r.get("seconds") and c:
            cpu[(r["tool"], r.get("round", 1))] = c["all"] if r["tool"] == "floor" else sum(c.values())
    if any(t == "floor" for t, _ in cpu) and len({t for t, _ in cpu}) > 1:
        print("CPU-seconds per round (all of a tool's processes):")
        for t in sorted({t for t, _ in cpu}, key=lambda t: t != "floor"):
            print(f"  {t:<9} " + "  ".join(f"{cpu[(t, n)]:.2f}" if (t, n) in cpu else "-" for n in rounds))
        less = [(n, t, c, cpu[("floor", n)]) for (t, n), c in sorted(cpu.items())
                if t != "floor" and ("floor", n) in cpu and c < cpu[("floor", n)]]
        for n, t, c, f in less:
            print(f"BROKEN FLOOR (CPU): round {n}: {t} used {c:.2f} CPU-s, the floor {f:.2f}")
        if not less:
            print("by CPU the floor held: no tool used less in any round")
    ours = [r for r in rows if r["tool"] in ("torronto", "private")]
    if not any(r.get("seconds") for r in ours):
        return
    # Each round runs the tools one after another, so a ratio compares runs made
    # minutes apart at most; the median over rounds damps a busy moment on a shared machine.
    def ratios(a, b):
        return [seconds[(a, n)] / seconds[(b, n)] for n in rounds if (a, n) in seconds and (b, n) in seconds]

    # DESIGN.md §8: at most 0.8 x rqbit's time; aria2 is shown for comparison only.
    for other, target in (("rqbit", 0.8), ("aria2", None)):
        rs = ratios("torronto", other)
        if not rs:
            continue
        med = statistics.median(rs)
        line = (f"ratio torronto/{other}: median {med:.2f} over {len(rs)} round(s) "
                f"({', '.join(f'{x:.2f}' for x in rs)})")
        if target is not None:
            met = sum(x <= target for x in rs)
            line += f"; target <= {target}: {'meets' if med <= target else 'misses'} (met in {met} of {len(rs)})"
        print(line)
    rs = ratios("private", "torronto")
    if rs:
        med = statistics.median(rs)
        print(f"ratio private/open (torronto with --secret over without): median {med:.2f} over {len(rs)} round(s) "
              f"({', '.join(f'{x:.2f}' for x in rs)}); target <= 1.15: {'meets' if med <= 1.15 else 'misses'}")
    # The floor does only the work no tool can skip; where even it takes more than a
    # third of aria2's time, that target is out of reach on this machine for any tool.
    for a, b, what in (("floor", "rqbit", "the least possible ratio to rqbit"),
                       ("floor", "aria2", "the least possible ratio to aria2"),
                       ("torronto", "floor", "torronto's time over the floor; target <= 1.25")):
        rs = ratios(a, b)
        if rs:
            print(f"ratio {a}/{b} ({what}): median {statistics.median(rs):.2f} "
                  f"({', '.join(f'{x:.2f}' for x in rs)})")
    peak = max(max(r["leecher_rss_kib"] or 0, r["seeder_rss_kib"] or 0) for r in ours) / 1024
    print(f"torronto peak RSS per node: {peak:.1f} MiB  (target <= 64 MiB: {'meets' if peak <= 64 else 'misses'})")


# ---------------------------------------------------------------------------------------
# The floor predicted from per-byte costs


def estimate(path, size_mib, n, hash_json, net_json, write_json):
    """Each of the N receivers receives, hashes and writes SIZE_MIB; the sender's sendfile
    and the receiver's read copy are in the loopback cost. CPU-seconds per byte from the
    probes, summed over all the bytes, spread over every core: what the floor should take
    on an idle machine. On a shared one the floor measured takes longer (others' work)."""
    size = size_mib * 1048576
    costs = {}
    for what, p in (("SHA-256 per 64 KiB", hash_json), ("loopback TCP", net_json), ("page-cache write", write_json)):
        with open(p) as f:
            probe = json.load(f)
        costs[what] = (probe["cpu_seconds"] / probe["bytes"], probe["bytes"] / probe["seconds"])
    per_byte = sum(c for c, _ in costs.values())
    work = n * size * per_byte
    cores = os.cpu_count() or 1
    # With two threads a receiver takes at least as long as its slower thread: receiving,
    # or hashing and writing.
    path_s = size * max(costs["loopback TCP"][0], costs["SHA-256 per 64 KiB"][0] + costs["page-cache write"][0])
    est = max(work / cores, path_s)
    print("per-byte costs measured in this run (per CPU-second; per wall-second in brackets):")
    for what, (c, wall) in costs.items():
        print(f"  {what:<20} {1 / c / 1e9:5.2f} GB/s  ({wall / 1e9:.2f} GB/s)")
    print(f"floor estimate: {n} x {size_mib:g} MiB x {per_byte * 1e9:.2f} ns/B = {work:.2f} CPU-s over {cores} cores"
          f" -> {est:.2f} s")
    with open(path) as f:
        floors = [r for r in map(json.loads, f) if r["tool"] == "floor" and r.get("seconds")]
    if floors:
        secs = [r["seconds"] for r in floors]
        cpu = [r["cpu_seconds"].get("all", 0) for r in floors]
        print(f"floor measured: median {statistics.median(secs):.2f} s ({', '.join(f'{x:.2f}' for x in secs)}), "
              f"{statistics.median(cpu):.2f} CPU-s; measured/estimate {statistics.median(secs) / est:.2f} "
              f"(above 1: other work on the machine, or costs the probes miss); it had "
              f"{statistics.median(c / (x * cores) for c, x in zip(cpu, secs)) * 100:.0f} % of the {cores} cores")


def bt_table(path, size_mib):
    """--only bt-seed: per round, the seconds until every aria2c leecher had the file with
    torronto seeding and with aria2c seeding the same torrent, their ratio and the median;
    a markdown table, with each seeder's CPU-seconds in the window and its peak RSS."""
    with open(path) as f:
        rows = {(r["tool"], r.get("round", 1)): r for r in map(json.loads, f)}
    rounds = sorted({n for _, n in rows})
    leechers = next(iter(rows.values()))["leechers"] if rows else 0
    secs = lambda t, n: (rows.get((t, n)) or {}).get("seconds")
    cpu = lambda t, n: ((rows.get((t, n)) or {}).get("cpu_seconds") or {}).get("seeder")
    rss = lambda t, n: (rows.get((t, n)) or {}).get("seeder_rss_kib", 0) / 1024 or None
    fmt = lambda x, spec=".2f": "failed" if x is None else format(x, spec)
    print(f"\n{size_mib:g} MiB to {leechers} aria2c leechers on loopback (seconds until every leecher has the whole file):\n")
    print("| round | torronto seeds, s | aria2c seeds, s | torronto/aria2c | seeder CPU-s: torronto | aria2c "
          "| seeder RSS MiB: torronto | aria2c |")
    print("|---|---|---|---|---|---|---|---|")
    ratios, ts, as_ = [], [], []
    for n in rounds:
        t, a = secs("torronto-bt", n), secs("aria2-bt", n)
        ratio = t / a if t and a else None
        if ratio is not None:
            ratios.append(ratio)
        ts += [t] if t else []
        as_ += [a] if a else []
        print(f"| {n} | {fmt(t)} | {fmt(a)} | {fmt(ratio)} | {fmt(cpu('torronto-bt', n), '.1f')} | {fmt(cpu('aria2-bt', n), '.1f')} "
              f"| {fmt(rss('torronto-bt', n), '.1f')} | {fmt(rss('aria2-bt', n), '.1f')} |")
    med = lambda xs: statistics.median(xs) if xs else None
    print(f"| median | {fmt(med(ts))} | {fmt(med(as_))} | {fmt(med(ratios))} | | | | |")
    if ratios:
        verdict = "no slower" if med(ratios) <= 1.0 else "SLOWER"
        print(f"\ntorronto seeding is {verdict} than aria2c seeding: median ratio {med(ratios):.2f} over {len(ratios)} round(s)")


def main(argv):
    cmd = argv[1]
    if cmd == "tracker":
        tracker(int(argv[2]), argv[3], *argv[4:5])
    elif cmd == "wait-seeder":
        return wait_seeder(argv[2], int(argv[3]), float(argv[4]))
    elif cmd == "wait":
        return wait(argv[2], float(argv[3]), argv[4], argv[5], argv[6:])
    elif cmd == "query-latency":
        query_latency(argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6])
    elif cmd == "table":
        table(argv[2], float(argv[3]))
    elif cmd == "bt-table":
        bt_table(argv[2], float(argv[3]))
    elif cmd == "estimate":
        estimate(argv[2], float(argv[3]), int(argv[4]), argv[5], argv[6], argv[7])
    elif cmd == "free-ports":
        socks = []
        for _ in range(int(argv[2])):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv) or 0)
