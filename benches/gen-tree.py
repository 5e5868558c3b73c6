#!/usr/bin/env python3
"""Seeded tree of N small files for benches/scale.sh.
usage: gen-tree.py DIR N [SEED]
Layout: DIR/dNNN/eNN/fNNNNNNN.dat, 1,000 files per leaf folder, sizes
0..4095 bytes (seeded), content = repeated SHA-256 of (seed, index), every
file and folder mtime 2024-01-01T00:00:00Z. Writes DIR/.complete at the end;
a tree with that stamp is reused as is."""
import hashlib, os, random, sys

root, n = sys.argv[1], int(sys.argv[2])
seed = sys.argv[3] if len(sys.argv) > 3 else "jobrun-scale-v1"
stamp = os.path.join(root, ".complete")
if os.path.exists(stamp):
    sys.exit(0)
rng = random.Random(seed)
T = 1704067200
dirs = set()
for i in range(n):
    leaf = os.path.join(root, f"d{i // 100000:03d}", f"e{(i // 1000) % 100:02d}")
    if leaf not in dirs:
        os.makedirs(leaf, exist_ok=True)
        dirs.add(leaf)
    size = rng.randrange(4096)
    block = hashlib.sha256(f"{seed}/{i}".encode()).digest()
    data = (block * (size // 32 + 1))[:size]
    p = os.path.join(leaf, f"f{i:07d}.dat")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.utime(fd, (T, T))
    os.close(fd)
for d in sorted(dirs | {os.path.dirname(x) for x in dirs}, reverse=True):
    os.utime(d, (T, T))
open(stamp, "w").close()
os.utime(root, (T, T))
