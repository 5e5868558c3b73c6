#!/usr/bin/env bash
# Local side-by-side benchmark (issue 2): jobrun against cp, openssl and rsync
# on the same data in one interleaved hyperfine run. Destinations live on
# tmpfs (/dev/shm) so disk write-back noise stays out; sources are generated
# once under target/bench-local/ and read from the page cache.
#
#   benches/local-compare.sh            # both cases
#   RUNS=5 benches/local-compare.sh     # more repetitions
#
# (a) 1 GiB in 8 files of 128 MiB, sha256: jobrun vs `cp -r` vs
#     `openssl dgst -sha256`. Goal: jobrun <= 1.25 x max(cp, openssl).
# (b) 20,000 files of 4 KiB in nested folders: jobrun (scan, DB and all)
#     vs `rsync -a`. Goal: <= 1.0 x rsync.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need hyperfine hyperfine
need rsync rsync
need openssl openssl
cargo build --release --quiet
BIN=$PWD/target/release/jobrun
DATA=$PWD/target/bench-local
SHM=/dev/shm/jobrun-bench
mkdir -p "$DATA" "$SHM"
trap 'rm -rf "$SHM"' EXIT

if [ ! -f "$DATA/big/.done" ]; then
  rm -rf "$DATA/big"; mkdir -p "$DATA/big"
  for i in $(seq 1 8); do head -c $((128 << 20)) /dev/urandom > "$DATA/big/f$i.bin"; done
  touch "$DATA/big/.done"
fi
if [ ! -f "$DATA/small/.done" ]; then
  rm -rf "$DATA/small"
  python3 - "$DATA/small" <<'PY'
import os, random, sys
root = sys.argv[1]; random.seed(20000)
for i in range(20000):
    d = os.path.join(root, f"d{i % 20:02}", f"e{(i // 20) % 50:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}.dat"), "wb") as f:
        f.write(random.randbytes(4096))
PY
  touch "$DATA/small/.done"
fi
rm -f "$DATA/big/.done.tmp"
# Warm the page cache so every tool reads from RAM.
cat "$DATA"/big/*.bin > /dev/null; find "$DATA/small" -type f -exec cat {} + > /dev/null

job() { # name source
  cat > "$SHM/$1.toml" <<TOML
source = "$2"
destination = "$SHM/$1-dst"
db = "$SHM/$1.db"
log = "$SHM/$1.log"
checksum = "sha256"
TOML
}
job big "$DATA/big"
job small "$DATA/small"

echo "== (a) 1 GiB of 128 MiB files, sha256 =="
hyperfine --runs "$RUNS" --warmup 1 --export-markdown "$SHM/a.md" \
  --prepare "rm -rf $SHM/big-dst $SHM/big.db* $SHM/big.log $SHM/cp-dst" \
  -n jobrun "$BIN -q $SHM/big.toml" \
  -n "cp -r" "cp -r $DATA/big $SHM/cp-dst" \
  -n "openssl sha256" "openssl dgst -sha256 $DATA/big/f*.bin"
echo "== (b) 20,000 files of 4 KiB =="
hyperfine --runs "$RUNS" --warmup 1 --export-markdown "$SHM/b.md" \
  --prepare "rm -rf $SHM/small-dst $SHM/small.db* $SHM/small.log $SHM/rsync-dst" \
  -n jobrun "$BIN -q $SHM/small.toml" \
  -n "rsync -a" "rsync -a $DATA/small/ $SHM/rsync-dst/"
cat "$SHM/a.md" "$SHM/b.md"
