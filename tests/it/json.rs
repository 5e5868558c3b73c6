//! `--json` on a run, `check`, `verify` and `reload`: stdout is exactly one
//! JSON object, success or failure, its figures the DB's and the audit
//! log's; the objects' shapes are pinned by snapshots.

use std::time::Duration;

use serde_json::Value;

use crate::env::{Out, TestEnv, bytes};
use crate::support::{Running, wait_for};

/// Stdout as one JSON object (and nothing else).
#[track_caller]
fn object(out: &Out) -> Value {
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}", out.stdout));
    assert!(v.is_object(), "{v}");
    v
}

/// A refusal: exit `code`, and the object's `exit` and `error` say it.
#[track_caller]
fn refused(out: &Out, code: i32, error: &str) -> Value {
    out.assert_code(code);
    let v = object(out);
    assert_eq!(v["exit"], code);
    assert!(v["error"].as_str().unwrap().contains(error), "{v}");
    v
}

/// Pins `v`'s shape in snapshot `name`, temp paths and times filtered out.
fn snap(name: &str, v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap();
    insta::with_settings!({ filters => vec![
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
        (r#""seconds": [0-9.e-]+"#, r#""seconds": "[S]""#),
        (r#""(started_at|ended_at)": "[^"]+""#, r#""$1": "[T]""#),
        (r#""started_ns": \d+"#, r#""started_ns": "[NS]""#),
        (r"\(now [^)]*\)", "(now [LIMIT])"),
    ]}, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn a_runs_json_summary_is_its_run_end_line() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.src_file("d/b.bin", &bytes(70_000, 3));
    let out = env.run(&["--json"]);
    out.assert_code(0);
    let v = object(&out);
    let end = env.log_with_status("run_end").pop().unwrap();
    for k in ["files", "bytes", "failed", "exit", "mode", "reason"] {
        assert_eq!(v[k], end[k], "{k}: {v} vs {end}");
    }
    assert_eq!(v["error"], Value::Null);
    assert!(v["seconds"].as_f64().unwrap() >= 0.0);
    // The progress and the warnings stay on stderr; no summary line.
    assert!(!out.stdout.contains("jobrun:"), "{}", out.stdout);
    snap("run_json", &v);

    // Nothing to do: the same shape, zeros.
    let v = object(env.run(&["--json"]).assert_code(0));
    assert_eq!(
        (v["files"].as_u64(), v["bytes"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn a_refused_run_prints_one_object_with_its_line() {
    let env = TestEnv::new();
    // A manifest error: exit 2, before anything is recorded.
    std::fs::write(
        &env.manifest,
        "source = \"src\"\ndestination = \"dst\"\nbwlimit = \"fast\"\n",
    )
    .unwrap();
    let out = env.run(&["--json"]);
    out.assert_code(2);
    let v = object(&out);
    assert_eq!(v["exit"], 2);
    let line = out.stderr.lines().next().unwrap();
    assert_eq!(format!("jobrun: {}", v["error"].as_str().unwrap()), line);
    assert!(!env.db_path().exists());

    // A run that stops: the summary object carries the error.
    env.manifest("");
    std::fs::write(env.root().join("dst"), b"a file where the root goes").unwrap();
    env.src_file("a.txt", b"alpha");
    let v = refused(&env.run(&["--json"]), 4, "not a directory");
    assert_eq!(v["files"], 0);
}

#[test]
fn check_json_holds_every_setting_and_the_plan() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    let text = env.check(&[]);
    text.assert_code(0);
    let out = env.check(&["--json"]);
    out.assert_code(0);
    let v = object(&out);
    // Every setting the text shows, with its value, in the text's order.
    let settings = v["settings"].as_object().unwrap();
    let text_keys: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .take(settings.len())
        .collect();
    let mut sorted = text_keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        settings.keys().map(String::as_str).collect::<Vec<_>>(),
        sorted
    );
    let at: Vec<usize> = text_keys
        .iter()
        .map(|k| out.stdout.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "not in check's order: {}",
        out.stdout
    );
    let line = |k: &str| {
        text.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{k} ")))
            .unwrap()
            .to_string()
    };
    assert!(line("transfers").ends_with(settings["transfers"].as_str().unwrap()));
    assert!(line("checksum").ends_with(settings["checksum"].as_str().unwrap()));
    assert_eq!(v["plan"], serde_json::json!(["scan", "transfer"]));
    assert_eq!(v["exit"], 0);
    snap("check_json", &v);

    // A run would refuse: the object says so, once, with the exit code.
    std::fs::write(env.root().join("dst"), b"a file where the root goes").unwrap();
    refused(&env.check(&["--json"]), 4, "not a directory");
}

#[test]
fn verify_json_names_what_did_not_verify() {
    let env = TestEnv::new();
    env.src_file("a.txt", b"alpha");
    env.src_file("b.txt", b"bravo");
    env.run(&[]).assert_code(0);
    std::fs::write(env.dst.join("b.txt"), b"BRAVO").unwrap();
    let out = env.run(&["verify", "--json"]);
    out.assert_code(1);
    let v = object(&out);
    assert_eq!(
        (v["ok"].as_u64(), v["mismatched"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["exit"], 1);
    let named = v["not_verified"].as_array().unwrap();
    assert_eq!(named.len(), 1, "{v}");
    assert!(named[0].as_str().unwrap().contains("b.txt"), "{v}");
    let end = env.log_with_status("verify_end").pop().unwrap();
    assert_eq!(v["id"], end["verify"]);
    snap("verify_json", &v);
}

#[test]
fn reload_json_says_whom_it_signalled_or_why_not() {
    let env = TestEnv::new();
    env.src_file("big.bin", &bytes(4 << 20, 9));
    env.run(&[]).assert_code(0);
    // Nothing runs: exit 3, and the object says why.
    let out = env.run(&["reload", "--json"]);
    out.assert_code(3);
    let v = object(&out);
    assert_eq!(v["exit"], 3);
    assert!(
        v["error"].as_str().unwrap().contains("no run of this job"),
        "{v}"
    );

    // A running job (paused, so it waits) takes the signal.
    env.src_file("more.bin", &bytes(1 << 20, 4));
    env.manifest("bwlimit = \"pause\"");
    let run = Running::start(&env, &["--rescan"]);
    wait_for("the paused run to start", Duration::from_secs(20), || {
        env.log_with_status("run_start").len() >= 2
    });
    env.manifest("bwlimit = \"off\"");
    let out = env.run(&["reload", "--json"]);
    out.assert_code(0);
    let v = object(&out);
    assert_eq!(v["pid"], run.pid());
    assert_eq!(v["bwlimit"], "off");
    let done = run.wait(Duration::from_secs(30));
    assert_eq!(done.code, 0, "{}", done.stderr);
}

#[test]
fn status_json_of_a_job_that_never_ran_is_an_error_object() {
    let env = TestEnv::new();
    refused(&env.run(&["status", "--json"]), 2, "never run");
}
