//! What the operator sees (SPEC §8): plain progress lines when stderr is
//! not a terminal (here it is a pipe), the summary, `--quiet`, diagnostics,
//! and `status` (text and JSON), which reads the DB and nothing else.

use std::time::{Duration, Instant};

use crate::env::{TestEnv, bytes};

/// Three 512 KiB files at 2 MiB/s: the transfer lasts ~0.75 s (a plain
/// line needs a longer run: 1 s is the shortest `progress_interval`).
fn slow_env() -> TestEnv {
    let env = TestEnv::new();
    env.manifest("bwlimit = \"2M\"\nprogress_interval = \"1s\"");
    for i in 0..3 {
        env.src_file(&format!("d/f{i}.bin"), &bytes(512 << 10, i));
    }
    env
}

/// Bytes that are neither printable nor a newline: escapes, `\r`, DEL…
fn control_bytes(text: &str) -> Vec<(usize, char)> {
    text.char_indices()
        .filter(|(_, c)| *c != '\n' && c.is_control())
        .collect()
}

#[test]
#[ignore = "slow tier (5 s)"]
fn non_tty_output_is_plain_lines_without_control_bytes() {
    let env = slow_env();
    // ~3 s at 512 KiB/s: plain lines at 1 s and 2 s at least.
    env.manifest("bwlimit = \"512K\"\nprogress_interval = \"1s\"");
    // A name that carries an escape sequence, shown by -vv's per-file lines.
    env.src_file("evil\x1b[2J\x07name.bin", b"x");
    let out = env.run(&["-vv"]);
    out.assert_code(0);
    assert!(out.stderr.contains("evil?[2J?name.bin"), "{}", out.stderr);
    for (name, text) in [("stderr", &out.stderr), ("stdout", &out.stdout)] {
        let bad = control_bytes(text);
        assert!(bad.is_empty(), "{name} has control bytes {bad:?}:\n{text}");
    }
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("transfer: "))
        .collect();
    assert!(
        lines.len() >= 2,
        "expected periodic transfer lines:\n{}",
        out.stderr
    );
    for l in &lines {
        for part in [
            "transfer: backlog ",
            "/4 files ",
            " eta ",
            ", rate ",
            " smoothed ",
            " limit 512.0 KiB/s, copied run ",
            " total ",
            ", failed 0, elapsed ",
        ] {
            assert!(l.contains(part), "`{part}` missing from {l:?}");
        }
    }
    // The shape of a periodic line, with every timing-dependent figure
    // normalised (the files in flight depend on when the line was sampled).
    insta::with_settings!({ filters => vec![
        (r", active .*$", ""),
        (r"\d+(\.\d+)? (B|KiB|MiB|GiB)/s", "[RATE]"),
        (r"(rate|smoothed) -", "$1 [RATE]"),
        (r"\d+(\.\d+)? (B|KiB|MiB|GiB)", "[SIZE]"),
        (r"eta (-|\d+[dhms]( \d+[dhms])?)", "eta [ETA]"),
        (r"elapsed \d+[dhms]( \d+[dhms])?", "elapsed [T]"),
        (r"backlog \d+/", "backlog [N]/"),
        (r"\(\d+(\.\d+)?%\)", "([PCT])"),
    ]}, {
        insta::assert_snapshot!("plain_transfer_line", lines[0]);
    });
    // -vv diagnostics share stderr, as plain text too.
    assert!(out.stderr.contains(" DEBUG "), "{}", out.stderr);
}

/// Times, sizes that depend on timing, and the temp dir, normalised.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        (
            r"in \d+(\.\d+)?s \([0-9.]+ [KMG]?i?B/s mean\)",
            "in [T] ([RATE] mean)",
        ),
        (
            r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?",
            "[TIMESTAMP]",
        ),
    ]
}

