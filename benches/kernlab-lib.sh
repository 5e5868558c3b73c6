# Shared by the kernlab benches; sourced after `cd` to the repository root.

# K: the kernlab command ($KERNLAB, else the copy beside the project).
find_kernlab() {
  K=${KERNLAB:-}
  for c in "$K" ../shared/kernlab/kernlab /work/shared/kernlab/kernlab; do
    [[ -n "$c" && -x "$c" ]] && { K=$(readlink -f "$c"); break; }
  done
  [[ -x "$K" ]] || { echo "kernlab not found; set KERNLAB=" >&2; exit 2; }
}

# OUT: the results folder ($OUT, else target/<name>/<UTC time>), absolute.
results_dir() {
  OUT=${OUT:-target/$1/$(date -u +%Y%m%dT%H%M%SZ)}
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
}

# JOBRUN: the binary to measure ($JOBRUN, else a release build of this tree).
release_jobrun() {
  if [[ -z "${JOBRUN:-}" ]]; then
    cargo build --release --locked --quiet
    JOBRUN=$PWD/target/release/jobrun
  fi
}
