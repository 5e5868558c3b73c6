//! Scan stage (SPEC §3.1): source and destination are walked at the same
//! time on two threads, each streaming batches of entries over a bounded
//! channel to this thread, the only DB writer. Memory stays flat whatever
//! the tree size: at most a few batches are in flight, and the decision
//! pass afterwards reads the DB in chunks.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tracing::{debug, info, warn};
use walkdir::WalkDir;

use crate::db::{DbError, ScanEntry, StateDb};
use crate::decide::{self, Decision, EntryKind};
use crate::manifest::{Job, SymlinkPolicy};
use crate::progress::{PHASE_SCAN, Progress};

/// Entries per DB transaction from each walker.
const BATCH: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("source root `{path}` is not usable: {reason}")]
    SourceRoot { path: String, reason: String },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("scan interrupted")]
    Interrupted,
}

/// What a scan found.
#[derive(Debug, Default, Clone)]
pub struct ScanReport {
    pub source_entries: u64,
    pub dest_entries: u64,
    pub pending_files: u64,
    pub pending_bytes: u64,
    pub vanished: u64,
    /// Entries the walkers could not read; when > 0 on the source side,
    /// rows are not forgotten (an unreadable folder is not an empty one).
    pub source_errors: u64,
    pub dest_errors: u64,
    /// FIFOs, sockets and devices: never opened, never copied.
    pub special_skipped: u64,
    /// Source symlinks left out by `symlinks = "skip"`.
    pub symlinks_skipped: u64,
    /// Source entries the walk could not read, with the error (at most
    /// [`MAX_FAILURES`] kept; `source_errors` counts them all). Their rows,
    /// where they have one (an unreadable folder), are marked failed.
    pub source_failures: Vec<(PathBuf, String)>,
}

/// Source read errors kept by name per scan (memory stays bounded).
pub const MAX_FAILURES: usize = 10_000;

