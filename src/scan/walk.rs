//! The scan's walkers: one per tree, each on its own thread, sending the
//! entries of its tree in merge order (pre-order, siblings sorted by name)
//! in batches over a bounded channel. A walker reads its tree and counts
//! what it left out; it never touches the DB.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tracing::{debug, info, warn};

use super::list::{Child, LISTERS, Listers, Listing};
use super::{MAX_FAILURES, SKIPPED_SPECIAL, SKIPPED_SYMLINK, ScanError, ScanReport, Skipped};
use crate::beneath::{Dir, Root, ns};
use crate::db::ScanEntry;
use crate::decide::EntryKind;
use crate::filter::{Filter, is_snapshot_dir};
use crate::fsmeta::{is_nfs_silly_name, is_temp_name, to_entry};
use crate::progress::Progress;
use crate::roots::RootId;

/// Entries per batch from each walker: small enough that the merge keeps
/// pace with the walks (it cannot join what has not arrived from both
/// sides, and a walk's last batch is all it has left to do when the walks
/// end), large enough that sending costs nothing per entry.
const BATCH: usize = 256;
/// Batches in flight per walker: the walk runs this far ahead of the merge.
pub(super) const BATCHES_AHEAD: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Source,
    Dest,
}

/// One side's walk as a stream of entries, from batches sent by its walker.
pub(super) struct Stream {
    rx: flume::Receiver<Vec<ScanEntry>>,
    buf: std::vec::IntoIter<ScanEntry>,
}

impl Stream {
    pub(super) fn new(rx: flume::Receiver<Vec<ScanEntry>>) -> Self {
        Self {
            rx,
            buf: Vec::new().into_iter(),
        }
    }
}

impl Iterator for Stream {
    type Item = ScanEntry;

    fn next(&mut self) -> Option<ScanEntry> {
        loop {
            if let Some(e) = self.buf.next() {
                return Some(e);
            }
            self.buf = self.rx.recv().ok()?.into_iter();
        }
    }
}

/// What both walkers count, gathered into the report after the walks.
#[derive(Default)]
pub(super) struct Tally {
    src_errors: AtomicU64,
    dst_errors: AtomicU64,
    special: AtomicU64,
    links_skipped: AtomicU64,
    /// Source entries the filter left out.
    excluded: AtomicU64,
    /// A snapshot folder that no filter excludes was warned about.
    snapshot_warned: AtomicBool,
    failures: Mutex<Vec<(PathBuf, String)>>,
    skipped: Mutex<Vec<Skipped>>,
    /// Per side (source, destination): where its walk met the other root.
    crossed: [Mutex<Option<PathBuf>>; 2],
}

impl Tally {
    /// The walks' counts and samples into `report`.
    pub(super) fn into_report(self, report: &mut ScanReport) {
        report.source_errors = self.src_errors.load(Relaxed);
        report.dest_errors = self.dst_errors.load(Relaxed);
        report.special_skipped = self.special.load(Relaxed);
        report.symlinks_skipped = self.links_skipped.load(Relaxed);
        report.excluded = self.excluded.load(Relaxed);
        report.source_failures = self
            .failures
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        report.skipped = self.skipped.into_inner().unwrap_or_else(|p| p.into_inner());
    }

    /// The error of a walk that met the other root below its own.
    pub(super) fn crossed(&self, source: &Path, dest: &Path) -> Result<(), ScanError> {
        for (i, c) in self.crossed.iter().enumerate() {
            if let Some(path) = c.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let (side, other, root) = if i == 0 {
                    ("source", "destination", dest)
                } else {
                    ("destination", "source", source)
                };
                return Err(ScanError::RootsCross {
                    path: path.display().to_string(),
                    side,
                    other,
                    root: root.display().to_string(),
                });
            }
        }
        Ok(())
    }
}

