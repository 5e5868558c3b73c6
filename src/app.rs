//! Command dispatch: turns a parsed [`Cli`] into an exit code. `main.rs`
//! only parses arguments, sets up tracing and calls [`run`].

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::cli::{Cli, Command, CommonArgs, StatusArgs};
use crate::db::{RunRow, StateDb, StatusCount};
use crate::decide;
use crate::manifest::{self, Job};
use crate::modes::Permissions;
use crate::progress::{self, Progress, Reporter, Style, Summary, summary_line};
use crate::runner::{self, Exit};
use crate::throttle::{Schedule, rate_text};
use crate::units::{HumanRate, human_bytes};
use serde::Serialize;

/// Runs one command; every error has already been printed as one line
/// prefixed `jobrun:` when this returns.
pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Some(Command::Check(args)) => check(&args),
        Some(Command::Status(args)) => status(&args),
        None => run_job(cli),
    }
}

fn fail(msg: impl std::fmt::Display, exit: Exit) -> Exit {
    let _ = writeln!(std::io::stderr(), "jobrun: {msg}");
    exit
}

/// Prints to stdout; a closed stdout (`| head`) is not an error worth a
/// panic, the exit code still tells what happened.
fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

fn load(args: &CommonArgs) -> Result<Job, Exit> {
    manifest::load(&args.job, &args.overrides).map_err(|e| fail(e, Exit::Usage))
}

/// [`load`], refusing what this user cannot run (`run` and `check`).
fn load_runnable(path: &std::path::Path, overrides: &crate::cli::Overrides) -> Result<Job, Exit> {
    // SAFETY: plain syscall without arguments.
    let euid = unsafe { libc::geteuid() };
    manifest::load(path, overrides)
        .and_then(|job| job.check_privileges(euid).map(|()| job))
        .map_err(|e| fail(e, Exit::Usage))
}

