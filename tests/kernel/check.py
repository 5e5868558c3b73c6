#!/usr/bin/env python3
"""Host-side checks of the kernel tier (tests/kernel/run.sh): they read the
servers' backing folders (/srv/kernlab/{src,dst}), jobrun's state DBs and
audit logs, never the guest's mounts. Each command prints one line and exits
0 (ok) or 1.

  same SRC DST [TOL_NS]     trees equal: kinds, bytes, symlink targets, file
                            and folder mtimes within TOL_NS (SMB keeps 100 ns)
  synced DB                 every `synced` file row: the server-side file of
                            its destination is complete and has the row's hash
  status DB REL STATUS [TEXT]  the row whose source ends with /REL has STATUS
                            (and its error contains TEXT)
  counts DB                 print rows per status (always exit 0)
  absent DIR PREFIX         no name under DIR starts with PREFIX
  deleted LOG FROM TO ROOT [REL...]  the `deleted` lines among LOG's lines
                            FROM..TO (0-based, TO `end` = the last) name
                            exactly ROOT/REL... (none: nothing deleted)
  modes SRC DST OWNERS      bits and owners of every entry but symlinks:
                            DST has SRC's exact bits and, OWNERS `source`,
                            its uid:gid; OWNERS `root`: uid:gid 0:0 and no
                            setuid/setgid the source's owner/group had
  links SRC DST             the files of DST form the hard-link groups of
                            SRC: one inode per group, the same names
  blocks FILE MAX_KIB       FILE takes at most MAX_KIB KiB on disk (holes)
  wire NET0 NET1 RX|TX MAX_MIB  the guest's counters (eth0 received, sent)
                            moved by at most MAX_MIB MiB between two samples
"""
import hashlib
import json
import os
import sqlite3
import stat
import sys

HOST = {"src": "/srv/kernlab/src", "dst": "/srv/kernlab/dst"}


def host_path(guest: bytes) -> bytes:
    """/mnt/kernlab/<proto>/<side>/rest -> /srv/kernlab/<side>/rest."""
    parts = guest.split(b"/", 5)
    if len(parts) < 5 or parts[1:3] != [b"mnt", b"kernlab"]:
        raise SystemExit(f"not a kernlab path: {guest!r}")
    side = HOST[parts[4].decode()].encode()
    return side + (b"/" + parts[5] if len(parts) > 5 else b"")


def entries(root: bytes):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


def same(src, dst, tol=0):
    src, dst, tol = os.fsencode(src), os.fsencode(dst), int(tol)
    a, b = entries(src), entries(dst)
    bad = []
    for rel in sorted(set(a) | set(b)):
        if rel not in b:
            bad.append(f"missing {rel!r}")
            continue
        if rel not in a:
            bad.append(f"extra {rel!r}")
            continue
        sa, sb = a[rel], b[rel]
        if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
            bad.append(f"kind {rel!r}")
        elif stat.S_ISLNK(sa.st_mode):
            if os.readlink(os.path.join(src, rel)) != os.readlink(os.path.join(dst, rel)):
                bad.append(f"target {rel!r}")
        else:
            if stat.S_ISREG(sa.st_mode):
                with open(os.path.join(src, rel), "rb") as f, open(os.path.join(dst, rel), "rb") as g:
                    if f.read() != g.read():
                        bad.append(f"bytes {rel!r}")
            if abs(sa.st_mtime_ns - sb.st_mtime_ns) > tol:
                bad.append(f"mtime {rel!r} {sa.st_mtime_ns} != {sb.st_mtime_ns}")
    if bad:
        print(f"{len(bad)} differences: " + "; ".join(bad[:10]))
        return 1
    print(f"{len(a)} entries equal")
    return 0


