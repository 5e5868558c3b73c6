//! Scan stage (SPEC §3.1): source and destination are walked at the same
//! time on two threads, each streaming batches of entries over a bounded
//! channel to this thread, the only DB writer. Memory stays flat whatever
//! the tree size: at most a few batches are in flight, and the decision
//! pass afterwards reads the DB in chunks.
//!
//! `walk` runs the two walks (the walker itself is [`crate::walk`], the
//! one every tree listing uses) and judges what the scan leaves out;
//! `merge` owns the pairing of the two walks and every row the scan
//! writes; this file the stage, and the source's mount points (recorded
//! per scan; the rows below one that went away are held, not forgotten).

mod merge;
mod walk;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing::{debug, info, warn};

use crate::audit::{AuditError, FileRecord};
use crate::beneath::Root;
use crate::db::{DbError, MountPoint, ScanEntry, StateDb};
use crate::decide::{EntryKind, SourceRoot};
use crate::filter::Filter;
use crate::manifest::{Job, SymlinkPolicy};
use crate::progress::{Phase, Progress};
use crate::relpath::relative;
use crate::roots::{RootId, RootNow};
use crate::stage::RunCtx;
use crate::units::human_bytes;
use crate::walk::{Gone, Recorded};
use merge::{Join, Seen, WARN_EACH};
use walk::{Counters, Side, Stream, Tally};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("source root `{path}` is not usable: {reason}")]
    SourceRoot { path: String, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("scan interrupted")]
    Interrupted,
    /// A walk met the other root below its own (a bind mount, say): the
    /// trees overlap although their paths do not. Nothing was copied.
    #[error(
        "`{path}` in the {side} tree is the {other} root `{root}` (a bind mount?); \
         the roots must not overlap; nothing was copied"
    )]
    RootsCross {
        path: String,
        side: &'static str,
        other: &'static str,
        root: String,
    },
}

/// What a scan found.
#[derive(Debug, Default, Clone)]
pub struct ScanReport {
    pub source_entries: u64,
    pub dest_entries: u64,
    pub pending_files: u64,
    pub pending_bytes: u64,
    /// Files this scan took as synced without reading them: found in place
    /// at the destination (size and mtime the source's), no hash recorded.
    /// `jobrun verify` compares them with their source.
    pub adopted: u64,
    pub vanished: u64,
    /// Entries the walkers could not read; when > 0 on the source side,
    /// rows are not forgotten (an unreadable folder is not an empty one).
    pub source_errors: u64,
    pub dest_errors: u64,
    /// FIFOs, sockets and devices: never opened, never copied.
    pub special_skipped: u64,
    /// Source symlinks left out by `symlinks = "skip"`.
    pub symlinks_skipped: u64,
    /// Source entries left out by `exclude` (an excluded folder counts once:
    /// it is not walked).
    pub excluded: u64,
    /// Source files with a link count above 1, and with holes.
    pub hard_linked: u64,
    pub sparse_files: u64,
    /// Source entries the walk could not read, with the error (at most
    /// [`MAX_FAILURES`] kept; `source_errors` counts them all). Their rows,
    /// where they have one (an unreadable folder), are marked failed.
    pub source_failures: Vec<(PathBuf, String)>,
    /// Source entries left out of the job (FIFOs, sockets, devices; symlinks
    /// under `symlinks = "skip"`), for the audit log's `skipped` lines (at
    /// most [`MAX_FAILURES`] kept; the counts above count them all).
    pub skipped: Vec<Skipped>,
    /// The destination ignores case (probed once in its root this scan).
    pub dest_ignores_case: bool,
    /// Source entries not written because their name folds equal to an
    /// earlier sibling's on a case-insensitive destination: their rows are
    /// `failed`. Counted in full; the first [`MAX_FAILURES`] kept by name
    /// (source path, error) for the audit log.
    pub case_collisions: u64,
    pub collision_sample: Vec<(PathBuf, String)>,
    /// Source folders on another device than their parent (mount points),
    /// and whether each held entries.
    pub mount_points: Vec<(PathBuf, bool)>,
    /// Source folders recorded as mount points that went away (unmounted,
    /// or empty where they held entries): not walked; nothing below them
    /// copied, forgotten or deleted. Each is also among the
    /// `source_failures` (its row failed, a `failed` audit line).
    pub mounts_gone: Vec<(PathBuf, Gone)>,
}

