#!/usr/bin/env bash
# Standalone demonstration that jobrun copies a tree faithfully and resumably.
#
#   ./verify.sh                      # sha256 (the default checksum)
#   VERIFY_CHECKSUM=blake2b ./verify.sh   # md5 | sha1 | sha256 | blake2b
#
# Builds the release binary, creates test data in a fresh temp dir (nested
# folders, an empty folder, files from 0 B to tens of MiB, odd names,
# nanosecond mtimes), runs a job through a manifest, and checks:
#   1. every file exists at the destination with identical content;
#   2. every file's and folder's mtime matches to the nanosecond;
#   3. the state DB exists, every row is `synced`, and every file's hash
#      equals an independent computation (coreutils sha256sum / md5sum / ...);
#   4. the audit log has exactly one `synced` line (with that hash) per file;
#   5. a second run copies nothing (no synced line, no destination rewritten);
#   6. after one source file changes, a third run copies exactly that file.
# Prints each check as it goes; exits non-zero on the first mismatch (the temp
# dir is then kept for inspection). Removes its temp dir on success.
# Needs: cargo, coreutils, python3 (for the SQLite DB and the JSON log).
set -euo pipefail
cd "$(dirname "$0")"

ALGO=${VERIFY_CHECKSUM:-sha256}
case $ALGO in
  md5) SUM=md5sum ;; sha1) SUM=sha1sum ;; sha256) SUM=sha256sum ;; blake2b) SUM=b2sum ;;
  *) echo "verify.sh: VERIFY_CHECKSUM must be md5, sha1, sha256 or blake2b" >&2; exit 2 ;;
esac
command -v python3 >/dev/null || { echo "verify.sh: python3 is required" >&2; exit 2; }

step() { printf '\n== %s\n' "$*"; }
ok() { printf '  ok   %s\n' "$*"; }
fail() {
  printf '  FAIL %s\n' "$*" >&2
  printf 'verify.sh: FAILED; temp dir kept for inspection: %s\n' "$T" >&2
  exit 1
}

step "build (release)"
cargo build --release --locked --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/jobrun
[ -x "$BIN" ] || { echo "verify.sh: $BIN not built" >&2; exit 1; }
ok "$BIN ($("$BIN" --version))"

T=$(mktemp -d "${TMPDIR:-/tmp}/jobrun-verify.XXXXXX")
trap 'rc=$?; if [ $rc -eq 0 ]; then rm -rf "$T"; fi' EXIT
SRC=$T/src DST=$T/dst

step "create test data in $T"
MiB=$((1024 * 1024))
mkdir -p "$SRC/docs/2019/q1" "$SRC/docs/2019/q2" "$SRC/media/raw/deep/deeper/deepest" \
  "$SRC/empty folder" "$SRC/many"
mk() { # mk PATH SIZE: pseudo-random content
  head -c "$2" /dev/urandom >"$SRC/$1"
}
: >"$SRC/empty.txt"
mk one-byte 1
mk docs/readme.txt 100
mk docs/2019/q1/page-minus-1 4095
mk docs/2019/q1/page 4096
mk "docs/2019/q2/name with spaces & ünïcode.bin" 65537
mk media/one-mib $MiB
mk media/raw/block-minus-1 $((128 * 1024 - 1))
mk media/raw/block $((128 * 1024))
mk media/raw/block-plus-1 $((128 * 1024 + 1))
mk media/raw/five-mib $((5 * MiB))
mk media/raw/deep/deeper/deepest/large.bin $((12 * MiB + 3))
mk media/raw/deep/big.bin $((37 * MiB))
for i in $(seq -w 1 200); do mk "many/f$i" $((RANDOM % 3000)); done
# A distinct nanosecond mtime (and atime) on every entry.
n=0
while IFS= read -r -d '' f; do
  n=$((n + 1))
  touch -h -d "@$((1300000000 + n * 86413)).$(printf '%09d' $((n * 7919 % 1000000000)))" "$f"
done < <(find "$SRC" -mindepth 1 -depth -print0)
nfiles=$(find "$SRC" -type f | wc -l)
ndirs=$(find "$SRC" -mindepth 1 -type d | wc -l)
total=$(du -sb --apparent-size "$SRC" | cut -f1)
ok "$nfiles files, $ndirs folders (one empty), sizes 0 B .. 37 MiB, $((total / MiB)) MiB in all"

cat >"$T/job.toml" <<EOF
source = "src"
destination = "dst"
checksum = "$ALGO"
progress_interval = "1s"
EOF
ok "manifest $T/job.toml (db and log default to job.db / job.log beside it)"

step "run 1: copy everything"
set +e
"$BIN" -q "$T/job.toml"
rc=$?
set -e
[ $rc -eq 0 ] || fail "run 1 exited $rc, expected 0"
ok "exit 0"

