//! Opening a source file for reading, and the read-ahead advice on it.

use crate::beneath::{Dir, Turn};
use crate::decide::EntryKind;
use std::ffi::OsStr;
use std::fs::File;
use std::io;

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
///
/// Waits while another reader of this process holds the same inode open
/// (an SMB share refuses the second name: [`crate::beneath::Turn`]); the
/// returned [`Turn`] must outlive the file: bind it first
/// (`let (_turn, f) = …`), as bindings drop in reverse order. `Ok(None)` when
/// `stopping()` turned true while waiting: nothing was opened.
pub fn open_source(
    dir: &Dir,
    name: &OsStr,
    stopping: &dyn Fn() -> bool,
) -> io::Result<Option<(Turn, File)>> {
    let regular = |md: &crate::beneath::Meta| {
        if md.kind == Some(EntryKind::File) {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "source is no longer a regular file (now a {}); not opened",
                kind_name(md.mode)
            ),
        ))
    };
    dir.open_read_in_turn(name, regular, stopping)
}

/// The failure text of a source file that could not be opened: jobrun's own
/// refusals (no OS error) as they are, the kernel's with the operation and
/// its errno, and `EINVAL` with the one cause seen for it.
pub(super) fn open_failure(e: &io::Error) -> String {
    match e.raw_os_error() {
        None if e.kind() == io::ErrorKind::InvalidInput => e.to_string(),
        Some(libc::ELOOP) => "source is no longer a regular file (now a symlink)".into(),
        Some(libc::EINVAL) => format!(
            "cannot open source: {e} (an SMB share refuses this while another \
             name of the same hard-linked file is open on this machine)"
        ),
        _ => format!("cannot open source: {e}"),
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::beneath::turn::tests::linked;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn a_source_that_is_no_longer_a_file_is_refused_unopened() {
        let (t, dir) = linked();
        std::fs::create_dir(t.path().join("d")).unwrap();
        let e = open_source(&dir, os("d"), &|| false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "source is no longer a regular file (now a folder); not opened"
        );
        let (_turn, mut f) = open_source(&dir, os("a"), &|| false).unwrap().unwrap();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "linked");
    }

    #[test]
    fn an_open_failure_names_the_operation_and_the_errno() {
        let einval = io::Error::from_raw_os_error(libc::EINVAL);
        assert_eq!(
            open_failure(&einval),
            "cannot open source: Invalid argument (os error 22) (an SMB share refuses \
             this while another name of the same hard-linked file is open on this machine)"
        );
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(
            open_failure(&eacces),
            "cannot open source: Permission denied (os error 13)"
        );
        let eloop = io::Error::from_raw_os_error(libc::ELOOP);
        assert_eq!(
            open_failure(&eloop),
            "source is no longer a regular file (now a symlink)"
        );
        let own = io::Error::new(
            io::ErrorKind::InvalidInput,
            "source is no longer a regular file (now a FIFO); not opened",
        );
        assert_eq!(open_failure(&own), own.to_string());
    }
}
