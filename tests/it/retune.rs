//! Retuning a running job: SIGHUP (or `jobrun reload`) re-reads only
//! `bwlimit`; a bad edit keeps the limit in force and says why; the new
//! limit changes the measured rate; other changed keys wait for the next
//! run; `reload` without a running job is exit 3.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::env::{Out, TestEnv, bytes};
use crate::support::wait_for;

const MIB: usize = 1 << 20;

/// Bytes of all regular files under `root` (temporaries included).
fn dir_bytes(root: &Path) -> u64 {
    walk(root)
        .iter()
        .map(|p| p.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn reload(env: &TestEnv) -> Out {
    let mut c = env.cmd();
    c.arg("reload").arg(&env.manifest);
    c.output().expect("spawn jobrun reload").into()
}

fn finish(child: Child) -> Out {
    child.wait_with_output().expect("wait for jobrun").into()
}

#[test]
#[ignore = "slow tier (8 s)"]
fn sighup_retunes_the_limit_of_a_running_job() {
    let env = TestEnv::new();
    env.src_file("big.bin", &bytes(24 * MIB, 7));
    env.manifest("bwlimit = \"256K\"");
    let child = env
        .cmd()
        .arg(&env.manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    wait_for("the copy to start", Duration::from_secs(30), || {
        dir_bytes(&env.dst) > 0
    });

    // A bad edit: `reload` refuses it before signalling (exit 2) …
    env.manifest("bwlimit = \"fast\"");
    let out = reload(&env);
    out.assert_code(2);
    assert!(
        out.stderr.contains("`bwlimit`: invalid rate `fast`"),
        "{}",
        out.stderr
    );
    // … and a SIGHUP sent by hand keeps the limit in force and says why.
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    wait_for("the refused reload line", Duration::from_secs(5), || {
        !env.log_with_status("reload").is_empty()
    });
    let line = &env.log_with_status("reload")[0];
    assert_eq!(line["applied"], false, "{line}");
    assert_eq!(line["bwlimit"], "262144 B/s", "{line}");
    assert!(line["run"].as_i64().is_some(), "{line}");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("invalid rate `fast`"),
        "{line}"
    );
    // Still limited: 2 s carry at most ~256 KiB/s (generous: 3x).
    let (b0, t0) = (dir_bytes(&env.dst), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let slow = (dir_bytes(&env.dst) - b0) as f64 / t0.elapsed().as_secs_f64();
    assert!(
        slow < 3.0 * 256.0 * 1024.0,
        "the bad edit changed the rate: {slow} B/s"
    );

    // A good edit: the limit goes, the checksum waits for the next run.
    env.manifest("bwlimit = \"off\"\nchecksum = \"md5\"");
    let out = reload(&env);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains(&format!("sent SIGHUP to the run (pid {pid})")),
        "{}",
        out.stdout
    );
    let (b1, t1) = (dir_bytes(&env.dst), Instant::now());
    let out = finish(child);
    out.assert_code(0);
    let fast = (24 * MIB) as f64 - b1 as f64;
    let took = t1.elapsed();
    // Unlimited, the rest (> 20 MiB) takes far less than at 256 KiB/s (80 s).
    assert!(
        took < Duration::from_secs(30),
        "the reload did not lift the limit: {took:?}"
    );
    assert!(fast / took.as_secs_f64() > 4.0 * 256.0 * 1024.0);
    env.assert_trees_equal();
    assert!(
        out.stderr.contains(
            "reload: bwlimit 256.0 KiB/s -> off (now off); changed, applies at the next run: checksum"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("reload: manifest not applied, bwlimit stays 256.0 KiB/s"),
        "{}",
        out.stderr
    );
    let lines = env.log_with_status("reload");
    let line = &lines[1];
    assert_eq!(line["applied"], true, "{line}");
    assert_eq!(
        (line["previous"].as_str(), line["bwlimit"].as_str()),
        (Some("262144 B/s"), Some("off"))
    );
    assert_eq!(line["later"], serde_json::json!(["checksum"]));
    let synced = &env.log_with_status("synced")[0];
    assert_eq!(
        synced["algorithm"], "sha256",
        "checksum applies at the next run"
    );

    // No run going: exit 3.
    let out = reload(&env);
    out.assert_code(3);
    assert!(
        out.stderr.contains("no run of this job is going"),
        "{}",
        out.stderr
    );
}

#[test]
#[ignore = "slow tier (2 s)"]
fn a_stop_during_a_pause_is_honoured_at_once() {
    let env = TestEnv::new();
    env.src_file("a.bin", &bytes(MIB, 3));
    env.manifest("bwlimit = \"pause\"");
    let child = env
        .cmd()
        .arg(&env.manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The run started (a scan of one file takes far less than the wait).
    wait_for("the run to start", Duration::from_secs(30), || {
        !env.log_with_status("run_start").is_empty()
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(dir_bytes(&env.dst), 0, "no file bytes move while paused");
    let t = Instant::now();
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("a paused run did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = finish(child);
    out.assert_code(130);
    assert_eq!(env.rows().values().next().unwrap().0, "pending");
}
