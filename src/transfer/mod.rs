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
pub mod holes;
pub mod links;
pub mod reader;
mod space;
mod typechange;
pub mod writeback;
pub mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::audit::AuditError;
use crate::beneath;
use crate::db::DbError;
use crate::decide::TransferPass;
use crate::manifest::Job;
use crate::modes::Modes;
use crate::progress::Phase;
use crate::stage::RunCtx;
use crate::throttle::Throttle;
use space::Space;

pub use commit::WriterReport as TransferReport;

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
/// themselves. The name is [`crate::fsmeta::probe_name`]'s;
/// [`beneath::Root::probe`] puts the root's times back.
fn probe_destination(dest: &beneath::Root) -> Result<(), TransferError> {
    let name = crate::fsmeta::probe_name();
    match dest.probe(&name, |_| ()) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EACCES | libc::EPERM | libc::EROFS)
            ) =>
        {
            let uid = rustix::process::geteuid().as_raw();
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

/// What every lane of the stage shares, built once (fd's `walk.rs`
/// `WorkerState`); each lane's reader and writer add only their own
/// channel ends.
pub struct LaneCtx<'a> {
    /// `source`, `checksum`, `block_size`, `inplace`.
    pub job: &'a Job,
    /// The source root, held open: every source entry is opened below it
    /// without following a symlink (see `beneath`); also where a missing
    /// destination folder's bits and owners are read.
    pub source: &'a beneath::Root,
    /// The destination root, held open: every create, rename, utimes,
    /// chmod, chown and delete is resolved below it through no symlink.
    pub dest: &'a beneath::Root,
    /// Bits and owners of what the lanes create.
    pub modes: &'a Modes,
    /// One read and one write budget for the whole run.
    pub read_limit: &'a Throttle,
    pub write_limit: &'a Throttle,
    /// The source root's identity when the run started; taken by the
    /// readers when unknown.
    pub root_at_start: Option<crate::roots::RootId>,
    pub stop: &'a AtomicBool,
    /// Set on the first fatal error anywhere: every lane stops as on `stop`,
    /// leaving its rows pending.
    pub halt: &'a AtomicBool,
    /// Set once, by whichever lane writes the run's first block (the "time
    /// to first byte" figure of benches/scale.sh).
    pub first_block: &'a AtomicBool,
    /// Number of lanes sharing `write_limit` (sizes the write-back ranges).
    pub lanes: u64,
    /// The destination's free space: shared, or one file at a time once
    /// it ran out (see `space`).
    pub space: &'a Space,
    /// Hard links the destination refused (copied instead, see `links`).
    pub links_refused: &'a AtomicU64,
}

/// Holds both roots open for the stage; a source root gone or no longer a
/// folder, or a destination that cannot be opened, is fatal.
fn open_roots(job: &Job) -> Result<(beneath::Root, beneath::Root), TransferError> {
    let source = beneath::Root::open(job.source.as_std_path()).map_err(|e| {
        TransferError::Fatal(match e.raw_os_error() {
            Some(libc::ENOTDIR) => format!("source root `{}` is no longer a directory", job.source),
            _ => format!("source root `{}` is gone: {e}", job.source),
        })
    })?;
    let dest = beneath::Root::open(job.destination.as_std_path()).map_err(|e| {
        TransferError::Fatal(format!(
            "cannot open destination root `{}`: {e}",
            job.destination
        ))
    })?;
    tracing::debug!(
        openat2 = beneath::uses_openat2(),
        "paths resolved below the roots"
    );
    Ok((source, dest))
}

/// Streams the backlog from the DB through the lanes into the destination.
/// Entries whose destination folder the mirror must remove first (type
/// changes) wait: the report counts them, for [`after_mirror`].
pub fn run(ctx: &mut RunCtx<'_>) -> Result<TransferReport, TransferError> {
    run_pass(ctx, TransferPass::First)
}

/// The transfer again, after the mirror: the entries that waited for it
/// to remove a folder in their place are copied, or fail if it is still
/// there.
pub fn after_mirror(ctx: &mut RunCtx<'_>) -> Result<TransferReport, TransferError> {
    run_pass(ctx, TransferPass::AfterMirror)
}

