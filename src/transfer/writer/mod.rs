//! Transfer writer, one per lane (its own thread): the filesystem half of a
//! copy — temp file (created with the source's bits, `crate::modes`),
//! blocks (paced by `writeback`), owners and exact bits when asked, checked
//! close, times, rename, in that order (SPEC §5). It reports each finished
//! or failed entry to the committer (`commit`) as a [`Done`] event, only
//! after the rename; it never touches the state DB.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use flume::{Receiver, Sender};
use tracing::{debug, info};

mod entries;
mod finish;

use super::block::{Block, FileTask, Msg, Parcel};
use super::commit::Done;
use super::dest::{make_dir, symlinked_folder_error};
use super::holes::segments;
use super::space::Slot;
use super::writeback::{WRITEBACK_UNLIMITED, WriteBack, limited_range};
use super::{LaneCtx, TransferError};
use crate::beneath::{self, Dir, DirCache, Root};
use crate::db::RowId;
use crate::decide::Stamp;
use crate::fsmeta::temp_name;
use crate::progress::Lane;

/// One lane's filesystem writer: the shared [`LaneCtx`] plus its own
/// channel ends, progress slot and folder cache.
pub struct Writer<'a> {
    ctx: &'a LaneCtx<'a>,
    /// Blocks from this lane's reader.
    rx: Receiver<Parcel>,
    /// Buffers handed back to the reader.
    pool: Sender<Vec<u8>>,
    /// This lane's slot in the progress display.
    lane: Lane,
    /// Outcomes, to the committer.
    done: Sender<Done>,
    /// This lane's last destination folder: consecutive files mostly share it.
    dirs: DirCache,
    /// The entry being written had the destination's space alone (see
    /// `space`): out of space, it does not fit.
    alone: bool,
}

/// The file being written.
struct Open<'a> {
    id: RowId,
    file: File,
    /// Its folder, and its name there: the temp sibling, or the destination
    /// with `inplace`.
    dir: Arc<Dir>,
    name: OsString,
    /// The full path, for messages.
    path: PathBuf,
    pacer: WriteBack,
    /// The last bytes given were a hole, skipped: the size is set at the end.
    tail_hole: bool,
    /// Bytes written so far (holes and zero runs skipped are not).
    written: u64,
    /// Its place among the files in flight, given back when it is dropped.
    _slot: Slot<'a>,
}

/// An entry in place under its name.
struct Finished {
    hash: Option<String>,
    /// The destination's stamp after the copy.
    stamp: Stamp,
    /// The bytes written for it (see [`Done::Synced`]).
    written: u64,
}

/// What one message led to: nothing yet, a finished entry, or a fault for
/// that entry.
type Outcome = Result<Option<(Arc<FileTask>, Finished)>, (Arc<FileTask>, Fault)>;

/// A per-file failure or a fatal one.
enum Fault {
    File(String),
    Fatal(TransferError),
    /// Out of space (or quota): the file goes back to the backlog while
    /// others were in flight, else it does not fit (see `space`).
    NoSpace(String),
    /// A stop request cut a write short: not a failure, the row stays pending.
    Stopped,
}

impl From<TransferError> for Fault {
    fn from(e: TransferError) -> Self {
        Fault::Fatal(e)
    }
}

/// A read-only destination stops the run: every further file would fail
/// the same way and bury the log. Out of space is never a file's failure
/// either: see [`Fault::NoSpace`].
fn classify(what: &str, path: &Path, e: io::Error) -> Fault {
    let msg = format!("{what} `{}`: {e}", path.display());
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => Fault::NoSpace(e.to_string()),
        Some(libc::EROFS) => Fault::Fatal(TransferError::Fatal(msg)),
        _ => Fault::File(msg),
    }
}

impl<'a> Writer<'a> {
    pub fn new(
        ctx: &'a LaneCtx<'a>,
        rx: Receiver<Parcel>,
        pool: Sender<Vec<u8>>,
        lane: Lane,
        done: Sender<Done>,
    ) -> Self {
        Self {
            ctx,
            rx,
            pool,
            lane,
            done,
            dirs: DirCache::default(),
            alone: false,
        }
    }

