//! Transfer writer (consumer): writes blocks to a temporary sibling, applies
//! the source times, renames into place, then marks the row synced and
//! appends the audit line, in that order (SPEC §5).
//!
//! Split in two so that `transfers = N` lanes can write at once while the
//! state DB keeps a single writer:
//! - [`Writer`] (one per lane, own thread): the filesystem half — temp file,
//!   blocks, times on the handle, rename. It reports each finished or failed
//!   entry as a [`Done`] event, only after the rename.
//! - [`Committer`] (one, the transfer stage's calling thread): the DB half —
//!   mark synced/failed, parent folder rows, audit line, batched commits
//!   (audit flushed before each commit), folder times at the end. Sole owner
//!   of the state DB while the transfer stage runs.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use filetime::FileTime;
use flume::{Receiver, Sender};
use tracing::{debug, info, warn};

use super::TransferError;
use super::block::{Block, FileTask, Msg};
use crate::audit::{AuditLog, FileRecord};
use crate::checksum::HashAlgo;
use crate::db::{StateDb, Synced};
use crate::decide::{EntryKind, Stamp};
use crate::progress::Progress;
use crate::throttle::Throttle;

/// Commit the DB (and flush the audit log) after this many outcomes...
const COMMIT_FILES: usize = 512;
/// ...or this much time, whichever comes first.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// Name of the temporary sibling for row `id`: short (a long source name
/// cannot push it past NAME_MAX), unique per row, and recognisable by the
/// scan and the mirror stage as never being user data.
pub fn temp_name(id: i64) -> String {
    format!(".jobrun-{id}.tmp")
}

#[derive(Debug, Default, Clone)]
pub struct WriterReport {
    pub files_done: u64,
    pub bytes_done: u64,
    pub failed: u64,
}

/// One lane's filesystem writer.
pub struct Writer<'a> {
    pub dest_root: &'a Path,
    pub inplace: bool,
    pub rx: Receiver<Msg>,
    pub pool: Sender<Vec<u8>>,
    /// Shared by all writers: one write budget for the whole run.
    pub throttle: &'a Throttle,
    pub progress: &'a Progress,
    /// Outcomes, to the [`Committer`].
    pub done: Sender<Done>,
    /// Set on a fatal error anywhere: drop the open file and stop.
    pub halt: &'a AtomicBool,
    /// Set once, by whichever lane writes the run's first block (the
    /// "time to first byte" figure of benches/scale.sh).
    pub first_block: &'a AtomicBool,
}

/// A lane's outcome for one entry, sent after the rename (or the failure).
pub enum Done {
    Synced {
        file: Arc<FileTask>,
        hash: Option<String>,
        /// The destination's size and mtime right after the copy.
        stamp: Stamp,
    },
    Failed {
        file: Arc<FileTask>,
        error: String,
    },
    /// Stops the run (exit 4).
    Fatal(TransferError),
}

/// The DB half: sole owner of the state DB during the transfer stage.
pub struct Committer<'a> {
    pub db: &'a mut StateDb,
    pub audit: &'a mut AuditLog,
    pub algo: HashAlgo,
    pub progress: &'a Progress,
    pub stop: &'a AtomicBool,
}

/// The file being written.
struct Open {
    id: i64,
    file: File,
    /// Where the bytes go: the temp sibling, or the destination with `inplace`.
    path: PathBuf,
}

/// What one message led to: nothing yet, a finished entry (with its hash and
/// the destination's stamp after the copy), or a fault for that entry.
type Outcome = Result<Option<(Arc<FileTask>, Option<String>, Stamp)>, (Arc<FileTask>, Fault)>;

/// A per-file failure or a fatal one.
enum Fault {
    File(String),
    Fatal(TransferError),
}

impl From<TransferError> for Fault {
    fn from(e: TransferError) -> Self {
        Fault::Fatal(e)
    }
}

