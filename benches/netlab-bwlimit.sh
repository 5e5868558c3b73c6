#!/usr/bin/env bash
# Is jobrun's --bwlimit strict on the wire? (issue 3, SPEC §6). Run as root:
#
#   benches/netlab-bwlimit.sh [REPEATS]        (default 1)
#
# Brings the netlab link up at 400mbit (50 MB/s each way, so a burst above a
# 20 MiB/s limit is visible), copies the `mixed` profile (28 files, 1 GiB)
# with jobrun --bwlimit 20M, rsync --bwlimit=20M and rclone copy --bwlimit 20M,
# first on the write-through sshfs mounts, then on the kernel write-back
# mounts (`netlab up --proto rclone --buffered`); `netlab reset` (cold
# caches, empty dst) before every run, each run under `netlab sample`, then a
# size check of dst against src on the backing dirs. Prints one table.
# The lab is shared: the script holds /tmp/netlab.lock for its whole run.
# `writeback-nora` (not in the default set) is the write-back lab with rclone
# mount's read-ahead buffer off, to tell the mount's reads from the tool's;
# `writeback-sshsrc` keeps the write-back rclone destination but reads from
# a write-through sshfs source.
# Env: TOOLS="jobrun rsync rclone", MOUNTS="sshfs writeback", OUT=dir,
#      NETLAB=path/to/netlab, RATE=400mbit, JOBRUN=binary (default: build release).
set -euo pipefail
if [[ -z "${NETLAB_BWLIMIT_LOCKED:-}" ]]; then
  exec env NETLAB_BWLIMIT_LOCKED=1 flock /tmp/netlab.lock "$0" "$@"
fi
cd "$(dirname "$0")/.."
REPEATS=${1:-1}
NETLAB=${NETLAB:-}
for c in "$NETLAB" ../shared/netlab/netlab /work/shared/netlab/netlab; do
  [[ -n "$c" && -x "$c" ]] && { NETLAB=$c; break; }
done
[[ -x "$NETLAB" ]] || { echo "netlab not found; set NETLAB=" >&2; exit 2; }
read -r -a tools <<<"${TOOLS:-jobrun rsync rclone}"
read -r -a mounts <<<"${MOUNTS:-sshfs writeback}"
RATE=${RATE:-400mbit}
OUT=${OUT:-target/netlab-bwlimit/$(date -u +%Y%m%dT%H%M%SZ)}
SRC=/mnt/netlab/src DST=/mnt/netlab/dst BSRC=/srv/netlab/src BDST=/srv/netlab/dst
P=mixed
export RCLONE_CONFIG=/dev/null
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [[ -z "${JOBRUN:-}" ]]; then
  cargo build --release --quiet
  JOBRUN=$PWD/target/release/jobrun
fi
"$NETLAB" gen "$BSRC/$P" --profile "$P" >/dev/null
# Leave the lab as netlab's default (sshfs) for the next user.
trap '"$NETLAB" up --rate "$RATE" >/dev/null 2>&1 || true' EXIT

cmd_for() { # tool -> command line
  case $1 in
    jobrun) printf '%s' "$JOBRUN --bwlimit 20M $OUT/job.toml" ;;
    # Not in the default set: unlimited, to see what write-back pacing costs.
    jobrun-off) printf '%s' "$JOBRUN --bwlimit off $OUT/job.toml" ;;
    rsync)  printf '%s' "rsync -a --bwlimit=20M $SRC/$P $DST/" ;;
    rclone) printf '%s' "rclone copy --bwlimit 20M $SRC/$P $DST/$P" ;;
    *) echo "unknown tool $1" >&2; exit 2 ;;
  esac
}

sshfs_source() {
  local st=${NETLAB_STATE_DIR:-/var/lib/netlab} cipher
  cipher=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cipher"])' "$st/state.json")
  fusermount3 -u "$SRC" 2>/dev/null || umount -l "$SRC"
  sshfs "root@198.18.0.2:/srv/netlab/src" "$SRC" -o "IdentityFile=$st/ssh/client_ed25519_key,UserKnownHostsFile=$st/ssh/known_hosts,StrictHostKeyChecking=yes,BatchMode=yes,IdentitiesOnly=yes,Ciphers=$cipher,Compression=no,allow_other,idmap=none"
}

for m in "${mounts[@]}"; do
  case $m in
    sshfs)     "$NETLAB" up --rate "$RATE" >"$OUT/up-$m.txt" 2>&1 ;;
    writeback) "$NETLAB" up --rate "$RATE" --proto rclone --buffered >"$OUT/up-$m.txt" 2>&1 ;;
    # The same write-back mounts without rclone's own read-ahead buffer
    # (`rclone mount --buffer-size 0`; default 16 MiB per open file, fetched
    # at link rate on open, whatever pace the reader keeps). netlab passes
    # `rclone_args` from its state file to `rclone mount` on every reset.
    writeback-nora)
      "$NETLAB" up --rate "$RATE" --proto rclone --buffered >"$OUT/up-$m.txt" 2>&1
      python3 - "${NETLAB_STATE_DIR:-/var/lib/netlab}/state.json" <<'PY'
