//! Bandwidth limit (SPEC §6): the limit holds as a generous lower bound,
//! flag > environment > manifest, and bad timetables are exit 2 naming the
//! key and line.

use std::time::{Duration, Instant};

use crate::env::{Out, TestEnv, bytes};

const MIB: usize = 1 << 20;

/// 16 MiB in three files; returns the env.
fn sixteen_mib(manifest_extra: &str) -> TestEnv {
    let env = TestEnv::new();
    env.src_file("big.bin", &bytes(12 * MIB, 1));
    env.src_file("d/mid.bin", &bytes(3 * MIB, 2));
    env.src_file("d/small.bin", &bytes(MIB, 3));
    env.manifest(manifest_extra);
    env
}

fn timed_run(env: &TestEnv, envs: &[(&str, &str)], args: &[&str]) -> (Out, Duration) {
    let mut c = env.cmd();
    c.envs(envs.iter().copied()).args(args).arg(&env.manifest);
    let start = Instant::now();
    let out: Out = c.output().expect("spawn jobrun").into();
    (out, start.elapsed())
}

fn start_bwlimit(env: &TestEnv) -> String {
    let starts = env.log_with_status("run_start");
    starts.last().expect("a run_start line")["bwlimit"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn limit_holds_and_flag_beats_env_beats_manifest() {
    // Flag (4 MiB/s) over env (64 MiB/s) over manifest (1 KiB/s, which
    // would take hours): 16 MiB must take at least ~4 s.
    let env = sixteen_mib("bwlimit = \"1K\"");
    let (out, limited) = timed_run(&env, &[("JOBRUN_BWLIMIT", "64M")], &["--bwlimit", "4M"]);
    out.assert_code(0);
    env.assert_trees_equal();
    assert!(
        limited >= Duration::from_millis(3500),
        "16 MiB at 4 MiB/s took only {limited:?}"
    );
    assert_eq!(start_bwlimit(&env), "4194304 B/s");

    // Env `off` over the manifest's 1 KiB/s: unlimited, far faster.
    let env = sixteen_mib("bwlimit = \"1K\"");
    let (out, unlimited) = timed_run(&env, &[("JOBRUN_BWLIMIT", "off")], &[]);
    out.assert_code(0);
    env.assert_trees_equal();
    assert_eq!(start_bwlimit(&env), "off");
    assert!(
        unlimited * 2 < limited,
        "unlimited {unlimited:?} vs limited {limited:?}"
    );
}

#[test]
fn timetable_in_force_shows_in_check_and_audit() {
    // One entry covers the whole day (before it, the last entry holds).
    let env = TestEnv::new();
    env.src_file("a.bin", &bytes(64 << 10, 4));
    env.manifest("bwlimit = \"12:00,64M\"");
    let check = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = env.cmd();
        c.envs(envs.iter().copied())
            .arg("check")
            .arg(&env.manifest)
            .args(args);
        let out: Out = c.output().unwrap().into();
        out.assert_code(0);
        out.stdout
            .lines()
            .find(|l| l.starts_with("bwlimit"))
            .unwrap()
            .to_string()
    };
    assert!(check(&[], &[]).ends_with("timetable 12:00,64.0 MiB/s (now 64.0 MiB/s)"));
    let l = check(&[("JOBRUN_BWLIMIT", "00:00,1M 00:01,2M")], &[]);
    assert!(
        l.contains("timetable 00:00,1.0 MiB/s 00:01,2.0 MiB/s (now "),
        "{l}"
    );
    let l = check(&[("JOBRUN_BWLIMIT", "00:00,1M")], &["--bwlimit", "3M"]);
    assert!(l.ends_with("3.0 MiB/s (3145728 bytes/s)"), "{l}");

    env.run(&[]).assert_code(0);
    env.assert_trees_equal();
    assert_eq!(
        start_bwlimit(&env),
        "67108864 B/s (timetable 12:00,64.0 MiB/s)"
    );
}

/// Runs a manifest body and returns the redacted one-line stderr (exit 2,
/// nothing created).
fn bad(env_vars: &[(&str, &str)], body: &str) -> String {
    let env = TestEnv::new();
    std::fs::write(&env.manifest, body).unwrap();
    let mut c = env.cmd();
    c.envs(env_vars.iter().copied()).arg(&env.manifest);
    let out: Out = c.output().unwrap().into();
    out.assert_code(2);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    assert!(!env.db_path().exists() && !env.log_path().exists() && !env.dst.exists());
    out.stderr.replace(env.root().to_str().unwrap(), "[TMP]")
}

#[test]
fn bad_timetables_are_exit_2_with_key_and_line() {
    let body = "source = \"src\"\ndestination = \"dst\"\n\nbwlimit = \"08:00,10M 07:00,off\"\n";
    let msg = bad(&[], body);
    assert!(msg.contains("job.toml:4: `bwlimit`: "), "{msg}");
    insta::assert_snapshot!("bad_timetable_order", msg);
    let body = "source = \"src\"\ndestination = \"dst\"\nbwlimit = \"8h,10M\"\n";
    insta::assert_snapshot!("bad_timetable_time", bad(&[], body));
    let msg = bad(
        &[("JOBRUN_BWLIMIT", "25:00,1M")],
        "source = \"src\"\ndestination = \"dst\"\n",
    );
    assert!(
        msg.contains("`bwlimit` from environment variable `JOBRUN_BWLIMIT`"),
        "{msg}"
    );
    assert!(msg.contains("`25:00` is not a time HH:MM"), "{msg}");
}