fn run_pass(ctx: &mut RunCtx<'_>, pass: TransferPass) -> Result<TransferReport, TransferError> {
    let (files, bytes) = ctx.db.transfer_backlog()?;
    ctx.progress.set_backlog(files, bytes);
    ctx.progress.set_phase(Phase::Transfer);
    // Held for the whole stage: every source entry is opened below it.
    let (source_root, dest_root) = open_roots(ctx.job)?;
    let waiting = typechange::settle(ctx, &source_root, &dest_root, pass)?;
    if ctx.db.backlog()?.0 == waiting {
        // No row pending, of any kind (a folder's times are this stage's
        // too), but those waiting for the mirror: the rescan of every cron
        // run once the backlog is empty. No lane, no thread started for
        // nothing.
        return Ok(TransferReport {
            waiting,
            ..TransferReport::default()
        });
    }
    let mut report = lanes(ctx, &source_root, &dest_root)?;
    report.waiting = waiting;
    Ok(report)
}

/// What every round of lanes of one pass shares.
struct Shared<'a> {
    source: &'a beneath::Root,
    dest: &'a beneath::Root,
    modes: Modes,
    read_limit: Throttle,
    write_limit: Throttle,
    first_block: AtomicBool,
    space: Space,
    links_refused: AtomicU64,
}

/// Runs the lanes and the committer over the backlog: all lanes at once;
/// then, if the destination ran out of space while several files were in
/// flight, once more with one lane for the files given back (see `space`).
fn lanes(
    ctx: &mut RunCtx<'_>,
    source: &beneath::Root,
    dest: &beneath::Root,
) -> Result<TransferReport, TransferError> {
    let (job, progress, limit) = (ctx.job, ctx.progress, &ctx.limit);
    let lanes = job.transfers.max(1);
    if progress.backlog_files() > 0 {
        probe_destination(dest)?;
    }
    let shared = Shared {
        source,
        dest,
        modes: Modes::new(job.permissions, job.owners)
            .with_attrs(crate::xattrs::Attrs::new(job.xattrs, job.acls)),
        read_limit: Throttle::live(limit),
        write_limit: Throttle::live(limit).quiet(),
        first_block: AtomicBool::new(false),
        space: Space::new(lanes),
        links_refused: AtomicU64::new(0),
    };
    let mut report = round(ctx, &shared, lanes)?;
    if report.returned > 0 && !ctx.stopped() {
        // Alone, each file either fits or ends the run: no second return.
        let again = round(ctx, &shared, 1)?;
        report.files_done += again.files_done;
        report.bytes_done += again.bytes_done;
        report.failed += again.failed;
        report.returned = again.returned;
    }
    more_rounds_for_links(ctx, &shared, lanes, &mut report)?;
    links::report(&shared.links_refused);
    shared.modes.attrs.report();
    let (xattrs, acls) = shared.modes.attrs.left_out();
    if xattrs + acls > 0 {
        ctx.db.add_left_out(xattrs, acls)?;
    }
    Ok(report)
}

/// Names of hard-link groups held back while their group's first name was
/// copied: rounds again until none is held (each round links them, or
/// copies a group whose first copy failed), or one makes no progress.
fn more_rounds_for_links(
    ctx: &mut RunCtx<'_>,
    shared: &Shared<'_>,
    lanes: usize,
    report: &mut TransferReport,
) -> Result<(), TransferError> {
    while report.held > 0 && !ctx.stopped() {
        let again = round(ctx, shared, lanes)?;
        report.files_done += again.files_done;
        report.bytes_done += again.bytes_done;
        report.failed += again.failed;
        report.returned += again.returned;
        let progress = again.files_done + again.failed > 0;
        report.held = again.held;
        if !progress {
            break;
        }
    }
    Ok(())
}

