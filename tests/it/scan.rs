//! Scan: the merge-join of the two walks, writes only for changes, vanished rows.

use crate::env::{TestEnv, bytes};

/// Names that sort differently bytewise than component-wise ('.', '-', ' '
/// sort before '/'), with some already present in the destination.
#[test]
fn merge_join_pairs_entries_across_tricky_names() {
    let env = TestEnv::new();
    let names = [
        "a", "a.txt", "a-b/c", "a b", "a/b", "a/b.c/d", "a/b/c", "a/b-", "b", "é/x", "z.d/a",
    ];
    for (i, n) in names.iter().enumerate() {
        let rel = if *n == "a" || *n == "a/b" {
            format!("{n}/f")
        } else {
            n.to_string()
        };
        let p = env.src_file(&rel, &bytes(100 + i, i as u64));
        TestEnv::set_mtime(&p, 1_600_000_000 + i as i64, 0);
    }
    // Two files already in the destination with the same size and mtime
    // (copied by another tool): no copy needed for those.
    for n in ["a.txt", "a/b/c"] {
        let src = env.src.join(n);
        let dst = env.dst.join(n);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
        let m = std::fs::metadata(&src).unwrap();
        filetime::set_file_mtime(&dst, filetime::FileTime::from_last_modification_time(&m))
            .unwrap();
    }
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stdout.contains(" 9 files,"), "{}", out.stdout);
    env.assert_trees_equal();

    // Change one file, remove one, add one: exactly those move.
    let p = env.src_file("a b", b"changed");
    TestEnv::set_mtime(&p, 1_700_000_000, 0);
    std::fs::remove_file(env.src.join("a-b/c")).unwrap();
    env.src_file("a/b.c/new", b"new");
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(out.stdout.contains(" 2 files,"), "{}", out.stdout);
    // No mirror stage here: the extra stays in the destination.
    std::fs::remove_file(env.dst.join("a-b/c")).unwrap();
    env.assert_trees_equal();
    let rows = env.rows();
    assert!(
        !rows.keys().any(|k| k.ends_with("a-b/c")),
        "vanished row kept"
    );
    assert!(rows.values().all(|(s, _)| s == "synced"));
    let again = env.run(&[]);
    again.assert_code(0);
    assert!(again.stdout.contains(" 0 files,"), "{}", again.stdout);
}

/// A no-op rescan leaves unchanged rows untouched (no write amplification):
/// their scan_id stays the one of the scan that last changed them.
#[test]
fn noop_rescan_does_not_rewrite_rows() {
    let env = TestEnv::new();
    for i in 0..20 {
        env.src_file(&format!("d/f{i}"), &bytes(10 + i, i as u64));
    }
    env.run(&[]).assert_code(0);
    let ids = |env: &TestEnv| -> Vec<i64> {
        let db = env.db();
        let mut st = db
            .prepare("SELECT scan_id FROM files ORDER BY rowid")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let before = ids(&env);
    env.run(&[]).assert_code(0);
    env.run(&["--rescan"]).assert_code(0);
    assert_eq!(ids(&env), before);
}
