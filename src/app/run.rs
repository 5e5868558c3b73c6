//! `jobrun JOB.toml`: signals, the progress reporter, the run, and its
//! summary line.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::{Failure, load_runnable, out};
use crate::cli::Cli;
use crate::progress::{Progress, Reporter, Style, Summary, summary_line};
use crate::runner::{self, Exit};

pub fn run_job(cli: Cli) -> Result<Exit, Failure> {
    let args = cli.run;
    let path = args
        .job
        .expect("clap requires JOB.toml without a subcommand");
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
    let result = runner::run(&job, opts, &progress, &stop, &|l| reporter.say(l));
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
