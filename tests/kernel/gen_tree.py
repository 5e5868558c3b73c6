#!/usr/bin/env python3
"""The kernel tier's tree scenario (issue 25), generated on the host into
the servers' backing folder (usage: gen_tree.py ROOT): ROOT/tree holds a
snapshot tree (10 inodes of 1 MiB, 10 names each), a 64 MiB sparse file
with 2 MiB of data, a file and a folder with user.* attributes; ROOT/acl a
0600 file whose POSIX ACL grants user nobody rw (group::---, mask rw-, so
its bits read 0660). Times carry odd nanoseconds."""
import os
import random
import struct
import sys

root = sys.argv[1]
rnd = random.Random(25)
T = 1_650_000_000 * 10**9 + 123_456_789
MIB = 1 << 20


def stamp(p):
    os.utime(p, ns=(T, T))


t = os.path.join(root, "tree")
for i in range(10):
    first = os.path.join(t, "snap-0", f"f-{i}")
    os.makedirs(os.path.dirname(first), exist_ok=True)
    with open(first, "wb") as f:
        f.write(rnd.randbytes(MIB))
    stamp(first)
    for n in range(1, 10):
        p = os.path.join(t, f"snap-{n}", f"f-{i}")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        os.link(first, p)
sp = os.path.join(t, "sparse.img")
with open(sp, "wb") as f:
    f.write(rnd.randbytes(MIB))
    f.seek(32 * MIB)
    f.write(rnd.randbytes(MIB))
    f.truncate(64 * MIB)
stamp(sp)
x = os.path.join(t, "x.txt")
with open(x, "wb") as f:
    f.write(b"with attributes\n")
os.setxattr(x, "user.color", b"blue")
stamp(x)
xd = os.path.join(t, "xd")
os.makedirs(xd)
os.setxattr(xd, "user.project", b"apollo")
a = os.path.join(root, "acl")
os.makedirs(a)
pf = os.path.join(a, "private.txt")
with open(pf, "wb") as f:
    f.write(b"secret\n")
os.chmod(pf, 0o600)


def acl(entries):
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


# USER_OBJ 1, USER 2, GROUP_OBJ 4, MASK 0x10, OTHER 0x20; 0xFFFFFFFF: no id.
N = 0xFFFFFFFF
os.setxattr(pf, "system.posix_acl_access",
            acl([(1, 6, N), (2, 6, 65534), (4, 0, N), (0x10, 6, N), (0x20, 0, N)]))
stamp(pf)
for d in (t, xd, a):
    stamp(d)
