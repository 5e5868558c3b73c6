#!/usr/bin/env python3
"""Medians table from benches/netlab-compare.sh output dirs, with ratios
against the peers measured in the same dirs.  usage: netlab-table.py DIR [DIR...]"""
import glob, json, os, re, statistics, sys

rows, order = {}, []
for d in sys.argv[1:]:
    for f in sorted(glob.glob(os.path.join(d, "*.json"))):
        m = re.match(r"(.+?)_(.+)_r(\d+)\.json$", os.path.basename(f))
        if not m:
            continue
        key = (m.group(1), m.group(2))
        if key not in rows:
            rows[key] = []
            order.append(key)
        rows[key].append(json.load(open(f)))

PROFILES = ["large", "mixed", "small"]
TOOLS = ["jobrun", "cp", "rsync", "rclone4", "rclone1"]
def sk(k):
    p, t = k
    pi = PROFILES.index(p) if p in PROFILES else 9
    if t.startswith("jobrun_t"):
        return (pi, 0, int(t[8:]))
    return (pi, TOOLS.index(t) if t in TOOLS else 9, 0)
order.sort(key=sk)

def med(rs, f):
    return statistics.median(f(r) for r in rs)

walls = {k: med(v, lambda r: r["wall_s"]) for k, v in rows.items()}
print("| profile | tool | n | wall s | ×cp | ×rsync | ×rclone4 | MB/s | files/s | rx MB/s | tx MB/s "
      "| duplex | cpu % | check | wall s (each run) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for k in order:
    p, t = k
    rs = rows[k]
    w = walls[k]
    def ratio(peer):
        pw = walls.get((p, peer))
        return f"{w / pw:.2f}" if pw else "–"
    mbps = med(rs, lambda r: r.get("file_bytes", 0) / r["wall_s"] / 1e6)
    fps = med(rs, lambda r: r.get("files", 0) / r["wall_s"])
    cells = [f"{w:.1f}", ratio("cp"), ratio("rsync"), ratio("rclone4"), f"{mbps:.1f}", f"{fps:.0f}",
             f"{med(rs, lambda r: r['rx_avg_MBps']):.1f}", f"{med(rs, lambda r: r['tx_avg_MBps']):.1f}",
             f"{med(rs, lambda r: r['duplex_overlap']):.2f}", f"{med(rs, lambda r: r['cpu_avg_pct']):.0f}"]
    checks = ",".join(sorted({r.get("check", "?") for r in rs}))
    each = " / ".join(f"{r['wall_s']:.1f}" for r in rs)
    print(f"| {p} | {t} | {len(rs)} | " + " | ".join(cells) + f" | {checks} | {each} |")
