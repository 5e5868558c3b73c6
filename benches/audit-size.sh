#!/usr/bin/env bash
# Bytes per audit-log line at scale (issue 26 item 5): copies the seeded
# tree of benches/gen-tree.py (N files), then verifies it, and prints the
# bytes per `synced` and per `verified` line, what one field costs, and
# the size of the log once gzip'd as the shipped logrotate file does.
# usage: benches/audit-size.sh [N]   (default 100000)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
JOBRUN="${JOBRUN:-$ROOT/target/release/jobrun}"
N="${1:-100000}"
[[ -x "$JOBRUN" ]] || (cd "$ROOT" && cargo build --release)
B="$ROOT/target/audit-size/t$N"
mkdir -p "$B"
python3 "$HERE/gen-tree.py" "$B/src" "$N"
rm -rf "$B/dst" "$B"/job.{db,db-wal,db-shm,log}
cat >"$B/job.toml" <<TOML
source = "$B/src"
destination = "$B/dst"
checksum = "sha256"
TOML
"$JOBRUN" "$B/job.toml" >/dev/null 2>&1
"$JOBRUN" verify "$B/job.toml" >/dev/null 2>&1
python3 - "$B/job.log" "$N" <<'PY'
import gzip, json, sys
path, n = sys.argv[1], int(sys.argv[2])
lines = open(path, "rb").read().splitlines(keepends=True)
for status in ("synced", "verified"):
    ls = [l for l in lines if json.loads(l)["status"] == status]
    per = sum(map(len, ls)) / len(ls)
    gz = len(gzip.compress(b"".join(ls), 6)) / len(ls)
    print(f"{status}: {len(ls)} lines, {per:.0f} B/line, {gz:.0f} B/line gzip -6, "
          f"{per * 50e6 / 1e9:.1f} GB ({gz * 50e6 / 1e9:.1f} GB gzip'd) at 50M files")
    one = json.loads(ls[0])
    cost = {k: len(json.dumps({k: v}, separators=(",", ":"))) - 1 for k, v in one.items()}
    print("  per field (B):", ", ".join(f"{k} {c}" for k, c in cost.items()))
PY
