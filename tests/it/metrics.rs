//! `metrics_file`: a Prometheus textfile rewritten while the run goes and
//! at its end, checked with the real parser (`promtool check metrics`,
//! Debian's `prometheus` package; the test says so and passes when it is
//! missing).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::{Out, TestEnv, bytes};

const MIB: usize = 1 << 20;

/// `promtool check metrics` on the file's text; `None` without promtool.
fn promtool(text: &str) -> Option<Out> {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap().into())
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
#[ignore = "needs promtool (Debian's prometheus)"]
fn metrics_file_passes_promtool_mid_run_and_at_the_end() {
    assert!(
        promtool("").is_some(),
        "promtool not found (apt-get install prometheus)"
    );
    let env = TestEnv::new();
    env.src_file("a.bin", &bytes(6 * MIB, 1));
    env.src_file("d/b.bin", &bytes(MIB, 2));
    std::fs::create_dir(env.root().join("textfile")).unwrap();
    env.manifest("bwlimit = \"2M\"\nmetrics_file = \"textfile/job.prom\"");
    let prom = env.root().join("textfile/job.prom");
    let child = env
        .cmd()
        .arg(&env.manifest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Mid-run: bytes written, still running, the limit in force.
    let start = Instant::now();
    let mid = loop {
        let t = read(&prom);
        if value(&t, "jobrun_run_written_bytes{jobrun_job=\"job\"}").is_some_and(|b| b > 0.0) {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no mid-run metrics: {t}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let beat = check_mid_run(&mid);

    let out: Out = child.wait_with_output().unwrap().into();
    out.assert_code(0);
    env.assert_trees_equal();
    let end = read(&prom);
    let out = promtool(&end).unwrap();
    assert_eq!(
        out.code, 0,
        "promtool at the end: {}{}\n{end}",
        out.stdout, out.stderr
    );
    let v = |s: &str| value(&end, s).unwrap_or_else(|| panic!("no {s}:\n{end}"));
    assert_eq!(v("jobrun_running{jobrun_job=\"job\"}"), 0.0);
    assert_eq!(v("jobrun_last_run_exit_code{jobrun_job=\"job\"}"), 0.0);
    assert_eq!(
        v("jobrun_copied_bytes_total{jobrun_job=\"job\"}"),
        (7 * MIB) as f64
    );
    assert_eq!(
        v("jobrun_run_copied_bytes{jobrun_job=\"job\"}"),
        (7 * MIB) as f64
    );
    assert_eq!(
        v("jobrun_entries_size_bytes{jobrun_job=\"job\",status=\"synced\"}"),
        (7 * MIB) as f64
    );
    assert_eq!(
        v("jobrun_entries{jobrun_job=\"job\",status=\"pending\"}"),
        0.0
    );
    assert_eq!(v("jobrun_run_failed_entries{jobrun_job=\"job\"}"), 0.0);
    assert!(v("jobrun_heartbeat_timestamp_seconds{jobrun_job=\"job\"}") >= beat);
    assert!(
        v("jobrun_last_run_end_timestamp_seconds{jobrun_job=\"job\"}")
            >= v("jobrun_last_run_start_timestamp_seconds{jobrun_job=\"job\"}") + 2.0,
        "7 MiB at 2 MiB/s take > 2 s:\n{end}"
    );
    // Only the renamed file is left: no temporary beside it.
    let names: Vec<_> = std::fs::read_dir(env.root().join("textfile"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["job.prom"]);
}

/// Off by default: a job without the key writes no metrics.
#[test]
fn no_metrics_without_metrics_file() {
    let env = TestEnv::new();
    env.src_file("a.bin", b"x");
    env.run(&[]).assert_code(0);
    assert!(
        !std::fs::read_dir(env.root()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".prom")),
        "metrics written without metrics_file"
    );
}

#[test]
#[ignore = "needs promtool (Debian's prometheus)"]
fn documented_alert_rules_pass_promtool() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let metrics = &doc[doc
        .find("## Metrics")
        .expect("docs/metrics.md has a Metrics section")..];
    let yaml = metrics
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block in Metrics");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("jobrun.rules.yml");
    std::fs::write(&rules, yaml).unwrap();
    let Ok(out) = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
    else {
        panic!("promtool not found (apt-get install prometheus)");
    };
    let out: Out = out.into();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("SUCCESS: 2 rules found"),
        "{}",
        out.stdout
    );
}

/// Mid-run: promtool passes, the run is running with the limit in force
/// and no exit code yet. Returns the heartbeat.
fn check_mid_run(mid: &str) -> f64 {
    let out = promtool(mid).unwrap();
    assert_eq!(
        out.code, 0,
        "promtool mid-run: {}{}\n{mid}",
        out.stdout, out.stderr
    );
    assert_eq!(
        value(mid, "jobrun_running{jobrun_job=\"job\"}"),
        Some(1.0),
        "{mid}"
    );
    assert_eq!(
        value(mid, "jobrun_bwlimit_bytes_per_second{jobrun_job=\"job\"}"),
        Some(2.0 * MIB as f64),
        "{mid}"
    );
    assert!(
        value(mid, "jobrun_last_run_exit_code{jobrun_job=\"job\"}").is_none(),
        "{mid}"
    );
    assert!(
        mid.contains("# TYPE jobrun_copied_bytes_total counter"),
        "{mid}"
    );
    value(
        mid,
        "jobrun_heartbeat_timestamp_seconds{jobrun_job=\"job\"}",
    )
    .unwrap()
}
