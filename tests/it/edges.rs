//! Issue 7 (coverage): less-travelled copy paths end to end — symlinks,
//! per-file failures that must not stop the run, a source file that vanished
//! from a backlog, and throttled / in-place copies.

use std::time::{Duration, Instant};

use crate::env::{TestEnv, bytes};

#[test]
fn symlinks_are_recreated_as_links_with_their_own_times() {
    let env = TestEnv::new();
    let target = env.src_file("dir/target.txt", b"pointed at");
    TestEnv::set_mtime(&target, 1_600_000_000, 5);
    std::os::unix::fs::symlink("dir/target.txt", env.src.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", env.src.join("dir/dangling")).unwrap();
    let t = filetime::FileTime::from_unix_time(1_500_000_000, 123_456_789);
    filetime::set_symlink_file_times(env.src.join("rel-link"), t, t).unwrap();

    env.run(&[]).assert_code(0);

    for (link, want) in [
        ("rel-link", "dir/target.txt"),
        ("dir/dangling", "/nonexistent/dangling"),
    ] {
        let d = env.dst.join(link);
        let md = std::fs::symlink_metadata(&d).unwrap();
        assert!(
            md.file_type().is_symlink(),
            "{link} is not a symlink at the destination"
        );
        assert_eq!(
            std::fs::read_link(&d).unwrap().to_str(),
            Some(want),
            "{link}"
        );
    }
    let md = std::fs::symlink_metadata(env.dst.join("rel-link")).unwrap();
    assert_eq!(
        filetime::FileTime::from_last_modification_time(&md),
        t,
        "link's own mtime"
    );
    assert_eq!(
        std::fs::read(env.dst.join("rel-link")).unwrap(),
        b"pointed at"
    );
    let kinds: Vec<(String, String)> = env
        .db()
        .prepare(
            "SELECT CAST(source_path AS TEXT), status FROM files WHERE kind = 'symlink' ORDER BY 1",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.iter().all(|(_, s)| s == "synced"), "{kinds:?}");

    // Nothing to do the second time: links are recognised as unchanged.
    let before = env.log().len();
    env.run(&[]).assert_code(0);
    let again: Vec<_> = env.log()[before..]
        .iter()
        .filter(|v| v["status"] == "synced")
        .cloned()
        .collect();
    assert!(again.is_empty(), "second run recopied {again:?}");
}

/// A file where the source has a folder is not a folder: it is replaced,
/// as an overwrite replaces a file (rsync -a does the same), without
/// `delete_extras`; the rest of the run goes on as always. (Before issue
/// 24 item 7 it failed the subtree on every run and never converged.)
#[test]
fn a_file_where_a_folder_must_go_is_replaced_and_the_run_goes_on() {
    let env = TestEnv::new();
    env.src_file("ok.bin", &bytes(3000, 1));
    env.src_file("blocked/inner.bin", &bytes(5000, 2));
    env.src_file("zzz/after.bin", &bytes(100, 3));
    std::fs::create_dir(&env.dst).unwrap();
    std::fs::write(env.dst.join("blocked"), b"a file, not a folder").unwrap();

    let out = env.run(&[]);
    out.assert_code(0);
    env.assert_trees_equal();
    assert!(env.dst.join("blocked").is_dir());
    assert!(
        env.rows()
            .values()
            .all(|(s, h)| s == "synced" && h.is_some()),
        "{:?}",
        env.rows()
    );
    assert!(env.log_with_status("failed").is_empty());
    // An overwrite writes no line for what it replaced; nor does this.
    assert!(env.log_with_status("deleted").is_empty());
    env.run(&[]).assert_code(0).assert_copied_nothing();
}

#[test]
fn a_source_file_gone_from_the_backlog_fails_then_is_forgotten() {
    let env = TestEnv::new();
    for i in 0..3 {
        env.src_file(&format!("f{i}"), &bytes(1000 + i, i as u64 + 1));
    }
    env.run(&[]).assert_code(0);
    // Make a backlog by hand: f1 pending again, then delete its source.
    let f1 = env.src.join("f1");
    // (Through the view `files`: SQLite counts no changes there.)
    env.db()
        .execute(
            "UPDATE files SET status = 'pending' WHERE CAST(source_path AS TEXT) = ?1",
            [f1.to_str().unwrap()],
        )
        .unwrap();
    assert_eq!(crate::support::row(&env, "f1").status, "pending");
    std::fs::remove_file(&f1).unwrap();

    let out = env.run(&[]);
    out.assert_code(1);
    assert!(
        out.stderr.contains("resuming backlog: 1 file,"),
        "{}",
        out.stderr
    );
    let (status, _) = &env.rows()[f1.to_str().unwrap()];
    assert_eq!(status, "failed");
    let failed = env.log_with_status("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot open source"),
        "{}",
        failed[0]
    );

    // Next run: no backlog, so a scan; the vanished source's row is dropped.
    env.run(&[]).assert_code(0);
    let rows = env.rows();
    assert!(!rows.contains_key(f1.to_str().unwrap()), "{rows:?}");
    assert_eq!(rows.len(), 2);
}

