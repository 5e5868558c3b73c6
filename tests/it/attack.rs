//! What an attack campaign found (issue 24, "Attack findings"): values
//! that meant something else than they said, state files aimed at each
//! other, panics, errors naming the wrong place, `check` and `status`
//! disagreeing with a run. Each case runs the real binary.

use crate::env::{Out, TestEnv};
use crate::support::{Mount, mkfifo, tmpfs};

/// `jobrun check` and the run with `envs` and `args`; both must refuse
/// with `code` and one line, and the run must have created nothing. Gives
/// the check's stderr line, the temp folder shown as `[TMP]`.
#[track_caller]
fn refused(env: &TestEnv, envs: &[(&str, &str)], args: &[&str], code: i32) -> String {
    let run = |sub: Option<&str>| -> Out {
        let mut c = env.cmd();
        c.envs(envs.iter().copied());
        if let Some(s) = sub {
            c.arg(s);
        }
        c.arg(&env.manifest).args(args);
        c.output().expect("spawn jobrun").into()
    };
    let check = run(Some("check"));
    check.assert_code(code);
    assert_eq!(
        check.stderr.lines().count(),
        1,
        "one line: {}",
        check.stderr
    );
    let db_before = env.db_path().exists();
    let out = run(None);
    out.assert_code(code);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    if code == 2 && !db_before {
        assert!(!env.db_path().exists(), "a refused run created the DB");
        assert!(!env.dst.exists(), "a refused run created the destination");
    }
    check.stderr.replace(env.root().to_str().unwrap(), "[TMP]")
}

/// The manifest gets `extra`, and check and run must refuse it (exit 2)
/// naming `key`.
#[track_caller]
fn refused_key(extra: &str, key: &str) -> String {
    let env = TestEnv::new();
    env.src_file("a", b"a");
    env.manifest(extra);
    let e = refused(&env, &[], &[], 2);
    assert!(e.contains(&format!("`{key}`")), "{extra}: {e}");
    e
}

#[test]
fn a_limit_that_means_never_is_refused() {
    // u64::MAX was the internal pause value: the run copied nothing, forever.
    for v in [
        "\"18446744073709551615\"",
        "18446744073709551614",
        "\"1025T\"",
        "\"16777216T\"",
    ] {
        let e = refused_key(&format!("bwlimit = {v}"), "bwlimit");
        assert!(e.contains(":3:"), "{v}: {e}");
    }
    refused_key("bwlimit = \"Mon-08:00,16EiB 19:00,off\"", "bwlimit");
    // 1e-400 underflowed to 0.0, read as "no limit".
    refused_key("bwlimit = 1e-400", "bwlimit");
    let env = TestEnv::new();
    env.manifest("");
    let e = refused(&env, &[("JOBRUN_BWLIMIT", "1e-400")], &[], 2);
    assert!(e.contains("JOBRUN_BWLIMIT"), "{e}");
    // The largest limit is still a limit.
    env.manifest("bwlimit = \"1024T\"");
    let out = env.check(&[]);
    out.assert_code(0);
    assert!(out.stdout.contains("1.0 PiB/s"), "{}", out.stdout);
}

/// `check` with `envs`, expected to pass; its stdout line for `key`.
#[track_caller]
fn shown(env: &TestEnv, envs: &[(&str, &str)], key: &str) -> String {
    let mut c = env.cmd();
    c.envs(envs.iter().copied()).arg("check").arg(&env.manifest);
    let out: Out = c.output().unwrap().into();
    out.assert_code(0);
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key} line: {}", out.stdout))
        .to_string()
}