#[test]
fn plain_run_output_snapshot() {
    let env = slow_env();
    // A long interval: no periodic line, only what every run prints.
    env.manifest("progress_interval = \"1h\"");
    let first = env.run(&[]);
    first.assert_code(0);
    let second = env.run(&[]);
    second.assert_code(0);
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!(format!(
            "first run, stderr:\n{}first run, stdout:\n{}second run, stderr:\n{}second run, stdout:\n{}",
            first.stderr, first.stdout, second.stderr, second.stdout
        ));
    });
}

#[test]
fn quiet_prints_only_the_summary() {
    let env = slow_env();
    let out = env.run(&["--quiet"]);
    out.assert_code(0);
    assert_eq!(out.stderr, "", "--quiet printed on stderr");
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!(out.stdout);
    });
}

#[test]
fn fatal_run_still_ends_with_a_summary() {
    let env = TestEnv::new();
    env.src_file("a", b"x");
    env.run(&["-q"]).assert_code(0);
    std::fs::remove_dir_all(&env.src).unwrap();
    let out = env.run(&["-q"]);
    out.assert_code(4);
    assert!(out.stderr.starts_with("jobrun: "), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("jobrun: 0 files, 0 B copied in ")
            && out.stdout.trim_end().ends_with("exit 4 (aborted)"),
        "{}",
        out.stdout
    );
}

#[test]
fn diagnostics_go_to_stderr_never_into_the_audit_log() {
    let env = TestEnv::new();
    env.src_file("a", b"x");
    let out = env
        .cmd()
        .env("RUST_LOG", "jobrun=debug")
        .arg(&env.manifest)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("DEBUG"),
        "RUST_LOG=debug gave no debug line:\n{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .all(|l| l.starts_with("jobrun: "))
    );
    // Every audit line is JSON (env.log() panics otherwise) with a status.
    let log = env.log();
    assert!(!log.is_empty());
    assert!(log.iter().all(|v| v["status"].is_string()));
    // Without -v/RUST_LOG only warnings and errors would show: none here.
    let quiet = env.run(&["--rescan"]);
    assert!(
        !quiet.stderr.contains("INFO") && !quiet.stderr.contains("DEBUG"),
        "{}",
        quiet.stderr
    );
}

#[test]
fn status_needs_an_existing_db_and_creates_nothing() {
    let env = TestEnv::new();
    let out = env.cmd().arg("status").arg(&env.manifest).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("never run"));
    assert!(!env.db_path().exists(), "status created the DB");
    assert!(
        !env.root().join("job.db.lock").exists(),
        "status created a lock"
    );
    assert!(!env.log_path().exists(), "status created the log");
}

fn status(env: &TestEnv, json: bool) -> crate::env::Out {
    let mut c = env.cmd();
    c.arg("status").arg(&env.manifest);
    if json {
        c.arg("--json");
    }
    c.output().expect("spawn jobrun status").into()
}

