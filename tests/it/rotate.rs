//! Log rotation: logrotate (without `copytruncate`) renames the audit log
//! away while a run writes it. The run reopens its path when told
//! (`jobrun reopen`, SIGUSR1) and when it finds the path replaced (looked
//! at once a second); every line lands whole in exactly one file, also
//! under the shipped logrotate file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::env::{Out, TestEnv, bytes};

const FILES: usize = 240;

fn reopen(env: &TestEnv) -> Out {
    env.cmd()
        .arg("reopen")
        .arg(&env.manifest)
        .output()
        .expect("spawn jobrun reopen")
        .into()
}

/// A file's text; `.gz` ones (logrotate's `compress`) through gzip.
fn read_log(f: &Path) -> String {
    if f.extension().is_some_and(|e| e == "gz") {
        let out = Command::new("gzip").arg("-dc").arg(f).output().unwrap();
        assert!(out.status.success(), "gzip -dc {}", f.display());
        return String::from_utf8(out.stdout).unwrap();
    }
    std::fs::read_to_string(f).unwrap_or_default()
}

/// Across `files`, every line is one JSON object, every one of the `FILES`
/// source files has exactly one `synced` line, the run one `run_start` and
/// one `run_end`. Returns how many files hold lines.
fn assert_every_line_once(files: &[PathBuf]) -> usize {
    let mut holding = 0;
    let mut synced: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for f in files {
        let text = read_log(f);
        if !text.is_empty() {
            holding += 1;
            assert!(text.ends_with('\n'), "{} ends mid-line", f.display());
        }
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not one JSON line ({e}): {l}", f.display()));
            let status = v["status"].as_str().unwrap().to_string();
            if status == "synced" && v["kind"] == "file" {
                *synced
                    .entry(v["source"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            *by_status.entry(status).or_default() += 1;
        }
    }
    assert_eq!(
        synced.len(),
        FILES,
        "every file's line is somewhere: {by_status:?}"
    );
    let doubled: Vec<_> = synced.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "lines written twice: {doubled:?}");
    assert_eq!(by_status.get("run_start"), Some(&1), "{by_status:?}");
    assert_eq!(by_status.get("run_end"), Some(&1), "{by_status:?}");
    holding
}

/// `FILES` files of 8 KiB at 512 KiB/s: about 4 s of lines, one every
/// ~15 ms.
fn slow_job(extra: &str) -> (TestEnv, Child) {
    let env = TestEnv::new();
    for i in 0..FILES {
        env.src_file(
            &format!("d{}/f{i:03}.bin", i % 8),
            &bytes(8 * 1024, i as u64),
        );
    }
    env.manifest(&format!("bwlimit = \"512K\"\ntransfers = 2\n{extra}"));
    let child = env
        .cmd()
        .arg(&env.manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (env, child)
}

#[test]
#[ignore = "slow tier (6 s)"]
fn rotating_the_log_every_100ms_loses_and_doubles_no_line() {
    let (env, mut child) = slow_job("");
    let mut rotated = Vec::new();
    let mut reopens = Vec::new();
    while child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
        // As logrotate with `missingok`: nothing to rotate until the run
        // has made the file again.
        if !env.log_path().exists() {
            continue;
        }
        let to = env.root().join(format!("job.log.{}", rotated.len() + 1));
        std::fs::rename(env.log_path(), &to).unwrap();
        rotated.push(to);
        // Two rotations in three are told (logrotate's postrotate); the
        // others rely on the run finding its path replaced.
        if rotated.len() % 3 != 0 {
            reopens.push(reopen(&env).code);
        }
    }
    let out: Out = child.wait_with_output().unwrap().into();
    out.assert_code(0);
    let mut files = rotated.clone();
    files.push(env.log_path());
    let holding = assert_every_line_once(&files);
    // The run followed the rotations rather than writing on into the first
    // rotated file.
    assert!(
        holding >= 4,
        "lines in only {holding} of {} files: the run did not reopen its log",
        files.len()
    );
    assert!(
        reopens.contains(&0),
        "no `reopen` reached the run: {reopens:?}"
    );
    assert!(
        reopens.iter().all(|c| *c == 0 || *c == 3),
        "reopen exits 0 (run going) or 3 (run ended): {reopens:?}"
    );
}

/// The shipped `deploy/logrotate/jobrun`, its paths moved into a temp dir,
/// run by logrotate itself (`-f`) every 300 ms during a run.
#[test]
#[ignore = "needs logrotate (Debian's logrotate); slow tier (6 s)"]
fn the_shipped_logrotate_file_loses_no_line() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("job.log");
    let (env, mut child) = slow_job(&format!("log = \"{}\"", log.display()));
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/logrotate/jobrun"
    ))
    .unwrap();
    let conf = shipped
        .replace("/var/log/jobrun", &logs.path().display().to_string())
        .replace("/etc/jobrun", &env.root().display().to_string())
        .replace("/usr/bin/jobrun", crate::env::BIN)
        // Owned by whoever runs the test.
        .replace("create 0640 root adm", "create 0640");
    assert_ne!(conf, shipped, "the paths to move are in the file");
    let conf_path = env.root().join("logrotate.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let state = env.root().join("logrotate.state");
    let mut rotations = 0;
    while child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(300));
        let out = Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(&state)
            .arg(&conf_path)
            .output()
            .unwrap_or_else(|e| panic!("logrotate not found ({e}); apt-get install logrotate"));
        assert!(
            out.status.success(),
            "logrotate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        rotations += 1;
    }
    let out: Out = child.wait_with_output().unwrap().into();
    out.assert_code(0);
    let files: Vec<PathBuf> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let holding = assert_every_line_once(&files);
    assert!(
        holding >= 3,
        "lines in only {holding} files after {rotations} rotations: {files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "gz")),
        "older rotations are compressed: {files:?}"
    );
}

/// `reopen --json`: whom it signalled and which log, or `{exit, error}`.
#[test]
fn reopen_json_says_whom_it_signalled_or_why_not() {
    let (env, mut child) = slow_job("");
    let lock = env.root().join("job.db.lock");
    crate::support::wait_for("the run's lock", Duration::from_secs(20), || {
        std::fs::read_to_string(&lock).is_ok_and(|s| s.trim() == child.id().to_string())
    });
    let json = |env: &TestEnv| -> (Out, serde_json::Value) {
        let out: Out = env
            .cmd()
            .args(["reopen", "--json"])
            .arg(&env.manifest)
            .output()
            .unwrap()
            .into();
        let v = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
        (out, v)
    };
    let (out, v) = json(&env);
    out.assert_code(0);
    assert_eq!(v["pid"].as_u64(), Some(u64::from(child.id())), "{v}");
    assert_eq!(v["log"].as_str(), env.log_path().to_str(), "{v}");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let (out, v) = json(&env);
    out.assert_code(3);
    assert_eq!(v["exit"], 3, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no run of this job is going"),
        "{v}"
    );
}

#[test]
fn reopen_without_a_run_is_exit_3_and_with_a_bad_manifest_exit_2() {
    let env = TestEnv::new();
    let out = reopen(&env);
    out.assert_code(3);
    assert!(
        out.stderr.contains("no run of this job is going"),
        "{}",
        out.stderr
    );
    env.manifest("transfers = \"many\"");
    reopen(&env).assert_code(2);
}
