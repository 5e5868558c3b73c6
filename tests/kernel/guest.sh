#!/bin/bash
# The kernel tier's guest side: runs in the kernlab guest (KERNLAB_GUEST=1),
# called by tests/kernel/run.sh as `guest.sh PHASE...`. It only drives jobrun
# through the kernel mounts and records each run's exit status and output
# in $W/out/ (the --rw folder, on the host as soon as written); every check
# is made by run.sh on the host, in the servers' backing folders.
#
# Environment: J (jobrun binary), W (work folder = the --rw folder),
# PROTOS (protocols of the core scenario, e.g. "nfs3 nfs4 smb").
set -u
M=${KERNLAB_MNT:-/mnt/kernlab}
mkdir -p "$W/out"

# jr NAME ARGS...: one jobrun run, its status and output kept under NAME.
jr() {
  local name=$1
  shift
  "$J" "$@" >"$W/out/$name.out" 2>"$W/out/$name.err"
  echo $? >"$W/out/$name.rc"
}

# jr_signal NAME SIGNAL SECONDS ARGS...: a run sent SIGNAL after SECONDS.
jr_signal() {
  local name=$1 sig=$2 after=$3
  shift 3
  "$J" "$@" >"$W/out/$name.out" 2>"$W/out/$name.err" &
  local pid=$!
  sleep "$after"
  kill -"$sig" "$pid"
  wait "$pid"
  echo $? >"$W/out/$name.rc"
}

# job NAME SRC DST [EXTRA]: a manifest $W/NAME.toml (DB and log beside it).
job() {
  printf 'source = "%s"\ndestination = "%s"\n%b' "$2" "$3" "${4:-}" >"$W/$1.toml"
}

phase_core1() { # first copy, then a no-op rerun, on each protocol
  for p in $PROTOS; do
    job "core-$p" "$M/$p/src/jr/core" "$M/$p/dst/jr/core-$p"
    jr "core-$p.run1" "$W/core-$p.toml"
    jr "core-$p.run2" "$W/core-$p.toml"
  done
}

phase_core2() { # after the host edited the source: kill, SIGINT, finish, no-op
  for p in $PROTOS; do
    jr_signal "core-$p.kill" KILL 3 --bwlimit 4M "$W/core-$p.toml"
    jr_signal "core-$p.int" INT 3 --bwlimit 4M "$W/core-$p.toml"
    jr "core-$p.run3" "$W/core-$p.toml"
    jr "core-$p.run4" "$W/core-$p.toml"
  done
}

phase_case() { # two source names that are one name on SMB (read from NFS)
  job smb-case "$M/nfs3/src/jr/case" "$M/smb/dst/jr/case" 'delete_extras = true\n'
  jr smb-case.run1 "$W/smb-case.toml"
  jr smb-case.run2 "$W/smb-case.toml"
}

phase_smb() { # what SMB refuses, read from NFS (which has it all)
  job smb-names "$M/nfs3/src/jr/names" "$M/smb/dst/jr/names"
  jr smb-names.run1 "$W/smb-names.toml"
  job smb-links "$M/nfs3/src/jr/links" "$M/smb/dst/jr/links"
  jr smb-links.run1 "$W/smb-links.toml"
  job smb-links-skip "$M/nfs3/src/jr/links" "$M/smb/dst/jr/links-skip" 'symlinks = "skip"\n'
  jr smb-links.skip "$W/smb-links-skip.toml"
  job smb-reserved "$M/nfs3/src/jr/reserved" "$M/smb/dst/jr/reserved" 'delete_extras = true\n'
  jr smb-reserved.run1 "$W/smb-reserved.toml"
  jr smb-reserved.run2 "$W/smb-reserved.toml"
}

phase_silly() { # .nfsXXXX files left by open-then-deleted files, both sides
  local s="$M/nfs3/src/jr/silly" d="$M/nfs3/dst/jr/silly"
  mkdir -p "$d"
  exec 3>"$s/held-open" 4>"$d/held-open-dst"
  echo "source data" >&3
  echo "destination data" >&4
  rm "$s/held-open" "$d/held-open-dst"
  ls -a "$s" "$d" >"$W/out/silly.ls"
  job silly "$s" "$d" 'delete_extras = true\n'
  jr silly.run1 "$W/silly.toml"
  jr silly.run2 "$W/silly.toml"
  ls -a "$s" "$d" >"$W/out/silly.after.ls"
  exec 3>&- 4>&-
}

