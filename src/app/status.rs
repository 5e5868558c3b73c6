//! `jobrun status JOB.toml`: what the state DB says, read-only: counts per
//! status, backlog and ETA, the last runs, failed files (`--json` for
//! scripts).

use serde::Serialize;

use super::{Failure, load, out};
use crate::cli::StatusArgs;
use crate::db::{RowStatus, RunRow, StateDb, StatusCount};
use std::time::Duration;

use crate::decide;
use crate::manifest::Job;
use crate::progress;
use crate::runner::Exit;
use crate::units::{HumanRate, human_bytes};

/// Runs whose mean rate gives `status` its ETA.
const RATE_RUNS: usize = 5;
/// Runs listed by `status`.
const SHOWN_RUNS: usize = 5;
/// Failed rows listed by `status`.
const SHOWN_FAILED: usize = 5;

/// What `jobrun status` reports, read from the state DB only; `--json`
/// prints this struct as it is.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub db: String,
    /// Pid of the run holding the job's lock right now, if any.
    pub running_pid: Option<u32>,
    /// The files that run's lanes are copying, as of its last commit (at
    /// most a second old); empty when no run is going.
    pub in_flight: Vec<InFlight>,
    /// Files and bytes per status (`pending`, `synced`, `failed`); bytes
    /// count regular files only.
    pub counts: Vec<StatusCount>,
    /// Pending entries (folders included) and pending file bytes.
    pub backlog_files: u64,
    pub backlog_bytes: u64,
    /// `resume` or `scan`: what the next run does.
    pub next_run: &'static str,
    /// Mean copy rate of the last runs that copied data (bytes over their
    /// whole run time, scans included), bytes/s.
    pub recent_rate: Option<f64>,
    /// How many runs `recent_rate` is the mean of.
    pub recent_rate_runs: usize,
    /// Run time the backlog needs at `recent_rate`, seconds.
    pub eta_seconds: Option<u64>,
    /// The last runs, newest first.
    pub runs: Vec<RunStatus>,
    pub failed_total: u64,
    /// Failed rows that failed in 2 or more runs in a row, and the most
    /// runs in a row any failed row failed.
    pub failed_repeatedly: u64,
    pub longest_fail_streak: u64,
    /// A few failed rows with their errors, the longest streaks first.
    pub failed_sample: Vec<FailedFile>,
    /// The last `jobrun verify`, if any (`ended_at` null: killed or running).
    pub last_verify: Option<crate::db::VerifyRecord>,
    /// Entries copied, over every run, without the extended attributes and
    /// without the ACLs they carry (`xattrs`, `acls` off).
    pub left_out_xattrs: u64,
    pub left_out_acls: u64,
    /// The last scan's source files whose hard links and whose holes the
    /// job leaves out (`hard_links`, `sparse` off).
    pub left_out_tree: (u64, u64),
}

#[derive(Debug, Serialize)]
pub struct RunStatus {
    #[serde(flatten)]
    pub row: RunRow,
    /// `ended_at - started_at`; `None` while running or after a kill.
    pub seconds: Option<f64>,
    /// `running`, `unfinished` (killed, no end recorded) or the exit reason.
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct InFlight {
    pub lane: u32,
    /// Relative to the destination root.
    pub path: String,
    pub size: u64,
    /// Bytes written so far.
    pub bytes_done: u64,
}

#[derive(Debug, Serialize)]
pub struct FailedFile {
    pub path: String,
    pub error: String,
    /// Runs in a row this file failed (1: only the last one).
    pub runs_in_a_row: u64,
}

fn run_seconds(r: &RunRow) -> Option<f64> {
    let start = humantime::parse_rfc3339(&r.started_at).ok()?;
    let end = humantime::parse_rfc3339(r.ended_at.as_deref()?).ok()?;
    Some(end.duration_since(start).ok()?.as_secs_f64())
}

fn exit_reason(code: i32) -> &'static str {
    match code {
        0 => Exit::Ok.reason(),
        1 => Exit::FilesFailed.reason(),
        2 => Exit::Usage.reason(),
        3 => Exit::Locked.reason(),
        4 => Exit::Fatal.reason(),
        130 => Exit::Interrupted.reason(),
        _ => "unknown",
    }
}

