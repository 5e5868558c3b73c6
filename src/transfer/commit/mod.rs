//! Transfer committer: the DB half of the transfer stage, one for all
//! lanes (the stage's calling thread) and sole owner of the state DB while
//! it runs. Marks rows synced/failed and their parent folder rows, writes
//! the audit lines, commits in batches behind a durability barrier (audit
//! flushed and the destination `syncfs`ed before each commit), and restores
//! folder times at the end.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use flume::Receiver;
use tracing::{debug, warn};

mod batch;

use super::TransferError;
use super::block::FileTask;
use super::dest::*;
use crate::audit::{AuditLog, FileRecord};
use crate::beneath::{self, Dir, Meta, Root};
use crate::checksum::HashAlgo;
use crate::db::{PendingFile, StateDb, Synced};
use crate::decide::{EntryKind, Stamp};
use crate::modes::{Modes, Permissions};
use crate::progress::Progress;
use batch::{Batch, Logged};

/// Commit the DB (and flush the audit log) after this many outcomes...
const COMMIT_FILES: usize = 512;

/// ...or this much time, whichever comes first.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone)]
pub struct WriterReport {
    pub files_done: u64,
    pub bytes_done: u64,
    pub failed: u64,
    /// Entries left pending for the mirror to remove a folder in their
    /// place first (type changes); see `transfer::after_mirror`.
    pub waiting: u64,
    /// Files given back to the backlog when the destination ran out of
    /// space while others were in flight (tried again one at a time).
    pub returned: u64,
    /// Names of hard-link groups the feed held back for a next round
    /// (their group's first copy was being made, see `links`).
    pub held: u64,
}

/// A lane's outcome for one entry, sent after the rename (or the failure).
pub enum Done {
    Synced {
        file: Arc<FileTask>,
        hash: Option<String>,
        /// The destination's size and mtime right after the copy.
        stamp: Stamp,
        /// The bytes written for it, what every report counts as copied:
        /// a hole or a run of zeros left as one, and a hard link to its
        /// group's copy, write none.
        written: u64,
    },
    Failed {
        file: Arc<FileTask>,
        error: String,
    },
    /// Stops the run (exit 4).
    Fatal(TransferError),
    /// Out of space while other files were in flight: its temporary is
    /// removed and its row stays pending, for a turn alone (see `space`).
    Returned {
        file: Arc<FileTask>,
    },
    /// Out of space while it had the space alone: nothing more of its size
    /// fits. Stops the run (exit 4), saying how much did not fit.
    DoesNotFit {
        file: Arc<FileTask>,
        error: String,
    },
}

/// The DB half: sole owner of the state DB during the transfer stage.
pub struct Committer<'a> {
    pub db: &'a StateDb,
    pub audit: &'a mut AuditLog,
    pub dest_root: &'a Path,
    /// The same root held open: folders are created, owned, given their
    /// bits and timed below it.
    pub dest: &'a Root,
    pub source: &'a Root,
    pub modes: &'a Modes,
    pub algo: HashAlgo,
    pub progress: &'a Progress,
    pub stop: &'a AtomicBool,
    /// Last source folder whose row was marked for an mtime restore:
    /// consecutive files mostly share it, which saves an UPDATE per file.
    pub last_touched_dir: Option<PathBuf>,
    /// Whether the run warned of a time the destination cannot hold.
    pub times_warned: bool,
}

