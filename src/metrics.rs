//! `metrics_file`: the job's figures as a Prometheus text-format file for
//! node exporter's textfile collector, which serves whatever `*.prom` files
//! its folder holds. The file is replaced atomically (written beside it
//! under a name the collector ignores, then renamed over it), so a scrape
//! never reads half a file. This module renders and writes; the run
//! samples the figures (`app/run.rs`).
//!
//! The job is the `jobrun_job` label, not `job`: Prometheus sets `job` on
//! every scraped series itself (the scrape job), and would rename ours to
//! `exported_job`.

use std::fmt::Write as _;
use std::io::{self, Write as _};

use camino::Utf8Path;

use crate::throttle::Limit;

/// The figures of one write.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The `jobrun_job` label: the manifest's stem (`archive`).
    pub job: String,
    /// Per status (`pending`, `synced`, `failed`): entries and bytes of
    /// their files, as the state DB holds them.
    pub statuses: Vec<(String, u64, u64)>,
    /// Sizes of the entries synced by this run.
    pub run_copied_bytes: u64,
    /// Sizes of the entries synced by all runs, this one included.
    pub copied_bytes_total: u64,
    /// Bytes written to the destination this run, partial files included.
    pub run_written_bytes: u64,
    /// Bytes written per second over the last few seconds.
    pub rate: f64,
    /// The limit in force (`None` outside the transfer).
    pub limit: Option<Limit>,
    pub files_in_flight: u64,
    /// Entries that failed this run.
    pub run_failed: u64,
    pub running: bool,
    /// Unix seconds.
    pub run_start: f64,
    pub run_end: Option<f64>,
    pub exit_code: Option<i32>,
    pub heartbeat: f64,
}

/// The file's text: HELP and TYPE before each metric family.
pub fn render(s: &Sample) -> String {
    let mut text = Families {
        job: format!("jobrun_job=\"{}\"", escape(&s.job)),
        out: String::new(),
    };
    state_db_families(&mut text, s);
    transfer_families(&mut text, s);
    run_families(&mut text, s);
    text.out
}

/// The text being rendered, and the job label every sample line carries.
struct Families {
    job: String,
    out: String,
}

impl Families {
    /// One family: its HELP and TYPE lines, then one line per
    /// (extra labels, value).
    fn family(&mut self, name: &str, kind: &str, help: &str, rows: &[(String, f64)]) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(self.out, "{name}{{{}{labels}}} {}", self.job, number(*v));
        }
    }

    /// A gauge with one unlabelled sample.
    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.family(name, "gauge", help, &[(String::new(), v)]);
    }
}

/// The state DB's figures: entries and their bytes per status.
fn state_db_families(text: &mut Families, s: &Sample) {
    let by_status = |pick: fn(&(String, u64, u64)) -> u64| -> Vec<(String, f64)> {
        s.statuses
            .iter()
            .map(|st| (format!(",status=\"{}\"", escape(&st.0)), pick(st) as f64))
            .collect()
    };
    text.family(
        "jobrun_entries",
        "gauge",
        "Entries in the job's state DB by status (files, folders and symlinks).",
        &by_status(|st| st.1),
    );
    text.family(
        "jobrun_entries_size_bytes",
        "gauge",
        "Bytes of the files in the job's state DB by status.",
        &by_status(|st| st.2),
    );
}

/// What the transfer copied and writes now: bytes, rate, limit, files in
/// flight, failures.
fn transfer_families(text: &mut Families, s: &Sample) {
    text.gauge(
        "jobrun_run_copied_bytes",
        "Bytes written for the entries synced by the current (or last) run (holes and hard-linked names write none).",
        s.run_copied_bytes as f64,
    );
    text.family(
        "jobrun_copied_bytes_total",
        "counter",
        "Bytes written for the entries synced by all runs of the job (holes and hard-linked names write none).",
        &[(String::new(), s.copied_bytes_total as f64)],
    );
    text.gauge(
        "jobrun_run_written_bytes",
        "Bytes written to the destination by the current (or last) run, partial files included.",
        s.run_written_bytes as f64,
    );
    text.gauge(
        "jobrun_rate_bytes_per_second",
        "Bytes written per second over the last 10 seconds.",
        s.rate,
    );
    if let Some(l) = s.limit {
        let v = match l {
            Limit::Off => f64::INFINITY,
            Limit::Pause => 0.0,
            Limit::Rate(r) => r as f64,
            // Before `auto` has a rate of its own: its ceiling.
            Limit::Auto(c) => c.map_or(f64::INFINITY, |c| c as f64),
        };
        text.gauge(
            "jobrun_bwlimit_bytes_per_second",
            "Bandwidth limit in force (+Inf: none, 0: paused; under auto the rate it holds now).",
            v,
        );
    }
    text.gauge(
        "jobrun_files_in_flight",
        "Files the transfer lanes are copying now.",
        s.files_in_flight as f64,
    );
    text.gauge(
        "jobrun_run_failed_entries",
        "Entries that failed in the current (or last) run.",
        s.run_failed as f64,
    );
}