pub(super) fn status_report(job: &Job, db: &StateDb) -> Result<StatusReport, crate::db::DbError> {
    let counts = db.status_counts()?;
    let (left_out_xattrs, left_out_acls) = db.left_out()?;
    let (backlog_files, backlog_bytes) = db.backlog()?;
    let trusted = db.last_scan_complete()?;
    let rows = db.last_runs(SHOWN_RUNS.max(50))?;
    // A live holder of the lock whose run has not recorded its end: a pid
    // reused after a kill, by another job's run, is not taken for this one.
    let running_pid =
        crate::lock::holder(&job.db).filter(|_| rows.first().is_some_and(|r| r.ended_at.is_none()));
    let rated: Vec<(u64, f64)> = rows
        .iter()
        .filter(|r| r.bytes_done > 0)
        .filter_map(|r| Some((r.bytes_done, run_seconds(r)?)))
        .take(RATE_RUNS)
        .collect();
    let recent_rate = progress::mean_rate(rated.iter().copied());
    let in_flight = match (running_pid, rows.first()) {
        (Some(_), Some(run)) => db
            .in_flight(run.id)?
            .into_iter()
            .map(|f| InFlight {
                lane: f.lane,
                path: f.path.display().to_string(),
                size: f.size,
                bytes_done: f.done,
            })
            .collect(),
        _ => Vec::new(),
    };
    let runs = rows
        .into_iter()
        .take(SHOWN_RUNS)
        .enumerate()
        .map(|(i, row)| run_status(row, i == 0 && running_pid.is_some()))
        .collect();
    let failed_total = counts
        .iter()
        .find(|c| c.status == RowStatus::Failed)
        .map_or(0, |c| c.files);
    let (failed_repeatedly, longest_fail_streak) = db.fail_streaks()?;
    Ok(StatusReport {
        db: job.db.to_string(),
        running_pid,
        in_flight,
        backlog_files,
        backlog_bytes,
        next_run: decide::run_mode(backlog_files, backlog_bytes, !trusted).name(),
        recent_rate,
        recent_rate_runs: rated.len(),
        eta_seconds: progress::eta(backlog_bytes, recent_rate).map(|d| d.as_secs()),
        counts,
        runs,
        failed_total,
        failed_repeatedly,
        longest_fail_streak,
        failed_sample: failed_files(db, SHOWN_FAILED)?,
        last_verify: db.last_verify()?,
        left_out_xattrs,
        left_out_acls,
        left_out_tree: db.tree_left_out()?,
    })
}

/// A run's row with its duration and state; `running` for the newest row
/// of a job whose lock is held now.
pub(super) fn run_status(row: RunRow, running: bool) -> RunStatus {
    let state = match row.exit_code {
        Some(c) => exit_reason(c).to_string(),
        None if running => "running".into(),
        None => "unfinished".into(),
    };
    RunStatus {
        seconds: run_seconds(&row),
        state,
        row,
    }
}

/// The first `n` failed files, the longest streaks first.
pub(super) fn failed_files(db: &StateDb, n: usize) -> Result<Vec<FailedFile>, crate::db::DbError> {
    Ok(db
        .failed_sample(n)?
        .into_iter()
        .map(|(p, error, runs_in_a_row)| FailedFile {
            path: p.display().to_string(),
            error,
            runs_in_a_row,
        })
        .collect())
}

/// Text from names and errors as the terminal shows it: a control
/// character (an escape sequence, a newline in a file name) is `?`, as on
/// the progress lines; `--json` escapes them instead.
fn printable(s: &str) -> String {
    progress::printable(s)
}