/// A source entry the scan left out of the job, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    /// `symlink`, `fifo`, `socket`, `block device` or `char device`.
    pub kind: &'static str,
    pub size: u64,
    pub modified_ns: i128,
    pub reason: &'static str,
}

/// [`Skipped::reason`] of FIFOs, sockets and devices.
pub const SKIPPED_SPECIAL: &str = "not a regular file, folder or symlink; never copied";
/// [`Skipped::reason`] of symlinks under `symlinks = "skip"`.
pub const SKIPPED_SYMLINK: &str = "symlinks = \"skip\"";

/// Source read errors kept by name per scan (memory stays bounded).
pub const MAX_FAILURES: usize = 10_000;

/// Runs the scan stage: walk both trees, decide each source entry against
/// its destination counterpart, and write to the DB only what changed.
///
/// Both walkers yield entries in the same order (pre-order, siblings sorted
/// by name), which is the order of `Path`'s component-wise comparison of the
/// paths relative to each root; so this thread merge-joins the two streams
/// ([`crate::merge`]) with one entry of look-ahead per side, whatever the
/// tree size. Each source entry is looked up by primary key; an unchanged
/// row whose status stays is not written at all, so a no-op rescan of 50M
/// files reads the DB but does not rewrite it. Rows the walk did not see
/// are found with a bitset of the seen rowids and dropped (only when the
/// source walk had no errors).
pub fn run(ctx: &mut RunCtx<'_>) -> Result<ScanReport, ScanError> {
    let report = walk_and_decide(ctx)?;
    audit_left_out(ctx, &report)?;
    tree_left_out(ctx, &report)?;
    let word = |n: u64| if n == 1 { "entry" } else { "entries" };
    ctx.say(&format!(
        "scan: {} source {}, {} destination {}, {} pending ({})",
        report.source_entries,
        word(report.source_entries),
        report.dest_entries,
        word(report.dest_entries),
        report.pending_files,
        human_bytes(report.pending_bytes)
    ));
    Ok(report)
}

/// The scan proper: both walks merged into the DB, then the rows of what
/// vanished dropped.
fn walk_and_decide(ctx: &mut RunCtx<'_>) -> Result<ScanReport, ScanError> {
    let RunCtx {
        job,
        db,
        progress,
        stop,
        source_at_start,
        dry_run,
        ..
    } = ctx;
    let (job, progress, stop, dry_run) = (*job, *progress, *stop, *dry_run);
    progress.set_phase(Phase::Scan);
    let source = job.source.as_std_path();
    let dest = job.destination.as_std_path();
    // Against the root as the run found it: a share unmounted between the
    // start of the run and the walk would otherwise be walked as an empty
    // folder (nothing copied, exit 0; with `delete_extras` only the mirror's
    // "source empty" rail would stand between it and the destination).
    let root_id = check_source_root(source, *source_at_start)?;
    let fold = dest_ignores_case(dest);
    if fold {
        info!(destination = %dest.display(), "destination ignores case: names that fold equal are one name there");
    }
    let t0 = std::time::Instant::now();
    let scan_id = db.begin_scan()?;
    let mut report = ScanReport {
        dest_ignores_case: fold,
        ..ScanReport::default()
    };
    let mut seen = Seen::default();
    let tally = Tally::default();
    let mounts = db.mount_points()?;
    let inode_dev = inode_grouped(source).then_some(root_id.dev);
    let walks = Walks {
        job,
        progress,
        stop,
        root_id,
        fold,
        dry_run,
        scan_id,
        mounts: Recorded::new(mounts.iter().map(|m| (m.rel.clone(), m.entries))),
        inode_dev,
    };
    walk_both(&walks, db, &tally, &mut report, &mut seen)?;
    debug!(ms = t0.elapsed().as_millis() as u64, "walk + decide done");
    if stop.load(Relaxed) {
        return Err(ScanError::Interrupted);
    }
    tally.into_report(&mut report);
    // The root itself vanishing mid-walk looks like an empty tree: refuse.
    check_source_root(source, Some(root_id))?;
    record_mounts(db, source, &mut report, &mut seen, &mounts)?;
    finish(db, &mut report, &seen)?;
    // The groups on the SMB client are the rows sharing an inode (the walk
    // counted the link counts of every other device).
    if let Some(dev) = inode_dev.filter(|_| !job.hard_links) {
        report.hard_linked += db.shared_link_names(dev)?;
    }
    debug!(ms = t0.elapsed().as_millis() as u64, "scan finished");
    info!(
        source = report.source_entries,
        dest = report.dest_entries,
        pending = report.pending_files,
        vanished = report.vanished,
        excluded = report.excluded,
        "scan done"
    );
    Ok(report)
}

