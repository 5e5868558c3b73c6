//! The mirror's candidates: the destination listing (the last scan's, or a
//! fresh walk of the destination), and the listed entries with no source
//! row, gathered in the candidate table the delete pass pages through.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing::warn;
use walkdir::WalkDir;

use super::{MirrorOptions, PAGE};
use crate::db::{DbError, Listed, ScanEntry, StateDb};
use crate::decide::Stamp;
use crate::filter::Filter;
use crate::fsmeta::{is_temp_name, to_entry};
use crate::manifest::Job;

/// Takes the destination listing (the last scan's, or a fresh walk when
/// the run resumed without scanning) and fills the candidate table from it.
/// Returns (candidates, destination entries).
pub(super) fn list_candidates(
    db: &mut StateDb,
    job: &Job,
    opts: MirrorOptions,
    stop: &AtomicBool,
) -> Result<(u64, u64), DbError> {
    let source_root = job.source.as_std_path();
    let dest_root = job.destination.as_std_path();
    if opts.fresh_listing && !opts.dry_run {
        relist_destination(db, dest_root, &job.filter, stop)?;
    }
    if opts.fresh_listing && opts.dry_run {
        // A dry run leaves the stored listing alone: the walk goes straight
        // into the (connection-private) candidate table.
        fresh_candidates(db, source_root, dest_root, &job.filter, stop)
    } else {
        let n = collect_candidates(db, source_root, dest_root)?;
        Ok((n, db.dest_listing_len(dest_root)?))
    }
}

/// Replaces the listing with a walk of the destination as it is now.
fn relist_destination(
    db: &mut StateDb,
    dest_root: &Path,
    filter: &Filter,
    stop: &AtomicBool,
) -> Result<(), DbError> {
    db.clear_dest_listing()?;
    let mut batch = Vec::with_capacity(PAGE);
    for_each_dest_entry(dest_root, filter, stop, |e| {
        batch.push(e);
        if batch.len() >= PAGE {
            let tx = db.begin()?;
            tx.insert_dest(&std::mem::take(&mut batch))?;
            tx.commit()?;
        }
        Ok(())
    })?;
    let tx = db.begin()?;
    tx.insert_dest(&batch)?;
    tx.commit()
}

/// Walks the destination (root, jobrun temporaries, FIFOs, sockets and
/// devices excluded; unreadable parts skipped, hence never deleted).
/// Entries the job's filters exclude are not walked (never candidates).
fn for_each_dest_entry(
    dest_root: &Path,
    filter: &Filter,
    stop: &AtomicBool,
    mut f: impl FnMut(ScanEntry) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let walk = WalkDir::new(dest_root).follow_links(false).min_depth(1);
    let kept = |e: &walkdir::DirEntry| {
        let rel = e.path().strip_prefix(dest_root).unwrap_or(e.path());
        !filter.excludes(rel, e.file_type().is_dir())
    };
    for entry in walk.into_iter().filter_entry(kept) {
        if stop.load(Relaxed) {
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "mirror: cannot read destination entry; kept");
                continue;
            }
        };
        if is_temp_name(entry.file_name()) {
            continue;
        }
        let Ok(md) = entry.metadata() else { continue };
        if let Some(e) = to_entry(entry.into_path(), &md) {
            f(e)?;
        }
    }
    Ok(())
}

/// The source path matching a destination path, or `None` for the
/// destination root itself, a path outside it, and jobrun's temporaries.
pub(super) fn source_of(dest: &Path, dest_root: &Path, source_root: &Path) -> Option<PathBuf> {
    let rel = dest.strip_prefix(dest_root).ok()?;
    if rel.as_os_str().is_empty() || dest.file_name().is_some_and(is_temp_name) {
        return None;
    }
    Some(source_root.join(rel))
}

/// Fills the candidate table from the listing: rows whose source path has
/// no row in `files`. Returns how many.
fn collect_candidates(
    db: &mut StateDb,
    source_root: &Path,
    dest_root: &Path,
) -> Result<u64, DbError> {
    db.reset_candidates()?;
    db.collect_dest_only(dest_root, source_root, PAGE)
}

/// A dry run that resumed: walks the destination straight into the
/// candidate table, leaving the persistent listing untouched. Returns
/// (candidates, destination entries).
fn fresh_candidates(
    db: &mut StateDb,
    source_root: &Path,
    dest_root: &Path,
    filter: &Filter,
    stop: &AtomicBool,
) -> Result<(u64, u64), DbError> {
    db.reset_candidates()?;
    let (mut entries, mut count) = (0u64, 0u64);
    let mut batch = Vec::new();
    for_each_dest_entry(dest_root, filter, stop, |e| {
        entries += 1;
        if let Some(src) = source_of(&e.path, dest_root, source_root)
            && !db.has_source(&src)?
        {
            count += 1;
            batch.push(Listed {
                path: e.path,
                stamp: Stamp {
                    kind: e.kind,
                    size: e.size,
                    modified_ns: e.modified_ns,
                },
            });
            if batch.len() >= PAGE {
                db.add_candidates(&std::mem::take(&mut batch))?;
            }
        }
        Ok(())
    })?;
    db.add_candidates(&batch)?;
    Ok((count, entries))
}
