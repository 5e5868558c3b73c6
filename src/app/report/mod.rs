//! `jobrun report JOB.toml --html FILE`: one self-contained HTML page an
//! admin attaches to a change ticket — the job and its roots, entries and
//! bytes per status, every run, the copy rate over time against the limit,
//! the backlog over time, the failures, the last verify, and what the job
//! keeps and leaves out. Built from the state DB (read-only) and the audit
//! log only; the trees are never touched.

mod html;
mod svg;
mod timeline;

use std::io::{BufReader, Write as _};

use camino::Utf8Path;

use super::status::{FailedFile, RunStatus, StatusReport, run_status, status_report};
use super::{Failure, load, out};
use crate::cli::ReportArgs;
use crate::db::StateDb;
use crate::exit::Exit;
use crate::manifest::Job;
use crate::timetable::{self, Limit, Schedule};
use timeline::Timeline;

/// Failed files listed by name; the rest are counted.
const LISTED_FAILURES: usize = 100;

/// One line of the "keeps and leaves out" table.
pub struct Keep {
    pub what: &'static str,
    pub kept: bool,
    pub how: String,
}

/// Everything the page shows, gathered before it is written.
pub struct ReportData {
    pub manifest: String,
    pub generated_at: String,
    pub version: &'static str,
    pub settings: Vec<(&'static str, String)>,
    pub status: StatusReport,
    /// Every run, newest first, and the limit (bytes/s; `None` off, 0
    /// pause) today's `bwlimit` gives at the local time each started.
    pub runs: Vec<RunStatus>,
    pub run_limits: Vec<Option<f64>>,
    pub failures: Vec<FailedFile>,
    pub keeps: Vec<Keep>,
    /// `None` when the audit log could not be read at all.
    pub timeline: Option<Timeline>,
    /// Why the log's charts are missing or partial, said on the page.
    pub log_note: Option<String>,
    /// The limit in force in each bucket of the timeline.
    pub limits: Vec<Option<f64>>,
    pub limit_text: String,
}

/// Bytes/s of a limit: `None` for no limit, 0 for a pause.
fn limit_value(l: Limit) -> Option<f64> {
    match l {
        Limit::Off => None,
        Limit::Rate(r) => Some(r as f64),
        Limit::Pause => Some(0.0),
        // `auto` moves under its ceiling: the ceiling is the line drawn.
        Limit::Auto(c) => c.map(|c| c as f64),
    }
}

fn limit_at_unix(s: &Schedule, unix: i64) -> Option<f64> {
    let l = match s {
        Schedule::Fixed(l) => *l,
        Schedule::Timetable(_) => s.limit_at(timetable::local_week_secs_at(unix)?),
    };
    limit_value(l)
}

fn settings(job: &Job) -> Vec<(&'static str, String)> {
    vec![
        ("manifest", job.manifest.to_string()),
        ("source", job.source.to_string()),
        ("destination", job.destination.to_string()),
        ("state DB", job.db.to_string()),
        ("audit log", job.log.to_string()),
        ("checksum", job.checksum.to_string()),
        ("bwlimit", job.bwlimit.to_string()),
        ("transfers", job.transfers.to_string()),
        (
            "mirror",
            if job.delete_extras {
                format!("on (delete_extras, max_delete {})", job.max_delete)
            } else {
                "off".into()
            },
        ),
    ]
}

fn left_out(n: u64, what: &str, key: &str) -> String {
    if n == 0 {
        format!("{key} = false; none seen in the source")
    } else {
        format!("{key} = false: {n} {what} not copied")
    }
}

fn keeps(job: &Job, s: &StatusReport) -> Vec<Keep> {
    let (linked, sparse) = s.left_out_tree;
    let on = |kept: bool, what: &'static str, yes: &str, no: String| Keep {
        what,
        kept,
        how: if kept { yes.to_string() } else { no },
    };
    vec![
        on(
            true,
            "file bytes",
            &format!("every file hashed ({}) as it is read", job.checksum),
            String::new(),
        ),
        on(
            true,
            "folders, symlinks (as links)",
            "always",
            String::new(),
        ),
        on(
            true,
            "modification times",
            "always, to the nanosecond",
            String::new(),
        ),
        on(
            true,
            "permission bits",
            &format!("permissions = {}", job.permissions),
            String::new(),
        ),
        on(
            job.owners,
            "owner and group",
            "owners = true",
            "owners = false: created entries belong to the user running jobrun".into(),
        ),
        on(
            job.hard_links,
            "hard links",
            "hard_links = true",
            left_out(linked, "files with hard links (last scan)", "hard_links"),
        ),
        on(
            job.sparse,
            "holes (sparse files)",
            "sparse = true",
            left_out(sparse, "sparse files written in full (last scan)", "sparse"),
        ),
        on(
            job.xattrs,
            "extended attributes",
            "xattrs = true",
            left_out(
                s.left_out_xattrs,
                "entries copied without their extended attributes",
                "xattrs",
            ),
        ),
        on(
            job.acls,
            "ACLs",
            "acls = true",
            left_out(s.left_out_acls, "entries copied without their ACLs", "acls"),
        ),
    ]
}

