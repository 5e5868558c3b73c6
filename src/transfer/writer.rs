//! Transfer writer (consumer): writes blocks to a temporary sibling, applies
//! the source times, renames into place, then marks the row synced and
//! appends the audit line, in that order (SPEC §5).
//!
//! Split in two so that `transfers = N` lanes can write at once while the
//! state DB keeps a single writer:
//! - [`Writer`] (one per lane, own thread): the filesystem half — temp file
//!   (created with the source's bits, `crate::modes`), blocks with
//!   write-back pacing, owners and exact bits when asked, checked close,
//!   times, rename. It reports each finished or failed entry as a [`Done`]
//!   event, only after the rename.
//! - [`Committer`] (one, the transfer stage's calling thread): the DB half —
//!   mark synced/failed, parent folder rows, audit line, batched commits
//!   (audit flushed and destination `syncfs`ed before each commit), folder
//!   times at the end. Sole owner of the state DB while the transfer stage runs.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use flume::{Receiver, Sender};
use tracing::{debug, info, warn};

use super::TransferError;
use super::block::{Block, FileTask, Msg, Parcel};
use crate::audit::{AuditLog, FileRecord};
use crate::beneath::{self, Dir, DirCache, Meta, Root};
use crate::checksum::HashAlgo;
use crate::db::PendingFile;
use crate::db::{StateDb, Synced};
use crate::decide::{EntryKind, Stamp};
use crate::modes::{Modes, Permissions};
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
    /// The destination root, held open: every create, rename, utimes,
    /// chmod, chown and delete is resolved below it through no symlink (see
    /// `beneath`).
    pub dest: &'a Root,
    /// The source root, held open: where a missing destination folder's
    /// bits and owners are read (through no symlink either).
    pub source: &'a Root,
    /// Bits and owners of what the lane creates; shared by all lanes.
    pub modes: &'a Modes,
    pub inplace: bool,
    pub rx: Receiver<Parcel>,
    pub pool: Sender<Vec<u8>>,
    /// Size of the buffers worth recycling.
    pub block_size: usize,
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
    pub stop: &'a AtomicBool,
    /// Number of lanes sharing `throttle` (sizes the write-back ranges).
    pub lanes: u64,
    /// This lane's last destination folder: consecutive files mostly share it.
    pub dirs: DirCache,
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
}

/// The file being written.
struct Open {
    id: i64,
    file: File,
    /// Its folder, and its name there: the temp sibling, or the destination
    /// with `inplace`.
    dir: Arc<Dir>,
    name: OsString,
    /// The full path, for messages.
    path: PathBuf,
    pacer: WriteBack,
}

/// Write-back pacing for unlimited runs: large ranges, so the syscalls cost
/// nothing next to the data (see the README, "Bandwidth limit").
const WRITEBACK_UNLIMITED: u64 = 8 << 20;
/// When limited, ranges of this much time at the active rate: small enough
/// that one range leaving at link speed is not a burst in a 100 ms window.
const WRITEBACK_LIMITED_DIV: u64 = 64;

/// Keeps the dirty page-cache data a file leaves behind small (SPEC §6): a
/// kernel-buffered mount (NFS, CIFS, FUSE writeback) would otherwise bank
/// the throttled writes and flush them later at link rate. Every range of
/// written bytes is handed to write-out (`sync_file_range(WRITE)`) as soon
/// as the range before it has been waited for and dropped from the cache
/// (`WAIT_BEFORE|WRITE|WAIT_AFTER`, then `posix_fadvise(DONTNEED)`): one
/// range in flight, one being written, never more.
#[derive(Debug, Default)]
struct WriteBack {
    /// Bytes written to the file so far.
    written: u64,
    /// Start of the bytes not yet handed to write-out.
    queued: u64,
    /// The range handed to write-out last, not yet waited for.
    in_flight: Option<(u64, u64)>,
    /// Set when the filesystem refuses `sync_file_range` (then nothing is paced).
    off: bool,
}

