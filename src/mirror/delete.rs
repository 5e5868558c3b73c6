//! The mirror's delete pass: each candidate, deepest first, re-checked live
//! below the held roots and judged by `decide::mirror_verdict`, then
//! deleted, audited and forgotten in batches; the touched folders' times
//! put back at the end.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::listing::source_of;
use super::{MirrorError, MirrorReport, PAGE};
use crate::audit::{AuditLog, FileRecord};
use crate::beneath::{self, DirCache, Root};
use crate::db::{DbError, Listed, StateDb, Tx};
use crate::decide::{
    self, DestNow, EntryKind, KeepReason, Live, MirrorPolicy, MirrorRun, MirrorVerdict, SourceNow,
    SourceRoot, Stamp,
};
use crate::roots::{DeleteGuard, RootId, RootNow};
use crate::stage::RunCtx;

/// Commit the DB (and flush the audit log) after this many deletions...
const COMMIT_DELETES: usize = 512;
/// ...or this much time, whichever comes first.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// The two roots, held open for the delete pass: every live check and
/// deletion is resolved below them through no symlink (`beneath`), so a
/// destination folder swapped for a symlink to `/etc` between the listing
/// and the deletion fails that one deletion instead of reaching `/etc`.
/// A root that cannot be opened leaves its checks `Unknown`: nothing is
/// deleted on its word.
struct Held {
    source: Option<Root>,
    dest: Option<Root>,
    source_dirs: DirCache,
    dest_dirs: DirCache,
}

fn live(root: &Option<Root>) -> Option<&Root> {
    root.as_ref().filter(|r| !r.moved())
}

impl Held {
    fn open(source_root: &Path, dest_root: &Path) -> Self {
        let open = |p: &Path| {
            Root::open(p)
                .inspect_err(|e| warn!(path = %p.display(), error = %e, "mirror: cannot open root; nothing deleted on its side"))
                .ok()
        };
        Held {
            source: open(source_root),
            dest: open(dest_root),
            source_dirs: DirCache::default(),
            dest_dirs: DirCache::default(),
        }
    }

    /// Whether `path` exists in the source now. `ENOENT` and `ENOTDIR` (a
    /// parent is not a directory) prove absence, and so does a folder on
    /// the way that is a symlink now; any other error proves nothing.
    fn source_now(&mut self, path: &Path) -> SourceNow {
        let Some(root) = &self.source else {
            return SourceNow::Unknown;
        };
        let at = root
            .split(path)
            .and_then(|(dir, name)| self.source_dirs.dir(root, dir)?.stat(name));
        match at {
            Ok(md) if md.kind != Some(EntryKind::Dir) => SourceNow::NotAFolder,
            Ok(_) => SourceNow::Present,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                SourceNow::Absent
            }
            // A folder on the way that is a symlink now (a source folder
            // replaced by a symlink: a type change): the tree as jobrun
            // copies it, never through a symlink, has nothing below it.
            Err(e) if beneath::is_symlink_in_path(&e) && below_symlink(root, path) => {
                self.source_dirs.clear();
                SourceNow::Absent
            }
            Err(e) => {
                self.source_dirs.clear();
                warn!(path = %path.display(), error = %e, "mirror: cannot check source path; destination entry kept");
                SourceNow::Unknown
            }
        }
    }

    /// The destination root, unless its path no longer leads to the folder
    /// held open (renamed away, unmounted): then nothing more is deleted.
    fn dest_root(&self) -> Option<&Root> {
        live(&self.dest)
    }

    fn dest_now(&mut self, path: &Path) -> DestNow {
        let Some(root) = live(&self.dest) else {
            return DestNow::Unknown;
        };
        let at = root
            .split(path)
            .and_then(|(dir, name)| self.dest_dirs.dir(root, dir)?.stat(name));
        match at {
            Ok(md) => md.stamp().map_or(DestNow::Unknown, DestNow::Is),
            Err(e) if e.kind() == ErrorKind::NotFound => DestNow::Gone,
            Err(e) => {
                self.dest_dirs.clear();
                debug!(path = %path.display(), error = %e, "mirror: cannot check destination entry; kept");
                DestNow::Unknown
            }
        }
    }

    /// Deletes `path` (an empty folder, or anything else by unlink), below
    /// the destination root through no symlink.
    fn remove(&mut self, path: &Path, kind: EntryKind) -> std::io::Result<()> {
        let Some(root) = live(&self.dest) else {
            return Err(std::io::Error::other(
                "destination root is no longer the folder this stage opened",
            ));
        };
        let (dir, name) = root.split(path)?;
        let dir = self.dest_dirs.dir(root, dir)?;
        match kind {
            EntryKind::Dir => dir.rmdir(name),
            EntryKind::File | EntryKind::Symlink => dir.unlink(name),
        }
    }
}

