#!/usr/bin/env python3
"""Polite by measurement (issue 29): jobrun `bwlimit = "auto"` against a
competing bulk TCP flow and a latency probe on one shaped netlab link.

Run through benches/netlab-polite.sh (root; holds /tmp/netlab.lock). Each run:
`netlab reset`, then some of: an iperf3 flow between the two sides of the
link (its server inside the lab's namespace; `-R` for the read direction),
`ping -i 0.1` to the NAS side, one copy (rsync, jobrun at a fixed limit,
jobrun auto) of the `large` profile. Every 100 ms the sampler reads each TCP
connection's byte counters to 198.18.0.2 (`ss -tin`): port 22 is the copy
(sshfs), port 5201 the competitor, so each flow's own rate is known.

Cases (DIRS="rx tx", REPEATS=3):
  idle        ping alone
  comp        competitor alone (+ ping)
  X-alone     copy X alone (+ ping)              X in rsync, fixed, auto, fixedNN
  X-comp      competitor from 0 s, copy X from 2 s, both cut at 22 s
  X-mid       copy X from 0 s, competitor from 8 s to 23 s, copy cut at 40 s
`fixed` is jobrun at half the link; `fixedNN` jobrun at NN % of the link
(bytes/s, e.g. fixed85-alone: is "85 % of the link with the probe within
2 ms of idle" reachable by any pacing above sshfs at all?); `autoNN` auto
with its ceiling at NN % of the link.
Output: OUT/*.json per run, OUT/table.md (medians).
"""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

NETLAB = os.environ["NETLAB"]
JOBRUN = os.environ["JOBRUN"]
OUT = os.environ["OUT"]
RATE = os.environ.get("RATE", "200mbit")
LINK = float(re.match(r"(\d+)mbit", RATE).group(1)) * 1e6 / 8  # bytes/s
REPEATS = int(os.environ.get("REPEATS", "3"))
FIRST_REP = int(os.environ.get("FIRST_REP", "1"))  # more repeats into the same OUT
DIRS = os.environ.get("DIRS", "rx tx").split()
CASES = os.environ.get(
    "CASES", "idle comp rsync-alone fixed-alone auto-alone rsync-comp fixed-comp auto-comp auto-mid fixed-mid"
).split()
TARGET = os.environ.get("POLITE_TARGET", "")
NS = "netlab-nas"
NAS = "198.18.0.2"
SRC, DST, P = "/mnt/netlab/src", "/mnt/netlab/dst", "large"
HALF = f"{int(LINK / 2 / 1048576)}M"  # half the link, MiB/s as jobrun reads it


def sh(*a, **k):
    return subprocess.run(a, check=True, capture_output=True, text=True, **k)