#[test]
fn throttled_in_place_copy_is_identical_and_not_faster_than_the_limit() {
    let env = TestEnv::new();
    // 1 MiB at 2 MiB/s: at least ~0.5 s for reads (and for writes).
    env.manifest("bwlimit = \"2M\"\ninplace = true\nblock_size = \"256K\"\nqueue_capacity = 2");
    let big = env.src_file("big.bin", &bytes(1 << 20, 7));
    TestEnv::set_mtime(&big, 1_650_000_000, 999_999_999);
    env.src_file("small/a.txt", b"a");
    env.src_file("small/empty", b"");

    let t = Instant::now();
    env.run(&["-q"]).assert_code(0);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "1 MiB at 2 MiB/s took only {took:?}"
    );
    env.assert_trees_equal();
    // In place: no temporary sibling was ever left behind.
    let temps: Vec<_> = walkdir::WalkDir::new(&env.dst)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".jobrun-"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    assert_eq!(
        env.log_with_status("synced")
            .iter()
            .filter(|v| v.get("hash").is_some())
            .count(),
        3
    );
}

#[test]
#[ignore = "slow tier (6 s)"]
fn plain_progress_lines_without_a_terminal() {
    let env = TestEnv::new();
    // ~2.7 s of transfer at 384 KiB/s, a progress line every second (the
    // shortest interval accepted).
    env.manifest("bwlimit = \"384K\"\nprogress_interval = \"1s\"\nblock_size = \"128K\"");
    env.src_file("big.bin", &bytes(1 << 20, 9));
    let out = env.run(&[]);
    out.assert_code(0);
    // SPEC §8: not on a terminal, plain lines at an interval, no control
    // characters; the transfer line names the current file.
    assert!(!out.stderr.contains(['\r', '\x1b']), "{:?}", out.stderr);
    let naming: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("big.bin"))
        .collect();
    assert!(
        naming.len() >= 2,
        "expected periodic lines naming big.bin:\n{}",
        out.stderr
    );
    // --quiet: no progress at all.
    std::fs::remove_dir_all(&env.dst).unwrap();
    let out = env.run(&["-q", "--rescan"]);
    out.assert_code(0);
    assert!(!out.stderr.contains("big.bin"), "{}", out.stderr);
}

#[test]
fn status_reads_the_db_and_changes_nothing() {
    let env = TestEnv::new();
    let status = |json: bool| {
        let mut c = env.cmd();
        c.arg("status").arg(&env.manifest);
        if json {
            c.arg("--json");
        }
        crate::env::Out::from(c.output().unwrap())
    };
    let out = status(false);
    assert_ne!(out.code, 0, "status before any run: {out:?}");
    assert!(!env.db_path().exists(), "status created the DB");

    env.src_file("a", &bytes(10, 1));
    env.src_file("b/c", &bytes(20, 2));
    env.run(&[]).assert_code(0);
    let db_bytes = std::fs::read(env.db_path()).unwrap();

    let out = status(false);
    out.assert_code(0);
    for word in ["pending", "synced", "failed"] {
        assert!(out.stdout.contains(word), "{word} missing:\n{}", out.stdout);
    }
    let out = status(true);
    out.assert_code(0);
    let v: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).expect("status --json is JSON");
    assert!(v.to_string().contains("synced"), "{v}");
    assert_eq!(
        std::fs::read(env.db_path()).unwrap(),
        db_bytes,
        "status modified the DB"
    );
}
