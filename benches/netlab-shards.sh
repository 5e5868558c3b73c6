#!/usr/bin/env bash
# Do four shards hold the job's limit together, and how long do they take
# next to one run at the same total limit? (issue 27). Run as root:
#
#   benches/netlab-shards.sh [REPEATS]        (default 1)
#
# Brings the netlab link up at 400mbit (50 MB/s each way, well above the
# limit), generates the `mixed` profile (28 files, 1 GiB, 4 folders), then
# per repeat, each after `netlab reset` (cold caches, empty dst) and with
# fresh state: one run of the job at bwlimit 20M, and four shards of it
# (`jobrun plan --shards 4`, then `jobrun --shard K` for K = 0..3 started
# at once, as an array starts them; each shard's limit is 20M/4), each under
# `netlab sample`; after the shards, `jobrun mirror`, and a check of dst
# against src on the backing dirs. Prints the plan's spread and one line
# per run. The lab is shared: the script holds /tmp/netlab.lock.
# Env: NETLAB=path/to/netlab, RATE=400mbit, LIMIT=20M, OUT=dir, JOBRUN=binary.
set -euo pipefail
if [[ -z "${NETLAB_SHARDS_LOCKED:-}" ]]; then
  exec env NETLAB_SHARDS_LOCKED=1 flock /tmp/netlab.lock "$0" "$@"
fi
cd "$(dirname "$0")/.."
REPEATS=${1:-1}
NETLAB=${NETLAB:-}
for c in "$NETLAB" ../shared/netlab/netlab /work/shared/netlab/netlab; do
  [[ -n "$c" && -x "$c" ]] && { NETLAB=$c; break; }
done
[[ -x "$NETLAB" ]] || { echo "netlab not found; set NETLAB=" >&2; exit 2; }
RATE=${RATE:-400mbit} LIMIT=${LIMIT:-20M}
OUT=${OUT:-target/netlab-shards/$(date -u +%Y%m%dT%H%M%SZ)}
P=mixed
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ -z "${JOBRUN:-}" ]]; then
  cargo build --release --quiet
  JOBRUN=$PWD/target/release/jobrun
fi
"$NETLAB" up --rate "$RATE" >/dev/null
"$NETLAB" gen "/srv/netlab/src/$P" --profile "$P" >/dev/null
cat >"$OUT/job.toml" <<TOML
source = "/mnt/netlab/src/$P"
destination = "/mnt/netlab/dst/$P"
bwlimit = "$LIMIT"
delete_extras = true
TOML

fresh() { "$NETLAB" reset >/dev/null; rm -f "$OUT"/job.db* "$OUT"/job.shard-* "$OUT"/job.log; }
same() { diff -r "/srv/netlab/src/$P" "/srv/netlab/dst/$P" >/dev/null && echo same || echo DIFFERENT; }
line() { # name json
  python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
print(f"{sys.argv[1]:<8} wall {d['wall_s']:6.1f} s  rx avg {d['rx_avg_MBps']:5.2f} MB/s  "
      f"rx peak 1 s {d['rx_peak1s_MBps']:5.2f}  100 ms {d['rx_peak100ms_MBps']:5.2f}  "
      f"tx peak 1 s {d['tx_peak1s_MBps']:5.2f}  cpu {d['cpu_avg_pct']:4.0f} %  exit {d['exit']}")
PY
}

fresh
"$JOBRUN" plan --shards 4 "$OUT/job.toml" | tee "$OUT/plan.txt"
mv "$OUT/job.plan.toml" "$OUT/plan.toml"
for r in $(seq 1 "$REPEATS"); do
  fresh
  "$NETLAB" sample --out "$OUT/one-$r.csv" --json "$OUT/one-$r.json" -- \
    "$JOBRUN" -q "$OUT/job.toml" >/dev/null 2>"$OUT/one-$r.err" || true
  echo "$(line one "$OUT/one-$r.json")  $(same)"
  fresh
  cp "$OUT/plan.toml" "$OUT/job.plan.toml"
  "$NETLAB" sample --out "$OUT/four-$r.csv" --json "$OUT/four-$r.json" -- bash -c '
    pids=(); for k in 0 1 2 3; do "$0" -q --shard $k "$1" >/dev/null 2>>"$2" & pids+=($!); done
    rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done; exit $rc' \
    "$JOBRUN" "$OUT/job.toml" "$OUT/four-$r.err" || true
  "$JOBRUN" mirror -q "$OUT/job.toml" >/dev/null
  echo "$(line 4shards "$OUT/four-$r.json")  $(same)"
  rm -f "$OUT/job.plan.toml"
done
echo "limit $LIMIT = $(python3 -c "print(round(${LIMIT%M} * 1048576 / 1e6, 2))") MB/s; 1.10x = $(python3 -c "print(round(${LIMIT%M} * 1048576 / 1e6 * 1.1, 2))") MB/s"
