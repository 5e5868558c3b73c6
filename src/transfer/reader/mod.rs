//! Transfer reader (producer): takes files from the DB backlog (never from
//! the filesystem listing), reads each in `block_size` blocks, hashes while
//! reading, and sends blocks into the FIFO. Never writes the DB: failures
//! travel to the writer as messages.
//!
//! With `transfers = N` there are N readers (one per lane, see `mod.rs`);
//! [`feed`] pages the backlog from the DB once and hands rows to whichever
//! reader is free, so a reader never waits on a DB query between files.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use flume::{Receiver, Sender};
use tracing::debug;

mod packer;
mod settle;
mod source;
mod vouch;

use packer::Packer;
use source::ReadAhead;
pub use source::open_source;
use vouch::{Vouch, read_stamp};

use super::block::{Block, FileTask, Msg, Parcel};
use super::dest::symlinked_folder;
use super::holes::{Region, Regions, feed_zeros};
use super::links::Groups;
use super::{LaneCtx, TransferError};
use crate::beneath::{self, Dir, DirCache, ns};
use crate::db::{PendingFile, StateDb};
use crate::decide::{EntryKind, SourceRoot};
use crate::roots::{RootId, RootNow};

/// Backlog rows fetched per DB query.
const PAGE: usize = 1_000;

/// Pages pending rows (rowid order) from the DB into `work`, skipping
/// folders (their mtimes are restored by the committer at the end). Ends
/// when the backlog is exhausted, on stop/halt, or when no reader is left.
pub fn feed(
    db: StateDb,
    work: Sender<PendingFile>,
    (stop, halt): (&AtomicBool, &AtomicBool),
    groups: &mut Groups,
) -> Result<(), TransferError> {
    let mut after = None;
    loop {
        let page = db.pending_page(after, PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.id);
        for mut row in page {
            if stop.load(Relaxed) || halt.load(Relaxed) {
                return Ok(());
            }
            if row.kind == EntryKind::Dir || !groups.route(&db, &mut row)? {
                continue;
            }
            if work.send(row).is_err() {
                return Ok(());
            }
        }
    }
}

/// One lane's reader: the shared [`LaneCtx`] plus its own channel ends.
pub struct Reader<'a> {
    ctx: &'a LaneCtx<'a>,
    /// Backlog rows from [`feed`], shared by all lanes' readers.
    work: Receiver<PendingFile>,
    /// Blocks to this lane's writer.
    tx: Sender<Parcel>,
    /// Buffers the writer hands back.
    pool: Receiver<Vec<u8>>,
}

enum Outcome {
    Sent,
    Failed(String),
    Abandoned,
}

/// Makes a file's task from what its open found: size, mtime and atime
/// (ns), and (mode, uid, gid).
type MakeTask<'f> = dyn Fn(u64, i128, i128, (u32, u32, u32)) -> Arc<FileTask> + 'f;
/// Hands a message to the lane's writer.
pub(super) type SendMsg<'f> = dyn FnMut(Msg) -> Result<(), TransferError> + 'f;

impl<'a> Reader<'a> {
    pub fn new(
        ctx: &'a LaneCtx<'a>,
        work: Receiver<PendingFile>,
        tx: Sender<Parcel>,
        pool: Receiver<Vec<u8>>,
    ) -> Self {
        Self {
            ctx,
            work,
            tx,
            pool,
        }
    }

    pub fn run(self) -> Result<(), TransferError> {
        let mut parcel = Packer {
            tx: &self.tx,
            msgs: Vec::new(),
            bytes: 0,
            limit: self.ctx.job.block_size,
        };
        let result = self.feed(&mut parcel);
        parcel.flush()?;
        result
    }