#[test]
fn durations_have_one_grammar_and_a_bound_per_key() {
    // Months (`M`, MiB in sizes), years, a number without a unit among
    // others (`"1 5m"` was 15 minutes), and windows beyond each key's bound.
    for v in ["\"2M\"", "\"1y\"", "\"1 5m\"", "\"3h\"", "\"1.5s\"", "7201"] {
        let e = refused_key(&format!("modify_window = {v}"), "modify_window");
        assert!(e.contains(":3:"), "{v}: {e}");
    }
    for v in [
        "\"300000000000y\"",
        "\"2d\"",
        "86401",
        "\"999999999999999999999s\"",
    ] {
        refused_key(&format!("progress_interval = {v}"), "progress_interval");
    }
    let env = TestEnv::new();
    for (v, want) in [
        ("\"2s\"", "2s"),
        ("\"1m 30s\"", "1m 30s"),
        ("\"1h30m\"", "1h 30m"),
        ("\"2h\"", "2h"),
        ("7200", "2h"),
    ] {
        env.manifest(&format!("modify_window = {v}"));
        assert!(shown(&env, &[], "modify_window").ends_with(want), "{v}");
    }
    env.manifest("progress_interval = \"1d\"");
    assert!(shown(&env, &[], "progress_interval").ends_with(" 1day"));
    // The same grammar from the environment and a flag.
    env.manifest("");
    let e = refused(&env, &[("JOBRUN_MODIFY_WINDOW", "2M")], &[], 2);
    assert!(e.contains("JOBRUN_MODIFY_WINDOW"), "{e}");
    let e = refused(&env, &[], &["--progress-interval", "300000000000y"], 2);
    assert!(e.contains("--progress-interval"), "{e}");
}

