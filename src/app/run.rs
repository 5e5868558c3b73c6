//! `jobrun JOB.toml`: signals, the progress reporter, the run, the thread
//! beside it (SIGHUP reloads, the stop of a pause), and its summary line.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{Failure, load_runnable, out};
use crate::audit::AuditLog;
use crate::cli::{Cli, Overrides};
use crate::manifest::Job;
use crate::progress::{Progress, Reporter, Style, Summary, summary_line};
use crate::retune::{self, Reload};
use crate::runner::{self, Exit};
use crate::throttle::limit_code;

pub fn run_job(cli: Cli) -> Result<Exit, Failure> {
    let args = cli.run;
    let path = args
        .job
        .expect("clap requires JOB.toml without a subcommand");
    // SIGHUP first: its default action would end the run.
    let reload = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone());
    let job = load_runnable(&path, &args.overrides)?;
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
        s.spawn(move || beside.run(stop, reload, done));
        let r = runner::run(&job, opts, &progress, stop, &shared, &say);
        done.store(true, Relaxed);
        r
    });
    drop(reporter);
    match result {
        Ok(runner::Finished { report, error }) => {
            // Every recorded run ends with its summary line, so a cron mail
            // always says what was done before an abort; its figures are the
            // `run_end` line's and the `runs` row's.
            let summary = format!("{}\n", report.summary());
            match error {
                Some(e) => Err(Failure {
                    message: runner::describe(&e, &job),
                    exit: report.exit,
                    then: Some(summary),
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
            let then = (exit == Exit::Fatal).then(|| {
                format!(
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
                )
            });
            Err(Failure {
                message: runner::describe(&e, &job),
                exit,
                then,
            })
        }
    }
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
    fn run(&self, stop: &AtomicBool, reload: &AtomicBool, done: &AtomicBool) {
        loop {
            let finished = done.load(Relaxed);
            if stop.load(Relaxed) {
                self.shared.limit.cancel();
            }
            if reload.swap(false, Relaxed) && !finished {
                self.reload();
            }
            if finished {
                return;
            }
            std::thread::sleep(BESIDE_TICK);
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
            .0
            .bwlimit
            .store(limit_code(self.shared.limit.get().limit_now()), Relaxed);
        // Its own descriptor on the log: each line is one O_APPEND write,
        // so it cannot interleave with the run's lines.
        let written = AuditLog::open(&self.job.log).and_then(|mut log| {
            if let Some(&id) = self.shared.run_id.get() {
                log.set_run(id);
            }
            log.write(&r.record(self.job.manifest.as_str()))
        });
        if let Err(e) = written {
            tracing::warn!("reload: {e}");
        }
    }
}