impl WriteBack {
    /// Records `n` more bytes written; submits a range once `range` bytes
    /// are pending.
    fn wrote(&mut self, f: &File, n: usize, range: u64) -> io::Result<()> {
        self.written += n as u64;
        if self.off || self.written - self.queued < range {
            return Ok(());
        }
        let next = (self.queued, self.written - self.queued);
        self.queued = self.written;
        // The previous range first: only one range is ever in flight, so
        // the server sees the writes in file order (rclone mount without a
        // VFS cache refuses out-of-order writes: "can't seek").
        if let Some(prev) = self.in_flight.take() {
            self.settle(f, prev)?;
        }
        self.sync(f, next, libc::SYNC_FILE_RANGE_WRITE)?;
        self.in_flight = Some(next);
        Ok(())
    }

    /// Before close: everything written is out of the cache, so that times
    /// set afterwards are the last change the server sees.
    fn finish(&mut self, f: &File) -> io::Result<()> {
        if self.off {
            return Ok(());
        }
        if let Some(prev) = self.in_flight.take() {
            self.settle(f, prev)?;
        }
        if self.written > self.queued {
            let rest = (self.queued, self.written - self.queued);
            self.queued = self.written;
            self.in_flight = Some(rest);
        }
        if let Some(last) = self.in_flight.take() {
            self.settle(f, last)?;
        }
        Ok(())
    }

    fn settle(&mut self, f: &File, range: (u64, u64)) -> io::Result<()> {
        self.sync(
            f,
            range,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )?;
        // Advice only: its failure changes nothing that matters.
        // SAFETY: plain syscall on an open fd; no memory is passed.
        unsafe {
            libc::posix_fadvise(
                f.as_raw_fd(),
                range.0 as libc::off_t,
                range.1 as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        Ok(())
    }

    fn sync(&mut self, f: &File, (off, len): (u64, u64), flags: libc::c_uint) -> io::Result<()> {
        if self.off {
            return Ok(());
        }
        // SAFETY: plain syscall on an open fd; no memory is passed.
        let rc = unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                off as libc::off64_t,
                len as libc::off64_t,
                flags,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // Not supported here (e.g. some FUSE or overlay setups): write
            // unpaced rather than fail the copy.
            Some(libc::ENOSYS)
            | Some(libc::EINVAL)
            | Some(libc::ESPIPE)
            | Some(libc::EOPNOTSUPP) => {
                warn!(error = %e, "sync_file_range refused: file written without write-back pacing");
                self.off = true;
                Ok(())
            }
            _ => Err(e),
        }
    }
}

/// What one message led to: nothing yet, a finished entry (with its hash and
/// the destination's stamp after the copy), or a fault for that entry.
type Outcome = Result<Option<(Arc<FileTask>, Option<String>, Stamp)>, (Arc<FileTask>, Fault)>;

/// A per-file failure or a fatal one.
enum Fault {
    File(String),
    Fatal(TransferError),
    /// A stop request cut a write short: not a failure, the row stays pending.
    Stopped,
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
        let mut batch = Batch::begin(self.db, self.dest_root)?;
        let mut notes = super::failnote::FailureNotes::default();
        for event in done.iter() {
            match event {
                Done::Synced { file, hash, stamp } => {
                    self.synced(&file, hash.as_deref(), stamp)?;
                    report.files_done += 1;
                    report.bytes_done += file.size;
                    self.progress.file_synced(file.size);
                    batch.tick(self.db, self.audit)?;
                }
                Done::Failed { file, error } => {
                    let error = super::failnote::explain(&file.dest, error);
                    notes.note(&file.source, &file.dest, &error);
                    self.db.mark_failed(file.id, &error)?;
                    let mut rec = FileRecord::new("failed", &file.source, &file.dest, file.size)
                        .entry(file.kind.as_str(), file.modified_ns);
                    rec.error = Some(&error);
                    self.audit.write(&rec)?;
                    report.failed += 1;
                    self.progress.file_failed(file.size);
                    batch.tick(self.db, self.audit)?;
                }
                Done::Fatal(e) => {
                    batch.end(self.db, self.audit)?;
                    return Err(e);
                }
            }
        }
        notes.finish();
        if !self.stop.load(Relaxed) {
            self.restore_dirs(&mut batch)?;
        }
        batch.end(self.db, self.audit)?;
        Ok(report)
    }
}

