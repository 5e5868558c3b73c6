#!/usr/bin/env python3
"""The table of benches/kernlab-polite.sh: per protocol and case, medians
over the repeats of the copy's and the competitor's rates (guest->host, the
writes' direction) and the probe's RTT median and 99th percentile.

The tap's counters (`kernlab run --sample`, CSV t_s,rx_bytes,tx_bytes from
the guest's command start; rx = guest->host) give all the bytes; iperf3's
1 s intervals the competitor's; the copy is the rest. Windows as in
netlab-polite.py: idle 2-12 s, comp 5-20 s, X-alone 8-24 s, X-comp 8-21 s
after the case's start (the guest clock, OUT/TAG.times)."""
import csv
import glob
import json
import re
import statistics
import sys

OUT = sys.argv[1]
WIN = {"idle": (2, 12), "comp": (5, 20), "alone": (8, 24), "comp2": (8, 21)}


def window(case):
    kind, _, what = case.partition("-")
    if case in ("idle", "comp"):
        return WIN[case]
    return WIN["alone"] if what == "alone" else WIN["comp2"]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def one_run(tag):
    times = [ln.split() for ln in open(f"{OUT}/{tag}.times")]
    t0 = float(times[0][1])
    rows = [(float(r["t_s"]), int(r["rx_bytes"])) for r in csv.DictReader(open(f"{OUT}/{tag}.csv"))]

    def rx_rate(a, b):
        pts = [(t, x) for t, x in rows if a <= t <= b]
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) if len(pts) > 1 else float("nan")

    out = []
    for case, start in times:
        if case == "end":
            continue
        s = float(start) - t0
        a, b = window(case)
        res = {"case": case, "total": rx_rate(s + a, s + b)}
        comp = 0.0
        try:
            j = json.load(open(f"{OUT}/{tag}_{case}.iperf"))
            ivs = [i["sum"] for i in j["intervals"] if a <= i["sum"]["start"] and i["sum"]["end"] <= b]
            if ivs:
                comp = sum(i["bytes"] for i in ivs) / (ivs[-1]["end"] - ivs[0]["start"])
        except (OSError, ValueError, KeyError):
            pass
        res["comp"] = comp
        # The tap counts frames (+66 B per 1448 B of iperf3 payload); the copy is the rest.
        res["copy"] = max(0.0, res["total"] - comp * 1.045) if case != "comp" else 0.0
        rtts = []
        try:
            for ln in open(f"{OUT}/{tag}_{case}.ping"):
                m = re.match(r"\[(\d+\.\d+)\].*time=([\d.]+) ms", ln)
                if m and a <= float(m.group(1)) - float(start) <= b:
                    rtts.append(float(m.group(2)))
        except OSError:
            pass
        res["rtt_med"] = statistics.median(rtts) if rtts else float("nan")
        res["rtt_p99"] = pct(rtts, 0.99)
        out.append(res)
    return out


def main():
    runs = {}
    for f in sorted(glob.glob(f"{OUT}/*_r*.times")):
        tag = f.rsplit("/", 1)[1][:-6]
        proto = tag.rsplit("_r", 1)[0]
        for r in one_run(tag):
            runs.setdefault((proto, r["case"]), []).append(r)
    med = lambda rs, k: statistics.median([r[k] for r in rs])
    print("| protocol | case | n | copy MB/s | competitor MB/s | probe RTT median ms | probe RTT p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for (proto, case), rs in runs.items():
        each = " / ".join("%.1f" % (r["copy"] / 1e6) for r in rs)
        print(f"| {proto} | {case} | {len(rs)} | {med(rs, 'copy') / 1e6:.1f} ({each}) "
              f"| {med(rs, 'comp') / 1e6:.1f} | {med(rs, 'rtt_med'):.2f} | {med(rs, 'rtt_p99'):.2f} |")


if __name__ == "__main__":
    main()
