#!/usr/bin/env bash
# What grouping hard links by inode number (the SMB client: every file keyed,
# see docs/tree-fidelity.md) costs in the state DB: N file rows made by a
# real jobrun DB's schema, 10% of them in groups of 10, the rest alone; the
# scan's count of linked names (one pass over the `extra_link` index, only
# with `hard_links = false`) timed RUNS times with its peak RSS, then the
# transfer feed's queries per row (`link_shared` alone, `linked_copy`, both)
# over 100,000 rows through Python's sqlite3 (the interpreter's own cost is
# the `empty` line). The rows are written through the view `files`; the
# queries are the product's on schema v13's tables (src/db/links.rs,
# files.rs: `link_shared`, `linked_copy`, `shared_link_names`).
#
#   benches/tree-link-queries.sh            # N=1000000
#   N=10000000 RUNS=3 benches/tree-link-queries.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000} RUNS=${RUNS:-3}
W=${W:-/var/tmp/jobrun-link-queries}
if [[ -z "${JOBRUN:-}" ]]; then cargo build --release --locked --quiet; JOBRUN=$PWD/target/release/jobrun; fi
command -v sqlite3 >/dev/null || { echo "sqlite3 missing: apt-get install sqlite3" >&2; exit 2; }
rm -rf "$W"; mkdir -p "$W/src"; cd "$W"
echo a >src/a
printf 'source = "src"\ndestination = "dst"\n' >job.toml
"$JOBRUN" -q job.toml >/dev/null
sqlite3 job.db "PRAGMA journal_mode=WAL;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N)
INSERT INTO files (source_path, dest_path, kind, size, modified_ns, accessed_ns, changed_ns,
                   mode, uid, gid, status, scan_id, link_dev, link_ino)
SELECT '/src/d' || (i / 1000) || '/f' || i, '/dst/d' || (i / 1000) || '/f' || i, 'file', 5, 7, 7, 7,
       33188, 0, 0, 'pending', 1, 40, CASE WHEN i % 100 < 10 THEN 1000000000 + i / 10 ELSE i END
FROM n;" >/dev/null
echo "rows: $(sqlite3 job.db 'SELECT count(*) FROM files')"
for _ in $(seq "$RUNS"); do
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -f "count of linked names: %e s, peak RSS %M KB" sqlite3 job.db \
    "SELECT COALESCE(SUM(n), 0) FROM (SELECT COUNT(*) AS n FROM entry_extra
     WHERE link_ino IS NOT NULL AND link_dev = 40 GROUP BY link_ino HAVING n > 1)" >/dev/null
done
python3 - <<'PY'
import sqlite3, statistics, time
c = sqlite3.connect("job.db")
rows = list(c.execute("SELECT x.id, x.link_dev, x.link_ino, e.size, e.mtime, e.mtime_ns "
                      "FROM entry_extra x JOIN entries e ON e.folder = x.folder AND e.name = x.name "
                      "WHERE x.id % 10 = 0 AND x.link_ino IS NOT NULL LIMIT 100000"))
LINKED = """SELECT e.id, e.folder, e.name, f.path, x.dest, e.kind, e.status, e.size,
    e.mtime, e.mtime_ns, e.atime_d, e.ctime_d, e.birth_d, e.mode_x, e.owner, e.birth_d, e.hash,
    x.hash_algorithm, e.after_d, x.after_size, x.link_dev, x.link_ino, e.scan_id
  FROM entry_extra xl
    JOIN entries e ON e.folder = xl.folder AND e.name = xl.name
    LEFT JOIN folders f ON f.id = e.folder LEFT JOIN entry_extra x ON x.id = e.id
  WHERE xl.link_ino = ?2 AND xl.link_dev = ?1 AND e.status = 1 AND e.kind = 0
    AND e.size = ?3 AND e.mtime = ?4 AND e.mtime_ns = ?5
  ORDER BY xl.id LIMIT 1"""
SHARED = """SELECT EXISTS (SELECT 1 FROM entry_extra
  WHERE link_ino = ?2 AND link_dev = ?1 AND id <> ?3)"""
cases = {
    "empty": lambda r: [("SELECT 1", ())],
    "link_shared (a file alone)": lambda r: [(SHARED, (r[1], r[2], r[0]))],
    "linked_copy": lambda r: [(LINKED, (r[1], r[2], r[3], r[4], r[5]))],
    "link_shared + linked_copy (a name of a group)":
        lambda r: [(SHARED, (r[1], r[2], r[0])), (LINKED, (r[1], r[2], r[3], r[4], r[5]))],
}
for name, qs in cases.items():
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        for r in rows:
            for sql, args in qs(r):
                c.execute(sql, args).fetchall()
        runs.append((time.perf_counter() - t) / len(rows) * 1e6)
    print(f"{name}: median {statistics.median(runs):.1f} µs per row ({', '.join(f'{x:.1f}' for x in runs)})")
PY
