//! `jobrun JOB.toml`: signals, the progress reporter, the run, the thread
//! beside it (SIGHUP reloads, the stop of a pause), and its summary line.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{Failure, Stdout, load_runnable, out};
use crate::audit::AuditLog;
use crate::cli::{Cli, Overrides};
use crate::manifest::Job;
use crate::progress::{Progress, Reporter, Style, Summary, summary_line};
use crate::retune::{self, Reload};
use crate::runner::{self, Exit};
use crate::throttle::{Limit, limit_code};

pub fn run_job(cli: Cli) -> Result<Exit, Failure> {
    let args = cli.run;
    let path = args
        .job
        .expect("clap requires JOB.toml without a subcommand");
    // SIGHUP first: its default action would end the run.
    let reload = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone());
    super::reopen_on_sigusr1();
    let job = load_runnable(&path, &args.overrides)?;
    let job = super::shard::pick(job, args.shard.as_deref(), true)?;
    acls_unseen(&job);
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
        mirror_of: None,
    };
    let shared = runner::Shared::new(&job);
    let done = AtomicBool::new(false);
    let say = |l: &str| reporter.say(l);
    let result = std::thread::scope(|s| {
        let beside = Beside {
            manifest: &path,
            overrides: &args.overrides,
            job: &job,
            shared: &shared,
            progress: &progress,
            say: &say,
        };
        let (stop, reload, done) = (&stop, &reload, &done);
        let h = s.spawn(move || beside.run(stop, reload, done));
        let r = runner::run(&job, opts, &progress, stop, &shared, &say);
        done.store(true, Relaxed);
        // Woken now, not at its next tick: the run's end waits for nobody.
        h.thread().unpark();
        let metrics = h.join().expect("the thread beside the run panicked");
        (r, metrics)
    });
    let (result, metrics) = result;
    if let (Some(mut m), Ok(f)) = (metrics, &result) {
        // The run's last word: its end and exit code.
        m.write(&job, &progress, None, Some(f.report.exit.code()));
    }
    drop(reporter);
    match result {
        Ok(runner::Finished { report, error }) => {
            // Every recorded run ends with its summary line, so a cron mail
            // always says what was done before an abort; its figures are the
            // `run_end` line's and the `runs` row's.
            let message = error.as_ref().map(|e| runner::describe(e, &job));
            let summary = if args.json {
                summary_json(
                    &report.summary_fields(),
                    report.adopted(),
                    message.as_deref(),
                )?
            } else {
                format!("{}\n", report.summary())
            };
            match message {
                Some(message) => Err(Failure {
                    message,
                    exit: report.exit,
                    stdout: Stdout::After(summary),
                }),
                None => {
                    out(&summary);
                    Ok(report.exit)
                }
            }
        }
        Err(e) => {
            let exit = e.exit();
            // Not recorded (DB or log unusable): nothing was done.
            let message = runner::describe(&e, &job);
            let nothing = Summary {
                files: 0,
                bytes: 0,
                failed: 0,
                deleted: None,
                dry_run,
                elapsed: started.elapsed(),
                mode: None,
                exit_code: exit.code(),
                reason: exit.reason(),
            };
            let stdout = match (args.json, exit) {
                (true, _) => Stdout::After(summary_json(&nothing, 0, Some(&message))?),
                (false, Exit::Fatal) => Stdout::After(format!("{}\n", summary_line(&nothing))),
                (false, _) => Stdout::Nothing,
            };
            Err(Failure {
                message,
                exit,
                stdout,
            })
        }
    }
}

/// `--json`: the run's summary as one object (docs/running.md).
#[derive(serde::Serialize)]
struct SummaryJson<'a> {
    /// `scan` or `resume`; null when the run stopped before it was known.
    mode: Option<&'a str>,
    dry_run: bool,
    /// Entries synced this run, the bytes written for them, entries failed.
    files: u64,
    bytes: u64,
    failed: u64,
    /// Extras the mirror deleted (would delete, in a dry run); null
    /// without a mirror stage.
    deleted: Option<u64>,
    /// Files the scan found in place and took as synced without reading.
    adopted: u64,
    seconds: f64,
    exit: u8,
    reason: &'a str,
    /// Why the run stopped (the line on stderr); null when it did not.
    error: Option<&'a str>,
}

fn summary_json(s: &Summary<'_>, adopted: u64, error: Option<&str>) -> Result<String, Failure> {
    super::json(&SummaryJson {
        mode: s.mode,
        dry_run: s.dry_run,
        files: s.files,
        bytes: s.bytes,
        failed: s.failed,
        deleted: s.deleted,
        adopted,
        seconds: (s.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        exit: s.exit_code,
        reason: s.reason,
        error,
    })
}

/// The thread beside a run: takes SIGHUP reloads, and ends a pause when the
/// run is asked to stop. Looks ten times a second, so a reload applies well
/// within a second.
struct Beside<'a> {
    manifest: &'a Path,
    overrides: &'a Overrides,
    job: &'a Job,
    shared: &'a runner::Shared,
    progress: &'a Progress,
    say: &'a (dyn Fn(&str) + Sync),
}

const BESIDE_TICK: Duration = Duration::from_millis(100);

