#!/usr/bin/env python3
"""The table of benches/kernlab-bwlimit.sh from its OUT folder (usage:
kernlab-table.py OUT). Rates are the tap's wire counters (headers included)
in the direction that carries the payload (write: rx, guest->host; read:
tx). mean = the active window's rate: from the sample where 1 % of the
run's bytes had passed to the one where 99 % had (tool start-up, scan and
the guest's boot are outside it); peaks are kernlab's highest sliding 1 s
and 100 ms windows. All over the limit (5 MiB/s)."""
import csv
import glob
import json
import os
import sys

LIMIT = 5 * 1024 * 1024
out = sys.argv[1]
rows = []
for f in glob.glob(os.path.join(out, "*_*_*.json")):
    p, d, t = os.path.basename(f)[:-5].split("_")
    j = json.load(open(f))
    w = "rx" if d == "write" else "tx"
    series = [(float(r["t_s"]), int(r[f"{w}_bytes"])) for r in csv.DictReader(open(f[:-5] + ".csv"))]
    total = series[-1][1]
    t1 = next(t for t, b in series if b >= 0.01 * total)
    t99 = next(t for t, b in series if b >= 0.99 * total)
    mean = 0.98 * total / max(t99 - t1, 0.1) / LIMIT
    p1, p01 = j[f"{w}_max_1s_Bps"] / LIMIT, j[f"{w}_max_100ms_Bps"] / LIMIT
    goals = "met" if mean >= 0.95 and p1 <= 1.10 and p01 <= 1.5 else "NOT met"
    key = (["nfs3", "nfs4", "smb"].index(p), d != "write", ["jobrun", "rsync", "rclone"].index(t))
    rows.append((key, p, d, t, j["wall_s"], t99 - t1, mean, p1, p01, j["check"], goals))
rows.sort()
print("| protocol | direction | tool | wall s | active s | mean / limit | 1 s peak / limit | 100 ms peak / limit | check | goals |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %s | %s | %.1f | %.1f | %.2f | %.2f | %.2f | %s | %s |" % r[1:])
print()
print("limit 5 MiB/s (5.24 MB/s) for every tool; payload 40 MiB (8 x 4 MiB + 32 x 256 KiB); link 200 mbit;")
print("wire bytes of the tap, headers included (NFS/SMB + TCP add a few %); goals:")
print("mean >= 0.95, 1 s peak <= 1.10, 100 ms peak <= 1.5 (x limit).")