/// The run itself: going or not, its start and end, its exit code, and
/// the heartbeat.
fn run_families(text: &mut Families, s: &Sample) {
    text.gauge(
        "jobrun_running",
        "1 while a run of the job is going, 0 once it ended.",
        if s.running { 1.0 } else { 0.0 },
    );
    text.gauge(
        "jobrun_last_run_start_timestamp_seconds",
        "Start of the current (or last) run, Unix time.",
        s.run_start,
    );
    if let Some(end) = s.run_end {
        text.gauge(
            "jobrun_last_run_end_timestamp_seconds",
            "End of the last run, Unix time.",
            end,
        );
    }
    if let Some(code) = s.exit_code {
        text.gauge(
            "jobrun_last_run_exit_code",
            "Exit code of the last run (0 ok, 1 files failed, 4 aborted, 130 stopped).",
            f64::from(code),
        );
    }
    text.gauge(
        "jobrun_heartbeat_timestamp_seconds",
        "When the run last wrote this file, Unix time (every second while it goes).",
        s.heartbeat,
    );
}

/// Replaces `path` with `text` atomically: written to `<path>.<pid>.tmp`
/// in the same folder (not `*.prom`, so the collector never reads it), then
/// renamed over `path`.
pub fn write_atomic(path: &Utf8Path, text: &str) -> io::Result<()> {
    let tmp = format!("{path}.{}.tmp", std::process::id());
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Label values escape `\`, `"` and newlines (text format 0.0.4).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_labels() {
        let s = Sample {
            job: "ar\"ch\\ive".into(),
            statuses: vec![("pending".into(), 3, 300), ("synced".into(), 5, 500)],
            limit: Some(Limit::Off),
            run_start: 1_764_000_000.5,
            heartbeat: 1_764_000_010.0,
            exit_code: Some(1),
            ..Sample::default()
        };
        let text = render(&s);
        assert!(
            text.contains("# TYPE jobrun_copied_bytes_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("jobrun_entries{jobrun_job=\"ar\\\"ch\\\\ive\",status=\"synced\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("jobrun_bwlimit_bytes_per_second{jobrun_job=\"ar\\\"ch\\\\ive\"} +Inf\n")
        );
        assert!(text.contains("jobrun_last_run_start_timestamp_seconds{jobrun_job=\"ar\\\"ch\\\\ive\"} 1764000000.500\n"));
        assert!(text.contains("jobrun_last_run_exit_code{"));
        assert!(
            !text.contains("jobrun_last_run_end_timestamp_seconds{"),
            "not ended: no end"
        );
        // Every sample line belongs to a family announced just before.
        let mut announced = String::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                announced = rest.split(' ').next().unwrap().to_string();
            } else if !l.starts_with('#') {
                assert!(l.starts_with(&format!("{announced}{{")), "{l}");
            }
        }
    }

    /// The whole text, byte for byte: every family present, then every
    /// optional one absent.
    #[test]
    fn renders_every_family_in_order() {
        let full = Sample {
            job: "archive".into(),
            statuses: vec![
                ("failed".into(), 1, 10),
                ("pending".into(), 3, 300),
                ("synced".into(), 5, 500),
            ],
            run_copied_bytes: 500,
            copied_bytes_total: 1_500,
            run_written_bytes: 640,
            rate: 12.345_6,
            limit: Some(Limit::Rate(1_048_576)),
            files_in_flight: 2,
            run_failed: 1,
            running: false,
            run_start: 1_764_000_000.5,
            run_end: Some(1_764_000_100.0),
            exit_code: Some(1),
            heartbeat: 1_764_000_100.25,
        };
        let bare = Sample {
            job: "bare".into(),
            running: true,
            ..Sample::default()
        };
        let paused = Sample {
            limit: Some(Limit::Pause),
            ..bare.clone()
        };
        insta::assert_snapshot!(format!(
            "{}---\n{}---\n{}",
            render(&full),
            render(&bare),
            render(&paused)
        ));
    }

    #[test]
    fn writes_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = camino::Utf8PathBuf::from_path_buf(dir.path().join("j.prom")).unwrap();
        write_atomic(&path, "a 1\n").unwrap();
        write_atomic(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