    /// Writes this lane's messages until the reader closes the FIFO, the
    /// committer goes away, or `halt` is set. Each entry's outcome goes to
    /// the committer only after its rename (or its failure).
    pub fn run(mut self) {
        let mut open: Option<Open<'a>> = None;
        // A file that already failed: its remaining blocks are dropped.
        let mut skip: Option<RowId> = None;
        let rx = self.rx.clone();
        for msg in rx.iter().flatten() {
            if self.ctx.halt.load(Relaxed) {
                break;
            }
            let outcome: Outcome = match msg {
                Msg::Block(b) => {
                    // Stopping: queued blocks are not written (with a slow
                    // limit they would take minutes); the file stays pending.
                    if self.ctx.stop.load(Relaxed) {
                        discard(&mut open, Some(b.file.id), self.ctx.job.inplace);
                        self.lane.drop_file();
                        self.recycle(b.data);
                        continue;
                    }
                    if skip == Some(b.file.id) {
                        self.recycle(b.data);
                        continue;
                    }
                    let file = b.file.clone();
                    match self.block(&mut open, b) {
                        Ok(done) => Ok(done.map(|f| (file, f))),
                        Err(f) => Err((file, f)),
                    }
                }
                Msg::Symlink { file, target } => match self.symlink(&file, &target) {
                    Ok(f) => Ok(Some((file, f))),
                    Err(f) => Err((file, f)),
                },
                Msg::Link { file, to } => match self.link(&file, &to) {
                    Ok(f) => Ok(Some((file, f))),
                    Err(f) => Err((file, f)),
                },
                Msg::Settle {
                    file,
                    hash,
                    after_copy,
                } => match self.settle(&file, hash, after_copy) {
                    Ok(f) => Ok(Some((file, f))),
                    Err(f) => Err((file, f)),
                },
                Msg::Failed { file, error } => Err((file, Fault::File(error))),
                Msg::Abandon { file } => {
                    discard(&mut open, Some(file.id), self.ctx.job.inplace);
                    self.lane.drop_file();
                    continue;
                }
            };
            let event = match outcome {
                Ok(None) => continue,
                Ok(Some((file, f))) => {
                    debug!(id = file.id.get(), "renamed");
                    Done::Synced {
                        file,
                        hash: f.hash,
                        stamp: f.stamp,
                        written: f.written,
                    }
                }
                Err((file, Fault::File(error))) => {
                    discard(&mut open, Some(file.id), self.ctx.job.inplace);
                    skip = Some(file.id);
                    Done::Failed { file, error }
                }
                Err((file, Fault::Stopped)) => {
                    discard(&mut open, Some(file.id), self.ctx.job.inplace);
                    self.lane.drop_file();
                    continue;
                }
                Err((file, Fault::Fatal(e))) => {
                    discard(&mut open, Some(file.id), self.ctx.job.inplace);
                    let _ = self.done.send(Done::Fatal(e));
                    break;
                }
                Err((file, Fault::NoSpace(error))) => {
                    // Its temporary goes first: the space is the others'.
                    discard(&mut open, Some(file.id), self.ctx.job.inplace);
                    skip = Some(file.id);
                    self.lane.drop_file();
                    if self.alone {
                        let _ = self.done.send(Done::DoesNotFit { file, error });
                        break;
                    }
                    self.ctx.space.narrow();
                    Done::Returned { file }
                }
            };
            if let Done::Synced { file, .. } | Done::Failed { file, .. } = &event {
                self.lane.file_done(file.size);
            }
            if self.done.send(event).is_err() {
                break;
            }
        }
        discard(&mut open, None, self.ctx.job.inplace);
    }

    /// Returns a block buffer to the reader. Its length is kept, so the
    /// reader's `resize` does not zero-fill it again (a measurable cost at
    /// GB/s: one extra memset of every byte copied).
    /// Hands a full-size buffer back to the reader (see `Reader::buffer`).
    fn recycle(&self, data: Vec<u8>) {
        if data.capacity() >= self.ctx.job.block_size {
            let _ = self.pool.try_send(data);
        }
    }

