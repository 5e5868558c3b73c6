//! The scan's merge step: the two walks paired by relative path
//! ([`crate::merge`]), each source entry decided against its destination
//! counterpart, and the rows written in transactions of [`TX_ENTRIES`]
//! merged entries. The only part of the scan that writes `files` rows and
//! the destination listing while the walks go.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::walk::Stream;
use super::{MAX_FAILURES, ScanReport};
use crate::db::{DbError, RowId, RowStatus, ScanEntry, SourceLookup, StateDb, Tx};
use crate::decide::{self, Decision, EntryKind, Stamp};
use crate::manifest::Job;
use crate::merge::{Merged, merge};
use crate::progress::Progress;

/// Merged entries per DB transaction.
const TX_ENTRIES: usize = 20_000;

/// Case collisions warned about one by one; beyond, one summary line.
pub(super) const WARN_EACH: u64 = 10;

/// Ids of the rows the source walk saw: one bit per rowid (50M rows ≈ 6 MB).
#[derive(Default)]
pub(super) struct Seen(Vec<u64>);

impl Seen {
    pub(super) fn insert(&mut self, id: i64) {
        let (w, b) = ((id as u64 / 64) as usize, id as u64 % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << b;
    }
    pub(super) fn contains(&self, id: i64) -> bool {
        let (w, b) = ((id as u64 / 64) as usize, id as u64 % 64);
        self.0.get(w).is_some_and(|x| x & (1 << b) != 0)
    }
}

/// The merge step's state between entries.
pub(super) struct Join<'a> {
    db: &'a StateDb,
    source: &'a Path,
    dest: &'a Path,
    window: std::time::Duration,
    /// `xattrs` or `acls`: a change of attributes alone (ctime) is copied.
    attrs_follow: bool,
    /// Destination entries are listed for the mirror.
    list_dest: bool,
    /// The destination ignores case.
    fold: bool,
    scan_id: i64,
    report: &'a mut ScanReport,
    seen: &'a mut Seen,
    collisions: decide::CaseCollisions,
    /// Destination entries' paths as the listing records them: with `fold`,
    /// each name paired with a source entry is spelled as the source spells
    /// it (so the mirror does not take `Case.txt` for an extra of `case.txt`).
    dest_spelled: Vec<PathBuf>,
    /// Destination entries not yet written to the listing.
    listing: Vec<ScanEntry>,
    pending: u64,
    pending_bytes: u64,
}

impl<'a> Join<'a> {
    pub(super) fn new(
        job: &'a Job,
        db: &'a StateDb,
        fold: bool,
        scan_id: i64,
        report: &'a mut ScanReport,
        seen: &'a mut Seen,
    ) -> Self {
        Join {
            db,
            source: job.source.as_std_path(),
            dest: job.destination.as_std_path(),
            window: job.modify_window,
            attrs_follow: job.xattrs || job.acls,
            list_dest: job.delete_extras,
            fold,
            scan_id,
            report,
            seen,
            collisions: decide::CaseCollisions::default(),
            dest_spelled: Vec::new(),
            listing: Vec::new(),
            pending: 0,
            pending_bytes: 0,
        }
    }

    /// Merges the two walks into the DB; returns when both have ended.
    pub(super) fn run(
        &mut self,
        src: Stream,
        dst: Stream,
        progress: &Progress,
    ) -> Result<(), DbError> {
        let (source, dest, fold) = (self.source, self.dest, self.fold);
        let pairs = merge(src, dst, |a: &ScanEntry, b: &ScanEntry| {
            let (a, b) = (relative(&a.path, source), relative(&b.path, dest));
            if fold {
                decide::cmp_paths_folded(a, b)
            } else {
                a.cmp(b)
            }
        });
        let mut in_tx = 0usize;
        let db = self.db;
        let mut lookup = db.source_lookup(!fold)?;
        let mut tx = db.begin()?;
        // The type changes are this scan's findings alone.
        tx.clear_type_changes()?;
        for pair in pairs {
            let (src, dst) = match pair {
                Merged::SourceOnly(s) => (Some(s), None),
                Merged::DestOnly(d) => (None, Some(d)),
                Merged::Both(s, d) => (Some(s), Some(d)),
            };
            if let Some(d) = &dst {
                self.dest_entry(d, src.as_ref());
            }
            if let Some(e) = src {
                self.source_entry(&tx, &mut lookup, &e, dst.as_ref())?;
            }
            in_tx += 1;
            if in_tx >= TX_ENTRIES {
                self.commit(tx, progress)?;
                tx = db.begin()?;
                in_tx = 0;
            }
        }
        self.commit(tx, progress)?;
        self.report.pending_files = self.pending;
        self.report.pending_bytes = self.pending_bytes;
        Ok(())
    }

