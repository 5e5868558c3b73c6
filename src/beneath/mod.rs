//! Filesystem access confined beneath a root folder, never through a symlink.
//!
//! jobrun runs as root over trees whose users keep changing them. Checking a
//! path for symlinks and then using it leaves a window in which a folder on
//! the way can be swapped for a symlink to `/etc`, and the open, create,
//! rename, utimes or delete that follows would act outside the tree (the
//! family of rsync's 2024–25 CVEs). Here every path below a root is
//! resolved from the root's directory descriptor, one way or the other:
//!
//! - `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (Linux 5.6+, any
//!   filesystem, NFS and CIFS included): one syscall for the whole folder
//!   chain, refused by the kernel if any component is a symlink;
//! - else (`ENOSYS`/`EINVAL`, seen once per process) one
//!   `openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)` per component from the held
//!   parent descriptor.
//!
//! The last component is then used by name from the folder's descriptor with
//! `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW` (`*at` calls), so the descriptor, not
//! the path, says where an entry is: a folder swapped after it was opened
//! changes nothing, and a folder swapped before it fails that one entry with
//! [`SymlinkInPath`] ("symlink in path; not followed").
//!
//! The root itself is opened once, following its path (the job's roots are
//! real folders the operator chose). This module is the only one that
//! imports rustix; it knows nothing of stages, the DB or the log.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::roots::RootId;

mod created;
mod dir;
mod meta;
pub(crate) mod turn;

use dir::set_times_at;
pub use dir::{DIR_TTL, Dir, DirCache};
pub use meta::{Meta, ns, system_ns};
pub use turn::Turn;

/// The error of an entry whose path goes through a symlink below its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymlinkInPath;

impl std::fmt::Display for SymlinkInPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("symlink in path; not followed")
    }
}

impl std::error::Error for SymlinkInPath {}

/// Whether `e` is [`SymlinkInPath`].
pub fn is_symlink_in_path(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<SymlinkInPath>())
}

fn symlink_in_path() -> io::Error {
    io::Error::other(SymlinkInPath)
}

/// Whether `openat2` works here: unknown, yes, no (once per process).
static OPENAT2: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

fn openat2_state() -> u8 {
    #[cfg(test)]
    if tests::FORCE_WALK.get() {
        return NO;
    }
    let s = OPENAT2.load(Relaxed);
    if s != UNKNOWN {
        return s;
    }
    // Test hook (debug builds only): exercise the per-component fallback on
    // a kernel that has openat2.
    #[cfg(debug_assertions)]
    if std::env::var_os("JOBRUN_TEST_NO_OPENAT2").is_some() {
        OPENAT2.store(NO, Relaxed);
        return NO;
    }
    let probe = rustix::fs::openat2(
        CWD,
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    );
    let s = match probe {
        Ok(_) => YES,
        // ENOSYS: kernel before 5.6; EINVAL/E2BIG/EPERM: a seccomp filter or
        // a kernel that does not know the arguments. Anything else (an
        // unreadable working folder) still proves the syscall exists.
        Err(Errno::NOSYS | Errno::INVAL | Errno::TOOBIG | Errno::PERM) => NO,
        Err(_) => YES,
    };
    OPENAT2.store(s, Relaxed);
    s
}

/// Whether this process resolves paths with `openat2` (else per component).
pub fn uses_openat2() -> bool {
    openat2_state() == YES
}

/// A root folder, held open. Everything below it is reached through
/// [`Root::dir`] and the [`Dir`] it returns.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// Device and inode of the folder opened.
    id: RootId,
    /// When [`Root::moved`] last looked at the path (ms since `opened`),
    /// or `u64::MAX` once it found the path leading elsewhere.
    looked_ms: AtomicU64,
    opened: Instant,
    /// Whether the root is on a cifs mount (see `created.rs`), looked up
    /// the first time it matters.
    cifs: OnceLock<bool>,
}

/// How often [`Root::moved`] looks at the root's path again.
pub const ROOT_RECHECK: Duration = Duration::from_secs(1);

