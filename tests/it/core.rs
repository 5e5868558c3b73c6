//! Issue 2: full sync, skip rule, updates, resume, `check`, odd pipeline
//! shapes, hashes against coreutils.

use crate::env::{TestEnv, bytes, coreutils_hash, files_under};

const BS: usize = 64 * 1024;

/// A nested tree with the block-boundary sizes.
fn populate(env: &TestEnv) -> Vec<&'static str> {
    let files: &[(&str, usize)] = &[
        ("empty.bin", 0),
        ("one.bin", 1),
        ("a/below.bin", BS - 1),
        ("a/exact.bin", BS),
        ("a/b/above.bin", BS + 1),
        ("a/b/c/several.bin", 5 * BS + 123),
        ("z/deep/er/still/small.txt", 10),
    ];
    for (i, (rel, size)) in files.iter().enumerate() {
        let p = env.src_file(rel, &bytes(*size, i as u64 + 1));
        TestEnv::set_mtime(&p, 1_600_000_000 + i as i64, 123_456_789);
    }
    files.iter().map(|(r, _)| *r).collect()
}

/// Runs the job, expects a full scan and exit 0, and identical trees.
fn full_scan_run(env: &TestEnv) {
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(
        out.stderr.contains("no backlog: full scan"),
        "{}",
        out.stderr
    );
    env.assert_trees_equal();
}

#[test]
fn full_sync_then_nothing_to_do() {
    let env = TestEnv::new();
    env.manifest("block_size = \"64KiB\"");
    let files = populate(&env);
    full_scan_run(&env);

    let rows = env.rows();
    assert_eq!(rows.len(), files.len());
    assert!(rows.values().all(|(s, h)| s == "synced" && h.is_some()));
    let synced = env.log_with_status("synced");
    let synced_files: Vec<_> = synced.iter().filter(|v| v.get("hash").is_some()).collect();
    assert_eq!(synced_files.len(), files.len(), "one synced line per file");
    for v in &synced_files {
        assert_eq!(v["algorithm"], "sha256");
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        let src = std::path::Path::new(v["source"].as_str().unwrap());
        assert_eq!(
            v["hash"].as_str().unwrap(),
            coreutils_hash("sha256sum", src)
        );
        assert_eq!(
            v["size"].as_u64().unwrap(),
            std::fs::metadata(src).unwrap().len()
        );
    }

    let out = env.run(&[]);
    out.assert_code(0);
    assert!(
        out.stdout.contains(" 0 files, 0 B copied"),
        "{}",
        out.stdout
    );
    assert_eq!(
        env.log_with_status("synced").len(),
        synced.len(),
        "second run logged copies"
    );
}

#[test]
fn hashes_match_coreutils_for_every_algorithm() {
    for (algo, tool) in [
        ("md5", "md5sum"),
        ("sha1", "sha1sum"),
        ("sha256", "sha256sum"),
        ("blake2b", "b2sum"),
    ] {
        let env = TestEnv::new();
        env.manifest(&format!("checksum = \"{algo}\"\nblock_size = \"64KiB\""));
        populate(&env);
        env.run(&[]).assert_code(0);
        let db = env.db();
        let mut st = db
            .prepare("SELECT CAST(source_path AS TEXT), hash, hash_algorithm FROM files WHERE kind = 'file'")
            .unwrap();
        let rows: Vec<(String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 7);
        for (path, hash, alg) in rows {
            assert_eq!(alg, algo);
            assert_eq!(
                hash,
                coreutils_hash(tool, path.as_ref()),
                "{algo} of {path}"
            );
        }
    }
}

#[test]
fn edits_truncation_and_growth_are_recopied() {
    let env = TestEnv::new();
    env.manifest("block_size = \"64KiB\"");
    populate(&env);
    env.run(&[]).assert_code(0);

    // Same size, new content, new mtime.
    let p = env.src.join("a/exact.bin");
    std::fs::write(&p, bytes(BS, 99)).unwrap();
    TestEnv::set_mtime(&p, 1_700_000_000, 1);
    // Truncated.
    let t = env.src.join("a/b/c/several.bin");
    std::fs::write(&t, bytes(100, 5)).unwrap();
    TestEnv::set_mtime(&t, 1_700_000_001, 0);
    // Grown.
    let g = env.src.join("one.bin");
    std::fs::write(&g, bytes(3 * BS, 6)).unwrap();
    TestEnv::set_mtime(&g, 1_700_000_002, 0);

    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stdout.contains(" 3 files,"), "{}", out.stdout);
    env.assert_trees_equal();
    assert_eq!(
        env.rows()[t.to_str().unwrap()].1.as_deref().unwrap(),
        coreutils_hash("sha256sum", &t)
    );
}

#[test]
fn same_size_same_mtime_is_skipped_even_if_content_differs() {
    // The skip rule is size + mtime (SPEC §5), as with rsync's default.
    let env = TestEnv::new();
    let p = env.src_file("f.txt", b"aaaa");
    TestEnv::set_mtime(&p, 1_600_000_000, 0);
    env.run(&[]).assert_code(0);
    std::fs::write(env.dst.join("f.txt"), b"bbbb").unwrap();
    TestEnv::set_mtime(&env.dst.join("f.txt"), 1_600_000_000, 0);
    env.run(&[]).assert_code(0);
    assert_eq!(std::fs::read(env.dst.join("f.txt")).unwrap(), b"bbbb");
}