/// The scan's own audit lines: a `failed` line per source entry it could
/// not read or could not place (a name folding equal to a sibling's on a
/// case-insensitive destination), a `skipped` line per entry left out of
/// the job (FIFOs, sockets, devices; symlinks under `symlinks = "skip"`).
fn audit_left_out(ctx: &mut RunCtx<'_>, report: &ScanReport) -> Result<(), AuditError> {
    let (source, dest) = (
        ctx.job.source.as_std_path(),
        ctx.job.destination.as_std_path(),
    );
    for (path, error) in report
        .source_failures
        .iter()
        .chain(&report.collision_sample)
    {
        let rel = relative(path, source).unwrap_or(path);
        let mut rec = FileRecord::new("failed", path, &dest.join(rel), 0);
        rec.error = Some(error);
        ctx.audit.write(&rec)?;
    }
    for skipped in &report.skipped {
        let rel = relative(&skipped.path, source).unwrap_or(&skipped.path);
        let mut rec = FileRecord::new("skipped", &skipped.path, &dest.join(rel), skipped.size)
            .entry(skipped.kind, skipped.modified_ns);
        rec.reason = Some(skipped.reason);
        ctx.audit.write(&rec)?;
    }
    Ok(())
}

/// Never silent: the hard links and holes the source holds that
/// `hard_links = false`/`sparse = false` leave out, said once per scan and
/// kept for `status` (the last scan's counts).
fn tree_left_out(ctx: &mut RunCtx<'_>, report: &ScanReport) -> Result<(), ScanError> {
    let linked = if ctx.job.hard_links {
        0
    } else {
        report.hard_linked
    };
    let sparse = if ctx.job.sparse {
        0
    } else {
        report.sparse_files
    };
    if let Some(line) = crate::fsmeta::tree_left_out_line(linked, sparse) {
        tracing::warn!(hard_links = linked, sparse, "{line}");
    }
    ctx.db.set_tree_left_out(linked, sparse)?;
    Ok(())
}

/// How this scan's two walks run.
struct Walks<'w> {
    job: &'w Job,
    progress: &'w Progress,
    stop: &'w AtomicBool,
    /// The source root's identity: the destination walk stops at it.
    root_id: RootId,
    /// The destination ignores case.
    fold: bool,
    dry_run: bool,
    scan_id: i64,
    /// The source's mount points the last scan recorded.
    mounts: Recorded,
    /// The source root's device when its names of one file share an inode
    /// with a link count of 1 (`fsmeta::link_key`).
    inode_dev: Option<u64>,
}

/// Whether the source's hard-link groups are found by inode number alone
/// (`roots::Filesystem::names_share_inode`: the SMB client), said once.
fn inode_grouped(source: &Path) -> bool {
    match crate::roots::Filesystem::names_share_inode(source) {
        Ok(yes) => {
            if yes {
                info!(
                    "source on the SMB client (link counts of 1): hard links grouped by inode number"
                );
            }
            yes
        }
        Err(e) => {
            warn!(error = %e, "cannot read the source's mount options: hard links found by link count only");
            false
        }
    }
}