impl Committer<'_> {
    /// Records every lane's outcomes until all lanes are done, then restores
    /// folder times (unless stopping). On any error, sets `halt` so the lanes
    /// stop; their unrecorded files stay pending.
    pub fn run(
        mut self,
        done: Receiver<Done>,
        halt: &AtomicBool,
    ) -> Result<WriterReport, TransferError> {
        let mut batch = Batch::begin(self.db, self.dest_root)?;
        let result = match self.record(done, &mut batch, halt) {
            Ok(report) => batch.end(self.audit).map(|()| report),
            // Every row of the open batch has its line: committed, they say
            // what happened (a failed commit says so line by line).
            Err(Stop::Commit(e)) => {
                let _ = batch.end(self.audit);
                Err(e)
            }
            Err(Stop::Abandon(e)) => {
                batch.abandon(self.audit, &e);
                Err(e)
            }
        };
        if result.is_err() {
            halt.store(true, Relaxed);
        }
        result
    }

    fn record(
        &mut self,
        done: Receiver<Done>,
        batch: &mut Batch<'_>,
        halt: &AtomicBool,
    ) -> Result<WriterReport, Stop> {
        let mut report = WriterReport::default();
        let mut notes = super::failnote::FailureNotes::default();
        // A file that does not fit alone: the lanes are halted, and what
        // they finished before (a file renamed just before, its outcome
        // still on the way) is recorded before the run's line counts the
        // backlog left.
        let mut full: Option<(Arc<FileTask>, String)> = None;
        loop {
            // Waits at most a commit interval: while only big files are in
            // flight, the idle commits keep the `runs` row and the files in
            // flight that `status` shows current.
            let event = match done.recv_timeout(COMMIT_EVERY) {
                Ok(event) => event,
                Err(flume::RecvTimeoutError::Timeout) => {
                    batch.idle(self.audit).map_err(Stop::Abandon)?;
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            match event {
                Done::Synced {
                    file,
                    hash,
                    stamp,
                    written,
                } => {
                    self.synced(batch, &file, hash.as_deref(), stamp)?;
                    report.files_done += 1;
                    report.bytes_done += written;
                    self.progress.file_synced(written);
                }
                Done::Failed { file, error } => {
                    let error = super::failnote::explain(&file.dest, error);
                    notes.note(&file.source, &file.dest, &error);
                    let mut rec = FileRecord::new("failed", &file.source, &file.dest, file.size)
                        .entry(file.kind.as_str(), file.modified_ns);
                    rec.error = Some(&error);
                    self.audit.write(&rec).map_err(Stop::commit)?;
                    batch.logged(Logged::new(
                        "failed",
                        &file.source,
                        &file.dest,
                        file.size,
                        file.kind,
                        file.modified_ns,
                    ));
                    batch
                        .tx()
                        .mark_failed(file.id, &error)
                        .map_err(Stop::abandon)?;
                    report.failed += 1;
                    self.progress.file_failed();
                }
                Done::Fatal(e) => return Err(Stop::Commit(e)),
                Done::Returned { file } => {
                    debug!(path = %file.dest.display(), "out of space: back to the backlog");
                    report.returned += 1;
                    continue;
                }
                Done::DoesNotFit { file, error } => {
                    halt.store(true, Relaxed);
                    full.get_or_insert((file, error));
                    continue;
                }
            }
            batch.tick(self.audit).map_err(Stop::Abandon)?;
        }
        notes.finish();
        if let Some((file, error)) = full {
            // Committed first: the line counts the backlog left.
            batch.renew(self.audit).map_err(Stop::Abandon)?;
            return Err(Stop::Commit(self.does_not_fit(&file, &error)));
        }
        if !self.stop.load(Relaxed) {
            self.restore_dirs(batch)?;
        }
        Ok(report)
    }
}

/// Why the committer stops early, and what becomes of the open batch.
enum Stop {
    /// Every row in the batch has its audit line (the error came from a
    /// lane, or from writing the next line): commit the batch, then stop.
    Commit(TransferError),
    /// The batch's transaction is lost (a DB error, a failed barrier): each
    /// line written for it is followed by an `uncommitted` line.
    Abandon(TransferError),
}

impl Stop {
    fn commit(e: impl Into<TransferError>) -> Self {
        Self::Commit(e.into())
    }

    fn abandon(e: impl Into<TransferError>) -> Self {
        Self::Abandon(e.into())
    }
}

impl Committer<'_> {
    /// The run's one line when a file does not fit alone: what, how much
    /// room there was, and how much of the backlog is left (committed).
    fn does_not_fit(&self, file: &FileTask, error: &str) -> TransferError {
        use crate::progress::count;
        use crate::units::human_bytes;
        let free = rustix::fs::statvfs(self.dest_root)
            .map(|v| human_bytes(v.f_bavail.saturating_mul(v.f_frsize)))
            .map_or_else(|_| String::new(), |f| format!(" in the {f} left"));
        let left = match self.db.transfer_backlog() {
            Ok((files, bytes)) => format!(
                "; {}, {} not copied, backlog kept",
                count(files, "file", "files"),
                human_bytes(bytes)
            ),
            Err(_) => "; backlog kept".into(),
        };
        TransferError::Fatal(format!(
            "destination full ({error}): `{}` ({}) does not fit{free} on `{}`, even alone{left}",
            file.dest.display(),
            crate::units::human_bytes(file.size),
            self.dest_root.display()
        ))
    }

    /// Writes the `synced` line, then marks the row in the batch (committed
    /// with it: a committed row always has its line; a line whose batch is
    /// lost is followed by an `uncommitted` one).
    fn synced(
        &mut self,
        batch: &mut Batch<'_>,
        task: &FileTask,
        hash: Option<&str>,
        stamp: Stamp,
    ) -> Result<(), Stop> {
        let algorithm = hash.map(|_| self.algo.name());
        let mut rec = FileRecord::new("synced", &task.source, &task.dest, task.size)
            .entry(task.kind.as_str(), task.modified_ns);
        if let Some(t) = &task.link_target {
            rec = rec.target(t);
        }
        rec.hash = hash;
        rec.algorithm = algorithm;
        self.audit.write(&rec).map_err(Stop::commit)?;
        time_held(
            &mut self.times_warned,
            &task.dest,
            (task.modified_ns, stamp.modified_ns),
        );
        batch.logged(Logged::new(
            "synced",
            &task.source,
            &task.dest,
            task.size,
            task.kind,
            task.modified_ns,
        ));
        let tx = batch.tx();
        tx.mark_synced(&Synced {
            id: task.id,
            hash,
            algorithm,
            size: task.size,
            modified_ns: task.modified_ns,
            changed_ns: task.changed_ns,
            after_copy: Some(stamp),
        })
        .map_err(Stop::abandon)?;
        if let Some(parent) = task.source.parent()
            && self.last_touched_dir.as_deref() != Some(parent)
        {
            tx.touch_dir(parent).map_err(Stop::abandon)?;
            self.last_touched_dir = Some(parent.to_path_buf());
        }
        Ok(())
    }

    /// Creates folders (empty ones too) and restores their times, deepest
    /// first, after all their contents are written.
    fn restore_dirs(&mut self, batch: &mut Batch<'_>) -> Result<(), Stop> {
        for d in self.db.pending_dirs().map_err(Stop::abandon)? {
            let done = self.restore_dir(&d);
            match done {
                Ok(md) => batch
                    .tx()
                    .mark_synced(&Synced {
                        id: d.id,
                        hash: None,
                        algorithm: None,
                        size: d.size,
                        modified_ns: d.modified_ns,
                        changed_ns: None,
                        after_copy: Some(dir_stamp(&mut self.times_warned, &d, &md)),
                    })
                    .map_err(Stop::abandon)?,
                Err(e) => {
                    let error = format!("cannot restore folder `{}`: {e}", d.dest.display());
                    warn!(%error, "folder failed");
                    let mut rec = FileRecord::new("failed", &d.source, &d.dest, d.size)
                        .entry(EntryKind::Dir.as_str(), d.modified_ns);
                    rec.error = Some(&error);
                    self.audit.write(&rec).map_err(Stop::commit)?;
                    batch.logged(Logged::new(
                        "failed",
                        &d.source,
                        &d.dest,
                        d.size,
                        EntryKind::Dir,
                        d.modified_ns,
                    ));
                    batch
                        .tx()
                        .mark_failed(d.id, &error)
                        .map_err(Stop::abandon)?;
                    // Counts as a failure of this run (exit 1), as a file would.
                    self.progress.file_failed();
                }
            }
            batch.tick(self.audit).map_err(Stop::Abandon)?;
        }
        Ok(())
    }

    /// Creates the folder of row `d` (and missing parents) below the
    /// destination root through no symlink, each with its source folder's
    /// bits (see [`make_dir`]), applies the row's owners and bits
    /// ([`Self::settle_dir`]), sets its times, and returns what it is now.
    /// A symlink on the way, or in its place, fails the folder: its times
    /// would be set on the link, and its contents were never written
    /// through it either.
    fn restore_dir(&self, d: &PendingFile) -> io::Result<Meta> {
        let (root, path) = (self.dest, d.dest.as_path());
        let fail = |e: io::Error| {
            if beneath::is_symlink_in_path(&e) {
                io::Error::other(symlinked_folder_error(root.path(), path, &e))
            } else {
                e
            }
        };
        if root.rel(path)?.as_os_str().is_empty() {
            self.settle_dir(&root.dir(Path::new(""))?, None, d);
            root.set_times(path, d.accessed_ns, d.modified_ns)?;
            return root.stat(path);
        }
        let (rel, name) = root.split(path)?;
        let (source, modes) = (self.source, self.modes);
        let mut mkdir = |p: &Dir, n: &OsStr, r: &Path| make_dir(root, source, modes, p, n, r);
        let parent = root.create_dirs_with(rel, &mut mkdir).map_err(fail)?;
        match mkdir(&parent, name, &rel.join(name)) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            r => r?,
        }
        match parent.stat(name)? {
            md if md.kind == Some(EntryKind::Dir) => {}
            md if md.kind == Some(EntryKind::Symlink) => {
                return Err(fail(io::Error::other(beneath::SymlinkInPath)));
            }
            _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        }
        self.settle_dir(&parent, Some(name), d);
        parent.set_times(name, d.accessed_ns, d.modified_ns)?;
        parent.stat(name)
    }

    /// A folder's own row, after its contents: `owners` and `preserve`
    /// (best-effort), or, not root, the owner bits added to write into it
    /// taken off again (see [`Modes::dir_create`]). The bits are the ones
    /// the scan recorded, as are the times set next. The folder is `name`
    /// in the held folder `dir` (never followed if a symlink), or `dir`
    /// itself (the destination root) when `None`.
    fn settle_dir(&self, dir: &Dir, name: Option<&OsStr>, d: &PendingFile) {
        let m = self.modes;
        let src_mode = dir_mode(self.source, &d.source, d.mode);
        let now = || match name {
            Some(n) => dir.stat(n),
            None => dir.meta(),
        };
        let owned = m.owners && m.lchown(dir, name, d.uid, d.gid, &d.dest);
        match m.permissions {
            Permissions::Preserve => {
                let (uid, gid) = if owned {
                    (d.uid, d.gid)
                } else {
                    now().map_or((u32::MAX, u32::MAX), |md| (md.uid, md.gid))
                };
                m.chmod(
                    dir,
                    name,
                    m.preserved((src_mode, d.uid, d.gid), uid, gid),
                    &d.dest,
                );
            }
            Permissions::Masked if !m.root && m.dir_masked(src_mode) & 0o700 != 0o700 => {
                if let Ok(md) = now()
                    && let Some(bits) = m.dir_fix_owner_bits(src_mode, md.mode)
                {
                    m.chmod(dir, name, bits, &d.dest);
                }
            }
            Permissions::Masked => {}
        }
        // Last: an ACL gives the group bits its mask.
        copy_dir_attrs(self.source, &d.source, m, (dir, name), &d.dest);
    }
}
