//! The audit log and the run record (issue 12 §4, §6, §7): lines survive a
//! SIGKILL whole, every exit path tells one story (summary line, `run_end`,
//! the `runs` row, the DB, `status`), and the log says what an auditor needs.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::env::{Out, TestEnv, bytes};
use crate::support::require_root;
use crate::support::{
    Mount, Rng, Running, mkfifo, populate_kill_tree, slow_env, wait_for, wait_for_transfer,
};

/// Every line of the log, each parsed as one JSON object (panics naming
/// the first line that is not).
fn strict_log(env: &TestEnv) -> Vec<Value> {
    let (log, torn) = log_with_ended_torn_lines(env);
    assert_eq!(torn, 0, "torn lines in the log");
    log
}

/// The log's JSON lines, where a line that is not JSON is allowed only as
/// the documented trace of a killed writer: a torn line, ended by the next
/// run, whose `run_start` (the very next line) says `torn_line_ended`. A
/// SIGKILL can cut a `write(2)` between two pages of the file. Returns the
/// objects and how many torn lines there were.
fn log_with_ended_torn_lines(env: &TestEnv) -> (Vec<Value>, usize) {
    let text = std::fs::read_to_string(env.log_path()).unwrap();
    assert!(text.ends_with('\n'), "log ends mid-line");
    let lines: Vec<&str> = text.lines().collect();
    let (mut objects, mut torn) = (Vec::new(), 0);
    for (i, l) in lines.iter().enumerate() {
        match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => objects.push(v),
            _ => {
                let next: Value = lines
                    .get(i + 1)
                    .and_then(|n| serde_json::from_str(n).ok())
                    .unwrap_or_else(|| panic!("line {} is not JSON: {l:?}", i + 1));
                assert_eq!(next["status"], "run_start", "after torn line {}", i + 1);
                assert_eq!(next["torn_line_ended"], true, "after torn line {}", i + 1);
                torn += 1;
            }
        }
    }
    (objects, torn)
}

/// The last `runs` row: id, files_done, bytes_done, failures, exit_code,
/// dry_run, error.
type RunsRow = (i64, u64, u64, u64, Option<i64>, bool, Option<String>);

