//! `jobrun verify`: reads the destination copy of every synced
//! file, hashes it with the row's recorded algorithm and compares size and
//! hash with what the transfer recorded while it read the source. The
//! source is never touched, so a verify costs one read of the destination,
//! half the link traffic of a tool that reads both sides.
//!
//! Shape: one feeder thread pages rows from the DB (its own connection)
//! into a bounded channel; `transfers` worker threads take rows from it,
//! read and hash the destination file under the job's `bwlimit` and send
//! back an [`Outcome`]; the calling thread is the only DB and audit-log
//! writer, committing in batches (every [`BATCH`] rows or second), so a
//! killed verify keeps what it committed and the next one resumes.
//! Does not use `transfer/*`: the copy path is not shared.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::audit::{AuditError, AuditLog, encode_path, rfc3339_ns};
use crate::beneath::Root;
use crate::checksum::HashAlgo;
use crate::db::{DbError, HashedFile, RowId, StateDb, Tx, VerifyRecord, VerifyResult};
use crate::manifest::Job;
use crate::progress::{Lane, Progress};
use crate::roots::RootId;
use crate::stage::RunCtx;
use crate::throttle::{LiveLimit, Throttle};

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
    Verified,
    Mismatch {
        /// Size found, when it differs from the recorded one (then the file
        /// is not read: a wrong size settles it).
        found_size: Option<u64>,
        /// The hash found, when the size matched.
        found: Option<String>,
    },
    /// Nothing at the path, or something that is not a regular file
    /// (`reason` says what; a symlink is never followed).
    Missing {
        reason: Option<String>,
    },
    /// The file could not be read.
    Failed {
        error: String,
    },
    /// A stop request cut the read short: nothing is recorded.
    Stopped,
}

impl Outcome {
    fn result(&self) -> Option<VerifyResult> {
        Some(match self {
            Outcome::Verified => VerifyResult::Ok,
            Outcome::Mismatch { .. } => VerifyResult::Mismatch,
            Outcome::Missing { .. } => VerifyResult::Missing,
            Outcome::Failed { .. } => VerifyResult::Failed,
            Outcome::Stopped => return None,
        })
    }
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

/// One audit line of a verify: `verified`, `mismatch`, `missing` or `failed`.
#[derive(Serialize)]
struct VerifyLine<'a> {
    status: &'static str,
    verify: i64,
    kind: &'static str,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_b64: Option<String>,
    dest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_b64: Option<String>,
    size: u64,
    mtime: String,
    algorithm: &'a str,
    /// The hash recorded when the file was read from the source.
    expected: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    found: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    found_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// `--repair` put the row back to `pending`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    repaired: bool,
}

fn line<'a>(
    rec: &VerifyRecord,
    row: &'a HashedFile,
    o: &'a Outcome,
    repair: bool,
) -> VerifyLine<'a> {
    let (source, source_b64) = encode_path(&row.source);
    let (dest, dest_b64) = encode_path(&row.dest);
    let mut l = VerifyLine {
        status: "verified",
        verify: rec.id,
        kind: "file",
        source,
        source_b64,
        dest,
        dest_b64,
        size: row.size,
        mtime: rfc3339_ns(row.modified_ns),
        algorithm: &row.algorithm,
        expected: &row.hash,
        found: None,
        found_size: None,
        reason: None,
        error: None,
        repaired: false,
    };
    match o {
        Outcome::Verified | Outcome::Stopped => {}
        Outcome::Mismatch { found_size, found } => {
            l.status = "mismatch";
            l.found = found.as_deref();
            l.found_size = *found_size;
            l.repaired = repair;
        }
        Outcome::Missing { reason } => {
            l.status = "missing";
            l.reason = reason.as_deref();
            l.repaired = repair;
        }
        Outcome::Failed { error } => {
            l.status = "failed";
            l.error = Some(error);
        }
    }
    l
}

/// Opens a destination file for reading without following a symlink in
/// its last component (`O_NOFOLLOW`) and without blocking on a FIFO
/// (`O_NONBLOCK`): the fallback of [`open_below`] when the destination
/// root cannot be held.
pub fn open_dest(path: &Path) -> io::Result<File> {
    let open = |extra: libc::c_int| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | extra)
            .open(path)
    };
    // O_NOATIME where permitted: a verify should not rewrite every atime.
    match open(libc::O_NOATIME) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => open(0),
        other => other,
    }
}

fn not_a_file(md: &std::fs::Metadata) -> &'static str {
    let ft = md.file_type();
    if ft.is_dir() {
        "a folder is in its place"
    } else if ft.is_fifo() {
        "a FIFO is in its place"
    } else if ft.is_socket() {
        "a socket is in its place"
    } else {
        "a device is in its place"
    }
}

