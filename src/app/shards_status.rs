//! `jobrun status` of a sharded job (no `--shard`): every shard's DB read
//! (`status`'s own report of each), per shard and in total: backlog, last
//! run, failures, and the shards that have not finished (the mirror waits
//! for them).

use serde::Serialize;

use super::status::{RunStatus, status_report};
use super::{Failure, out};
use crate::db::{StateDb, StatusCount};
use crate::exit::Exit;
use crate::manifest::Job;
use crate::shard::{self, Plan};
use crate::units::human_bytes;

/// What `status` reports of a sharded job; `--json` prints it as it is.
#[derive(Debug, Serialize)]
pub struct ShardsStatus {
    pub plan: String,
    pub shards: Vec<ShardStatus>,
    pub total: Total,
    /// Shards not finished: never ran, running, a scan cut short, or a backlog.
    pub unfinished: Vec<usize>,
}

#[derive(Debug, Serialize)]
pub struct ShardStatus {
    pub shard: usize,
    pub db: String,
    /// `never ran`, `running`, `scan unfinished`, `backlog` or `finished`.
    pub state: &'static str,
    pub running_pid: Option<u32>,
    pub backlog_files: u64,
    pub backlog_bytes: u64,
    pub failed_total: u64,
    pub counts: Vec<StatusCount>,
    pub last_run: Option<RunStatus>,
}

#[derive(Debug, Serialize, Default)]
pub struct Total {
    pub backlog_files: u64,
    pub backlog_bytes: u64,
    pub failed_total: u64,
    /// Entries and bytes per status, over every shard.
    pub counts: Vec<StatusCount>,
}

pub(super) fn status_all(job: &Job, plan: &Plan, json: bool) -> Result<Exit, Failure> {
    let mut shards = Vec::new();
    let mut total = Total::default();
    for k in 0..plan.shards.len() {
        let s = shard::shard_job(job.clone(), plan, k);
        let one = one_shard(&s, k)?;
        total.backlog_files += one.backlog_files;
        total.backlog_bytes += one.backlog_bytes;
        total.failed_total += one.failed_total;
        for c in &one.counts {
            match total.counts.iter_mut().find(|t| t.status == c.status) {
                Some(t) => {
                    t.files += c.files;
                    t.bytes += c.bytes;
                }
                None => total.counts.push(c.clone()),
            }
        }
        shards.push(one);
    }
    let report = ShardsStatus {
        plan: shard::plan_path(job).to_string(),
        unfinished: shards
            .iter()
            .filter(|s| s.state != "finished")
            .map(|s| s.shard)
            .collect(),
        shards,
        total,
    };
    if json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Failure::new(e, Exit::Fatal))?;
        out(&format!("{text}\n"));
    } else {
        out(&render(&report));
    }
    Ok(Exit::Ok)
}

fn one_shard(s: &Job, k: usize) -> Result<ShardStatus, Failure> {
    let db = match StateDb::open_existing_read_only(&s.db) {
        Ok(Some(_)) => super::job_db(s)?,
        Ok(None) => {
            return Ok(ShardStatus {
                shard: k,
                db: s.db.to_string(),
                state: "never ran",
                running_pid: None,
                backlog_files: 0,
                backlog_bytes: 0,
                failed_total: 0,
                counts: Vec::new(),
                last_run: None,
            });
        }
        Err(e) => return Err(Failure::new(e, Exit::Fatal)),
    };
    let r = status_report(s, &db).map_err(|e| Failure::new(e, Exit::Fatal))?;
    let scanned = db
        .scan_finished()
        .map_err(|e| Failure::new(e, Exit::Fatal))?;
    let state = match (r.running_pid, scanned, r.backlog_files) {
        (Some(_), _, _) => "running",
        (None, false, _) => "scan unfinished",
        (None, true, 0) => "finished",
        (None, true, _) => "backlog",
    };
    Ok(ShardStatus {
        shard: k,
        db: r.db,
        state,
        running_pid: r.running_pid,
        backlog_files: r.backlog_files,
        backlog_bytes: r.backlog_bytes,
        failed_total: r.failed_total,
        counts: r.counts,
        last_run: r.runs.into_iter().next(),
    })
}

/// The text form.
pub fn render(r: &ShardsStatus) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "plan      {} ({} shards)", r.plan, r.shards.len());
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:>5}  {:<15}  {:>9}  {:>11}  {:>6}  last run",
        "shard", "state", "backlog", "bytes", "failed"
    );
    for s in &r.shards {
        let last = s.last_run.as_ref().map_or("none".to_string(), |l| {
            format!(
                "#{} {} {} ({})",
                l.row.id,
                l.row.started_at.get(..19).unwrap_or(&l.row.started_at),
                l.row.mode,
                l.state
            )
        });
        let state = match s.running_pid {
            Some(pid) => format!("running ({pid})"),
            None => s.state.to_string(),
        };
        let _ = writeln!(
            o,
            "{:>5}  {:<15}  {:>9}  {:>11}  {:>6}  {last}",
            s.shard,
            state,
            s.backlog_files,
            human_bytes(s.backlog_bytes),
            s.failed_total
        );
    }
    let _ = writeln!(
        o,
        "{:>5}  {:<15}  {:>9}  {:>11}  {:>6}",
        "total",
        "",
        r.total.backlog_files,
        human_bytes(r.total.backlog_bytes),
        r.total.failed_total
    );
    let _ = writeln!(o);
    if r.unfinished.is_empty() {
        let _ = writeln!(o, "every shard finished: `jobrun mirror` may run");
    } else {
        let list: Vec<String> = r.unfinished.iter().map(|k| k.to_string()).collect();
        let _ = writeln!(
            o,
            "not finished: shard{} {} (the mirror waits for them)",
            if list.len() == 1 { "" } else { "s" },
            list.join(", ")
        );
    }
    o
}