def db(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def has_files(c):
    """A DB cut before its schema's first commit has no `files` table: no rows."""
    return c.execute("SELECT 1 FROM sqlite_master WHERE name = 'files'").fetchone() is not None


def synced(path):
    c = db(path)
    if not has_files(c):
        print("no rows committed yet (no `files` table)")
        return 0
    rows = c.execute(
        "SELECT source_path, dest_path, size, hash, hash_algorithm FROM files "
        "WHERE kind = 'file' AND status = 'synced'"
    ).fetchall()
    bad = []
    for src, dst, size, digest, algo in rows:
        src = src if isinstance(src, bytes) else src.encode()
        dst = dst if isinstance(dst, bytes) else dst.encode()
        p = host_path(dst)
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError as e:
            bad.append(f"{p!r}: {e}")
            continue
        with open(host_path(src), "rb") as f:
            want = f.read()
        if len(data) != size or data != want:
            bad.append(f"{p!r}: {len(data)} B on the server, {size} B in the row")
        elif digest and hashlib.new(algo or "blake2b", data).hexdigest() != digest:
            bad.append(f"{p!r}: hash differs from the row's")
    if bad:
        print(f"{len(bad)} of {len(rows)} synced rows wrong: " + "; ".join(bad[:5]))
        return 1
    print(f"{len(rows)} synced rows complete, hashes right")
    return 0


def status(path, rel, want, text=None):
    c = db(path)
    rel = os.fsencode(rel)
    for src, st, err in c.execute("SELECT source_path, status, coalesce(error, '') FROM files"):
        src = src if isinstance(src, bytes) else src.encode()
        if src.endswith(b"/" + rel):
            if st != want or (text and text not in err):
                print(f"{rel!r}: {st} ({err}), wanted {want} {text or ''}")
                return 1
            print(f"{rel!r}: {st} {err[:160]}")
            return 0
    print(f"{rel!r}: no row")
    return 1


def counts(path):
    c = db(path)
    if not has_files(c):
        print("no rows")
        return 0
    print(dict(c.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall()))
    return 0


def absent(root, prefix):
    hits = [os.path.join(d, n) for d, ds, fs in os.walk(root) for n in ds + fs if n.startswith(prefix)]
    if hits:
        print(f"found {hits[:5]}")
        return 1
    print(f"no {prefix}* under {root}")
    return 0


def deleted(log, start, end, root, *rels):
    with open(log, "rb") as f:
        lines = f.read().splitlines()
    lines = lines[int(start) : None if end == "end" else int(end)]
    got = []
    for line in lines:
        j = json.loads(line)
        if j.get("status") == "deleted":
            dest = j["dest"]
            got.append(os.path.relpath(dest, root) if dest.startswith(root + "/") else dest)
    if sorted(got) != sorted(rels):
        print(f"deleted {sorted(got)}, wanted {sorted(rels)}")
        return 1
    print(f"{len(got)} deleted: {' '.join(sorted(got))}" if got else f"nothing deleted ({len(lines)} lines)")
    return 0


def modes(src, dst, owners):
    a, b = entries(os.fsencode(src)), entries(os.fsencode(dst))
    bad, shown = [], []
    for rel in sorted(a):
        sa = a[rel]
        if stat.S_ISLNK(sa.st_mode):
            continue
        if rel not in b:
            bad.append(f"missing {rel!r}")
            continue
        want = stat.S_IMODE(sa.st_mode)
        if owners == "source":
            ids = (sa.st_uid, sa.st_gid)
        else:
            ids = (0, 0)
            if sa.st_uid != 0:
                want &= ~stat.S_ISUID
            if sa.st_gid != 0:
                want &= ~stat.S_ISGID
        sb = b[rel]
        got = (stat.S_IMODE(sb.st_mode), sb.st_uid, sb.st_gid)
        line = f"{rel.decode()} {got[0]:04o} {got[1]}:{got[2]}"
        shown.append(line)
        if got != (want, *ids):
            bad.append(f"{line}, wanted {want:04o} {ids[0]}:{ids[1]}")
    if bad:
        print(f"{len(bad)} differ: " + "; ".join(bad[:6]))
        return 1
    print(f"{len(shown)} entries: " + ", ".join(shown))
    return 0


def groups(root):
    by_ino = {}
    for rel, st in entries(os.fsencode(root)).items():
        if stat.S_ISREG(st.st_mode):
            by_ino.setdefault(st.st_ino, []).append(rel.decode())
    return sorted(sorted(names) for names in by_ino.values() if len(names) > 1)


def links(src, dst):
    a, b = groups(src), groups(dst)
    if a != b:
        print(f"{len(b)} groups at the destination, {len(a)} in the source; first: {b[:1]} vs {a[:1]}")
        return 1
    print(f"{len(a)} groups of {sorted({len(g) for g in a})} names, one inode each")
    return 0


def blocks(path, max_kib):
    kib = os.stat(path).st_blocks // 2
    print(f"{kib} KiB on disk for {os.stat(path).st_size >> 10} KiB")
    return 0 if kib <= int(max_kib) else 1


def wire(net0, net1, side, max_mib):
    a = [int(x) for x in open(net0).read().split()]
    b = [int(x) for x in open(net1).read().split()]
    i = {"rx": 0, "tx": 1}[side]
    mib = (b[i] - a[i]) / (1 << 20)
    print(f"{mib:.1f} MiB {'read from' if i == 0 else 'written to'} the share")
    return 0 if mib <= float(max_mib) else 1


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    cmds = {"same": same, "synced": synced, "status": status, "counts": counts, "absent": absent}
    cmds.update(deleted=deleted, modes=modes, links=links, blocks=blocks, wire=wire)
    sys.exit(cmds[cmd](*args))