class Sampler(threading.Thread):
    """Per-flow bytes every 100 ms from `ss -tin` (copy: port 22, comp: 5201)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.rows = []  # (t, {flow: (rx_bytes, tx_bytes)})
        self.stop = False
        self.t0 = time.monotonic()
        self.seen = {}  # socket key -> (flow, rx, tx) last seen

    def read(self):
        out = subprocess.run(["ss", "-tinH", "dst", NAS], capture_output=True, text=True).stdout
        now = {}
        lines = out.splitlines()
        for i, line in enumerate(lines):
            m = re.search(r"(\S+):(\d+)\s+198\.18\.0\.2:(\d+)", line)
            if not m or i + 1 >= len(lines):
                continue
            info = lines[i + 1]
            rx = re.search(r"bytes_received:(\d+)", info)
            tx = re.search(r"bytes_acked:(\d+)", info)
            flow = {"22": "copy", "5201": "comp"}.get(m.group(3), "other")
            now[(m.group(2), m.group(3))] = (flow, int(rx.group(1)) if rx else 0, int(tx.group(1)) if tx else 0)
        # Cumulative per flow, robust to sockets that come and go.
        tot = {"copy": [0, 0], "comp": [0, 0]}
        for k, (flow, rx, tx) in now.items():
            self.seen[k] = (flow, rx, tx)
        for k, (flow, rx, tx) in self.seen.items():
            if flow in tot:
                tot[flow][0] += rx
                tot[flow][1] += tx
        return tot

    def run(self):
        nxt = time.monotonic()
        while not self.stop:
            tot = self.read()
            self.rows.append((time.monotonic() - self.t0, tot))
            nxt += 0.1
            time.sleep(max(0, nxt - time.monotonic()))

    def rate(self, flow, d, a, b):
        """Mean bytes/s of `flow` in direction d (0 rx, 1 tx) over [a, b] s."""
        pts = [(t, r[flow][d]) for t, r in self.rows if a <= t <= b]
        if len(pts) < 2:
            return 0.0
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])

    def series(self, flow, d, win=1.0):
        """(t, mean rate over the last `win` s) per sample."""
        out, j = [], 0
        for i, (t, r) in enumerate(self.rows):
            while self.rows[j][0] < t - win:
                j += 1
            if t - self.rows[j][0] >= win * 0.9:
                out.append((t, (r[flow][d] - self.rows[j][1][flow][d]) / (t - self.rows[j][0])))
        return out


def ping(seconds):
    return subprocess.Popen(
        ["ping", "-D", "-n", "-i", "0.1", "-w", str(seconds), NAS],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def ping_rtts(p, t0_wall, a, b):
    out = p.communicate()[0]
    rtts = []
    for line in out.splitlines():
        m = re.match(r"\[(\d+\.\d+)\].*time=([\d.]+) ms", line)
        if m and a <= float(m.group(1)) - t0_wall <= b:
            rtts.append(float(m.group(2)))
    return rtts


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def competitor(d, seconds):
    a = ["iperf3", "-c", NAS, "-t", str(seconds), "-J", "-i", "0"]
    if d == "rx":
        a.append("-R")
    return subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def copy_cmd(tool, tag):
    job = f"{OUT}/job.toml"
    if tool == "rsync":
        return ["rsync", "-a", f"{SRC}/{P}", f"{DST}/"]
    if tool == "fixed":
        limit = HALF
    elif tool.startswith("fixed"):
        limit = str(int(LINK * int(tool[5:]) / 100))
    elif tool.startswith("auto") and tool[4:]:
        limit = f"auto, {int(LINK * int(tool[4:]) / 100)}"
    else:
        limit = "auto"
    return [JOBRUN, "--bwlimit", limit, "-q", job]


def start_copy(tool, tag):
    for f in ("job.db", "job.db-wal", "job.db-shm", "job.log"):
        try:
            os.unlink(f"{OUT}/{f}")
        except FileNotFoundError:
            pass
    extra = f'polite_target = "{TARGET}"\n' if TARGET else ""
    with open(f"{OUT}/job.toml", "w") as f:
        f.write(f'source = "{SRC}/{P}"\ndestination = "{DST}/{P}"\n{extra}')
    env = dict(os.environ, RUST_LOG="jobrun::throttle=trace")
    err = open(f"{OUT}/{tag}.trace", "w")
    return subprocess.Popen(copy_cmd(tool, tag), stdout=subprocess.DEVNULL, stderr=err, env=env,
                            start_new_session=True)


def stop_copy(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode


def iperf_bps(p):
    try:
        j = json.loads(p.communicate(timeout=60)[0])
        return j["end"]["sum_received"]["bits_per_second"] / 8
    except Exception:
        return float("nan")


def one(case, d, rep):
    tag = f"{d}_{case}_r{rep}"
    di = 0 if d == "rx" else 1
    sh(NETLAB, "reset")
    s = Sampler()
    s.start()
    t0 = time.time()
    res = {"case": case, "dir": d, "rep": rep, "load": os.getloadavg()[0]}
    kind, _, what = case.partition("-")
    if case == "idle":
        pg = ping(12)
        time.sleep(12.5)
        win = (2, 12)
    elif case == "comp":
        c = competitor(d, 20)
        pg = ping(20)
        time.sleep(20.5)
        res["comp_iperf"] = iperf_bps(c)
        win = (5, 20)
    elif what == "alone":
        pg = ping(25)
        p = start_copy(kind, tag)
        time.sleep(25)
        res["exit"] = stop_copy(p)
        win = (8, 24)
    elif what == "comp":
        c = competitor(d, 22)
        pg = ping(22)
        time.sleep(2)
        p = start_copy(kind, tag)
        time.sleep(20)
        res["exit"] = stop_copy(p)
        res["comp_iperf"] = iperf_bps(c)
        win = (8, 21)
    elif what == "mid":
        pg = ping(40)
        p = start_copy(kind, tag)
        time.sleep(8)
        c = competitor(d, 15)
        time.sleep(15.5)
        res["comp_iperf"] = iperf_bps(c)
        time.sleep(40 - 23.5)
        res["exit"] = stop_copy(p)
        win = (12, 23)
        ser = s.series("copy", di, 1.0)
        # Its share beside the competitor: a tenth of the link at most.
        yld = next((t - 8 for t, r in ser if t >= 8 and r <= LINK * 0.10), None)
        back = next((t - 23 for t, r in ser if t >= 23 and r >= LINK * 0.85), None)
        res["yield_s"], res["back_s"] = yld, back
        res["copy_before"] = s.rate("copy", di, 3, 8)
        res["copy_after"] = s.rate("copy", di, 33, 39)
    s.stop = True
    s.join()
    rtts = ping_rtts(pg, t0, *win)
    res.update({
        "rtt_med": statistics.median(rtts) if rtts else float("nan"),
        "rtt_p99": pct(rtts, 0.99),
        "copy": s.rate("copy", di, *win),
        "comp": s.rate("comp", di, *win),
        "window": win,
        "series_copy": s.series("copy", di, 1.0)[::5],
        "series_comp": s.series("comp", di, 1.0)[::5],
    })
    json.dump(res, open(f"{OUT}/{tag}.json", "w"))
    print(f"{tag}: copy {res['copy']/1e6:.1f} MB/s comp {res['comp']/1e6:.1f} MB/s "
          f"rtt {res['rtt_med']:.2f}/{res['rtt_p99']:.2f} ms "
          f"{'yield %s back %s' % (res.get('yield_s'), res.get('back_s')) if what == 'mid' else ''} "
          f"load {res['load']:.1f}", flush=True)


def main():
    server = subprocess.Popen(["ip", "netns", "exec", NS, "timeout", "7200", "iperf3", "-s"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    try:
        for rep in range(FIRST_REP, FIRST_REP + REPEATS):
            for d in DIRS:
                for case in CASES:
                    one(case, d, rep)
    finally:
        server.terminate()
        server.wait()


def table():
    import glob
    runs = [json.load(open(f)) for f in sorted(glob.glob(f"{OUT}/*.json"))]
    med = lambda xs: statistics.median(xs) if xs else float("nan")
    print(f"| dir | case | n | copy MB/s | competitor MB/s | probe RTT median ms | probe RTT p99 ms "
          f"| yield s | back s (85 % link) | back s (85 % own) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    order = CASES
    for d in DIRS:
        for case in order:
            rs = [r for r in runs if r["dir"] == d and r["case"] == case]
            if not rs:
                continue
            for r in rs:
                if "mid" in case and "series_copy" in r:
                    # Back to 85 % of what it moved before the competitor came
                    # (the link rate may be out of reach on a loaded machine).
                    r["back_own_s"] = next((t - 23 for t, v in r["series_copy"]
                                            if t >= 23 and v >= 0.85 * r["copy_before"]), None)
            g = lambda k: med([r[k] for r in rs if r.get(k) is not None])
            opt = lambda k: ("%.1f" % g(k)) if any(r.get(k) is not None for r in rs) else (
                "never" if "mid" in case else "-")
            each = lambda k: " / ".join("%.1f" % (r[k] / 1e6) for r in rs)
            print(f"| {d} | {case} | {len(rs)} | {g('copy')/1e6:.1f} ({each('copy')}) "
                  f"| {g('comp')/1e6:.1f} | {g('rtt_med'):.2f} | {g('rtt_p99'):.2f} "
                  f"| {opt('yield_s')} | {opt('back_s')} | {opt('back_own_s')} | {g('load'):.1f} |")


if __name__ == "__main__":
    table() if sys.argv[1:] == ["table"] else main()