/// A DB with a known history: one real run, then rows and runs rewritten
/// to fixed values, so the whole `status` screen is deterministic.
fn env_with_history() -> TestEnv {
    let env = TestEnv::new();
    for i in 0..4 {
        env.src_file(&format!("f{i}.bin"), &bytes(1 << 20, i));
    }
    env.run(&["-q"]).assert_code(0);
    let db = env.db();
    db.execute_batch(
        "UPDATE files SET status = 'pending' WHERE source_path LIKE '%/f2.bin';
         UPDATE files SET status = 'failed', error = 'cannot open: Permission denied (os error 13)'
            WHERE source_path LIKE '%/f3.bin';
         UPDATE files SET size = 3 * 1024 * 1024 * 1024 WHERE source_path LIKE '%/f2.bin';
         DELETE FROM runs;
         INSERT INTO runs (id, started_at, ended_at, mode, files_done, bytes_done, failures, exit_code) VALUES
            (1, '2026-01-01T01:00:00.000000Z', '2026-01-01T02:00:00.000000Z', 'scan', 100, 36000000000, 0, 0),
            (2, '2026-01-02T01:00:00.000000Z', '2026-01-02T01:30:00.000000Z', 'resume', 50, 9000000000, 1, 1),
            (3, '2026-01-03T01:00:00.000000Z', NULL, 'resume', 7, 0, 0, NULL),
            (4, '2026-01-04T01:00:00.000000Z', '2026-01-04T01:00:05.000000Z', 'scan', 0, 0, 0, 0),
            (5, '2026-01-05T01:00:00.000000Z', '2026-01-05T01:00:01.000000Z', 'resume', 0, 0, 0, 130);
         UPDATE runs SET dry_run = 1 WHERE id = 4;
         UPDATE runs SET bwlimit = 'auto, 9751756 B/s' WHERE id = 2;
         UPDATE runs SET bwlimit = '20971520 B/s' WHERE id = 4;
         UPDATE runs SET bwlimit = 'pause' WHERE id = 5;
         INSERT INTO runs (id, started_at, ended_at, mode, files_done, bytes_done, failures, exit_code, error) VALUES
            (6, '2026-01-06T01:00:00.000000Z', '2026-01-06T01:00:01.000000Z', 'resume', 0, 0, 0, 4,
             'cannot create destination root `/mnt/dst`: Permission denied (os error 13)');",
    )
    .unwrap();
    env
}

#[test]
fn status_snapshot() {
    let env = env_with_history();
    let db_before = std::fs::read(env.db_path()).unwrap();
    let out = status(&env, false);
    out.assert_code(0);
    // The history has fixed times: only the temp dir needs normalising.
    insta::with_settings!({ filters => vec![(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]")] }, {
        insta::assert_snapshot!(out.stdout);
    });
    // 45 GB over 1.5 h of run time = 8.33 MB/s; 3 GiB pending.
    assert!(
        out.stdout.contains("eta 6m 26s of run time"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read(env.db_path()).unwrap(),
        db_before,
        "status changed the DB file"
    );
}

#[test]
fn status_json_parses_and_matches_the_db() {
    let env = env_with_history();
    let out = status(&env, true);
    out.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("status --json is JSON");
    let count = |s: &str| {
        v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == s)
            .unwrap()
            .clone()
    };
    assert_eq!(count("pending")["files"], 1);
    assert_eq!(count("pending")["bytes"], 3u64 << 30);
    assert_eq!(count("failed")["files"], 1);
    assert_eq!(count("synced")["files"], 3, "two files and the root folder");
    assert_eq!(v["backlog_bytes"], 3u64 << 30);
    assert_eq!(v["next_run"], "resume");
    assert_eq!(v["recent_rate_runs"], 2);
    let rate = v["recent_rate"].as_f64().unwrap();
    assert!((rate - 45e9 / 5400.0).abs() < 1.0, "{rate}");
    assert_eq!(v["eta_seconds"], ((3u64 << 30) as f64 / rate) as u64);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 5);
    assert_eq!(runs[0]["id"], 6, "newest first");
    assert_eq!(runs[0]["state"], "aborted");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot create destination root")
    );
    assert_eq!(runs[1]["error"], serde_json::Value::Null);
    assert_eq!(runs[2]["dry_run"], true);
    assert_eq!(runs[1]["dry_run"], false);
    assert_eq!(
        runs[4]["bwlimit"], "auto, 9751756 B/s",
        "the limit in force"
    );
    assert_eq!(
        runs[0]["bwlimit"],
        serde_json::Value::Null,
        "a run before v11"
    );
    assert_eq!(runs[3]["state"], "unfinished");
    assert_eq!(runs[3]["seconds"], serde_json::Value::Null);
    assert_eq!(runs[4]["seconds"], 1800.0);
    assert_eq!(v["failed_total"], 1);
    assert!(
        v["failed_sample"][0]["error"]
            .as_str()
            .unwrap()
            .contains("Permission denied")
    );
    assert_eq!(v["running_pid"], serde_json::Value::Null);
}

