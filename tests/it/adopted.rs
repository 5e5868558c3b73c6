//! Files adopted by a scan (found already in place at the destination,
//! taken as synced on size and mtime, never read) and `jobrun verify`
//! (issue 24 item 6): verify compares them by reading both sides, records
//! the source's hash where they match, reports them apart, names every bad
//! file on the console, and never says "all verified" for what it did not
//! compare.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::env::{Out, TestEnv, bytes, coreutils_hash};
use crate::support::wait_for;

fn verify(env: &TestEnv, args: &[&str]) -> Out {
    let mut c = env.cmd();
    c.arg("verify").arg(&env.manifest).args(args);
    c.output().expect("spawn jobrun").into()
}

/// A file already at the destination with the source's bytes and mtime, as
/// rsync left it months ago: the first scan adopts it without reading.
fn seeded(env: &TestEnv, rel: &str, data: &[u8]) {
    let s = env.src_file(rel, data);
    let d = env.dst_file(rel, data);
    let secs = 1_600_000_000 + data.len() as i64;
    TestEnv::set_mtime(&s, secs, 0);
    TestEnv::set_mtime(&d, secs, 0);
}

/// Changes one byte of `p`, keeping its size and mtime.
fn flip_byte(p: &Path, at: usize) {
    let md = std::fs::metadata(p).unwrap();
    let mut data = std::fs::read(p).unwrap();
    data[at] ^= 0x01;
    std::fs::write(p, &data).unwrap();
    TestEnv::set_mtime(p, md.mtime(), md.mtime_nsec() as u32);
}

