//! Issue 5: the mirror stage (`delete_extras`) and its safety rails, on
//! real trees with the real binary.

use std::path::{Path, PathBuf};

use crate::env::{Out, TestEnv, bytes};
use crate::support::Paused;

/// Ten source files in three folders, copied once without mirroring.
fn synced_env(extra_manifest: &str) -> TestEnv {
    let env = TestEnv::new();
    for i in 0..10u64 {
        let rel = format!("d{}/f{i}.bin", i % 3);
        let p = env.src_file(&rel, &bytes(100 + i as usize, i));
        TestEnv::set_mtime(&p, 1_600_000_000 + i as i64, 0);
    }
    env.manifest("");
    env.run(&[]).assert_code(0);
    env.assert_trees_equal();
    env.manifest(extra_manifest);
    env
}

/// Extras in the destination: a file at the top, a file beside copies,
/// an empty folder and a whole tree. Returns them (entries, deepest last).
fn add_extras(env: &TestEnv) -> Vec<PathBuf> {
    env.dst_file("extra.txt", b"extra");
    env.dst_file("d1/stray.bin", &bytes(77, 9));
    std::fs::create_dir_all(env.dst.join("empty_extra")).unwrap();
    env.dst_file("old/tree/deep/a.bin", &bytes(10, 1));
    env.dst_file("old/tree/b.bin", &bytes(20, 2));
    std::os::unix::fs::symlink("extra.txt", env.dst.join("old/link")).unwrap();
    [
        "extra.txt",
        "d1/stray.bin",
        "empty_extra",
        "old",
        "old/link",
        "old/tree",
        "old/tree/b.bin",
        "old/tree/deep",
        "old/tree/deep/a.bin",
    ]
    .iter()
    .map(|r| env.dst.join(r))
    .collect()
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[track_caller]
fn assert_all_exist(paths: &[PathBuf]) {
    for p in paths {
        assert!(exists(p), "{} was deleted", p.display());
    }
}

/// Turns one synced file row back into `pending`, so the next run resumes
/// (no scan) and the mirror stage walks the destination itself.
fn make_backlog(env: &TestEnv) {
    // (Through the view `files`: SQLite counts no changes there.)
    env.db()
        .execute(
            "UPDATE files SET status = 'pending'
             WHERE rowid = (SELECT min(rowid) FROM files WHERE kind = 'file')",
            [],
        )
        .unwrap();
    let n: i64 = env
        .db()
        .query_row(
            "SELECT count(*) FROM files WHERE status = 'pending' AND kind = 'file'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn extras_are_kept_without_delete_extras() {
    let env = synced_env("");
    let extras = add_extras(&env);
    env.run(&[]).assert_code(0);
    assert_all_exist(&extras);
    assert!(env.log_with_status("deleted").is_empty());
    // The flag turns it on for one run (and does not swallow the manifest).
    env.run(&["--delete-extras", "--max-delete", "off"])
        .assert_code(0);
    assert_eq!(env.log_with_status("deleted").len(), extras.len());
    env.assert_trees_equal();
}

#[test]
fn mirror_deletes_extra_files_and_whole_trees() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let extras = add_extras(&env);
    let out = env.run(&[]);
    out.assert_code(0);
    for p in &extras {
        assert!(!exists(p), "{} was kept", p.display());
    }
    // Source-present files untouched, and nothing else is left.
    env.assert_trees_equal();
    assert!(
        out.stderr.contains("mirror: deleted 9 of 9 extra entries"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains(", 9 deleted,"), "{}", out.stdout);

    // One audit line per deleted entry, children before their folder.
    let lines = env.log_with_status("deleted");
    let dests: Vec<&str> = lines.iter().map(|v| v["dest"].as_str().unwrap()).collect();
    assert_eq!(dests.len(), extras.len(), "{dests:?}");
    for p in &extras {
        assert!(
            dests.contains(&p.to_str().unwrap()),
            "no line for {}",
            p.display()
        );
    }
    let pos = |rel: &str| {
        dests
            .iter()
            .position(|d| *d == env.dst.join(rel).to_str().unwrap())
            .unwrap()
    };
    assert!(pos("old/tree/deep/a.bin") < pos("old/tree/deep"));
    assert!(pos("old/tree/deep") < pos("old/tree"));
    assert!(pos("old/tree") < pos("old"));
    let stray = &lines[pos("d1/stray.bin")];
    assert_eq!(
        stray["source"],
        env.src.join("d1/stray.bin").to_str().unwrap()
    );
    assert_eq!(stray["size"], 77);
    assert!(stray["ts"].as_str().unwrap().ends_with('Z'));

    // The DB forgot them: the listing no longer names any.
    let left: i64 = env
        .db()
        .query_row(
            "SELECT count(*) FROM dest_entries WHERE CAST(path AS TEXT) LIKE '%extra%'
             OR CAST(path AS TEXT) LIKE '%/old%' OR CAST(path AS TEXT) LIKE '%stray%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);

    // Folders that lost entries got their source mtime back...
    for rel in ["", "d1"] {
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        assert_eq!(
            mtime(&env.src.join(rel)),
            mtime(&env.dst.join(rel)),
            "mtime of `{rel}`"
        );
    }
    // ...so a second run has nothing to copy and nothing left to delete.
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stderr.contains(" 0 pending"), "{}", out.stderr);
    assert_eq!(env.log_with_status("deleted").len(), extras.len());
}

#[test]
fn empty_source_deletes_nothing() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let extras = add_extras(&env);
    // What an unmounted share looks like: the mount point, empty.
    std::fs::remove_dir_all(&env.src).unwrap();
    std::fs::create_dir(&env.src).unwrap();
    let out = env.run(&[]);
    out.assert_code(4);
    assert!(
        out.stderr
            .contains("mirror refused, nothing deleted: the source root is empty"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("jobrun:"))
            .count(),
        1
    );
    assert_all_exist(&extras);
    assert_eq!(
        crate::env::files_under(&env.dst).len(),
        10 + 4,
        "copies kept too"
    );
    assert!(env.log_with_status("deleted").is_empty());
}

#[test]
fn missing_source_deletes_nothing() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let extras = add_extras(&env);
    let moved = env.root().join("src.away");
    std::fs::rename(&env.src, &moved).unwrap();
    // With a scan: the scan refuses first.
    let out = env.run(&[]);
    out.assert_code(4);
    assert!(out.stderr.contains("source root"), "{}", out.stderr);
    assert_all_exist(&extras);
    // Resuming (no scan): the transfer stops on the missing root (fatal),
    // so the mirror stage never starts.
    std::fs::rename(&moved, &env.src).unwrap();
    make_backlog(&env);
    std::fs::rename(&env.src, &moved).unwrap();
    let out = env.run(&[]);
    out.assert_code(4);
    assert!(out.stderr.contains("resuming backlog"), "{}", out.stderr);
    assert!(out.stderr.contains("source root"), "{}", out.stderr);
    assert_all_exist(&extras);
    assert!(env.log_with_status("deleted").is_empty());
}

