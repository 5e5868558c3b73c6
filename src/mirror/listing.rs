//! The mirror's candidates: the destination listing (the last scan's, or a
//! fresh walk of the destination by the scan's own walker, [`crate::walk`],
//! so both listings leave out the same entries), and the listed entries
//! with no source row, gathered in the candidate table the delete pass
//! pages through.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing::warn;

use super::{MirrorOptions, PAGE};
use crate::db::{DbError, Listed, ScanEntry, StateDb};
use crate::decide::Stamp;
use crate::filter::Filter;
use crate::fsmeta::{is_temp_name, to_entry};
use crate::manifest::Job;
use crate::relpath::strictly_below;
use crate::walk::{LISTERS, Options, Walk};

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

/// Walks the destination with the scan's walker and its rules (entries
/// the job's filters exclude and NFS silly-rename files are never walked,
/// hence never candidates); the root, jobrun temporaries, FIFOs, sockets
/// and devices are left out here, as the scan leaves them out of its
/// listing; unreadable parts are skipped, hence never deleted.
fn for_each_dest_entry(
    dest_root: &Path,
    filter: &Filter,
    stop: &AtomicBool,
    mut f: impl FnMut(ScanEntry) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let opts = Options {
        filter: filter.clone(),
        listers: LISTERS,
        ..Options::default()
    };
    for node in Walk::new(dest_root, opts) {
        if stop.load(Relaxed) {
            break;
        }
        let node = match node {
            Ok(n) if n.dir.is_none() => continue,
            Ok(n) => n,
            Err((_, path, e)) => {
                warn!(path = %path.display(), error = %e, "mirror: cannot read destination entry; kept");
                continue;
            }
        };
        if is_temp_name(&node.name) {
            continue;
        }
        let Ok(md) = node.meta else { continue };
        if let Some(e) = to_entry(node.path, &md, None) {
            f(e)?;
        }
    }
    Ok(())
}

/// The source path matching a destination path, or `None` for the
/// destination root itself, a path outside it, and jobrun's temporaries.
pub(super) fn source_of(dest: &Path, dest_root: &Path, source_root: &Path) -> Option<PathBuf> {
    let rel = strictly_below(dest, dest_root)?;
    if dest.file_name().is_some_and(is_temp_name) {
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
    let extras = db.collect_dest_only(dest_root, source_root, PAGE)?;
    // And the folders whose source became a file or a symlink.
    Ok(extras + db.add_type_change_candidates()?)
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