/// Opens a destination file below the held destination root through no
/// symlink on the way (`beneath`), `O_NOATIME` where permitted; without a
/// held root, by path ([`open_dest`]).
fn open_below(root: Option<&Root>, path: &Path) -> io::Result<File> {
    let Some(root) = root else {
        return open_dest(path);
    };
    let (dir, name) = root.split(path)?;
    let dir = root.dir(dir)?;
    match dir.open_read(name, true) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => {
            dir.open_read(name, false)
        }
        r => r,
    }
}

/// Reads and hashes one destination file.
fn check(
    root: Option<&Root>,
    row: &HashedFile,
    algo: HashAlgo,
    buf: &mut [u8],
    throttle: &Throttle,
    progress: &Lane,
    stop: &AtomicBool,
) -> Outcome {
    let failed = |e: io::Error| Outcome::Failed {
        error: format!("cannot read `{}`: {e}", row.dest.display()),
    };
    let mut f = match open_below(root, &row.dest) {
        Ok(f) => f,
        Err(e) if crate::beneath::is_symlink_in_path(&e) => {
            return Outcome::Missing {
                reason: Some("a symlink is on the way to it; not followed".into()),
            };
        }
        Err(e) => {
            return match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR) => Outcome::Missing { reason: None },
                Some(libc::ELOOP) => Outcome::Missing {
                    reason: Some("a symlink is in its place; not followed".into()),
                },
                _ => failed(e),
            };
        }
    };
    let md = match f.metadata() {
        Ok(md) => md,
        Err(e) => return failed(e),
    };
    if !md.file_type().is_file() {
        return Outcome::Missing {
            reason: Some(not_a_file(&md).into()),
        };
    }
    if md.len() != row.size {
        return Outcome::Mismatch {
            found_size: Some(md.len()),
            found: None,
        };
    }
    let shown = root.and_then(|r| row.dest.strip_prefix(r.path()).ok());
    progress.file_started(shown.unwrap_or(&row.dest), row.size);
    let mut hasher = algo.hasher();
    let mut total = 0u64;
    let mut advised = false;
    loop {
        let limited = throttle.is_limited();
        if limited != advised {
            // Under a limit the kernel must not read ahead at link rate
            // (the transfer reader does the same, README "Bandwidth limit").
            let advice = if limited {
                rustix::fs::Advice::Random
            } else {
                rustix::fs::Advice::Normal
            };
            // Advice only: a filesystem that ignores it changes nothing else.
            let _ = rustix::fs::fadvise(&f, 0, None, advice);
            advised = limited;
        }
        let want = if limited {
            buf.len().min(throttle.slice_len())
        } else {
            buf.len()
        };
        if stop.load(Relaxed) {
            return Outcome::Stopped;
        }
        throttle.consume(want);
        if stop.load(Relaxed) {
            // Woken from a pause by the stop: nothing more is read.
            return Outcome::Stopped;
        }
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return failed(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        progress.bytes_written(n as u64);
    }
    let found = hasher.finish_hex();
    if total == row.size && found == row.hash {
        Outcome::Verified
    } else {
        Outcome::Mismatch {
            found_size: (total != row.size).then_some(total),
            found: Some(found),
        }
    }
}

fn algo_of(name: &str) -> Option<HashAlgo> {
    HashAlgo::ALL.into_iter().find(|a| a.name() == name)
}