/// Walks both trees on two threads and merges their streams into the DB on
/// this one. A walk that met the other root is the error, whatever else
/// went wrong.
fn walk_both(
    walks: &Walks<'_>,
    db: &StateDb,
    tally: &Tally,
    report: &mut ScanReport,
    seen: &mut Seen,
) -> Result<(), ScanError> {
    let (job, progress, stop) = (walks.job, walks.progress, walks.stop);
    let source = job.source.as_std_path();
    let dest = job.destination.as_std_path();
    let dest_id = RootId::of(dest).ok();
    let skip_links = job.symlinks == SymlinkPolicy::Skip;
    let fold = walks.fold;
    let result: Result<(), ScanError> = std::thread::scope(|s| {
        let span = tracing::Span::current();
        let mut streams = Vec::new();
        for (side, root, other_root) in [
            (Side::Source, source, dest_id),
            (Side::Dest, dest, Some(walks.root_id)),
        ] {
            let (tx, rx) = flume::bounded::<Vec<ScanEntry>>(walk::BATCHES_AHEAD);
            let span = span.clone();
            let mut counters = Counters::new(
                tally,
                side,
                other_root,
                skip_links,
                !walks.dry_run,
                &job.filter,
            );
            counters.inode_dev = walks.inode_dev.filter(|_| side == Side::Source);
            let mounts = match side {
                Side::Source => walks.mounts.clone(),
                Side::Dest => Recorded::default(),
            };
            s.spawn(move || {
                span.in_scope(|| {
                    walk::walk(root, side, &tx, progress, stop, &counters, (fold, mounts));
                });
            });
            streams.push(Stream::new(rx));
        }
        let dst = streams.pop().expect("two streams");
        let src = streams.pop().expect("two streams");
        let mut join = Join::new(job, db, fold, walks.scan_id, report, seen);
        join.run(src, dst, progress)?;
        Ok(())
    });
    tally.crossed(source, dest)?;
    result
}

/// Records the source's mount points as this scan found them. The rows of
/// each recorded one that went away are held: counted seen (none is
/// forgotten, so no copy of them becomes an extra), the folder's own and
/// the pending ones below it failed (nothing is copied into it), the folder
/// named among the walk's failures; its record is kept, marked gone, for
/// the mirror and the next scan. A recorded one this scan did not meet is
/// kept when it lies below a gone one or the walk had errors (not met is
/// not proven removed), and forgotten otherwise (its folder was removed).
fn record_mounts(
    db: &mut StateDb,
    source: &Path,
    report: &mut ScanReport,
    seen: &mut Seen,
    recorded: &[MountPoint],
) -> Result<(), ScanError> {
    if report.mount_points.is_empty() && recorded.is_empty() {
        return Ok(());
    }
    let rel = |p: &Path| relative(p, source).unwrap_or(p).to_path_buf();
    let mut points: Vec<MountPoint> = report
        .mount_points
        .iter()
        .map(|(p, entries)| MountPoint {
            rel: rel(p),
            entries: *entries,
            gone: false,
        })
        .collect();
    for (path, why) in &report.mounts_gone {
        let error = format!(
            "`{}` {} (share not mounted?); nothing below it is copied or deleted",
            path.display(),
            why.what()
        );
        for id in db.hold_below(path, &error)? {
            seen.insert(id.get());
        }
        let rel = rel(path);
        let entries = recorded
            .iter()
            .find(|m| m.rel == rel)
            .is_none_or(|m| m.entries);
        points.push(MountPoint {
            rel,
            entries,
            gone: true,
        });
        report.source_failures.push((path.clone(), error));
    }
    let met: std::collections::HashSet<PathBuf> = points.iter().map(|p| p.rel.clone()).collect();
    let gone: Vec<PathBuf> = points
        .iter()
        .filter(|p| p.gone)
        .map(|p| p.rel.clone())
        .collect();
    for m in recorded {
        let below_gone = || gone.iter().any(|g| m.rel.starts_with(g));
        if !met.contains(&m.rel) && (report.source_errors > 0 || below_gone()) {
            points.push(m.clone());
        }
    }
    db.set_mount_points(&points)?;
    Ok(())
}

/// After the walks: drops the rows of entries that vanished (only after a
/// walk without source errors), marks unreadable folders failed, and ends
/// the scan's record.
fn finish(db: &mut StateDb, report: &mut ScanReport, seen: &Seen) -> Result<(), ScanError> {
    if report.case_collisions > WARN_EACH {
        warn!(
            collisions = report.case_collisions,
            "case collisions on the case-insensitive destination: {} more not copied \
             (each row is failed; `jobrun status` and the audit log list them)",
            report.case_collisions - WARN_EACH
        );
    }
    if report.source_errors == 0 {
        // Every walked entry has a row, so equal counts mean nothing vanished.
        if db.count_files()? != report.source_entries {
            report.vanished = db.drop_unseen(|id| seen.contains(id.get()))?;
        }
    } else {
        warn!(
            errors = report.source_errors,
            "source walk had errors; rows of unseen entries are kept"
        );
    }
    db.set_scan_source_errors(report.source_errors)?;
    // After the decisions, which would call an unreadable folder synced.
    if !report.source_failures.is_empty() {
        let tx = db.begin()?;
        for (path, error) in &report.source_failures {
            tx.mark_failed_path(path, error)?;
        }
        tx.commit()?;
    }
    db.finish_scan()?;
    Ok(())
}

