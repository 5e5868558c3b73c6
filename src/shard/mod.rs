//! Shards: one job run as N runs on N machines (Slurm array tasks,
//! Kubernetes Indexed Job pods, hosts of GNU parallel), each over whole
//! subtrees of the source. `jobrun plan --shards N` packs the tree
//! (`pack`) and writes the plan beside the manifest (`file`); `jobrun
//! --shard K` runs shard K with its own DB, audit log and lock, limited to
//! its part of the tree by the job's filter ([`PlanScope`]), at its part of
//! the job's `bwlimit`; `jobrun mirror` runs the job's one mirror on the
//! union of the shard DBs once every shard finished.

mod file;
pub mod pack;
mod sizes;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use camino::Utf8PathBuf;

use crate::manifest::Job;
pub use file::{Plan, PlanShard};
pub use pack::{PackError, Unit};
pub use sizes::{Sizes, SizesFrom, sizes};

/// The environment variables `--shard auto` reads K from, in this order:
/// Slurm array task, Kubernetes Indexed Job, Open MPI rank.
pub const AUTO_VARS: [&str; 3] = [
    "SLURM_ARRAY_TASK_ID",
    "JOB_COMPLETION_INDEX",
    "OMPI_COMM_WORLD_RANK",
];

/// `<manifest stem>.plan.toml` beside the manifest.
pub fn plan_path(job: &Job) -> Utf8PathBuf {
    let stem = job.manifest.file_stem().unwrap_or("job");
    job.manifest.with_file_name(format!("{stem}.plan.toml"))
}

/// The fingerprint of what a plan depends on: the roots and the filters.
pub fn fingerprint(job: &Job) -> String {
    let text = serde_json::json!({
        "source": job.source,
        "destination": job.destination,
        "exclude": job.filter.exclude(),
        "include": job.filter.include(),
    })
    .to_string();
    let mut h = crate::checksum::HashAlgo::Sha256.hasher();
    h.update(text.as_bytes());
    let mut hex = h.finish_hex();
    hex.truncate(16);
    hex
}

/// `path` with `.shard-K` before its extension: `job.db` → `job.shard-2.db`.
pub fn shard_file(path: &camino::Utf8Path, k: usize) -> Utf8PathBuf {
    let stem = path.file_stem().unwrap_or("job");
    match path.extension() {
        Some(ext) => path.with_file_name(format!("{stem}.shard-{k}.{ext}")),
        None => path.with_file_name(format!("{stem}.shard-{k}")),
    }
}

/// The shard a `--shard` value names: a number, or `auto` (from
/// [`AUTO_VARS`]); `env` looks a variable up. Refused with one line when
/// none is set or K is outside the plan's `n` shards.
pub fn select(
    value: &str,
    n: usize,
    env: impl Fn(&str) -> Option<String>,
) -> Result<usize, String> {
    let (k, from) = if value.trim().eq_ignore_ascii_case("auto") {
        let found = AUTO_VARS
            .iter()
            .find_map(|v| env(v).filter(|s| !s.trim().is_empty()).map(|s| (s, *v)));
        let Some((s, var)) = found else {
            return Err(format!(
                "--shard auto: none of {} is set (run it as a Slurm array task or a Kubernetes Indexed Job, or give --shard K)",
                AUTO_VARS.join(", ")
            ));
        };
        (s.clone(), format!("{var}={}", s.trim()))
    } else {
        (value.to_string(), format!("--shard {value}"))
    };
    match k.trim().parse::<usize>() {
        Ok(k) if k < n => Ok(k),
        Ok(_) => Err(format!(
            "{from}: the plan has shards 0 to {} only",
            n.saturating_sub(1)
        )),
        Err(_) => Err(format!("{from}: expected a shard number or `auto`")),
    }
}

/// Shard `k` of `plan` as a job of its own: its DB, audit log and lock,
/// its part of the tree, no mirror, and its part of the limit.
pub fn shard_job(mut job: Job, plan: &Plan, k: usize) -> Job {
    job.db = shard_file(&job.db, k);
    job.log = shard_file(&job.log, k);
    job.metrics_file = job.metrics_file.map(|m| shard_file(&m, k));
    job.bwlimit = shard_bwlimit(&job, plan.shards.len());
    job.delete_extras = false;
    job.filter = job.filter.scoped(Arc::new(PlanScope::new(plan, k)));
    job.shard = Some((k, plan.shards.len()));
    job
}

/// The job a reload reads, as the running shard of it: the same state
/// files and no mirror, and the shard's part of the new limit.
pub fn as_running_shard(mut new: Job, running: &Job) -> Job {
    if let Some((_, n)) = running.shard {
        new.bwlimit = shard_bwlimit(&new, n);
        new.db = running.db.clone();
        new.log = running.log.clone();
        new.metrics_file = running.metrics_file.clone();
        new.delete_extras = running.delete_extras;
        new.shard = running.shard;
    }
    new
}

/// A shard's `bwlimit`: `shard_bwlimit` when the manifest sets it, else
/// the job's divided by the number of shards (a timetable entry by entry).
pub fn shard_bwlimit(job: &Job, n: usize) -> crate::timetable::Schedule {
    match &job.shard_bwlimit {
        Some(s) => s.clone(),
        None => job.bwlimit.divided(n as u64),
    }
}

/// Shard K's part of the tree, as the job's filter asks it (`filter::Scope`).
#[derive(Debug)]
pub struct PlanScope {
    k: usize,
    /// Subtree → its shard.
    subtrees: HashMap<PathBuf, usize>,
    /// Split folder → the shard of its rest.
    rests: HashMap<PathBuf, usize>,
    /// The split folders this shard walks: those it has a part in or below.
    walked: HashSet<PathBuf>,
    fingerprint: String,
}

impl PlanScope {
    pub fn new(plan: &Plan, k: usize) -> Self {
        let mut subtrees = HashMap::new();
        let mut rests = HashMap::new();
        let mut walked = HashSet::new();
        for (i, s) in plan.shards.iter().enumerate() {
            for u in &s.units {
                let (p, map) = match u {
                    Unit::Subtree(p) => (p, &mut subtrees),
                    Unit::Rest(p) => (p, &mut rests),
                };
                map.insert(p.clone(), i);
                if i == k {
                    let mut up = match u {
                        Unit::Subtree(p) => p.parent(),
                        Unit::Rest(p) => Some(p.as_path()),
                    };
                    while let Some(a) = up.filter(|a| !a.as_os_str().is_empty()) {
                        walked.insert(a.to_path_buf());
                        up = a.parent();
                    }
                }
            }
        }
        Self {
            k,
            subtrees,
            rests,
            walked,
            fingerprint: format!("shard {k} of plan {}", plan.units_digest()),
        }
    }
}

impl crate::filter::Scope for PlanScope {
    fn keeps(&self, rel: &Path, is_dir: bool) -> bool {
        let parent = rel.parent().unwrap_or(Path::new(""));
        // Below a part (not a split folder): the parent's shard, which is
        // this one, since the walk entered the parent.
        let Some(&rest) = self.rests.get(parent) else {
            return true;
        };
        if let Some(&k) = self.subtrees.get(rel) {
            return k == self.k;
        }
        if is_dir && self.rests.contains_key(rel) {
            return self.walked.contains(rel);
        }
        rest == self.k
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

#[cfg(test)]
mod tests;
