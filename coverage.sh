#!/usr/bin/env bash
# Line/region coverage of the whole test suite (unit + integration tests,
# including the `jobrun` binary the integration tests spawn).
#
#   ./coverage.sh                 # everything; extra args go to `cargo test`
#   ./coverage.sh -- decide       # e.g. only tests whose name matches `decide`
#
# Source-based coverage: rustc `-C instrument-coverage` + LLVM's
# llvm-profdata/llvm-cov of the SAME major version as rustc's LLVM (older
# ones cannot read the profiles). No rustup component, no cargo plugin.
# On Debian the matching `llvm-<major>` package is installed if missing
# (needs root and the network). Override the tool folder with LLVM_BIN=...
#
# Output (under target/coverage/):
#   summary.txt    per-file regions/functions/lines table (also printed)
#   lcov.info      lcov tracefile (for editors / CI annotations)
#   html/index.html browsable annotated source
# Instrumented artifacts go to target/cov-build/ so the normal target/ stays warm.
set -euo pipefail
cd "$(dirname "$0")"

major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$major" ] || { echo "coverage.sh: cannot read rustc's LLVM version" >&2; exit 1; }
LLVM_BIN=${LLVM_BIN:-/usr/lib/llvm-$major/bin}
if [ ! -x "$LLVM_BIN/llvm-profdata" ] || [ ! -x "$LLVM_BIN/llvm-cov" ]; then
  echo "coverage.sh: installing llvm-$major (rustc uses LLVM $major)"
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "llvm-$major" >/dev/null
fi
for t in llvm-profdata llvm-cov; do
  [ -x "$LLVM_BIN/$t" ] || { echo "coverage.sh: $LLVM_BIN/$t missing" >&2; exit 1; }
done

OUT=$PWD/target/coverage
rm -rf "$OUT"
mkdir -p "$OUT/profraw"
export CARGO_TARGET_DIR=$PWD/target/cov-build
export RUSTFLAGS="-C instrument-coverage"
export RUSTDOCFLAGS="-C instrument-coverage"
# %p: every process (tests and each spawned jobrun) writes its own file;
# %m: one per binary signature, so the files merge cleanly.
export LLVM_PROFILE_FILE="$OUT/profraw/%p-%m.profraw"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# --lib --bins --tests: unit and integration tests, not criterion benches.
# The executables of THIS build (test harnesses and the jobrun binary); stale
# ones from earlier builds in the same target dir must not be reported.
mapfile -t objs < <(cargo test --locked --lib --bins --tests --no-run --message-format=json |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | sort -u)
[ ${#objs[@]} -gt 0 ] || { echo "coverage.sh: no executables built" >&2; exit 1; }
cargo test --locked --lib --bins --tests --no-fail-fast "$@"

shopt -s nullglob
raw=("$OUT"/profraw/*.profraw)
[ ${#raw[@]} -gt 0 ] || { echo "coverage.sh: no profiles written" >&2; exit 1; }
"$LLVM_BIN/llvm-profdata" merge -sparse "${raw[@]}" -o "$OUT/merged.profdata"
rm -rf "$OUT/profraw"

args=()
for o in "${objs[@]}"; do args+=(--object "$o"); done
# Report src/ only: no dependencies, no std, no test code.
IGNORE='(/\.cargo/|/rustc/|^/usr/|/tests/|/benches/|/target/)'
common=("${args[@]}" --instr-profile "$OUT/merged.profdata" --ignore-filename-regex "$IGNORE")

"$LLVM_BIN/llvm-cov" report "${common[@]}" | tee "$OUT/summary.txt"
"$LLVM_BIN/llvm-cov" export "${common[@]}" --format=lcov >"$OUT/lcov.info"
"$LLVM_BIN/llvm-cov" show "${common[@]}" --format=html --show-line-counts-or-regions \
  --output-dir "$OUT/html" >/dev/null

echo
awk -F: '/^LF:/ {f += $2} /^LH:/ {h += $2}
  END {printf "line coverage of src/: %.2f%% (%d of %d lines)\n", 100 * h / f, h, f}' "$OUT/lcov.info"
echo "written: $OUT/summary.txt  $OUT/lcov.info  $OUT/html/index.html"