/// The text form of `status` (see docs/running.md "Reading `status`").
pub fn render_status(r: &StatusReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "db        {}", printable(&r.db));
    let state = match r.running_pid {
        Some(pid) => {
            // The rate in force, as the running run's row last recorded it.
            let limit = r.runs.first().and_then(|run| run.row.bwlimit.as_deref());
            match limit {
                Some(l) => format!("running (pid {pid}); limit {}", limit_text(l)),
                None => format!("running (pid {pid})"),
            }
        }
        None => "idle".into(),
    };
    let _ = writeln!(o, "state     {state}; next run: {}", r.next_run);
    render_in_flight(&mut o, &r.in_flight);
    let _ = writeln!(o);
    let _ = writeln!(o, "{:<9} {:>12} {:>12}", "status", "entries", "bytes");
    for c in &r.counts {
        let _ = writeln!(
            o,
            "{:<9} {:>12} {:>12}",
            c.status,
            c.files,
            human_bytes(c.bytes)
        );
    }
    let _ = writeln!(o);
    if r.backlog_files == 0 {
        let _ = writeln!(
            o,
            "backlog   empty: the next run scans both trees for changes"
        );
    } else {
        let eta = match (r.eta_seconds, r.recent_rate) {
            (Some(s), Some(rate)) => format!(
                "eta {} of run time at {} (mean of the last {} run{} that copied data)",
                progress::fmt_duration(Duration::from_secs(s)),
                HumanRate(rate),
                r.recent_rate_runs,
                if r.recent_rate_runs == 1 { "" } else { "s" },
            ),
            _ => "eta unknown: no run has copied data yet".into(),
        };
        let _ = writeln!(
            o,
            "backlog   {}, {}; {eta}",
            progress::count(r.backlog_files, "entry", "entries"),
            human_bytes(r.backlog_bytes)
        );
    }
    if let Some(line) = crate::xattrs::left_out_line(r.left_out_xattrs, r.left_out_acls) {
        let _ = writeln!(o, "left out  {line} (over every run)");
    }
    let (linked, sparse) = r.left_out_tree;
    if let Some(line) = crate::fsmeta::tree_left_out_line(linked, sparse) {
        let _ = writeln!(o, "left out  {line} (last scan)");
    }
    let _ = writeln!(o);
    render_runs(&mut o, r);
    // Why the last aborted runs stopped: the `error` of the `runs` row.
    let errors: Vec<_> = r
        .runs
        .iter()
        .filter_map(|run| Some((run.row.id, run.row.error.as_deref()?)))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "why runs stopped, newest first:");
        for (id, error) in errors {
            let _ = writeln!(o, "  run {id}: {}", printable(error));
        }
    }
    if let Some(v) = &r.last_verify {
        let _ = writeln!(o);
        let _ = writeln!(o, "{}", verify_line(v));
    }
    render_failed(&mut o, r);
    o
}

/// The failed files, the longest streaks first, and how many keep failing.
fn render_failed(o: &mut String, r: &StatusReport) {
    use std::fmt::Write as _;
    if r.failed_total == 0 {
        return;
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "failed files ({} of {}; all are retried by the next scan):",
        r.failed_sample.len(),
        r.failed_total
    );
    for f in &r.failed_sample {
        let streak = match f.runs_in_a_row {
            0 | 1 => String::new(),
            n => format!(" ({n} runs in a row)"),
        };
        let _ = writeln!(
            o,
            "  {}{streak}: {}",
            printable(&f.path),
            printable(&f.error)
        );
    }
    if r.failed_repeatedly > 0 {
        let _ = writeln!(
            o,
            "{} failed in 2 or more runs in a row (at most {}): a file that changes all \
             the time (a log) is never copied whole; exclude it, or copy it while it is quiet",
            progress::count(r.failed_repeatedly, "file", "files"),
            progress::count(r.longest_fail_streak, "run", "runs"),
        );
    }
}

/// `in flight 2 files`, then one line per file: bytes written of its size.
fn render_in_flight(o: &mut String, files: &[InFlight]) {
    use std::fmt::Write as _;
    if files.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "in flight {} (as of the run's last commit):",
        progress::count(files.len() as u64, "file", "files")
    );
    for f in files {
        let pct = (f.bytes_done.min(f.size) * 100)
            .checked_div(f.size)
            .unwrap_or(100);
        let _ = writeln!(
            o,
            "  {:>10} / {:<10} {pct:>3}%  {}",
            human_bytes(f.bytes_done),
            human_bytes(f.size),
            printable(&f.path)
        );
    }
}

/// `last verify  3 at 2026-12-01 22:00:00: 10 files, …, exit 1 (…)`.
pub(super) fn verify_line(v: &crate::db::VerifyRecord) -> String {
    let started: String = v.started_at.replace('T', " ").chars().take(19).collect();
    let end = match v.exit_code {
        Some(c) => {
            let exit = match c {
                0 => Exit::Ok,
                1 => Exit::FilesFailed,
                130 => Exit::Interrupted,
                _ => Exit::Fatal,
            };
            format!("exit {c} ({})", super::verify::reason(v, exit))
        }
        None => "unfinished (the next verify resumes it)".into(),
    };
    let sample = match (v.sample, v.seed) {
        (Some(p), Some(seed)) => format!(", sample {p}% seed {seed}"),
        _ => String::new(),
    };
    format!(
        "last verify {} started {started} (UTC){sample}: {}, {} read: {} verified, {} mismatch, {} missing, {} failed, {} skipped; {end}",
        v.id,
        progress::count(v.files, "file", "files"),
        human_bytes(v.bytes),
        v.ok,
        v.mismatched,
        v.missing,
        v.failed,
        v.skipped,
    )
}