/// Whether a folder on the way to `path` (below `root`) is a symlink now,
/// by `lstat` through no symlink.
fn below_symlink(root: &Root, path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .take_while(|a| *a != root.path() && a.starts_with(root.path()))
        .any(|a| {
            root.stat(a)
                .is_ok_and(|md| md.kind == Some(EntryKind::Symlink))
        })
}

/// Judges and deletes the candidates page by page, deepest first, until
/// the last one, a stop request, a refusal or an error. What was deleted is
/// committed and the touched folders' times put back whatever ended it.
pub(super) fn delete_pass(
    ctx: &mut RunCtx<'_>,
    run: &mut MirrorRun,
    policy: &MirrorPolicy,
    (source_root, dest_root, root_id): (&Path, &Path, Option<RootId>),
    report: &mut MirrorReport,
) -> Result<(), MirrorError> {
    let initial_root = run.source_root;
    let (write, stop, say) = (!ctx.dry_run, ctx.stop, ctx.say);
    let RunCtx { db, audit, .. } = ctx;
    let Some(source_id) = root_id else {
        // The stage refused before this pass: no identity, no deletion.
        return Ok(());
    };
    let guard = DeleteGuard::new(dest_root, source_id).map_err(|source| MirrorError::DestRoot {
        path: dest_root.display().to_string(),
        source,
    })?;
    let db: &StateDb = db;
    let mut pass = Pass {
        db,
        audit,
        say,
        report,
        write,
        guard,
        guard_warned: false,
        held: Held::open(source_root, dest_root),
        tx: if write { Some(db.begin()?) } else { None },
        since_commit: 0,
        last_commit: Instant::now(),
        touched: BTreeSet::new(),
    };
    let mut before: Option<PathBuf> = None;
    let result = 'pages: loop {
        let page = match db.candidate_page(before.as_deref(), PAGE) {
            Ok(p) => p,
            Err(e) => break Err(e.into()),
        };
        let Some(last) = page.last() else {
            break Ok(());
        };
        before = Some(last.path.clone());
        for cand in page {
            if stop.load(Relaxed) {
                break 'pages Ok(());
            }
            let Some(src) = source_of(&cand.path, dest_root, source_root) else {
                continue;
            };
            // The source root again, for every candidate: a root that
            // vanished or was unmounted mid-stage stops the stage before
            // the next deletion.
            run.source_root = match RootNow::stat(source_root, root_id) {
                SourceRoot::Dir { .. } => initial_root,
                other => other,
            };
            if let Err(e) = pass.judge(run, policy, &cand, &src) {
                break 'pages Err(e);
            }
        }
    };
    if write {
        // Whatever stopped the pass, what was deleted is recorded.
        pass.commit(false)?;
        restore_folder_times(db, &pass.touched, source_root, &pass.held)?;
    }
    result
}

/// The delete pass between two candidates.
struct Pass<'p> {
    db: &'p StateDb,
    audit: &'p mut AuditLog,
    say: &'p dyn Fn(&str),
    report: &'p mut MirrorReport,
    /// Not a dry run: delete, audit, forget.
    write: bool,
    /// Checked before each deletion, on top of the held roots.
    guard: DeleteGuard,
    /// One warning per run for entries kept by the guard; each at debug.
    guard_warned: bool,
    /// Checks and deletions below the held roots through no symlink.
    held: Held,
    /// The batch of forgotten listing rows (none in a dry run).
    tx: Option<Tx<'p>>,
    since_commit: usize,
    last_commit: Instant,
    /// Folders that lost an entry: their mtime moved, and is put back at
    /// the end of the pass.
    touched: BTreeSet<PathBuf>,
}