/// Applies the job's filters to the rows a run starts from, when they
/// changed since the rows were last filtered: the rows of entries they now
/// exclude leave the job (backlog included; nothing is deleted at the
/// destination, and the mirror never lists excluded entries). Entries a
/// change newly includes are not in the DB: the next scan records them.
/// Returns how many rows left.
pub fn forget_excluded(job: &Job, db: &mut StateDb) -> Result<u64, DbError> {
    let now = job.filter.fingerprint();
    let before = db.filters_applied()?;
    if before.unwrap_or_else(|| Filter::default().fingerprint()) == now {
        return Ok(0);
    }
    let source = job.source.as_std_path();
    let n = if job.filter.is_empty() {
        0
    } else {
        db.drop_rows_where(|path, kind| {
            crate::relpath::strictly_below(path, source)
                .is_some_and(|rel| job.filter.excludes_path(rel, kind == EntryKind::Dir))
        })?
    };
    db.set_filters_applied(&now)?;
    if n > 0 {
        info!(
            rows = n,
            "filters changed: {n} entries left the job (their copies at the destination are kept)"
        );
    }
    Ok(n)
}

/// The first recorded mount point of the source (a share mounted inside
/// it) that is gone now, by a look at each (two `lstat`s). A run that
/// would resume its backlog scans instead: files below it must not be
/// copied from the folder the share left behind, and the scan holds their
/// rows and names the folder.
pub fn mount_gone_now(job: &Job, db: &StateDb) -> Result<Option<PathBuf>, DbError> {
    let source = job.source.as_std_path();
    Ok(db.mount_points()?.into_iter().find_map(|m| {
        let path = source.join(&m.rel);
        crate::walk::look_mount(&path, m.entries).map(|_| path)
    }))
}

/// Whether the destination ignores case (SMB, VFAT): a temporary is
/// created in its root (or, before the first run created the root, in its
/// nearest existing parent) and looked up with its name in upper case
/// (the probe's name has no other letters to fold). The
/// name ([`crate::fsmeta::probe_name`]) is a temporary's, which the next scan
/// removes if a kill leaves it behind; the folder's times are put back. A
/// folder that cannot be written is taken as case-sensitive (the transfer's
/// own probe reports an unwritable root).
pub fn dest_ignores_case(dest: &Path) -> bool {
    let Some(dir) = dest.ancestors().find(|d| d.is_dir()) else {
        return false;
    };
    let name = crate::fsmeta::probe_name();
    let upper = name.to_ascii_uppercase();
    // Compared by existence, not inode: FUSE (fusefat) numbers each name's
    // node apart. The upper-case name is not looked up before the probe
    // exists: the SMB client would cache its absence and answer from there.
    let folds =
        Root::open(dir).and_then(|root| root.probe(OsStr::new(&name), |d| d.stat(&upper).is_ok()));
    folds.unwrap_or_else(|e| {
        debug!(folder = %dir.display(), error = %e, "case probe: cannot create a temporary; taken as case-sensitive");
        false
    })
}

/// Checks the source root; returns its identity. With `at_start`, the
/// root must still be that folder: a share unmounted mid-walk leaves its
/// mount point behind, and a partial walk must not be trusted.
pub fn check_source_root(source: &Path, at_start: Option<RootId>) -> Result<RootId, ScanError> {
    let now = RootNow::look(source, at_start);
    let reason = match (now.state, now.id, now.error) {
        (SourceRoot::Dir { .. }, Some(id), _) => return Ok(id),
        (SourceRoot::NotADirectory, ..) => "not a directory".to_string(),
        (SourceRoot::Replaced, ..) => "no longer the same folder (share unmounted?)".to_string(),
        (_, _, Some(e)) => e.to_string(),
        (state, ..) => format!("{state:?}"),
    };
    Err(ScanError::SourceRoot {
        path: source.display().to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {}
