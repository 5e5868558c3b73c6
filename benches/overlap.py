#!/usr/bin/env python3
"""Pipeline check from a `jobrun -vv` (debug) log, issue 8 §2:
  * no stall between files: for each file but the last, was the next file's
    read (any lane) already started before this file's rename finished?
  * commits are batched: files per DB commit.
usage: overlap.py LOG"""
import datetime, re, sys

reads, renames, commits = {}, {}, []
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    ts = line.split(" ", 1)[0]
    try:
        t = datetime.datetime.fromisoformat(ts.rstrip("Z")).timestamp()
    except ValueError:
        continue
    m = re.search(r"reading id=(\d+)", line)
    if m:
        reads[int(m.group(1))] = t
    m = re.search(r"renamed id=(\d+)", line)
    if m:
        renames[int(m.group(1))] = t
    m = re.search(r"commit files=(\d+)", line)
    if m:
        commits.append(int(m.group(1)))
order = sorted(renames, key=renames.get)
start = sorted(reads.values())
ahead = 0
for i, fid in enumerate(order[:-1]):
    # a read started before this rename that is not one of the files already renamed
    done_before = i + 1
    started_before = sum(1 for s in start if s < renames[fid])
    if started_before > done_before:
        ahead += 1
n = max(len(order) - 1, 1)
print(f"files={len(order)} next_read_started_before_rename={ahead}/{n} ({ahead / n:.0%})")
print(f"commits={len(commits) + 1} (last at the end) files_per_commit_median="
      f"{sorted(commits)[len(commits) // 2] if commits else len(order)}")
