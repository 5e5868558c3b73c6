#!/usr/bin/env bash
# Does --bwlimit hold on the kernel NFS and SMB clients' write-back? Run as
# root:
#
#   benches/kernlab-bwlimit.sh
#
# One kernlab guest per cell (tool x direction x protocol), each under
# `kernlab run --sample` (tap counters every 100 ms, CMD start to the end of
# the guest's final sync, so data left in the page cache is counted when it
# leaves). Link 200 mbit (25 MB/s, ~5x the limit); payload 40 MiB
# (8 x 4 MiB + 32 x 256 KiB); limit 5 MiB/s for every tool.
# - write: source on the host, read by the guest over virtio-9p (not the
#   sampled link), destination /mnt/kernlab/PROTO/dst; counted: rx (guest->host).
# - read: source /mnt/kernlab/PROTO/src, destination the guest's tmpfs;
#   counted: tx (host->guest).
# The destination is emptied before each cell (kernlab reset / fresh tmpfs);
# each cell's files are compared with the source on the host (write: the
# backing folder; read: sha256 of the guest's copy, taken from its tmpfs). Prints one table (also OUT/table.md).
# Env: TOOLS="jobrun rsync rclone", DIRS="write read", PROTOS="nfs3 nfs4 smb",
#      KERNLAB=path, OUT=dir, JOBRUN=binary (default: build release).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/kernlab-lib.sh
find_kernlab
read -r -a tools <<<"${TOOLS:-jobrun rsync rclone}"
read -r -a dirs <<<"${DIRS:-write read}"
read -r -a protos <<<"${PROTOS:-nfs3 nfs4 smb}"
results_dir kernlab-bwlimit
release_jobrun
"$K" install >/dev/null
"$K" up --rate 200mbit --ttl 7200 >/dev/null
export RCLONE_CONFIG=/dev/null

# The payload, once: on the host for writes, in the exported source for reads.
python3 - "$OUT/payload" /srv/kernlab/src/bw <<'PY'
import os, random, shutil, sys
rnd = random.Random(5)
for root in sys.argv[1:]:
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    for i in range(8):
        open(f"{root}/big{i}", "wb").write(rnd.randbytes(4 << 20))
    for i in range(32):
        open(f"{root}/small{i:02}", "wb").write(rnd.randbytes(256 << 10))
PY

cmd_for() { # tool src dst -> the command run in the guest
  case $1 in
    jobrun) printf '%s --bwlimit 5M --source %s --destination %s --db %s/j.db --log %s/j.log %s/job.toml' \
      "$JOBRUN" "$2" "$3" "$OUT" "$OUT" "$OUT" ;;
    rsync) printf 'rsync -a --bwlimit=5M %s/ %s/' "$2" "$3" ;;
    rclone) printf 'rclone copy --bwlimit 5M %s %s' "$2" "$3" ;;
  esac
}
printf 'source = "/nonexistent"\ndestination = "/nonexistent"\n' >"$OUT/job.toml"

for p in "${protos[@]}"; do
  for d in "${dirs[@]}"; do
    for t in "${tools[@]}"; do
      tag="${p}_${d}_${t}"
      "$K" reset >/dev/null
      rm -f "$OUT"/j.db* "$OUT"/j.log
      if [[ $d == write ]]; then
        src=$OUT/payload dst=/mnt/kernlab/$p/dst/bw
        check="true"
      else
        src=/mnt/kernlab/$p/src/bw dst=/tmp/bw-dst
        # Hashed in the guest from its tmpfs: reading the source again
        # would put the payload on the sampled link a second time.
        check="(cd $dst && find . -type f -exec sha256sum {} + | sort -k2) >$OUT/$tag.sums"
      fi
      c=$(cmd_for "$t" "$src" "$dst")
      echo "== $tag: $c   [$(uptime | sed 's/.*load/load/')]" | tee -a "$OUT/log.txt"
      set +e
      "$K" run --rw "$OUT" --sample "$OUT/$tag.json" -- sh -c "mkdir -p $dst && $c; rc=\$?; $check; exit \$rc" \
        >"$OUT/$tag.out" 2>&1
      rc=$?
      set -e
      ok=ok
      [[ $rc == 0 ]] || ok="exit $rc"
      if [[ $d == write ]]; then
        diff -r "$OUT/payload" /srv/kernlab/dst/bw >/dev/null 2>&1 || ok=DIFFERENT
      else
        [[ "$(cd /srv/kernlab/src/bw && find . -type f -exec sha256sum {} + | sort -k2)" == "$(cat "$OUT/$tag.sums")" ]] || ok=DIFFERENT
      fi
      python3 - "$OUT/$tag.json" "$ok" "$c" <<'PY'
import json, sys
f, ok, c = sys.argv[1:4]
d = json.load(open(f)); d["check"] = ok; d["cmdline"] = c
json.dump(d, open(f, "w"), indent=1)
PY
      echo "   $ok" | tee -a "$OUT/log.txt"
    done
  done
done
"$K" reset >/dev/null

python3 benches/kernlab-table.py "$OUT" | tee "$OUT/table.md"