step "check 1: same files, same content"
# Every file, folder and its type on both sides (dest may hold nothing else).
diff <(cd "$SRC" && find . -mindepth 1 -printf '%y %p\n' | sort) \
  <(cd "$DST" && find . -mindepth 1 -printf '%y %p\n' | sort) >"$T/tree.diff" ||
  fail "destination tree differs from source: $(head -5 "$T/tree.diff")"
ok "same $nfiles files and $ndirs folders at the destination, nothing else"
while IFS= read -r -d '' f; do
  cmp -s "$SRC/$f" "$DST/$f" || fail "content differs: $f"
done < <(cd "$SRC" && find . -type f -printf '%P\0')
ok "all $nfiles files byte-identical (cmp)"

step "check 2: mtimes (nanoseconds)"
mtimes() { (cd "$1" && find . -mindepth 1 -printf '%P\t%y\t%T@\n' | sort); }
diff <(mtimes "$SRC") <(mtimes "$DST") >"$T/mtime.diff" ||
  fail "mtimes differ (source < > destination): $(head -4 "$T/mtime.diff")"
ok "every file's and folder's mtime identical to the nanosecond"

step "check 3: state DB"
[ -s "$T/job.db" ] || fail "no state DB at $T/job.db"
ok "DB exists: $T/job.db"
# Independent hashes of the source files (path<TAB>hash).
(cd "$SRC" && find . -type f -printf '%P\0' | sort -z | xargs -0 -n 50 "$SUM" -z --) |
  python3 -c '
import sys
data = sys.stdin.buffer.read().split(b"\0")
for rec in filter(None, data):
    h, p = rec.split(b"  ", 1)
    sys.stdout.buffer.write(p + b"\t" + h + b"\n")' >"$T/expected.tsv"
[ "$(wc -l <"$T/expected.tsv")" -eq "$nfiles" ] || fail "$SUM did not hash every file"
python3 - "$T/job.db" "$SRC" "$T/expected.tsv" "$ALGO" <<'EOF' || fail "state DB check"
import sqlite3, sys, os
db, src, expected_tsv, algo = sys.argv[1:]
expected = {}
for line in open(expected_tsv, "rb"):
    p, h = line.rstrip(b"\n").split(b"\t")
    expected[os.path.join(src.encode(), p)] = h.decode()
con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
rows = con.execute("SELECT source_path, kind, status, hash, hash_algorithm FROM files").fetchall()
def key(p):
    return p if isinstance(p, bytes) else p.encode()
bad = [(r[0], r[2]) for r in rows if r[2] != "synced"]
if bad:
    sys.exit(f"  FAIL {len(bad)} rows not synced, e.g. {bad[:3]}")
print(f"  ok   all {len(rows)} rows (files, folders, root) are `synced`")
files = {key(r[0]): r for r in rows if r[1] == "file"}
if set(files) != set(expected):
    missing = sorted(set(expected) - set(files))[:3]
    extra = sorted(set(files) - set(expected))[:3]
    sys.exit(f"  FAIL file rows != source files; missing {missing}, extra {extra}")
print(f"  ok   one file row per source file ({len(files)})")
for p, r in files.items():
    if r[4] != algo:
        sys.exit(f"  FAIL {p!r}: hash_algorithm {r[4]!r}, expected {algo!r}")
    if r[3] != expected[p]:
        sys.exit(f"  FAIL {p!r}: DB hash {r[3]} != {expected[p]}")
print(f"  ok   every file hash in the DB equals the independent {algo} computation")
EOF

step "check 4: audit log"
[ -s "$T/job.log" ] || fail "no audit log at $T/job.log"
ok "log exists: $T/job.log"
python3 - "$T/job.log" "$SRC" "$T/expected.tsv" "$ALGO" <<'EOF' || fail "audit log check"
import json, sys, os, base64
log, src, expected_tsv, algo = sys.argv[1:]
expected = {}
for line in open(expected_tsv, "rb"):
    p, h = line.rstrip(b"\n").split(b"\t")
    expected[os.path.join(src.encode(), p)] = h.decode()
seen = {}
nohash = []
for n, line in enumerate(open(log, encoding="utf-8"), 1):
    rec = json.loads(line)  # every line must be valid JSON
    if rec.get("status") == "failed":
        sys.exit(f"  FAIL line {n}: failed entry {rec}")
    if rec.get("status") != "synced":
        continue
    path = base64.b64decode(rec["source_b64"]) if "source_b64" in rec else rec["source"].encode()
    if "hash" not in rec:
        nohash.append(path)  # a folder or symlink outcome
        continue
    if path in seen:
        sys.exit(f"  FAIL {path!r} has more than one synced line")
    seen[path] = rec
if set(seen) != set(expected):
    sys.exit(f"  FAIL synced lines != source files: missing {sorted(set(expected) - set(seen))[:3]}, "
             f"extra {sorted(set(seen) - set(expected))[:3]}")
