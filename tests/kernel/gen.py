#!/usr/bin/env python3
"""Generates the kernel tier's source trees on the host, straight into the
servers' backing folder (usage: gen.py ROOT [edit]). Times carry odd
nanoseconds (SMB keeps 100 ns). `edit` changes the core tree for the second
session: a same-size edit, a truncation, a growth, two large files. Run as
root: the permission tree has files of several owners."""
import os
import random
import sys

root = sys.argv[1]
rnd = random.Random(13)
T0 = 1_600_000_000


def put(rel, size, k, data=None):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data if data is not None else rnd.randbytes(size))
    t = (T0 + 1000 * k) * 10**9 + 123_456_789
    os.utime(p, ns=(t, t))


def fix_dir_times(top):
    for k, (d, _, _) in enumerate(sorted(os.walk(top), key=lambda w: -w[0].count("/"))):
        t = (T0 + 777 * k) * 10**9 + 987_654_321
        os.utime(d, ns=(t, t))


if sys.argv[2:] == ["edit"]:
    core = os.path.join(root, "core")
    old = open(os.path.join(core, "f4096"), "rb").read()
    put("core/f4096", 0, 50, bytes(b ^ 0xFF for b in old))  # same size, new bytes and mtime
    put("core/f65537", 0, 51, old[:1000])  # truncated
    put("core/f1", 70_000, 52)  # grown
    put("core/big/big1", 12 << 20, 53)
    put("core/big/big2", 12 << 20, 54)
    fix_dir_times(core)
    sys.exit(0)

sizes = [0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 131071, 131072, 131073, 1048579, 3_000_000]
for k, n in enumerate(sizes):
    put(f"core/f{n}", n, k)
put("core/a/b/c/d/deep.bin", 200_000, 20)
put("core/a/b/mid.txt", 5_000, 21)
put("core/with space.txt", 10, 22)
for d in ["core/empty1", "core/empty2/empty3"]:
    os.makedirs(os.path.join(root, d), exist_ok=True)
fix_dir_times(os.path.join(root, "core"))

put("case/Case.txt", 0, 1, b"upper: the first, kept")
put("case/case.txt", 0, 2, b"lower: the second, would replace the first")
put("case/Dir/x", 0, 3, b"in Dir")
put("case/dir/y", 0, 4, b"in dir, which is Dir on SMB")
put("case/plain.txt", 0, 5, b"plain")

put("names/ok.txt", 0, 1, b"fine everywhere")
for i in range(200):
    put(f"names/back\\slash-{i}", 0, 2, b"SMB refuses a backslash")
for i in range(3):
    p = os.path.join(os.fsencode(root), b"names/bad-\xff-%d" % i)
    with open(p, "wb") as f:
        f.write(b"not UTF-8: SMB cannot name it")

# Names the source takes but SMB cannot store: each reserved character is
# sent as a private-use character, 3 bytes in UTF-8 on the server.
put("names/" + "x" * 240 + ":" * 10, 0, 3, b"250 bytes here, 270 on the server")
put("names/" + ":" * 200, 0, 4, b"200 bytes here, 600 on the server")

put("links/ok.txt", 0, 1, b"target")
for i in range(3):
    os.symlink("ok.txt", os.path.join(root, f"links/link{i}"))

for i, n in enumerate(["a:b", "what?", "star*", "pipe|", "lt<gt>", 'quo"te', "dot.", "space "]):
    put(f"reserved/{n}", 0, i, b"stored under a private-use character")
put("silly/keep.txt", 0, 1, b"kept")

for i in range(60):
    put(f"cut/f{i:02}", 1 << 20, i)

for n in ["a.txt", "b.txt"]:  # creation times set in the guest (SMB)
    put(f"crtime/{n}", 100, 1)
put("estale/a-big", 8 << 20, 1)  # deleted on the server while read
for i in range(3):
    put(f"estale/b-{i}", 10_000, 2 + i)
for i in range(30):
    put(f"actimeo/f{i:02}", 3000 + i, i)
put("actimeo/x", 5000, 40)

# The mirror: one tree per protocol (the guest deletes and moves source
# entries), 27 entries; NFS also gets a source root that is a symlink into
# its destination (the link is followed by the client, as any path).
for p in ["nfs3", "nfs4", "smb"]:
    for i in range(20):
        put(f"mirror-{p}/f{i:02}", 1000 + 37 * i, i)
    for i in range(4):
        put(f"mirror-{p}/sub/g{i}", 2000 + i, 30 + i)
    put(f"mirror-{p}/sub/deep/h0", 3000, 40)
    fix_dir_times(os.path.join(root, f"mirror-{p}"))
for p in ["nfs3", "nfs4"]:
    os.symlink(f"/mnt/kernlab/{p}/dst/jr/mirror-{p}/sub", os.path.join(root, f"mirror-link-{p}"))

# Permission bits and owners (uids and gids with no name here, and
# daemon, a named one): (path, mode, uid, gid); folders end with /.
PERMS = [
    ("private.txt", 0o600, 4201, 4301),
    ("group.txt", 0o640, 4202, 4302),
    ("script.sh", 0o755, 0, 0),
    ("readonly.txt", 0o444, 4201, 4301),
    ("named.txt", 0o644, 1, 1),
    ("setuid-prog", 0o4755, 4205, 4305),
    ("hr/", 0o700, 4203, 4303),
    ("hr/salaries", 0o600, 4203, 4303),
    ("shared/", 0o2775, 0, 4304),
    ("shared/doc", 0o664, 4201, 4304),
    ("drop/", 0o1777, 0, 0),
    ("drop/t", 0o644, 4202, 4302),
]
for k, (rel, mode, uid, gid) in enumerate(PERMS):
    if not rel.endswith("/"):
        put(f"perms/{rel}", 100 + k, k)
for rel, mode, uid, gid in PERMS:
    path = os.path.join(root, "perms", rel)
    os.chown(path, uid, gid)
    os.chmod(path, mode)  # after the chown, which clears setuid
fix_dir_times(os.path.join(root, "perms"))
