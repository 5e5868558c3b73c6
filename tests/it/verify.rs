//! `jobrun verify` and `jobrun hashes` (issue 15 items 2 and 3): the real
//! binary on temp trees; bytes, DB rows and audit lines checked.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::{Out, TestEnv, bytes, coreutils_hash};
use crate::support::{Running, wait_for};

fn verify(env: &TestEnv, args: &[&str]) -> Out {
    let mut c = env.cmd();
    c.arg("verify").arg(&env.manifest).args(args);
    c.output().expect("spawn jobrun").into()
}

fn hashes(env: &TestEnv, args: &[&str]) -> Vec<u8> {
    let mut c = env.cmd();
    c.arg("hashes").arg(&env.manifest).args(args);
    let out = c.output().expect("spawn jobrun");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Changes one byte of `p`, keeping its size and mtime (what a scan's
/// size + mtime rule cannot see).
fn flip_byte(p: &Path, at: usize) {
    let md = std::fs::metadata(p).unwrap();
    let mut data = std::fs::read(p).unwrap();
    data[at] ^= 0x01;
    std::fs::write(p, &data).unwrap();
    TestEnv::set_mtime(p, md.mtime(), md.mtime_nsec() as u32);
}

fn verify_result(env: &TestEnv, rel: &str) -> (String, Option<String>) {
    let path = env.src.join(rel);
    env.db()
        .query_row(
            "SELECT status, verify_result FROM files WHERE source_path = ?1",
            [path.to_str().unwrap()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[test]
fn a_flipped_byte_is_found_and_repair_plus_a_run_fixes_it() {
    let env = TestEnv::new();
    env.src_file("a.bin", &bytes(100_000, 1));
    env.src_file("sub/b.bin", &bytes(5_000, 2));
    env.run(&["-q"]).assert_code(0);
    let bad = env.dst.join("sub/b.bin");
    flip_byte(&bad, 1234);
    // A rescan does not see it: size and mtime are the source's.
    env.run(&["-q", "--rescan"]).assert_code(0);
    assert_eq!(env.log_with_status("synced").len(), 2);

    let out = verify(&env, &["-q"]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("1 verified, 1 mismatch, 0 missing"),
        "{}",
        out.stdout
    );
    let m = env.log_with_status("mismatch");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["dest"], bad.to_str().unwrap());
    assert_eq!(m[0]["algorithm"], "sha256");
    assert_eq!(
        m[0]["expected"],
        coreutils_hash("sha256sum", &env.src.join("sub/b.bin"))
    );
    assert_eq!(m[0]["found"], coreutils_hash("sha256sum", &bad));
    assert_eq!(env.log_with_status("verified").len(), 1);
    // Reported only: the row stays synced without --repair.
    assert_eq!(
        verify_result(&env, "sub/b.bin"),
        ("synced".into(), Some("mismatch".into()))
    );
    env.run(&["-q"]).assert_code(0);
    assert_ne!(
        std::fs::read(&bad).unwrap(),
        std::fs::read(env.src.join("sub/b.bin")).unwrap()
    );

    verify(&env, &["-q", "--repair"]).assert_code(1);
    assert_eq!(verify_result(&env, "sub/b.bin").0, "pending");
    assert_eq!(
        env.log_with_status("mismatch").last().unwrap()["repaired"],
        true
    );
    env.run(&["-q"]).assert_code(0);
    env.assert_trees_equal();
    let out = verify(&env, &["-q"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("2 verified, 0 mismatch"),
        "{}",
        out.stdout
    );
}

#[test]
fn missing_files_and_symlinks_in_their_place_are_missing_and_never_followed() {
    let env = TestEnv::new();
    env.src_file("gone.txt", b"gone");
    env.src_file("linked.txt", b"same bytes");
    env.src_file("wrong-size.txt", b"12345");
    env.run(&["-q"]).assert_code(0);
    std::fs::remove_file(env.dst.join("gone.txt")).unwrap();
    // A symlink to a file with the right bytes: following it would say "ok".
    let elsewhere = env.root().join("elsewhere.txt");
    std::fs::write(&elsewhere, b"same bytes").unwrap();
    std::fs::remove_file(env.dst.join("linked.txt")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, env.dst.join("linked.txt")).unwrap();
    std::fs::write(env.dst.join("wrong-size.txt"), b"1234").unwrap();

    let out = verify(&env, &["-q"]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("0 verified, 1 mismatch, 2 missing"),
        "{}",
        out.stdout
    );
    let missing = env.log_with_status("missing");
    let reason = |name: &str| {
        missing
            .iter()
            .find(|l| l["dest"].as_str().unwrap().ends_with(name))
            .map(|l| l["reason"].clone())
    };
    assert_eq!(reason("gone.txt"), Some(serde_json::Value::Null));
    assert_eq!(
        reason("linked.txt").unwrap(),
        "a symlink is in its place; not followed"
    );
    let m = &env.log_with_status("mismatch")[0];
    assert_eq!(m["size"], 5);
    assert_eq!(m["found_size"], 4);
    // --repair and a run bring both back.
    verify(&env, &["-q", "--repair"]).assert_code(1);
    env.run(&["-q"]).assert_code(0);
    assert!(
        std::fs::symlink_metadata(env.dst.join("linked.txt"))
            .unwrap()
            .is_file()
    );
    verify(&env, &["-q"]).assert_code(0);
}

/// A destination folder swapped for a symlink to a copy elsewhere: the
/// files below it are not read through the link (following it would find
/// the right bytes and say "verified").
#[test]
fn a_folder_swapped_for_a_symlink_is_never_followed() {
    let env = TestEnv::new();
    env.src_file("sub/a.txt", b"alpha");
    env.run(&["-q"]).assert_code(0);
    let elsewhere = env.root().join("elsewhere");
    std::fs::rename(env.dst.join("sub"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, env.dst.join("sub")).unwrap();
    let out = verify(&env, &["-q"]);
    out.assert_code(1);
    assert!(out.stdout.contains("0 verified"), "{}", out.stdout);
    let missing = env.log_with_status("missing");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("symlink") && r.contains("not followed")),
        "{missing:?}"
    );
}

fn verified_count(env: &TestEnv) -> i64 {
    env.db()
        .query_row(
            "SELECT count(*) FROM files WHERE verify_result = 'ok'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
}

/// A verify slowed down by `bwlimit`, in the background.
fn slow_verify(env: &TestEnv) -> std::process::Child {
    let mut c = env.cmd();
    c.arg("verify")
        .arg(&env.manifest)
        .args(["-q", "--bwlimit", "200K", "--transfers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().unwrap()
}

#[test]
#[ignore = "slow tier (6 s)"]
fn a_killed_verify_resumes_where_it_stopped() {
    let env = TestEnv::new();
    for i in 0..20 {
        env.src_file(&format!("f{i:02}"), &bytes(64 * 1024, i));
    }
    env.run(&["-q"]).assert_code(0);
    let mut child = slow_verify(&env);
    // 20 × 64 KiB at 200 KiB/s: about 6 s; kill once a batch is committed.
    wait_for("a committed verify batch", Duration::from_secs(30), || {
        verified_count(&env) >= 3
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = verified_count(&env);
    assert!(before < 20, "the verify finished before it was killed");

    let out = verify(&env, &[]);
    out.assert_code(0);
    assert!(out.stderr.contains("resuming verify 1"), "{}", out.stderr);
    let end = env.log_with_status("verify_end");
    assert_eq!(end.len(), 1, "the killed verify wrote no end");
    assert_eq!(end[0]["files"], 20 - before);
    assert_eq!(end[0]["skipped"], before);
    assert_eq!(verified_count(&env), 20);
    // Stopped by SIGTERM twice, then resumed: still each file read once.
    let out = verify(&env, &["-q"]);
    assert!(out.stdout.contains("20 verified"), "{}", out.stdout);
    let last_verify = |env: &TestEnv| {
        env.db()
            .query_row(
                "SELECT id, files FROM verifies ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .unwrap()
    };
    for _ in 0..2 {
        let before = last_verify(&env).0;
        let child = slow_verify(&env);
        wait_for("a committed verify batch", Duration::from_secs(30), || {
            let (id, files) = last_verify(&env);
            id > before && files >= 3
        });
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130));
    }
    let end = env.log_with_status("verify_end");
    assert_eq!(end.last().unwrap()["exit"], 130);
    let out = verify(&env, &["-q"]);
    out.assert_code(0);
    let read: u64 = env
        .log_with_status("verify_end")
        .iter()
        .skip(2)
        .map(|e| e["files"].as_u64().unwrap())
        .sum();
    assert_eq!(
        read, 20,
        "the three verifies after the full one read each file once"
    );
    // The next verify starts afresh: everything is read again.
    let out = verify(&env, &["-q"]);
    assert!(out.stdout.contains("20 verified"), "{}", out.stdout);
}

#[test]
#[ignore = "slow tier (2 s)"]
fn a_verify_and_a_run_exclude_each_other() {
    let env = TestEnv::new();
    for i in 0..10 {
        env.src_file(&format!("f{i}"), &bytes(64 * 1024, i));
    }
    env.run(&["-q"]).assert_code(0);
    let mut child = slow_verify(&env);
    wait_for("the verify's lock", Duration::from_secs(30), || {
        verified_count(&env) >= 1
    });
    let out = env.run(&["-q"]);
    out.assert_code(3);
    assert!(out.stderr.contains("locked"), "{}", out.stderr);
    child.kill().unwrap();
    child.wait().unwrap();

    // And a run holds the lock against a verify.
    env.src_file("big", &bytes(1 << 20, 99));
    let mut run = env.cmd();
    run.arg("-q")
        .args(["--bwlimit", "100K"])
        .arg(&env.manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut run = run.spawn().unwrap();
    wait_for("the run's lock", Duration::from_secs(30), || {
        std::fs::read_to_string(env.root().join("job.db.lock"))
            .is_ok_and(|pid| pid.trim() == run.id().to_string())
    });
    let out = verify(&env, &["-q"]);
    out.assert_code(3);
    run.kill().unwrap();
    run.wait().unwrap();
}

fn verified_dests(env: &TestEnv, verify_id: i64) -> Vec<String> {
    let mut v: Vec<String> = env
        .log()
        .into_iter()
        .filter(|l| l["status"] == "verified" && l["verify"] == verify_id)
        .map(|l| l["dest"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_sample_prints_its_seed_and_repeats_with_it() {
    let env = TestEnv::new();
    for i in 0..60 {
        env.src_file(&format!("f{i:02}"), &bytes(10, i));
    }
    env.run(&["-q"]).assert_code(0);
    let out = verify(&env, &["--sample", "25"]);
    out.assert_code(0);
    let seed = out
        .stderr
        .split("seed ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed in {}", out.stderr))
        .to_owned();
    let first = verified_dests(&env, 1);
    assert!(!first.is_empty() && first.len() < 60, "{}", first.len());
    assert!(
        out.stdout
            .contains(&format!("{} skipped", 60 - first.len())),
        "{}",
        out.stdout
    );
    verify(&env, &["-q", "--sample", "25", "--seed", &seed]).assert_code(0);
    assert_eq!(verified_dests(&env, 2), first);
    let start = &env.log_with_status("verify_start")[1];
    assert_eq!(start["seed"].to_string(), seed);
}

#[test]
fn since_re_verifies_only_files_not_found_intact_since() {
    let env = TestEnv::new();
    env.src_file("a", b"a");
    env.src_file("b", b"b");
    env.run(&["-q"]).assert_code(0);
    verify(&env, &["-q"]).assert_code(0);
    let out = verify(&env, &["-q", "--since", "1h"]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("0 files,") && out.stdout.contains("2 skipped"),
        "{}",
        out.stdout
    );
    // A file copied again since (same bytes, so the same hash) has not
    // been verified since its copy.
    let b = env.src.join("b");
    TestEnv::set_mtime(&b, 1_600_000_000, 0);
    env.run(&["-q"]).assert_code(0);
    let out = verify(&env, &["-q", "--since", "1h"]);
    assert!(
        out.stdout.contains("1 file,") && out.stdout.contains("1 skipped"),
        "{}",
        out.stdout
    );
    // A file found bad is always re-verified, however recently.
    flip_byte(&env.dst.join("a"), 0);
    verify(&env, &["-q"]).assert_code(1);
    let out = verify(&env, &["-q", "--since", "1h"]);
    out.assert_code(1);
    assert!(
        out.stdout.contains("1 file,") && out.stdout.contains("1 mismatch"),
        "{}",
        out.stdout
    );
}

#[test]
fn status_shows_the_last_verify() {
    let env = TestEnv::new();
    env.src_file("a", b"a");
    env.run(&["-q"]).assert_code(0);
    let status = |env: &TestEnv| {
        let mut c = env.cmd();
        c.arg("status").arg(&env.manifest);
        Out::from(c.output().unwrap()).stdout
    };
    assert!(!status(&env).contains("last verify"));
    std::fs::remove_file(env.dst.join("a")).unwrap();
    verify(&env, &["-q"]).assert_code(1);
    let s = status(&env);
    assert!(
        s.contains("last verify 1 started ")
            && s.contains("1 file, 0 B read: 0 verified, 0 mismatch, 1 missing")
            && s.contains("exit 1 (mismatched, missing or unreadable files)"),
        "{s}"
    );
    let mut c = env.cmd();
    c.args(["status", "--json"]).arg(&env.manifest);
    let json: serde_json::Value = serde_json::from_slice(&c.output().unwrap().stdout).unwrap();
    assert_eq!(json["last_verify"]["missing"], 1);
}

#[test]
fn verify_without_a_db_or_with_the_destination_gone() {
    let env = TestEnv::new();
    env.src_file("a", b"a");
    let out = verify(&env, &[]);
    out.assert_code(2);
    assert!(out.stderr.contains("never run"), "{}", out.stderr);
    env.run(&["-q"]).assert_code(0);
    std::fs::rename(&env.dst, env.root().join("moved")).unwrap();
    let out = verify(&env, &["-q"]);
    out.assert_code(4);
    assert!(out.stderr.contains("nothing verified"), "{}", out.stderr);
    assert!(env.log_with_status("missing").is_empty());
}

/// Names a checksum file must escape or quote correctly.
const ODD_NAMES: [&str; 4] = [
    "with space.txt",
    "new\nline.txt",
    "back\\slash.txt",
    "sub/plain",
];

fn odd_tree(checksum: &str) -> TestEnv {
    let env = TestEnv::new();
    env.manifest(&format!("checksum = \"{checksum}\""));
    for (i, n) in ODD_NAMES.iter().enumerate() {
        env.src_file(n, &bytes(1000 + i, i as u64));
    }
    env.run(&["-q"]).assert_code(0);
    env
}

/// `tool -c` run in `dir` on `list`: its exit status and output.
fn check_with(tool: &str, dir: &Path, list: &[u8]) -> (bool, String) {
    let list_path = dir.parent().unwrap().join("list.sums");
    std::fs::write(&list_path, list).unwrap();
    let out = Command::new(tool)
        .arg("-c")
        .arg(&list_path)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn hashes_pass_sha256sum_c_in_the_destination_root() {
    let env = odd_tree("sha256");
    let list = hashes(&env, &[]);
    let (ok, text) = check_with("sha256sum", &env.dst, &list);
    assert!(ok, "{text}\n{}", String::from_utf8_lossy(&list));
    assert_eq!(text.matches(": OK").count(), 4, "{text}");
    // The BSD tag form too, and a flipped byte is caught by the tool.
    let (ok, text) = check_with("sha256sum", &env.dst, &hashes(&env, &["--format", "bsd"]));
    assert!(ok, "{text}");
    flip_byte(&env.dst.join("new\nline.txt"), 3);
    let (ok, text) = check_with("sha256sum", &env.dst, &list);
    assert!(!ok && text.contains("FAILED"), "{text}");
}

#[test]
fn hashes_pass_b2sum_c_with_blake2b_and_md5sum_relative_to_the_source() {
    let env = odd_tree("blake2b");
    let (ok, text) = check_with("b2sum", &env.dst, &hashes(&env, &[]));
    assert!(ok, "{text}");
    let (ok, text) = check_with("b2sum", &env.dst, &hashes(&env, &["--format", "bsd"]));
    assert!(ok, "{text}");
    let env = odd_tree("md5");
    let list = hashes(&env, &["--relative-to", "source"]);
    let (ok, text) = check_with("md5sum", &env.src, &list);
    assert!(ok, "{text}");
}

#[test]
fn hashes_json_lines_and_one_algorithm_per_coreutils_list() {
    let env = odd_tree("sha1");
    let text = String::from_utf8(hashes(&env, &["--format", "json"])).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().any(|l| l["path"] == "new\nline.txt"));
    let sp = lines
        .iter()
        .find(|l| l["path"] == "with space.txt")
        .unwrap();
    assert_eq!(sp["algorithm"], "sha1");
    assert_eq!(
        sp["hash"],
        coreutils_hash("sha1sum", &env.src.join("with space.txt"))
    );
    assert_eq!(sp["dest"], env.dst.join("with space.txt").to_str().unwrap());
    // A job whose checksum changed between runs holds two algorithms.
    env.manifest("checksum = \"sha256\"");
    env.src_file("later.txt", b"later");
    env.run(&["-q"]).assert_code(0);
    let mut c = env.cmd();
    c.arg("hashes").arg(&env.manifest);
    let out = Out::from(c.output().unwrap());
    out.assert_code(2);
    assert!(out.stderr.contains("--format bsd"), "{}", out.stderr);
    let bsd = String::from_utf8(hashes(&env, &["--format", "bsd"])).unwrap();
    assert!(
        bsd.contains("SHA1 (") && bsd.contains("SHA256 (later.txt) = "),
        "{bsd}"
    );
}

#[test]
fn verify_and_hashes_never_need_the_source() {
    let env = TestEnv::new();
    env.src_file("a", b"a");
    env.run(&["-q"]).assert_code(0);
    // The old share is gone after the migration.
    std::fs::rename(&env.src, env.root().join("decommissioned")).unwrap();
    let out = verify(&env, &["-q"]);
    out.assert_code(0);
    assert!(out.stdout.contains("1 verified"), "{}", out.stdout);
    let (ok, text) = check_with("sha256sum", &env.dst, &hashes(&env, &[]));
    assert!(ok, "{text}");
}

#[test]
#[ignore = "slow tier (4 s)"]
fn a_destination_root_replaced_mid_verify_stops_it_without_missing_lines() {
    let env = TestEnv::new();
    for i in 0..20 {
        env.src_file(&format!("f{i:02}"), &bytes(64 * 1024, i));
    }
    env.run(&["-q"]).assert_code(0);
    let child = slow_verify(&env);
    wait_for("a committed verify batch", Duration::from_secs(30), || {
        verified_count(&env) >= 1
    });
    // The share unmounted: an empty folder is left in its place.
    std::fs::rename(&env.dst, env.root().join("dst.old")).unwrap();
    std::fs::create_dir(&env.dst).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(env.log_with_status("missing").is_empty());
    let end = &env.log_with_status("verify_end")[0];
    assert_eq!(end["exit"], 4);
    assert!(
        end["error"]
            .as_str()
            .unwrap()
            .contains("changed during the verify"),
        "{end}"
    );
}

#[test]
#[ignore = "slow tier (4 s)"]
fn verify_reads_under_the_jobs_bwlimit_across_its_lanes() {
    let env = TestEnv::new();
    for i in 0..6 {
        env.src_file(&format!("f{i}"), &bytes(100 * 1024, i));
    }
    env.run(&["-q"]).assert_code(0);
    // 600 KiB at 200 KiB/s shared by 4 lanes: at least ~3 s, whatever the
    // lanes (the bucket holds 20 ms; catching up runs at most 5 % faster).
    let t = Instant::now();
    verify(&env, &["-q", "--bwlimit", "200K", "--transfers", "4"]).assert_code(0);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(2700), "600 KiB in {took:?}");
}

/// A verify under a pause, in the background, past its start line (its
/// lanes are then waiting in the pause).
fn paused_verify(env: &TestEnv, bwlimit: &str) -> Running {
    let before = env.log_with_status("verify_start").len();
    let child = Running::start(env, &["verify", "-q", "--bwlimit", bwlimit]);
    wait_for("the verify's start line", Duration::from_secs(30), || {
        env.log_with_status("verify_start").len() > before
    });
    std::thread::sleep(Duration::from_millis(300));
    child
}

/// Attack finding (issue 24): a stop during a pause (`pause`, or a
/// timetable's pause window) ends the verify at once, exit 130, with its
/// record intact; it used to wait for the pause to end.
#[test]
#[ignore = "slow tier (4 s)"]
fn a_stop_during_a_pause_ends_the_verify_at_once() {
    for bwlimit in ["pause", "00:00,pause"] {
        let env = TestEnv::new();
        env.src_file("a.bin", &bytes(200_000, 1));
        env.src_file("b.bin", &bytes(1000, 2));
        env.run(&["-q"]).assert_code(0);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            let child = paused_verify(&env, bwlimit);
            child.signal(sig);
            // Fails (and SIGKILLs it) if the pause still holds it.
            child.wait(Duration::from_secs(10)).assert_code(130);
            let end = env.log_with_status("verify_end");
            let end = end.last().unwrap();
            assert_eq!(end["exit"], 130, "{end}");
            assert_eq!(end["files"], 0, "{end}");
            let (exit, files): (i64, i64) = env
                .db()
                .query_row(
                    "SELECT exit_code, files FROM verifies ORDER BY id DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!((exit, files), (130, 0));
        }
        // Nothing was recorded as checked; the next verify reads both.
        let out = verify(&env, &["-q"]);
        out.assert_code(0);
        assert!(out.stdout.contains("2 verified"), "{}", out.stdout);
    }
}