print(f"  ok   exactly one `synced` line with a hash per file ({len(seen)})")
for p, rec in seen.items():
    if rec["hash"] != expected[p] or rec.get("algorithm") != algo:
        sys.exit(f"  FAIL {p!r}: log {rec.get('algorithm')} {rec['hash']} != {algo} {expected[p]}")
    if rec["size"] != os.path.getsize(p):
        sys.exit(f"  FAIL {p!r}: log size {rec['size']} != {os.path.getsize(p)}")
print(f"  ok   their hashes and sizes equal the independent computation")
for p in nohash:
    if not os.path.isdir(p) and not os.path.islink(p):
        sys.exit(f"  FAIL {p!r}: synced line without a hash for a regular file")
print(f"  ok   {len(nohash)} synced lines without a hash, all for folders")
EOF

# Destination state before the second run: inode, size, mtime, ctime of
# every entry. A rewrite, a rename over, or a touch changes the ctime.
snapshot() { (cd "$DST" && find . -mindepth 1 -printf '%P\t%i\t%s\t%T@\t%C@\n' | sort); }
snapshot >"$T/before.txt"
lines_before=$(wc -l <"$T/job.log")
sleep 0.05 # so any rewrite would show a different ctime

step "run 2: nothing to do"
set +e
"$BIN" -q "$T/job.toml" >"$T/run2.out" 2>&1
rc=$?
set -e
cat "$T/run2.out"
[ $rc -eq 0 ] || fail "run 2 exited $rc, expected 0"
ok "exit 0"

step "check 5: nothing was copied"
tail -n +"$((lines_before + 1))" "$T/job.log" >"$T/run2.log"
python3 - "$T/run2.log" "$T/job.db" <<'EOF' || fail "second run copied something"
import json, sys, sqlite3
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
statuses = [r["status"] for r in recs]
if "synced" in statuses or "failed" in statuses or statuses[-1:] != ["run_end"]:
    sys.exit(f"  FAIL run 2 wrote {statuses}, expected no file outcome and a run_end")
end = recs[-1]
if (end.get("files"), end.get("bytes"), end.get("failed")) != (0, 0, 0):
    sys.exit(f"  FAIL run_end says {end}")
print("  ok   run 2 logged no outcome; run_end: 0 files, 0 bytes, 0 failed")
con = sqlite3.connect(f"file:{sys.argv[2]}?mode=ro", uri=True)
last = con.execute("SELECT files_done, bytes_done, failures, exit_code FROM runs ORDER BY id DESC LIMIT 1").fetchone()
if tuple(last) != (0, 0, 0, 0):
    sys.exit(f"  FAIL runs row of run 2: {last}")
n = con.execute("SELECT count(*) FROM files WHERE status != 'synced'").fetchone()[0]
if n:
    sys.exit(f"  FAIL {n} rows not synced after run 2")
print("  ok   DB runs row of run 2: 0 files, 0 bytes, exit 0; all rows still synced")
EOF
snapshot >"$T/after.txt"
diff "$T/before.txt" "$T/after.txt" >"$T/snap.diff" ||
  fail "destination changed during run 2: $(head -4 "$T/snap.diff")"
ok "no destination entry touched (inode, size, mtime and ctime unchanged)"

step "run 3: one source file changed"
changed="docs/2019/q1/page"
head -c 4096 /dev/urandom >"$SRC/$changed"
touch -d '@1700000000.5' "$SRC/$changed"
lines_before=$(wc -l <"$T/job.log")
set +e
"$BIN" -q "$T/job.toml"
rc=$?
set -e
[ $rc -eq 0 ] || fail "run 3 exited $rc, expected 0"
cmp -s "$SRC/$changed" "$DST/$changed" || fail "changed file not recopied"
[ "$(stat -c %.9Y "$SRC/$changed")" = "$(stat -c %.9Y "$DST/$changed")" ] || fail "mtime of $changed"
want=$("$SUM" "$SRC/$changed" | cut -d' ' -f1)
tail -n +"$((lines_before + 1))" "$T/job.log" |
  python3 -c '
import json, sys
src, want = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in sys.stdin]
files = [r for r in recs if r["status"] == "synced" and "hash" in r]
other = [r for r in recs if r["status"] not in ("synced", "run_start", "run_end")]
if other or [(r["source"], r["hash"]) for r in files] != [(src, want)]:
    logged = [(r["status"], r.get("source")) for r in recs]
    sys.exit(f"  FAIL run 3 logged {logged}")' \
    "$SRC/$changed" "$want" || fail "run 3 should copy exactly $changed"
ok "exactly $changed recopied, with its new hash and mtime"
diff <(mtimes "$SRC") <(mtimes "$DST") >"$T/mtime.diff" ||
  fail "mtimes differ after run 3: $(head -4 "$T/mtime.diff")"
ok "every mtime (folders too) still identical to the nanosecond"

step "all checks passed; removing $T"
