#!/usr/bin/env python3
"""The trees of the tree figures (benches/tree-figures.sh, tree-kernlab.sh).

  tree-gen.py sparse ROOT BIG_GIB SMALL_GIB   ROOT/vm-big.img and vm-small.img:
        sparse files with ~53 MiB of data in all (issue 25's VM images)
  tree-gen.py links ROOT INODES NAMES MIB     ROOT/snap-N/f-I: INODES files of
        MIB MiB, each with NAMES names (a snapshot tree)
"""
import os
import random
import sys


def data(n, seed):
    return random.Random(seed).randbytes(n)


def sparse(root, big_gib, small_gib):
    os.makedirs(root, exist_ok=True)
    mib = 1 << 20
    for name, gib, chunks in (
        ("vm-big.img", big_gib, [(0, 16), (big_gib * 256, 12), (big_gib * 512, 8), (big_gib * 1000, 4)]),
        ("vm-small.img", small_gib, [(0, 8), (small_gib * 512, 5)]),
    ):
        with open(os.path.join(root, name), "wb") as f:
            for at_mib, n_mib in chunks:
                f.seek(at_mib * mib)
                f.write(data(n_mib * mib, at_mib))
            f.truncate(int(gib * 1024) * mib)


def links(root, inodes, names, mib):
    for i in range(inodes):
        first = os.path.join(root, "snap-0", f"f-{i}")
        os.makedirs(os.path.dirname(first), exist_ok=True)
        with open(first, "wb") as f:
            f.write(data(mib << 20, i))
        for n in range(1, names):
            p = os.path.join(root, f"snap-{n}", f"f-{i}")
            os.makedirs(os.path.dirname(p), exist_ok=True)
            os.link(first, p)


if __name__ == "__main__":
    what, root, *rest = sys.argv[1:]
    if what == "sparse":
        sparse(root, int(rest[0]), int(rest[1]))
    else:
        links(root, int(rest[0]), int(rest[1]), int(rest[2]))