# The cifs client's creation time of each PATH (FILETIME: 100 ns since 1601).
crtime_get() {
  python3 -c 'import os, sys
for p in sys.argv[1:]:
    print(os.path.basename(p), int.from_bytes(os.getxattr(p, "user.cifs.creationtime"), "little"))' "$@"
}

phase_crtime() { # the source's creation time, applied on SMB, recorded on NFS
  local s="$M/smb/src/jr/crtime"
  for f in "$s"/*; do
    python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.cifs.creationtime", int(sys.argv[2]).to_bytes(8, "little"))' \
      "$f" "$CRTIME_NT"
  done
  job crtime-smb "$s" "$M/smb/dst/jr/crtime"
  jr crtime-smb.run1 "$W/crtime-smb.toml"
  job crtime-nfs "$s" "$M/nfs3/dst/jr/crtime"
  jr crtime-nfs.run1 "$W/crtime-nfs.toml"
  cp "$s/a.txt" "$M/smb/dst/jr/crtime-control.txt" # a plain copy: created now
  sync
  echo 3 >/proc/sys/vm/drop_caches # asked from the server again
  crtime_get "$s/a.txt" "$M/smb/dst/jr/crtime/a.txt" "$M/smb/dst/jr/crtime/b.txt" \
    "$M/smb/dst/jr/crtime-control.txt" >"$W/out/crtime.txt" 2>&1
  jr crtime-smb.run2 "$W/crtime-smb.toml"
}

phase_estale() { # a source file deleted on the server while it is read
  local s="$M/nfs3/src/jr/estale" d="$M/nfs3/dst/jr/estale" i
  job estale "$s" "$d"
  "$J" --bwlimit 2M --transfers 1 "$W/estale.toml" >"$W/out/estale.run1.out" 2>"$W/out/estale.run1.err" &
  local pid=$!
  for i in $(seq 300); do
    [ -n "$(ls -A "$d" 2>/dev/null)" ] && break
    sleep 0.1
  done
  sleep 1
  # Deleted by another client (Samba, on the same backing folder): the
  # server's file is gone while this client still reads it by its handle
  # (a delete through this NFS mount would be a silly rename instead).
  rm "$M/smb/src/jr/estale/a-big"
  echo "deleted after $i ticks" >"$W/out/estale.deleted"
  wait "$pid"
  echo $? >"$W/out/estale.run1.rc"
  jr estale.run2 "$W/estale.toml"
}

phase_actimeo() { # NFSv4 with actimeo=30 (run.sh): cached attributes at the rescans
  local s="$M/nfs4/src/jr/actimeo" d="$M/nfs4/dst/jr/actimeo"
  job actimeo "$s" "$d"
  jr actimeo.run1 "$W/actimeo.toml"
  jr actimeo.run2 "$W/actimeo.toml" # at once: attributes from the client's cache
  # x changed at the server behind this client's cache (through SMB).
  touch -m -d '2001-01-01 00:00:00' "$M/smb/dst/jr/actimeo/x"
  jr actimeo.run3 "$W/actimeo.toml" # still cached: may not see it
  sync
  echo 3 >/proc/sys/vm/drop_caches
  jr actimeo.run4 "$W/actimeo.toml" # attributes from the server
}

phase_cut() { # the copy the power cut interrupts (run.sh passes --kill-after)
  local p=$CUT
  job "cut-$p" "$M/$p/src/jr/cut" "$M/$p/dst/jr/cut-$p"
  echo started >"$W/out/cut-$p.started"
  "$J" --bwlimit 4M "$W/cut-$p.toml" >"$W/out/cut-$p.run1.out" 2>"$W/out/cut-$p.run1.err"
  echo $? >"$W/out/cut-$p.run1.rc"
}

phase_resume() { # the run after the power cut
  jr "cut-$CUT.run2" "$W/cut-$CUT.toml"
}

# jrl NAME JOB ARGS...: `jr NAME ARGS... $W/JOB.toml`, first noting in
# NAME.from how many lines JOB's audit log had, so that run.sh can tell
# which run wrote which line (a refused run may write none).
jrl() {
  local name=$1 job=$2
  shift 2
  cat "$W/$job.log" 2>/dev/null | wc -l >"$W/out/$name.from"
  jr "$name" "$@" "$W/$job.toml"
}

# mount_src PROTO REL AT: a mount of the source share's folder REL at AT,
# with kernlab's default options for PROTO: a source root that is a mount
# point of its own, as a migrated share usually is.
mount_src() {
  mount_share "$1" src "$2" "$3"
}

# mount_share PROTO SIDE REL AT: the same for either share (SIDE: src, dst).
mount_share() {
  local p=$1 side=$2 rel=$3 at=$4 src
  src=$(findmnt -no SOURCE "$M/$p/$side")
  mkdir -p "$at"
  case $p in
    nfs3) mount -t nfs -o vers=3,proto=tcp,nolock "$src/$rel" "$at" ;;
    nfs4) mount -t nfs4 -o vers=4.1 "$src/$rel" "$at" ;;
    smb) mount -t cifs "$src/$rel" "$at" -o username=root,password=klpass,vers=3.1.1 ;;
  esac 2>>"$W/out/mounts.err"
}

phase_mirror() { # delete_extras on each protocol, and its rails
  local p r d s
  for p in $PROTOS; do
    r=/mnt/jr-mirror-$p d=$M/$p/dst/jr/mirror-$p s=$M/$p/src/jr/mirror-$p
    mount_src "$p" "jr/mirror-$p" "$r"
    job "mirror-$p" "$r" "$d" 'delete_extras = true\n'
    jrl "mirror-$p.run1" "mirror-$p"
    # Extras as users of the new share leave them, written through this
    # client's mount of it: files, a read-only one, one in a copied folder,
    # a nested folder with files; and a file deleted at the source.
    echo "extra" >"$d/extra-1.txt"
    head -c 70000 /dev/urandom >"$d/extra-2.bin"
    echo "read-only extra" >"$d/extra-ro.txt"
    chmod 444 "$d/extra-ro.txt"
    echo "stale" >"$d/sub/stale.txt"
    mkdir -p "$d/old/deeper"
    echo "x" >"$d/old/x"
    echo "y" >"$d/old/deeper/y"
    rm "$r/f19"
    jrl "mirror-$p.cap" "mirror-$p" # 9 extras, over the default 10%
    umount "$r"                     # the share not mounted when cron fires
    jrl "mirror-$p.unmounted" "mirror-$p" --max-delete 9
    mount_src "$p" "jr/mirror-$p" "$r"
    jrl "mirror-$p.run2" "mirror-$p" --max-delete 9
    # The source emptied on the server: moved aside (and back) through the
    # share's regular mount. The scan lists the root by readdir, which the
    # NFS client (the same superblock) and the SMB client (no listing
    # cache) answer from the server.
    mkdir "$s.aside"
    mv "$s"/* "$s.aside/"
    jrl "mirror-$p.empty" "mirror-$p" --max-delete 1000
    mv "$s.aside"/* "$s/"
    rmdir "$s.aside"
    jrl "mirror-$p.run3" "mirror-$p"
    umount "$r"
    if [ "$p" != smb ]; then # a source root that is a symlink into the destination
      job "mirror-link-$p" "$M/$p/src/jr/mirror-link-$p" "$d" 'delete_extras = true\n'
      jr "mirror-link-$p" --max-delete off "$W/mirror-link-$p.toml"
    fi
  done
}

phase_perms() { # preserve and owners (as root), under a umask that would narrow them
  local p
  umask 077
  for p in nfs3 nfs4; do
    job "perms-$p-preserve" "$M/$p/src/jr/perms" "$M/$p/dst/jr/perms-$p-preserve" 'permissions = "preserve"\n'
    job "perms-$p-owners" "$M/$p/src/jr/perms" "$M/$p/dst/jr/perms-$p-owners" 'permissions = "preserve"\nowners = true\n'
  done
  # SMB has no POSIX modes (nounix): read from NFS, which has them.
  job perms-smb "$M/nfs3/src/jr/perms" "$M/smb/dst/jr/perms" 'permissions = "preserve"\nowners = true\n'
  local jobs="perms-nfs3-preserve perms-nfs3-owners perms-nfs4-preserve perms-nfs4-owners perms-smb" j
  for j in $jobs; do
    jr "$j.run1" "$W/$j.toml"
    jr "$j.run2" "$W/$j.toml"
  done
  # The read-only file changed at the source: each copy must be replaced.
  chmod 644 "$M/nfs3/src/jr/perms/readonly.txt"
  echo "a new version of the read-only file" >"$M/nfs3/src/jr/perms/readonly.txt"
  chmod 444 "$M/nfs3/src/jr/perms/readonly.txt"
  # An open revalidates the NFSv4 mount's cached attributes (close-to-open).
  cat "$M/nfs4/src/jr/perms/readonly.txt" >/dev/null
  for j in $jobs; do
    jr "$j.run3" "$W/$j.toml"
  done
  umask 022
}

phase_silent() { # nothing silent: an edit behind the reader, a vanished
  # nested mount, an unmounted destination share (issue "Nothing silent")
  local p s d n r pid i
  for p in $PROTOS; do
    # 1. 1 MiB rewritten behind the reader, its mtime put back (not on SMB).
    s=$M/$p/src/jr/edit-$p d=$M/$p/dst/jr/edit-$p
    mkdir -p "$s"
    head -c $((20 << 20)) /dev/urandom >"$s/edited.bin"
    touch -d '2020-01-01 00:00:00' "$s/edited.bin" "$W/out/edit-ref"
    job "edit-$p" "$s" "$d"
    "$J" --bwlimit 2M --transfers 1 "$W/edit-$p.toml" >"$W/out/edit-$p.run1.out" 2>"$W/out/edit-$p.run1.err" &
    pid=$!
    for i in $(seq 300); do
      ls -A "$d" 2>/dev/null | grep -q '^\.jobrun-' && break
      sleep 0.1
    done
    sleep 3
    dd if=/dev/zero of="$s/edited.bin" bs=1M count=1 conv=notrunc status=none
    # The mtime put back where the share keeps a ctime of its own; Samba
    # reports the mtime as the change time, so there the edit keeps the
    # mtime it made (docs/mirror-and-safety.md "Files that change while they are read").
    [ "$p" = smb ] || touch -r "$W/out/edit-ref" "$s/edited.bin"
    wait "$pid"
    echo $? >"$W/out/edit-$p.run1.rc"
    jr "edit-$p.run2" "$W/edit-$p.toml"
    jr "edit-$p.run3" "$W/edit-$p.toml"
    # 2. A mount inside the source, copied, then gone.
    n=$M/$p/src/jr/nest-$p
    mkdir -p "$n/projects"
    echo top >"$n/top.txt"
    mount -t tmpfs -o size=4m tmpfs "$n/projects"
    for i in 1 2 3 4 5; do echo "project $i" >"$n/projects/p$i.txt"; done
    job "nest-$p" "$n" "$M/$p/dst/jr/nest-$p" 'delete_extras = true\n'
    jrl "nest-$p.run1" "nest-$p"
    umount "$n/projects"
    jrl "nest-$p.run2" "nest-$p" --max-delete off
    # 3. The destination share not mounted when the job first ran: the
    # first copy went to the local disk; once the share is mounted there,
    # the next run refuses. With require_mounts, even the first run does.
    r=/mnt/jr-dst-$p
    mkdir -p "$r" "$M/$p/dst/jr/unmounted-$p"
    job "unmounted-$p" "$M/$p/src/jr/nest-$p" "$r"
    jr "unmounted-$p.run1" "$W/unmounted-$p.toml"
    mount_share "$p" dst "jr/unmounted-$p" "$r"
    jr "unmounted-$p.run2" "$W/unmounted-$p.toml"
    umount "$r"
    rm -rf "${r:?}"/*
    job "required-$p" "$M/$p/src/jr/nest-$p" "$r" 'require_mounts = true\n'
    jr "required-$p.run1" "$W/required-$p.toml"
    ls -A "$r" >"$W/out/required-$p.local.ls"
  done
}

phase_tree() { # hard links, holes, xattrs, ACLs (issue 25): jobrun, then
  # `rsync -aHS` and `cp -a` of the same tree, the guest's eth0 byte
  # counters (received = read from the shares, sent = written) around each,
  # the guest's page cache dropped before each (every tool reads cold)
  local p tag tool s side protos=$PROTOS
  net() { sync; echo 3 >/proc/sys/vm/drop_caches; awk '/eth0:/ {print $2, $10}' /proc/net/dev; }
  # NFSv4.2 (SEEK_HOLE and RFC 8276 xattrs reach the server) where the
  # server offers it: the nfs4 shares mounted again with vers=4.2.
  if [ -n "${TREE_NFS42:-}" ]; then
    for side in src dst; do
      mkdir -p "$M/nfs42/$side"
      mount -t nfs4 -o vers=4.2 "$(findmnt -no SOURCE "$M/nfs4/$side")" "$M/nfs42/$side" \
        2>>"$W/out/nfs42.mount" || echo "mount $side failed" >>"$W/out/nfs42.mount"
    done
    if [ -s "$W/out/nfs42.mount" ]; then
      umount "$M/nfs42/src" "$M/nfs42/dst" 2>/dev/null
    else
      protos="$protos nfs42"
      findmnt -no FSTYPE,OPTIONS "$M/nfs42/src" >"$W/out/nfs42.options"
    fi
  fi
  for p in $protos; do
    tag=${TREE_TAG:-$p} s=$M/$p/src/jr/tree
    job "tree-$tag" "$s" "$M/$p/dst/jr/tree-$tag" 'xattrs = true\n'
    net >"$W/out/tree-$tag.net0"
    jr "tree-$tag.run1" "$W/tree-$tag.toml"
    net >"$W/out/tree-$tag.net1"
    jr "tree-$tag.run2" "$W/tree-$tag.toml"
    # Never silent: the hard links `hard_links = false` leaves out are
    # counted by `check` and by a scan (a dry run), on SMB too.
    job "treenl-$tag" "$s" "$M/$p/dst/jr/treenl-$tag" 'hard_links = false\n'
    jr "treenl-$tag.check" check "$W/treenl-$tag.toml"
    jr "treenl-$tag.dry" --dry-run "$W/treenl-$tag.toml"
    # Never more open: a 0600 file whose ACL grants another user rw.
    job "acl-$tag" "$M/$p/src/jr/acl" "$M/$p/dst/jr/acl-$tag"
    jr "acl-$tag.run1" "$W/acl-$tag.toml"
    job "aclt-$tag" "$M/$p/src/jr/acl" "$M/$p/dst/jr/aclt-$tag" 'acls = true\n'
    jr "aclt-$tag.run1" "$W/aclt-$tag.toml"
    python3 -c 'import os, sys; print(oct(os.stat(sys.argv[1]).st_mode), os.listxattr(sys.argv[1]))' \
      "$M/$p/src/jr/acl/private.txt" >"$W/out/acl-$tag.seen" 2>&1
    for tool in rsync cp; do
      net >"$W/out/peer-$tool-$tag.net0"
      case $tool in
        rsync) rsync -aHS "$s/" "$M/$p/dst/jr/peer-rsync-$tag/" >"$W/out/peer-rsync-$tag.err" 2>&1 ;;
        cp) cp -a "$s" "$M/$p/dst/jr/peer-cp-$tag" >"$W/out/peer-cp-$tag.err" 2>&1 ;;
      esac
      echo $? >"$W/out/peer-$tool-$tag.rc"
      net >"$W/out/peer-$tool-$tag.net1"
    done
  done
}

for ph in "$@"; do
  "phase_$ph"
done