    /// Writes the listing gathered so far and commits.
    fn commit(&mut self, tx: Tx<'_>, progress: &Progress) -> Result<(), DbError> {
        tx.insert_dest(&self.listing)?;
        self.listing.clear();
        tx.commit()?;
        progress.scan_pending(self.pending, self.pending_bytes);
        Ok(())
    }

    /// Counts a destination entry and, with `delete_extras`, lists it.
    fn dest_entry(&mut self, d: &ScanEntry, src: Option<&ScanEntry>) {
        self.report.dest_entries += 1;
        if self.list_dest {
            let mut d = d.clone();
            // The root keeps its own path: joined with an empty spelling
            // it would gain a trailing `/`, and the listing count (which
            // leaves out the root by its path) would count it as an entry.
            if self.fold && d.path != self.dest {
                let as_source = src.map(|e| relative(&e.path, self.source));
                let rel = relative(&d.path, self.dest);
                d.path = self
                    .dest
                    .join(spell(&mut self.dest_spelled, rel, as_source));
            }
            self.listing.push(d);
        }
    }

    /// Decides and records a source entry; a case collision fails its row.
    fn source_entry(
        &mut self,
        tx: &Tx<'_>,
        lookup: &mut SourceLookup<'_>,
        e: &ScanEntry,
        dst: Option<&ScanEntry>,
    ) -> Result<(), DbError> {
        let report = &mut *self.report;
        report.source_entries += 1;
        let dst_stamp = dst.map(stamp);
        let (source, dest) = (self.source, self.dest);
        let Recorded { id, copy, adopted } = record(
            tx,
            lookup,
            e,
            dst_stamp.as_ref(),
            (source, dest),
            (self.window, self.attrs_follow),
            self.scan_id,
        )?;
        self.seen.insert(id.get());
        let rel = relative(&e.path, source);
        let lost = if self.fold {
            self.collisions.check(rel, e.kind == EntryKind::Dir)
        } else {
            None
        };
        if let Some(lost) = lost {
            let error = collision_error(source, dest, rel, &lost);
            // By its path: the row may be synced, which its id alone does
            // not find without reading every row.
            tx.mark_failed_path(&e.path, &error)?;
            report.case_collisions += 1;
            if report.case_collisions <= WARN_EACH {
                warn!("{error}");
            }
            if report.collision_sample.len() < MAX_FAILURES {
                report.collision_sample.push((e.path.clone(), error));
            }
        } else if copy {
            self.pending += 1;
            if e.kind == EntryKind::File {
                self.pending_bytes += e.size;
            }
            // A folder where the source has none, or a non-folder where it
            // has one: recorded with what the scan saw, for the transfer
            // (and the mirror) to settle; see `decide::type_action`.
            if let Some(found) = dst_stamp.filter(|d| decide::is_type_change(e.kind, d.kind)) {
                tx.note_type_change(&e.path, &dest.join(rel), &found)?;
            }
        } else if adopted {
            report.adopted += 1;
        }
        Ok(())
    }
}

/// `path` relative to `root`: the walkers only yield paths below their
/// root (see [`crate::relpath::relative`], which runs for every comparison
/// of the merge).
fn relative<'p>(path: &'p Path, root: &Path) -> &'p Path {
    crate::relpath::relative(path, root).expect("the walker yields paths under its root")
}

fn stamp(e: &ScanEntry) -> Stamp {
    Stamp {
        kind: e.kind,
        size: e.size,
        modified_ns: e.modified_ns,
    }
}

/// What [`record`] made of one source entry.
struct Recorded {
    id: RowId,
    /// Pending: to copy.
    copy: bool,
    /// A file this scan took as synced without reading (found in place, no
    /// hash): new, or no longer the content a hash was recorded for.
    adopted: bool,
}