    /// Writes one block; on the last one, finishes the file.
    fn block(&mut self, open: &mut Option<Open<'a>>, b: Block) -> Result<Option<Finished>, Fault> {
        let task = &b.file;
        if b.offset == 0 {
            discard(open, None, self.ctx.job.inplace);
            let slot = self.slot()?;
            let shown = task.dest.strip_prefix(self.ctx.dest.path());
            self.lane
                .file_started(shown.unwrap_or(&task.dest), task.size);
            *open = Some(self.create(task, slot)?);
        }
        let Some(o) = open.as_mut().filter(|o| o.id == task.id) else {
            return Err(Fault::File("internal: block without an open file".into()));
        };
        let before = o.written;
        self.put(o, &b).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted && self.ctx.stop.load(Relaxed) {
                Fault::Stopped
            } else {
                classify("cannot write", &o.path, e)
            }
        })?;
        if !self.ctx.first_block.swap(true, Relaxed) {
            info!("first block written");
        }
        let written = o.written - before;
        self.lane.bytes_written(written);
        self.lane
            .bytes_skipped(b.data.len() as u64 + b.hole - written);
        self.recycle(b.data);
        if !b.last {
            return Ok(None);
        }
        let o = open
            .take()
            .expect("checked above: the open file is this one");
        let written = o.written;
        let stamp = self.finish(task, o)?;
        Ok(Some(Finished {
            hash: b.hash,
            stamp,
            written,
        }))
    }

    /// The next entry's place among those in flight (see `space`); waits
    /// for its turn once the destination has run out of space.
    fn slot(&mut self) -> Result<Slot<'a>, Fault> {
        let slot = self
            .ctx
            .space
            .enter(self.ctx.stop, self.ctx.halt)
            .ok_or(Fault::Stopped)?;
        self.alone = slot.alone();
        Ok(slot)
    }

    /// One block's bytes, or its hole (`sparse`): a hole, and with
    /// `sparse` every whole aligned block of zeros, is skipped, not written
    /// (see `holes`).
    fn put(&self, o: &mut Open<'_>, b: &Block) -> io::Result<()> {
        let skip = |o: &mut Open<'_>, n: u64| -> io::Result<()> {
            o.file.seek(io::SeekFrom::Current(n as i64))?;
            o.pacer.skipped(n);
            o.tail_hole = true;
            Ok(())
        };
        if b.hole > 0 {
            return skip(o, b.hole);
        }
        if !self.ctx.job.sparse {
            o.tail_hole = false;
            return self.write(o, &b.data);
        }
        for (s, e, zero) in segments(&b.data, b.offset) {
            if zero {
                skip(o, (e - s) as u64)?;
            } else {
                o.tail_hole = false;
                self.write(o, &b.data[s..e])?;
            }
        }
        Ok(())
    }

    fn write(&self, o: &mut Open<'_>, data: &[u8]) -> io::Result<()> {
        let limited = self.ctx.write_limit.is_limited();
        self.lane.set_limit(self.ctx.write_limit.code());
        if !limited {
            o.file.write_all(data)?;
            o.written += data.len() as u64;
            return o.pacer.wrote(&o.file, data.len(), WRITEBACK_UNLIMITED);
        }
        let range = self
            .ctx
            .write_limit
            .active()
            // The lanes share the rate: each one's range is its share.
            .map_or(WRITEBACK_UNLIMITED, |r| limited_range(r, self.ctx.lanes));
        // A chunk at most a range: each write is handed to write-out alone.
        let chunk_len = self.ctx.write_limit.slice_len().min(range as usize);
        for chunk in data.chunks(chunk_len) {
            if self.ctx.stop.load(Relaxed) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            // On the wire before the next tokens are taken: a stalled
            // transport holds the lane, not the lane's next chunk.
            o.pacer.settle_in_flight(&o.file)?;
            if self.ctx.write_limit.is_auto() {
                // `auto`: the chunk's write-back is part of the timed call,
                // so that a kernel client's WRITE round trip (the page
                // cache returns `write()` at once) is the delay sample.
                let (file, pacer) = (&mut o.file, &mut o.pacer);
                self.ctx.write_limit.paced(chunk.len(), || {
                    file.write_all(chunk)?;
                    pacer.write_through(file, chunk.len())
                })?;
                o.written += chunk.len() as u64;
                continue;
            }
            // Timed: under `auto` each write's latency is a delay sample.
            let file = &mut o.file;
            self.ctx
                .write_limit
                .paced(chunk.len(), || file.write_all(chunk))?;
            o.written += chunk.len() as u64;
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
        if self.ctx.dest.moved() {
            return Err(gone(self.ctx.dest));
        }
        let (rel, name) = self
            .ctx
            .dest
            .split(dest)
            .map_err(|e| Fault::File(e.to_string()))?;
        let name = name.to_os_string();
        let (dest_root, source, modes) = (self.ctx.dest, self.ctx.source, self.ctx.modes);
        let made = self.dirs.create_dirs_with(dest_root, rel, &mut |d, n, r| {
            make_dir(dest_root, source, modes, d, n, r)
        });
        match made {
            Ok(dir) => Ok((dir, name)),
            Err(e) => {
                self.dirs.clear();
                let parent = dest.parent().unwrap_or(self.ctx.dest.path());
                if beneath::is_symlink_in_path(&e) {
                    Err(Fault::File(symlinked_folder_error(
                        self.ctx.dest.path(),
                        parent,
                        &e,
                    )))
                } else if e.kind() == io::ErrorKind::NotFound && self.ctx.dest.moved_now() {
                    Err(gone(self.ctx.dest))
                } else {
                    Err(classify("cannot create folder", parent, e))
                }
            }
        }
    }

    fn create(&mut self, task: &FileTask, slot: Slot<'a>) -> Result<Open<'a>, Fault> {
        let (mut dir, name) = self.parent_dir(&task.dest)?;
        let name = if self.ctx.job.inplace {
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
        if self.ctx.job.inplace {
            // An existing file keeps its bits, less those the source does
            // not grant, taken off before the first byte is written.
            if let Ok(md) = file.metadata()
                && let Some(bits) = self.ctx.modes.inplace_narrowed(task.mode, md.mode())
            {
                self.ctx.modes.fchmod(&file, bits, &path);
            }
        }
        Ok(Open {
            id: task.id,
            file,
            dir,
            name,
            path,
            pacer: WriteBack::default(),
            tail_hole: false,
            written: 0,
            _slot: slot,
        })
    }

    /// Never through a symlink: a stale temporary is removed and the new one
    /// created exclusively; with `inplace` a destination that is a symlink
    /// fails (ELOOP) instead of overwriting what it points to. Created with
    /// the source's bits (`src_mode`; the kernel takes the umask off): never
    /// wider than the source, not even while it is written.
    fn open_in(&self, dir: &Dir, name: &OsStr, src_mode: u32) -> io::Result<File> {
        let mode = self.ctx.modes.file_create(src_mode, !self.ctx.job.inplace);
        let open = || {
            if self.ctx.job.inplace {
                dir.create_truncate(name, mode)
            } else {
                dir.create_new(name, mode)
            }
        };
        let opened = match open() {
            // A stale temporary of a killed run (or anything planted under
            // its name): removed, then created anew. Not unlinked up front:
            // on a share a failed unlink still costs a round trip per file.
            Err(e) if !self.ctx.job.inplace && e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = dir.unlink(name);
                open()
            }
            r => r,
        };
        match opened {
            // Not root, a folder that arrived read-only like its source.
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied
                    && self.ctx.modes.open_dir_for_owner(dir) =>
            {
                open()
            }
            r => r,
        }
    }
}

/// Removes the partial output of file `id` (or of whatever is open when
/// `id` is `None`). With `inplace` the partial destination stays: its size
/// or mtime differs from the source, so the next scan copies it again.
fn discard(open: &mut Option<Open<'_>>, id: Option<RowId>, inplace: bool) {
    if open
        .as_ref()
        .is_some_and(|o| id.is_none_or(|id| o.id == id))
    {
        let o = open.take().expect("checked: some");
        drop(o.file);
        if !inplace {
            let _ = o.dir.unlink(&o.name);
        }
    }
}