impl Pass<'_> {
    /// Re-checks one candidate live, lets `decide::mirror_verdict` judge it,
    /// and does what the verdict says. An error (a refusal included) ends
    /// the pass.
    fn judge(
        &mut self,
        run: &MirrorRun,
        policy: &MirrorPolicy,
        cand: &Listed,
        src: &Path,
    ) -> Result<(), MirrorError> {
        let live = Live {
            source: self.held.source_now(src),
            dest: self.held.dest_now(&cand.path),
        };
        let dest = &cand.path;
        match decide::mirror_verdict(run, &cand.stamp, &live, policy) {
            MirrorVerdict::Refuse(refusal) => Err(MirrorError::Refused {
                refusal,
                source_root: String::new(),
                deleted: self.report.deleted,
            }),
            MirrorVerdict::Keep(KeepReason::DestGone) => forget(&self.tx, dest),
            MirrorVerdict::Keep(why) => {
                debug!(path = %dest.display(), reason = ?why, "mirror: kept");
                self.report.kept += 1;
                Ok(())
            }
            MirrorVerdict::Delete if let Err(why) = self.guard.check(dest) => {
                if !self.guard_warned {
                    warn!(error = %why, "mirror: kept, never deleted across a symlink, a mount or into the source (further ones at debug level)");
                    self.guard_warned = true;
                }
                debug!(path = %dest.display(), error = %why, "mirror: kept by the guard");
                self.report.kept += 1;
                Ok(())
            }
            MirrorVerdict::Delete if !self.write => {
                (self.say)(&format!(
                    "dry run: would delete {} `{}`",
                    cand.stamp.kind.as_str(),
                    dest.display()
                ));
                count_deleted(self.report, &cand.stamp);
                Ok(())
            }
            MirrorVerdict::Delete => {
                self.delete(cand, src)?;
                self.pace()
            }
        }
    }

    /// Deletes one candidate and records what happened: a `deleted` audit
    /// line and its listing row forgotten, a folder found not empty kept,
    /// or a `failed` audit line.
    fn delete(&mut self, cand: &Listed, src: &Path) -> Result<(), MirrorError> {
        let dest = &cand.path;
        let removed = self.held.remove(dest, cand.stamp.kind);
        let size = if cand.stamp.kind == EntryKind::Dir {
            0
        } else {
            cand.stamp.size
        };
        match removed {
            Ok(()) => {
                count_deleted(self.report, &cand.stamp);
                if let Some(parent) = dest.parent() {
                    self.touched.insert(parent.to_path_buf());
                }
                self.audit
                    .write(
                        &FileRecord::new("deleted", src, dest, size)
                            .entry(cand.stamp.kind.as_str(), cand.stamp.modified_ns),
                    )
                    .map_err(MirrorError::from)
                    .and_then(|()| forget(&self.tx, dest))
            }
            // Something appeared inside since the listing (or a
            // child was kept): the directory stays, by design.
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
                debug!(path = %dest.display(), "mirror: directory not empty; kept");
                self.report.kept += 1;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => forget(&self.tx, dest),
            Err(e) => {
                warn!(path = %dest.display(), error = %e, "mirror: cannot delete");
                self.report.failed += 1;
                let text = format!("cannot delete: {e}");
                let mut rec = FileRecord::new("failed", src, dest, size)
                    .entry(cand.stamp.kind.as_str(), cand.stamp.modified_ns);
                rec.error = Some(&text);
                self.audit.write(&rec).map_err(Into::into)
            }
        }
    }

    /// Commits after `COMMIT_DELETES` deletions or `COMMIT_EVERY`, whichever
    /// comes first.
    fn pace(&mut self) -> Result<(), MirrorError> {
        self.since_commit += 1;
        if self.since_commit >= COMMIT_DELETES || self.last_commit.elapsed() >= COMMIT_EVERY {
            self.commit(true)?;
            self.since_commit = 0;
            self.last_commit = Instant::now();
        }
        Ok(())
    }

    fn commit(&mut self, reopen: bool) -> Result<(), MirrorError> {
        commit(self.db, &mut self.tx, self.audit, reopen)
    }
}

/// Puts back the source mtime (and atime) of destination folders that lost
/// entries, so that the next scan finds them unchanged instead of queueing
/// them again. Folders without a source row (extras that could not be
/// removed) are left as they are; a failure only costs that next scan a
/// folder to redo.
fn restore_folder_times(
    db: &StateDb,
    touched: &BTreeSet<PathBuf>,
    source_root: &Path,
    held: &Held,
) -> Result<(), DbError> {
    let Some(dest) = held.dest_root() else {
        return Ok(());
    };
    let dest_root = dest.path();
    for dir in touched.iter().rev() {
        let src = if dir == dest_root {
            source_root.to_path_buf()
        } else {
            match source_of(dir, dest_root, source_root) {
                Some(s) => s,
                None => continue,
            }
        };
        let Some((accessed_ns, modified_ns)) = db.dir_times(&src)? else {
            continue;
        };
        if let Err(e) = dest.set_times(dir, accessed_ns, modified_ns)
            && e.kind() != ErrorKind::NotFound
        {
            debug!(path = %dir.display(), error = %e, "mirror: cannot restore folder times");
        }
    }
    Ok(())
}

fn count_deleted(report: &mut MirrorReport, stamp: &Stamp) {
    report.deleted += 1;
    if stamp.kind == EntryKind::File {
        report.deleted_bytes += stamp.size;
    }
}

/// Forgets a deleted (or vanished) destination entry in the pass's batch
/// (there is one unless this is a dry run, which forgets nothing).
fn forget(tx: &Option<Tx<'_>>, dest: &Path) -> Result<(), MirrorError> {
    match tx {
        Some(tx) => Ok(tx.forget_dest(dest)?),
        None => Ok(()),
    }
}

/// Audit lines reach the disk before the DB forgets their entries.
fn commit<'db>(
    db: &'db StateDb,
    tx: &mut Option<Tx<'db>>,
    audit: &mut AuditLog,
    reopen: bool,
) -> Result<(), MirrorError> {
    audit.flush()?;
    if let Some(tx) = tx.take() {
        tx.commit()?;
    }
    if reopen {
        *tx = Some(db.begin()?);
    }
    Ok(())
}