/// The audit log read into its timeline, or why it could not be.
fn read_log(path: &Utf8Path) -> (Option<Timeline>, Option<String>) {
    match std::fs::File::open(path) {
        Ok(f) => {
            let (t, err) = timeline::read(BufReader::with_capacity(1 << 20, f));
            let note = err.map(|e| {
                format!("The audit log `{path}` could not be read to its end ({e}): the charts stop at line {}.", t.lines)
            });
            (Some(t), note)
        }
        Err(e) => (
            None,
            Some(format!(
                "The audit log `{path}` cannot be read ({e}): no rate or backlog chart. The tables come from the state DB."
            )),
        ),
    }
}

/// The DB's runs older than the log's first `run_start`: their lines were
/// rotated away (logrotate keeps them as `LOG.1`, `LOG.2.gz`, …), so the
/// charts leave them out; `None` when the log holds every run's start.
fn rotated_note(log: &Utf8Path, t: &Timeline, runs: &[RunStatus]) -> Option<String> {
    let first = t.run_starts.iter().map(|r| r.1).min();
    let before: Vec<i64> = runs
        .iter()
        .map(|r| r.row.id)
        .filter(|&id| first.is_none_or(|f| id < f))
        .collect();
    let (lo, hi) = (*before.iter().min()?, *before.iter().max()?);
    let which = if lo == hi {
        format!("run {lo}")
    } else {
        format!("runs {lo}–{hi}")
    };
    Some(format!(
        "The audit log `{log}` holds no line of {which} (rotated away? logrotate keeps older lines as `{log}.1`, `{log}.2.gz`, …): the rate and backlog charts leave them out."
    ))
}

fn gather(job: &Job, db: &StateDb) -> Result<ReportData, crate::db::DbError> {
    let status = status_report(job, db)?;
    let running = status.running_pid.is_some();
    let runs: Vec<RunStatus> = db
        .last_runs(usize::MAX >> 1)?
        .into_iter()
        .enumerate()
        .map(|(i, row)| run_status(row, i == 0 && running))
        .collect();
    let run_limits = runs
        .iter()
        .map(|r| {
            let start = humantime::parse_rfc3339(&r.row.started_at).ok()?;
            let unix = start.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
            limit_at_unix(&job.bwlimit, i64::try_from(unix).ok()?)
        })
        .collect();
    let failures = super::status::failed_files(db, LISTED_FAILURES)?;
    let (timeline, mut log_note) = read_log(&job.log);
    if let Some(rotated) = timeline
        .as_ref()
        .and_then(|t| rotated_note(&job.log, t, &runs))
    {
        log_note = Some(log_note.map_or(rotated.clone(), |n| format!("{n} {rotated}")));
    }
    let limits = timeline.as_ref().map_or_else(Vec::new, |t| {
        (0..t.bytes.len())
            .map(|i| limit_at_unix(&job.bwlimit, t.at(i) + t.bucket_secs / 2))
            .collect()
    });
    Ok(ReportData {
        manifest: job.manifest.to_string(),
        generated_at: crate::clock::now_rfc3339(),
        version: env!("CARGO_PKG_VERSION"),
        settings: settings(job),
        keeps: keeps(job, &status),
        status,
        runs,
        run_limits,
        failures,
        timeline,
        log_note,
        limits,
        limit_text: job.bwlimit.to_string(),
    })
}

/// Writes `text` to `path` whole or not at all (a sibling temporary file,
/// renamed over it).
fn write_whole(path: &Utf8Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or("report.html");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

pub fn report(args: &ReportArgs) -> Result<Exit, Failure> {
    let job = load(&args.common)?;
    let db = super::job_db(&job)?;
    let data = gather(&job, &db).map_err(|e| Failure::new(e, Exit::Fatal))?;
    let page = html::render(&data);
    write_whole(&args.html, &page).map_err(|e| {
        Failure::new(
            format!("cannot write the report `{}`: {e}", args.html),
            Exit::Fatal,
        )
    })?;
    if let Some(note) = &data.log_note {
        let _ = writeln!(std::io::stderr(), "jobrun: {note}");
    }
    // Written, but without (part of) its charts: exit 1, as a verify that
    // could not compare everything, so a script filing the page can tell.
    let (exit, incomplete) = match data.log_note {
        Some(_) => (Exit::FilesFailed, " (incomplete: see the audit log's note)"),
        None => (Exit::Ok, ""),
    };
    out(&format!(
        "jobrun: report written to {}{incomplete}: {} runs, {} failed files\n",
        args.html,
        data.runs.len(),
        data.status.failed_total
    ));
    Ok(exit)
}