impl Writer<'_> {
    /// Writes this lane's messages until the reader closes the FIFO, the
    /// committer goes away, or `halt` is set. Each entry's outcome goes to
    /// the committer only after its rename (or its failure).
    pub fn run(mut self) {
        let mut open: Option<Open> = None;
        // A file that already failed: its remaining blocks are dropped.
        let mut skip: Option<i64> = None;
        let rx = self.rx.clone();
        for msg in rx.iter().flatten() {
            if self.halt.load(Relaxed) {
                break;
            }
            let outcome: Outcome = match msg {
                Msg::Block(b) => {
                    // Stopping: queued blocks are not written (with a slow
                    // limit they would take minutes); the file stays pending.
                    if self.stop.load(Relaxed) {
                        discard(&mut open, b.file.id, self.inplace);
                        self.recycle(b.data);
                        continue;
                    }
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
                Err((file, Fault::Stopped)) => {
                    discard(&mut open, file.id, self.inplace);
                    continue;
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

    /// Returns a block buffer to the reader. Its length is kept, so the
    /// reader's `resize` does not zero-fill it again (a measurable cost at
    /// GB/s: one extra memset of every byte copied).
    /// Hands a full-size buffer back to the reader (see `Reader::buffer`).
    fn recycle(&self, data: Vec<u8>) {
        if data.capacity() >= self.block_size {
            let _ = self.pool.try_send(data);
        }
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
        self.write(o, &b.data).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted && self.stop.load(Relaxed) {
                Fault::Stopped
            } else {
                classify("cannot write", &o.path, e)
            }
        })?;
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
        let limited = self.throttle.is_limited();
        self.progress
            .0
            .bwlimit
            .store(self.throttle.active().unwrap_or(0), Relaxed);
        if !limited {
            o.file.write_all(data)?;
            return o.pacer.wrote(&o.file, data.len(), WRITEBACK_UNLIMITED);
        }
        let range = self.throttle.active().map_or(WRITEBACK_UNLIMITED, |r| {
            // The lanes share the rate: each one's range is its share.
            (r / WRITEBACK_LIMITED_DIV / self.lanes.max(1)).clamp(64 << 10, WRITEBACK_UNLIMITED)
        });
        for chunk in data.chunks(self.throttle.slice_len()) {
            if self.stop.load(Relaxed) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.throttle.consume(chunk.len());
            o.file.write_all(chunk)?;
            o.pacer.wrote(&o.file, chunk.len(), range)?;
        }
        Ok(())
    }

    /// The folder of `dest`, created if missing (never through a symlink),
    /// below a destination root that must itself still be there: an
    /// unmounted share's empty mount point must not silently receive the
    /// data, nor a root renamed away.
    fn parent_dir(&mut self, dest: &Path) -> Result<(Arc<Dir>, OsString), Fault> {
        let gone = |root: &Root| {
            Fault::Fatal(TransferError::Fatal(format!(
                "destination root `{}` is gone or no longer the folder this run opened",
                root.path().display()
            )))
        };
        if self.dest.moved() {
            return Err(gone(self.dest));
        }
        let (rel, name) = self
            .dest
            .split(dest)
            .map_err(|e| Fault::File(e.to_string()))?;
        let name = name.to_os_string();
        let (dest_root, source, modes) = (self.dest, self.source, self.modes);
        let made = self.dirs.create_dirs_with(dest_root, rel, &mut |d, n, r| {
            make_dir(dest_root, source, modes, d, n, r)
        });
        match made {
            Ok(dir) => Ok((dir, name)),
            Err(e) => {
                self.dirs.clear();
                let parent = dest.parent().unwrap_or(self.dest.path());
                if beneath::is_symlink_in_path(&e) {
                    Err(Fault::File(symlinked_folder_error(
                        self.dest.path(),
                        parent,
                        &e,
                    )))
                } else if e.kind() == io::ErrorKind::NotFound && self.dest.moved_now() {
                    Err(gone(self.dest))
                } else {
                    Err(classify("cannot create folder", parent, e))
                }
            }
        }
    }

    fn create(&mut self, task: &FileTask) -> Result<Open, Fault> {
        let (mut dir, name) = self.parent_dir(&task.dest)?;
        let name = if self.inplace {
            name
        } else {
            OsString::from(temp_name(task.id))
        };
        let path = task.dest.with_file_name(&name);
        let mut file = self.open_in(&dir, &name, task.mode);
        // The lane's held folder was removed since (emptied and deleted on
        // the share): resolved, and created, again, once.
        if file
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            self.dirs.clear();
            dir = self.parent_dir(&task.dest)?.0;
            file = self.open_in(&dir, &name, task.mode);
        }
        let file = file.map_err(|e| classify("cannot create", &path, e))?;
        if self.inplace {
            // An existing file keeps its bits, less those the source does
            // not grant, taken off before the first byte is written.
            if let Ok(md) = file.metadata()
                && let Some(bits) = self.modes.inplace_narrowed(task.mode, md.mode())
            {
                self.modes.fchmod(&file, bits, &path);
            }
        }
        Ok(Open {
            id: task.id,
            file,
            dir,
            name,
            path,
            pacer: WriteBack::default(),
        })
    }

    /// Never through a symlink: a stale temporary is removed and the new one
    /// created exclusively; with `inplace` a destination that is a symlink
    /// fails (ELOOP) instead of overwriting what it points to. Created with
    /// the source's bits (`src_mode`; the kernel takes the umask off): never
    /// wider than the source, not even while it is written.
    fn open_in(&self, dir: &Dir, name: &OsStr, src_mode: u32) -> io::Result<File> {
        let mode = self.modes.file_create(src_mode, !self.inplace);
        let open = || {
            if self.inplace {
                dir.create_truncate(name, mode)
            } else {
                dir.create_new(name, mode)
            }
        };
        let opened = match open() {
            // A stale temporary of a killed run (or anything planted under
            // its name): removed, then created anew. Not unlinked up front:
            // on a share a failed unlink still costs a round trip per file.
            Err(e) if !self.inplace && e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = dir.unlink(name);
                open()
            }
            r => r,
        };
        match opened {
            // Not root, a folder that arrived read-only like its source.
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied
                    && self.modes.open_dir_for_owner(dir) =>
            {
                open()
            }
            r => r,
        }
    }

    /// Close, times, then the rename: the file appears under its real name
    /// complete and with the source's mtime, so no scan can ever see a
    /// half-finished file that looks synced. The times are set by path after
    /// the close because some destinations stamp the write time at close
    /// (fusefat; SMB servers flushing cached writes), undoing times set on
    /// the open handle. The after-copy stamp is read under the final name,
    /// as the next scan will see it.
    fn finish(&self, task: &FileTask, o: Open) -> Result<Stamp, Fault> {
        let Open {
            file,
            dir,
            name,
            path,
            mut pacer,
            ..
        } = o;
        let undo = |f: Fault| {
            if !self.inplace {
                let _ = dir.unlink(&name);
            }
            f
        };
        // Written data leaves the page cache before the times are set, so
        // the times are the last change the server sees (and no banked
        // dirty data bursts out after the file is done).
        pacer
            .finish(&file)
            .map_err(|e| undo(classify("cannot write", &path, e)))?;
        // Owners, then bits (a chown clears setuid), on the open file
        // before the rename: no path lookup, and the file appears under its
        // name with them.
        self.settle_file(task, &file);
        let _ = self.dest.set_created(&file, task.created_ns); // best-effort, SMB only
        // A checked close: NFS and SMB report deferred write errors (ENOSPC,
        // EDQUOT, EIO) at close, which dropping a `File` would ignore.
        close_checked(file).map_err(|e| undo(classify("cannot write", &path, e)))?;
        let set_times = |n: &OsStr, p: &Path| {
            dir.set_times(n, task.accessed_ns, task.modified_ns)
                .and_then(|()| dir.stat(n))
                .map_err(|e| classify("cannot set times on", p, e))
        };
        let md = set_times(&name, &path).map_err(undo)?;
        if self.inplace {
            return Ok(stamp_of(EntryKind::File, &md));
        }
        let final_name = task
            .dest
            .file_name()
            .expect("checked by parent_dir: a name below the root");
        dir.rename(&name, final_name)
            .map_err(|e| undo(classify("cannot rename into", &task.dest, e)))?;
        let mut after = dir
            .stat(final_name)
            .map_err(|e| classify("cannot stat", &task.dest, e))?;
        // Some destinations stamp a renamed file with the current time
        // (fusefat): set the times again. Safe at any instant: until they
        // are set, the destination's mtime differs from the source's, so a
        // killed run leaves a file the next scan copies again.
        if stamp_of(EntryKind::File, &after) != stamp_of(EntryKind::File, &md) {
            after = set_times(final_name, &task.dest)?;
        }
        Ok(stamp_of(EntryKind::File, &after))
    }

    /// `owners` and `preserve`, best-effort (see [`Modes`]).
    fn settle_file(&self, task: &FileTask, file: &File) {
        let (m, path) = (self.modes, task.dest.as_path());
        let owned = m.owners && m.fchown(file, task.uid, task.gid, path);
        match m.permissions {
            Permissions::Preserve => {
                let (uid, gid) = if owned {
                    (task.uid, task.gid)
                } else {
                    file.metadata()
                        .map_or((u32::MAX, u32::MAX), |md| (md.uid(), md.gid()))
                };
                m.fchmod(
                    file,
                    m.preserved((task.mode, task.uid, task.gid), uid, gid),
                    path,
                );
            }
            // Created owner-only until it had its owners: now its bits.
            Permissions::Masked if m.private_until_owned(!self.inplace) => {
                m.fchmod(file, m.file_masked(task.mode), path);
            }
            Permissions::Masked => {}
        }
    }

    fn symlink(&mut self, task: &FileTask, target: &Path) -> Result<Stamp, Fault> {
        let (dir, name) = self.parent_dir(&task.dest)?;
        let tmp_name = OsString::from(temp_name(task.id));
        let tmp = task.dest.with_file_name(&tmp_name);
        let _ = dir.unlink(&tmp_name);
        match dir.symlink(target, &tmp_name) {
            // Not root, a folder that arrived read-only like its source.
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied
                    && self.modes.open_dir_for_owner(&dir) =>
            {
                dir.symlink(target, &tmp_name)
            }
            r => r,
        }
        .map_err(|e| classify("cannot create symlink", &tmp, e))?;
        // A symlink has no bits of its own to give; only its owners (the
        // link itself: `fchownat` with `AT_SYMLINK_NOFOLLOW`).
        if self.modes.owners {
            let _ = self
                .modes
                .lchown(&dir, Some(&tmp_name), task.uid, task.gid, &tmp);
        }
        let done = dir
            .set_times(&tmp_name, task.accessed_ns, task.modified_ns)
            .map_err(|e| classify("cannot set times on", &tmp, e))
            .and_then(|()| {
                dir.rename(&tmp_name, &name)
                    .map_err(|e| classify("cannot rename into", &task.dest, e))
            })
            .and_then(|()| {
                dir.stat(&name)
                    .map_err(|e| classify("cannot stat", &task.dest, e))
            });
        match done {
            Ok(md) => Ok(stamp_of(EntryKind::Symlink, &md)),
            Err(f) => {
                let _ = dir.unlink(&tmp_name);
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
        if let Some(parent) = task.source.parent()
            && self.last_touched_dir.as_deref() != Some(parent)
        {
            self.db.touch_dir(parent)?;
            self.last_touched_dir = Some(parent.to_path_buf());
        }
        let mut rec = FileRecord::new("synced", &task.source, &task.dest, task.size)
            .entry(task.kind.as_str(), task.modified_ns);
        if let Some(t) = &task.link_target {
            rec = rec.target(t);
        }
        rec.hash = hash;
        rec.algorithm = algorithm;
        self.audit.write(&rec)?;
        Ok(())
    }

    /// Creates folders (empty ones too) and restores their times, deepest
    /// first, after all their contents are written.
    fn restore_dirs(&mut self, batch: &mut Batch) -> Result<(), TransferError> {
        for d in self.db.pending_dirs()? {
            let done = self.restore_dir(&d);
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
                    let mut rec = FileRecord::new("failed", &d.source, &d.dest, d.size)
                        .entry(EntryKind::Dir.as_str(), d.modified_ns);
                    rec.error = Some(&error);
                    self.audit.write(&rec)?;
                    // Counts as a failure of this run (exit 1), as a file would.
                    self.progress.file_failed(0);
                }
            }
            batch.tick(self.db, self.audit)?;
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
                    m.preserved((d.mode, d.uid, d.gid), uid, gid),
                    &d.dest,
                );
            }
            Permissions::Masked if !m.root && m.dir_masked(d.mode) & 0o700 != 0o700 => {
                if let Ok(md) = now()
                    && let Some(bits) = m.dir_fix_owner_bits(d.mode, md.mode)
                {
                    m.chmod(dir, name, bits, &d.dest);
                }
            }
            Permissions::Masked => {}
        }
    }
}

