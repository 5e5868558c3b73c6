//! `jobrun mirror JOB.toml`: the one mirror of a sharded job, once every
//! shard finished: refused (exit 4, naming them) while a shard's last scan
//! did not reach its end or its backlog is not empty; then the mirror
//! stage alone, with every rail, over the whole destination, on the union
//! of the shard DBs' rows. Every shard's lock is held meanwhile.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{Failure, Stdout, load_runnable, out};
use crate::cli::MirrorArgs;
use crate::db::StateDb;
use crate::exit::Exit;
use crate::lock::JobLock;
use crate::manifest::Job;
use crate::progress::{Progress, Reporter, Style};
use crate::runner;
use crate::shard::{self, Plan};

pub(super) fn mirror(args: &MirrorArgs) -> Result<Exit, Failure> {
    let job = load_runnable(&args.job, &args.overrides)?;
    let Some(plan) = super::shard::plan_of(&job)? else {
        return Err(Failure::new(
            format!(
                "`{}` has no plan: `jobrun mirror` is the mirror of a sharded job (a plain run mirrors with `delete_extras = true`)",
                job.manifest
            ),
            Exit::Usage,
        ));
    };
    if !job.delete_extras {
        return Err(Failure::new(
            format!(
                "`delete_extras` is off in `{}`: the mirror would delete nothing (set it, or give --delete-extras)",
                job.manifest
            ),
            Exit::Usage,
        ));
    }
    let shards: Vec<Job> = (0..plan.shards.len())
        .map(|k| shard::shard_job(job.clone(), &plan, k))
        .collect();
    let _locks = shards
        .iter()
        .map(|s| JobLock::acquire(s).map_err(|e| Failure::new(e, Exit::Locked)))
        .collect::<Result<Vec<_>, _>>()?;
    unfinished(&shards, &plan)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let progress = Progress::default();
    let reporter = Reporter::start(&progress, Style::pick(args.quiet, job.progress_interval));
    let opts = runner::RunOptions {
        rescan: false,
        dry_run: args.dry_run,
        mirror_of: Some(plan.shards.len()),
    };
    let shared = runner::Shared::new(&job);
    let say = |l: &str| reporter.say(l);
    let result = runner::run(&job, opts, &progress, &stop, &shared, &say);
    drop(reporter);
    match result {
        Ok(runner::Finished { report, error }) => {
            let summary = format!("{}\n", report.summary());
            match error {
                Some(e) => Err(Failure {
                    message: runner::describe(&e, &job),
                    exit: report.exit,
                    stdout: Stdout::After(summary),
                }),
                None => {
                    out(&summary);
                    Ok(report.exit)
                }
            }
        }
        Err(e) => Err(Failure::new(runner::describe(&e, &job), e.exit())),
    }
}

/// Refuses (exit 4) unless every shard's last scan reached its end and
/// its backlog is empty, naming each shard that has not finished.
fn unfinished(shards: &[Job], plan: &Plan) -> Result<(), Failure> {
    let mut not = Vec::new();
    for (k, s) in shards.iter().enumerate() {
        let why = match StateDb::open_existing_read_only(&s.db) {
            Ok(None) => Some("never ran".to_string()),
            Err(e) => Some(format!("unreadable DB ({e})")),
            Ok(Some(db)) => match (db.scan_finished(), db.backlog()) {
                (Ok(false), _) => Some("its last scan did not finish".into()),
                (_, Ok((n, _))) if n > 0 => Some(format!("{n} entries pending")),
                (Err(e), _) | (_, Err(e)) => Some(format!("unreadable DB ({e})")),
                _ => None,
            },
        };
        if let Some(w) = why {
            not.push(format!("shard {k} ({w})"));
        }
    }
    if !not.is_empty() {
        return Err(Failure::new(
            format!(
                "mirror refused, nothing deleted: {} of {} shards have not finished: {}",
                not.len(),
                plan.shards.len(),
                not.join(", ")
            ),
            Exit::Fatal,
        ));
    }
    Ok(())
}
