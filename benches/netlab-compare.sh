#!/usr/bin/env bash
# Side-by-side copy benchmark on the netlab link (issue 8): jobrun vs rsync,
# rclone and cp, each run under `netlab sample`, cold caches between runs.
#
#   sudo benches/netlab-compare.sh [OUTDIR] [ROUNDS] [PROFILE...]
#
# Defaults: OUTDIR=target/netlab-compare/<UTC time>, ROUNDS=2, profiles
# large mixed small. Environment:
#   TOOLS="jobrun rsync rclone4 cp"  tools, run round-robin in this order;
#                                    `jobrun_tN` = jobrun with --transfers N
#   RATE=400mbit                     link rate per direction
#   NETLAB=../shared/netlab/netlab   the lab script
#   JOBRUN=target/release/jobrun     built with `cargo build --release` if missing
#   LOCK=/tmp/netlab.lock            the whole session runs under `flock $LOCK`
# Needs root (the lab does). Installs what it needs (`netlab install --bench`).
# Prints one table of medians (benches/netlab-table.py OUTDIR) at the end.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
NETLAB="${NETLAB:-$ROOT/../shared/netlab/netlab}"
[[ -x "$NETLAB" ]] || NETLAB="/work/shared/netlab/netlab"
LOCK="${LOCK:-/tmp/netlab.lock}"

# Re-exec under the lab lock once: one lab session at a time on this machine.
if [[ -z "${NETLAB_COMPARE_LOCKED:-}" ]]; then
  export NETLAB_COMPARE_LOCKED=1
  exec flock "$LOCK" "$0" "$@"
fi

OUT="${1:-$ROOT/target/netlab-compare/$(date -u +%Y%m%dT%H%M%S)}"
ROUNDS="${2:-2}"
shift $(( $# >= 2 ? 2 : $# )) || true
PROFILES=("$@")
[[ ${#PROFILES[@]} -gt 0 ]] || PROFILES=(large mixed small)
RATE="${RATE:-400mbit}"
JOBRUN="${JOBRUN:-$ROOT/target/release/jobrun}"
read -r -a tools <<<"${TOOLS:-jobrun rsync rclone4 cp}"

SRC=/mnt/netlab/src DST=/mnt/netlab/dst
BSRC=/srv/netlab/src BDST=/srv/netlab/dst
export RCLONE_CONFIG=/dev/null   # no rclone config: local paths only
mkdir -p "$OUT/state"
OUT="$(cd "$OUT" && pwd)"

if [[ ! -x "$JOBRUN" ]]; then (cd "$ROOT" && cargo build --release); fi
"$NETLAB" install --bench >/dev/null
"$NETLAB" up --rate "$RATE" >/dev/null
for p in "${PROFILES[@]}"; do "$NETLAB" gen "$BSRC/$p" --profile "$p" >/dev/null; done
"$NETLAB" status >"$OUT/status.txt" || { echo "lab not up" >&2; exit 1; }
{ echo "rate=$RATE rounds=$ROUNDS profiles=${PROFILES[*]} tools=${tools[*]}"
  echo "jobrun: $("$JOBRUN" --version) $(cd "$ROOT" && git rev-parse --short HEAD)"
  rsync --version | sed -n 1p; rclone version | sed -n 1p; cp --version | sed -n 1p; nproc; } >"$OUT/versions.txt" || true

# The jobrun manifest for a profile: state DB and audit log on the local disk
# (as users would keep them), sha256 on, everything else at its default.
manifest() { # profile
  local m="$OUT/state/$1.toml"
  cat >"$m" <<TOML
source = "$SRC/$1"
destination = "$DST/$1"
db = "$OUT/state/$1.db"
log = "$OUT/state/$1.log"
checksum = "sha256"
TOML
  echo "$m"
}

cmd_for() { # tool profile
  local t=$1 p=$2
  case $t in
    cp)        echo "cp -a $SRC/$p $DST/" ;;
    rsync)     echo "rsync -a $SRC/$p $DST/" ;;
    rclone4)   echo "rclone copy --transfers 4 $SRC/$p $DST/$p" ;;
    rclone1)   echo "rclone copy --transfers 1 $SRC/$p $DST/$p" ;;
    jobrun)    echo "$JOBRUN --quiet $(manifest "$p")" ;;
    jobrun_t*) echo "$JOBRUN --quiet --transfers ${t#jobrun_t} $(manifest "$p")" ;;
    *) echo "unknown tool $t" >&2; exit 2 ;;
  esac
}

for r in $(seq 1 "$ROUNDS"); do
  for p in "${PROFILES[@]}"; do
    for t in "${tools[@]}"; do
      tag="${p}_${t}_r${r}"
      c=$(cmd_for "$t" "$p")
      rm -f "$OUT/state/$p".{db,db-wal,db-shm,db.lock,log}
      "$NETLAB" reset >/dev/null 2>&1
      echo "== $tag: $c   [$(uptime | sed 's/.*load/load/')]" | tee -a "$OUT/log.txt"
      set +e
      "$NETLAB" sample --out "$OUT/$tag.csv" --json "$OUT/$tag.json" -- $c >>"$OUT/$tag.stdout" 2>&1
      rc=$?
      set -e
      tail -n 3 "$OUT/$tag.stdout" | tee -a "$OUT/log.txt"
      # Content check on the backing dirs (no link traffic): names + sizes.
      a=$(cd "$BSRC/$p" && find . -type f -printf '%P %s\n' | sort | sha256sum)
      b=$( (cd "$BDST/$p" 2>/dev/null && find . -type f -printf '%P %s\n' | sort | sha256sum) || echo missing)
      ok=$([[ "$a" == "$b" && $rc == 0 ]] && echo ok || echo MISMATCH)
      files=$(cd "$BSRC/$p" && find . -type f | wc -l)
      bytes=$(cd "$BSRC/$p" && find . -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
      python3 - "$OUT/$tag.json" "$ok" "$(uptime)" "$c" "$files" "$bytes" <<'PY'
import json, sys
f, ok, up, c, files, nbytes = sys.argv[1:7]
d = json.load(open(f)); d.update(check=ok, uptime_at_end=up, cmdline=c,
                                 files=int(files), file_bytes=int(nbytes))
json.dump(d, open(f, "w"), indent=1)
PY
      echo "   check: $ok" | tee -a "$OUT/log.txt"
    done
  done
done
"$NETLAB" reset >/dev/null 2>&1
python3 "$HERE/netlab-table.py" "$OUT" | tee "$OUT/table.md"
