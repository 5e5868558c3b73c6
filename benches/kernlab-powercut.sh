#!/usr/bin/env bash
# Client power cuts during a limited copy. Run as root:
#
#   benches/kernlab-powercut.sh              # CUTS=10
#
# CUTS kernlab guests, each cut (qemu SIGKILLed: the guest's page cache is
# lost, the servers keep what they received) at a different instant of a
# `--bwlimit 4M` copy of 46 MiB (4 x 4 MiB, 28 x 1 MiB, 60 x 16 KiB), the
# protocol rotating NFSv3, NFSv4.1, SMB3. State DB and audit log on the
# --rw folder (on the host as soon as written). The guest after cut k first
# runs job k again (no limit: "the next run"), then starts the copy of cut
# k+1 START seconds after its own start, so every cut's instant is known;
# one more guest runs the last job again. Checked on the host, in the
# servers' backing folders (tests/kernel/check.py):
#   after each cut:      the DB opens; no `synced` row whose server-side
#                        file is incomplete or has another hash
#   after each next run: it exited 0, destination = source, and again no
#                        `synced` row wrong
# Prints one line per cut and a summary (also OUT/table.md).
# Env: CUTS, START (s, 20), AT="s s ..." (cut instants after the copy's
#      planned start; default spread over 4-16 s), KERNLAB, OUT, JOBRUN.
set -euo pipefail
M=/mnt/kernlab

if [[ ${1:-} == --guest ]]; then # ---- guest: [--resume K P] [--cut K P] --
  set +e # each run's status is recorded, not acted on
  t0=$(date +%s.%N)
  shift
  while [[ $# -gt 0 ]]; do
    what=$1 k=$2 p=$3
    shift 3
    mkdir -p "$M/$p/dst/pc"
    printf 'source = "%s/%s/src/pc"\ndestination = "%s/%s/dst/pc/cut%02d"\n' "$M" "$p" "$M" "$p" "$k" >"$OUT/cut$k.toml"
    if [[ $what == --resume ]]; then
      "$JOBRUN" --quiet "$OUT/cut$k.toml" >"$OUT/cut$k.run2.out" 2>&1
      echo $? >"$OUT/cut$k.run2.rc"
    else
      # The copy starts START s after this script did (the cut instant is
      # --kill-after - START); a resume that took longer is recorded.
      now=$(date +%s.%N)
      wait_s=$(awk "BEGIN {w = $t0 + $START - $now; print (w > 0 ? w : 0)}")
      sleep "$wait_s"
      awk "BEGIN {printf \"%.2f\n\", $(date +%s.%N) - $t0}" >"$OUT/cut$k.start"
      "$JOBRUN" --bwlimit 4M "$OUT/cut$k.toml" >"$OUT/cut$k.run1.out" 2>&1
      echo $? >"$OUT/cut$k.run1.rc"
    fi
  done
  exit 0
fi

cd "$(dirname "$0")/.."
. benches/kernlab-lib.sh
find_kernlab
CUTS=${CUTS:-10} START=${START:-20}
read -r -a at <<<"${AT:-4 5.5 7 8.5 10 11.5 13 14.5 16 6.2 9.3 12.4}"
results_dir kernlab-powercut
release_jobrun
export JOBRUN OUT START
"$K" install >/dev/null
"$K" up --rate 200mbit --ttl 7200 >/dev/null
python3 - /srv/kernlab/src/pc <<'PY'
import os, random, shutil, sys
root = sys.argv[1]
rnd = random.Random(4)
shutil.rmtree(root, ignore_errors=True)
os.makedirs(f"{root}/small")
for i in range(4):
    open(f"{root}/big{i}", "wb").write(rnd.randbytes(4 << 20))
for i in range(28):
    open(f"{root}/mid{i:02}", "wb").write(rnd.randbytes(1 << 20))
for i in range(60):
    open(f"{root}/small/s{i:02}", "wb").write(rnd.randbytes(16 << 10))
PY
"$K" reset >/dev/null
protos=(nfs3 nfs4 smb)
chk() { python3 tests/kernel/check.py "$@"; }
tol() { if [[ $1 == smb ]]; then echo 100; else echo 0; fi; }
# MiB of the payload at the server for cut K: complete files and temporaries.
at_server() { du -sm --apparent-size "/srv/kernlab/dst/pc/cut$(printf %02d "$1")" 2>/dev/null | cut -f1 || echo 0; }
: >"$OUT/table.md"
fails=0
line() { echo "$*" | tee -a "$OUT/table.md"; }
line "| cut | protocol | cut at (s after the copy's start) | MiB at the server | rows at the cut | after the cut | next run | after it |"
line "|---|---|---|---|---|---|---|---|"
declare -A inst rows after mib
prev=""
for k in $(seq 1 $((CUTS + 1))); do
  args=()
  [[ -z $prev ]] || args+=(--resume "$prev" "${protos[$(((prev - 1) % 3))]}")
  kill=()
  if [[ $k -le $CUTS ]]; then
    p=${protos[$(((k - 1) % 3))]}
    a=${at[$(((k - 1) % ${#at[@]}))]}
    args+=(--cut "$k" "$p")
    kill=(--kill-after "$(awk "BEGIN {print $START + $a}")")
  fi
  rc=0
  "$K" run --rw "$OUT" --timeout 900 "${kill[@]}" -- bash "$PWD/benches/kernlab-powercut.sh" --guest "${args[@]}" \
    >"$OUT/boot$k.console" 2>&1 || rc=$?
  if [[ $k -le $CUTS ]]; then # what the cut left
    [[ $rc == 137 ]] || { echo "cut $k: kernlab exit $rc, wanted 137 (see $OUT/boot$k.console)"; fails=$((fails + 1)); }
    # The guest's script starts a moment after kernlab's clock does, so
    # this is an upper bound; the MiB at the server say where the copy was.
    st=$(cat "$OUT/cut$k.start" 2>/dev/null || echo "")
    if [[ -n $st ]]; then inst[$k]="≤ $(awk "BEGIN {print $START + $a - $st}")"; else inst[$k]="before the copy started"; fi
    mib[$k]=$(at_server "$k")
    if [[ -e $OUT/cut$k.db ]]; then
      rows[$k]=$(chk counts "$OUT/cut$k.db" 2>&1 | tr -d "{}'" || true)
      after[$k]=$(chk synced "$OUT/cut$k.db" 2>&1) || { after[$k]="FAIL ${after[$k]}"; fails=$((fails + 1)); }
    else
      rows[$k]="no DB yet" after[$k]="–"
    fi
  fi
  if [[ -n $prev ]]; then # the next run of cut $prev
    pp=${protos[$(((prev - 1) % 3))]}
    r2=$(cat "$OUT/cut$prev.run2.rc" 2>/dev/null || echo none)
    s=$(chk same /srv/kernlab/src/pc "/srv/kernlab/dst/pc/cut$(printf %02d "$prev")" "$(tol "$pp")" 2>&1) || { s="FAIL $s"; fails=$((fails + 1)); }
    y=$(chk synced "$OUT/cut$prev.db" 2>&1) || { y="FAIL $y"; fails=$((fails + 1)); }
    [[ $r2 == 0 ]] || fails=$((fails + 1))
    line "| $prev | $pp | ${inst[$prev]} | ${mib[$prev]} | ${rows[$prev]} | ${after[$prev]} | exit $r2; $s | $y |"
  fi
  [[ $k -gt $CUTS ]] || prev=$k
done
"$K" reset >/dev/null
line ""
line "$CUTS cuts, $fails failed checks"
[[ $fails == 0 ]]