fn last_runs_row(env: &TestEnv) -> Option<RunsRow> {
    let db = env.db();
    // A DB without the v2 columns reads as "no dry run, no error".
    let v2 = db
        .prepare("SELECT dry_run, error FROM runs LIMIT 0")
        .is_ok();
    let extra = if v2 { "dry_run, error" } else { "0, NULL" };
    db.query_row(
        &format!(
            "SELECT id, files_done, bytes_done, failures, exit_code, {extra}
                 FROM runs ORDER BY id DESC LIMIT 1"
        ),
        [],
        |r| {
            Ok((
                r.get(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, i64>(3)? as u64,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        },
    )
    .ok()
}

/// `(files, bytes text, failed)` of the summary line on stdout.
fn summary(out: &Out) -> (u64, String, u64) {
    let line = out
        .stdout
        .lines()
        .rfind(|l| l.starts_with("jobrun: "))
        .unwrap_or_else(|| panic!("no summary line: {}", out.stdout));
    let rest = line.strip_prefix("jobrun: ").unwrap();
    let (files, rest) = rest.split_once(' ').unwrap();
    let bytes = rest
        .split_once(", ")
        .unwrap()
        .1
        .split_once(" copied")
        .unwrap()
        .0;
    let failed = line
        .split(", ")
        .find_map(|p| p.strip_suffix(" failed"))
        .unwrap_or_else(|| panic!("no failed count: {line}"));
    (
        files.parse().unwrap(),
        bytes.to_string(),
        failed.parse().unwrap(),
    )
}

/// Entries the DB holds as synced (folders aside, as the counts leave
/// them out) and entries failed.
fn db_counts(env: &TestEnv) -> (u64, u64, u64) {
    env.db()
        .query_row(
            "SELECT count(*) FILTER (WHERE status = 'synced' AND kind != 'dir'),
                    coalesce(sum(size) FILTER (WHERE status = 'synced' AND kind = 'file'), 0),
                    count(*) FILTER (WHERE status = 'failed')
             FROM files",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            },
        )
        .unwrap()
}

/// The summary line, `run_end`, the `runs` row, `status` and (for the
/// first run of a job: everything in the DB is its doing) the DB say the
/// same; returns the `run_end` line.
#[track_caller]
fn assert_one_truth(env: &TestEnv, out: &Out, first_run: bool) -> Value {
    let log = strict_log(env);
    let end = log
        .iter()
        .rfind(|v| v["status"] == "run_end")
        .unwrap_or_else(|| panic!("no run_end; stdout {} stderr {}", out.stdout, out.stderr))
        .clone();
    let (id, files, bytes, failures, exit, _, _) = last_runs_row(env).expect("a runs row");
    assert_eq!(exit, Some(i64::from(out.code)), "runs.exit_code");
    assert_eq!(end["exit"], out.code, "run_end exit");
    assert_eq!(end["files"], files, "run_end files vs runs row");
    assert_eq!(end["bytes"], bytes, "run_end bytes vs runs row");
    assert_eq!(end["failed"], failures, "run_end failed vs runs row");
    let (s_files, s_bytes, s_failed) = summary(out);
    assert_eq!(s_files, files, "summary files: {}", out.stdout);
    assert_eq!(
        s_bytes,
        jobrun::units::human_bytes(bytes),
        "summary bytes: {}",
        out.stdout
    );
    assert_eq!(s_failed, failures, "summary failed: {}", out.stdout);
    let mode = end["mode"].as_str().unwrap();
    assert!(
        out.stdout
            .contains(&format!(", mode {mode}, exit {}", out.code)),
        "summary names the mode: {}",
        out.stdout
    );
    assert_eq!(end["run"], id, "run_end names its runs row");
    assert!(
        log.iter()
            .any(|v| v["status"] == "run_start" && v["run"] == id),
        "run_start of run {id}"
    );
    if first_run {
        assert_eq!(
            db_counts(env),
            (files, bytes, failures),
            "DB synced entries, bytes and failed rows"
        );
    }
    let status = env
        .cmd()
        .arg("status")
        .arg(&env.manifest)
        .arg("--json")
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).expect("status --json");
    let run = &status["runs"][0];
    assert_eq!(run["id"], id);
    assert_eq!(run["files_done"], files, "status files");
    assert_eq!(run["bytes_done"], bytes, "status bytes");
    assert_eq!(run["failures"], failures, "status failures");
    end
}

// ---- §4: the log after SIGKILL -----------------------------------------

#[test]
fn a_torn_last_line_is_ended_before_run_start_and_reported_once() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"a");
    let torn = r#"{"ts":"2026-11-30T01:00:00.000000Z","status":"synced","source":"/s/x","de"#;
    std::fs::write(
        env.log_path(),
        format!("{{\"status\":\"run_start\"}}\n{torn}"),
    )
    .unwrap();
    let out = env.run(&[]);
    out.assert_code(0);
    assert_eq!(
        out.stderr.matches("last line was torn").count(),
        1,
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(env.log_path()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], torn, "the torn line is kept, alone on its line");
    let after: Vec<Value> = lines[2..]
        .iter()
        .map(|l| serde_json::from_str(l).expect("every later line is JSON"))
        .collect();
    assert_eq!(after[0]["status"], "run_start");
    assert_eq!(after[0]["torn_line_ended"], true);
    assert_eq!(after.last().unwrap()["status"], "run_end");
    // Reported once: the next run finds a whole last line.
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(!out.stderr.contains("torn"), "{}", out.stderr);
    let last_start = std::fs::read_to_string(env.log_path())
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|v| v["status"] == "run_start")
        .unwrap();
    assert!(last_start.get("torn_line_ended").is_none());
}

#[test]
#[ignore = "slow tier (19 s)"]
fn sigkill_at_many_instants_leaves_whole_lines_or_one_ended_torn_line() {
    let env = TestEnv::new();
    populate_kill_tree(&env, 3_000, 0);
    env.run(&["-q"]).assert_code(0);
    let mut rng = Rng::new(12);
    let rounds = 20;
    for _ in 0..rounds {
        // Everything pending again: the run resumes at once and logs a
        // line per file until it is killed.
        env.db()
            .execute("UPDATE files SET status = 'pending'", [])
            .unwrap();
        let before = std::fs::metadata(env.log_path()).unwrap().len();
        let mut run = Running::start(&env, &["-q"]);
        let t0 = std::time::Instant::now();
        while std::fs::metadata(env.log_path()).unwrap().len() < before + 4_000
            && run.child.try_wait().unwrap().is_none()
            && t0.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.below(60)));
        run.kill();
    }
    env.run(&["-q"]).assert_code(0);
    let (log, torn) = log_with_ended_torn_lines(&env);
    assert!(torn <= rounds, "at most one torn line per kill: {torn}");
    let starts = log.iter().filter(|v| v["status"] == "run_start").count();
    assert_eq!(starts, rounds + 2, "one run_start per run");
    assert!(log.iter().any(|v| v["status"] == "synced"));
}

