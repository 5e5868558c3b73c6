//! What is fatal anyway is refused early, once, and `check` says what a
//! run would refuse: the same line and the same exit code.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::env::{BIN, Out, TestEnv, files_under};
use crate::support::require_root;

/// The `jobrun:` error lines of a run's stderr.
fn error_lines(out: &Out) -> Vec<String> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("jobrun: "))
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn assert_check_matches_run(env: &TestEnv, code: i32, needle: &str) {
    let check = env.check(&[]);
    let run = env.run(&[]);
    run.assert_code(code);
    check.assert_code(code);
    let (c, r) = (error_lines(&check), error_lines(&run));
    assert_eq!(c.len(), 1, "check: one error line: {}", check.stderr);
    assert!(r.contains(&c[0]), "run said {r:?}, check said {c:?}");
    assert!(c[0].contains(needle), "{c:?} lacks {needle:?}");
}

#[test]
fn check_refuses_a_source_that_is_a_file_or_missing() {
    let env = TestEnv::new();
    std::fs::remove_dir(&env.src).unwrap();
    std::fs::write(&env.src, b"a file").unwrap();
    assert_check_matches_run(&env, 4, "not a directory");
    assert!(files_under(&env.dst).is_empty(), "a file source was copied");
    std::fs::remove_file(&env.src).unwrap();
    assert_check_matches_run(&env, 4, "No such file or directory");
    assert!(files_under(&env.dst).is_empty(), "something was copied");
}

#[test]
fn check_refuses_a_destination_that_is_a_file_or_has_no_parent() {
    let env = TestEnv::new();
    env.src_file("f", b"x");
    std::fs::write(&env.dst, b"a file").unwrap();
    assert_check_matches_run(&env, 4, "is not a directory");
    assert_eq!(std::fs::read(&env.dst).unwrap(), b"a file");
    let env = TestEnv::new();
    std::fs::write(
        &env.manifest,
        "source = \"src\"\ndestination = \"missing/dst\"\n",
    )
    .unwrap();
    assert_check_matches_run(&env, 4, "cannot create destination root");
}

#[test]
fn check_refuses_a_db_of_another_job() {
    let env = TestEnv::new();
    env.src_file("f", b"x");
    env.run(&[]).assert_code(0);
    std::fs::create_dir(env.root().join("other")).unwrap();
    std::fs::write(&env.manifest, "source = \"src\"\ndestination = \"other\"\n").unwrap();
    assert_check_matches_run(&env, 2, "belongs to another job");
}

#[test]
fn check_refuses_fifo_memory_larger_than_the_machine() {
    let env = TestEnv::new();
    env.src_file("f", b"x");
    let out = env.check(&["--block-size", "1G"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("`block_size`") && out.stderr.contains("of memory"),
        "{}",
        out.stderr
    );
    let out = env.run(&["--block-size", "1G"]);
    out.assert_code(2);
    assert!(!env.db_path().exists(), "nothing created");
}

/// A destination root the job's user cannot write: one fatal line, exit
/// 4, every row still pending, instead of one failure per file.
#[test]
#[ignore = "needs root"]
fn unwritable_destination_root_is_fatal_once() {
    require_root();
    let env = TestEnv::new();
    for i in 0..31 {
        env.src_file(&format!("f{i:02}"), b"data");
    }
    std::fs::create_dir(&env.dst).unwrap();
    let chowned = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(env.root())
        .status()
        .is_ok_and(|s| s.success());
    // The destination stays root's, read-only for others.
    let owned = Command::new("chown")
        .args(["root:root"])
        .arg(&env.dst)
        .status()
        .is_ok_and(|s| s.success());
    std::fs::set_permissions(&env.dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(BIN)
        .arg(&env.manifest)
        .current_dir(env.root())
        .env_remove("RUST_LOG");
    let o = c.output().expect("setpriv (util-linux)");
    assert!(chowned && owned, "cannot chown the test tree");
    let out: Out = o.into();
    out.assert_code(4);
    let lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].contains("is not writable by this user") && lines[0].contains("dst"),
        "{lines:?}"
    );
    assert!(
        !out.stderr.contains("file failed"),
        "no per-file warnings: {}",
        out.stderr
    );
    let db = env.db();
    let pending: i64 = db
        .query_row(
            "SELECT count(*) FROM files WHERE kind = 'file' AND status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 31, "the backlog is kept");
}
