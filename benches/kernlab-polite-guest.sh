#!/bin/sh
# Inside a kernlab guest (benches/kernlab-polite.sh): the cases of one
# protocol in turn. $1: nfs3|nfs4|smb, then the cases. Env: J (jobrun), OUT
# (the --rw folder), SRC (the payload, on the host), TAG.
# Writes OUT/TAG.times ("case <guest clock at its start>") and, per case,
# TAG_CASE.ping, .iperf (JSON), .trace (jobrun's auto samples).
p=$1
shift
HOST=198.18.1.1
D=/mnt/kernlab/$p/dst
T=$OUT/$TAG
: >"$T.times"

copy() { # case limit -> starts jobrun in the background, pid in $jp
  RUST_LOG=jobrun::throttle=trace "$J" --bwlimit "$2" --source "$SRC" \
    --destination "$D/$1" --db "/tmp/$1.db" --log "/tmp/$1.log" -q \
    "$OUT/job.toml" >/dev/null 2>"/tmp/$1.trace" &
  jp=$!
}
stop() { # stops jobrun, keeps its trace
  kill -INT "$jp" 2>/dev/null
  wait "$jp"
  cp "/tmp/$1.trace" "${T}_$1.trace"
}
comp() { # seconds
  iperf3 -c "$HOST" -t "$1" -J -i 1 >"${T}_$c.iperf" 2>/dev/null &
  ip=$!
}
probe() { # seconds
  ping -D -n -i 0.1 -w "$1" "$HOST" >"${T}_$c.ping" 2>/dev/null &
  pp=$!
}
for c in "$@"; do
  echo "$c $(date +%s.%N)" >>"$T.times"
  kind=${c%%-*}
  limit=auto
  [ "$kind" = fixed ] && limit=11M
  case $c in
  idle)
    probe 12
    wait "$pp"
    ;;
  comp)
    probe 20
    comp 20
    wait "$pp" "$ip"
    ;;
  *-alone)
    probe 25
    copy "$c" "$limit"
    sleep 25
    stop "$c"
    wait "$pp"
    ;;
  *-comp)
    probe 22
    comp 22
    sleep 2
    copy "$c" "$limit"
    sleep 20
    stop "$c"
    wait "$pp" "$ip"
    ;;
  esac
  sleep 2
done
echo "end $(date +%s.%N)" >>"$T.times"