/// Decides one source entry against its destination counterpart and writes
/// its row if anything changed.
fn record(
    db: &Tx<'_>,
    lookup: &mut SourceLookup<'_>,
    e: &ScanEntry,
    dst: Option<&Stamp>,
    (source, dest): (&Path, &Path),
    (window, attrs_follow): (std::time::Duration, bool),
    scan_id: i64,
) -> Result<Recorded, DbError> {
    let src = stamp(e);
    let known = lookup.find(&e.path)?;
    // The after-copy stamp only counts while the source is the one copied.
    let same_content = known.as_ref().is_some_and(|k| stamp(&k.entry) == src);
    let after = known
        .as_ref()
        .filter(|_| same_content)
        .and_then(|k| k.after_copy);
    // With `xattrs`/`acls`, a synced entry whose ctime moved while its
    // content did not (attributes or an ACL changed) is copied again, so
    // they follow.
    let attrs_changed = attrs_follow
        && same_content
        && known
            .as_ref()
            .is_some_and(|k| k.status == RowStatus::Synced && k.entry.changed_ns != e.changed_ns);
    let copy = attrs_changed
        || matches!(
            decide::needs_transfer(&src, dst, after.as_ref(), window),
            Decision::Copy(_)
        );
    let status = if copy {
        RowStatus::Pending
    } else {
        RowStatus::Synced
    };
    // Synced without a hash after this scan, and not before it.
    let adopted = !copy
        && e.kind == EntryKind::File
        && known.as_ref().is_none_or(|k| {
            let hashed_after = same_content && k.hashed;
            let unhashed_before = k.status == RowStatus::Synced && !k.hashed;
            !(hashed_after || unhashed_before)
        });
    let id = match known {
        None => {
            let rel = relative(&e.path, source);
            let to = if rel.as_os_str().is_empty() {
                dest.to_path_buf()
            } else {
                dest.join(rel)
            };
            db.insert_source(e, &to, status, scan_id)?
        }
        Some(k) => {
            if k.status != status || !same_row(&k.entry, e) {
                db.update_source(k.id, e, status, same_content, scan_id)?;
            }
            k.id
        }
    };
    Ok(Recorded { id, copy, adopted })
}

/// Every recorded source field equal (the path is the key, not compared),
/// but a folder's atime: the walk stats a folder with its parent's listing
/// and then lists it, which may raise its atime, so every rescan would
/// rewrite every folder's row for its own reading. A folder's row keeps
/// the atime it was recorded with until something else about it changes.
fn same_row(a: &ScanEntry, b: &ScanEntry) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.modified_ns == b.modified_ns
        && (a.accessed_ns == b.accessed_ns || a.kind == EntryKind::Dir)
        && a.changed_ns == b.changed_ns
        && a.created_ns == b.created_ns
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.link == b.link
}

/// A destination entry's relative path as the listing records it on a
/// case-insensitive destination: its folder as recorded (the source's
/// spelling where the folder was paired), then its own name, or the
/// source's when paired with `as_source`. `spelled` holds the recorded path
/// of the last entry at each depth.
fn spell(spelled: &mut Vec<PathBuf>, rel: &Path, as_source: Option<&Path>) -> PathBuf {
    let depth = rel.components().count();
    let Some(name) = as_source.and_then(Path::file_name).or(rel.file_name()) else {
        return PathBuf::new();
    };
    let parent = if depth == 1 {
        Some(PathBuf::new())
    } else {
        spelled
            .get(depth - 2)
            .filter(|p| {
                rel.parent()
                    .is_some_and(|r| decide::cmp_paths_folded(r, p).is_eq())
            })
            .cloned()
    };
    let out = parent.map_or_else(|| rel.to_path_buf(), |p| p.join(name));
    spelled.truncate(depth - 1);
    spelled.resize(depth - 1, PathBuf::new());
    spelled.push(out.clone());
    out
}

/// The error of a source entry that a case-insensitive destination would
/// store on top of an earlier one.
fn collision_error(source: &Path, dest: &Path, rel: &Path, lost: &decide::CaseCollision) -> String {
    let (this, dst) = (source.join(rel), dest.join(rel));
    match lost {
        decide::CaseCollision::Name { winner } => format!(
            "case collision: `{}` and `{}` are one name on the case-insensitive destination \
             (`{}`); not copied, it would replace the other",
            this.display(),
            source.join(winner).display(),
            dst.display()
        ),
        decide::CaseCollision::InFolder { folder, winner } => format!(
            "case collision: its folder `{}` and `{}` are one name on the case-insensitive \
             destination (`{}`); not copied",
            source.join(folder).display(),
            source.join(winner).display(),
            dst.display()
        ),
    }
}
