# Helpers shared by benches/scale.sh and benches/scale-db.sh (sourced).

now() { date +%s.%N; }
# "<wall s> <peak RSS MB>" from a /usr/bin/time -v output file
timev() { python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
w = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", t)
h, m, s = (float(x) if x else 0.0 for x in w.groups())
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
print(f"{h*3600+m*60+s:.2f} {rss/1024:.1f}")
PY
}
# seconds from epoch-seconds $2 to the first log line of $1 matching $3
since() { python3 - "$1" "$2" "$3" <<'PY'
import datetime, re, sys
f, t0, pat = sys.argv[1], float(sys.argv[2]), sys.argv[3]
for line in open(f, errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if pat in line:
        ts = line.split()[0].rstrip("Z")
        d = datetime.datetime.fromisoformat(ts).replace(tzinfo=datetime.timezone.utc)
        print(f"{d.timestamp() - t0:.2f}"); break
else:
    print("n/a")
PY
}
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.2f}")' "$@"; }