/// What one walker counts (and, on the source side, leaves out).
pub(super) struct Counters<'a> {
    errors: &'a AtomicU64,
    /// Source side only: the entries that could not be read, by name.
    failures: Option<&'a Mutex<Vec<(PathBuf, String)>>>,
    /// Source side only: the entries left out of the job.
    skipped: Option<&'a Mutex<Vec<Skipped>>>,
    special: &'a AtomicU64,
    /// Set when source symlinks are skipped by policy: counts them.
    skip_links: Option<&'a AtomicU64>,
    /// The other root's identity: a folder that is it ends the walk.
    other_root: Option<RootId>,
    /// Where the walk met the other root.
    crossed: &'a Mutex<Option<PathBuf>>,
    /// The job's filters (both sides).
    filter: &'a Filter,
    /// Source side only: counts filtered-out entries.
    excluded: Option<&'a AtomicU64>,
    /// Source side only: set once a snapshot folder was warned about.
    snapshot_warned: Option<&'a AtomicBool>,
    /// Destination side, not in a dry run: remove interrupted runs'
    /// temporaries found on the way.
    remove_temps: bool,
}

impl<'a> Counters<'a> {
    /// The counters of `side`'s walker. `skip_links`: source symlinks are
    /// left out by policy; `may_remove`: not a dry run.
    pub(super) fn new(
        tally: &'a Tally,
        side: Side,
        other_root: Option<RootId>,
        skip_links: bool,
        may_remove: bool,
        filter: &'a Filter,
    ) -> Self {
        let source = side == Side::Source;
        Counters {
            errors: if source {
                &tally.src_errors
            } else {
                &tally.dst_errors
            },
            failures: source.then_some(&tally.failures),
            skipped: source.then_some(&tally.skipped),
            special: &tally.special,
            skip_links: (source && skip_links).then_some(&tally.links_skipped),
            other_root,
            crossed: &tally.crossed[usize::from(!source)],
            filter,
            excluded: source.then_some(&tally.excluded),
            snapshot_warned: source.then_some(&tally.snapshot_warned),
            remove_temps: !source && may_remove,
        }
    }

    /// Keeps a left-out source entry for the audit log (bounded).
    fn skip(
        &self,
        path: PathBuf,
        md: &std::fs::Metadata,
        kind: &'static str,
        reason: &'static str,
    ) {
        use std::os::unix::fs::MetadataExt;
        if let Some(s) = self.skipped {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            if s.len() < MAX_FAILURES {
                s.push(Skipped {
                    path,
                    kind,
                    size: md.len(),
                    modified_ns: ns(md.mtime(), md.mtime_nsec()),
                    reason,
                });
            }
        }
    }

    /// Counts an entry that could not be read, and keeps it by name on the
    /// source side (bounded).
    fn error(&self, path: Option<&Path>, error: String) {
        self.errors.fetch_add(1, Relaxed);
        if let (Some(f), Some(path)) = (self.failures, path) {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            if f.len() < MAX_FAILURES {
                f.push((path.to_path_buf(), error));
            }
        }
    }
}

/// What to do with one walked entry.
enum Step {
    /// Send this row.
    Send(ScanEntry),
    /// Left out; go on.
    Skip,
    /// End the walk (it met the other root).
    End,
}

/// Walks `root` and sends its entries in batches; returns when the walk is
/// done, a stop is requested or the receiver is gone.
pub(super) fn walk(
    root: &Path,
    side: Side,
    tx: &flume::Sender<Vec<ScanEntry>>,
    progress: &Progress,
    stop: &AtomicBool,
    counters: &Counters,
    fold: bool,
) {
    let seen = match side {
        Side::Source => Progress::source_file,
        Side::Dest => Progress::dest_file,
    };
    let send = |b: Vec<ScanEntry>| tx.send(b).is_ok();
    let mut batch = Vec::with_capacity(BATCH);
    let mut walk = SortedWalk::new(root, fold, counters.filter, LISTERS);
    for entry in walk.by_ref() {
        if stop.load(Relaxed) {
            return;
        }
        let entry = match entry {
            Ok(e) => e,
            Err((depth, path, e)) => {
                // A missing destination root is simply an empty destination.
                if side == Side::Dest && depth == 0 {
                    return;
                }
                warn!(side = side_name(side), error = %e, "cannot read entry; skipped");
                counters.error(Some(&path), e.to_string());
                continue;
            }
        };
        let e = match step(entry, side, counters) {
            Step::Send(e) => e,
            Step::Skip => continue,
            Step::End => return,
        };
        if e.kind == EntryKind::File {
            seen(progress, e.size);
        }
        batch.push(e);
        if batch.len() >= BATCH && !send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))) {
            return;
        }
    }
    if !batch.is_empty() {
        send(batch);
    }
    if let Some(n) = counters.excluded {
        n.store(walk.excluded, Relaxed);
    }
    debug!(
        side = side_name(side),
        excluded = walk.excluded,
        "walk done"
    );
}