    fn feed(&self, parcel: &mut Packer<'_>) -> Result<(), TransferError> {
        let root = self
            .ctx
            .root_at_start
            .or_else(|| RootId::of(self.ctx.job.source.as_std_path()).ok());
        // This lane's last source folder: consecutive files mostly share it.
        let mut dirs = DirCache::default();
        // One indentation level kept from the single-reader loop (it paged
        // the DB itself) so the per-row code below stays diff-stable.
        {
            for row in self.work.iter() {
                if self.stopping() {
                    return Ok(());
                }
                let send = &mut |m| parcel.push(m);
                let task = |size, modified_ns, accessed_ns, (mode, uid, gid)| {
                    Arc::new(FileTask {
                        id: row.id,
                        source: row.source.clone(),
                        dest: row.dest.clone(),
                        size,
                        modified_ns,
                        accessed_ns,
                        mode,
                        uid,
                        gid,
                        kind: row.kind,
                        link_target: None,
                        created_ns: None,
                        attrs: Vec::new(),
                        changed_ns: None,
                    })
                };
                // Directories get their mtimes after their contents (writer).
                if row.kind == EntryKind::Dir {
                    continue;
                }
                // The held root would go on reading a tree renamed away or
                // a share unmounted lazily: the job's source is the path.
                if self.ctx.source.moved() {
                    self.check_root(root)?;
                    return Err(TransferError::Fatal(format!(
                        "source root `{}` is no longer the folder this run opened",
                        self.ctx.job.source.as_std_path().display()
                    )));
                }
                // The folder is opened below the root through no symlink: one
                // swapped in since the scan (or right now) fails this entry
                // instead of copying whatever it points to under this name.
                let at = self
                    .ctx
                    .source
                    .split(&row.source)
                    .and_then(|(dir, name)| Ok((dirs.dir(self.ctx.source, dir)?, name)));
                let outcome = match (row.kind, at) {
                    (_, Err(e)) => {
                        dirs.clear();
                        Outcome::Failed(self.folder_error(&row.source, &e))
                    }
                    (EntryKind::Symlink, Ok((dir, name))) => match dir
                        .read_link(name)
                        .and_then(|t| dir.stat(name).map(|m| (t, m)))
                    {
                        Ok((target, md)) => {
                            let mut file = task(
                                md.len,
                                md.modified_ns,
                                md.accessed_ns,
                                (md.mode, md.uid, md.gid),
                            );
                            if let Some(f) = Arc::get_mut(&mut file) {
                                // Just made, so not shared yet: for the audit line.
                                f.link_target = Some(target.clone());
                            }
                            send(Msg::Symlink { file, target })?;
                            continue;
                        }
                        Err(e) => Outcome::Failed(format!("cannot read symlink: {e}")),
                    },
                    (_, Ok((dir, name))) if row.link_to.is_some() => {
                        self.link_or_read(&row, &dir, name, &task, send)?
                    }
                    (_, Ok((dir, name))) => self.read_file(&row, &dir, name, &task, send)?,
                };
                match outcome {
                    Outcome::Sent | Outcome::Abandoned => {}
                    Outcome::Failed(error) => {
                        // The held folder may be the cause (removed and made
                        // anew since): the next file resolves it again.
                        dirs.clear();
                        self.check_root(root)?;
                        let file =
                            task(row.size, row.modified_ns, row.accessed_ns, (row.mode, 0, 0));
                        send(Msg::Failed { file, error })?;
                    }
                }
            }
        }
        // Files opened below the held root read on through a rename or a
        // lazy unmount, and `moved` looks at most once a second: a root gone
        // while this lane read its last files stops the run all the same
        // (exit 4, the rows not yet renamed stay pending), as a path-based
        // open after it would have. One look per lane and run.
        if !self.stopping() && self.ctx.source.moved_now() {
            self.check_root(root)?;
            return Err(TransferError::Fatal(format!(
                "source root `{}` is no longer the folder this run opened",
                self.ctx.job.source.as_std_path().display()
            )));
        }
        Ok(())
    }

    /// The failure text of an entry whose folder could not be opened. A
    /// symlink on the way is named when it is still there (a second look,
    /// for the operator only: the refusal itself came from the kernel).
    fn folder_error(&self, path: &Path, e: &io::Error) -> String {
        if !beneath::is_symlink_in_path(e) {
            return format!("cannot open source folder: {e}");
        }
        match path
            .parent()
            .and_then(|d| symlinked_folder(self.ctx.job.source.as_std_path(), d))
        {
            Some(link) => format!("{e} (source folder `{}` is now a symlink)", link.display()),
            None => e.to_string(),
        }
    }

    fn stopping(&self) -> bool {
        self.ctx.stop.load(Relaxed) || self.ctx.halt.load(Relaxed)
    }

