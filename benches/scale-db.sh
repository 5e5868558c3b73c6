#!/usr/bin/env bash
# State-DB scale benchmark (issue 26 item 3): flat costs from 1M to 50M rows.
#
#   benches/scale-db.sh N...         e.g. 1000000 10000000
#
# For each N: a real tree of 1,000 files (benches/gen-tree.py) copied by a
# first run (the DB's roots, scan and run history as the product makes
# them), then N - 1,000 more rows synthesised through the product's own
# write path (`examples/scale_db.rs`: `Tx::insert_source`, `mark_synced`,
# `mark_failed`; 90% synced with a sha256, 9% pending, 1% failed; paths
# shaped like gen-tree.py's), and measured:
#   (a) DB bytes per file row after a checkpoint (goal <= 100);
#   (b) `status` and `status --json`: wall s and peak RSS (goals <= 2 s, <= 150 MB);
#   (c) the per-entry lookup of a no-op rescan (`SourceLookup::find` in walk
#       order over 200,000 rows), ns per entry (goal: flat from 1M to 50M);
#   (d) resume with the real files pending: start to the first block
#       written, and peak RSS (goals <= 5 s, <= 150 MB);
#   (e) a filter edit's pass dropping 1% of rows (`drop_rows_where`), s, RSS.
# Results: target/scale-db/results-<N>.txt and a summary on stdout.
# Environment: JOBRUN (default target/release/jobrun), REPEATS (default 3),
# REUSE=1 (measure the DB a previous run left for N again, without building
# it: the synthesis of 50M rows takes about an hour; the filter edit drops
# 1% of what is left).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
JOBRUN="${JOBRUN:-$ROOT/target/release/jobrun}"
SYNTH="$ROOT/target/release/examples/scale_db"
REPEATS="${REPEATS:-3}"
[[ $# -gt 0 ]] || { echo "usage: benches/scale-db.sh N..." >&2; exit 2; }
[[ -x /usr/bin/time ]] || apt-get install -y -q time >/dev/null
(cd "$ROOT" && cargo build --locked --release --bin jobrun --example scale_db)

# now, timev (wall s and peak RSS MB of a /usr/bin/time -v file), since, median
source "$HERE/scale-lib.sh"

for N in "$@"; do
  B="$ROOT/target/scale-db/t$N"
  M="$B/state/job.toml"
  R="$ROOT/target/scale-db/results-$N.txt"
  if [[ "${REUSE:-}" == 1 && -f "$B/state/job.db" ]]; then
    echo "reusing $B/state/job.db (REUSE=1)" | tee -a "$R"
  else
  rm -rf "$B"; mkdir -p "$B/state"
  python3 "$HERE/gen-tree.py" "$B/src" 1000
  cat >"$M" <<TOML
source = "$B/src"
destination = "$B/dst"
db = "$B/state/job.db"
log = "$B/state/job.log"
checksum = "sha256"
TOML
  : >"$R"
  "$JOBRUN" "$M" >"$B/state/first.out" 2>&1
  t0=$(now)
  /usr/bin/time -v -o "$B/state/synth.time" "$SYNTH" synth "$B/state/job.db" "$B/src" "$B/dst" 1000 "$N" | tee -a "$R"
  read -r w r < <(timev "$B/state/synth.time")
  echo "synth wall_s=$w peak_rss_MB=$r" | tee -a "$R"
  fi

  # (a) bytes per row
  echo "$("$SYNTH" size "$B/state/job.db") (goal <= 100)" | tee -a "$R"

  # the real files back to pending, the destination emptied: a resume copies them first
  python3 -c "
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute(\"UPDATE files SET status='pending', hash=NULL, after_copy_size=NULL, after_copy_modified_ns=NULL WHERE rowid <= 1003 AND kind = 'file'\")
c.commit()" "$B/state/job.db"
  rm -rf "$B/dst"; sync

  # (b) status, status --json
  for form in "" "--json"; do
    ws=(); rs=()
    for i in $(seq 1 "$REPEATS"); do
      # shellcheck disable=SC2086
      /usr/bin/time -v -o "$B/state/status.time" "$JOBRUN" status "$M" $form >"$B/state/status$form.out" 2>&1 || true
      read -r w r < <(timev "$B/state/status.time"); ws+=("$w"); rs+=("$r")
    done
    echo "status${form:+ $form} s=$(median "${ws[@]}") peak_rss_MB=$(median "${rs[@]}") (goals <= 2 s, <= 150 MB; each: ${ws[*]})" | tee -a "$R"
  done

  # (c) per-entry lookup of a no-op rescan
  /usr/bin/time -v -o "$B/state/lookup.time" "$SYNTH" lookup "$B/state/job.db" "$B/src" "$N" 200000 >"$B/state/lookup.out"
  read -r w r < <(timev "$B/state/lookup.time")
  echo "$(cat "$B/state/lookup.out") peak_rss_MB=$r (goal: flat)" | tee -a "$R"

  # (d) resume to the first block written
  tt=(); rs=()
  for i in $(seq 1 "$REPEATS"); do
    t0=$(now)
    /usr/bin/time -v -o "$B/state/resume$i.time" "$JOBRUN" -v "$M" >"$B/state/resume$i.out" 2>"$B/state/resume$i.err" &
    tp=$!
    for _ in $(seq 1 1200); do
      grep -q "first block written" "$B/state/resume$i.err" 2>/dev/null && break
      kill -0 "$tp" 2>/dev/null || break
      sleep 0.05
    done
    pkid=$(cat "/proc/$tp/task/$tp/children" 2>/dev/null || true)
    [[ -n "$pkid" ]] && kill -INT $pkid 2>/dev/null || true
    wait "$tp" || true
    tt+=("$(since "$B/state/resume$i.err" "$t0" "first block written")")
    read -r _ r < <(timev "$B/state/resume$i.time"); rs+=("$r")
    rm -rf "$B/dst"
    python3 -c "
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute(\"UPDATE files SET status='pending', hash=NULL, after_copy_size=NULL, after_copy_modified_ns=NULL WHERE rowid <= 1003 AND kind = 'file'\")
c.commit()" "$B/state/job.db"
  done
  echo "resume time_to_first_byte_s=$(median "${tt[@]}") peak_rss_MB=$(median "${rs[@]}") (goals <= 5 s, <= 150 MB; each: ${tt[*]})" | tee -a "$R"

  # (e) a filter edit dropping 1%
  /usr/bin/time -v -o "$B/state/drop.time" "$SYNTH" drop "$B/state/job.db" >"$B/state/drop.out"
  read -r w r < <(timev "$B/state/drop.time")
  echo "$(cat "$B/state/drop.out") wall_s=$w peak_rss_MB=$r" | tee -a "$R"
done
