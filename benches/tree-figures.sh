#!/usr/bin/env bash
# Tree figures (issue 25), local disk: what a sparse tree and a hard-link
# snapshot tree take at the destination and how long the copy takes,
# jobrun vs `rsync -aHS` vs `cp -a`, side by side, tools interleaved, RUNS
# rounds, medians. Source and destinations on the same local filesystem
# (ext4 here); caches are not dropped (the source is read from the page
# cache, its holes from no cache at all).
#
#   benches/tree-figures.sh                    # 20 GiB + 4 GiB sparse, 1,000 names / 10 inodes
#   BIG=4 SMALL=1 RUNS=3 benches/tree-figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3} BIG=${BIG:-20} SMALL=${SMALL:-4}
W=${W:-/var/tmp/jobrun-tree-figures}
if [[ -z "${JOBRUN:-}" ]]; then cargo build --release --locked --quiet; JOBRUN=$PWD/target/release/jobrun; fi
command -v rsync >/dev/null || { echo "rsync missing: apt-get install rsync" >&2; exit 2; }
rm -rf "$W"; mkdir -p "$W"
python3 benches/tree-gen.py sparse "$W/src-sparse" "$BIG" "$SMALL"
python3 benches/tree-gen.py links "$W/src-links" 10 100 10
sync
# copy TOOL TREE DEST: one copy, prints seconds.
copy() {
  local t0 t1
  rm -rf "$3" "$W/job.db" "$W/job.log" "$W/job.toml.lock"
  printf 'source = "%s"\ndestination = "%s"\n' "$W/src-$2" "$3" >"$W/job.toml"
  t0=$(date +%s.%N)
  case $1 in
    jobrun) "$JOBRUN" "$W/job.toml" >/dev/null ;;
    rsync) rsync -aHS "$W/src-$2/" "$3/" ;;
    cp) cp -a "$W/src-$2" "$3" ;;
  esac
  sync
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
echo "tree tool round seconds du_KiB apparent_KiB" >"$W/results.txt"
for r in $(seq "$RUNS"); do
  for tree in sparse links; do
    for tool in jobrun rsync cp; do
      d=$W/dst-$tool-$tree
      s=$(copy $tool $tree "$d")
      echo "$tree $tool $r $s $(du -sk "$d" | cut -f1) $(du -sk --apparent-size "$d" | cut -f1)" >>"$W/results.txt"
    done
  done
done
echo "source sparse $(du -sk "$W/src-sparse" | cut -f1) KiB, links $(du -sk "$W/src-links" | cut -f1) KiB" >>"$W/results.txt"
python3 - "$W/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:] if not l.startswith("source")]
src = open(sys.argv[1]).read().splitlines()[-1]
print(src)
print("| tree | tool | median wall | destination du | apparent |")
print("|---|---|---|---|---|")
for tree in ("sparse", "links"):
    for tool in ("jobrun", "rsync", "cp"):
        rs = [r for r in rows if r[0] == tree and r[1] == tool]
        secs = statistics.median(float(r[3]) for r in rs)
        du = statistics.median(int(r[4]) for r in rs)
        ap = statistics.median(int(r[5]) for r in rs)
        print(f"| {tree} | {tool} | {secs:.2f} s | {du / 1024:.1f} MiB | {ap / 1048576:.2f} GiB |")
PY
