//! `jobrun rebase`: a job whose share moved keeps its state (issue 26
//! item 6), and a new root that does not hold the recorded tree is refused.

use std::path::Path;

use crate::env::{TestEnv, bytes};

fn manifest(env: &TestEnv, src: &str, dst: &str) {
    let text = format!("source = \"{src}\"\ndestination = \"{dst}\"\n");
    std::fs::write(&env.manifest, text).unwrap();
}

fn rebase(env: &TestEnv) -> crate::env::Out {
    let mut c = env.cmd();
    c.arg("rebase").arg(&env.manifest);
    c.output().expect("spawn jobrun").into()
}

/// A synced tree of three files (one in a folder, one not UTF-8).
fn synced(env: &TestEnv) {
    env.src_file("a.txt", &bytes(1000, 1));
    env.src_file("sub/b.bin", &bytes(5000, 2));
    let odd = env.src.join(std::ffi::OsStr::new(
        &<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(b"caf\xe9".to_vec()),
    ));
    std::fs::write(odd, b"odd").unwrap();
    env.run(&[]).assert_code(0);
}

/// `(source path, status, hash)` of every file row, paths byte-exact.
fn rows(env: &TestEnv) -> Vec<(Vec<u8>, String, Option<String>)> {
    env.db()
        .prepare("SELECT CAST(source_path AS BLOB), status, hash FROM files WHERE kind = 'file' ORDER BY 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// [`rows`] with their paths below `root`.
fn below(env: &TestEnv, root: &Path) -> Vec<(Vec<u8>, String, Option<String>)> {
    let root = std::fs::canonicalize(root).unwrap();
    let prefix = [root.as_os_str().as_encoded_bytes(), b"/"].concat();
    rows(env)
        .into_iter()
        .map(|(p, st, h)| (p.strip_prefix(prefix.as_slice()).unwrap().to_vec(), st, h))
        .collect()
}

#[test]
fn a_moved_share_keeps_every_row_and_hash_and_the_next_run_copies_nothing() {
    let env = TestEnv::new();
    synced(&env);
    let before = below(&env, &env.src);
    assert_eq!(before.len(), 3);
    assert!(
        before.iter().all(|r| r.1 == "synced" && r.2.is_some()),
        "{before:?}"
    );
    std::fs::rename(&env.src, env.root().join("src2")).unwrap();
    std::fs::rename(&env.dst, env.root().join("dst2")).unwrap();
    manifest(&env, "src2", "dst2");
    let out = env.run(&[]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("belongs to another job")
            && out.stderr.contains("`jobrun rebase` checks the new root"),
        "{}",
        out.stderr
    );

    let out = rebase(&env);
    out.assert_code(0);
    assert!(out.stdout.contains("rebased"), "{}", out.stdout);
    assert!(
        out.stdout.contains("every row and hash kept"),
        "{}",
        out.stdout
    );
    assert_eq!(
        below(&env, &env.root().join("src2")),
        before,
        "rows and hashes kept"
    );
    let line = env
        .log()
        .into_iter()
        .find(|l| l["status"] == "rebase")
        .expect("a rebase audit line");
    let canon = |p: &str| std::fs::canonicalize(env.root()).unwrap().join(p);
    assert_eq!(line["source"], canon("src2").to_str().unwrap());
    assert_eq!(line["old_source"], canon("src").to_str().unwrap());
    assert_eq!(line["destination"], canon("dst2").to_str().unwrap());
    assert!(line["checked"].as_u64().unwrap() >= 3, "{line}");

    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stdout.starts_with("jobrun: 0 files"), "{}", out.stdout);
    // Twice is nothing to do.
    let out = rebase(&env);
    out.assert_code(0);
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
}

#[test]
fn a_new_root_that_differs_is_refused_with_its_first_mismatch_and_the_db_unchanged() {
    let env = TestEnv::new();
    synced(&env);
    let before = rows(&env);
    // A copy of the tree with one file of another size.
    let other = env.root().join("other");
    std::fs::create_dir_all(other.join("sub")).unwrap();
    for rel in ["a.txt", "sub/b.bin"] {
        std::fs::copy(env.src.join(rel), other.join(rel)).unwrap();
        let t = std::fs::metadata(env.src.join(rel))
            .unwrap()
            .modified()
            .unwrap();
        filetime::set_file_mtime(other.join(rel), filetime::FileTime::from_system_time(t)).unwrap();
    }
    std::fs::write(other.join("sub/b.bin"), b"shorter").unwrap();
    manifest(&env, "other", "dst");
    let out = rebase(&env);
    out.assert_code(2);
    assert!(out.stderr.contains("rebase refused"), "{}", out.stderr);
    assert!(
        out.stderr.contains("sub/b.bin` has 7 bytes, recorded 5000"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("caf"),
        "the missing one named too: {}",
        out.stderr
    );
    assert_eq!(rows(&env), before, "the DB unchanged");
    assert!(env.log().iter().all(|l| l["status"] != "rebase"));
    manifest(&env, "src", "dst");
    env.run(&[]).assert_code(0);
}