enum Batch {
    Source(Vec<ScanEntry>),
    Dest(Vec<ScanEntry>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Dest,
}

/// Whether `name` is one of jobrun's own temporaries (see `transfer::temp_name`).
pub fn is_temp_name(name: &std::ffi::OsStr) -> bool {
    let b = std::os::unix::ffi::OsStrExt::as_bytes(name);
    b.starts_with(b".jobrun-")
        && b.ends_with(b".tmp")
        && b.len() > 12
        && b[8..b.len() - 4].iter().all(u8::is_ascii_digit)
}

/// Runs the scan stage: walk both trees into the DB, then decide each row.
pub fn run(
    job: &Job,
    db: &mut StateDb,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<ScanReport, ScanError> {
    progress.set_phase(PHASE_SCAN);
    let source = job.source.as_std_path();
    let dest = job.destination.as_std_path();
    let root_id = check_source_root(source, None)?;
    let scan_id = db.begin_scan()?;
    let mut report = ScanReport::default();
    let (src_err, dst_err, special) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let links_skipped = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let failures_ref = &failures;
    let skip_links = (job.symlinks == SymlinkPolicy::Skip).then_some(&links_skipped);

    let result: Result<(), ScanError> = std::thread::scope(|s| {
        let (tx, rx) = flume::bounded::<Batch>(8);
        let span = tracing::Span::current();
        for (side, root, errors) in [
            (Side::Source, source, &src_err),
            (Side::Dest, dest, &dst_err),
        ] {
            let tx = tx.clone();
            let (span, special) = (span.clone(), &special);
            s.spawn(move || {
                span.in_scope(|| {
                    let counters = Counters {
                        errors,
                        failures: (side == Side::Source).then_some(failures_ref),
                        special,
                        skip_links: skip_links.filter(|_| side == Side::Source),
                    };
                    walk(root, side, &tx, progress, stop, &counters)
                })
            });
        }
        drop(tx);
        for batch in rx.iter() {
            match batch {
                Batch::Source(b) => {
                    report.source_entries += b.len() as u64;
                    db.upsert_sources(&b, source, dest, scan_id)?;
                }
                Batch::Dest(b) => {
                    report.dest_entries += b.len() as u64;
                    db.insert_dest(&b)?;
                }
            }
        }
        Ok(())
    });
    result?;
    if stop.load(Relaxed) {
        return Err(ScanError::Interrupted);
    }
    report.source_errors = src_err.load(Relaxed);
    report.dest_errors = dst_err.load(Relaxed);
    report.special_skipped = special.load(Relaxed);
    report.symlinks_skipped = links_skipped.load(Relaxed);
    report.source_failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    // The root itself vanishing mid-walk looks like an empty tree: refuse.
    check_source_root(source, Some(root_id))?;
    if report.source_errors == 0 {
        report.vanished = db.drop_vanished(scan_id)?;
    } else {
        warn!(
            errors = report.source_errors,
            "source walk had errors; rows of unseen entries are kept"
        );
    }
    let window = job.modify_window;
    let (pending, bytes) = db.decide(
        scan_id,
        |src, dst, after| {
            matches!(
                decide::needs_transfer(src, dst, after, window),
                Decision::Copy(_)
            )
        },
        |files, bytes| {
            progress.0.pending_files.store(files, Relaxed);
            progress.0.pending_bytes.store(bytes, Relaxed);
        },
    )?;
    db.set_scan_source_errors(report.source_errors)?;
    // After the decisions, which would call an unreadable folder synced.
    for (path, error) in &report.source_failures {
        db.mark_failed_path(path, error)?;
    }
    db.finish_scan()?;
    report.pending_files = pending;
    report.pending_bytes = bytes;
    info!(
        source = report.source_entries,
        dest = report.dest_entries,
        pending,
        vanished = report.vanished,
        "scan done"
    );
    Ok(report)
}

/// Checks the source root; returns its device and inode. With `at_start`,
/// the root must still be that folder: a share unmounted mid-walk leaves
/// its mount point behind, and a partial walk must not be trusted.
fn check_source_root(source: &Path, at_start: Option<(u64, u64)>) -> Result<(u64, u64), ScanError> {
    use std::os::unix::fs::MetadataExt;
    let bad = |reason: String| ScanError::SourceRoot {
        path: source.display().to_string(),
        reason,
    };
    let md = std::fs::metadata(source).map_err(|e| bad(e.to_string()))?;
    if !md.is_dir() {
        return Err(bad("not a directory".into()));
    }
    if at_start.is_some_and(|id| id != (md.dev(), md.ino())) {
        return Err(bad("no longer the same folder (share unmounted?)".into()));
    }
    std::fs::read_dir(source).map_err(|e| bad(e.to_string()))?;
    Ok((md.dev(), md.ino()))
}

/// What one walker counts (and, on the source side, leaves out).
struct Counters<'a> {
    errors: &'a AtomicU64,
    /// Source side only: the entries that could not be read, by name.
    failures: Option<&'a Mutex<Vec<(PathBuf, String)>>>,
    special: &'a AtomicU64,
    /// Set when source symlinks are skipped by policy: counts them.
    skip_links: Option<&'a AtomicU64>,
}

fn walk(
    root: &Path,
    side: Side,
    tx: &flume::Sender<Batch>,
    progress: &Progress,
    stop: &AtomicBool,
    counters: &Counters,
) {
    let Counters {
        errors,
        failures,
        special,
        skip_links,
    } = *counters;
    let record = |path: Option<&Path>, error: String| {
        errors.fetch_add(1, Relaxed);
        if let (Some(f), Some(path)) = (failures, path) {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            if f.len() < MAX_FAILURES {
                f.push((path.to_path_buf(), error));
            }
        }
    };
    let c = &progress.0;
    let (files, bytes) = match side {
        Side::Source => (&c.src_files, &c.src_bytes),
        Side::Dest => (&c.dst_files, &c.dst_bytes),
    };
    let send = |b: Vec<ScanEntry>| {
        let msg = match side {
            Side::Source => Batch::Source(b),
            Side::Dest => Batch::Dest(b),
        };
        tx.send(msg).is_ok()
    };
    let mut batch = Vec::with_capacity(BATCH);
    for entry in WalkDir::new(root).follow_links(false).sort_by_file_name() {
        if stop.load(Relaxed) {
            return;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // A missing destination root is simply an empty destination.
                if side == Side::Dest && e.depth() == 0 {
                    return;
                }
                warn!(side = side_name(side), error = %e, "cannot read entry; skipped");
                record(e.path(), e.to_string());
                continue;
            }
        };
        if side == Side::Dest && is_temp_name(entry.file_name()) {
            // An interrupted run's temporary: never data, always removable.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let md = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                warn!(side = side_name(side), error = %e, "cannot stat entry; skipped");
                record(Some(entry.path()), format!("cannot stat source: {e}"));
                continue;
            }
        };
        if let Some(n) = skip_links.filter(|_| md.file_type().is_symlink()) {
            info!(path = %entry.path().display(), "skipping symlink (symlinks = \"skip\")");
            n.fetch_add(1, Relaxed);
            continue;
        }
        let path = entry.into_path();
        let Some(e) = to_entry(path.clone(), &md) else {
            // Never opened: opening a FIFO would block the walk forever, and
            // opening some devices has side effects (tape rewind).
            if side == Side::Source {
                warn!(
                    path = %path.display(),
                    kind = special_kind(&md),
                    "skipped: not a regular file, folder or symlink; never copied"
                );
            }
            special.fetch_add(1, Relaxed);
            continue;
        };
        if e.kind == EntryKind::File {
            files.fetch_add(1, Relaxed);
            bytes.fetch_add(e.size, Relaxed);
        }
        batch.push(e);
        if batch.len() >= BATCH && !send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))) {
            return;
        }
    }
    if !batch.is_empty() {
        send(batch);
    }
    debug!(side = side_name(side), "walk done");
}

fn special_kind(md: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "char device"
    } else {
        "unknown"
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Source => "source",
        Side::Dest => "destination",
    }
}

/// Converts lstat data into a row; `None` for FIFOs, sockets and devices.
pub fn to_entry(path: std::path::PathBuf, md: &std::fs::Metadata) -> Option<ScanEntry> {
    use std::os::unix::fs::MetadataExt;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        return None;
    };
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    let created_ns = md.created().ok().and_then(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_nanos() as i64)
    });
    Some(ScanEntry {
        path,
        kind,
        size: md.len(),
        modified_ns: ns(md.mtime(), md.mtime_nsec()),
        accessed_ns: ns(md.atime(), md.atime_nsec()),
        changed_ns: ns(md.ctime(), md.ctime_nsec()),
        created_ns,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn temp_names() {
        assert!(is_temp_name(OsStr::new(".jobrun-12.tmp")));
        assert!(!is_temp_name(OsStr::new(".jobrun-.tmp")));
        assert!(!is_temp_name(OsStr::new(".jobrun-1a.tmp")));
        assert!(!is_temp_name(OsStr::new("jobrun-12.tmp")));
        assert!(!is_temp_name(OsStr::new("data.tmp")));
    }
}