/// Out-of-space and read-only destinations stop the run: every further
/// file would fail the same way and bury the log.
fn classify(what: &str, path: &Path, e: io::Error) -> Fault {
    let msg = format!("{what} `{}`: {e}", path.display());
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EROFS) => {
            Fault::Fatal(TransferError::Fatal(msg))
        }
        _ => Fault::File(msg),
    }
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
        let result = self.record(done);
        if result.is_err() {
            halt.store(true, Relaxed);
        }
        result
    }

    fn record(&mut self, done: Receiver<Done>) -> Result<WriterReport, TransferError> {
        let mut report = WriterReport::default();
        let mut batch = Batch::begin(self.db)?;
        for event in done.iter() {
            match event {
                Done::Synced { file, hash, stamp } => {
                    self.synced(&file, hash.as_deref(), stamp)?;
                    report.files_done += 1;
                    report.bytes_done += file.size;
                    self.progress.0.files_done.fetch_add(1, Relaxed);
                    batch.tick(self.db, self.audit)?;
                }
                Done::Failed { file, error } => {
                    warn!(path = %file.source.display(), %error, "file failed; run continues");
                    self.db.mark_failed(file.id, &error)?;
                    let mut rec = FileRecord::new("failed", &file.source, &file.dest, file.size);
                    rec.error = Some(&error);
                    self.audit.write(&rec)?;
                    report.failed += 1;
                    self.progress.0.files_failed.fetch_add(1, Relaxed);
                    batch.tick(self.db, self.audit)?;
                }
                Done::Fatal(e) => {
                    batch.end(self.db, self.audit)?;
                    return Err(e);
                }
            }
        }
        if !self.stop.load(Relaxed) {
            self.restore_dirs(&mut batch)?;
        }
        batch.end(self.db, self.audit)?;
        Ok(report)
    }
}

