#!/usr/bin/env bash
# Does showing progress slow the copy? Runs the release binary on 20,000
# small files (0.5-4 KiB, ~44 MiB of data) on tmpfs, interleaving three modes:
#   quiet  (`-q`, no reporter thread)
#   plain  (stderr is a file: one line per second, progress_interval = 1s)
#   live   (stderr is a pty from util-linux `script`: the indicatif display)
# and prints wall and CPU (user+sys) time per mode: median, min, max.
# Usage: benches/progress-overhead.sh [ROUNDS]   (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-8}
cargo build --release --quiet
dir=$(mktemp -d /dev/shm/jobrun-progress.XXXXXX)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" <<'PY'
import os, random, sys
random.seed(1)
root = sys.argv[1]
for d in range(100):
    os.makedirs(f"{root}/src/d{d:03}")
    for f in range(200):
        with open(f"{root}/src/d{d:03}/f{f:04}.bin", "wb") as fh:
            fh.write(random.randbytes(random.randint(512, 4096)))
PY
printf 'source = "src"\ndestination = "dst"\nprogress_interval = "1s"\n' >"$dir/job.toml"
cp target/release/jobrun "$dir/jobrun"
cd "$dir"
T="/usr/bin/time -f %e_%U_%S -o $dir/t.txt"
for _ in $(seq "$rounds"); do
  for mode in quiet live plain; do
    rm -rf dst job.db* job.log
    case $mode in
      quiet) $T ./jobrun -q job.toml >/dev/null 2>&1 ;;
      plain) $T ./jobrun job.toml >/dev/null 2>plain.err ;;
      live) script -q -e -c "stty cols 120; $T ./jobrun job.toml" /dev/null >/dev/null ;;
    esac
    echo "$mode $(tr _ ' ' <t.txt)" >>results.txt
  done
done
python3 - results.txt <<'PY'
import statistics as st, sys
d = {}
for line in open(sys.argv[1]):
    m, w, u, s = line.split()
    d.setdefault(m, []).append((float(w), float(u) + float(s)))
for m, v in d.items():
    w = [x[0] for x in v]; c = [x[1] for x in v]
    print(f"{m:6} n={len(v)}  wall median {st.median(w):.2f}s (min {min(w):.2f}, max {max(w):.2f})"
          f"  cpu median {st.median(c):.2f}s (min {min(c):.2f}, max {max(c):.2f})")
PY
