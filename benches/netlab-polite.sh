#!/usr/bin/env bash
# Polite by measurement (issue 29): jobrun `bwlimit = "auto"` beside a
# competing iperf3 flow and a `ping -i 0.1` probe on the netlab link. Root.
#
#   benches/netlab-polite.sh            (REPEATS=3 DIRS="rx tx" RATE=200mbit)
#
# Env: REPEATS, FIRST_REP (adds repeats to an OUT), DIRS ("rx": the
# competitor reads, as jobrun's reads of the source; "tx": it writes), CASES
# (see netlab-polite.py), RATE, OUT, POLITE_TARGET (the manifest's
# polite_target), NETLAB, JOBRUN (default: build release). Holds /tmp/netlab.lock for its whole run; leaves the lab up
# as netlab's default (sshfs) for the next user.
set -euo pipefail
if [[ -z "${NETLAB_POLITE_LOCKED:-}" ]]; then
  exec env NETLAB_POLITE_LOCKED=1 flock /tmp/netlab.lock "$0" "$@"
fi
cd "$(dirname "$0")/.."
NETLAB=${NETLAB:-}
for c in "$NETLAB" ../shared/netlab/netlab /work/shared/netlab/netlab; do
  [[ -n "$c" && -x "$c" ]] && { NETLAB=$c; break; }
done
[[ -x "$NETLAB" ]] || { echo "netlab not found; set NETLAB=" >&2; exit 2; }
command -v iperf3 >/dev/null || apt-get install -y -qq iperf3 >/dev/null
export RATE=${RATE:-200mbit}
export OUT=${OUT:-target/netlab-polite/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [[ -z "${JOBRUN:-}" ]]; then
  cargo build --release --locked --quiet
  JOBRUN=$PWD/target/release/jobrun
fi
export JOBRUN NETLAB
"$NETLAB" up --rate "$RATE" >"$OUT/up.txt" 2>&1
"$NETLAB" gen /srv/netlab/src/large --profile large >/dev/null
python3 benches/netlab-polite.py | tee "$OUT/log.txt"
python3 benches/netlab-polite.py table | tee "$OUT/table.md"
"$NETLAB" reset >/dev/null 2>&1 || true
