//! Entries without bytes of their own to copy: a hard link to its
//! group's copy, a symlink, a file whose copy needs its attributes only.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use super::{Fault, Finished, Writer, classify};
use crate::db::LinkedCopy;
use crate::decide::EntryKind;
use crate::fsmeta::temp_name;
use crate::transfer::block::FileTask;
use crate::transfer::dest::stamp_of;

impl Writer<'_> {
    /// A hard link named `task.dest` to `to`, the copy of its group
    /// already made: linked as a temporary, then renamed into place (a
    /// name that already is that inode, from a run killed before its
    /// commit, is left as it is). A destination that refuses the link gets
    /// a copy of it (see `links`). The copy must still show the size and
    /// mtime it had right after it was made. With the bytes written: none
    /// for a link.
    pub(super) fn link(&mut self, task: &FileTask, copy: &LinkedCopy) -> Result<Finished, Fault> {
        let to = copy.dest.as_path();
        let slot = self.slot()?;
        let (dir, name) = self.parent_dir(&task.dest)?;
        let (from, from_name) = self
            .ctx
            .dest
            .split(to)
            .and_then(|(rel, n)| Ok((self.ctx.dest.dir(rel)?, n)))
            .map_err(|e| classify("cannot open", to, e))?;
        let found = from
            .stat(from_name)
            .map_err(|e| classify("cannot stat", to, e))?;
        if (found.len, found.modified_ns) != copy.stamp {
            return Err(Fault::File(format!(
                "the copy of its hard-link group `{}` changed since it was made; copied again next run",
                to.display()
            )));
        }
        let tmp = OsString::from(temp_name(task.id));
        let _ = dir.unlink(&tmp);
        match dir.link_from(&from, from_name, &tmp) {
            Ok(()) => {}
            Err(e) if crate::transfer::links::refused(&e) => {
                self.ctx.links_refused.fetch_add(1, Relaxed);
                let mut o = self.create(task, slot)?;
                let mut src = from
                    .open_read(from_name, false)
                    .map_err(|e| classify("cannot open", to, e))?;
                let written = io::copy(&mut src, &mut o.file)
                    .map_err(|e| classify("cannot write", &o.path, e))?;
                let stamp = self.finish(task, o)?;
                return Ok(Finished {
                    hash: copy.hash.clone(),
                    stamp,
                    written,
                });
            }
            Err(e) => return Err(classify("cannot link", &task.dest, e)),
        }
        let same = match (dir.stat(&tmp), dir.stat(&name)) {
            (Ok(a), Ok(b)) => (a.dev, a.ino) == (b.dev, b.ino),
            _ => false,
        };
        let placed = if same {
            dir.unlink(&tmp)
        } else {
            dir.rename(&tmp, &name)
        };
        if let Err(e) = placed {
            let _ = dir.unlink(&tmp);
            return Err(classify("cannot rename into", &task.dest, e));
        }
        let md = dir
            .stat(&name)
            .map_err(|e| classify("cannot stat", &task.dest, e))?;
        // A name, no bytes: nothing written.
        Ok(Finished {
            hash: copy.hash.clone(),
            stamp: stamp_of(EntryKind::File, &md),
            written: 0,
        })
    }

    /// A symlink: its target, read and written, counts as written.
    pub(super) fn symlink(&mut self, task: &FileTask, target: &Path) -> Result<Finished, Fault> {
        let _slot = self.slot()?;
        let (dir, name) = self.parent_dir(&task.dest)?;
        let tmp_name = OsString::from(temp_name(task.id));
        let tmp = task.dest.with_file_name(&tmp_name);
        let _ = dir.unlink(&tmp_name);
        match dir.symlink(target, &tmp_name) {
            // Not root, a folder that arrived read-only like its source.
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied
                    && self.ctx.modes.open_dir_for_owner(&dir) =>
            {
                dir.symlink(target, &tmp_name)
            }
            r => r,
        }
        .map_err(|e| classify("cannot create symlink", &tmp, e))?;
        // A symlink has no bits of its own to give; only its owners (the
        // link itself: `fchownat` with `AT_SYMLINK_NOFOLLOW`).
        if self.ctx.modes.owners {
            let _ = self
                .ctx
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
            Ok(md) => Ok(Finished {
                hash: None,
                stamp: stamp_of(EntryKind::Symlink, &md),
                written: task.size,
            }),
            Err(f) => {
                let _ = dir.unlink(&tmp_name);
                Err(f)
            }
        }
    }

    /// The copy at the destination is the source's content (`Msg::Settle`):
    /// its owners, bits and attributes are given in place, no byte written.
    /// The copy must still show `after_copy`, or it is copied next run.
    pub(super) fn settle(
        &mut self,
        task: &FileTask,
        hash: String,
        after_copy: (u64, i128),
    ) -> Result<Finished, Fault> {
        let (dir, name) = self.parent_dir(&task.dest)?;
        let file = dir
            .open_read(&name, false)
            .map_err(|e| classify("cannot open", &task.dest, e))?;
        let md = file
            .metadata()
            .map_err(|e| classify("cannot stat", &task.dest, e))?;
        let found = (md.len(), crate::beneath::ns(md.mtime(), md.mtime_nsec()));
        if !md.is_file() || found != after_copy {
            return Err(Fault::File(format!(
                "the copy `{}` changed since it was made; copied again next run",
                task.dest.display()
            )));
        }
        self.settle_file(task, &file);
        drop(file);
        let md = dir
            .stat(&name)
            .map_err(|e| classify("cannot stat", &task.dest, e))?;
        Ok(Finished {
            hash: Some(hash),
            stamp: stamp_of(EntryKind::File, &md),
            written: 0,
        })
    }
}