// ---- §6: one truth about a run ------------------------------------------

#[test]
fn exit_0_and_1_tell_one_story() {
    let env = TestEnv::new();
    env.src_file("one.txt", b"1");
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("jobrun: 1 file, 1 B copied"),
        "{}",
        out.stdout
    );
    assert_one_truth(&env, &out, true);

    let env = TestEnv::new();
    env.src_file("a.txt", b"a");
    env.src_file("blocked.txt", b"a folder sits here in dst");
    env.src_file("b/c.txt", b"cc");
    std::fs::create_dir_all(env.dst.join("blocked.txt/keep")).unwrap();
    let out = env.run(&[]);
    out.assert_code(1);
    let end = assert_one_truth(&env, &out, true);
    assert_eq!(end["failed"], 1);
    assert_eq!(end["reason"], "some files failed");
}

#[test]
#[ignore = "slow tier (3 s)"]
fn an_aborted_run_tells_one_story() {
    // The source root goes away mid-transfer: exit 4 after some files.
    let env = slow_env(12, 300_000);
    let run = Running::start(&env, &[]);
    wait_for("a first synced file", Duration::from_secs(30), || {
        std::fs::read_to_string(env.log_path()).is_ok_and(|t| t.contains("\"synced\""))
    });
    wait_for_transfer(&env);
    std::fs::rename(&env.src, env.root().join("src.away")).unwrap();
    let out = run.wait(Duration::from_secs(60));
    out.assert_code(4);
    let end = assert_one_truth(&env, &out, true);
    assert!(end["files"].as_u64().unwrap() >= 1, "{end}");
    assert!(
        end["error"].as_str().unwrap().contains("source root"),
        "{end}"
    );
    assert!(out.stdout.contains(", mode scan, exit 4"), "{}", out.stdout);
    let (.., error) = last_runs_row(&env).unwrap();
    assert_eq!(error.as_deref(), end["error"].as_str());
}

#[test]
#[ignore = "needs root"]
fn a_full_destination_tells_one_story() {
    require_root();
    let env = TestEnv::new();
    for i in 0..8 {
        env.src_file(&format!("f{i}.bin"), &bytes(300_000, i));
    }
    std::fs::create_dir(&env.dst).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&env.dst)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "cannot mount tmpfs here");
    let _m = Mount(env.dst.clone());
    let out = env.run(&["--block-size", "64K", "--transfers", "1"]);
    out.assert_code(4);
    let end = assert_one_truth(&env, &out, true);
    assert!(end["files"].as_u64().unwrap() >= 1, "some files fit: {end}");
    assert!(
        end["error"]
            .as_str()
            .unwrap()
            .contains("No space left on device")
    );
}

#[test]
fn a_stopped_run_tells_one_story() {
    let env = slow_env(6, 300_000);
    let run = Running::start(&env, &[]);
    wait_for("a first synced file", Duration::from_secs(30), || {
        std::fs::read_to_string(env.log_path()).is_ok_and(|t| t.contains("\"synced\""))
    });
    run.signal(libc::SIGINT);
    let out = run.wait(Duration::from_secs(30));
    out.assert_code(130);
    let end = assert_one_truth(&env, &out, true);
    assert!(end.get("error").is_none(), "a stop is not an error: {end}");
}

