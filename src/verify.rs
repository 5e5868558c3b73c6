//! `jobrun verify`: reads the destination copy of every synced
//! file, hashes it with the row's recorded algorithm and compares size and
//! hash with what the transfer recorded while it read the source. The
//! source is not read for such a file, so a verify costs one read of the
//! destination, half the link traffic of a tool that reads both sides.
//! A file without a recorded hash (*adopted*: found in place by a scan,
//! never read by jobrun) is compared with its source byte for byte
//! (`adopted`), and gets the source's hash when the two are equal.
//!
//! Shape: one feeder thread pages rows from the DB (its own connection)
//! into a bounded channel; `transfers` worker threads take rows from it,
//! read under the job's `bwlimit` (`read`) and send back an [`Outcome`];
//! the calling thread is the only DB and audit-log writer, committing in
//! batches (every [`BATCH`] rows or second), so a killed verify keeps what
//! it committed and the next one resumes. A stop request cancels the limit,
//! so a lane held by a pause returns at once. Does not use `transfer/*`:
//! the copy path is not shared.

mod adopted;
mod lines;
mod read;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::{AuditError, AuditLog};
use crate::beneath::Root;
use crate::checksum::HashAlgo;
use crate::db::{DbError, RowId, StateDb, Tx, VerifyRecord, VerifyResult, VerifyRow};
use crate::manifest::Job;
use crate::progress::{Lane, Progress};
use crate::roots::RootId;
use crate::stage::RunCtx;
use crate::throttle::{LiveLimit, Throttle};

use adopted::{Bufs, Roots};
pub use lines::BadFiles;
use read::Paced;
pub use read::open_dest;

/// Rows per DB page read by the feeder, and most rows per commit.
const PAGE: usize = 1000;
const BATCH: usize = 512;
const BATCH_TIME: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(
        "destination root `{path}` changed during the verify (unmounted or remounted?); \
         files found missing after that were not recorded"
    )]
    RootChanged { path: String },
    #[error("verify interrupted")]
    Interrupted,
}

/// What the destination holds for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Equal to the recorded hash, or (adopted) to the source, whose hash
    /// is then `source_hash`.
    Verified { source_hash: Option<String> },
    Mismatch {
        /// Size found, when it differs from the recorded one (then the file
        /// is not read: a wrong size settles it).
        found_size: Option<u64>,
        /// The hash found, when the size matched.
        found: Option<String>,
        /// Adopted: the first byte offset where it differs from the source.
        differs_at: Option<u64>,
    },
    /// Nothing at the path, or something that is not a regular file
    /// (`reason` says what; a symlink is never followed).
    Missing { reason: Option<String> },
    /// The file could not be read, or (adopted) not compared with its
    /// source: nothing is known about its content.
    Failed { error: String },
    /// A stop request cut the read short: nothing is recorded.
    Stopped,
}

impl Outcome {
    fn result(&self) -> Option<VerifyResult> {
        Some(match self {
            Outcome::Verified { .. } => VerifyResult::Ok,
            Outcome::Mismatch { .. } => VerifyResult::Mismatch,
            Outcome::Missing { .. } => VerifyResult::Missing,
            Outcome::Failed { .. } => VerifyResult::Failed,
            Outcome::Stopped => return None,
        })
    }
}

/// What a verify found so far: its `verifies` row (the counts) and the
/// files that did not verify, by name for the console.
#[derive(Debug, Default)]
pub struct Found {
    pub rec: VerifyRecord,
    pub bad: BadFiles,
}

/// One row checked by a lane: the outcome and the bytes it read.
struct Checked {
    row: VerifyRow,
    outcome: Outcome,
    read: u64,
}

/// Whether row `id` is in a `percent` sample drawn with `seed`: a pure
/// function of the three, so a sample is repeated exactly by its seed
/// (splitmix64 of seed and row id, compared in millionths).
pub fn in_sample(id: i64, percent: f64, seed: u64) -> bool {
    let mut z = seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % 1_000_000) < (percent * 10_000.0).round() as u64
}

/// What one verify is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Rows found `ok` at or after this instant (ns) are skipped.
    pub since_ns: i64,
    /// `--sample PERCENT` and its seed.
    pub sample: Option<(f64, u64)>,
    /// `--repair`: mismatched and missing rows go back to `pending`.
    pub repair: bool,
}

impl Plan {
    /// Whether row `id` is in this verify's sample (every row without one).
    pub fn wants(&self, id: RowId) -> bool {
        self.sample
            .is_none_or(|(p, seed)| in_sample(id.get(), p, seed))
    }
}

