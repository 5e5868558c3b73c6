//! The scan's walks: one per tree, each on its own thread, sending the
//! entries of its tree in merge order (pre-order, siblings sorted by name)
//! in batches over a bounded channel. The walker itself is the one below
//! the stages ([`crate::walk`]); this side of it judges what the scan
//! leaves out, counts it, and gathers the source's mount points. It never
//! touches the DB.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tracing::{debug, info, warn};

use super::{MAX_FAILURES, SKIPPED_SPECIAL, SKIPPED_SYMLINK, ScanError, ScanReport, Skipped};
use crate::beneath::ns;
use crate::db::ScanEntry;
use crate::decide::EntryKind;
use crate::filter::{Filter, is_snapshot_dir};
use crate::fsmeta::{is_temp_name, to_entry};
use crate::progress::Progress;
use crate::roots::RootId;
use crate::walk::{Gone, LISTERS, Mount, Node, Options, Recorded, Walk};

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
    /// Source files with a link count above 1, and with holes (blocks not
    /// covering the size): said when `hard_links`/`sparse` leave them out.
    hard_linked: AtomicU64,
    sparse_files: AtomicU64,
    /// A snapshot folder that no filter excludes was warned about.
    snapshot_warned: AtomicBool,
    failures: Mutex<Vec<(PathBuf, String)>>,
    skipped: Mutex<Vec<Skipped>>,
    /// Per side (source, destination): where its walk met the other root.
    crossed: [Mutex<Option<PathBuf>>; 2],
    /// The source's mount points, and whether each held entries.
    mounts: Mutex<Vec<(PathBuf, bool)>>,
    /// Source folders recorded as mount points that went (not walked).
    gone: Mutex<Vec<(PathBuf, Gone)>>,
}

impl Tally {
    /// The walks' counts and samples into `report`.
    pub(super) fn into_report(self, report: &mut ScanReport) {
        report.source_errors = self.src_errors.load(Relaxed);
        report.dest_errors = self.dst_errors.load(Relaxed);
        report.special_skipped = self.special.load(Relaxed);
        report.symlinks_skipped = self.links_skipped.load(Relaxed);
        report.excluded = self.excluded.load(Relaxed);
        report.hard_linked = self.hard_linked.load(Relaxed);
        report.sparse_files = self.sparse_files.load(Relaxed);
        report.source_failures = self
            .failures
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        report.skipped = self.skipped.into_inner().unwrap_or_else(|p| p.into_inner());
        report.mount_points = self.mounts.into_inner().unwrap_or_else(|p| p.into_inner());
        report.mounts_gone = self.gone.into_inner().unwrap_or_else(|p| p.into_inner());
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

/// Where the source walk puts the mount points it found, and the recorded
/// ones that went.
type MountLists<'a> = (
    &'a Mutex<Vec<(PathBuf, bool)>>,
    &'a Mutex<Vec<(PathBuf, Gone)>>,
);

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
    /// Source side only: the mount points found, and the recorded ones
    /// that went.
    mounts: Option<MountLists<'a>>,
    /// Source side only: counts hard-linked and sparse files.
    tree: Option<(&'a AtomicU64, &'a AtomicU64)>,
    /// Source side only: the device whose files are grouped by inode
    /// number alone (the SMB client, `fsmeta::link_key`); their groups are
    /// counted from the rows after the walk, not here.
    pub(super) inode_dev: Option<u64>,
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
            mounts: source.then_some((&tally.mounts, &tally.gone)),
            tree: source.then_some((&tally.hard_linked, &tally.sparse_files)),
            inode_dev: None,
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
/// done, a stop is requested or the receiver is gone. `mounts`: the mount
/// points the last scan recorded in this tree.
pub(super) fn walk(
    root: &Path,
    side: Side,
    tx: &flume::Sender<Vec<ScanEntry>>,
    progress: &Progress,
    stop: &AtomicBool,
    counters: &Counters,
    (fold, mounts): (bool, Recorded),
) {
    let seen = match side {
        Side::Source => Progress::source_file,
        Side::Dest => Progress::dest_file,
    };
    let send = |b: Vec<ScanEntry>| tx.send(b).is_ok();
    let mut batch = Vec::with_capacity(BATCH);
    let opts = Options {
        filter: counters.filter.clone(),
        fold,
        listers: LISTERS,
        mounts,
    };
    let mut walk = Walk::new(root, opts);
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
        n.store(walk.excluded(), Relaxed);
    }
    debug!(
        side = side_name(side),
        excluded = walk.excluded(),
        silly = walk.silly(),
        "walk done"
    );
}

/// Judges one walked entry: jobrun's temporaries, skipped symlinks and
/// special files are left out (counted; NFS silly renames never come out
/// of the walker); the other root ends the walk; a source mount point is
/// noted, and one that went is left out, named once.
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
        name,
        path,
        meta,
        mount,
        ..
    } = entry;
    if let (Some((found, gone)), Mount::Point { .. } | Mount::Gone(_)) = (counters.mounts, mount) {
        match mount {
            Mount::Gone(why) => {
                warn!(
                    "`{}` {} (share not mounted?): nothing below it is copied or deleted \
                     this run",
                    path.display(),
                    why.what()
                );
                lock(gone).push((path, why));
                return Step::Skip;
            }
            Mount::Point { entries } => lock(found).push((path.clone(), entries)),
            Mount::No => {}
        }
    }
    let md = match meta {
        Ok(m) => m,
        Err(e) => {
            warn!(side = side_name(side), error = %e, "cannot stat entry; skipped");
            counters.error(Some(&path), format!("cannot stat source: {e}"));
            return Step::Skip;
        }
    };
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
        if let Some(tree) = counters.tree.filter(|_| ft.is_file()) {
            count_tree(tree, &md, counters.inode_dev);
        }
        return to_entry(path, &md, counters.inode_dev).map_or(Step::Skip, Step::Send);
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

/// A source file's hard links and holes, from the walk's own stat (the
/// links of a file on `inode_dev` from the rows, after the walk).
fn count_tree(
    (linked, sparse): (&AtomicU64, &AtomicU64),
    md: &std::fs::Metadata,
    inode_dev: Option<u64>,
) {
    use std::os::unix::fs::MetadataExt;
    if md.nlink() > 1 && inode_dev != Some(md.dev()) {
        linked.fetch_add(1, Relaxed);
    }
    if md.blocks().saturating_mul(512) < md.len() {
        sparse.fetch_add(1, Relaxed);
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