/// Judges one walked entry: jobrun's temporaries, NFS silly renames,
/// skipped symlinks and special files are left out (counted); the other
/// root ends the walk.
fn step(entry: Node, side: Side, counters: &Counters) -> Step {
    if side == Side::Dest && is_temp_name(&entry.name) {
        // An interrupted run's temporary: never data, always removable
        // (by name, from the folder it was listed in); a dry run
        // changes nothing at the destination.
        if let Some(dir) = entry.dir.as_ref().filter(|_| counters.remove_temps) {
            let _ = dir.unlink(&entry.name);
        }
        return Step::Skip;
    }
    let Node {
        name, path, meta, ..
    } = entry;
    let md = match meta {
        Ok(m) => m,
        Err(e) => {
            warn!(side = side_name(side), error = %e, "cannot stat entry; skipped");
            counters.error(Some(&path), format!("cannot stat source: {e}"));
            return Step::Skip;
        }
    };
    if !md.is_dir() && is_nfs_silly_name(&name) {
        debug!(side = side_name(side), path = %path.display(), "NFS silly-rename file left out");
        return Step::Skip;
    }
    if md.is_dir()
        && is_snapshot_dir(&name)
        && counters
            .snapshot_warned
            .is_some_and(|w| !w.swap(true, Relaxed))
    {
        warn!(
            "`{}` looks like a NAS or ZFS snapshot folder and no `exclude` pattern matches it: \
             every snapshot in it will be copied; add `exclude = [\"{}/\"]` if that is not meant \
             (warned once per scan)",
            path.display(),
            name.to_string_lossy()
        );
    }
    if md.is_dir() && counters.other_root == Some(RootId::of_meta(&md)) {
        *counters.crossed.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
        return Step::End;
    }
    if let Some(n) = counters.skip_links.filter(|_| md.file_type().is_symlink()) {
        info!(path = %path.display(), "skipping symlink (symlinks = \"skip\")");
        n.fetch_add(1, Relaxed);
        counters.skip(path, &md, "symlink", SKIPPED_SYMLINK);
        return Step::Skip;
    }
    let ft = md.file_type();
    if ft.is_file() || ft.is_dir() || ft.is_symlink() {
        return to_entry(path, &md).map_or(Step::Skip, Step::Send);
    }
    // Never opened: opening a FIFO would block the walk forever, and
    // opening some devices has side effects (tape rewind).
    if side == Side::Source {
        warn!(
            path = %path.display(),
            kind = special_kind(&md),
            "skipped: not a regular file, folder or symlink; never copied"
        );
        counters.skip(path, &md, special_kind(&md), SKIPPED_SPECIAL);
    }
    counters.special.fetch_add(1, Relaxed);
    Step::Skip
}

/// A depth-first, pre-order walk with siblings sorted by name (bytewise) and
/// symlinks not followed: the order of walkdir's `sort_by_file_name`, i.e.
/// the component-wise `Path` order the scan's merge-join relies on. Each
/// entry is stat'ed relative to its open directory (std's
/// `DirEntry::metadata`, an `fstatat`) rather than by full path as walkdir
/// does, which spares the kernel one full path lookup per entry (≈40 % of a
/// no-op rescan's CPU with walkdir). The folders it enters next are listed
/// ahead on a few threads ([`super::list`]); memory: one sorted listing per
/// level of the current path, and the bounded listings ahead.
///
/// Each folder is opened from its parent's descriptor through no symlink
/// (`beneath`), never by path: a folder swapped for a symlink before it is
/// listed is a walk error for that folder (so the mirror deletes nothing
/// this run), never a listing of whatever it points to.
///
/// An entry the filter excludes is neither yielded nor, for a folder,
/// opened: an excluded `.snapshot` costs one name comparison, not a walk.
struct SortedWalk {
    root: Option<PathBuf>,
    listers: Arc<Listers>,
    /// Entries the filter left out (folders counted once, not their contents).
    excluded: u64,
    /// Per open directory level: its children not yet yielded.
    stack: Vec<Level>,
    /// A folder that could not be listed, reported by the next call.
    failed: Option<WalkError>,
}

