//! The commands' side of shards (`crate::shard`): a job taken as one of
//! its shards (`--shard K`), a plain run of a sharded job refused, and
//! `jobrun plan`.

use std::io::Write;

use super::{Failure, load_plain, out};
use crate::cli::PlanArgs;
use crate::exit::Exit;
use crate::manifest::Job;
use crate::shard::{self, PackError, Plan, Unit};
use crate::units::human_bytes;

/// The job's plan, checked against the manifest: `None` when there is none.
pub(super) fn plan_of(job: &Job) -> Result<Option<Plan>, Failure> {
    let path = shard::plan_path(job);
    let plan = Plan::read(&path).map_err(|e| Failure::new(e, Exit::Usage))?;
    match plan {
        Some(p) if p.fingerprint != shard::fingerprint(job) => Err(Failure::new(
            format!(
                "the plan `{path}` was made for other roots or filters than `{}` has now: plan again (`jobrun plan --shards {} {}`)",
                job.manifest,
                p.shards.len(),
                job.manifest
            ),
            Exit::Usage,
        )),
        p => Ok(p),
    }
}

/// The job as `--shard` asks: shard K of its plan, or the whole job (a
/// run of the whole of a sharded job refused when `whole_refused`).
pub(super) fn pick(job: Job, shard: Option<&str>, whole_refused: bool) -> Result<Job, Failure> {
    let plan = plan_of(&job)?;
    match (shard, plan) {
        (Some(v), Some(plan)) => {
            let k = shard::select(v, plan.shards.len(), |var| std::env::var(var).ok())
                .map_err(|e| Failure::new(e, Exit::Usage))?;
            Ok(shard::shard_job(job, &plan, k))
        }
        (Some(_), None) => Err(Failure::new(
            format!(
                "--shard: `{}` has no plan (`{}`): make one with `jobrun plan --shards N {}`",
                job.manifest,
                shard::plan_path(&job),
                job.manifest
            ),
            Exit::Usage,
        )),
        (None, Some(plan)) if whole_refused => Err(Failure::new(
            format!(
                "`{m}` is split into {n} shards (`{p}`): run `jobrun --shard K {m}` for K = 0..{last} (or `--shard auto` as an array task), then `jobrun mirror {m}`; remove the plan to run the job whole",
                m = job.manifest,
                n = plan.shards.len(),
                p = shard::plan_path(&job),
                last = plan.shards.len() - 1
            ),
            Exit::Usage,
        )),
        (None, _) => Ok(job),
    }
}

/// `jobrun plan --shards N JOB.toml`.
pub(super) fn plan(args: &PlanArgs) -> Result<Exit, Failure> {
    let job = load_plain(&args.job, &args.overrides)?;
    let sizes = shard::sizes(&job).map_err(|e| Failure::new(e, Exit::Fatal))?;
    let packing = shard::pack::pack(&sizes.tree, args.shards).map_err(|e| {
        let why = match e {
            PackError::TooFew { .. } | PackError::Zero => e.to_string(),
        };
        Failure::new(format!("--shards {}: {why}", args.shards), Exit::Usage)
    })?;
    let plan = Plan::new(
        packing,
        shard::fingerprint(&job),
        sizes.from.name(),
        crate::clock::now_rfc3339(),
    );
    let text = plan.to_toml().map_err(|e| Failure::new(e, Exit::Usage))?;
    let path = shard::plan_path(&job);
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap_or("plan")));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Failure::new(format!("cannot write the plan `{path}`: {e}"), Exit::Fatal))?;
    if sizes.unreadable > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "jobrun: {} source folders could not be read: their entries are in no shard's figures (each still belongs to one shard)",
            sizes.unreadable
        );
    }
    out(&spread(&plan, &path));
    Ok(Exit::Ok)
}

/// What `plan` prints: each shard's figures, then the spread.
pub fn spread(plan: &Plan, path: &camino::Utf8Path) -> String {
    let mut s = format!(
        "plan: {} shards, sizes from the {}, written to {path}\n",
        plan.shards.len(),
        if plan.sizes_from == "scan" {
            "last scan"
        } else {
            "walk"
        }
    );
    for (k, sh) in plan.shards.iter().enumerate() {
        let subtrees = sh
            .units
            .iter()
            .filter(|u| matches!(u, Unit::Subtree(_)))
            .count();
        let rests = sh.units.len() - subtrees;
        s.push_str(&format!(
            "shard {k}: {} entries, {} in {subtrees} subtrees and {rests} folders' rest\n",
            sh.entries,
            human_bytes(sh.bytes)
        ));
    }
    let ratio = |f: fn(&shard::PlanShard) -> u64| {
        let max = plan.shards.iter().map(f).max().unwrap_or(0);
        let min = plan.shards.iter().map(f).min().unwrap_or(0);
        if min == 0 {
            "∞ (a shard holds none)".to_string()
        } else {
            format!("{:.2}", max as f64 / min as f64)
        }
    };
    s.push_str(&format!(
        "spread (largest/smallest): bytes {}, entries {}\n",
        ratio(|s| s.bytes),
        ratio(|s| s.entries)
    ));
    s
}