/// Makes the destination folder `name` in `parent` (`rel` below the roots)
/// with the `mode` argument its source folder's bits give (see
/// [`Modes::dir_create`]) — read live, below the held source root through
/// no symlink, as a folder created for a file is created before its own row
/// is applied. A source folder that cannot be read (or is no folder now)
/// gives `0700`. Not root, a parent that arrived read-only like its source
/// is opened for its owner first. With `owners`, a new folder gets the
/// source's owners at once, while it is still empty. `AlreadyExists` is
/// returned as it is (another lane made it a moment ago, by the same rule).
fn make_dir(
    dest: &Root,
    source: &Root,
    modes: &Modes,
    parent: &Dir,
    name: &OsStr,
    rel: &Path,
) -> io::Result<()> {
    let src = source
        .stat(&source.path().join(rel))
        .ok()
        .filter(|md| md.kind == Some(EntryKind::Dir));
    let mode = src.map_or(0o700, |md| modes.dir_create(md.mode));
    match parent.mkdir(name, mode) {
        Err(e)
            if e.kind() == io::ErrorKind::PermissionDenied && modes.open_dir_for_owner(parent) =>
        {
            parent.mkdir(name, mode)
        }
        r => r,
    }?;
    if modes.owners
        && let Some(md) = src
    {
        let _ = modes.lchown(parent, Some(name), md.uid, md.gid, &dest.path().join(rel));
    }
    Ok(())
}

