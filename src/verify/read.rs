//! Opening and reading files for `jobrun verify`: below a held root through
//! no symlink, never blocking on a FIFO, `O_NOATIME` where permitted, under
//! the job's `bwlimit`, and giving up at a stop request.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::Outcome;
use crate::beneath::{Root, Turn};
use crate::checksum::HashAlgo;
use crate::progress::Lane;
use crate::throttle::Throttle;

/// Opens a destination file for reading without following a symlink in
/// its last component (`O_NOFOLLOW`) and without blocking on a FIFO
/// (`O_NONBLOCK`): the fallback of [`open_below`] when the destination
/// root cannot be held.
pub fn open_dest(path: &Path) -> io::Result<File> {
    let open = |extra: libc::c_int| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | extra)
            .open(path)
    };
    // O_NOATIME where permitted: a verify should not rewrite every atime.
    match open(libc::O_NOATIME) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => open(0),
        other => other,
    }
}

pub(super) fn not_a_file(md: &Metadata) -> &'static str {
    let ft = md.file_type();
    if ft.is_dir() {
        "a folder is in its place"
    } else if ft.is_fifo() {
        "a FIFO is in its place"
    } else if ft.is_socket() {
        "a socket is in its place"
    } else {
        "a device is in its place"
    }
}

/// Opens a file below the held root through no symlink on the way
/// (`beneath`), `O_NOATIME` where permitted; without a held root, by path
/// ([`open_dest`]). In its inode's turn ([`Turn`]: an SMB share refuses a
/// second name of a file open under another); `Ok(None)` when a stop was
/// requested while waiting. Bind the turn before the file.
pub(super) fn open_below(
    root: Option<&Root>,
    path: &Path,
    stop: &AtomicBool,
) -> io::Result<Option<(Turn, File)>> {
    let stopping = || stop.load(Relaxed);
    let Some(root) = root else {
        let md = std::fs::symlink_metadata(path)?;
        let Some(turn) = Turn::take((md.dev(), md.ino()), &stopping) else {
            return Ok(None);
        };
        return open_dest(path).map(|f| Some((turn, f)));
    };
    let (dir, name) = root.split(path)?;
    root.dir(dir)?
        .open_read_in_turn(name, |_| Ok(()), &stopping)
}

/// Opens the destination file of a row and checks it is a regular file of
/// `size` bytes; otherwise the outcome that says what is there (`Stopped`
/// when a stop came while waiting for its inode's turn).
pub(super) fn open_dest_file(
    root: Option<&Root>,
    dest: &Path,
    size: u64,
    stop: &AtomicBool,
) -> Result<(Turn, File), Outcome> {
    let failed = |e: io::Error| Outcome::Failed {
        error: format!("cannot read `{}`: {e}", dest.display()),
    };
    let (turn, f) = match open_below(root, dest, stop) {
        Ok(Some(open)) => open,
        Ok(None) => return Err(Outcome::Stopped),
        Err(e) if crate::beneath::is_symlink_in_path(&e) => {
            return Err(Outcome::Missing {
                reason: Some("a symlink is on the way to it; not followed".into()),
            });
        }
        Err(e) => {
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENOTDIR) => Outcome::Missing { reason: None },
                Some(libc::ELOOP) => Outcome::Missing {
                    reason: Some("a symlink is in its place; not followed".into()),
                },
                _ => failed(e),
            });
        }
    };
    let md = f.metadata().map_err(failed)?;
    if !md.file_type().is_file() {
        return Err(Outcome::Missing {
            reason: Some(not_a_file(&md).into()),
        });
    }
    if md.len() != size {
        return Err(Outcome::Mismatch {
            found_size: Some(md.len()),
            found: None,
            differs_at: None,
        });
    }
    Ok((turn, f))
}

/// Reads of one file under the job's limit: read-ahead off while limited,
/// at most one slice per read, nothing once a stop is requested.
pub(super) struct Paced<'a> {
    pub throttle: &'a Throttle,
    pub stop: &'a AtomicBool,
    advised: bool,
}

impl<'a> Paced<'a> {
    pub fn new(throttle: &'a Throttle, stop: &'a AtomicBool) -> Self {
        Self {
            throttle,
            stop,
            advised: false,
        }
    }

