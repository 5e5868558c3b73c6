#!/usr/bin/env bash
# Speed on the kernel NFS and SMB clients. Run as root:
#
#   benches/kernlab-speed.sh                 # PROTOS="nfs4 smb nfs3", ROUNDS=3
#   PROTOS=nfs4 ROUNDS=3 benches/kernlab-speed.sh
#
# One kernlab guest per protocol (link 200 mbit each way, netem 1 ms on the
# guest's egress, so the RTT is about 1 ms), source and destination both on
# that protocol's mounts (/mnt/kernlab/P/src -> /mnt/kernlab/P/dst). In the
# guest, ROUNDS rounds, each running every case with every tool in turn
# (interleaved, the order of the tools rotated each round; rsync's no-op
# last in each round), the guest's page
# cache dropped before each timed command (then the tool's binary read
# back: it comes over virtio-9p; jobrun's is 46 MB, rclone's 54 MB):
#   large  LARGE_N files of LARGE_MIB MiB: jobrun vs `cp -a`
#   small  SMALL_N files of 1-32 KiB in folders of 20: jobrun vs
#          `rclone copy --transfers 8`
#   noop   the small tree x5, already at the destination (copied once by
#          jobrun, then one untimed pass of rsync and rclone so that none
#          has anything left to fix): jobrun's rescan vs `rclone copy`
#          (8 checkers, its default) and `rsync -a`
# Copies go to a fresh folder per run (jobrun: a fresh state DB on the
# guest's tmpfs, its local disk). Wall time by the guest clock; wire bytes
# from the guest's eth0 counters around each command. Every copy is compared
# with its source on the host (names, sizes, bytes). Prints one table of
# medians (also OUT/table.md).
# Env: PROTOS, ROUNDS, SETTLE (s of pause before each timed command, 3), CASES (of "large small noop"), LARGE_N, LARGE_MIB, SMALL_N, DELAY (netem, 1ms),
#      KERNLAB=path, OUT=dir, JOBRUN=binary (default: build release).
set -euo pipefail