/// Removes the partial output of file `id` (or of whatever is open when
/// `id` is -1). With `inplace` the partial destination stays: its size or
/// mtime differs from the source, so the next scan copies it again.
fn discard(open: &mut Option<Open>, id: i64, inplace: bool) {
    if open.as_ref().is_some_and(|o| id == -1 || o.id == id) {
        let o = open.take().expect("checked: some");
        drop(o.file);
        if !inplace {
            let _ = o.dir.unlink(&o.name);
        }
    }
}

/// The topmost folder of `dir` (itself included, `root` excluded) that is a
/// symlink. In the destination, writing through it would put files wherever
/// it points (a source folder that was a symlink when jobrun copied it, say
/// to `/etc`, and is a real folder now), so such entries fail instead; the
/// reader applies the same rule to the source.
pub(super) fn symlinked_folder(root: &Path, dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .take_while(|a| *a != root && a.starts_with(root))
        .filter(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
        .last()
        .map(Path::to_path_buf)
}

/// The failure text of a destination entry below a symlink: `e` (the
/// refusal, from the kernel), and the symlink's name when it is still there
/// (a second look, for the operator only).
fn symlinked_folder_error(root: &Path, dir: &Path, e: &io::Error) -> String {
    match symlinked_folder(root, dir) {
        Some(link) => format!(
            "{e} (destination folder `{}` is a symlink; replace it with a folder)",
            link.display()
        ),
        None => e.to_string(),
    }
}

fn stamp_of(kind: EntryKind, md: &Meta) -> Stamp {
    Stamp {
        kind,
        size: md.len,
        modified_ns: md.modified_ns,
    }
}

/// Groups row updates into transactions; the audit log is flushed before
/// each commit, so no committed `synced` row lacks its audit line.
///
/// Durability is batched too: before each commit, one `syncfs` of the
/// destination filesystem puts every file of the batch (data, times and
/// rename) on stable storage, so a row only becomes `synced` once its file
/// would survive a crash, without paying an fdatasync per file (measured:
/// 2,000 tiny files took 2.7× as long with a per-file fdatasync on ext4). A
/// crash before the barrier leaves the batch's rows `pending`, and a resume
/// copies them again.
struct Batch {
    count: usize,
    since: Instant,
    /// The destination root, kept open for `syncfs`.
    dest: File,
    dest_root: PathBuf,
}

impl Batch {
    fn begin(db: &StateDb, dest_root: &Path) -> Result<Self, TransferError> {
        let dest = File::open(dest_root).map_err(|e| {
            TransferError::Fatal(format!(
                "cannot open destination root `{}`: {e}",
                dest_root.display()
            ))
        })?;
        db.begin()?;
        Ok(Self {
            count: 0,
            since: Instant::now(),
            dest,
            dest_root: dest_root.to_path_buf(),
        })
    }

    fn tick(&mut self, db: &StateDb, audit: &mut AuditLog) -> Result<(), TransferError> {
        self.count += 1;
        if self.count >= COMMIT_FILES || self.since.elapsed() >= COMMIT_EVERY {
            debug!(files = self.count, "commit");
            self.commit(db, audit)?;
            db.begin()?;
            self.count = 0;
            self.since = Instant::now();
        }
        Ok(())
    }

    fn commit(&self, db: &StateDb, audit: &mut AuditLog) -> Result<(), TransferError> {
        if self.count > 0 {
            // SAFETY: plain syscall on an fd this struct owns; no memory is passed.
            if unsafe { libc::syncfs(self.dest.as_raw_fd()) } != 0 {
                let e = io::Error::last_os_error();
                // Nothing of this batch is marked synced: its rows stay
                // pending and the next run copies them again.
                let _ = db.rollback();
                return Err(TransferError::Fatal(format!(
                    "cannot make the destination `{}` durable: {e}",
                    self.dest_root.display()
                )));
            }
        }
        audit.flush()?;
        db.commit()?;
        Ok(())
    }

    fn end(self, db: &StateDb, audit: &mut AuditLog) -> Result<(), TransferError> {
        self.commit(db, audit)
    }
}

/// Closes `file` and reports the error `close(2)` returns, which `Drop` ignores.
fn close_checked(file: File) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = file.into_raw_fd();
    // SAFETY: `fd` came from `into_raw_fd`, so it is open and owned here, and
    // is closed exactly once.
    if unsafe { libc::close(fd) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // Linux closes the descriptor even when close is interrupted.
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinked_folders_are_found_below_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(t.path().join("elsewhere/c")).unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), root.join("a/link")).unwrap();
        // The root itself may be a symlink: the user chose that path.
        let via = t.path().join("via");
        std::os::unix::fs::symlink(&root, &via).unwrap();
        assert_eq!(symlinked_folder(&root, &root.join("a/b")), None);
        assert_eq!(symlinked_folder(&root, &root.join("a/new/deeper")), None);
        assert_eq!(
            symlinked_folder(&root, &root.join("a/link/c")),
            Some(root.join("a/link"))
        );
        assert_eq!(
            symlinked_folder(&root, &root.join("a/link")),
            Some(root.join("a/link"))
        );
        assert_eq!(symlinked_folder(&via, &via.join("a/b")), None);
        assert_eq!(symlinked_folder(&root, &root), None);
    }
}