    /// A vanished source root is fatal, not a per-file failure: otherwise an
    /// unmounted share would mark the whole backlog failed. An unmounted
    /// share usually leaves its empty mount point behind, so the root must
    /// also still be the same folder (device and inode) as at the start.
    fn check_root(&self, at_start: Option<RootId>) -> Result<(), TransferError> {
        let root = self.ctx.job.source.as_std_path().display();
        let now = RootNow::look(self.ctx.job.source.as_std_path(), at_start);
        let why = match now.state {
            // Unreadable: each file's open says so, and the mirror refuses.
            SourceRoot::Dir { empty: false } | SourceRoot::Unreadable => return Ok(()),
            SourceRoot::NotADirectory => "is no longer a directory".to_string(),
            SourceRoot::Replaced => "is no longer the same folder (share unmounted?)".to_string(),
            // A share that was not mounted when the run started: an empty
            // mount point, while the backlog says it holds files.
            SourceRoot::Dir { empty: true } => "is empty but the backlog lists files in it \
                (share not mounted? if it was emptied on purpose, run with --rescan)"
                .to_string(),
            SourceRoot::Missing => format!(
                "is gone: {}",
                now.error.map(|e| e.to_string()).unwrap_or_default()
            ),
        };
        Err(TransferError::Fatal(format!("source root `{root}` {why}")))
    }