/// One open directory level of the walk.
struct Level {
    path: PathBuf,
    dir: Arc<Dir>,
    children: std::vec::IntoIter<Child>,
}

/// A walk failure: depth (0 = the root), the path that could not be read
/// (a folder that could not be listed, or the root), and the error.
type WalkError = (usize, PathBuf, std::io::Error);

/// One walked entry: the root, or an entry of a listed folder.
struct Node {
    name: OsString,
    path: PathBuf,
    /// `lstat` of the entry.
    meta: std::io::Result<std::fs::Metadata>,
    /// The folder it is in (none for the root).
    dir: Option<Arc<Dir>>,
}

impl SortedWalk {
    /// The walk of `root`, with `listers` threads listing ahead of it.
    fn new(root: &Path, fold: bool, filter: &Filter, listers: usize) -> Self {
        Self {
            root: Some(root.to_path_buf()),
            listers: Listers::new(root, filter, fold, listers),
            excluded: 0,
            stack: Vec::new(),
            failed: None,
        }
    }

    /// Puts the listing of the folder at `path` on the stack (its children
    /// come next).
    fn descend(&mut self, path: PathBuf, listed: std::io::Result<Listing>) {
        let depth = self.stack.len() + 1;
        match listed {
            Ok(l) => self.stack.push(Level {
                path,
                dir: l.dir,
                children: l.children.into_iter(),
            }),
            Err(e) => {
                let e = std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
                self.failed = Some((depth, path, e));
            }
        }
    }
}

impl Drop for SortedWalk {
    fn drop(&mut self) {
        self.listers.close();
    }
}

impl Iterator for SortedWalk {
    type Item = Result<Node, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(f) = self.failed.take() {
            return Some(Err(f));
        }
        if let Some(root) = self.root.take() {
            return Some(match std::fs::symlink_metadata(&root) {
                Ok(md) => {
                    if md.is_dir() {
                        let listed = Root::open(&root)
                            .and_then(|r| r.dir(Path::new("")))
                            .and_then(|d| self.listers.list(d, &root, &[]));
                        self.descend(root.clone(), listed);
                    }
                    Ok(Node {
                        name: root.file_name().unwrap_or(root.as_os_str()).to_owned(),
                        path: root,
                        meta: Ok(md),
                        dir: None,
                    })
                }
                Err(e) => Err((0, root, e)),
            });
        }
        loop {
            let top = self.stack.last_mut()?;
            match top.children.next() {
                Some(child) => {
                    if child.excluded {
                        self.excluded += 1;
                        continue;
                    }
                    let path = top.path.join(&child.name);
                    let dir = top.dir.clone();
                    if let Some(slot) = &child.sub {
                        let listed = self.listers.take(slot);
                        self.descend(path.clone(), listed);
                    }
                    return Some(Ok(Node {
                        meta: child.meta,
                        name: child.name,
                        path,
                        dir: Some(dir),
                    }));
                }
                None => {
                    self.stack.pop();
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_walk_matches_walkdir_order_and_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        for p in [
            "a.txt", "a-b/c", "a b", "a/b.c/d", "a/b/c", "z", "é/x", "a/b-",
        ] {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if !p.exists() {
                std::fs::write(&p, b"x").unwrap();
            }
        }
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let ours: Vec<PathBuf> = SortedWalk::new(&root, false, &Filter::default(), 0)
            .map(|n| n.unwrap().path)
            .collect();
        let theirs: Vec<PathBuf> = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .collect();
        assert_eq!(ours, theirs);
        let mut sorted = ours.clone();
        sorted.sort();
        assert_eq!(ours, sorted, "walk order must be Path order");
        assert!(matches!(
            SortedWalk::new(
                &dir.path().join("missing"),
                false,
                &Filter::default(),
                LISTERS
            )
            .next(),
            Some(Err((0, _, _)))
        ));
    }

    #[test]
    fn a_folder_swapped_for_a_symlink_mid_walk_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/inside"), b"x").unwrap();
        std::fs::write(root.join("z"), b"x").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("secret"), b"x").unwrap();
        let none = Filter::default();
        // No listers: nobody lists `d` before the swap below.
        let mut walk = SortedWalk::new(&root, false, &none, 0);
        assert!(
            walk.next()
                .is_some_and(|n| n.is_ok_and(|n| n.dir.is_none()))
        );
        // The root is listed (`d` a folder in it); `d` is swapped before the
        // walk goes down into it.
        std::fs::rename(root.join("d"), dir.path().join("d.moved")).unwrap();
        std::os::unix::fs::symlink(&out, root.join("d")).unwrap();
        let rest: Vec<_> = walk.collect();
        let paths: Vec<PathBuf> = rest
            .iter()
            .map(|n| match n {
                Ok(n) => n.path.clone(),
                Err((_, p, _)) => p.clone(),
            })
            .collect();
        assert_eq!(paths, [root.join("d"), root.join("d"), root.join("z")]);
        let Err((depth, _, e)) = &rest[1] else {
            panic!("{paths:?}: `d` must fail, not be listed");
        };
        assert_eq!(*depth, 2);
        assert!(
            e.to_string().contains("symlink in path; not followed"),
            "{e}"
        );
    }

