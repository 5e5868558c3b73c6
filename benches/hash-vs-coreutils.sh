#!/usr/bin/env bash
# jobrun's hashing (criterion, `benches/hash.rs`) beside GNU coreutils
# md5sum / sha1sum / sha256sum / b2sum on the same bytes, in one session.
#
#   benches/hash-vs-coreutils.sh            # criterion hash bench + coreutils, per algorithm
#   NO_BENCH=1 benches/hash-vs-coreutils.sh # reuse target/criterion results of the last run
#
# Data: one 5 MiB random file. jobrun hashes it in memory (one iteration = one
# 5 MiB file through `jobrun::checksum`, as the reader does per block), via
# JOBRUN_BENCH_DATA. Coreutils hashes the same file from the page cache,
# named REPEAT times on one command line (one process, ~0.1 s, so start-up
# is negligible), ROUNDS times.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-8}   # 8 × 5 MiB = 40 MiB per coreutils run (~0.1 s, like a criterion sample)
ROUNDS=${ROUNDS:-20}  # as many as criterion samples
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
DATA=$TARGET/bench-data/5MiB.bin
mkdir -p "$(dirname "$DATA")"
[ -s "$DATA" ] || head -c $((5 << 20)) /dev/urandom >"$DATA"

echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) cores"
echo "sha extensions (sha_ni): $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)"
echo "coreutils: $(sha256sum --version | head -1)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

files=()
for _ in $(seq "$REPEAT"); do files+=("$DATA"); done
cat "$DATA" >/dev/null # page cache
bytes=$(( (5 << 20) * REPEAT ))

# Per algorithm, back to back: the criterion bench, then coreutils, so both
# see the same machine load. Both sides report their BEST time (criterion:
# fastest sample; coreutils: fastest of ROUNDS runs): on a shared machine the
# best time is the closest to the uncontended speed. Mean figures are in
# target/criterion/report/index.html.
rows=()
for pair in md5:md5sum sha1:sha1sum sha256:sha256sum blake2b:b2sum; do
  algo=${pair%%:*} tool=${pair#*:}
  if [ -z "${NO_BENCH:-}" ]; then
    JOBRUN_BENCH_DATA=$DATA cargo bench --locked --bench hash -- "hash/$algo/5MiB\$" >&2
  fi
  sample=$TARGET/criterion/hash/$algo/5MiB/new/sample.json
  [ -s "$sample" ] || { echo "missing $sample (run without NO_BENCH)" >&2; exit 1; }
  best=
  for _ in $(seq "$ROUNDS"); do
    s=$(date +%s.%N)
    "$tool" "${files[@]}" >/dev/null
    e=$(date +%s.%N)
    best=$(python3 -c 'import sys; t=float(sys.argv[2])-float(sys.argv[1]); b=sys.argv[3]; print(min(t, float(b)) if b else t)' "$s" "$e" "$best")
  done
  rows+=("$(python3 -c '
import json, sys
algo, sample, secs, nbytes, tool = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
d = json.load(open(sample))
ns = min(t / i for t, i in zip(d["times"], d["iters"]))  # fastest ns per 5 MiB hash
ours = (5 << 20) / ns * 1e3          # MB/s (10^6 B/s)
theirs = nbytes / secs / 1e6
print(f"{algo:<8} {ours:14.0f} {theirs:14.0f} {ours / theirs:7.2f}x   ({tool})")' \
    "$algo" "$sample" "$best" "$bytes" "$tool")")
done

printf '\n%-8s %14s %14s %8s\n' algo "jobrun MB/s" "coreutils MB/s" ratio
printf '%s\n' "${rows[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