    /// A buffer for `want` bytes. A block shorter than `block_size` (a small
    /// file, a file's tail) gets exactly its size: a full-size buffer for
    /// each of the thousands of small files in flight would keep mostly
    /// untouched 128 KiB allocations alive and grow the heap. Full-size
    /// buffers come back from the writer through the pool.
    fn buffer(&self, want: usize) -> Vec<u8> {
        if want < self.ctx.job.block_size {
            return Vec::with_capacity(want);
        }
        self.pool
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.ctx.job.block_size))
    }

    /// The attributes the job copies, counting those it leaves out
    /// (`crate::xattrs::Attrs::read`).
    fn read_attrs(&self, f: &File, path: &Path) -> Vec<crate::xattrs::Attr> {
        self.ctx.modes.attrs.read(f, path)
    }

    /// A name of a hard-link group that has a copy: a link to it while the
    /// name is still that inode with the scanned size and mtime, else read
    /// like any file (the group follows the source).
    fn link_or_read(
        &self,
        row: &PendingFile,
        dir: &Dir,
        name: &OsStr,
        task: &MakeTask<'_>,
        send: &mut SendMsg<'_>,
    ) -> Result<Outcome, TransferError> {
        let copy = row.link_to.as_ref().expect("checked by the caller");
        match dir.stat(name) {
            Ok(md)
                if Some((md.dev, md.ino)) == row.link
                    && md.len == row.size
                    && md.modified_ns == row.modified_ns =>
            {
                let file = task(
                    md.len,
                    md.modified_ns,
                    md.accessed_ns,
                    (md.mode, md.uid, md.gid),
                );
                send(Msg::Link {
                    file,
                    to: copy.clone(),
                })?;
                Ok(Outcome::Sent)
            }
            _ => self.read_file(row, dir, name, task, send),
        }
    }

    fn read_file(
        &self,
        row: &PendingFile,
        dir: &Dir,
        name: &OsStr,
        task: &MakeTask<'_>,
        send: &mut SendMsg<'_>,
    ) -> Result<Outcome, TransferError> {
        // Before the open: the racy-file rule compares the file's times
        // with the moment its read began.
        let started = (Instant::now(), crate::clock::now_ns());
        // `_turn` keeps other lanes off this inode until `f` is closed
        // (declared first, so dropped after `f`).
        let (_turn, mut f) = match open_source(dir, name, &|| self.stopping()) {
            Ok(Some(open)) => open,
            Ok(None) => return Ok(Outcome::Abandoned),
            Err(e) => return Ok(Outcome::Failed(source::open_failure(&e))),
        };
        let before = match f.metadata() {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(Outcome::Failed("source is no longer a regular file".into())),
            Err(e) => return Ok(Outcome::Failed(format!("cannot stat source: {e}"))),
        };
        let file = self.task_at_open(row, &f, &before, task);
        if let Some(outcome) = self.settle(row, &mut f, (&before, started), &file, send)? {
            return Ok(outcome);
        }
        debug!(id = row.id.get(), path = %row.source.display(), size = before.len(), "reading");
        let mut hasher = self.ctx.job.checksum.hasher();
        let mut offset = 0u64;
        let mut read_ahead = ReadAhead::Default;
        let mut regions = Regions::new(self.ctx.job.sparse, file.size, before.blocks());
        loop {
            if offset > 0 && self.stopping() {
                send(Msg::Abandon { file })?;
                return Ok(Outcome::Abandoned);
            }
            let (want, hole) = match self.span(regions.as_mut(), &mut f, offset, file.size) {
                Ok(span) => span,
                Err(e) => return Ok(Outcome::Failed(format!("cannot read source: {e}"))),
            };
            let mut data = self.buffer(want);
            data.resize(want, 0);
            feed_zeros(hole, &mut |z| hasher.update(z));
            if let Err(e) = self.fill(&mut f, &mut data, &mut read_ahead) {
                if e.kind() == io::ErrorKind::Interrupted && self.stopping() {
                    send(Msg::Abandon { file })?;
                    return Ok(Outcome::Abandoned);
                }
                let why = if e.kind() == io::ErrorKind::UnexpectedEof {
                    "source changed while being read (it shrank)".to_string()
                } else {
                    format!("cannot read source: {e}")
                };
                return Ok(Outcome::Failed(why));
            }
            hasher.update(&data);
            let last = offset + want as u64 + hole == file.size;
            let block_offset = offset;
            offset += want as u64 + hole;
            let mut hash = None;
            if last {
                let h = std::mem::replace(&mut hasher, self.ctx.job.checksum.hasher());
                let h = h.finish_hex();
                match self.vouch(&mut f, &read_stamp(&before), started, &h) {
                    Vouch::Same => hash = Some(h),
                    Vouch::Changed(why) => return Ok(Outcome::Failed(why)),
                    Vouch::Stopping => {
                        send(Msg::Abandon { file })?;
                        return Ok(Outcome::Abandoned);
                    }
                }
            }
            send(Msg::Block(Block {
                file: file.clone(),
                offset: block_offset,
                data,
                hole,
                last,
                hash,
            }))?;
            if last {
                return Ok(Outcome::Sent);
            }
        }
    }
    /// The entry as the open source shows it: the mode at open, not the
    /// scanned one (a file made private since the scan must not arrive
    /// with its old, wider bits; nor with an ACL's mask as its group bits,
    /// `crate::xattrs`), its attributes and times.
    fn task_at_open(
        &self,
        row: &PendingFile,
        f: &File,
        before: &std::fs::Metadata,
        task: &MakeTask<'_>,
    ) -> Arc<FileTask> {
        let mode = crate::xattrs::narrowed_mode(f, before.mode());
        let mut file = task(
            before.len(),
            ns(before.mtime(), before.mtime_nsec()),
            ns(before.atime(), before.atime_nsec()),
            (mode, before.uid(), before.gid()),
        );
        let attrs = self.read_attrs(f, &row.source);
        if let Some(t) = Arc::get_mut(&mut file) {
            t.attrs = attrs;
            t.created_ns = before.created().ok().map(crate::beneath::system_ns);
            t.changed_ns = Some(ns(before.ctime(), before.ctime_nsec()));
        }
        file
    }

    /// The next block at `offset`: bytes to read, or a hole to skip
    /// (`sparse`, see `holes`), never both.
    fn span(
        &self,
        regions: Option<&mut Regions>,
        f: &mut File,
        offset: u64,
        size: u64,
    ) -> io::Result<(usize, u64)> {
        let block = self.ctx.job.block_size as u64;
        let region = match regions {
            Some(r) if offset < size => r.at(f, offset)?,
            _ => Region::Data { end: size },
        };
        Ok(match region {
            Region::Hole { end } => (0, end - offset),
            Region::Data { end } => ((end - offset).min(block) as usize, 0),
        })
    }

    /// Fills `buf` completely, in throttled slices when a limit is set.
    fn fill(&self, f: &mut File, buf: &mut [u8], ra: &mut ReadAhead) -> io::Result<()> {
        let limited = self.ctx.read_limit.is_limited();
        ra.follow(f, limited);
        if !limited {
            return f.read_exact(buf);
        }
        let slice = self.ctx.read_limit.slice_len();
        for chunk in buf.chunks_mut(slice) {
            // A slow limit makes a block take seconds: a stop request must
            // not wait for it.
            if self.stopping() {
                return Err(io::ErrorKind::Interrupted.into());
            }
            // Timed: under `auto` each read's latency is a delay sample.
            self.ctx
                .read_limit
                .paced(chunk.len(), || f.read_exact(chunk))?;
        }
        Ok(())
    }
}
