//! The end of a file's copy: size, write-out, owners and bits, attributes,
//! checked close, times, then the rename (SPEC §5).

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tracing::debug;

use super::{Fault, Open, Writer, classify};
use crate::decide::{EntryKind, Stamp};
use crate::modes::Permissions;
use crate::transfer::block::FileTask;
use crate::transfer::dest::stamp_of;
use crate::transfer::writeback::close_checked;

impl Writer<'_> {
    /// Close, times, then the rename: the file appears under its real name
    /// complete and with the source's mtime, so no scan can ever see a
    /// half-finished file that looks synced. The times are set by path after
    /// the close because some destinations stamp the write time at close
    /// (fusefat; SMB servers flushing cached writes), undoing times set on
    /// the open handle. The after-copy stamp is read under the final name,
    /// as the next scan will see it.
    pub(super) fn finish(&self, task: &FileTask, o: Open<'_>) -> Result<Stamp, Fault> {
        let Open {
            file,
            dir,
            name,
            path,
            mut pacer,
            tail_hole,
            ..
        } = o;
        let undo = |f: Fault| {
            if !self.ctx.job.inplace {
                let _ = dir.unlink(&name);
            }
            f
        };
        // A file that ends in a hole was never written that far.
        if tail_hole {
            file.set_len(task.size)
                .map_err(|e| undo(classify("cannot write", &path, e)))?;
        }
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
        // Best effort, SMB only: a creation time the share refuses costs
        // nothing of the copy (the DB keeps the source's).
        if let Err(e) = self.ctx.dest.set_created(&file, task.created_ns) {
            debug!(path = %path.display(), error = %e, "creation time not set");
        }
        // A checked close: NFS and SMB report deferred write errors (ENOSPC,
        // EDQUOT, EIO) at close, which dropping a `File` would ignore.
        close_checked(file).map_err(|e| undo(classify("cannot write", &path, e)))?;
        let set_times = |n: &OsStr, p: &Path| {
            dir.set_times(n, task.accessed_ns, task.modified_ns)
                .and_then(|()| dir.stat(n))
                .map_err(|e| classify("cannot set times on", p, e))
        };
        let md = set_times(&name, &path).map_err(undo)?;
        if self.ctx.job.inplace {
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
    pub(super) fn settle_file(&self, task: &FileTask, file: &File) {
        let (m, path) = (self.ctx.modes, task.dest.as_path());
        let shown = m
            .owners
            .then(|| m.fchown(file, task.uid, task.gid, path))
            .flatten();
        match m.permissions {
            Permissions::Preserve => {
                // The owner the bits are judged against: the one the chown
                // left, else the one the file was created with.
                let (uid, gid) = shown.unwrap_or_else(|| {
                    file.metadata()
                        .map_or((u32::MAX, u32::MAX), |md| (md.uid(), md.gid()))
                });
                m.fchmod(
                    file,
                    m.preserved((task.mode, task.uid, task.gid), uid, gid),
                    path,
                );
            }
            // Created owner-only until it had its owners: now its bits.
            Permissions::Masked if m.private_until_owned(!self.ctx.job.inplace) => {
                m.fchmod(file, m.file_masked(task.mode), path);
            }
            Permissions::Masked => {}
        }
        // Last: an ACL gives the group bits its mask.
        m.attrs.apply(file, &task.attrs, path);
    }
}