/// One round of `lanes` lanes over the backlog as the DB has it now.
fn round(
    ctx: &mut RunCtx<'_>,
    shared: &Shared<'_>,
    lanes: usize,
) -> Result<TransferReport, TransferError> {
    let RunCtx {
        job,
        db,
        audit,
        progress,
        stop,
        source_at_start,
        ..
    } = ctx;
    let (job, progress, stop, source_at_start) = (*job, *progress, *stop, *source_at_start);
    let feed_db = db.reopen()?;
    let mut groups = links::Groups::new(job);
    let halt = AtomicBool::new(false);
    let ctx = LaneCtx {
        job,
        source: shared.source,
        dest: shared.dest,
        modes: &shared.modes,
        read_limit: &shared.read_limit,
        write_limit: &shared.write_limit,
        root_at_start: source_at_start,
        stop,
        halt: &halt,
        first_block: &shared.first_block,
        lanes: lanes as u64,
        space: &shared.space,
        links_refused: &shared.links_refused,
    };
    // A little look-ahead so a free reader never waits for the DB page query.
    let (work_tx, work_rx) = flume::bounded(2 * lanes);
    // Bounded: if the committer (DB) falls behind, the lanes wait instead of
    // queueing outcomes without limit.
    let (done_tx, done_rx) = flume::bounded(4096);
    let span = tracing::Span::current();
    std::thread::scope(|s| {
        let (fspan, ctx) = (span.clone(), &ctx);
        let groups = &mut groups;
        let feeder = s.spawn(move || {
            fspan.in_scope(|| reader::feed(feed_db, work_tx, (stop, ctx.halt), groups))
        });
        let readers: Vec<_> = progress
            .lanes(lanes)
            .into_iter()
            .map(|lane| spawn_lane(s, ctx, lane, &work_rx, &done_tx, &span))
            .collect();
        // The lanes hold the only other ends: the committer's loop ends
        // when the last writer does, the feeder's when the last reader does.
        drop((work_rx, done_tx));
        let committer = commit::Committer {
            db,
            audit,
            dest_root: job.destination.as_std_path(),
            dest: shared.dest,
            source: shared.source,
            modes: &shared.modes,
            algo: job.checksum,
            progress,
            stop,
            last_touched_dir: None,
            times_warned: false,
        };
        let c = committer.run(done_rx, ctx.halt);
        let f = feeder.join().expect("feeder thread panicked");
        let r = readers
            .into_iter()
            .map(|r| r.join().expect("reader thread panicked"));
        rank_errors(c, r, f)
    })
    .map(|mut report| {
        report.held = groups.held;
        report
    })
}

/// Spawns one lane: a reader and a writer joined by a bounded FIFO, with
/// the buffer pool going back. Memory cap per lane: `lane_capacity` blocks
/// in the channel, plus one being read and one being written.
fn spawn_lane<'scope, 'env: 'scope>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    ctx: &'env LaneCtx<'env>,
    lane: crate::progress::Lane,
    work: &flume::Receiver<crate::db::PendingFile>,
    done: &flume::Sender<commit::Done>,
    span: &tracing::Span,
) -> std::thread::ScopedJoinHandle<'scope, Result<(), TransferError>> {
    let cap = ctx.job.lane_capacity();
    let (tx, rx) = flume::bounded(cap);
    let (pool_tx, pool_rx) = flume::bounded(cap + 2);
    let reader = reader::Reader::new(ctx, work.clone(), tx, pool_rx);
    let writer = writer::Writer::new(ctx, rx, pool_tx, lane, done.clone());
    let wspan = span.clone();
    s.spawn(move || wspan.in_scope(|| writer.run()));
    let rspan = span.clone();
    s.spawn(move || {
        let r = rspan.in_scope(|| reader.run());
        if matches!(r, Err(ref e) if !matches!(e, TransferError::WriterGone)) {
            ctx.halt.store(true, Relaxed);
        }
        r
    })
}

/// The committer's error wins; then a reader's real error (a `WriterGone`
/// is only the echo of a stopped lane); then the feeder's.
fn rank_errors(
    committer: Result<TransferReport, TransferError>,
    readers: impl Iterator<Item = Result<(), TransferError>>,
    feeder: Result<(), TransferError>,
) -> Result<TransferReport, TransferError> {
    let mut first_reader_err = None;
    for r in readers {
        match r {
            Ok(()) | Err(TransferError::WriterGone) => {}
            Err(e) => {
                first_reader_err.get_or_insert(e);
            }
        }
    }
    match (committer, first_reader_err, feeder) {
        (Err(e), _, _) => Err(e),
        (Ok(_), Some(e), _) => Err(e),
        (Ok(_), None, Err(e)) => Err(e),
        (Ok(report), None, Ok(())) => Ok(report),
    }
}