#[test]
fn pending_backlog_resumes_without_scanning() {
    let env = TestEnv::new();
    populate(&env);
    env.run(&[]).assert_code(0);
    // Simulate a killed run: two files pending, one of them lost at dst.
    std::fs::remove_file(env.dst.join("a/exact.bin")).unwrap();
    // (Through the view `files`: SQLite counts no changes there.)
    env.db()
        .execute(
            "UPDATE files SET status = 'pending', hash = NULL WHERE source_path LIKE '%/a/exact.bin' OR source_path LIKE '%/one.bin'",
            [],
        )
        .unwrap();
    let n: i64 = env
        .db()
        .query_row(
            "SELECT count(*) FROM files WHERE status = 'pending' AND hash IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2);
    env.src_file("new.txt", b"new");

    let out = env.run(&[]);
    out.assert_code(0);
    assert!(
        out.stderr.contains("resuming backlog: 2 files"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("full scan"));
    assert!(env.dst.join("a/exact.bin").exists());
    assert!(!env.dst.join("new.txt").exists(), "a resume must not scan");
    assert!(
        env.rows()
            .values()
            .all(|(s, h)| s == "synced" && h.is_some())
    );

    full_scan_run(&env);
}

/// The view `files` answers Debian's own `sqlite3` as the docs say: full
/// paths, text statuses, hex hashes; and an admin's `UPDATE` through it
/// puts a file back in the backlog (the view's triggers use no function an
/// older `sqlite3` lacks).
#[test]
fn the_sqlite3_command_reads_and_writes_the_view() {
    let sqlite3 = |db: &std::path::Path, sql: &str| {
        let out = std::process::Command::new("sqlite3")
            .arg(db)
            .arg(sql)
            .output()
            .expect("sqlite3 (Debian's sqlite3 package) must be installed");
        assert!(
            out.status.success(),
            "sqlite3 {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.src_file("d/b.txt", b"bravo");
    env.run(&[]).assert_code(0);
    let db = env.db_path();
    let rows = sqlite3(
        &db,
        "SELECT source_path, dest_path, status, hash, hash_algorithm FROM files
         WHERE kind = 'file' ORDER BY source_path",
    );
    let src = env.root().join("src");
    let dst = env.root().join("dst");
    let sha = |rel: &str| crate::env::coreutils_hash("sha256sum", &src.join(rel));
    assert_eq!(
        rows,
        format!(
            "{s}/a.txt|{d}/a.txt|synced|{}|sha256\n{s}/d/b.txt|{d}/d/b.txt|synced|{}|sha256\n",
            sha("a.txt"),
            sha("d/b.txt"),
            s = src.display(),
            d = dst.display(),
        )
    );
    std::fs::remove_file(dst.join("d/b.txt")).unwrap();
    sqlite3(
        &db,
        "UPDATE files SET status = 'pending', hash = NULL WHERE source_path LIKE '%/d/b.txt'",
    );
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(
        out.stderr.contains("resuming backlog: 1 file"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(dst.join("d/b.txt")).unwrap(), b"bravo");
    let after = sqlite3(
        &db,
        "SELECT status, hash FROM files WHERE source_path LIKE '%/d/b.txt'",
    );
    assert_eq!(after, format!("synced|{}\n", sha("d/b.txt")));
}

#[test]
fn rescan_flag_forces_a_scan_over_a_backlog() {
    let env = TestEnv::new();
    populate(&env);
    env.run(&[]).assert_code(0);
    env.db()
        .execute("UPDATE files SET status = 'pending'", [])
        .unwrap();
    env.src_file("new.txt", b"new");
    let out = env.run(&["--rescan"]);
    out.assert_code(0);
    assert!(
        out.stderr.contains("rescan requested: full scan"),
        "{}",
        out.stderr
    );
    // The rescan finds everything in place except the new file.
    assert!(out.stdout.contains(" 1 file,"), "{}", out.stdout);
    env.assert_trees_equal();
}

#[test]
fn check_touches_nothing() {
    let env = TestEnv::new();
    populate(&env);
    let out = env.check(&[]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("plan               scan -> transfer"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("warning: destination root"),
        "{}",
        out.stdout
    );
    assert!(!env.dst.exists());
    assert!(!env.db_path().exists());
    assert!(!env.log_path().exists());
    assert!(!env.root().join("job.db.lock").exists());
}

#[test]
fn odd_block_sizes_and_queue_of_one_give_identical_results() {
    let reference = {
        let env = TestEnv::new();
        populate(&env);
        env.run(&[]).assert_code(0);
        env.rows()
            .into_iter()
            .map(|(k, v)| (k.rsplit("/src/").next().unwrap().to_string(), v))
            .collect::<Vec<_>>()
    };
    for extra in [
        "block_size = \"1KiB\"",
        "queue_capacity = 1",
        "block_size = 1000\nqueue_capacity = 1",
        "inplace = true",
        "transfers = 1",
        "transfers = 7\nqueue_capacity = 1",
        "transfers = 3\nblock_size = \"1KiB\"\ninplace = true",
    ] {
        let env = TestEnv::new();
        env.manifest(extra);
        populate(&env);
        env.run(&[]).assert_code(0);
        env.assert_trees_equal();
        let rows: Vec<_> = env
            .rows()
            .into_iter()
            .map(|(k, v)| (k.rsplit("/src/").next().unwrap().to_string(), v))
            .collect();
        assert_eq!(rows, reference, "{extra}");
    }
}

#[test]
fn empty_dirs_and_dir_mtimes_are_reproduced() {
    let env = TestEnv::new();
    env.src_file("d/f.txt", b"x");
    std::fs::create_dir_all(env.src.join("empty/inner")).unwrap();
    for d in ["d", "empty/inner", "empty"] {
        TestEnv::set_mtime(&env.src.join(d), 1_500_000_000, 5);
    }
    env.run(&[]).assert_code(0);
    use std::os::unix::fs::MetadataExt;
    for d in ["d", "empty/inner", "empty"] {
        let md = std::fs::metadata(env.dst.join(d)).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 5), "{d}");
    }
    let out = env.run(&[]);
    assert!(out.stdout.contains(" 0 files"), "{}", out.stdout);
}

/// A run with folders pending and no file (a tree of empty folders, then a
/// folder's mtime changed) still applies them: the transfer stage is left
/// out only when no row at all is pending.
#[test]
fn folders_alone_pending_are_still_applied() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src.join("a/b")).unwrap();
    let mtime = |env: &TestEnv| {
        let md = std::fs::metadata(env.dst.join("a/b")).unwrap();
        (md.mtime(), md.mtime_nsec())
    };
    TestEnv::set_mtime(&env.src.join("a/b"), 1_500_000_000, 7);
    env.run(&[]).assert_code(0);
    assert_eq!(mtime(&env), (1_500_000_000, 7));
    TestEnv::set_mtime(&env.src.join("a/b"), 1_600_000_000, 9);
    env.run(&[]).assert_code(0);
    assert_eq!(mtime(&env), (1_600_000_000, 9));
}

#[test]
fn a_resumed_file_replaces_a_stale_temporary_of_its_own_id() {
    // Resume does not scan, so the temporary a killed run left for a
    // pending file (or a symlink planted under its name) is still there
    // when the writer creates it again: it must be replaced, and a
    // symlink never followed.
    let env = TestEnv::new();
    env.src_file("sub/f.txt", b"new data");
    env.run(&[]).assert_code(0);
    let db = env.db();
    db.execute(
        "UPDATE files SET status = 'pending' WHERE kind = 'file'",
        [],
    )
    .unwrap();
    let id: i64 = db
        .query_row("SELECT rowid FROM files WHERE kind = 'file'", [], |r| {
            r.get(0)
        })
        .unwrap();
    drop(db);
    std::fs::remove_file(env.dst.join("sub/f.txt")).unwrap();
    let victim = env.root().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    let temp = env.dst.join(format!("sub/.jobrun-{id}.tmp"));
    std::os::unix::fs::symlink(&victim, &temp).unwrap();
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stdout.contains("mode resume"), "{}", out.stdout);
    assert_eq!(
        std::fs::read(env.dst.join("sub/f.txt")).unwrap(),
        b"new data"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert!(
        std::fs::symlink_metadata(&temp).is_err(),
        "temporary left behind"
    );
}

#[test]
fn leftover_temporaries_are_removed_by_the_next_scan() {
    let env = TestEnv::new();
    env.src_file("f.txt", b"data");
    std::fs::create_dir_all(env.dst.join("sub")).unwrap();
    std::fs::write(env.dst.join("sub/.jobrun-17.tmp"), b"partial").unwrap();
    env.run(&[]).assert_code(0);
    assert!(!env.dst.join("sub/.jobrun-17.tmp").exists());
    let leftovers: Vec<_> = files_under(&env.dst)
        .into_keys()
        .filter(|p| p.to_string_lossy().contains(".jobrun-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn manifest_of_another_job_is_refused() {
    let env = TestEnv::new();
    env.src_file("f.txt", b"data");
    env.run(&[]).assert_code(0);
    std::fs::create_dir(env.root().join("src2")).unwrap();
    std::fs::write(&env.manifest, "source = \"src2\"\ndestination = \"dst\"\n").unwrap();
    let out = env.run(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("belongs to another job"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_source_root_is_fatal_and_keeps_state() {
    let env = TestEnv::new();
    env.src_file("f.txt", b"data");
    env.run(&[]).assert_code(0);
    let before = env.rows();
    std::fs::rename(&env.src, env.root().join("moved")).unwrap();
    let out = env.run(&[]);
    out.assert_code(4);
    assert!(out.stderr.contains("source root"), "{}", out.stderr);
    assert_eq!(env.rows(), before);
}