/// Checks every row the plan selects and records each outcome (DB row,
/// audit line, the counts in `rec`). `rec.id` is the `verifies` row.
pub fn run(ctx: &mut RunCtx<'_>, plan: Plan, rec: &mut VerifyRecord) -> Result<(), VerifyError> {
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
    // Held once: every file is opened below it through no symlink.
    let dest_root = Root::open(job.destination.as_std_path()).ok();
    let (work_tx, work_rx) = sync_channel::<HashedFile>(lanes * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<(HashedFile, Outcome)>(lanes * 2);
    std::thread::scope(|s| {
        s.spawn(|| cancel_on_stop(stop, &limit, &finished));
        let feeder = s.spawn(move || feed(&feeder_db, plan, &work_tx, stop));
        for slot in progress.lanes(lanes) {
            let (rx, tx, throttle) = (work_rx.clone(), done_tx.clone(), &throttle);
            let root = dest_root.as_ref();
            let mut buf = vec![0u8; job.block_size.clamp(4096, 4 << 20)];
            s.spawn(move || lane(root, &rx, &tx, &mut buf, throttle, &slot, stop));
        }
        drop(work_rx);
        drop(done_tx);
        let recorder = Recorder {
            job,
            plan,
            root_id,
            progress,
        };
        let recorded = recorder.record(done_rx, db, audit, rec);
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
    tx: &SyncSender<HashedFile>,
    stop: &AtomicBool,
) -> Result<(), DbError> {
    let mut after = None;
    loop {
        let page = db.verify_page(plan.since_ns, after, PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.id);
        for row in page.into_iter().filter(|r| plan.wants(r.id)) {
            if stop.load(Relaxed) || tx.send(row).is_err() {
                // Stopped, or the recorder is gone (it has the error).
                return Ok(());
            }
        }
    }
}

fn lane(
    root: Option<&Root>,
    rx: &Mutex<Receiver<HashedFile>>,
    tx: &SyncSender<(HashedFile, Outcome)>,
    buf: &mut [u8],
    throttle: &Throttle,
    progress: &Lane,
    stop: &AtomicBool,
) {
    loop {
        let next = rx.lock().map(|r| r.recv());
        let Ok(Ok(row)) = next else { return };
        let outcome = match algo_of(&row.algorithm) {
            Some(algo) => check(root, &row, algo, buf, throttle, progress, stop),
            None => Outcome::Failed {
                error: format!("unknown hash algorithm `{}` in the DB", row.algorithm),
            },
        };
        match outcome {
            Outcome::Stopped => progress.drop_file(),
            _ => progress.file_done(row.size),
        }
        if tx.send((row, outcome)).is_err() {
            return;
        }
    }
}

/// The one writer: what it records against (the job, the plan, the
/// destination root as the verify found it).
struct Recorder<'r> {
    job: &'r Job,
    plan: Plan,
    root_id: Option<RootId>,
    progress: &'r Progress,
}

impl Recorder<'_> {
    /// Records outcomes in batches.
    fn record(
        &self,
        rx: Receiver<(HashedFile, Outcome)>,
        db: &mut StateDb,
        audit: &mut AuditLog,
        rec: &mut VerifyRecord,
    ) -> Result<(), VerifyError> {
        let Recorder {
            job,
            plan,
            root_id,
            progress,
        } = *self;
        let mut in_batch = 0usize;
        let mut since = Instant::now();
        let mut batch: Option<Tx<'_>> = None;
        let result = (|| {
            for (row, outcome) in rx.iter() {
                let Some(result) = outcome.result() else {
                    continue;
                };
                if result == VerifyResult::Missing
                    && RootId::of(job.destination.as_std_path()).ok() != root_id
                {
                    // An unmounted share makes every file look missing: that
                    // is not a finding about the files.
                    return Err(VerifyError::RootChanged {
                        path: job.destination.to_string(),
                    });
                }
                if batch.is_none() {
                    // Each batch starts on the root the verify began with: the
                    // lanes read below the root they hold, so a share
                    // unmounted (or replaced) since is seen here, not per file.
                    if RootId::of(job.destination.as_std_path()).ok() != root_id {
                        return Err(VerifyError::RootChanged {
                            path: job.destination.to_string(),
                        });
                    }
                    since = Instant::now();
                    batch = Some(db.begin()?);
                }
                let tx = batch.as_ref().expect("begun above");
                audit.write(&line(rec, &row, &outcome, plan.repair))?;
                let now = crate::clock::now_ns();
                tx.record_verify(row.id, &row.hash, result, now, plan.repair)?;
                rec.files += 1;
                match result {
                    VerifyResult::Ok => {
                        rec.ok += 1;
                        rec.bytes += row.size;
                        progress.file_synced(row.size);
                    }
                    VerifyResult::Mismatch => rec.mismatched += 1,
                    VerifyResult::Missing => rec.missing += 1,
                    VerifyResult::Failed => rec.failed += 1,
                }
                if result != VerifyResult::Ok {
                    if let Outcome::Mismatch { found: Some(_), .. } = outcome {
                        rec.bytes += row.size;
                    }
                    progress.file_failed();
                }
                in_batch += 1;
                if in_batch >= BATCH || since.elapsed() >= BATCH_TIME {
                    let tx = batch.take().expect("begun above");
                    tx.update_verify(rec)?;
                    tx.commit()?;
                    in_batch = 0;
                }
            }
            Ok(())
        })();
        if let Some(tx) = batch {
            match &result {
                Ok(()) | Err(VerifyError::RootChanged { .. }) => {
                    tx.update_verify(rec)?;
                    tx.commit()?;
                }
                Err(_) => {
                    let _ = tx.rollback();
                }
            }
        }
        result
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