/// A `runs` row's `bwlimit` (`2097152 B/s`, `auto, 9751756 B/s`, `off`,
/// `pause`, `auto`) for a person: `2.0 MiB/s`, `auto 9.3 MiB/s`.
fn limit_text(stored: &str) -> String {
    let rate = |r: &str| {
        r.strip_suffix(" B/s")
            .and_then(|n| n.parse::<u64>().ok())
            .map(|n| HumanRate(n as f64).to_string())
    };
    match stored.strip_prefix("auto, ") {
        Some(r) => rate(r).map_or_else(|| stored.to_string(), |h| format!("auto {h}")),
        None => rate(stored).unwrap_or_else(|| stored.to_string()),
    }
}

/// The "last runs" table of `status`.
fn render_runs(o: &mut String, r: &StatusReport) {
    use std::fmt::Write as _;
    if r.runs.is_empty() {
        let _ = writeln!(o, "no runs yet");
    } else {
        let _ = writeln!(o, "last runs, newest first:");
        let _ = writeln!(
            o,
            "{:>5}  {:<19}  {:>8}  {:<6}  {:>9}  {:>11}  {:>6}  {:<16}  exit",
            "run", "started (UTC)", "took", "mode", "files", "bytes", "failed", "limit"
        );
        for r in &r.runs {
            let row = &r.row;
            // RFC 3339 to the second, `T` and `Z` dropped: easier to read.
            let started: String = row.started_at.replace('T', " ").chars().take(19).collect();
            let took = r.seconds.map_or("-".to_string(), |s| {
                progress::fmt_duration(Duration::from_secs_f64(s))
            });
            let mut exit = row
                .exit_code
                .map_or(r.state.clone(), |c| format!("{c} {}", r.state));
            if row.dry_run {
                exit.push_str(" (dry run)");
            }
            let _ = writeln!(
                o,
                "{:>5}  {:<19}  {:>8}  {:<6}  {:>9}  {:>11}  {:>6}  {:<16}  {exit}",
                row.id,
                started,
                took,
                row.mode,
                row.files_done,
                human_bytes(row.bytes_done),
                row.failures,
                row.bwlimit.as_deref().map_or("-".into(), limit_text),
            );
        }
    }
}

pub fn status(args: &StatusArgs) -> Result<Exit, Failure> {
    let job = load(&args.common)?;
    if args.common.shard.is_none()
        && let Some(plan) = super::shard::plan_of(&job)?
    {
        return super::shards_status::status_all(&job, &plan, args.json);
    }
    let db = super::job_db(&job)?;
    let report = status_report(&job, &db).map_err(|e| Failure::new(e, Exit::Fatal))?;
    if args.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Failure::new(e, Exit::Fatal))?;
        out(&format!("{text}\n"));
    } else {
        out(&render_status(&report));
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, start: &str, end: Option<&str>, bytes: u64, exit: Option<i32>) -> RunRow {
        RunRow {
            id,
            started_at: start.into(),
            ended_at: end.map(Into::into),
            mode: "scan".into(),
            files_done: 7,
            bytes_done: bytes,
            failures: 0,
            exit_code: exit,
            dry_run: false,
            error: None,
            bwlimit: None,
        }
    }

    #[test]
    fn run_time_comes_from_the_recorded_timestamps() {
        let r = run(
            1,
            "2026-11-24T03:57:25.500000Z",
            Some("2026-11-24T04:57:26.000000Z"),
            1,
            Some(0),
        );
        assert_eq!(run_seconds(&r), Some(3600.5));
        assert_eq!(
            run_seconds(&run(2, "2026-11-24T03:57:25Z", None, 1, None)),
            None
        );
        assert_eq!(run_seconds(&run(3, "garbage", Some("x"), 1, None)), None);
    }

    #[test]
    fn exit_reasons_match_the_enum() {
        for e in [Exit::Ok, Exit::FilesFailed, Exit::Fatal, Exit::Interrupted] {
            assert_eq!(exit_reason(i32::from(e.code())), e.reason());
        }
    }
}