#[test]
#[ignore = "slow tier (4 s)"]
fn status_shows_a_running_job() {
    let env = TestEnv::new();
    env.manifest("bwlimit = \"1M\"");
    env.src_file("big.bin", &bytes(3 << 20, 1));
    let mut child = env
        .cmd()
        .arg("-q")
        .arg(&env.manifest)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = None;
    while Instant::now() < deadline && seen.is_none() {
        if env.db_path().exists() {
            let out = status(&env, true);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout)
                && v["running_pid"].is_u64()
            {
                seen = Some(v);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let v = seen.expect("status never saw the run");
    assert_eq!(v["running_pid"], pid);
    assert_eq!(v["runs"][0]["state"], "running");
    let after = status(&env, true);
    let v: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    assert_eq!(v["running_pid"], serde_json::Value::Null);
    assert_eq!(v["runs"][0]["state"], "ok");
}

/// Whether util-linux `script` (a pty for the terminal tests) is here;
/// says so when not.
/// The terminal tests need util-linux `script` for a pty: without it they
/// fail, naming it, rather than pass having checked nothing.
fn require_script() {
    let here = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        here,
        "`script` (util-linux) is not installed: no pty to test on"
    );
}

/// Runs the shell command `cmd` on a pty, in the job's folder.
fn in_pty(env: &TestEnv, cmd: &str) -> std::process::Output {
    std::process::Command::new("script")
        .current_dir(env.root())
        .args(["-q", "-e", "-c", cmd, "/dev/null"])
        .output()
        .expect("spawn script")
}

/// Runs the job on a pty set up by `stty` (as `TERM=xterm`); it must exit
/// 0. Returns what the terminal received.
fn job_on_terminal(env: &TestEnv, stty: &str) -> String {
    let cmd = format!(
        "{stty} 2>/dev/null; TERM=xterm {} {}",
        crate::env::BIN,
        env.manifest.display()
    );
    let out = in_pty(env, &cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

/// On a terminal (a pty from util-linux `script`): the live display is
/// drawn in place and cleared, and the summary follows it.
#[test]
fn terminal_gets_the_live_display() {
    require_script();
    let env = slow_env();
    let text = job_on_terminal(&env, "stty cols 120");
    assert!(
        text.contains("⠋ scan") || text.contains("transfer  "),
        "no live frame:\n{text}"
    );
    assert!(text.contains("  backlog  ["), "no backlog bar:\n{text}");
    assert!(
        text.contains("\x1b["),
        "no cursor movement: not redrawn in place"
    );
    assert!(text.contains("jobrun: 3 files, 1.5 MiB copied"), "{text}");
}

/// While the live display is up the terminal does not echo `^C`: its two
/// characters wrapped past indicatif's cursor (kept at the right edge) and
/// left the display's first line behind after Ctrl-C. Restored at the end.
#[test]
#[ignore = "slow tier (4 s)"]
fn the_live_display_keeps_control_keys_from_echoing_until_it_ends() {
    require_script();
    let env = TestEnv::new();
    env.manifest("bwlimit = \"1M\"");
    for i in 0..3 {
        env.src_file(&format!("f{i}.bin"), &bytes(1 << 20, i));
    }
    let cmd = format!(
        "stty cols 120 echoctl; TERM=xterm {} {} & sleep 1; stty -a > during.txt; wait; stty -a > after.txt",
        crate::env::BIN,
        env.manifest.display()
    );
    let out = in_pty(&env, &cmd);
    assert_eq!(out.status.code(), Some(0));
    let flag = |f: &str| {
        let t = std::fs::read_to_string(env.root().join(f)).unwrap();
        t.split_whitespace()
            .find(|w| w.trim_start_matches('-') == "echoctl")
            .unwrap()
            .to_string()
    };
    assert_eq!(flag("during.txt"), "-echoctl", "while the display is up");
    assert_eq!(flag("after.txt"), "echoctl", "restored at the end");
}

/// A run killed with SIGKILL never writes its end, yet its `runs` row
/// holds what it copied (updated every 2 s), so totals and `status` count it.
#[test]
#[ignore = "slow tier (4 s)"]
fn killed_run_keeps_its_progress_in_the_runs_table() {
    let env = TestEnv::new();
    // Many files: the writer commits between files (every second).
    env.manifest("bwlimit = \"1M\"\nblock_size = \"128K\"");
    for i in 0..64 {
        env.src_file(&format!("f{i:02}.bin"), &bytes(128 << 10, i));
    }
    let mut child = env
        .cmd()
        .arg("-q")
        .arg(&env.manifest)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut recorded = 0i64;
    while Instant::now() < deadline && recorded == 0 {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(v) = env.db().query_row(
            "SELECT bytes_done FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get::<_, i64>(0),
        ) {
            recorded = v;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(recorded > 0, "no progress recorded while running");
    let out = status(&env, true);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["runs"][0]["state"], "unfinished");
    assert!(v["runs"][0]["bytes_done"].as_u64().unwrap() >= recorded as u64);
    assert_eq!(v["running_pid"], serde_json::Value::Null);
}

// ---- files in flight (several lanes) -----------------------------------

/// One 8 MiB file beside eight of 1 MiB, four lanes sharing 4 MiB/s: for
/// about 2.5 s all four lanes copy, then the big file alone for ~1.5 s.
fn lanes_env() -> TestEnv {
    let env = TestEnv::new();
    env.manifest(
        "transfers = 4\nbwlimit = \"4M\"\nprogress_interval = \"1s\"\nblock_size = \"256K\"",
    );
    env.src_file("big/video-master.mov", &bytes(8 << 20, 1));
    for i in 0..8 {
        env.src_file(&format!("small/f{i}.bin"), &bytes(1 << 20, 10 + i));
    }
    env
}

/// The text a terminal `cols` wide shows, without the escape sequences
/// that move the cursor: one entry per line drawn (indicatif pads each
/// line to the width and lets the terminal wrap it).
fn drawn_lines(raw: &str, cols: usize) -> Vec<String> {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ parameters… final byte (a letter).
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                out.push('\n');
            }
            '\r' => out.push('\n'),
            c => out.push(c),
        }
    }
    let chars = |l: &str| l.chars().collect::<Vec<char>>();
    out.lines()
        .flat_map(|l| {
            chars(l)
                .chunks(cols)
                .map(|c| c.iter().collect::<String>().trim_end().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// The backlog's done figure (`12.0 MiB` of `  backlog  [...] 3/9 files  12.0 MiB / ...`).
fn backlog_done(line: &str) -> Option<String> {
    let after_files = line.split(" files  ").nth(1)?;
    Some(after_files.split(" / ").next()?.to_string())
}

/// On a terminal with `transfers = 4` under a limit: a line per lane's
/// file (4 at once), and a backlog that moves with every second even while
/// the big file copies alone (it used to count finished files only).
#[test]
#[ignore = "slow tier (7 s)"]
fn terminal_shows_every_lane_and_a_backlog_that_moves() {
    require_script();
    let env = lanes_env();
    let text = job_on_terminal(&env, "stty rows 40 cols 120");
    let lines = drawn_lines(&text, 120);
    // Frames: from one `transfer  N active` head to the next.
    let mut frames: Vec<Vec<&String>> = Vec::new();
    for l in &lines {
        if l.contains(" transfer  ") && l.contains(" active, elapsed ") {
            frames.push(vec![l]);
        } else if let Some(f) = frames.last_mut() {
            f.push(l);
        }
    }
    assert!(
        frames.len() >= 10,
        "too few frames ({}):\n{text}",
        frames.len()
    );
    let four = frames.iter().find(|f| f[0].contains(" 4 active"));
    let four = four.unwrap_or_else(|| panic!("never 4 files in flight:\n{lines:#?}"));
    let files: Vec<&&String> = four.iter().filter(|l| l.starts_with("  * ")).collect();
    assert_eq!(files.len(), 4, "{four:#?}");
    assert!(
        files.iter().any(|l| l.contains("big/video-master.mov")),
        "{four:#?}"
    );
    // While files are in flight, no five frames in a row (about a second at
    // five frames a second) show the same backlog figure.
    let moving: Vec<String> = frames
        .iter()
        .filter(|f| !f[0].contains(" 0 active"))
        .filter_map(|f| f.iter().find_map(|l| backlog_done(l)))
        .filter(|done| done != "0 B")
        .collect();
    assert!(moving.len() >= 10, "{moving:?}");
    for w in moving.windows(5) {
        assert!(
            w.iter().any(|d| *d != w[0]),
            "backlog stuck at {} for 5 frames: {moving:?}",
            w[0]
        );
    }
    assert!(text.contains("jobrun: 9 files, 16.0 MiB copied"), "{text}");
}

/// Not on a terminal: each transfer line ends with the number of files in
/// flight and the largest of them with its progress.
#[test]
#[ignore = "slow tier (7 s)"]
fn plain_lines_name_the_active_count_and_the_largest_file() {
    let env = lanes_env();
    let out = env.run(&[]);
    out.assert_code(0);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("transfer: "))
        .collect();
    assert!(lines.len() >= 2, "{}", out.stderr);
    // Several at once (a line sampled while a lane reads its next file's
    // first block counts one less).
    let active = |l: &str| -> u64 {
        let n = l
            .split(", active ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        n.parse().unwrap()
    };
    assert!(lines.iter().any(|l| active(l) >= 2), "{lines:#?}");
    assert!(lines.iter().all(|l| active(l) <= 4), "{lines:#?}");
    for l in lines.iter().filter(|l| l.contains(", largest ")) {
        // The big file is in flight until the end, and always the largest.
        let tail = l.split(", largest ").nth(1).unwrap();
        assert!(tail.ends_with(" big/video-master.mov"), "{l}");
        assert!(tail.contains("/8.0 MiB ("), "{l}");
        assert!(tail.contains("%) eta "), "{l}");
    }
}

/// `status` while a run goes: the files its lanes are copying, from the
/// DB (the run records them at each commit, idle ones included), and none
/// once the run has ended.
#[test]
#[ignore = "slow tier (5 s)"]
fn status_during_a_run_shows_the_files_in_flight() {
    let env = TestEnv::new();
    env.manifest("transfers = 2\nbwlimit = \"1M\"\nblock_size = \"128K\"");
    env.src_file("big.bin", &bytes(4 << 20, 3));
    let mut child = env
        .cmd()
        .arg("-q")
        .arg(&env.manifest)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<u64> = Vec::new();
    let mut text = String::new();
    while Instant::now() < deadline && seen.len() < 2 {
        std::thread::sleep(Duration::from_millis(300));
        if !env.db_path().exists() {
            continue;
        }
        let out = status(&env, true);
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout) else {
            continue;
        };
        let files = v["in_flight"].as_array().cloned().unwrap_or_default();
        if let [f] = files.as_slice() {
            assert_eq!(f["path"], "big.bin", "{v}");
            assert_eq!(f["size"], 4u64 << 20);
            let done = f["bytes_done"].as_u64().unwrap();
            if seen.last() != Some(&done) && done > 0 {
                seen.push(done);
                text = status(&env, false).stdout;
            }
        }
    }
    assert!(child.wait().unwrap().success());
    assert!(
        seen.len() >= 2,
        "status never showed the file moving: {seen:?}"
    );
    assert!(seen[1] > seen[0], "{seen:?}");
    assert!(
        text.contains("in flight 1 file (as of the run's last commit):"),
        "{text}"
    );
    assert!(text.contains(" MiB / 4.0 MiB "), "{text}");
    assert!(text.contains("%  big.bin"), "{text}");
    let after = status(&env, true);
    let v: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    assert_eq!(v["in_flight"], serde_json::json!([]), "{v}");
}