impl Writer<'_> {
    /// Writes this lane's messages until the reader closes the FIFO, the
    /// committer goes away, or `halt` is set.
    pub fn run(mut self) {
        let mut open: Option<Open> = None;
        // A file that already failed: its remaining blocks are dropped.
        let mut skip: Option<i64> = None;
        let rx = self.rx.clone();
        for msg in rx.iter() {
            if self.halt.load(Relaxed) {
                break;
            }
            let outcome: Outcome = match msg {
                Msg::Block(b) => {
                    if skip == Some(b.file.id) {
                        self.recycle(b.data);
                        continue;
                    }
                    let file = b.file.clone();
                    match self.block(&mut open, b) {
                        Ok(done) => Ok(done.map(|(h, s)| (file, h, s))),
                        Err(f) => Err((file, f)),
                    }
                }
                Msg::Symlink { file, target } => match self.symlink(&file, &target) {
                    Ok(stamp) => Ok(Some((file, None, stamp))),
                    Err(f) => Err((file, f)),
                },
                Msg::Failed { file, error } => Err((file, Fault::File(error))),
                Msg::Abandon { file } => {
                    discard(&mut open, file.id, self.inplace);
                    continue;
                }
            };
            let event = match outcome {
                Ok(None) => continue,
                Ok(Some((file, hash, stamp))) => {
                    debug!(id = file.id, "renamed");
                    Done::Synced { file, hash, stamp }
                }
                Err((file, Fault::File(error))) => {
                    discard(&mut open, file.id, self.inplace);
                    skip = Some(file.id);
                    Done::Failed { file, error }
                }
                Err((file, Fault::Fatal(e))) => {
                    discard(&mut open, file.id, self.inplace);
                    let _ = self.done.send(Done::Fatal(e));
                    break;
                }
            };
            if self.done.send(event).is_err() {
                break;
            }
        }
        discard(&mut open, -1, self.inplace);
    }

    fn recycle(&self, mut data: Vec<u8>) {
        data.clear();
        let _ = self.pool.try_send(data);
    }

    /// Writes one block; on the last one, finishes the file.
    fn block(
        &mut self,
        open: &mut Option<Open>,
        b: Block,
    ) -> Result<Option<(Option<String>, Stamp)>, Fault> {
        let task = &b.file;
        if b.offset == 0 {
            discard(open, -1, self.inplace);
            self.progress.start_file(&task.dest, task.size);
            *open = Some(self.create(task)?);
        }
        let Some(o) = open.as_mut().filter(|o| o.id == task.id) else {
            return Err(Fault::File("internal: block without an open file".into()));
        };
        self.write(o, &b.data)
            .map_err(|e| classify("cannot write", &o.path, e))?;
        if !self.first_block.swap(true, Relaxed) {
            info!("first block written");
        }
        self.progress.add_written(b.data.len() as u64);
        self.recycle(b.data);
        if !b.last {
            return Ok(None);
        }
        let o = open
            .take()
            .expect("checked above: the open file is this one");
        let stamp = self.finish(task, o)?;
        Ok(Some((b.hash, stamp)))
    }

    fn write(&self, o: &mut Open, data: &[u8]) -> io::Result<()> {
        if !self.throttle.is_limited() {
            return o.file.write_all(data);
        }
        for chunk in data.chunks(self.throttle.slice_len()) {
            self.throttle.consume(chunk.len());
            o.file.write_all(chunk)?;
        }
        Ok(())
    }

    /// Makes sure the parent folder exists, below a destination root that
    /// must itself still be there (an unmounted share's empty mount point
    /// must not silently receive the data).
    fn ensure_parent(&self, dest: &Path) -> Result<(), Fault> {
        let parent = dest.parent().unwrap_or(self.dest_root);
        if parent.is_dir() {
            return Ok(());
        }
        if !self.dest_root.is_dir() {
            return Err(Fault::Fatal(TransferError::Fatal(format!(
                "destination root `{}` is gone",
                self.dest_root.display()
            ))));
        }
        std::fs::create_dir_all(parent).map_err(|e| classify("cannot create folder", parent, e))
    }

    fn target(&self, task: &FileTask) -> PathBuf {
        if self.inplace {
            return task.dest.clone();
        }
        let parent = task.dest.parent().unwrap_or(self.dest_root);
        parent.join(temp_name(task.id))
    }

    fn create(&self, task: &FileTask) -> Result<Open, Fault> {
        self.ensure_parent(&task.dest)?;
        let path = self.target(task);
        let file = File::create(&path).map_err(|e| classify("cannot create", &path, e))?;
        Ok(Open {
            id: task.id,
            file,
            path,
        })
    }

    /// Times first (on the open handle), then the rename: the file appears
    /// under its real name complete and with the source's mtime, so no scan
    /// can ever see a half-finished file that looks synced.
    fn finish(&self, task: &FileTask, o: Open) -> Result<Stamp, Fault> {
        let (atime, mtime) = (file_time(task.accessed_ns), file_time(task.modified_ns));
        let result = filetime::set_file_handle_times(&o.file, Some(atime), Some(mtime))
            .map_err(|e| classify("cannot set times on", &o.path, e))
            .and_then(|()| {
                o.file
                    .metadata()
                    .map_err(|e| classify("cannot stat", &o.path, e))
            });
        let md = match result {
            Ok(md) => md,
            Err(f) => {
                let mut o = Some(o);
                discard(&mut o, task.id, self.inplace);
                return Err(f);
            }
        };
        drop(o.file);
        if !self.inplace
            && let Err(e) = std::fs::rename(&o.path, &task.dest)
        {
            let _ = std::fs::remove_file(&o.path);
            return Err(classify("cannot rename into", &task.dest, e));
        }
        Ok(stamp_of(EntryKind::File, &md))
    }

    fn symlink(&self, task: &FileTask, target: &Path) -> Result<Stamp, Fault> {
        self.ensure_parent(&task.dest)?;
        let tmp = task
            .dest
            .parent()
            .unwrap_or(self.dest_root)
            .join(temp_name(task.id));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp)
            .map_err(|e| classify("cannot create symlink", &tmp, e))?;
        let done = filetime::set_symlink_file_times(
            &tmp,
            file_time(task.accessed_ns),
            file_time(task.modified_ns),
        )
        .map_err(|e| classify("cannot set times on", &tmp, e))
        .and_then(|()| {
            std::fs::rename(&tmp, &task.dest)
                .map_err(|e| classify("cannot rename into", &task.dest, e))
        })
        .and_then(|()| {
            std::fs::symlink_metadata(&task.dest)
                .map_err(|e| classify("cannot stat", &task.dest, e))
        });
        match done {
            Ok(md) => Ok(stamp_of(EntryKind::Symlink, &md)),
            Err(f) => {
                let _ = std::fs::remove_file(&tmp);
                Err(f)
            }
        }
    }
}