import json, sys
p = sys.argv[1]; st = json.load(open(p))
st["rclone_args"] = ["--buffer-size", "0"]
json.dump(st, open(p, "w"), indent=1)
PY
      ;;
    # Write-back destination (rclone mount) read from a write-through sshfs
    # source: the source mount reads only what the reader asks for, so the
    # figures show what the tool does on a kernel-buffered destination.
    # netlab mounts both exports with one protocol; the source is swapped
    # for sshfs (netlab's own options and keys) after every reset.
    writeback-sshsrc) "$NETLAB" up --rate "$RATE" --proto rclone --buffered >"$OUT/up-$m.txt" 2>&1 ;;
    *) echo "unknown mount $m" >&2; exit 2 ;;
  esac
  for r in $(seq 1 "$REPEATS"); do
    for t in "${tools[@]}"; do
      tag="${m/-/}_${t}_r${r}"
      "$NETLAB" reset >/dev/null 2>&1
      [[ $m == writeback-sshsrc ]] && sshfs_source
      # A fresh job each run: state DB and audit log on local disk.
      rm -f "$OUT"/job.db* "$OUT"/job.log
      printf 'source = "%s"\ndestination = "%s"\n' "$SRC/$P" "$DST/$P" >"$OUT/job.toml"
      c=$(cmd_for "$t")
      echo "== $tag: $c   [$(uptime | sed 's/.*load/load/')]" | tee -a "$OUT/log.txt"
      set +e
      # shellcheck disable=SC2086
      "$NETLAB" sample --out "$OUT/$tag.csv" --json "$OUT/$tag.json" -- $c >"$OUT/$tag.out" 2>&1
      rc=$?
      set -e
      tail -n 3 "$OUT/$tag.out" | tee -a "$OUT/log.txt"
      [[ $t == jobrun* ]] && cp "$OUT/job.log" "$OUT/$tag.audit.jsonl"
      a=$(cd "$BSRC/$P" && find . -type f -printf '%P %s\n' | sort | sha256sum)
      b=$(cd "$BDST/$P" 2>/dev/null && find . -type f -printf '%P %s\n' | sort | sha256sum || echo missing)
      ok=$([[ "$a" == "$b" && $rc == 0 ]] && echo ok || echo MISMATCH)
      python3 - "$OUT/$tag.json" "$ok" "$c" "$(du -sb "$BSRC/$P" | cut -f1)" <<'PY'
import json, sys
f, ok, c, payload = sys.argv[1:5]
d = json.load(open(f)); d["check"] = ok; d["cmdline"] = c; d["payload_bytes"] = int(payload)
json.dump(d, open(f, "w"), indent=1)
PY
      echo "   check: $ok" | tee -a "$OUT/log.txt"
    done
  done
done
"$NETLAB" reset >/dev/null 2>&1

python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import glob, json, os, sys
out = sys.argv[1]
LIMIT = 20 * 1024 * 1024 / 1e6  # 20 MiB/s in MB/s
rows = []
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    d = json.load(open(f))
    mount, tool, rep = os.path.basename(f)[:-5].split("_")
    mean = d["payload_bytes"] / 1e6 / d["wall_s"]
    r = lambda k, dirn: d[f"{dirn}_{k}_MBps"] / d[f"{dirn}_avg_MBps"]
    rows.append((mount, tool, rep, d["wall_s"], mean / LIMIT,
                 r("peak1s", "rx"), r("peak100ms", "rx"), r("peak1s", "tx"), r("peak100ms", "tx"),
                 d["rx_avg_MBps"], d["tx_avg_MBps"], d["cpu_avg_pct"], d["check"]))
order = {"sshfs": 0, "writeback": 1, "writebacknora": 2, "writebacksshsrc": 3}, {"jobrun": 0, "rsync": 1, "rclone": 2, "jobrun-off": 3}
rows.sort(key=lambda x: (order[0].get(x[0], 9), order[1].get(x[1], 9), x[2]))
print("| mount | tool | run | wall s | mean payload / limit | RX 1 s peak / mean | RX 100 ms peak / mean "
      "| TX 1 s peak / mean | TX 100 ms peak / mean | RX / TX wire mean MB/s | cpu % | check | goals |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (m, t, rep, wall, mean, rx1, rx01, tx1, tx01, rxa, txa, cpu, ok) in rows:
    goals = mean >= 0.95 and max(rx1, tx1) <= 1.10 and max(rx01, tx01) <= 1.5
    goals = "-" if t.endswith("-off") else "met" if goals else "NOT met"
    name = {"sshfs": "write-through sshfs", "writeback": "write-back rclone",
            "writebacknora": "write-back rclone, --buffer-size 0",
            "writebacksshsrc": "write-back rclone dst, sshfs src"}[m]
    print(f"| {name} | {t} | {rep} | {wall:.1f} "
          f"| {mean:.3f} | {rx1:.2f} | {rx01:.2f} | {tx1:.2f} | {tx01:.2f} | {rxa:.1f} / {txa:.1f} "
          f"| {cpu:.0f} | {ok} | {goals} |")
print()
print("limit 20 MiB/s = 20.97 MB/s of payload; mean payload = 1 GiB / wall time; peaks are the")
print("netlab wire counters (headers included) over the same direction's wire mean of that run.")
print("goals (issue 3): mean >= 0.95 x limit, 1 s peak <= 1.10 x mean, 100 ms peak <= 1.5 x mean.")
PY
