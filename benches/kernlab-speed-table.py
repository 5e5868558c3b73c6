#!/usr/bin/env python3
"""The table of benches/kernlab-speed.sh: medians per protocol, case and tool
from OUT/runs.txt (lines `proto case tool round wall_s rx0 tx0 rx1 tx1 rc`,
eth0 counters of the guest: rx = host->guest, tx = guest->host).
usage: kernlab-speed-table.py OUT"""
import collections
import statistics
import sys

out = sys.argv[1]
runs = collections.defaultdict(list)
bad = collections.Counter()
for line in open(f"{out}/runs.txt"):
    p, c, t, n, wall, rx0, tx0, rx1, tx1, rc = line.split()
    runs[p, c, t].append((float(wall), int(rx1) - int(rx0), int(tx1) - int(tx0)))
    if rc != "0":
        bad[p, c, t] += 1
checks = open(f"{out}/checks.txt").read() if __import__("os").path.exists(f"{out}/checks.txt") else ""
REF = {"large": ["cp"], "small": ["rclone"], "noop": ["rclone", "rsync"]}
GOAL = {"large": ("cp", 1.0), "small": ("rclone", 1.0), "noop": ("rclone", 0.5)}
NAME = {"jobrun": "jobrun", "cp": "cp -a", "rclone": "rclone copy", "rsync": "rsync -a"}
print("| protocol | case | tool | wall s (median) | each run | wall × peer | wire MB read / written (median) | exit | goal |")
print("|---|---|---|---|---|---|---|---|---|")
for p in dict.fromkeys(k[0] for k in runs):
    for c in ["large", "small", "noop"]:
        tools = [t for t in ["jobrun", "cp", "rclone", "rsync"] if (p, c, t) in runs]
        med = {t: statistics.median(w for w, _, _ in runs[p, c, t]) for t in tools}
        for t in tools:
            rs = runs[p, c, t]
            ratio = " / ".join(
                f"{med[t] / med[r]:.2f} × {NAME[r]}" for r in REF[c] if t == "jobrun" and r in med
            ) or "–"
            goal = "–"
            if t == "jobrun" and GOAL[c][0] in med:
                g = med[t] / med[GOAL[c][0]] <= GOAL[c][1]
                goal = f"≤ {GOAL[c][1]} × {NAME[GOAL[c][0]]}: {'met' if g else 'NOT met'}"
            each = " / ".join(f"{w:.1f}" for w, _, _ in rs)
            mrx = statistics.median(x for _, x, _ in rs) / 1e6
            mtx = statistics.median(x for _, _, x in rs) / 1e6
            ex = "0" if not bad[p, c, t] else f"{bad[p, c, t]} nonzero"
            print(f"| {p} | {c} | {NAME[t]} | {med[t]:.2f} | {each} | {ratio} | {mrx:.1f} / {mtx:.1f} | {ex} | {goal} |")
if checks:
    n_bad = checks.count("DIFFERENT")
    print(f"\nCopies compared with their source on the host: {checks.count(' ok')} equal, {n_bad} different.")