fn algo_of(name: &str) -> Option<HashAlgo> {
    HashAlgo::ALL.into_iter().find(|a| a.name() == name)
}

/// Checks every row the plan selects and records each outcome (DB row,
/// audit line, the counts in `found.rec`, the bad files' names in
/// `found.bad`). `found.rec.id` is the `verifies` row.
pub fn run(ctx: &mut RunCtx<'_>, plan: Plan, found: &mut Found) -> Result<(), VerifyError> {
    let (job, progress, stop) = (ctx.job, ctx.progress, ctx.stop);
    // A stop request cancels the limit: lanes held by a pause (`pause`, a
    // timetable's pause window) return at once and see the stop.
    let limit = ctx.limit.clone();
    let throttle = Throttle::live(&limit);
    let RunCtx { db, audit, .. } = ctx;
    let root_id = RootId::of(job.destination.as_std_path()).ok();
    let feeder_db = db.reopen()?;
    let lanes = job.transfers.max(1);
    let finished = AtomicBool::new(false);
    // Held once: every file is opened below them through no symlink.
    let dest_root = Root::open(job.destination.as_std_path()).ok();
    let source_root =
        Root::open(job.source.as_std_path()).map_err(|e| format!("`{}`: {e}", job.source));
    let roots = Roots {
        dest: dest_root.as_ref(),
        source: source_root.as_ref().map_err(String::as_str),
    };
    let (work_tx, work_rx) = sync_channel::<VerifyRow>(lanes * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<Checked>(lanes * 2);
    std::thread::scope(|s| {
        s.spawn(|| cancel_on_stop(stop, &limit, &finished));
        let feeder = s.spawn(move || feed(&feeder_db, plan, &work_tx, stop));
        for slot in progress.lanes(lanes) {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            let (roots, paced) = (&roots, Paced::new(&throttle, stop));
            let block = job.block_size.clamp(4096, 4 << 20);
            let algo = job.checksum;
            s.spawn(move || lane(roots, algo, &rx, &tx, block, paced, &slot));
        }
        drop(work_rx);
        drop(done_tx);
        let recorder = Recorder {
            job,
            plan,
            root_id,
            audit,
            progress,
            found,
        };
        let recorded = recorder.run(done_rx, db);
        let fed = feeder.join().expect("verify feeder thread panicked");
        finished.store(true, Relaxed);
        recorded?;
        fed?;
        if stop.load(Relaxed) {
            return Err(VerifyError::Interrupted);
        }
        Ok(())
    })
}

/// Beside the lanes until they are done: a stop request cancels `limit`,
/// so a lane waiting in a pause returns and sees the stop.
fn cancel_on_stop(stop: &AtomicBool, limit: &LiveLimit, finished: &AtomicBool) {
    while !finished.load(Relaxed) {
        if stop.load(Relaxed) {
            limit.cancel();
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pages the rows to check from the DB into the lanes' channel.
fn feed(
    db: &StateDb,
    plan: Plan,
    tx: &SyncSender<VerifyRow>,
    stop: &AtomicBool,
) -> Result<(), DbError> {
    let mut after = None;
    loop {
        let page = db.verify_page(plan.since_ns, after.as_ref(), PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.key.clone());
        for row in page.into_iter().filter(|r| plan.wants(r.id)) {
            if stop.load(Relaxed) || tx.send(row).is_err() {
                // Stopped, or the recorder is gone (it has the error).
                return Ok(());
            }
        }
    }
}

/// One lane: checks rows until the channel ends. `algo` is the job's
/// checksum, which hashes an adopted file's source.
fn lane(
    roots: &Roots<'_>,
    algo: HashAlgo,
    rx: &Mutex<Receiver<VerifyRow>>,
    tx: &SyncSender<Checked>,
    block: usize,
    mut paced: Paced<'_>,
    progress: &Lane,
) {
    let mut bufs = Bufs::default();
    loop {
        let next = rx.lock().map(|r| r.recv());
        let Ok(Ok(row)) = next else { return };
        bufs.dest.resize(block, 0);
        let (outcome, read) = match &row.recorded {
            Some((hash, name)) => match algo_of(name) {
                Some(a) => {
                    let against = (row.size, hash.as_str(), a);
                    let buf = &mut bufs.dest;
                    read::check_hashed(roots.dest, &row.dest, against, buf, &mut paced, progress)
                }
                None => {
                    let error = format!("unknown hash algorithm `{name}` in the DB");
                    (Outcome::Failed { error }, 0)
                }
            },
            None => {
                bufs.source.resize(block, 0);
                adopted::compare(roots, &row, algo, &mut bufs, &mut paced, progress)
            }
        };
        match outcome {
            Outcome::Stopped => progress.drop_file(),
            _ => progress.file_done(row.to_read()),
        }
        if tx.send(Checked { row, outcome, read }).is_err() {
            return;
        }
    }
}

/// The one writer: records outcomes in batches.
struct Recorder<'a> {
    job: &'a Job,
    plan: Plan,
    /// The destination root the verify began with.
    root_id: Option<RootId>,
    audit: &'a mut AuditLog,
    progress: &'a Progress,
    found: &'a mut Found,
}

impl Recorder<'_> {
    fn root_changed(&self) -> Result<(), VerifyError> {
        if RootId::of(self.job.destination.as_std_path()).ok() == self.root_id {
            return Ok(());
        }
        Err(VerifyError::RootChanged {
            path: self.job.destination.to_string(),
        })
    }

    fn run(mut self, rx: Receiver<Checked>, db: &mut StateDb) -> Result<(), VerifyError> {
        let mut in_batch = 0usize;
        let mut since = Instant::now();
        let mut batch: Option<Tx<'_>> = None;
        let result = (|| {
            for c in rx.iter() {
                let Some(result) = c.outcome.result() else {
                    continue;
                };
                if result == VerifyResult::Missing {
                    // An unmounted share makes every file look missing:
                    // that is not a finding about the files.
                    self.root_changed()?;
                }
                if batch.is_none() {
                    // Each batch starts on the root the verify began with:
                    // the lanes read below the root they hold, so a share
                    // unmounted (or replaced) since is seen here, not per file.
                    self.root_changed()?;
                    since = Instant::now();
                    batch = Some(db.begin()?);
                }
                let tx = batch.as_ref().expect("begun above");
                self.one(tx, &c, result)?;
                in_batch += 1;
                if in_batch >= BATCH || since.elapsed() >= BATCH_TIME {
                    let tx = batch.take().expect("begun above");
                    tx.update_verify(&self.found.rec)?;
                    tx.commit()?;
                    in_batch = 0;
                }
            }
            Ok(())
        })();
        if let Some(tx) = batch {
            match &result {
                Ok(()) | Err(VerifyError::RootChanged { .. }) => {
                    tx.update_verify(&self.found.rec)?;
                    tx.commit()?;
                }
                Err(_) => {
                    let _ = tx.rollback();
                }
            }
        }
        result
    }

    /// Records one outcome: audit line, row, counts, console name.
    fn one(&mut self, tx: &Tx<'_>, c: &Checked, result: VerifyResult) -> Result<(), VerifyError> {
        let (row, repair) = (&c.row, self.plan.repair);
        let algo = self.job.checksum.name();
        let rec = &mut self.found.rec;
        self.audit
            .write(&lines::audit_line(rec, row, &c.outcome, algo, repair))?;
        let now = crate::clock::now_ns();
        match &row.recorded {
            Some((hash, _)) => tx.record_verify(row.id, &row.key, hash, result, now, repair)?,
            None => {
                let source_hash = match &c.outcome {
                    Outcome::Verified {
                        source_hash: Some(h),
                    } => Some((h.as_str(), algo)),
                    _ => None,
                };
                tx.record_adopted(row.id, &row.key, source_hash, result, now, repair)?;
                if matches!(result, VerifyResult::Ok | VerifyResult::Mismatch) {
                    rec.adopted += 1;
                }
                rec.adopted_mismatched += u64::from(result == VerifyResult::Mismatch);
            }
        }
        rec.files += 1;
        rec.bytes += c.read;
        match result {
            VerifyResult::Ok => {
                rec.ok += 1;
                self.progress.file_synced(row.size);
            }
            VerifyResult::Mismatch => rec.mismatched += 1,
            VerifyResult::Missing => rec.missing += 1,
            VerifyResult::Failed => rec.failed += 1,
        }
        if result != VerifyResult::Ok {
            self.progress.file_failed();
            let dest = self.job.destination.as_std_path();
            let rel = row.dest.strip_prefix(dest).unwrap_or(&row.dest);
            if let Some(l) = lines::console_line(rel, row.size, &c.outcome) {
                self.found.bad.note(row.id, l);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_a_function_of_its_seed() {
        let pick = |seed| {
            (0..10_000)
                .filter(|&id| in_sample(id, 10.0, seed))
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(7), pick(7));
        assert_ne!(pick(7), pick(8));
        let n = pick(7).len();
        assert!((800..1200).contains(&n), "{n} of 10000 at 10%");
        assert!((0..1000).all(|id| in_sample(id, 100.0, 3)));
        assert!((0..1000).all(|id| !in_sample(id, 0.0, 3)));
    }
}
