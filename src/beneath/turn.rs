//! Taking turns on an inode: the one open of a file for reading that every
//! reader of this process uses (the transfer's lanes, `verify`'s lanes),
//! so that no two of them hold one inode open under two names at once.
//!
//! Why: an SMB share refuses to open a file under one name while this
//! client holds it open under another: `EINVAL` (measured on kernlab,
//! Linux 6.1 cifs and Samba 4.17; the client keeps one lease key per inode,
//! and a server refuses a lease key in use for another file name,
//! `STATUS_INVALID_PARAMETER`). Two lanes reading two names of one
//! hard-linked file at once (two source names the transfer could not
//! group, two destination names `verify` checks) would fail one of them;
//! a lane waits for the other to close the inode instead. Process-wide, as
//! the lease key is. No deadlock: a reader waits holding no turn, or (an
//! adopted file in `verify`) one turn on the other tree's filesystem.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::{Dir, Meta};

/// The inodes (device, inode) some reader of this process holds open.
static HELD: (Mutex<Vec<(u64, u64)>>, Condvar) = (Mutex::new(Vec::new()), Condvar::new());

/// One inode's turn, held by a reader while its file is open; given back
/// when dropped. Bind it before the file (`let (_turn, f) = …`): bindings
/// drop in reverse order, so the file closes first.
#[derive(Debug)]
pub struct Turn((u64, u64));

impl Turn {
    /// Waits until no other reader holds `key`, then holds it. `None` when
    /// `stopping()` turned true while waiting (looked at every 100 ms).
    pub fn take(key: (u64, u64), stopping: &dyn Fn() -> bool) -> Option<Turn> {
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
        Some(Turn(key))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (lock, cv) = &HELD;
        let mut held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = held.iter().position(|k| *k == self.0) {
            held.swap_remove(i);
        }
        cv.notify_all();
    }
}

impl Dir {
    /// Opens `name` for reading in its inode's turn: `lstat`, `check` of
    /// what it is (an error refuses it, nothing opened), wait while another
    /// reader holds that inode ([`Turn`]), then open it (`O_NOFOLLOW |
    /// O_NONBLOCK`, `O_NOATIME` where permitted: refused with `EPERM`, or
    /// `EINVAL` where unsupported, it opens without). `Ok(None)` when
    /// `stopping()` turned true while waiting: nothing was opened.
    pub fn open_read_in_turn(
        &self,
        name: &OsStr,
        check: impl FnOnce(&Meta) -> io::Result<()>,
        stopping: &dyn Fn() -> bool,
    ) -> io::Result<Option<(Turn, File)>> {
        let md = self.stat(name)?;
        check(&md)?;
        let Some(turn) = Turn::take((md.dev, md.ino), stopping) else {
            return Ok(None);
        };
        let f = match self.open_read(name, true) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => {
                self.open_read(name, false)?
            }
            r => r?,
        };
        Ok(Some((turn, f)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Read;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    use super::*;
    use crate::beneath::Root;

    /// A folder with `a`, its hard link `b`, and another file `c`.
    pub(crate) fn linked() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), "linked").unwrap();
        std::fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
        std::fs::write(t.path().join("c"), "other").unwrap();
        let dir = Root::open(t.path()).unwrap().dir(Path::new("")).unwrap();
        (t, dir)
    }

    fn open(dir: &Dir, name: &str, stopping: &dyn Fn() -> bool) -> Option<(Turn, File)> {
        dir.open_read_in_turn(OsStr::new(name), |_| Ok(()), stopping)
            .unwrap()
    }

    #[test]
    fn a_second_name_of_an_open_inode_waits_for_the_first_to_close() {
        let (_t, dir) = linked();
        let first = open(&dir, "a", &|| false).unwrap();
        // Another inode opens at once; the same inode under its other name
        // does not while `a` is open (a stop ends the wait, nothing opened).
        assert!(open(&dir, "c", &|| true).is_some());
        assert!(open(&dir, "b", &|| true).is_none());
        let closed = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let (_turn, mut f) = open(&dir, "b", &|| false).unwrap();
                let mut text = String::new();
                f.read_to_string(&mut text).unwrap();
                (closed.load(SeqCst), text)
            });
            std::thread::sleep(Duration::from_millis(300));
            closed.store(true, SeqCst);
            drop(first);
            assert_eq!(waiter.join().unwrap(), (true, "linked".to_string()));
        });
        // Given back: opens at once.
        assert!(open(&dir, "a", &|| true).is_some());
    }

    #[test]
    fn a_refused_entry_is_neither_waited_for_nor_opened() {
        let (_t, dir) = linked();
        let _first = open(&dir, "a", &|| false).unwrap();
        let refuse = |_: &Meta| Err(io::Error::new(io::ErrorKind::InvalidInput, "not a file"));
        // Refused before the turn: no wait although `a` holds the inode.
        let e = dir
            .open_read_in_turn(OsStr::new("b"), refuse, &|| false)
            .unwrap_err();
        assert_eq!(e.to_string(), "not a file");
        let missing = dir.open_read_in_turn(OsStr::new("zz"), |_| Ok(()), &|| false);
        assert_eq!(missing.unwrap_err().raw_os_error(), Some(libc::ENOENT));
    }
}