if [[ ${1:-} == --guest ]]; then # ---- the guest side: $2 = protocol -------
  p=$2 r=$3 cases=${4:-large small noop}
  S=/mnt/kernlab/$p/src/speed D=/mnt/kernlab/$p/dst/speed
  export RCLONE_CONFIG=/dev/null
  printf 'source = "/nonexistent"\ndestination = "/nonexistent"\n' >/tmp/job.toml
  jr() { "$JOBRUN" --quiet --source "$1" --destination "$2" --db "/tmp/$3.db" --log "/tmp/$3.log" /tmp/job.toml; }
  wire() { awk '$1 == "eth0:" {print $2, $10}' /proc/net/dev; }
  cmd() { # case tool round -> command line
    local c=$1 t=$2 n=$3
    case $c/$t in
      large/jobrun | small/jobrun) echo "jr $S/$c $D/$c-$t-$n $c-$n" ;;
      large/cp) echo "cp -a $S/large $D/large-cp-$n" ;;
      small/rclone) echo "rclone copy --transfers 8 $S/small $D/small-rclone-$n" ;;
      noop/jobrun) echo "jr $S/noop $D/noop noop" ;;
      noop/rclone) echo "rclone copy $S/noop $D/noop" ;;
      noop/rsync) echo "rsync -a $S/noop/ $D/noop/" ;;
    esac
  }
  mkdir -p "$D"
  timed() { # case tool round
    local c line rc t0 t1 w0 w1
    c=$(cmd "$@")
    sync
    echo 3 >/proc/sys/vm/drop_caches
    # The tool's own binary back in the page cache (the guest reads it over
    # virtio-9p): timed is the copy, not loading the executable.
    case $2 in jobrun) b=$JOBRUN ;; *) b=$(command -v "$2") ;; esac
    cat "$b" >/dev/null
    "$b" --version >/dev/null 2>&1 || true
    # A pause before each timed command: the one before (rsync's no-op
    # keeps the guest, the server and the host busy for a while after it
    # exits) must not be paid by the next tool, which the rotation would
    # make the same tool most rounds.
    sleep "${SETTLE:-3}"
    w0=$(wire) t0=$(date +%s.%N)
    rc=0
    eval "$c" >>"$OUT/guest-$p.out" 2>&1 || rc=$?
    t1=$(date +%s.%N) w1=$(wire)
    line="$p $1 $2 $3 $(awk "BEGIN {printf \"%.2f\", $t1 - $t0}") $w0 $w1 $rc"
    echo "$line" >>"$OUT/runs.txt"
    echo "  $line   [$(cut -d' ' -f1-3 /proc/loadavg)]"
  }
  # The no-op tree at the destination, untimed: jobrun first (its DB), then
  # one pass of the others so that none of them has anything left to fix.
  eval "$(cmd noop jobrun 0)" >>"$OUT/guest-$p.out" 2>&1
  rsync -a "$S/noop/" "$D/noop/" >>"$OUT/guest-$p.out" 2>&1
  rclone copy "$S/noop" "$D/noop" >>"$OUT/guest-$p.out" 2>&1
  echo "  noop tree in place"
  for n in $(seq 1 "$r"); do
    for c in $cases; do
      case $c in
        large) tools=(jobrun cp) ;;
        small) tools=(jobrun rclone) ;;
        noop) tools=(jobrun rclone) ;;
      esac
      k=${#tools[@]}
      for i in $(seq 0 $((k - 1))); do
        timed "$c" "${tools[$(((i + n) % k))]}" "$n"
      done
      # rsync's no-op (about 6 times the others) last in its round: what it
      # leaves busy hits the next round's first tool, jobrun and rclone in
      # turn, not the same one each round.
      if [[ $c == noop ]]; then timed noop rsync "$n"; fi
    done
  done
  exit 0
fi

cd "$(dirname "$0")/.."
. benches/kernlab-lib.sh
find_kernlab
read -r -a protos <<<"${PROTOS:-nfs4 smb nfs3}"
ROUNDS=${ROUNDS:-3} DELAY=${DELAY:-1ms} SETTLE=${SETTLE:-3} CASES=${CASES:-large small noop}
LARGE_N=${LARGE_N:-4} LARGE_MIB=${LARGE_MIB:-32} SMALL_N=${SMALL_N:-800}
results_dir kernlab-speed
release_jobrun
export JOBRUN OUT SETTLE
command -v rsync >/dev/null && command -v rclone >/dev/null || { echo "needs rsync and rclone" >&2; exit 2; }
"$K" install >/dev/null
"$K" up --rate 200mbit --ttl 7200 >/dev/null

python3 - /srv/kernlab/src/speed "$LARGE_N" "$LARGE_MIB" "$SMALL_N" <<'PY'
import os, random, shutil, sys
root, ln, lm, sn = sys.argv[1], *map(int, sys.argv[2:])
rnd = random.Random(6)
shutil.rmtree(root, ignore_errors=True)
def put(p, size):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(rnd.randbytes(size))
for i in range(ln):
    put(f"{root}/large/big{i}", lm << 20)
for i in range(sn):
    put(f"{root}/small/d{i // 20:03}/f{i:05}", rnd.randrange(1024, 32768))
for k in range(5):
    for i in range(sn):
        put(f"{root}/noop/c{k}/d{i // 20:03}/f{i:05}", rnd.randrange(1024, 32768))
PY
{ echo "protos=${protos[*]} rounds=$ROUNDS delay=$DELAY large=${LARGE_N}x${LARGE_MIB}MiB small=$SMALL_N files"
  echo "jobrun: $("$JOBRUN" --version) $(git rev-parse --short HEAD)"
  rsync --version | sed -n 1p; rclone version | sed -n 1p; cp --version | sed -n 1p
  echo "host: $(nproc) cores, $(uptime)"; } | tee "$OUT/versions.txt"

: >"$OUT/runs.txt"
for p in "${protos[@]}"; do
  "$K" reset >/dev/null
  echo "== $p [$(uptime | sed 's/.*load/load/')]"
  "$K" run --rw "$OUT" --delay "$DELAY" --timeout 3000 -- bash "$PWD/benches/kernlab-speed.sh" --guest "$p" "$ROUNDS" "$CASES"
  # Every copy = its source (names, sizes, bytes), on the host.
  for d in /srv/kernlab/dst/speed/*; do
    c=$(basename "$d" | cut -d- -f1)
    if diff -r "/srv/kernlab/src/speed/$c" "$d" >/dev/null 2>&1; then
      echo "$p $(basename "$d") ok"
    else
      echo "$p $(basename "$d") DIFFERENT"
    fi
  done | tee -a "$OUT/checks.txt"
done
"$K" reset >/dev/null
python3 benches/kernlab-speed-table.py "$OUT" | tee "$OUT/table.md"