    /// Before the first read of a new file (its read-ahead not yet set).
    pub fn new_file(&mut self) {
        self.advised = false;
    }

    /// Bytes the next read of `files` may take (at most `len`); `None` at a
    /// stop. Blocks for the limit (a pause included, until the stop cancels
    /// it). The kernel's read-ahead on `files` follows the limit.
    pub fn next(&mut self, files: &[&File], len: usize) -> Option<usize> {
        let limited = self.throttle.is_limited();
        if limited != self.advised && !files.is_empty() {
            // Under a limit the kernel must not read ahead at link rate
            // (the transfer reader does the same, docs/bandwidth.md).
            let advice = if limited {
                rustix::fs::Advice::Random
            } else {
                rustix::fs::Advice::Normal
            };
            for f in files {
                // Advice only: a filesystem that ignores it changes nothing else.
                let _ = rustix::fs::fadvise(f, 0, None, advice);
            }
            self.advised = limited;
        }
        let want = if limited {
            len.min(self.throttle.slice_len())
        } else {
            len
        };
        if self.stop.load(Relaxed) {
            return None;
        }
        self.throttle.consume(want);
        // Woken from a pause by the stop: nothing more is read.
        (!self.stop.load(Relaxed)).then_some(want)
    }

    /// Lets exactly `n` more bytes pass (slice by slice); `false` at a stop.
    pub fn take(&mut self, mut n: usize) -> bool {
        while n > 0 {
            let Some(k) = self.next(&[], n) else {
                return false;
            };
            n -= k;
        }
        true
    }
}

/// Reads until `buf` is full or the end of the file.
pub(super) fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads and hashes one destination file with the recorded `algo` and
/// compares it with the recorded `size` and `hash`. Returns the outcome
/// and the bytes read.
pub(super) fn check_hashed(
    root: Option<&Root>,
    dest: &Path,
    (size, hash, algo): (u64, &str, HashAlgo),
    buf: &mut [u8],
    paced: &mut Paced<'_>,
    progress: &Lane,
) -> (Outcome, u64) {
    // `_turn` keeps other lanes off this inode until `f` is closed.
    let (_turn, mut f) = match open_dest_file(root, dest, size, paced.stop) {
        Ok(open) => open,
        Err(o) => return (o, 0),
    };
    let shown = root.and_then(|r| dest.strip_prefix(r.path()).ok());
    progress.file_started(shown.unwrap_or(dest), size);
    paced.new_file();
    let mut hasher = algo.hasher();
    let mut total = 0u64;
    loop {
        let Some(want) = paced.next(&[&f], buf.len()) else {
            return (Outcome::Stopped, total);
        };
        let n = match read_full(&mut f, &mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let error = format!("cannot read `{}`: {e}", dest.display());
                return (Outcome::Failed { error }, total);
            }
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        progress.bytes_written(n as u64);
    }
    let found = hasher.finish_hex();
    let outcome = if total == size && found == hash {
        Outcome::Verified { source_hash: None }
    } else {
        Outcome::Mismatch {
            found_size: (total != size).then_some(total),
            found: Some(found),
            differs_at: None,
        }
    };
    (outcome, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination folder with `a` and its hard link `b` (as a copy of a
    /// hard-link group arrives), held as a root.
    fn linked() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), "linked").unwrap();
        std::fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
        let root = Root::open(t.path()).unwrap();
        (t, root)
    }

    /// Two lanes of `verify` never hold one inode open under two names
    /// (an SMB share refuses the second with `EINVAL`): the second waits
    /// its turn, with or without a held root; a stop ends the wait.
    #[test]
    fn two_names_of_one_destination_inode_are_read_in_turn() {
        let (t, root) = linked();
        let (go, stop) = (AtomicBool::new(false), AtomicBool::new(true));
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for root in [Some(&root), None] {
            let first = open_dest_file(root, &a, 6, &go).unwrap();
            let waited = open_dest_file(root, &b, 6, &stop).map(|_| ());
            assert!(matches!(waited, Err(Outcome::Stopped)), "{waited:?}");
            drop(first);
            let (_turn, mut f) = open_dest_file(root, &b, 6, &stop).unwrap();
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            assert_eq!(text, "linked");
        }
    }
}