/// Runs jobrun up to the mirror test hook (debug builds only), calls
/// `meanwhile`, then lets it go on.
fn run_with_pause_before_deletes(env: &TestEnv, args: &[&str], meanwhile: impl FnOnce()) -> Out {
    let mut c = env.cmd();
    c.args(args).arg(&env.manifest);
    let paused = Paused::start(env, c, "MIRROR");
    meanwhile();
    paused.release()
}

/// The source share goes away after the candidates were listed: the root is
/// re-checked before every deletion, and the stage stops (exit 4).
#[test]
#[cfg_attr(not(debug_assertions), ignore = "needs the debug build's test hooks")]
fn source_root_vanishing_mid_stage_stops_deletes() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let extras = add_extras(&env);
    let out = run_with_pause_before_deletes(&env, &[], || {
        std::fs::rename(&env.src, env.root().join("src.away")).unwrap();
    });
    out.assert_code(4);
    assert!(
        out.stderr
            .contains("mirror refused, nothing deleted: the source root is missing"),
        "{}",
        out.stderr
    );
    assert_all_exist(&extras);
    assert!(env.log_with_status("deleted").is_empty());

    // Unmounted: the mount point is still there, empty, but another directory.
    std::fs::rename(env.root().join("src.away"), &env.src).unwrap();
    let out = run_with_pause_before_deletes(&env, &[], || {
        std::fs::rename(&env.src, env.root().join("src.away")).unwrap();
        std::fs::create_dir(&env.src).unwrap();
    });
    out.assert_code(4);
    assert!(
        out.stderr.contains("changed during the mirror stage"),
        "{}",
        out.stderr
    );
    assert_all_exist(&extras);
}

