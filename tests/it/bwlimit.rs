//! Bandwidth limit (SPEC §6): the limit holds as a generous lower bound,
//! flag > environment > manifest, a weekly timetable with a pause is
//! followed across local midnight, and bad timetables are exit 2 naming the
//! key, the line and the entry.

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
#[ignore = "slow tier (8 s)"]
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
    // "Far less" with room for a loaded CI machine and a debug build: the
    // unlimited run does the same work minus the ~4 s the limit imposes.
    assert!(
        unlimited * 4 < limited * 3,
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
    let body = "source = \"src\"\ndestination = \"dst\"\n\nbwlimit = \"Sat-08:00,10M 19:00,off sat-08:00,pause\"\n";
    let msg = bad(&[], body);
    assert!(msg.contains("job.toml:4: `bwlimit`: "), "{msg}");
    insta::assert_snapshot!("bad_timetable_twice", msg);
    let body = "source = \"src\"\ndestination = \"dst\"\nbwlimit = \"Sa-08:00,10M\"\n";
    insta::assert_snapshot!("bad_timetable_day", bad(&[], body));
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

/// A POSIX `TZ` whose local time is now `secs_before` seconds before
/// midnight, and the weekday names (Mon…Sun) of the day ending and the next.
fn tz_before_midnight(secs_before: i64) -> (String, &'static str, &'static str) {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let utc = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // local = utc + east; choose east in (-12 h, 12 h].
    let mut east = (86_400 - secs_before - utc.rem_euclid(86_400)).rem_euclid(86_400);
    if east > 43_200 {
        east -= 86_400;
    }
    let day = (utc + east).div_euclid(86_400);
    // 1970-01-01 was a Thursday (Mon = 0).
    let wd = ((day + 3).rem_euclid(7)) as usize;
    // POSIX writes the offset west of UTC: `XXX-02:00` is two hours east.
    let (sign, a) = (if east >= 0 { '-' } else { '+' }, east.abs());
    let tz = format!("XXX{sign}{:02}:{:02}:{:02}", a / 3600, a / 60 % 60, a % 60);
    (tz, DAYS[wd], DAYS[(wd + 1) % 7])
}

#[test]
#[ignore = "slow tier (9 s)"]
fn a_paused_weekday_ends_at_local_midnight() {
    // Local time is 23:59:52 of day D: `D-00:00,pause` holds until the next
    // day's `00:00,off`, so the copy waits for local midnight, then runs.
    let (tz, day, next) = tz_before_midnight(8);
    let env = sixteen_mib(&format!("bwlimit = \"{day}-00:00,pause {next}-00:00,off\""));
    let (out, took) = timed_run(&env, &[("TZ", tz.as_str())], &["-v"]);
    out.assert_code(0);
    env.assert_trees_equal();
    assert!(
        took >= Duration::from_secs(4),
        "the pause did not hold: {took:?}"
    );
    assert!(
        start_bwlimit(&env).starts_with(&format!(
            "pause (timetable {day}-00:00,pause {next}-00:00,off)"
        )),
        "{}",
        start_bwlimit(&env)
    );
    assert!(
        out.stderr.contains("bandwidth limit changed (timetable)")
            && out.stderr.contains("from=pause to=off"),
        "{}",
        out.stderr
    );
}

/// `bwlimit = "auto, 4M"` on a local disk: the copy is whole, never faster
/// than its ceiling allows, and `run_start`/`run_end` say `auto` and the
/// rate it held last (at most the ceiling); `check` names `polite_target`.
#[test]
#[ignore = "slow tier (5 s)"]
fn auto_holds_its_ceiling_and_says_its_rate() {
    let env = sixteen_mib("bwlimit = \"auto, 4M\"\npolite_target = \"3ms\"");
    let (out, took) = timed_run(&env, &[], &[]);
    out.assert_code(0);
    env.assert_trees_equal();
    // 16 MiB at most 4 MiB/s (and a 20 ms bucket): at least ~4 s.
    assert!(took >= Duration::from_millis(3500), "{took:?}");
    assert_eq!(start_bwlimit(&env), "auto, 4194304 B/s");
    let end = env.log_with_status("run_end");
    let said = end.last().unwrap()["bwlimit"].as_str().unwrap().to_string();
    let rate: u64 = said
        .strip_prefix("auto, ")
        .and_then(|r| r.strip_suffix(" B/s"))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("run_end bwlimit: {said}"));
    assert!((1 << 20..=4 << 20).contains(&rate), "{said}");
    let check: Out = env
        .cmd()
        .arg("check")
        .arg(&env.manifest)
        .output()
        .unwrap()
        .into();
    check.assert_code(0);
    assert!(check.stdout.contains("auto, 4.0 MiB/s"), "{}", check.stdout);
    assert!(
        check.stdout.contains("3ms (queuing delay allowed"),
        "{}",
        check.stdout
    );
}

/// `status` (text and `--json`) of a job: stdout parsed when `json`.
fn status(env: &TestEnv, json: bool) -> (Out, serde_json::Value) {
    let mut c = env.cmd();
    c.arg("status").arg(&env.manifest);
    if json {
        c.arg("--json");
    }
    let out: Out = c.output().unwrap().into();
    let v = if json {
        serde_json::from_str(&out.stdout).expect("status --json")
    } else {
        serde_json::Value::Null
    };
    (out, v)
}

/// The limit a run followed is in its `runs` row, so `status` shows it:
/// a fixed one in the runs table and `--json`.
#[test]
fn status_shows_the_limit_each_run_followed() {
    let env = TestEnv::new();
    env.src_file("a.bin", &bytes(64 << 10, 1));
    env.manifest("bwlimit = \"2M\"");
    env.run(&[]).assert_code(0);
    let (_, v) = status(&env, true);
    assert_eq!(v["runs"][0]["bwlimit"], "2097152 B/s", "{v}");
    let (out, _) = status(&env, false);
    out.assert_code(0);
    assert!(out.stdout.contains("limit"), "{}", out.stdout);
    assert!(out.stdout.contains("2.0 MiB/s"), "{}", out.stdout);
}

/// Under `auto`, `status` shows the rate in force while the run goes (the
/// `runs` row is brought up to date with each commit) and the rate it held
/// last once it ended, as `run_end` says it.
#[test]
#[ignore = "slow tier (5 s)"]
fn status_shows_auto_s_rate_in_force_while_it_runs() {
    use crate::support::{Running, wait_for_every};
    let env = TestEnv::new();
    for i in 0..16 {
        env.src_file(&format!("f{i:02}.bin"), &bytes(MIB, i));
    }
    env.manifest("bwlimit = \"auto, 4M\"\ntransfers = 1");
    let run = Running::start(&env, &[]);
    let mut said = String::new();
    wait_for_every(
        "status to show auto's rate",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let (_, v) = status(&env, true);
            said = v["runs"][0]["bwlimit"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            v["runs"][0]["state"] == "running" && said.starts_with("auto, ")
        },
    );
    let (out, _) = status(&env, false);
    assert!(out.stdout.contains("running (pid"), "{}", out.stdout);
    assert!(out.stdout.contains("; limit auto "), "{}", out.stdout);
    run.wait(Duration::from_secs(60)).assert_code(0);
    let (_, v) = status(&env, true);
    let end = env.log_with_status("run_end");
    assert_eq!(
        v["runs"][0]["bwlimit"],
        end.last().unwrap()["bwlimit"],
        "{v}"
    );
}