#[test]
fn two_panics_are_one_line_errors() {
    let env = TestEnv::new();
    env.src_file("café*.tmp", b"x");
    env.src_file("keep", b"k");
    // figment panicked on a non-ASCII character before a backslash (exit 4).
    let mut c = env.cmd();
    c.env("JOBRUN_EXCLUDE", r#"["café\\*.tmp"]"#)
        .arg("check")
        .arg(&env.manifest);
    let out: Out = c.output().unwrap().into();
    out.assert_code(0);
    assert!(
        out.stdout.contains(r#"exclude            "café\\*.tmp""#),
        "{}",
        out.stdout
    );
    assert!(!out.stderr.contains("internal error"), "{}", out.stderr);
    let e = refused(&env, &[("JOBRUN_EXCLUDE", "[\"café\\\\\"]")], &[], 2);
    assert!(e.contains("JOBRUN_EXCLUDE"), "{e}");
    // A progress interval of centuries panicked the progress thread.
    let e = refused(
        &env,
        &[("JOBRUN_PROGRESS_INTERVAL", "300000000000y")],
        &[],
        2,
    );
    assert!(e.contains("JOBRUN_PROGRESS_INTERVAL"), "{e}");
}

#[test]
fn a_number_is_spelled_alike_in_every_layer() {
    // An exponent: refused as a TOML number as it is in a string.
    for v in ["1e3", "\"1e3\"", "1E3", "1.5e3"] {
        refused_key(&format!("block_size = {v}"), "block_size");
    }
    refused_key("transfers = 4e0", "transfers");
    let env = TestEnv::new();
    env.manifest("");
    for (var, v) in [
        ("JOBRUN_BLOCK_SIZE", "1e3"),
        ("JOBRUN_BWLIMIT", "2E6"),
        ("JOBRUN_MAX_DELETE", "1e2"),
    ] {
        let e = refused(&env, &[(var, v)], &[], 2);
        assert!(e.contains(var), "{e}");
    }
    // What the manifest accepts, the environment accepts.
    for (var, v, key, want) in [
        ("JOBRUN_BLOCK_SIZE", "1000", "block_size", "(1000 bytes)"),
        ("JOBRUN_BLOCK_SIZE", "\"1K\"", "block_size", "(1024 bytes)"),
        ("JOBRUN_BWLIMIT", "\"20M\"", "bwlimit", "(20971520 bytes/s)"),
        ("JOBRUN_DELETE_EXTRAS", "true", "delete_extras", "true"),
        ("JOBRUN_MODIFY_WINDOW", "\"2s\"", "modify_window", "2s"),
    ] {
        assert!(shown(&env, &[(var, v)], key).ends_with(want), "{var}={v}");
    }
}

#[test]
fn a_mistyped_variable_is_named() {
    let env = TestEnv::new();
    env.manifest("");
    let mut c = env.cmd();
    c.env("JOBRUN_BWLIMT", "1M").arg("check").arg(&env.manifest);
    let out: Out = c.output().unwrap().into();
    out.assert_code(0);
    assert_eq!(
        out.stderr.trim(),
        "jobrun: warning: environment variable `JOBRUN_BWLIMT` is no manifest key and is ignored (did you mean `JOBRUN_BWLIMIT`?)"
    );
    // The test suite's own hooks are not keys and not mistakes.
    let mut c = env.cmd();
    c.env("JOBRUN_TEST_ANYTHING", "1")
        .arg("check")
        .arg(&env.manifest);
    let out: Out = c.output().unwrap().into();
    assert_eq!(out.stderr, "");
}

#[test]
fn errors_name_the_right_place() {
    // A bad element of a multi-line array names its key and its line.
    let e = refused_key("exclude = [\n  \"a\",\n  3,\n]", "exclude");
    assert!(e.contains("job.toml:5: `exclude`"), "{e}");
    // Deep nesting: the key whose value it is.
    let deep = format!("exclude = {}{}", "[".repeat(5000), "]".repeat(5000));
    let e = refused_key(&deep, "exclude");
    assert!(e.contains("job.toml:3:"), "{e}");
    // A bad flag or variable is not blamed on the manifest's valid line.
    let env = TestEnv::new();
    env.manifest("db = \"state/job.db\"\nexclude = [\"*.tmp\"]");
    std::fs::create_dir_all(env.root().join("src/inner")).unwrap();
    let e = refused(&env, &[], &["--db", "src/inner/x.db"], 2);
    assert!(e.starts_with("jobrun: `db` from flag `--db`"), "{e}");
    let e = refused(&env, &[("JOBRUN_DB", "src/inner/x.db")], &[], 2);
    assert!(
        e.starts_with("jobrun: `db` from environment variable `JOBRUN_DB`"),
        "{e}"
    );
}

/// Runs `jobrun SUB job.toml` and gives up (failing) after 20 s: a FIFO at
/// the DB's path once hung `check`, `status` and `hashes` for ever.
#[track_caller]
fn bounded(env: &TestEnv, sub: &str) -> Out {
    let mut c = env.cmd();
    c.arg(sub).arg(&env.manifest);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("`jobrun {sub}` hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap().into()
}

#[test]
fn state_files_aimed_at_each_other_are_refused() {
    for (extra, key) in [
        ("metrics_file = \"job.db.lock\"", "metrics_file"),
        ("log = \"job.db.lock\"", "log"),
        ("log = \"job.db-wal\"", "log"),
        ("metrics_file = \"job.db-shm\"", "metrics_file"),
        ("log = \"job.toml\"", "log"),
        ("metrics_file = \"job.toml\"", "metrics_file"),
        ("db = \"job.toml\"", "db"),
        ("metrics_file = \"src/job.prom\"", "metrics_file"),
        ("metrics_file = \"job.log\"", "metrics_file"),
        ("db = \"/dev/null\"", "db"),
        ("log = \"/dev/full\"", "log"),
        ("db = \"/tmp\"", "db"),
        ("log = \"/tmp\"", "log"),
    ] {
        let e = refused_key(extra, key);
        assert!(e.contains(":3:"), "{extra}: {e}");
    }
    // The manifest through another name (a hard link) is still the manifest.
    let env = TestEnv::new();
    env.manifest("log = \"other.log\"");
    std::fs::hard_link(&env.manifest, env.root().join("other.log")).unwrap();
    refused(&env, &[], &[], 2);
}

#[test]
fn a_symlink_at_the_lock_is_never_followed() {
    let env = TestEnv::new();
    env.src_file("a", b"a");
    let victim = env.root().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, env.root().join("job.db.lock")).unwrap();
    let e = refused(&env, &[], &[], 2);
    assert!(e.contains("job.db.lock") && e.contains("symlink"), "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn a_fifo_at_the_db_hangs_nothing() {
    let env = TestEnv::new();
    env.src_file("a", b"a");
    mkfifo(&env.db_path());
    for sub in ["check", "status", "hashes", "verify"] {
        let out = bounded(&env, sub);
        out.assert_code(2);
        assert!(out.stderr.contains("FIFO"), "{sub}: {}", out.stderr);
    }
    let e = refused(&env, &[], &[], 2);
    assert!(e.contains("`db`"), "{e}");
}
#[test]
fn check_refuses_an_unusable_db_as_the_run_does() {
    let env = TestEnv::new();
    env.src_file("a", b"a");
    env.run(&[]).assert_code(0);
    for (name, bytes) in [
        (
            "garbage",
            b"this is not a database, just some bytes; ".repeat(200),
        ),
        ("empty", Vec::new()),
        ("one byte", b"x".to_vec()),
    ] {
        // Truncated or overwritten after runs: hashes and history were in it.
        std::fs::write(env.db_path(), &bytes).unwrap();
        let e = refused(&env, &[], &[], 4);
        assert!(
            e.contains("job.db") && e.contains("unusable"),
            "{name}: {e}"
        );
        let out = bounded(&env, "status");
        out.assert_code(4);
        assert_eq!(
            std::fs::read(env.db_path()).unwrap(),
            bytes,
            "{name}: DB changed"
        );
    }
}

fn status(env: &TestEnv) -> Out {
    let mut c = env.cmd();
    c.arg("status").arg(&env.manifest);
    c.output().unwrap().into()
}

#[test]
fn status_never_prints_control_characters_from_names() {
    let env = TestEnv::new();
    // A name that would paint the terminal red and start a new line; its
    // destination is blocked by a folder, so it fails and `status` lists it.
    let evil = "evil\u{1b}[31mred\nfake line\u{7}";
    env.src_file(evil, b"x");
    env.dst_file(&format!("{evil}/inside"), b"y");
    env.run(&[]).assert_code(1);
    let out = status(&env);
    out.assert_code(0);
    assert!(
        out.stdout.contains("evil?[31mred?fake line?"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.chars().any(|c| c.is_control() && c != '\n'),
        "control characters: {:?}",
        out.stdout
    );
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("fake line")),
        "{}",
        out.stdout
    );
}

fn remount(m: &Mount, opt: &str) {
    let ok = std::process::Command::new("mount")
        .args(["-o", &format!("remount,{opt}")])
        .arg(&m.0)
        .status()
        .unwrap();
    assert!(ok.success(), "remount {opt}");
}

#[test]
#[ignore = "needs root"]
fn status_reads_a_db_on_a_read_only_or_full_disk() {
    crate::support::require_root();
    let env = TestEnv::new();
    env.src_file("a", b"a");
    let state = env.root().join("state");
    let fs = tmpfs(&state, "1m");
    env.manifest("db = \"state/job.db\"");
    env.run(&[]).assert_code(0);
    // The run left no `-shm`/`-wal`; SQLite cannot make them here.
    assert!(!state.join("job.db-shm").exists());
    remount(&fs, "ro");
    let want = status(&env);
    want.assert_code(0);
    assert!(want.stdout.contains("synced "), "{}", want.stdout);
    remount(&fs, "rw");
    // Full: not a byte left for the `-shm` index SQLite makes beside it.
    let fill = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", state.join("fill").display()))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!fill.success(), "dd stops at a full disk");
    let out = status(&env);
    out.assert_code(0);
    assert_eq!(out.stdout, want.stdout);
}