fn run_job(cli: Cli) -> Exit {
    let args = cli.run;
    let path = args
        .job
        .expect("clap requires JOB.toml without a subcommand");
    let job = match load_runnable(&path, &args.overrides) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal exits at once (still safe: temps are cleaned by the
        // next scan, uncommitted rows are simply copied again).
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let style = Style::pick(args.quiet, job.progress_interval);
    let progress = Progress::default();
    let started = Instant::now();
    let dry_run = args.dry_run;
    let reporter = Reporter::start(&progress, style);
    let opts = runner::RunOptions {
        rescan: args.rescan,
        dry_run: args.dry_run,
    };
    let result = runner::run(&job, opts, &progress, &stop, &|l| reporter.say(l));
    drop(reporter);
    match result {
        Ok(runner::Finished { report, error }) => {
            if let Some(e) = &error {
                fail(runner::describe(e, &job), report.exit);
            }
            // Every recorded run ends with its summary line, so a cron mail
            // always says what was done before an abort; its figures are the
            // `run_end` line's and the `runs` row's.
            out(&format!("{}\n", report.summary()));
            report.exit
        }
        Err(e) => {
            let exit = e.exit();
            fail(runner::describe(&e, &job), exit);
            // Not recorded (DB or log unusable): nothing was done.
            if exit == Exit::Fatal {
                out(&format!(
                    "{}\n",
                    summary_line(&Summary {
                        files: 0,
                        bytes: 0,
                        failed: 0,
                        deleted: None,
                        dry_run,
                        elapsed: started.elapsed(),
                        mode: None,
                        exit_code: exit.code(),
                        reason: exit.reason(),
                    })
                ));
            }
            exit
        }
    }
}

fn check(args: &CommonArgs) -> Exit {
    let job = match load_runnable(&args.job, &args.overrides) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let mut out = String::new();
    let rows: Vec<(&str, String)> = vec![
        ("manifest", job.manifest.to_string()),
        ("source", job.source.to_string()),
        ("destination", job.destination.to_string()),
        ("db", job.db.to_string()),
        ("log", job.log.to_string()),
        ("checksum", job.checksum.to_string()),
        (
            "block_size",
            format!(
                "{} ({} bytes)",
                human_bytes(job.block_size as u64),
                job.block_size
            ),
        ),
        (
            "queue_capacity",
            format!(
                "{} (FIFO memory up to {})",
                job.queue_capacity,
                human_bytes(job.fifo_bytes())
            ),
        ),
        (
            "transfers",
            format!(
                "{} (files at once; {} queued blocks each)",
                job.transfers,
                job.lane_capacity()
            ),
        ),
        (
            "bwlimit",
            match &job.bwlimit {
                Schedule::Fixed(r) => r.map_or("off".into(), |b| {
                    format!("{}/s ({b} bytes/s)", human_bytes(b))
                }),
                t @ Schedule::Timetable(_) => {
                    format!("timetable {t} (now {})", rate_text(t.rate_now()))
                }
            },
        ),
        ("delete_extras", job.delete_extras.to_string()),
        (
            "max_delete",
            match job.max_delete {
                decide::MaxDelete::Percent(_) => {
                    format!("{} of the destination's entries per run", job.max_delete)
                }
                decide::MaxDelete::Count(_) => format!("{} entries per run", job.max_delete),
                decide::MaxDelete::Off => "off (no cap)".into(),
            },
        ),
        ("inplace", job.inplace.to_string()),
        (
            "modify_window",
            humantime::format_duration(job.modify_window).to_string(),
        ),
        ("symlinks", job.symlinks.to_string()),
        (
            "permissions",
            match job.permissions {
                Permissions::Masked => {
                    "masked (the source's bits less the umask, given at creation)".into()
                }
                Permissions::Preserve => {
                    "preserve (the source's exact bits, set after the write; best-effort)".into()
                }
            },
        ),
        (
            "owners",
            if job.owners {
                "true (the source's owner and group; best-effort)".into()
            } else {
                "false (created entries belong to the user running jobrun)".into()
            },
        ),
        (
            "progress_interval",
            humantime::format_duration(job.progress_interval).to_string(),
        ),
    ];
    for (k, v) in rows {
        out.push_str(&format!("{k:<18} {v}\n"));
    }
    let mode = match StateDb::open_existing_read_only(&job.db).and_then(|db| match db {
        None => Ok(None),
        Some(db) => {
            db.verify_roots(&job.source, &job.destination, &runner::same_folder)?;
            Ok(Some((db.backlog()?, db.last_scan_complete()?)))
        }
    }) {
        // A DB of another job: a run refuses it, so does `check`.
        Err(e @ crate::db::DbError::RootsDiffer { .. }) => {
            self::out(&out);
            return fail(e, Exit::Usage);
        }
        Ok(None) => Some(decide::RunMode::Scan),
        Ok(Some(((files, bytes), trusted))) => Some(decide::run_mode(files, bytes, !trusted)),
        Err(e) => {
            out.push_str(&format!("warning: cannot read state DB: {e}\n"));
            None
        }
    };
    match mode {
        Some(mode) => {
            let stages: Vec<&str> = runner::plan(&job, mode).iter().map(|s| s.name()).collect();
            out.push_str(&format!(
                "{:<18} {}\n",
                "mode",
                runner::mode_line(mode, false)
            ));
            out.push_str(&format!("{:<18} {}\n", "plan", stages.join(" -> ")));
        }
        None => {
            let stages: Vec<&str> = runner::plan(&job, decide::RunMode::Scan)
                .iter()
                .map(|s| s.name())
                .collect();
            out.push_str(&format!(
                "{:<18} {} (scan only without a backlog)\n",
                "plan",
                stages.join(" -> ")
            ));
        }
    }
    if !job.destination.exists() {
        out.push_str(&format!(
            "warning: destination root `{}` does not exist (yet); a run creates it\n",
            job.destination
        ));
    }
    self::out(&out);
    // What a run would refuse about the roots, with its line and exit code.
    match runner::preflight(&job) {
        Ok(()) => Exit::Ok,
        Err(e) => fail(runner::describe(&e, &job), e.exit()),
    }
}

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
    /// The first few failed rows with their errors.
    pub failed_sample: Vec<FailedFile>,
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
pub struct FailedFile {
    pub path: String,
    pub error: String,
}

fn run_seconds(r: &RunRow) -> Option<f64> {
    let start = humantime::parse_rfc3339(&r.started_at).ok()?;
    let end = humantime::parse_rfc3339(r.ended_at.as_deref()?).ok()?;
    Some(end.duration_since(start).ok()?.as_secs_f64())
}

/// Pid of a live `jobrun` holding `<db>.lock`. Reads the pid the lock
/// holder wrote and checks /proc; never takes the lock (a starting cron run
/// must not find it busy because someone looked).
fn lock_holder(db: &camino::Utf8Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(format!("{db}.lock"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // `comm` is the executable's name cut to 15 bytes; an installed
    // `jobrun-0.2` still starts with `jobrun`.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    comm.starts_with("jobrun").then_some(pid)
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

fn status_report(job: &Job, db: &StateDb) -> Result<StatusReport, crate::db::DbError> {
    let counts = db.status_counts()?;
    let (backlog_files, backlog_bytes) = db.backlog()?;
    let trusted = db.last_scan_complete()?;
    let rows = db.last_runs(SHOWN_RUNS.max(50))?;
    // A live holder of the lock whose run has not recorded its end: a pid
    // reused after a kill, by another job's run, is not taken for this one.
    let running_pid =
        lock_holder(&job.db).filter(|_| rows.first().is_some_and(|r| r.ended_at.is_none()));
    let rated: Vec<(u64, f64)> = rows
        .iter()
        .filter(|r| r.bytes_done > 0)
        .filter_map(|r| Some((r.bytes_done, run_seconds(r)?)))
        .take(RATE_RUNS)
        .collect();
    let recent_rate = progress::mean_rate(rated.iter().copied());
    let runs = rows
        .into_iter()
        .take(SHOWN_RUNS)
        .enumerate()
        .map(|(i, row)| {
            let state = match row.exit_code {
                Some(c) => exit_reason(c).to_string(),
                None if i == 0 && running_pid.is_some() => "running".into(),
                None => "unfinished".into(),
            };
            RunStatus {
                seconds: run_seconds(&row),
                state,
                row,
            }
        })
        .collect();
    let failed_total = counts
        .iter()
        .find(|c| c.status == "failed")
        .map_or(0, |c| c.files);
    Ok(StatusReport {
        db: job.db.to_string(),
        running_pid,
        backlog_files,
        backlog_bytes,
        next_run: decide::run_mode(backlog_files, backlog_bytes, !trusted).name(),
        recent_rate,
        recent_rate_runs: rated.len(),
        eta_seconds: progress::eta(backlog_bytes, recent_rate).map(|d| d.as_secs()),
        counts,
        runs,
        failed_total,
        failed_sample: db
            .failed_sample(SHOWN_FAILED)?
            .into_iter()
            .map(|(p, error)| FailedFile {
                path: p.display().to_string(),
                error,
            })
            .collect(),
    })
}

/// The text form of `status` (see README "Reading `status`").
pub fn render_status(r: &StatusReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "db        {}", r.db);
    let state = match r.running_pid {
        Some(pid) => format!("running (pid {pid})"),
        None => "idle".into(),
    };
    let _ = writeln!(o, "state     {state}; next run: {}", r.next_run);
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
    let _ = writeln!(o);
    if r.runs.is_empty() {
        let _ = writeln!(o, "no runs yet");
    } else {
        let _ = writeln!(o, "last runs, newest first:");
        let _ = writeln!(
            o,
            "{:>5}  {:<19}  {:>8}  {:<6}  {:>9}  {:>11}  {:>6}  exit",
            "run", "started (UTC)", "took", "mode", "files", "bytes", "failed"
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
                "{:>5}  {:<19}  {:>8}  {:<6}  {:>9}  {:>11}  {:>6}  {exit}",
                row.id,
                started,
                took,
                row.mode,
                row.files_done,
                human_bytes(row.bytes_done),
                row.failures,
            );
        }
    }
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
            let _ = writeln!(o, "  run {id}: {error}");
        }
    }
    if r.failed_total > 0 {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "failed files ({} of {}; all are retried by the next scan):",
            r.failed_sample.len(),
            r.failed_total
        );
        for f in &r.failed_sample {
            let _ = writeln!(o, "  {}: {}", f.path, f.error);
        }
    }
    o
}

fn status(args: &StatusArgs) -> Exit {
    let job = match load(&args.common) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let db = match StateDb::open_existing_read_only(&job.db) {
        Ok(Some(db)) => db,
        Ok(None) => {
            return fail(
                format!("no state DB at `{}` yet: the job has never run", job.db),
                Exit::Usage,
            );
        }
        Err(e) => return fail(e, Exit::Fatal),
    };
    // A DB made for other roots describes another job: say so, as a run
    // would, instead of showing its figures as this job's.
    match db.verify_roots(&job.source, &job.destination, &runner::same_folder) {
        Ok(()) => {}
        Err(e @ crate::db::DbError::RootsDiffer { .. }) => return fail(e, Exit::Usage),
        Err(e) => return fail(e, Exit::Fatal),
    }
    let report = match status_report(&job, &db) {
        Ok(r) => r,
        Err(e) => return fail(e, Exit::Fatal),
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => out(&format!("{text}\n")),
            Err(e) => return fail(e, Exit::Fatal),
        }
    } else {
        out(&render_status(&report));
    }
    Exit::Ok
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
