#!/usr/bin/env bash
# Polite mode on the kernel clients (issue 29): jobrun `bwlimit = "auto"`
# writing to kernlab's NFS and SMB shares (the kernel's page cache and
# write-back between jobrun and the wire) beside a competing iperf3 flow and
# a `ping -i 0.1` probe. Root; takes /tmp/kernlab.lock.
#
#   benches/kernlab-polite.sh          (PROTOS="nfs3 smb" CASES=... REPEATS=1)
#
# One kernlab guest per protocol and repeat runs every case in turn
# (guest/kernlab-polite-guest.sh): the payload is on the host (read by the
# guest over virtio-9p, not the sampled link), the destination
# /mnt/kernlab/PROTO/dst/CASE; the competitor is `iperf3 -c` from the guest
# to a server on the host (guest->host, the writes' direction), the probe a
# ping from the guest to the host. The link is 200 mbit each way; the
# guest's emulated CPU is the other limit. `kernlab run --sample` counts
# the tap's bytes every 100 ms; the copy's rate is the writes' direction
# less the competitor's own bytes (iperf3's 1 s intervals).
# Cases: idle, comp, auto-alone, auto-comp (competitor from 0 s, the copy
# from 2 s, measured 8-21 s), fixed-comp (jobrun at half the link), as in
# netlab-polite.py; fixed-alone (half the link, alone). Env: PROTOS, CASES,
# REPEATS, POLITE_TARGET (the manifest's polite_target), KERNLAB, OUT, JOBRUN.
set -euo pipefail
if [[ -z "${KERNLAB_POLITE_LOCKED:-}" ]]; then
  exec env KERNLAB_POLITE_LOCKED=1 flock /tmp/kernlab.lock "$0" "$@"
fi
cd "$(dirname "$0")/.."
. benches/kernlab-lib.sh
find_kernlab
read -r -a protos <<<"${PROTOS:-nfs3 smb}"
CASES=${CASES:-idle comp auto-alone auto-comp fixed-comp}
REPEATS=${REPEATS:-1}
results_dir kernlab-polite
release_jobrun
command -v iperf3 >/dev/null || apt-get install -y -qq iperf3 >/dev/null
"$K" install >/dev/null
"$K" up --rate 200mbit --ttl 7200 >/dev/null

# The payload, on the host: 4 x 160 MiB, more than 25 s at the link rate.
if [[ ! -f "$OUT/../payload-polite/ok" ]]; then
  mkdir -p "$OUT/../payload-polite"
  for i in 0 1 2 3; do
    head -c $((160 << 20)) /dev/urandom >"$OUT/../payload-polite/big$i"
  done
  touch "$OUT/../payload-polite/ok"
fi
PAYLOAD=$(cd "$OUT/../payload-polite" && pwd)
printf 'source = "/nonexistent"\ndestination = "/nonexistent"\n' >"$OUT/job.toml"
[[ -z "${POLITE_TARGET:-}" ]] || echo "polite_target = \"$POLITE_TARGET\"" >>"$OUT/job.toml"

timeout 7200 iperf3 -s -B 198.18.1.1 >"$OUT/iperf3-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 1
for rep in $(seq 1 "$REPEATS"); do
  for p in "${protos[@]}"; do
    tag=${p}_r$rep
    "$K" reset >/dev/null
    echo "== $tag: $CASES   [$(uptime | sed 's/.*load/load/')]" | tee -a "$OUT/log.txt"
    set +e
    "$K" run --rw "$OUT" --mounts "$p" --sample "$OUT/$tag.json" -- \
      env J="$JOBRUN" OUT="$OUT" SRC="$PAYLOAD" TAG="$tag" \
      sh "$PWD/benches/kernlab-polite-guest.sh" "$p" $CASES >"$OUT/$tag.out" 2>&1
    echo "   exit $?" | tee -a "$OUT/log.txt"
    set -e
  done
done
"$K" reset >/dev/null
python3 benches/kernlab-polite.py "$OUT" | tee "$OUT/table.md"
