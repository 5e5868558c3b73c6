//! Transfer stage (SPEC §5): one reader and one writer joined by a bounded
//! flume FIFO of `queue_capacity` blocks. This file is the only place that
//! creates the channel; it spawns both ends, joins them and ranks errors.

pub mod block;
pub mod reader;
pub mod writer;

use std::sync::atomic::AtomicBool;

use crate::audit::{AuditError, AuditLog};
use crate::db::{DbError, StateDb};
use crate::manifest::Job;
use crate::progress::{PHASE_TRANSFER, Progress};
use crate::throttle::Throttle;

pub use writer::{WriterReport as TransferReport, temp_name};

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

/// Streams the backlog from the DB through the FIFO into the destination.
pub fn run(
    job: &Job,
    db: &mut StateDb,
    audit: &mut AuditLog,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<TransferReport, TransferError> {
    progress.set_phase(PHASE_TRANSFER);
    let reader_db = db.reopen()?;
    // Memory cap: queue_capacity blocks in the channel, plus one being read
    // and one being written; recycled buffers come back through `pool`.
    let (tx, rx) = flume::bounded(job.queue_capacity);
    let (pool_tx, pool_rx) = flume::bounded(job.queue_capacity + 2);
    let span = tracing::Span::current();
    std::thread::scope(|s| {
        let reader = reader::Reader {
            db: reader_db,
            source_root: job.source.as_std_path(),
            algo: job.checksum,
            block_size: job.block_size,
            tx,
            pool: pool_rx,
            throttle: Throttle::new(&job.bwlimit),
            stop,
        };
        let rspan = span.clone();
        let r = s.spawn(move || rspan.in_scope(|| reader.run()));
        let writer = writer::Writer {
            db,
            audit,
            dest_root: job.destination.as_std_path(),
            algo: job.checksum,
            inplace: job.inplace,
            rx,
            pool: pool_tx,
            throttle: Throttle::new(&job.bwlimit),
            progress,
            stop,
            last_dest_dir: None,
            last_touched_dir: None,
        };
        let w = writer.run();
        let r = r.join().expect("reader thread panicked");
        // The writer's error wins: a reader `WriterGone` is only its echo.
        match (w, r) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(report), Ok(())) => Ok(report),
        }
    })
}