/// `(hash, hash_algorithm, verify_result)` of the row of source file `rel`.
fn row(env: &TestEnv, rel: &str) -> (Option<String>, Option<String>, Option<String>) {
    let path = env.src.join(rel);
    env.db()
        .query_row(
            "SELECT hash, hash_algorithm, verify_result FROM files WHERE source_path = ?1",
            [path.to_str().unwrap()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

fn unhashed(env: &TestEnv) -> i64 {
    env.db()
        .query_row(
            "SELECT count(*) FROM files WHERE kind = 'file' AND status = 'synced' AND hash IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// The lines of `out`'s stdout that name files (all but the summary).
fn named(out: &Out) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| !l.starts_with("jobrun: verify: ") || !l.contains(" read in "))
        .collect()
}

#[test]
fn adopted_files_are_compared_with_the_source_and_a_flipped_byte_is_found() {
    let env = TestEnv::new();
    seeded(&env, "a.bin", &bytes(100_000, 1));
    seeded(&env, "sub/b.bin", &bytes(5_000, 2));
    seeded(&env, "c.txt", b"hello");
    // rsync -anci finds this one; size and mtime are the source's.
    flip_byte(&env.dst.join("sub/b.bin"), 1234);
    let out = env.run(&["-q"]);
    out.assert_code(0);
    assert_eq!(unhashed(&env), 3, "the scan adopted all three");
    insta::with_settings!({ filters => vec![
        (r" in \d+(\.\d+)?s \([^)]* mean\)", " in [T] ([RATE] mean)"),
    ]}, {
        insta::assert_snapshot!("run_stdout_after_adopting", out.stdout);
    });
    // The run that adopted them says so and points to verify.
    assert!(
        out.stdout.contains("3 files found in place")
            && out.stdout.contains("not read")
            && out.stdout.contains("jobrun verify"),
        "{}",
        out.stdout
    );
    // A rescan adopts nothing new: the rows were already taken as synced.
    let out = env.run(&["-q", "--rescan"]);
    out.assert_code(0);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);

    let out = verify(&env, &["-q", "--transfers", "1"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("3 adopted files compared byte for byte with the source, 1 mismatched"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("2 verified, 1 mismatch, 0 missing"),
        "{}",
        out.stdout
    );
    assert_eq!(
        named(&out),
        vec!["jobrun: verify: mismatch `sub/b.bin`: differs from the source at byte offset 1234"],
        "{}",
        out.stdout
    );
    // The source's hash is recorded where both sides matched.
    let a = row(&env, "a.bin");
    assert_eq!(
        a,
        (
            Some(coreutils_hash("sha256sum", &env.src.join("a.bin"))),
            Some("sha256".into()),
            Some("ok".into())
        )
    );
    assert_eq!(
        row(&env, "sub/b.bin"),
        (None, None, Some("mismatch".into()))
    );
    let m = env.log_with_status("mismatch");
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0]["adopted"], true);
    assert_eq!(m[0]["differs_at"], 1234);
    let v = env.log_with_status("verified");
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|l| l["adopted"] == true), "{v:?}");
    let end = &env.log_with_status("verify_end")[0];
    assert_eq!(end["adopted"], 3);
    assert_eq!(end["adopted_mismatch"], 1);
    // Both sides were read: the bytes count twice for an adopted file.
    assert_eq!(end["bytes"], 2 * (100_000 + 5_000 + 5));

    // The next verify reads the two hashed files at the destination only
    // and compares the mismatched one with the source again.
    let out = verify(&env, &["-q"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("1 adopted file compared byte for byte with the source, 1 mismatched")
            && out.stdout.contains("2 verified, 1 mismatch"),
        "{}",
        out.stdout
    );
    // --repair and a run copy it; then everything verifies, all hashed.
    verify(&env, &["-q", "--repair"]).assert_code(1);
    env.run(&["-q"]).assert_code(0);
    env.assert_trees_equal();
    let out = verify(&env, &["-q"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("3 verified, 0 mismatch"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("adopted"), "{}", out.stdout);
    assert_eq!(unhashed(&env), 0);
    // Someone else brings a new version to both sides: the scan takes it
    // without reading, its old hash goes, and the run says so.
    seeded(&env, "c.txt", b"hello again");
    let out = env.run(&["-q"]);
    assert!(
        out.stdout
            .contains("1 file found in place at the destination was taken"),
        "{}",
        out.stdout
    );
    assert_eq!(row(&env, "c.txt").0, None);
    assert_eq!(unhashed(&env), 1);
}

#[test]
fn an_adopted_file_is_never_verified_without_its_source() {
    let env = TestEnv::new();
    seeded(&env, "a.bin", &bytes(1000, 1));
    seeded(&env, "b.bin", &bytes(2000, 2));
    env.src_file("copied.bin", &bytes(3000, 3));
    env.run(&["-q"]).assert_code(0);
    // The source of one adopted file changed since the scan (same size,
    // new mtime): its row no longer describes it.
    std::fs::write(env.src.join("b.bin"), bytes(2000, 9)).unwrap();
    let out = verify(&env, &["-q", "--transfers", "1"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("2 verified, 0 mismatch, 0 missing, 1 failed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("jobrun: verify: failed `b.bin`: the source changed since the last scan"),
        "{}",
        out.stdout
    );
    assert_eq!(row(&env, "b.bin").0, None, "no hash recorded for it");

    // The old share is gone: the hashed files verify, the adopted one
    // cannot be compared and is never called verified.
    std::fs::rename(&env.src, env.root().join("decommissioned")).unwrap();
    std::fs::remove_file(env.root().join("decommissioned/b.bin")).unwrap();
    let out = verify(&env, &["-q"]);
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("2 verified, 0 mismatch, 0 missing, 1 failed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("failed `b.bin`: ") && out.stdout.contains("source"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_verify_that_compared_nothing_does_not_exit_0() {
    let env = TestEnv::new();
    std::fs::create_dir(env.src.join("empty")).unwrap();
    env.run(&["-q"]).assert_code(0);
    let out = verify(&env, &["-q"]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("0 files") && out.stdout.contains("exit 1 (nothing compared)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("all verified"), "{}", out.stdout);
    // A sample that takes no file compared nothing either.
    env.src_file("a", b"a");
    env.run(&["-q"]).assert_code(0);
    let out = verify(&env, &["-q", "--sample", "0.0001", "--seed", "1"]);
    out.assert_code(1);
    assert!(out.stdout.contains("nothing compared"), "{}", out.stdout);
    // Files found intact by the verify it resumes were compared: exit 0.
    verify(&env, &["-q"]).assert_code(0);
    let out = verify(&env, &["-q", "--since", "1h"]);
    out.assert_code(0);
    assert!(out.stdout.contains("1 skipped"), "{}", out.stdout);
}

#[test]
fn the_console_names_the_first_20_bad_files_then_a_count() {
    let env = TestEnv::new();
    for i in 0..25 {
        env.src_file(&format!("f{i:02}"), &bytes(100, i));
    }
    env.src_file("sizes/wrong", b"12345");
    env.src_file("sizes/hash", b"abcde");
    env.run(&["-q"]).assert_code(0);
    for i in 0..25 {
        std::fs::remove_file(env.dst.join(format!("f{i:02}"))).unwrap();
    }
    std::fs::write(env.dst.join("sizes/wrong"), b"1234").unwrap();
    flip_byte(&env.dst.join("sizes/hash"), 2);
    let out = verify(&env, &["-q", "--transfers", "1"]);
    out.assert_code(1);
    let lines = named(&out);
    assert_eq!(lines.len(), 21, "{}", out.stdout);
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn console_lines_for_each_kind_of_bad_file() {
    let env = TestEnv::new();
    env.src_file("gone.txt", b"gone");
    env.src_file("linked.txt", b"same bytes");
    env.src_file("short.txt", b"12345");
    env.src_file("flipped.txt", b"abcdef");
    env.src_file("ok.txt", b"fine");
    env.src_file("ctl\x1bname", b"x");
    seeded(&env, "adopted.bin", b"0123456789");
    seeded(&env, "changed.bin", b"abc");
    flip_byte(&env.dst.join("adopted.bin"), 3);
    env.run(&["-q"]).assert_code(0);
    std::fs::write(env.src.join("changed.bin"), b"abd").unwrap();
    std::fs::remove_file(env.dst.join("gone.txt")).unwrap();
    std::fs::remove_file(env.dst.join("linked.txt")).unwrap();
    std::os::unix::fs::symlink("ok.txt", env.dst.join("linked.txt")).unwrap();
    std::fs::write(env.dst.join("short.txt"), b"1234").unwrap();
    flip_byte(&env.dst.join("flipped.txt"), 0);
    std::fs::remove_file(env.dst.join("ctl\x1bname")).unwrap();
    let out = verify(&env, &["-q", "--transfers", "1"]);
    out.assert_code(1);
    insta::with_settings!({ filters => vec![(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]")] }, {
        insta::assert_snapshot!(named(&out).join("\n"));
    });
    // The whole of stdout, timing aside: the names, then the summary that
    // reports the adopted files apart.
    insta::with_settings!({ filters => vec![
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        (r" in \d+(\.\d+)?s \([^)]* mean\)", " in [T] ([RATE] mean)"),
    ]}, {
        insta::assert_snapshot!("console_stdout_with_adopted_files", out.stdout);
    });
}

#[test]
#[ignore = "slow tier (3 s)"]
fn adopted_files_are_read_on_both_sides_under_bwlimit() {
    let env = TestEnv::new();
    for i in 0..3 {
        seeded(&env, &format!("f{i}"), &bytes(100 * 1024 + i as usize, i));
    }
    env.run(&["-q"]).assert_code(0);
    // 300 KiB on each side, 600 KiB at 200 KiB/s: at least ~3 s.
    let t = Instant::now();
    verify(&env, &["-q", "--bwlimit", "200K", "--transfers", "2"]).assert_code(0);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(2700), "600 KiB in {took:?}");
    assert_eq!(unhashed(&env), 0);
}

#[test]
#[ignore = "slow tier (2 s)"]
fn a_killed_verify_of_adopted_files_resumes_without_reading_them_again() {
    let env = TestEnv::new();
    for i in 0..20 {
        seeded(&env, &format!("f{i:02}"), &bytes(32 * 1024 + i as usize, i));
    }
    env.run(&["-q"]).assert_code(0);
    let mut c = env.cmd();
    c.arg("verify")
        .arg(&env.manifest)
        .args(["-q", "--bwlimit", "200K", "--transfers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_for("a committed verify batch", Duration::from_secs(30), || {
        unhashed(&env) <= 17
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let left = unhashed(&env);
    assert!(left > 0, "the verify finished before it was killed");
    let out = verify(&env, &[]);
    out.assert_code(0);
    assert!(out.stderr.contains("resuming verify 1"), "{}", out.stderr);
    let end = env.log_with_status("verify_end");
    assert_eq!(end.len(), 1, "the killed verify wrote no end");
    assert_eq!(end[0]["adopted"], left);
    assert_eq!(end[0]["files"], left);
    assert_eq!(unhashed(&env), 0);
}
