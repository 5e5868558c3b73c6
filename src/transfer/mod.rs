//! Transfer stage (SPEC §5). With `transfers = N` it runs N lanes, each one
//! reader and one writer joined by a bounded flume FIFO (this file is the
//! only place that creates the channels):
//!
//! ```text
//!            ┌─ reader 1 ─FIFO─ writer 1 ─┐
//! DB ─ feed ─┼─ reader 2 ─FIFO─ writer 2 ─┼─ Done events ─ committer ─ DB + audit
//!   (rows)   └─ …        (blocks)  …      ┘   (after rename)  (this thread)
//! ```
//!
//! Shared by all lanes: one read and one write [`Throttle`] (the limit is for
//! the whole run), one FIFO memory budget (`Job::lane_capacity` splits
//! `queue_capacity` over the lanes), and the single DB writer (the
//! committer), which batches commits and flushes the audit log before each.
//! Per-file order is the single-lane order: temp, blocks, times, rename, then
//! (committer) mark synced and audit line.

pub mod block;
pub mod commit;
pub mod dest;
pub mod failnote;
pub mod reader;
pub mod writeback;
pub mod writer;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::audit::{AuditError, AuditLog};
use crate::beneath;
use crate::db::{DbError, StateDb};
use crate::manifest::Job;
use crate::modes::Modes;
use crate::progress::{Phase, Progress};
use crate::throttle::Throttle;

pub use commit::WriterReport as TransferReport;
pub use dest::temp_name;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A condition that stops the whole run (exit 4): destination full or
    /// read-only, a root gone.
    #[error("{0}")]
    Fatal(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Only a symptom: the writer stopped first and its error is the cause.
    #[error("writer stopped")]
    WriterGone,
}

/// Creates and removes one temporary in the destination root, when there
/// is something to copy: a root this user may not write (EACCES, EPERM) or
/// a read-only one is fatal once, instead of one failure per file
/// (millions in a real job). Any other error is left to the files
/// themselves. The name (`.jobrun-0<pid>.tmp`) is a temporary's, which no
/// row uses (row ids have no leading zero) and which the next scan removes
/// if a kill leaves it behind; [`beneath::Root::probe`] puts the root's
/// times back.
fn probe_destination(dest: &beneath::Root) -> Result<(), TransferError> {
    let name = std::ffi::OsString::from(format!(".jobrun-0{}.tmp", std::process::id()));
    match dest.probe(&name, |_| ()) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EACCES | libc::EPERM | libc::EROFS)
            ) =>
        {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            Err(TransferError::Fatal(format!(
                "destination root `{}` is not writable by this user (uid {uid}): {e}; nothing copied, backlog kept",
                dest.path().display()
            )))
        }
        Err(e) => {
            tracing::debug!(error = %e, "destination probe failed; left to the files");
            Ok(())
        }
    }
}

/// Streams the backlog from the DB through the lanes into the destination.
pub fn run(
    job: &Job,
    db: &mut StateDb,
    audit: &mut AuditLog,
    progress: &Progress,
    stop: &AtomicBool,
    limit: &std::sync::Arc<crate::throttle::LiveLimit>,
    source_at_start: Option<crate::roots::RootId>,
) -> Result<TransferReport, TransferError> {
    progress.set_phase(Phase::Transfer);
    let feed_db = db.reopen()?;
    let lanes = job.transfers.max(1);
    let lane_cap = job.lane_capacity();
    let (read_limit, write_limit) = (Throttle::live(limit), Throttle::live(limit).quiet());
    // Set on the first fatal error anywhere, so that the other lanes stop.
    let halt = AtomicBool::new(false);
    let first_block = AtomicBool::new(false);
    // A little look-ahead so a free reader never waits for the DB page query.
    let (work_tx, work_rx) = flume::bounded(2 * lanes);
    // Bounded: if the committer (DB) falls behind, the lanes wait instead of
    // queueing outcomes without limit.
    let (done_tx, done_rx) = flume::bounded(4096);
    // Held for the whole stage: every source entry is opened below it.
    let source_root = beneath::Root::open(job.source.as_std_path()).map_err(|e| {
        TransferError::Fatal(match e.raw_os_error() {
            Some(libc::ENOTDIR) => format!("source root `{}` is no longer a directory", job.source),
            _ => format!("source root `{}` is gone: {e}", job.source),
        })
    })?;
    let dest_root = beneath::Root::open(job.destination.as_std_path()).map_err(|e| {
        TransferError::Fatal(format!(
            "cannot open destination root `{}`: {e}",
            job.destination
        ))
    })?;
    tracing::debug!(
        openat2 = beneath::uses_openat2(),
        "paths resolved below the roots"
    );
    if progress.backlog_files() > 0 {
        probe_destination(&dest_root)?;
    }
    let modes = Modes::new(job.permissions, job.owners);
    let span = tracing::Span::current();
    std::thread::scope(|s| {
        let fspan = span.clone();
        let (halt, stop) = (&halt, stop);
        let feeder = s.spawn(move || fspan.in_scope(|| reader::feed(feed_db, work_tx, stop, halt)));
        let mut readers = Vec::with_capacity(lanes);
        for lane in progress.lanes(lanes) {
            // Memory cap per lane: lane_cap blocks in the channel, plus one
            // being read and one being written; recycled buffers come back
            // through `pool`.
            let (tx, rx) = flume::bounded(lane_cap);
            let (pool_tx, pool_rx) = flume::bounded(lane_cap + 2);
            let reader = reader::Reader {
                work: work_rx.clone(),
                source_root: job.source.as_std_path(),
                algo: job.checksum,
                block_size: job.block_size,
                tx,
                pool: pool_rx,
                throttle: &read_limit,
                source: &source_root,
                root_at_start: source_at_start,
                stop,
                halt,
            };
            let rspan = span.clone();
            readers.push(s.spawn(move || {
                let r = rspan.in_scope(|| reader.run());
                if matches!(r, Err(ref e) if !matches!(e, TransferError::WriterGone)) {
                    halt.store(true, Relaxed);
                }
                r
            }));
            let writer = writer::Writer {
                dest: &dest_root,
                source: &source_root,
                modes: &modes,
                inplace: job.inplace,
                rx,
                pool: pool_tx,
                block_size: job.block_size,
                throttle: &write_limit,
                lane,
                done: done_tx.clone(),
                halt,
                first_block: &first_block,
                stop,
                lanes: lanes as u64,
                dirs: beneath::DirCache::default(),
            };
            let wspan = span.clone();
            s.spawn(move || wspan.in_scope(|| writer.run()));
        }
        drop((work_rx, done_tx));
        let committer = commit::Committer {
            db,
            audit,
            dest_root: job.destination.as_std_path(),
            dest: &dest_root,
            source: &source_root,
            modes: &modes,
            algo: job.checksum,
            progress,
            stop,
            last_touched_dir: None,
        };
        let c = committer.run(done_rx, halt);
        let f = feeder.join().expect("feeder thread panicked");
        // The committer's error wins; then a reader's real error (a
        // `WriterGone` is only the echo of a stopped lane); then the feeder's.
        let mut first_reader_err = None;
        for r in readers {
            match r.join().expect("reader thread panicked") {
                Ok(()) | Err(TransferError::WriterGone) => {}
                Err(e) => {
                    first_reader_err.get_or_insert(e);
                }
            }
        }
        match (c, first_reader_err, f) {
            (Err(e), _, _) => Err(e),
            (Ok(_), Some(e), _) => Err(e),
            (Ok(_), None, Err(e)) => Err(e),
            (Ok(report), None, Ok(())) => Ok(report),
        }
    })
}
