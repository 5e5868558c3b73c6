//! A folder held open below a root ([`Dir`]): entries used by name from its
//! descriptor, never followed; and one lane's cache of its last folder.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timestamps, Uid};
use rustix::io::Errno;

use super::{Meta, MkDir, Root, symlink_in_path};
use crate::decide::EntryKind;

/// A folder below (or at) a root, reached without following any symlink.
/// Entries are used by name, never followed when they are symlinks.
#[derive(Debug)]
pub struct Dir {
    pub(super) fd: OwnedFd,
}

/// A single entry name: no `/`, not `.` or `..`, not empty.
pub(super) fn name_ok(name: &OsStr) -> io::Result<&OsStr> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is not a single name", name.display()),
        ));
    }
    Ok(name)
}

pub(super) fn set_times_at(
    at: BorrowedFd<'_>,
    name: &OsStr,
    accessed_ns: i128,
    modified_ns: i128,
) -> io::Result<()> {
    // Seconds past what `time_t` holds (only a corrupt row has them) are
    // refused, never wrapped.
    let ts = |ns: i128| -> io::Result<rustix::fs::Timespec> {
        Ok(rustix::fs::Timespec {
            tv_sec: i64::try_from(ns.div_euclid(1_000_000_000))
                .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?,
            tv_nsec: ns.rem_euclid(1_000_000_000) as _,
        })
    };
    let times = Timestamps {
        last_access: ts(accessed_ns)?,
        last_modification: ts(modified_ns)?,
    };
    Ok(rustix::fs::utimensat(
        at,
        name,
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

impl Dir {
    /// This folder opened for reading (its held descriptor is `O_PATH`,
    /// which the `f*xattr` calls refuse): from the descriptor itself (`.`),
    /// no path looked up again.
    pub fn open_self(&self) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// The sub-folder `name`, not followed if it is a symlink.
    pub fn sub(&self, name: &OsStr) -> io::Result<Dir> {
        let r = rustix::fs::openat(
            &self.fd,
            name_ok(name)?,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        match r {
            Ok(fd) => Ok(Dir { fd }),
            Err(Errno::LOOP) => Err(symlink_in_path()),
            Err(Errno::NOTDIR) if self.stat(name)?.kind == Some(EntryKind::Symlink) => {
                Err(symlink_in_path())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Lists this folder: std's `ReadDir`, whose entries are stat'ed by name
    /// from the listing's own descriptor. Opened through `/proc/self/fd`,
    /// which reopens the folder held, with no path walk; only where `/proc`
    /// is not mounted is `path` (this folder's path) listed instead, as
    /// before this module.
    pub fn read_dir(&self, path: &Path) -> io::Result<std::fs::ReadDir> {
        let held = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        match std::fs::read_dir(&held) {
            Err(e)
                if e.kind() == io::ErrorKind::NotFound && !Path::new("/proc/self/fd").is_dir() =>
            {
                std::fs::read_dir(path)
            }
            r => r,
        }
    }

    /// Opens the file `name` for reading: `O_NOFOLLOW` (a symlink fails with
    /// `ELOOP`), `O_NONBLOCK` (a FIFO put there does not block), and
    /// `O_NOATIME` when `noatime` (refused with `EPERM` unless owner or
    /// CAP_FOWNER: the caller retries without).
    pub fn open_read(&self, name: &OsStr, noatime: bool) -> io::Result<File> {
        let mut flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        if noatime {
            flags |= OFlags::NOATIME;
        }
        let fd = rustix::fs::openat(&self.fd, name_ok(name)?, flags, Mode::empty())?;
        Ok(File::from(fd))
    }

    /// Creates `name` for writing; it must not exist (`O_EXCL`, which never
    /// follows a symlink either).
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        self.create(name, OFlags::EXCL, mode)
    }

    /// Opens `name` for writing, created if missing, truncated; a symlink
    /// there fails with `ELOOP` instead of being written through.
    pub fn create_truncate(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        self.create(name, OFlags::TRUNC, mode)
    }

    fn create(&self, name: &OsStr, how: OFlags, mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | how;
        let fd = rustix::fs::openat(
            &self.fd,
            name_ok(name)?,
            flags,
            Mode::from_bits_truncate(mode),
        )?;
        Ok(File::from(fd))
    }

    /// `lstat` of `name`.
    pub fn stat(&self, name: &OsStr) -> io::Result<Meta> {
        let st = rustix::fs::statat(&self.fd, name_ok(name)?, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(Meta::from_stat(&st))
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        let t = rustix::fs::readlinkat(&self.fd, name_ok(name)?, Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }

    /// Creates the symlink `name` pointing at `target` (never resolved).
    pub fn symlink(&self, target: &Path, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(target, &self.fd, name_ok(name)?)?)
    }

    /// Creates the folder `name` with `mode` (masked by the umask).
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(
            &self.fd,
            name_ok(name)?,
            Mode::from_bits_truncate(mode),
        )?)
    }

    /// Renames `from` over `to`, both in this folder.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::renameat(
            &self.fd,
            name_ok(from)?,
            &self.fd,
            name_ok(to)?,
        )?)
    }

    /// Makes `name` here a hard link to `from_name` in `from` (never
    /// following a symlink there).
    pub fn link_from(&self, from: &Dir, from_name: &OsStr, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &from.fd,
            name_ok(from_name)?,
            &self.fd,
            name_ok(name)?,
            AtFlags::empty(),
        )?)
    }

    /// Removes the non-folder `name` (a symlink itself, never its target).
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &self.fd,
            name_ok(name)?,
            AtFlags::empty(),
        )?)
    }

    /// Removes the empty folder `name`.
    pub fn rmdir(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &self.fd,
            name_ok(name)?,
            AtFlags::REMOVEDIR,
        )?)
    }

    /// Sets the times (ns since the epoch) of `name` itself.
    pub fn set_times(&self, name: &OsStr, accessed_ns: i128, modified_ns: i128) -> io::Result<()> {
        set_times_at(self.fd.as_fd(), name_ok(name)?, accessed_ns, modified_ns)
    }

    /// `fstat` of this folder itself.
    pub fn meta(&self) -> io::Result<Meta> {
        Ok(Meta::from_stat(&rustix::fs::fstat(&self.fd)?))
    }

    /// Gives `name` itself (a symlink, never its target) `uid` and `gid`
    /// (`fchownat` with `AT_SYMLINK_NOFOLLOW`).
    pub fn chown(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        Ok(rustix::fs::chownat(
            &self.fd,
            name_ok(name)?,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Gives this folder itself `uid` and `gid` (`AT_EMPTY_PATH`: no name
    /// is resolved).
    pub fn chown_self(&self, uid: u32, gid: u32) -> io::Result<()> {
        Ok(rustix::fs::chownat(
            &self.fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH,
        )?)
    }

    /// Sets the permission bits of `name` itself, never of what a symlink
    /// there points to: the entry is opened `O_PATH | O_NOFOLLOW` and the
    /// bits set on that very inode; a symlink fails with `EOPNOTSUPP`
    /// (Linux has no bits for symlinks), as `fchmodat(AT_SYMLINK_NOFOLLOW)`
    /// does.
    pub fn chmod(&self, name: &OsStr, bits: u32) -> io::Result<()> {
        let fd = rustix::fs::openat(
            &self.fd,
            name_ok(name)?,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode as _) == FileType::Symlink {
            return Err(Errno::OPNOTSUPP.into());
        }
        chmod_held(fd.as_fd(), bits)
    }

    /// Sets the permission bits of this folder itself.
    pub fn chmod_self(&self, bits: u32) -> io::Result<()> {
        chmod_held(self.fd.as_fd(), bits)
    }
}

/// `chmod` of the inode an `O_PATH` descriptor holds (`fchmod` refuses
/// those with `EBADF`): through its `/proc/self/fd` link, which leads to
/// that inode, not through any path (what glibc's `fchmodat` does for
/// `AT_SYMLINK_NOFOLLOW`). Without `/proc`, a folder is opened for reading
/// from the descriptor itself (`.`) and `fchmod`ed.
pub(super) fn chmod_held(fd: BorrowedFd<'_>, bits: u32) -> io::Result<()> {
    let mode = Mode::from_bits_truncate(bits);
    let held = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match rustix::fs::chmod(held.as_str(), mode) {
        Err(Errno::NOENT) if !Path::new("/proc/self/fd").is_dir() => {
            let dir = rustix::fs::openat(
                fd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            Ok(rustix::fs::fchmod(&dir, mode)?)
        }
        r => Ok(r?),
    }
}

/// How long a lane may keep using a folder it opened (see [`DirCache`]).
pub const DIR_TTL: Duration = Duration::from_secs(2);

/// One lane's last folder, kept open for consecutive files in it: on a
/// share, resolving the chain again for every file is a round trip or more.
/// A held descriptor never leads through a symlink, whatever happens to the
/// path; it is dropped after [`DIR_TTL`] so that a folder *moved* away (not
/// swapped) is not written to or read from at its new place for longer than
/// that.
#[derive(Debug, Default)]
pub struct DirCache {
    last: Option<(PathBuf, Arc<Dir>, Instant)>,
}

impl DirCache {
    /// The folder `rel` below `root`, from the cache when fresh.
    pub fn dir(&mut self, root: &Root, rel: &Path) -> io::Result<Arc<Dir>> {
        self.get(root, rel, None)
    }

    /// Like [`DirCache::dir`], creating missing folders with `mode`.
    pub fn create_dirs(&mut self, root: &Root, rel: &Path, mode: u32) -> io::Result<Arc<Dir>> {
        self.get(root, rel, Some(&mut |dir, name, _| dir.mkdir(name, mode)))
    }

    /// Like [`DirCache::dir`], creating missing folders with `mkdir` (see
    /// [`Root::create_dirs_with`]).
    pub fn create_dirs_with(
        &mut self,
        root: &Root,
        rel: &Path,
        mkdir: &mut MkDir<'_>,
    ) -> io::Result<Arc<Dir>> {
        self.get(root, rel, Some(mkdir))
    }

    fn get(
        &mut self,
        root: &Root,
        rel: &Path,
        create: Option<&mut MkDir<'_>>,
    ) -> io::Result<Arc<Dir>> {
        if let Some((p, dir, at)) = &self.last
            && p == rel
            && at.elapsed() < DIR_TTL
        {
            return Ok(dir.clone());
        }
        self.last = None;
        let dir = Arc::new(match create {
            Some(mkdir) => root.create_dirs_with(rel, mkdir)?,
            None => root.dir(rel)?,
        });
        self.last = Some((rel.to_path_buf(), dir.clone(), Instant::now()));
        Ok(dir)
    }

    /// Forgets the folder (after an error in it, say).
    pub fn clear(&mut self) {
        self.last = None;
    }
}