#[test]
fn source_root_that_is_a_file_deletes_nothing() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let extras = add_extras(&env);
    make_backlog(&env);
    let moved = env.root().join("src.away");
    std::fs::rename(&env.src, &moved).unwrap();
    std::fs::write(&env.src, b"not a folder").unwrap();
    let out = env.run(&[]);
    out.assert_code(4);
    // Refused before any stage (the run's preflight, which `check` shares).
    assert!(out.stderr.contains("not a directory"), "{}", out.stderr);
    assert_all_exist(&extras);
    assert!(env.log_with_status("deleted").is_empty());
}

/// Runs jobrun on `env` with `unreadable` made mode 000. Root reads
/// everything, so as root the run is made as `nobody` through `setpriv`
/// (after handing it the temp dir); `None` (skipped, with a message) when
/// that is not possible.
fn run_with_unreadable(env: &TestEnv, unreadable: &Path) -> Out {
    use std::os::unix::fs::PermissionsExt;
    let is_root = euid() == 0;
    let as_nobody = || {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(crate::env::BIN)
            .current_dir(env.root())
            .env_remove("RUST_LOG");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("JOBRUN_") {
                c.env_remove(k);
            }
        }
        c
    };
    if is_root {
        let chowned = std::process::Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(env.root())
            .status()
            .is_ok_and(|s| s.success());
        let runs = as_nobody()
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            chowned && runs,
            "running as root, this test needs jobrun to run as `nobody` (setpriv, chown), \
             which failed here"
        );
    }
    let mode = |m| std::fs::set_permissions(unreadable, std::fs::Permissions::from_mode(m));
    mode(0o000).unwrap();
    let out: Out = if is_root {
        as_nobody().arg(&env.manifest).output().unwrap().into()
    } else {
        env.run(&[])
    };
    mode(0o755).unwrap();
    out
}

/// An unreadable source root (resumed run: the mirror's own check).
#[test]
fn unreadable_source_deletes_nothing() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let extras = add_extras(&env);
    make_backlog(&env);
    let out = run_with_unreadable(&env, &env.src);
    out.assert_code(4);
    // Refused before any stage (the run's preflight, which `check` shares).
    assert!(
        out.stderr.contains("source root") && out.stderr.contains("Permission denied"),
        "{}",
        out.stderr
    );
    assert_all_exist(&extras);
    assert!(env.log_with_status("deleted").is_empty());
}

/// An unreadable source folder: the scan's listing is incomplete, so the
/// mirror deletes nothing, not even the extras elsewhere (rclone's rule).
#[test]
fn source_walk_errors_delete_nothing() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let extras = add_extras(&env);
    std::fs::remove_dir_all(env.src.join("d1")).unwrap();
    let out = run_with_unreadable(&env, &env.src.join("d2"));
    out.assert_code(4);
    assert!(
        out.stderr.contains(
            "mirror refused, nothing deleted: the last source scan could not read 1 entry"
        ),
        "{}",
        out.stderr
    );
    assert_all_exist(&extras);
    assert!(
        exists(&env.dst.join("d1/f1.bin")),
        "copy of a removed source file deleted"
    );
    assert!(env.log_with_status("deleted").is_empty());

    // Readable again: the next scan is complete and the mirror proceeds.
    env.run(&[]).assert_code(0);
    assert!(!exists(&env.dst.join("d1")));
    assert!(!exists(&env.dst.join("extra.txt")));
}

fn euid() -> u32 {
    // No libc in the test crate: read the effective uid from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

/// A file created at the source after the scan listed the destination but
/// before the deletions: the live check keeps its destination twin. The run
/// pauses at the test hook (debug builds only) while the file appears.
#[test]
#[cfg_attr(not(debug_assertions), ignore = "needs the debug build's test hooks")]
fn file_created_at_source_after_scan_is_not_deleted() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    env.dst_file("late.txt", b"late");
    env.dst_file("extra.txt", b"extra");
    env.dst_file("rewritten.txt", b"old");
    // The scan saw no `late.txt` in the source: it is a candidate now.
    // `rewritten.txt` is an extra that someone rewrote after the listing.
    let out = run_with_pause_before_deletes(&env, &[], || {
        env.src_file("late.txt", b"late");
        std::fs::write(env.dst.join("rewritten.txt"), b"new, longer").unwrap();
    });
    out.assert_code(0);
    assert!(
        exists(&env.dst.join("late.txt")),
        "deleted despite the live check"
    );
    assert!(
        exists(&env.dst.join("rewritten.txt")),
        "changed since the listing, yet deleted"
    );
    assert!(!exists(&env.dst.join("extra.txt")));
    assert!(
        out.stderr.contains("deleted 1 of 3 extra entries"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("2 kept by the live check"),
        "{}",
        out.stderr
    );
    let deleted = env.log_with_status("deleted");
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0]["dest"].as_str().unwrap().ends_with("/extra.txt"));
}