#[test]
fn a_mirror_refusal_tells_one_story() {
    let env = TestEnv::new();
    env.manifest("delete_extras = true\nmax_delete = 1");
    env.src_file("a.txt", b"a");
    // A FIFO where a folder goes blocks its file (and the folder's row).
    // (A folder where a file goes no longer fails with `delete_extras`:
    // the mirror removes it, issue 24 item 7.)
    env.src_file("blocked/x.txt", b"x");
    std::fs::create_dir_all(&env.dst).unwrap();
    crate::support::mkfifo(&env.dst.join("blocked"));
    env.dst_file("extra1.txt", b"no source");
    env.dst_file("extra2.txt", b"no source");
    let out = env.run(&[]);
    out.assert_code(4);
    let end = assert_one_truth(&env, &out, true);
    assert_eq!(end["failed"], 2, "{end}");
    assert!(env.dst.join("extra1.txt").exists());
    assert!(env.dst.join("extra2.txt").exists());
}

#[test]
fn a_run_that_fails_after_validation_is_recorded_with_its_reason() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"a");
    std::fs::write(
        &env.manifest,
        "source = \"src\"\ndestination = \"missing-parent/dst\"\n",
    )
    .unwrap();
    let out = env.run(&[]);
    out.assert_code(4);
    assert!(
        out.stderr.contains("cannot create destination root"),
        "{}",
        out.stderr
    );
    let (_, _, _, _, exit, dry, error) = last_runs_row(&env).expect("a runs row");
    assert_eq!(exit, Some(4));
    assert!(!dry);
    let error = error.expect("the reason is recorded");
    assert!(
        error.starts_with("cannot create destination root"),
        "{error}"
    );
    let end = assert_one_truth(&env, &out, true);
    assert_eq!(end["error"], error.as_str());
    assert_eq!(end["reason"], "aborted");
    let status = env.cmd().arg("status").arg(&env.manifest).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(!text.contains("no runs yet"), "{text}");
    assert!(text.contains(&format!("run 1: {error}")), "{text}");
}

#[test]
fn status_on_a_db_of_another_job_says_so() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"a");
    env.run(&[]).assert_code(0);
    std::fs::write(
        &env.manifest,
        "source = \"src\"\ndestination = \"elsewhere\"\n",
    )
    .unwrap();
    let out: Out = env
        .cmd()
        .arg("status")
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    out.assert_code(2);
    assert!(
        out.stderr.contains("belongs to another job"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn a_dry_run_creates_nothing_at_the_destination_and_says_dry_run() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"a");
    env.src_file("d/b.txt", b"b");
    let out = env.run(&["--dry-run"]);
    out.assert_code(0);
    assert!(!env.dst.exists(), "a dry run created the destination root");
    assert!(out.stdout.contains(", dry run,"), "{}", out.stdout);
    let (_, files, _, _, _, dry, _) = last_runs_row(&env).unwrap();
    assert!(dry, "runs.dry_run");
    assert_eq!(files, 0);
    let log = strict_log(&env);
    for status in ["run_start", "run_end"] {
        let line = log.iter().find(|v| v["status"] == status).unwrap();
        assert_eq!(line["dry_run"], true, "{line}");
    }
    let status = env.cmd().arg("status").arg(&env.manifest).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("0 ok (dry run)"), "{text}");
    // The real run after it is a real one.
    env.run(&[]).assert_code(0);
    let (.., dry, _) = last_runs_row(&env).unwrap();
    assert!(!dry);
    assert_eq!(strict_log(&env).last().unwrap()["dry_run"], false);
}

/// A dry run changes nothing at the destination: an interrupted run's
/// temporary stays for the next real run to remove.
#[test]
fn a_dry_run_leaves_stale_temporaries_to_the_real_run() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"a");
    env.run(&[]).assert_code(0);
    let stale = env.dst.join(".jobrun-99.tmp");
    std::fs::write(&stale, b"half a file").unwrap();
    env.run(&["--dry-run", "--rescan"]).assert_code(0);
    assert!(stale.exists(), "a dry run removed a temporary");
    env.run(&["--rescan"]).assert_code(0);
    assert!(!stale.exists(), "the real run removes it");
}

#[test]
fn status_counts_entries_and_says_one_entry() {
    let env = TestEnv::new();
    env.src_file("d/a.txt", b"a");
    env.run(&[]).assert_code(0);
    let status = env.cmd().arg("status").arg(&env.manifest).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    // The root folder, d and d/a.txt: entries, not files.
    assert!(
        text.lines()
            .any(|l| l.starts_with("status") && l.contains("entries")),
        "{text}"
    );
    env.db()
        .execute(
            "UPDATE files SET status = 'pending' WHERE CAST(source_path AS TEXT) LIKE '%a.txt'",
            [],
        )
        .unwrap();
    let status = env.cmd().arg("status").arg(&env.manifest).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("backlog   1 entry, 1 B;"), "{text}");
}