impl Root {
    /// Opens the root folder itself, following `path` (the operator's
    /// choice of root may well be a symlink).
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            id: RootId {
                dev: st.st_dev,
                ino: st.st_ino,
            },
            looked_ms: AtomicU64::new(0),
            opened: Instant::now(),
            cifs: OnceLock::new(),
        })
    }

    /// Device and inode of the folder held open.
    pub fn id(&self) -> RootId {
        self.id
    }

    /// Whether the root's path no longer leads to the folder held open (it
    /// was renamed away, removed, or its share unmounted): the descriptor
    /// would go on working in the old tree, which is not what the job names.
    /// Looks at the path at most once per [`ROOT_RECHECK`] over all callers;
    /// once moved, always moved.
    pub fn moved(&self) -> bool {
        let now = self.opened.elapsed().as_millis() as u64;
        let last = self.looked_ms.load(Relaxed);
        if last == u64::MAX {
            return true;
        }
        if now.saturating_sub(last) < ROOT_RECHECK.as_millis() as u64
            || self
                .looked_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return false;
        }
        self.moved_now()
    }

    /// [`Root::moved`], looking at the path now (after an error that may
    /// come from a root gone, say).
    pub fn moved_now(&self) -> bool {
        if self.looked_ms.load(Relaxed) == u64::MAX {
            return true;
        }
        let same = rustix::fs::stat(&self.path).is_ok_and(|st| {
            RootId {
                dev: st.st_dev,
                ino: st.st_ino,
            } == self.id
        });
        if !same {
            self.looked_ms.store(u64::MAX, Relaxed);
        }
        !same
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `full` relative to the root: it must lie below it and hold only
    /// plain names (no `.`, `..`); an empty path is the root itself.
    pub fn rel<'p>(&self, full: &'p Path) -> io::Result<&'p Path> {
        let rel = crate::relpath::relative(full, &self.path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "`{}` is not below `{}`",
                    full.display(),
                    self.path.display()
                ),
            )
        })?;
        plain(rel)?;
        Ok(rel)
    }

    /// The folder of `full` (relative to the root) and its last name; the
    /// root itself has neither.
    pub fn split<'p>(&self, full: &'p Path) -> io::Result<(&'p Path, &'p OsStr)> {
        let rel = self.rel(full)?;
        match (rel.parent(), rel.file_name()) {
            (Some(dir), Some(name)) => Ok((dir, name)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` is the root itself", full.display()),
            )),
        }
    }

    /// Opens the folder `rel` below the root (empty: the root), following no
    /// symlink on the way: one that is found fails with [`SymlinkInPath`].
    pub fn dir(&self, rel: &Path) -> io::Result<Dir> {
        plain(rel)?;
        if rel.as_os_str().is_empty() {
            return Ok(Dir {
                fd: self.fd.try_clone()?,
            });
        }
        let fd = if openat2_state() == YES {
            match self.dir_openat2(rel) {
                Err(Errno::NOSYS | Errno::INVAL | Errno::TOOBIG) => {
                    // Refused mid-run (a filter that the probe did not
                    // meet): fall back for the rest of the process.
                    OPENAT2.store(NO, Relaxed);
                    self.dir_walk(rel)?
                }
                Err(Errno::LOOP | Errno::XDEV) => return Err(symlink_in_path()),
                r => r?,
            }
        } else {
            self.dir_walk(rel)?
        };
        Ok(Dir { fd })
    }

    fn dir_openat2(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        let mut tries = 0;
        loop {
            let r = rustix::fs::openat2(
                &self.fd,
                rel,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            );
            // EAGAIN: a concurrent rename the kernel could not rule out;
            // retrying is the documented answer.
            match r {
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                r => return r,
            }
        }
    }

    /// One `openat(O_NOFOLLOW)` per component, each from the descriptor of
    /// the folder before it.
    fn dir_walk(&self, rel: &Path) -> io::Result<OwnedFd> {
        let mut cur: Option<OwnedFd> = None;
        for c in rel.components() {
            let Component::Normal(name) = c else {
                unreachable!("checked by `plain`")
            };
            let at: BorrowedFd<'_> = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            let next = rustix::fs::openat(
                at,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            match next {
                Ok(fd) => cur = Some(fd),
                Err(Errno::LOOP) => return Err(symlink_in_path()),
                // O_PATH | O_NOFOLLOW on a symlink refers to the link itself,
                // which O_DIRECTORY then refuses as "not a directory".
                Err(Errno::NOTDIR)
                    if rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(
                        |st| FileType::from_raw_mode(st.st_mode as _) == FileType::Symlink,
                    ) =>
                {
                    return Err(symlink_in_path());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(cur.expect("checked by the caller: `rel` is not empty"))
    }

    /// Opens the folder `rel`, creating it and any missing parent with
    /// `mode` (masked by the umask), never through a symlink.
    pub fn create_dirs(&self, rel: &Path, mode: u32) -> io::Result<Dir> {
        self.create_dirs_with(rel, &mut |dir, name, _| dir.mkdir(name, mode))
    }

    /// [`Root::create_dirs`], each missing folder made by `mkdir(parent,
    /// name, rel)` (`rel`: the new folder's path below the root), top down;
    /// `AlreadyExists` from it counts as made (another lane, a moment ago).
    pub fn create_dirs_with(&self, rel: &Path, mkdir: &mut MkDir<'_>) -> io::Result<Dir> {
        match self.dir(rel) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => return r,
        }
        // The deepest folder that exists, then each missing one below it.
        let names: Vec<&OsStr> = rel.iter().collect();
        let mut have = names.len();
        let mut dir = loop {
            have -= 1;
            let up: PathBuf = names[..have].iter().collect();
            match self.dir(&up) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && have > 0 => continue,
                r => break r?,
            }
        };
        for (i, name) in names.iter().enumerate().skip(have) {
            let made: PathBuf = names[..=i].iter().collect();
            match mkdir(&dir, name, &made) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                r => r?,
            }
            dir = dir.sub(name)?;
        }
        Ok(dir)
    }

    /// `lstat` of `full`, through no symlink.
    pub fn stat(&self, full: &Path) -> io::Result<Meta> {
        if self.rel(full)?.as_os_str().is_empty() {
            return Ok(Meta::from_stat(&rustix::fs::fstat(&self.fd)?));
        }
        let (dir, name) = self.split(full)?;
        self.dir(dir)?.stat(name)
    }

    /// Sets the times of `full` itself (the root included).
    pub fn set_times(&self, full: &Path, accessed_ns: i128, modified_ns: i128) -> io::Result<()> {
        if self.rel(full)?.as_os_str().is_empty() {
            return set_times_at(self.fd.as_fd(), OsStr::new("."), accessed_ns, modified_ns);
        }
        let (dir, name) = self.split(full)?;
        self.dir(dir)?.set_times(name, accessed_ns, modified_ns)
    }

    /// Creates the temporary `name` (owner-only, exclusive) in the root,
    /// hands it to `look`, removes it and puts the root's times back, so
    /// the probe leaves no trace a scan would take for a change. `Err` is
    /// the create's error (the folder refuses new entries).
    pub fn probe<T>(&self, name: &OsStr, look: impl FnOnce(&Dir) -> T) -> io::Result<T> {
        let root = self.path();
        let times = self.stat(root).ok().map(|m| (m.accessed_ns, m.modified_ns));
        let dir = self.dir(Path::new(""))?;
        drop(dir.create_new(name, 0o600)?);
        let seen = look(&dir);
        let _ = dir.unlink(name);
        if let Some((atime, mtime)) = times {
            let _ = self.set_times(root, atime, mtime);
        }
        Ok(seen)
    }
}