impl Beside<'_> {
    /// Until `done`; returns the metrics writer for the run's last write
    /// (when the job has a `metrics_file` and the run was recorded).
    fn run(&self, stop: &AtomicBool, reload: &AtomicBool, done: &AtomicBool) -> Option<Metrics> {
        let mut metrics = self.job.metrics_file.clone().map(Metrics::new);
        let mut next_write = Instant::now();
        loop {
            let finished = done.load(Relaxed);
            if stop.load(Relaxed) {
                self.shared.limit.cancel();
            }
            if reload.swap(false, Relaxed) && !finished {
                self.reload();
            }
            // Only the run that holds the lock writes the file (a run
            // refused as locked is never recorded).
            let recorded = self.shared.run_id.get().is_some();
            if finished {
                return metrics.filter(|_| recorded);
            }
            if let Some(m) = metrics.as_mut().filter(|_| recorded)
                && Instant::now() >= next_write
            {
                m.write(
                    self.job,
                    self.progress,
                    Some(in_force(&self.shared.limit.get(), self.progress)),
                    None,
                );
                next_write = Instant::now() + METRICS_EVERY;
            }
            std::thread::park_timeout(BESIDE_TICK);
        }
    }

    fn reload(&self) {
        let r = retune::reload(self.manifest, self.overrides, self.job, &self.shared.limit);
        let note = r.note();
        if let Reload::Refused { .. } = r {
            // Shown under --quiet too: the operator's edit was not taken.
            tracing::warn!("{note}");
        } else {
            (self.say)(&note);
        }
        self.progress
            .set_limit(limit_code(self.shared.limit.get().limit_now()));
        // Its own descriptor on the log: each line is one O_APPEND write,
        // so it cannot interleave with the run's lines.
        let written = AuditLog::open(&self.job.log).and_then(|mut log| {
            if let Some(&id) = self.shared.run_id.get() {
                log.set_run(id);
            }
            log.set_db(self.shared.db_id.get().map(String::as_str));
            log.write(&r.record(self.job.manifest.as_str()))
        });
        if let Err(e) = written {
            tracing::warn!("reload: {e}");
        }
    }
}

/// The limit in force: the schedule's, and under `auto` the rate it holds
/// now (as the lanes last reported it).
pub(crate) fn in_force(schedule: &crate::throttle::Schedule, progress: &Progress) -> Limit {
    match schedule.limit_now() {
        auto @ Limit::Auto(_) => {
            let code = progress.snapshot().bwlimit;
            match crate::throttle::code_rate(code).filter(|_| code & crate::throttle::AUTO != 0) {
                Some(r) => Limit::Rate(r),
                None => auto,
            }
        }
        l => l,
    }
}

/// How often the metrics file is rewritten while a run goes.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// The rate is bytes written over this window.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Samples the run for `metrics_file` and writes it (see `metrics`).
struct Metrics {
    path: camino::Utf8PathBuf,
    started: f64,
    /// Read-only: per-status counts, queried at most every second and at
    /// most 1/20 of the time (a GROUP BY over millions of rows takes a while).
    db: Option<crate::db::StateDb>,
    statuses: Vec<(String, u64, u64)>,
    next_count: Instant,
    window: std::collections::VecDeque<(Instant, u64)>,
    warned: bool,
}

impl Metrics {
    fn new(path: camino::Utf8PathBuf) -> Self {
        Self {
            path,
            started: crate::clock::now_secs_f64(),
            db: None,
            statuses: Vec::new(),
            next_count: Instant::now(),
            window: std::collections::VecDeque::new(),
            warned: false,
        }
    }

    fn count(&mut self, job: &Job, force: bool) {
        if !force && Instant::now() < self.next_count {
            return;
        }
        let t = Instant::now();
        if self.db.is_none() {
            self.db = crate::db::StateDb::open_existing_read_only(&job.db)
                .ok()
                .flatten();
        }
        if let Some(counts) = self.db.as_ref().and_then(|db| db.status_counts().ok()) {
            self.statuses = counts
                .into_iter()
                .map(|c| (c.status.as_str().to_owned(), c.files, c.bytes))
                .collect();
        }
        self.next_count = Instant::now() + (t.elapsed() * 20).max(METRICS_EVERY);
    }

    /// One write: `limit` while the run goes, `exit` at its end.
    fn write(&mut self, job: &Job, progress: &Progress, limit: Option<Limit>, exit: Option<u8>) {
        let s = progress.snapshot();
        self.count(job, exit.is_some());
        let now = Instant::now();
        let written = s.bytes_done;
        self.window.push_back((now, written));
        while self.window.len() > 2 && now - self.window[1].0 >= RATE_WINDOW {
            self.window.pop_front();
        }
        let rate = match (self.window.front(), exit) {
            (Some(&(t0, b0)), None) if now > t0 => {
                written.saturating_sub(b0) as f64 / (now - t0).as_secs_f64()
            }
            _ => 0.0,
        };
        // The lanes' slots: the files being copied at this instant.
        let in_flight = s.transfers.len() as u64;
        let synced = s.bytes_synced;
        let heartbeat = crate::clock::now_secs_f64();
        let sample = crate::metrics::Sample {
            job: job.manifest.file_stem().unwrap_or("job").to_string(),
            statuses: self.statuses.clone(),
            run_copied_bytes: synced,
            copied_bytes_total: s.bytes_before + synced,
            run_written_bytes: written,
            rate,
            limit,
            files_in_flight: in_flight,
            run_failed: s.files_failed,
            running: exit.is_none(),
            run_start: self.started,
            run_end: exit.map(|_| heartbeat),
            exit_code: exit.map(i32::from),
            heartbeat,
        };
        if let Err(e) = crate::metrics::write_atomic(&self.path, &crate::metrics::render(&sample))
            && !std::mem::replace(&mut self.warned, true)
        {
            tracing::warn!(path = %self.path, error = %e, "cannot write the metrics file (warned once per run)");
        }
    }
}

/// Never silent: `acls = true` from a source that shows no ACLs, one line
/// per run (`check` says it too).
fn acls_unseen(job: &Job) {
    if let Some(line) = job
        .acls
        .then(|| crate::xattrs::acls_unseen(job.source.as_std_path()))
        .flatten()
    {
        tracing::warn!(key = "acls", "{line}");
    }
}