#[test]
fn an_interrupted_scan_is_not_called_a_requested_rescan() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"a");
    env.run(&[]).assert_code(0);
    // As a scan cut short leaves the DB: a backlog, and no finished scan.
    env.db()
        .execute_batch(
            "UPDATE files SET status = 'pending';
             UPDATE meta SET value = '0' WHERE key = 'scan_complete';",
        )
        .unwrap();
    let out = env.run(&[]);
    out.assert_code(0);
    assert!(
        out.stderr
            .contains("the last scan did not finish: full scan (its partial backlog: "),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("rescan requested"), "{}", out.stderr);
    // Asked for, it says so.
    env.db()
        .execute("UPDATE files SET status = 'pending'", [])
        .unwrap();
    let out = env.run(&["--rescan"]);
    assert!(
        out.stderr
            .contains("rescan requested: full scan (backlog was "),
        "{}",
        out.stderr
    );
}

// ---- §7: what an auditor needs ------------------------------------------

#[test]
fn every_line_names_its_run_and_entries_carry_kind_mtime_and_target() {
    let env = TestEnv::new();
    env.manifest("delete_extras = true\nmax_delete = \"off\"");
    let f = env.src_file("a.txt", b"abc");
    TestEnv::set_mtime(&f, 1_600_000_000, 123_456_789);
    std::os::unix::fs::symlink("a.txt", env.src.join("link")).unwrap();
    mkfifo(&env.src.join("pipe"));
    let extra = env.dst_file("extra.txt", b"old");
    TestEnv::set_mtime(&extra, 1_500_000_000, 5);
    let out = env.run(&[]);
    out.assert_code(0);
    let log = strict_log(&env);
    let (id, ..) = last_runs_row(&env).unwrap();
    for v in &log {
        assert_eq!(v["run"], id, "every line carries its run: {v}");
        assert!(v["ts"].is_string());
    }
    let start = &log[0];
    assert_eq!(start["status"], "run_start");
    let root = env.root().canonicalize().unwrap();
    assert_eq!(start["source"], root.join("src").to_str().unwrap());
    assert_eq!(start["destination"], root.join("dst").to_str().unwrap());
    assert_eq!(start["checksum"], "sha256");
    assert_eq!(start["version"], env!("CARGO_PKG_VERSION"));
    assert!(!start["host"].as_str().unwrap().is_empty());
    assert!(!start["user"].as_str().unwrap().is_empty());
    // SAFETY: getuid has no preconditions.
    assert_eq!(start["uid"], unsafe { libc::getuid() });
    assert_eq!(start["dry_run"], false);
    let find = |status: &str, name: &str| {
        log.iter()
            .find(|v| v["status"] == status && v["source"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no {status} line for {name}: {log:#?}"))
    };
    let file = find("synced", "/a.txt");
    assert_eq!(file["kind"], "file");
    assert_eq!(file["mtime"], "2020-09-13T12:26:40.123456789Z");
    assert!(file["hash"].is_string());
    let link = find("synced", "/link");
    assert_eq!(link["kind"], "symlink");
    assert_eq!(link["target"], "a.txt");
    let pipe = find("skipped", "/pipe");
    assert_eq!(pipe["kind"], "fifo");
    assert!(pipe["reason"].as_str().unwrap().contains("never copied"));
    assert_eq!(pipe["dest"], env.dst.join("pipe").to_str().unwrap());
    let deleted = find("deleted", "/extra.txt");
    assert_eq!(deleted["kind"], "file");
    assert_eq!(deleted["mtime"], "2017-07-14T02:40:00.000000005Z");
    assert_eq!(log.last().unwrap()["status"], "run_end");
    assert_eq!(log.last().unwrap()["deleted"], 1);
    // The next run is another run.
    env.run(&[]).assert_code(0);
    let log = strict_log(&env);
    assert_eq!(log.last().unwrap()["run"], id + 1);
    let md = std::fs::symlink_metadata(env.dst.join("link")).unwrap();
    assert!(md.file_type().is_symlink() && md.size() > 0);
}