/// How [`Root::create_dirs_with`] makes one missing folder: in `parent`,
/// `name`, whose path below the root is the last argument.
pub type MkDir<'a> = dyn FnMut(&Dir, &OsStr, &Path) -> io::Result<()> + 'a;

/// Refuses anything but plain names: an absolute path, `.` or `..` would
/// make "below the root" a matter of interpretation.
fn plain(rel: &Path) -> io::Result<()> {
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is not a plain relative path", rel.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::EntryKind;
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;

    /// A root with `a/b/f` and a symlink `a/link` → a folder outside with
    /// `secret`, plus `a/flink` → the outside file.
    fn tree() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("root");
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/b/f"), b"inside").unwrap();
        std::fs::create_dir(t.path().join("out")).unwrap();
        std::fs::write(t.path().join("out/secret"), b"outside").unwrap();
        symlink(t.path().join("out"), r.join("a/link")).unwrap();
        symlink("../../out", r.join("a/rel")).unwrap();
        symlink(t.path().join("out/secret"), r.join("a/flink")).unwrap();
        let root = Root::open(&r).unwrap();
        (t, root)
    }

    thread_local! {
        /// Forces the per-component fallback on this test's thread.
        pub(super) static FORCE_WALK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Runs `f` with openat2 (where the kernel has it), then with the
    /// per-component fallback.
    fn both(f: impl Fn()) {
        f();
        FORCE_WALK.set(true);
        assert!(!uses_openat2());
        f();
        FORCE_WALK.set(false);
    }

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn reads_inside_and_refuses_every_symlinked_folder() {
        both(|| {
            let (_t, root) = tree();
            let mut s = String::new();
            let d = root.dir(Path::new("a/b")).unwrap();
            d.open_read(os("f"), true)
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "inside");
            for rel in ["a/link", "a/rel", "a/link/x/y", "a/flink"] {
                let e = root.dir(Path::new(rel)).unwrap_err();
                assert!(is_symlink_in_path(&e), "{rel}: {e}");
                assert_eq!(e.to_string(), "symlink in path; not followed");
            }
            let e = root.stat(&root.path().join("a/link/secret")).unwrap_err();
            assert!(is_symlink_in_path(&e), "{e}");
            // The last component is never followed either.
            let a = root.dir(Path::new("a")).unwrap();
            let e = a.open_read(os("flink"), false).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
            assert_eq!(a.stat(os("link")).unwrap().kind, Some(EntryKind::Symlink));
            assert!(a.read_link(os("link")).unwrap().ends_with("out"));
            assert!(is_symlink_in_path(&a.sub(os("link")).unwrap_err()));
            // Missing folders stay plain errors.
            let e = root.dir(Path::new("a/nope/x")).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
        });
    }

    #[test]
    fn paths_must_be_plain_and_below_the_root() {
        let (t, root) = tree();
        for rel in ["../root", "a/../a", "/etc", "./a"] {
            let e = root.dir(Path::new(rel)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{rel}");
        }
        assert!(root.rel(&t.path().join("out/secret")).is_err());
        assert_eq!(
            root.split(&root.path().join("a/b/f")).unwrap(),
            (Path::new("a/b"), os("f"))
        );
        assert!(root.split(root.path()).is_err());
        let d = root.dir(Path::new("")).unwrap();
        for bad in ["", ".", "..", "x/y"] {
            assert_eq!(
                d.stat(os(bad)).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }

    #[test]
    fn creates_renames_times_and_deletes_inside_only() {
        both(|| {
            let (t, root) = tree();
            let r = root.path().to_path_buf();
            // mkdir -p below the root, never through the symlink.
            let d = root.create_dirs(Path::new("a/new/deep"), 0o755).unwrap();
            assert!(r.join("a/new/deep").is_dir());
            let e = root
                .create_dirs(Path::new("a/link/made"), 0o755)
                .unwrap_err();
            assert!(is_symlink_in_path(&e), "{e}");
            assert!(!t.path().join("out/made").exists());
            // create, rename, times.
            let mut f = d.create_new(os("tmp"), 0o600).unwrap();
            f.write_all(b"data").unwrap();
            drop(f);
            assert!(d.create_new(os("tmp"), 0o600).is_err());
            d.set_times(os("tmp"), 7, 1_500_000_000_123_456_789)
                .unwrap();
            d.rename(os("tmp"), os("file")).unwrap();
            let m = d.stat(os("file")).unwrap();
            assert_eq!((m.kind, m.len), (Some(EntryKind::File), 4));
            assert_eq!(
                (m.accessed_ns, m.modified_ns),
                (7, 1_500_000_000_123_456_789)
            );
            assert_eq!(std::fs::read(r.join("a/new/deep/file")).unwrap(), b"data");
            // Truncating open refuses a symlink instead of writing through it.
            let a = root.dir(Path::new("a")).unwrap();
            let e = a.create_truncate(os("flink"), 0o644).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
            assert_eq!(
                std::fs::read(t.path().join("out/secret")).unwrap(),
                b"outside"
            );
            // Symlinks are created and timed as themselves.
            d.symlink(Path::new("/etc/passwd"), os("sl")).unwrap();
            d.set_times(os("sl"), 1, 2).unwrap();
            assert_eq!(d.stat(os("sl")).unwrap().modified_ns, 2);
            assert_eq!(d.read_link(os("sl")).unwrap(), Path::new("/etc/passwd"));
            // Times by full path, the root included.
            root.set_times(&r, 3, 4_000_000_000).unwrap();
            assert_eq!(root.stat(&r).unwrap().modified_ns, 4_000_000_000);
            let e = root.set_times(&r.join("a/link/secret"), 0, 0).unwrap_err();
            assert!(is_symlink_in_path(&e));
            // Deleting the link removes the link, never what it points to.
            a.unlink(os("flink")).unwrap();
            assert!(t.path().join("out/secret").exists());
            assert!(a.rmdir(os("link")).is_err());
            a.unlink(os("link")).unwrap();
            assert!(t.path().join("out/secret").exists());
            d.unlink(os("sl")).unwrap();
            d.unlink(os("file")).unwrap();
            root.dir(Path::new("a/new"))
                .unwrap()
                .rmdir(os("deep"))
                .unwrap();
            assert!(!r.join("a/new/deep").exists());
        });
    }

    #[test]
    fn times_are_set_in_ns_on_entries_themselves() {
        let (_t, root) = tree();
        let a = root.dir(Path::new("a")).unwrap();
        a.mkdir(os("d"), 0o755).unwrap();
        a.symlink(Path::new("b/f"), os("l")).unwrap();
        for (name, at, mt) in [
            ("d", 7, -1_000_000_000),
            ("b", 1_000_000_001, 1_500_000_000_123_456_789),
            ("l", 3, 1_600_000_000_000_000_001),
        ] {
            a.set_times(os(name), at, mt).unwrap();
            let m = a.stat(os(name)).unwrap();
            assert_eq!((m.accessed_ns, m.modified_ns), (at, mt), "{name}");
        }
        // The symlink's own times changed, not its target's.
        let f = root.stat(&root.path().join("a/b/f")).unwrap();
        assert_ne!(f.modified_ns, 1_600_000_000_000_000_001);
        assert!(a.set_times(os("missing"), 0, 0).is_err());
    }

    #[test]
    fn bits_and_owners_are_set_on_entries_themselves() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        both(|| {
            let (t, root) = tree();
            let r = root.path().to_path_buf();
            let a = root.dir(Path::new("a")).unwrap();
            // A folder by name, and a held folder itself.
            a.chmod(os("b"), 0o1750).unwrap();
            assert_eq!(
                std::fs::metadata(r.join("a/b")).unwrap().mode() & 0o7777,
                0o1750
            );
            let b = root.dir(Path::new("a/b")).unwrap();
            b.chmod_self(0o700).unwrap();
            assert_eq!(b.meta().unwrap().mode & 0o7777, 0o700);
            assert_eq!(b.meta().unwrap().kind, Some(EntryKind::Dir));
            // A symlink is never followed: its target keeps its bits.
            let outside = t.path().join("out/secret");
            std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o640)).unwrap();
            let e = a.chmod(os("flink"), 0o777).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
            assert_eq!(std::fs::metadata(&outside).unwrap().mode() & 0o777, 0o640);
            // Owners: the link itself, the folder itself (our own ids, so
            // this works without root too).
            let me = std::fs::metadata(&outside).unwrap();
            a.chown(os("flink"), me.uid(), me.gid()).unwrap();
            b.chown_self(me.uid(), me.gid()).unwrap();
            let m = a.stat(os("flink")).unwrap();
            assert_eq!((m.uid, m.gid), (me.uid(), me.gid()));
            assert!(a.chown(os("missing"), me.uid(), me.gid()).is_err());
        });
    }

    #[test]
    fn folders_are_made_by_the_callers_rule_top_down() {
        both(|| {
            let (t, root) = tree();
            let mut seen = Vec::new();
            let d = root
                .create_dirs_with(Path::new("a/n1/n2"), &mut |p, n, rel| {
                    seen.push(rel.to_path_buf());
                    p.mkdir(n, if rel.ends_with("n2") { 0o700 } else { 0o750 })
                })
                .unwrap();
            assert_eq!(seen, [Path::new("a/n1"), Path::new("a/n1/n2")]);
            assert_eq!(
                d.meta().unwrap().mode & 0o777,
                0o700 & !crate::modes::process_umask()
            );
            let e = root
                .create_dirs_with(Path::new("a/link/x"), &mut |p, n, _| p.mkdir(n, 0o755))
                .unwrap_err();
            assert!(is_symlink_in_path(&e));
            assert!(!t.path().join("out/x").exists());
        });
    }

    #[test]
    fn a_held_folder_lists_itself_whatever_its_path_became() {
        both(|| {
            let (t, root) = tree();
            let r = root.path().to_path_buf();
            let b = root.dir(Path::new("a/b")).unwrap();
            std::fs::rename(r.join("a/b"), r.join("a/b.old")).unwrap();
            symlink(t.path().join("out"), r.join("a/b")).unwrap();
            let names: Vec<_> = b
                .read_dir(&r.join("a/b"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["f"]);
        });
    }

    #[test]
    fn a_held_folder_is_not_redirected_by_a_swap() {
        both(|| {
            let (t, root) = tree();
            let r = root.path().to_path_buf();
            let mut cache = DirCache::default();
            cache.dir(&root, Path::new("a/b")).unwrap();
            // The folder is swapped for a symlink to the outside.
            std::fs::rename(r.join("a/b"), r.join("a/b.old")).unwrap();
            symlink(t.path().join("out"), r.join("a/b")).unwrap();
            // The held descriptor still is the real folder (now `b.old`)...
            let d = cache.dir(&root, Path::new("a/b")).unwrap();
            assert!(d.stat(os("f")).is_ok());
            assert!(d.stat(os("secret")).is_err());
            // ...and a fresh resolution refuses the symlink.
            cache.clear();
            let e = cache.dir(&root, Path::new("a/b")).unwrap_err();
            assert!(is_symlink_in_path(&e));
            let e = cache
                .create_dirs(&root, Path::new("a/b/c"), 0o755)
                .unwrap_err();
            assert!(is_symlink_in_path(&e));
            assert!(!t.path().join("out/c").exists());
        });
    }

    #[test]
    fn a_root_renamed_away_is_noticed() {
        let (t, root) = tree();
        assert!(!root.moved_now());
        std::fs::rename(root.path(), t.path().join("away")).unwrap();
        // Looked at once per ROOT_RECHECK only (the first look was now)...
        assert!(!root.moved());
        // ...and for good once seen.
        assert!(root.moved_now());
        std::fs::rename(t.path().join("away"), root.path()).unwrap();
        assert!(root.moved());
        // Another folder at the path is not the root either.
        let (_t2, other) = tree();
        std::fs::rename(other.path(), t.path().join("o")).unwrap();
        std::fs::create_dir(other.path()).unwrap();
        assert!(other.moved_now());
    }

    #[test]
    fn the_root_may_be_reached_through_a_symlink() {
        let (t, root) = tree();
        let via = t.path().join("via");
        symlink(root.path(), &via).unwrap();
        let v = Root::open(&via).unwrap();
        assert!(v.stat(&via.join("a/b/f")).is_ok());
        assert!(Root::open(&via.join("a/b/f")).is_err());
    }
}