    /// A tree wide and deep enough that the listers run ahead of the walk
    /// and hit their bound: the same entries, in the same order, with the
    /// same metadata and the same exclusions, as the walk that lists every
    /// folder itself.
    #[test]
    fn listing_ahead_changes_nothing_the_walk_yields() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        for a in 0..30 {
            for b in 0..4 {
                let d = root.join(format!("d{a}/s{b}"));
                std::fs::create_dir_all(d.join("deep/er")).unwrap();
                for f in 0..5 {
                    std::fs::write(d.join(format!("f{f}")), vec![b'x'; f]).unwrap();
                }
                std::fs::write(d.join("deep/er/last"), b"y").unwrap();
                std::fs::write(d.join("skip.tmp"), b"y").unwrap();
            }
        }
        let filter = Filter::new(&["*.tmp".into(), "d7/".into()], &[]).unwrap();
        let walk = |listers| {
            let mut w = SortedWalk::new(&root, false, &filter, listers);
            let got: Vec<(PathBuf, u64, bool)> = w
                .by_ref()
                .map(|n| {
                    let n = n.unwrap();
                    let md = n.meta.unwrap();
                    (n.path, md.len(), md.is_dir())
                })
                .collect();
            (got, w.excluded)
        };
        let serial = walk(0);
        assert_eq!(serial.0.len(), 1 + 29 + 29 * 4 * (1 + 5 + 2 + 1));
        assert_eq!(serial.1, 1 + 29 * 4);
        for _ in 0..5 {
            assert_eq!(walk(LISTERS), serial);
        }
    }

    /// With listers running ahead, a folder swapped for a symlink is either
    /// listed as the folder it was (opened before the swap) or fails; never
    /// is what the link points to listed.
    #[test]
    fn listing_ahead_never_follows_a_swapped_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("secret"), b"x").unwrap();
        for i in 0..50 {
            std::fs::create_dir_all(root.join(format!("d{i:02}"))).unwrap();
            std::fs::write(root.join(format!("d{i:02}/inside")), b"x").unwrap();
        }
        let none = Filter::default();
        let mut walk = SortedWalk::new(&root, false, &none, LISTERS);
        assert!(
            walk.next()
                .is_some_and(|n| n.is_ok_and(|n| n.dir.is_none()))
        );
        for i in 0..50 {
            let d = root.join(format!("d{i:02}"));
            std::fs::rename(&d, dir.path().join(format!("moved{i}"))).unwrap();
            std::os::unix::fs::symlink(&out, &d).unwrap();
        }
        for n in walk.flatten() {
            assert_ne!(n.name, "secret", "{}", n.path.display());
        }
    }
}