/// The same through a resumed run, where the mirror walks the destination
/// itself: the DB has no row for the new source file, the live check sees
/// it. jobrun's own temporaries are not user data and are left alone.
#[test]
fn resumed_run_walks_destination_and_live_checks() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    make_backlog(&env);
    env.src_file("new/late.txt", b"late");
    env.dst_file("new/late.txt", b"late");
    env.dst_file("extra.txt", b"extra");
    let temp = env.dst_file("d0/.jobrun-77.tmp", b"partial");
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stderr.contains("resuming backlog"), "{}", out.stderr);
    assert!(exists(&env.dst.join("new/late.txt")));
    assert!(exists(&temp), "a temporary was treated as an extra");
    assert!(!exists(&env.dst.join("extra.txt")));
    let deleted = env.log_with_status("deleted");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
}

/// The walk of a resumed run's mirror has the scan's rules (one walker):
/// an NFS silly-rename file in the destination (`.nfs` and 24 hex digits,
/// a file deleted while a client holds it open) is never a candidate, in a
/// real run or a dry run; a real extra beside it goes.
#[test]
fn resumed_run_keeps_nfs_silly_rename_files() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let silly = [
        env.dst_file(".nfs000000000000000100000001", b"open on a client"),
        env.dst_file("d1/.nfs000000000012a4f700000001", b"open too"),
    ];
    env.dst_file("extra.txt", b"extra");
    make_backlog(&env);
    let out = env.run(&["--dry-run"]);
    out.assert_code(0);
    assert!(out.stderr.contains("resuming backlog"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("dry run: would delete 1 of 1 extra entries"),
        "{}",
        out.stderr
    );
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stderr.contains("resuming backlog"), "{}", out.stderr);
    for p in &silly {
        assert!(exists(p), "{} was deleted", p.display());
    }
    assert!(!exists(&env.dst.join("extra.txt")));
    let deleted = env.log_with_status("deleted");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
}

#[test]
fn over_the_cap_deletes_nothing_and_says_how_many() {
    // Default cap: 10% of (10 files + 3 folders + 9 extras) = 2.2 → 3.
    let env = synced_env("delete_extras = true");
    let extras = add_extras(&env);
    let out = env.run(&[]);
    out.assert_code(4);
    assert!(
        out.stderr.contains(
            "mirror refused, nothing deleted: 9 entries would be deleted, over `max_delete` 10% \
             of 22 destination entries (allows 3); to allow them for one run: --max-delete 9"
        ),
        "{}",
        out.stderr
    );
    assert_all_exist(&extras);
    assert!(env.log_with_status("deleted").is_empty());
    let end = env.log_with_status("run_end");
    assert_eq!(end.last().unwrap()["exit"], 4);

    // A count cap, over by one.
    let out = env.run(&["--max-delete", "8"]);
    out.assert_code(4);
    assert!(
        out.stderr.contains("over `max_delete` 8 (allows 8)"),
        "{}",
        out.stderr
    );
    assert_all_exist(&extras);

    // Raised for one run, as the message says.
    env.run(&["--max-delete", "9"]).assert_code(0);
    assert_eq!(env.log_with_status("deleted").len(), 9);
    env.assert_trees_equal();
}

