//! Opening a source file for reading, and the read-ahead advice on it.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

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

/// Source inodes (device, inode) that a reader of this process holds open.
/// An SMB share refuses to open a file under one name while this client
/// holds it open under another: `EINVAL` (measured on kernlab, Linux 6.1
/// cifs and Samba 4.17; the client keeps one lease key per inode, and a
/// server refuses a lease key in use for another file name,
/// `STATUS_INVALID_PARAMETER`). Two lanes reading two names of one
/// hard-linked file at once would fail one of them. The client reports a link count of 1 there,
/// so such names are not grouped and each is read; a lane waits for the
/// other to close the inode instead. Process-wide, as the lease key is.
static HELD: (Mutex<Vec<(u64, u64)>>, Condvar) = (Mutex::new(Vec::new()), Condvar::new());

/// One inode held open by a reader; released when dropped.
#[derive(Debug)]
pub struct Held((u64, u64));

impl Held {
    /// Waits until no other reader holds `key` open, then holds it. `None`
    /// when `stopping()` turned true while waiting (looked at every 100 ms).
    fn take(key: (u64, u64), stopping: &dyn Fn() -> bool) -> Option<Held> {
        let (lock, cv) = &HELD;
        let mut held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if held.contains(&key) {
            tracing::debug!(
                dev = key.0,
                ino = key.1,
                "another lane holds this inode open; waiting"
            );
        }
        while held.contains(&key) {
            if stopping() {
                return None;
            }
            held = cv
                .wait_timeout(held, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        held.push(key);
        Some(Held(key))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let (lock, cv) = &HELD;
        let mut held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = held.iter().position(|k| *k == self.0) {
            held.swap_remove(i);
        }
        cv.notify_all();
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
/// Waits while another reader holds the same inode open ([`HELD`]); the
/// returned [`Held`] must outlive the file: bind it first
/// (`let (_held, f) = …`), as bindings drop in reverse order. `Ok(None)` when
/// `stopping()` turned true while waiting: nothing was opened.
pub fn open_source(
    dir: &Dir,
    name: &OsStr,
    stopping: &dyn Fn() -> bool,
) -> io::Result<Option<(Held, File)>> {
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
    let Some(held) = Held::take((md.dev, md.ino), stopping) else {
        return Ok(None);
    };
    let f = match dir.open_read(name, true) {
        Ok(f) => f,
        Err(e)
            if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            dir.open_read(name, false)?
        }
        Err(e) => return Err(e),
    };
    Ok(Some((held, f)))
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
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::time::Duration;

    use super::*;
    use crate::beneath::Root;

    /// A folder with `a`, its hard link `b`, and another file `c`.
    fn linked() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), "linked").unwrap();
        std::fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
        std::fs::write(t.path().join("c"), "other").unwrap();
        let dir = Root::open(t.path()).unwrap().dir(Path::new("")).unwrap();
        (t, dir)
    }

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn a_second_name_of_an_open_inode_waits_for_the_first_to_close() {
        let (_t, dir) = linked();
        let first = open_source(&dir, os("a"), &|| false).unwrap().unwrap();
        // Another inode opens at once; the same inode under its other name
        // does not while `a` is open (a stop ends the wait, nothing opened).
        assert!(open_source(&dir, os("c"), &|| true).unwrap().is_some());
        assert!(open_source(&dir, os("b"), &|| true).unwrap().is_none());
        let closed = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let (_held, mut f) = open_source(&dir, os("b"), &|| false).unwrap().unwrap();
                let mut text = String::new();
                f.read_to_string(&mut text).unwrap();
                (closed.load(SeqCst), text)
            });
            std::thread::sleep(Duration::from_millis(300));
            closed.store(true, SeqCst);
            drop(first);
            assert_eq!(waiter.join().unwrap(), (true, "linked".to_string()));
        });
        // Released again: opens at once.
        assert!(open_source(&dir, os("a"), &|| true).unwrap().is_some());
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
