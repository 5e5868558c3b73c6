#!/usr/bin/env bash
# Scale benchmark (issue 8 §3): cost per file from 100k to 1M local files.
#
#   benches/scale.sh [N...]          default: 100000 1000000
#
# For each N: a seeded tree of N small files (benches/gen-tree.py, generated
# once, cached under target/scale/tN/src), then
#   (a) first run into an empty destination: scan+plan time (from the "scan
#       done" log line), total time, peak RSS (/usr/bin/time -v);
#   (b) no-op rerun (everything in sync, full rescan) vs `rsync -a` no-op on
#       the same two trees, interleaved, REPEATS times, medians;
#   (c) peak RSS of every run (goal ≤ 150 MB at defaults, flat 100k → 1M);
#   (d) resume with N pending rows (status set back to pending, destination
#       emptied): time from start to the first block written (log line);
#   (e) DB bytes per row (after a checkpoint), extrapolated to 50M rows.
# Results: target/scale/results-<N>.txt and a summary on stdout.
# Environment: JOBRUN (default target/release/jobrun), REPEATS (default 3),
# JOBRUN_ARGS (extra flags for every jobrun run).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
JOBRUN="${JOBRUN:-$ROOT/target/release/jobrun}"
REPEATS="${REPEATS:-3}"
read -r -a EXTRA <<<"${JOBRUN_ARGS:-}"
SIZES=("$@"); [[ ${#SIZES[@]} -gt 0 ]] || SIZES=(100000 1000000)
command -v rsync >/dev/null || { apt-get install -y -q rsync >/dev/null; }
[[ -x /usr/bin/time ]] || apt-get install -y -q time >/dev/null
[[ -x "$JOBRUN" ]] || (cd "$ROOT" && cargo build --release)

# now, timev (wall s and peak RSS MB of a /usr/bin/time -v file), since, median
source "$HERE/scale-lib.sh"

for N in "${SIZES[@]}"; do
  B="$ROOT/target/scale/t$N"
  mkdir -p "$B/state"
  echo "== N=$N: generating (cached) $B/src"
  python3 "$HERE/gen-tree.py" "$B/src" "$N"
  M="$B/state/scale.toml"
  cat >"$M" <<TOML
source = "$B/src"
destination = "$B/dst"
db = "$B/state/scale.db"
log = "$B/state/scale.log"
checksum = "sha256"
TOML
  R="$ROOT/target/scale/results-$N.txt"; : >"$R"
  run() { # tag, then jobrun args; prints "<wall> <rss>"
    local tag=$1; shift
    local t0; t0=$(now)
    /usr/bin/time -v -o "$B/state/$tag.time" "$JOBRUN" -v "${EXTRA[@]}" "$@" "$M" \
      >"$B/state/$tag.out" 2>"$B/state/$tag.err" || true
    echo "$t0 $(timev "$B/state/$tag.time")"
  }

  # (a) first run
  rm -rf "$B/dst" "$B/state"/scale.{db,db-wal,db-shm,log}
  sync; read -r t0 wall rss < <(run first)
  scan=$(since "$B/state/first.err" "$t0" "scan done")
  rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from files').fetchone()[0])" "$B/state/scale.db")
  echo "first_run files=$N rows=$rows scan_plan_s=$scan total_s=$wall peak_rss_MB=$rss" | tee -a "$R"

  # (e) DB size per row (the last connection closed: WAL checkpointed)
  dbb=$(stat -c %s "$B/state/scale.db")
  python3 -c "import sys; b,r=int(sys.argv[1]),int(sys.argv[2]); print(f'db_bytes={b} rows={r} bytes_per_row={b/r:.0f} at_50M_GB={b/r*50e6/1e9:.1f}')" "$dbb" "$rows" | tee -a "$R"

  # (b) no-op reruns vs rsync -a no-op, interleaved (rsync once first as warm-up)
  rsync -a "$B/src/" "$B/dst/"
  jw=(); rw=(); jr=()
  for i in $(seq 1 "$REPEATS"); do
    read -r _ w r < <(run "noop$i"); jw+=("$w"); jr+=("$r")
    /usr/bin/time -v -o "$B/state/rsync$i.time" rsync -a "$B/src/" "$B/dst/"
    read -r w r < <(timev "$B/state/rsync$i.time"); rw+=("$w")
    echo "noop round $i: jobrun ${jw[-1]} s (peak RSS ${jr[-1]} MB), rsync $w s" >>"$R"
  done
  jm=$(median "${jw[@]}"); rm_=$(median "${rw[@]}")
  echo "noop jobrun_s=$jm rsync_s=$rm_ ratio=$(python3 -c "print(f'{$jm/$rm_:.2f}')") jobrun_peak_rss_MB=$(median "${jr[@]}") (each: ${jw[*]} / rsync ${rw[*]})" | tee -a "$R"
  grep -h "transferred\|files" "$B/state/noop1.out" | tail -2 >>"$R" || true

  # (d) resume with N pending rows: back to pending, destination emptied
  python3 -c "
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE files SET status='pending', hash=NULL, after_copy_size=NULL, after_copy_modified_ns=NULL\"); c.commit()
print(c.execute(\"select count(*) from files where status='pending'\").fetchone()[0])" "$B/state/scale.db" >"$B/state/pending.txt"
  rm -rf "$B/dst"
  sync
  # REPEATS tries, each interrupted right after its first block (a few
  # hundred files of the backlog get copied per try).
  tt=()
  for i in $(seq 1 "$REPEATS"); do
    t0=$(now)
    "$JOBRUN" -v "${EXTRA[@]}" "$M" >"$B/state/resume$i.out" 2>"$B/state/resume$i.err" &
    pid=$!
    for _ in $(seq 1 600); do
      grep -q "first block written" "$B/state/resume$i.err" 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -INT "$pid" 2>/dev/null || true; wait "$pid" || true
    tt+=("$(since "$B/state/resume$i.err" "$t0" "first block written")")
  done
  echo "resume pending_rows=$(cat "$B/state/pending.txt") time_to_first_byte_s=$(median "${tt[@]}") (each: ${tt[*]})" | tee -a "$R"
done
