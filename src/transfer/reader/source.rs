//! Opening a source file for reading, and the read-ahead advice on it.

use std::ffi::OsStr;
use std::fs::File;
use std::io;

use crate::beneath::Dir;
use crate::decide::EntryKind;

/// The kernel read-ahead advice on the open source file. Under a limit the
/// kernel must not read ahead: a network client fetches its read-ahead
/// window at link rate (up to several MiB on CIFS), which is a burst on the
/// wire whatever pace the reader keeps (SPEC §6). `POSIX_FADV_RANDOM` turns
/// it off for this file, so the wire carries only the throttled slices; the
/// throughput lost is nothing next to a limit below the link rate, and the
/// lanes overlap the round trips. Unlimited reads keep the kernel's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadAhead {
    Default,
    Off,
}

impl ReadAhead {
    /// Advises the kernel when the limit was switched on or off (a
    /// timetable boundary can fall in the middle of a file).
    pub(super) fn follow(&mut self, f: &File, limited: bool) {
        let want = if limited {
            ReadAhead::Off
        } else {
            ReadAhead::Default
        };
        if *self == want {
            return;
        }
        let advice = match want {
            ReadAhead::Off => rustix::fs::Advice::Random,
            ReadAhead::Default => rustix::fs::Advice::Normal,
        };
        // Advice only: a filesystem that ignores it changes nothing else.
        let _ = rustix::fs::fadvise(f, 0, None, advice);
        *self = want;
    }
}

/// Opens the source file `name` in `dir` for reading, never anything else:
/// an entry that is no longer a regular file (replaced by a FIFO, device or
/// symlink since the scan) is refused with `InvalidInput` before it is
/// opened, and the open itself uses `O_NOFOLLOW | O_NONBLOCK` so that losing
/// that race cannot follow a symlink or block on a FIFO.
///
/// Uses `O_NOATIME` where permitted (owner or CAP_FOWNER), so the migration
/// does not rewrite atimes all over the source share; falls back silently
/// where the flag is refused (EPERM) or unsupported.
pub fn open_source(dir: &Dir, name: &OsStr) -> io::Result<File> {
    let md = dir.stat(name)?;
    if md.kind != Some(EntryKind::File) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "source is no longer a regular file (now a {}); not opened",
                kind_name(md.mode)
            ),
        ));
    }
    match dir.open_read(name, true) {
        Ok(f) => Ok(f),
        Err(e)
            if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            dir.open_read(name, false)
        }
        Err(e) => Err(e),
    }
}

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "folder",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "socket",
        _ => "device",
    }
}