#[test]
fn dry_run_deletes_and_copies_nothing() {
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let extras = add_extras(&env);
    env.src_file("brand_new.txt", b"new");
    let out = env.run(&["--dry-run"]);
    out.assert_code(0);
    assert_all_exist(&extras);
    assert!(!exists(&env.dst.join("brand_new.txt")), "a dry run copied");
    for p in &extras {
        let tail = format!("`{}`", p.display());
        let listed = out
            .stderr
            .lines()
            .any(|l| l.starts_with("dry run: would delete ") && l.ends_with(&tail));
        assert!(listed, "{tail} not listed:\n{}", out.stderr);
    }
    assert!(out.stderr.contains("dry run: would copy"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("dry run: would delete 9 of 9 extra entries"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains(", 9 to delete (dry run),"),
        "{}",
        out.stdout
    );
    assert!(env.log_with_status("deleted").is_empty());

    // Over the cap, a dry run still lists, then says a real run would refuse.
    let out = env.run(&["--dry-run", "--max-delete", "2"]);
    out.assert_code(4);
    assert!(
        out.stderr.contains("but a real run would refuse"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("would delete file `"), "{}", out.stderr);
    assert_all_exist(&extras);

    // The real run then does what the dry run announced.
    env.run(&[]).assert_code(0);
    assert_eq!(env.log_with_status("deleted").len(), extras.len());
    env.assert_trees_equal();
}

/// Names that are not UTF-8 are ordinary data: found, deleted byte-exact
/// (children first, whatever mix of TEXT and BLOB paths the DB holds), and
/// logged with their exact bytes.
#[test]
fn non_utf8_extras_are_deleted_byte_exact() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let env = synced_env("delete_extras = true\nmax_delete = \"off\"");
    let latin1 = env.dst.join(OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&latin1, b"x").unwrap();
    let dir = env.dst.join("d0").join(OsStr::from_bytes(b"\xffdir"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("inner.txt"), b"y").unwrap();
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(!exists(&latin1) && !exists(&dir), "{}", out.stderr);
    env.assert_trees_equal();
    let lines = env.log_with_status("deleted");
    assert_eq!(lines.len(), 3);
    let b64: Vec<&str> = lines
        .iter()
        .filter_map(|v| v["dest_b64"].as_str())
        .collect();
    assert_eq!(b64.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|v| v["dest"].as_str().unwrap().ends_with("/caf\\xE9.txt"))
    );
}

/// Makes jobrun's case probe find `dir` case-insensitive: the child creates
/// the upper-case twin of the probe's name (`.JOBRUN-0<pid>.TMP`, see
/// `fsmeta::probe_name`) before exec, so the probe's lookup of it succeeds
/// as on VFAT or SMB. The path is built on the stack: nothing is allocated
/// between fork and exec.
fn looks_case_insensitive(c: &mut std::process::Command, dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let mut prefix = dir.as_os_str().as_bytes().to_vec();
    prefix.extend_from_slice(b"/.JOBRUN-0");
    assert!(prefix.len() < 4000);
    // SAFETY: only async-signal-safe calls (getpid, open, close) and stack
    // memory between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let mut buf = [0u8; 4096];
            buf[..prefix.len()].copy_from_slice(&prefix);
            let mut n = prefix.len();
            let pid = libc::getpid() as u32;
            let mut digits = [0u8; 10];
            let (mut d, mut v) = (0, pid);
            loop {
                digits[d] = b'0' + (v % 10) as u8;
                d += 1;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            for i in (0..d).rev() {
                buf[n] = digits[i];
                n += 1;
            }
            buf[n..n + 5].copy_from_slice(b".TMP\0");
            let fd = libc::open(
                buf.as_ptr().cast(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
}

/// On a case-insensitive destination (VFAT, SMB) the destination root is
/// listed under its own path, so it is never counted as one of the
/// destination's entries: an empty source over an empty destination is a
/// clean run, not "the source root is empty but the destination holds 1
/// entry", and over one extra the refusal counts 1, not 2.
#[test]
fn empty_source_on_a_case_insensitive_destination_counts_no_root() {
    let env = TestEnv::new();
    std::fs::create_dir(&env.dst).unwrap();
    env.manifest("delete_extras = true\nexclude = [\".JOBRUN-*\"]");
    let run = || {
        let mut c = env.cmd();
        c.arg("-v").arg(&env.manifest);
        looks_case_insensitive(&mut c, &env.dst);
        let out: Out = c.output().expect("spawn jobrun").into();
        assert!(
            out.stderr.contains("destination ignores case"),
            "the probe took the destination for case-insensitive: {}",
            out.stderr
        );
        out
    };
    run().assert_code(0);
    env.dst_file("old.txt", b"extra");
    let out = run();
    out.assert_code(4);
    assert!(
        out.stderr.contains(
            "mirror refused, nothing deleted: the source root is empty but the destination holds 1 entry"
        ),
        "{}",
        out.stderr
    );
    assert!(env.dst.join("old.txt").exists());
}