impl Committer<'_> {
    fn synced(
        &mut self,
        task: &FileTask,
        hash: Option<&str>,
        stamp: Stamp,
    ) -> Result<(), TransferError> {
        let algorithm = hash.map(|_| self.algo.name());
        self.db.mark_synced(&Synced {
            id: task.id,
            hash,
            algorithm,
            size: task.size,
            modified_ns: task.modified_ns,
            after_copy: Some(stamp),
        })?;
        if let Some(parent) = task.source.parent() {
            self.db.touch_dir(parent)?;
        }
        let mut rec = FileRecord::new("synced", &task.source, &task.dest, task.size);
        rec.hash = hash;
        rec.algorithm = algorithm;
        self.audit.write(&rec)?;
        Ok(())
    }

    /// Creates folders (empty ones too) and restores their times, deepest
    /// first, after all their contents are written.
    fn restore_dirs(&mut self, batch: &mut Batch) -> Result<(), TransferError> {
        for d in self.db.pending_dirs()? {
            let done = std::fs::create_dir_all(&d.dest)
                .and_then(|()| {
                    filetime::set_file_times(
                        &d.dest,
                        file_time(d.accessed_ns),
                        file_time(d.modified_ns),
                    )
                })
                .and_then(|()| std::fs::symlink_metadata(&d.dest));
            match done {
                Ok(md) => self.db.mark_synced(&Synced {
                    id: d.id,
                    hash: None,
                    algorithm: None,
                    size: d.size,
                    modified_ns: d.modified_ns,
                    after_copy: Some(stamp_of(EntryKind::Dir, &md)),
                })?,
                Err(e) => {
                    let error = format!("cannot restore folder `{}`: {e}", d.dest.display());
                    warn!(%error, "folder failed");
                    self.db.mark_failed(d.id, &error)?;
                    let mut rec = FileRecord::new("failed", &d.source, &d.dest, d.size);
                    rec.error = Some(&error);
                    self.audit.write(&rec)?;
                }
            }
            batch.tick(self.db, self.audit)?;
        }
        Ok(())
    }
}

/// Removes the partial output of file `id` (or of whatever is open when
/// `id` is -1). With `inplace` the partial destination stays: its size or
/// mtime differs from the source, so the next scan copies it again.
fn discard(open: &mut Option<Open>, id: i64, inplace: bool) {
    if open.as_ref().is_some_and(|o| id == -1 || o.id == id) {
        let o = open.take().expect("checked: some");
        drop(o.file);
        if !inplace {
            let _ = std::fs::remove_file(&o.path);
        }
    }
}

fn file_time(ns: i64) -> FileTime {
    FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

fn stamp_of(kind: EntryKind, md: &std::fs::Metadata) -> Stamp {
    Stamp {
        kind,
        size: md.len(),
        modified_ns: md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec()),
    }
}

/// Groups row updates into transactions; the audit log is flushed before
/// each commit, so no committed `synced` row lacks its audit line.
struct Batch {
    count: usize,
    since: Instant,
}

impl Batch {
    fn begin(db: &StateDb) -> Result<Self, TransferError> {
        db.begin()?;
        Ok(Self {
            count: 0,
            since: Instant::now(),
        })
    }

    fn tick(&mut self, db: &StateDb, audit: &mut AuditLog) -> Result<(), TransferError> {
        self.count += 1;
        if self.count >= COMMIT_FILES || self.since.elapsed() >= COMMIT_EVERY {
            debug!(files = self.count, "commit");
            audit.flush()?;
            db.commit()?;
            db.begin()?;
            self.count = 0;
            self.since = Instant::now();
        }
        Ok(())
    }

    fn end(self, db: &StateDb, audit: &mut AuditLog) -> Result<(), TransferError> {
        audit.flush()?;
        db.commit()?;
        Ok(())
    }
}
