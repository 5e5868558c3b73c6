//! Permission bits and owners of the entries a run creates (docs/tree-fidelity.md
//! "Permissions and owners"). Owns the rules, the few calls that apply
//! them (`fchmod`, `fchown` on the open file; for folders and symlinks their
//! `*at` forms from the held folder's descriptor, through no symlink, see
//! `crate::beneath`) and the once-per-run warning when a share refuses them;
//! the writer decides *when* they are called.
//!
//! The rule everything else follows: nothing may arrive more open than it
//! left, not even for a moment. By default (`permissions = "masked"`, what
//! rsync does without `-p`) each file and folder is *created* with the
//! source's bits as the `mode` argument of `open`/`mkdir`, and the kernel
//! takes the process umask off: no extra call, nothing that can fail on a
//! share. `preserve` and `owners` add best-effort calls after the write, each
//! of which can only narrow what was created or move it to the source's
//! exact bits and owners.
//!
//! Special bits: setuid and setgid are never given at creation (rsync
//! without `-p` drops them too); with `preserve` they are given back only
//! when the destination's owner (setuid) or group (setgid) is the source's,
//! so a setuid-alice program copied by root never becomes setuid-root. The
//! sticky bit only restricts (who may delete in a folder), so folders keep
//! it; files have no use for it and never get it by default.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::beneath::{Dir, Meta};
use crate::xattrs::Attrs;

/// `permissions`: which bits created entries get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permissions {
    /// The source's bits less the process umask, at creation (rsync
    /// without `-p`). Existing destination entries keep theirs.
    #[default]
    Masked,
    /// The source's exact bits, set after the write (best-effort).
    Preserve,
}

impl std::fmt::Display for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Masked => "masked",
            Self::Preserve => "preserve",
        })
    }
}

const SETUID: u32 = 0o4000;
const SETGID: u32 = 0o2000;
const STICKY: u32 = 0o1000;
const OWNER_RWX: u32 = 0o700;

/// Mode policy of one run, shared by every lane and the committer.
#[derive(Debug)]
pub struct Modes {
    pub permissions: Permissions,
    /// Give entries the source's uid and gid (root only; refused at load otherwise).
    pub owners: bool,
    /// The process umask, read once.
    pub umask: u32,
    /// Running as root: permission bits do not stop us writing into a folder.
    pub root: bool,
    warned_mode: AtomicBool,
    warned_owner: AtomicBool,
    /// Extended attributes and ACLs copied with the entries (`xattrs`, `acls`).
    pub attrs: Attrs,
}

impl Modes {
    pub fn new(permissions: Permissions, owners: bool) -> Self {
        Self {
            permissions,
            owners,
            umask: process_umask(),
            root: rustix::process::geteuid().is_root(),
            warned_mode: AtomicBool::new(false),
            warned_owner: AtomicBool::new(false),
            attrs: Attrs::default(),
        }
    }

    /// The same, also copying the attributes `attrs` keeps.
    pub fn with_attrs(self, attrs: Attrs) -> Self {
        Self { attrs, ..self }
    }

    /// The `mode` argument for creating a file (the temporary, or the
    /// destination with `inplace`). A temporary that will be given the
    /// source's owners is created for its creator alone and opened up only
    /// once it has them (see [`Self::private_until_owned`]): until then its
    /// group is the creator's, not the source's.
    pub fn file_create(&self, src_mode: u32, temporary: bool) -> u32 {
        let bits = src_mode & 0o777;
        if self.private_until_owned(temporary) {
            bits & OWNER_RWX
        } else {
            bits
        }
    }

    /// Whether a new file is created owner-only and widened after its
    /// `fchown`: with `owners`, for temporaries. An `inplace` file is created
    /// with its bits at once: it may be an existing file whose bits are kept,
    /// and cannot be told apart from a new one after the open.
    pub fn private_until_owned(&self, temporary: bool) -> bool {
        self.owners && temporary
    }

    /// The bits a file ends with under `masked` (what [`Self::file_create`]
    /// gives without `owners`, after the umask).
    pub fn file_masked(&self, src_mode: u32) -> u32 {
        src_mode & 0o777 & !self.umask
    }

    /// The `mode` argument for creating a folder. Not root, the owner's
    /// `rwx` are added so that the run can write into a folder whose source
    /// is read-only (rsync does the same); they are taken off when the
    /// folder's own row is applied, after its contents (see
    /// [`Self::dir_fix_owner_bits`]). These are the owner's bits only:
    /// nobody else gets more than the source gives.
    pub fn dir_create(&self, src_mode: u32) -> u32 {
        let bits = src_mode & (0o777 | STICKY);
        if self.root { bits } else { bits | OWNER_RWX }
    }

    /// The bits a folder ends with under `masked`.
    pub fn dir_masked(&self, src_mode: u32) -> u32 {
        src_mode & (0o777 | STICKY) & !self.umask
    }

    /// Under `masked`, the bits to set on a folder once its contents are
    /// written: `Some` only when this run would have created it with the
    /// owner's `rwx` added (not root, source lacking some of them) and it
    /// still has exactly those bits. A run killed before the folder's row
    /// was applied leaves such a folder, and the next run fixes it here.
    pub fn dir_fix_owner_bits(&self, src_mode: u32, current: u32) -> Option<u32> {
        let want = self.dir_masked(src_mode);
        let created = self.dir_create(src_mode) & !self.umask;
        (!self.root && want & OWNER_RWX != OWNER_RWX && current & 0o7777 == created).then_some(want)
    }

    /// Not root, a destination folder that refuses a new entry because it is
    /// read-only for its owner (it arrived like its source, `555`): gives
    /// the owner `rwx`, if the folder is ours, so that the entry can be
    /// written. Writing into a folder marks its row for the end of the
    /// transfer, where [`Self::dir_fix_owner_bits`] takes them off again.
    /// Returns whether the folder now has them, changed by this call or by
    /// another lane meanwhile (the caller then retries once).
    /// The folder is the one held open (`fstat` and `chmod` of its own
    /// descriptor): no path is looked up again.
    pub fn open_dir_for_owner(&self, dir: &Dir) -> bool {
        if self.root {
            return false;
        }
        let Ok(md) = dir.meta() else {
            return false;
        };
        let euid = rustix::process::geteuid().as_raw();
        if md.uid != euid {
            return false;
        }
        if md.mode & OWNER_RWX == OWNER_RWX {
            // Another lane opened it a moment ago, after this one's create
            // failed: the retry will go through.
            return true;
        }
        let bits = (md.mode & 0o7777) | OWNER_RWX;
        dir.chmod_self(bits).is_ok()
    }

    /// The exact bits `preserve` sets: the source's, setuid only when the
    /// destination's owner is the source's, setgid only when its group is.
    pub fn preserved(&self, src: (u32, u32, u32), dest_uid: u32, dest_gid: u32) -> u32 {
        let (mode, uid, gid) = src;
        let mut bits = mode & 0o7777;
        if dest_uid != uid {
            bits &= !SETUID;
        }
        if dest_gid != gid {
            bits &= !SETGID;
        }
        bits
    }

    /// With `inplace`, an existing destination file keeps its own bits
    /// (rsync without `-p`), less any the source does not grant: the new
    /// content is never more readable than at the source. `None` when
    /// nothing needs taking off (always for a file this run just created).
    pub fn inplace_narrowed(&self, src_mode: u32, current: u32) -> Option<u32> {
        let allowed = self.file_masked(src_mode);
        let cur = current & 0o7777;
        let narrowed = cur & allowed;
        (narrowed != cur).then_some(narrowed)
    }

    /// Sets `bits` on an open file, best-effort (see [`Self::refused`] and
    /// [`Self::bits_kept`]).
    pub fn fchmod(&self, f: &File, bits: u32, path: &Path) {
        if let Err(e) = rustix::fs::fchmod(f, rustix::fs::Mode::from_raw_mode(bits)) {
            let _ = self.refused(false, path, e.into());
        } else if !self.warned(false) {
            self.bits_kept(path, bits, f.metadata().map(|md| md.mode()));
        }
    }

    /// Gives an open file the source's owner and group, best-effort.
    /// Returns the owner and group it has now where known: those shown
    /// after an accepted call (the ones asked for when it took, or when
    /// the file cannot be stat'ed: no claim either way); `None` when
    /// refused.
    pub fn fchown(&self, f: &File, uid: u32, gid: u32, path: &Path) -> Option<(u32, u32)> {
        match std::os::unix::fs::fchown(f, Some(uid), Some(gid)) {
            Ok(()) => {
                let now = f.metadata().map(|md| (md.uid(), md.gid()));
                let shown = now.as_ref().map_or((uid, gid), |&s| s);
                self.owners_kept(path, (uid, gid), now);
                Some(shown)
            }
            Err(e) => {
                let _ = self.refused(true, path, e);
                None
            }
        }
    }

    /// [`Self::fchown`] of a folder or symlink: `name` in the held folder
    /// `dir` (`fchownat`, `AT_SYMLINK_NOFOLLOW`), or `dir` itself when
    /// `None`. `path` is for the warning only.
    pub fn lchown(&self, dir: &Dir, name: Option<&OsStr>, uid: u32, gid: u32, path: &Path) -> bool {
        let r = match name {
            Some(n) => dir.chown(n, uid, gid),
            None => dir.chown_self(uid, gid),
        };
        match r {
            Ok(()) => {
                let now = held_meta(dir, name).map(|md| (md.uid, md.gid));
                self.owners_kept(path, (uid, gid), now)
            }
            Err(e) => {
                let _ = self.refused(true, path, e);
                false
            }
        }
    }

    /// [`Self::fchmod`] of a folder: `name` in the held folder `dir`, never
    /// through a symlink, or `dir` itself when `None`. `path` is for the
    /// warning only.
    pub fn chmod(&self, dir: &Dir, name: Option<&OsStr>, bits: u32, path: &Path) {
        let r = match name {
            Some(n) => dir.chmod(n, bits),
            None => dir.chmod_self(bits),
        };
        match r {
            // Once warned, nothing more to learn: no stat per entry.
            Ok(()) if self.warned(false) => {}
            Ok(()) => {
                self.bits_kept(path, bits, held_meta(dir, name).map(|md| md.mode));
            }
            Err(e) => {
                let _ = self.refused(false, path, e);
            }
        }
    }

    /// A share that refuses modes or owners (root-squashed NFS) would
    /// refuse them for every file: one warning per run and kind, never a
    /// failed file. What was created stays as created, which is never
    /// wider than the source.
    /// Returns whether this refusal was the one reported.
    fn refused(&self, owner: bool, path: &Path, e: io::Error) -> bool {
        if !self.first_warning(owner) {
            return false;
        }
        if owner {
            warn!(path = %path.display(), error = %e,
                "the destination refused the source's owner and group (owners = true); entries keep the ones they were created with; not reported again this run");
        } else {
            warn!(path = %path.display(), error = %e,
                "the destination refused permission bits; entries keep the bits they were created with (never wider than the source); not reported again this run");
        }
        true
    }

    /// A share can also answer a `chmod` with success and keep nothing: an
    /// SMB share without POSIX extensions (the Linux client's default,
    /// `nounix`) shows every entry with the mount's `file_mode`/`dir_mode`
    /// whatever was asked, and the server picks the modes it stores. The
    /// bits shown right after the call (`now`: `st_mode`) tell, and a
    /// difference is warned once per run, as a refusal is: without it the
    /// run would claim bits it did not give. A `stat` that fails proves
    /// nothing and warns nothing. Returns whether the bits were kept.
    fn bits_kept(&self, path: &Path, asked: u32, now: io::Result<u32>) -> bool {
        let Ok(mode) = now else { return true };
        let (asked, shown) = (asked & 0o7777, mode & 0o7777);
        if asked == shown {
            return true;
        }
        if self.first_warning(false) {
            warn!(path = %path.display(), asked = %format_args!("{asked:04o}"), shown = %format_args!("{shown:04o}"),
                "the destination accepted permission bits but did not keep them (an SMB share without POSIX extensions: the server decides the modes, the client shows its mount's file_mode/dir_mode); entries keep the bits the share gives them; not reported again this run");
        }
        false
    }

    /// [`Self::bits_kept`] for owners: the SMB client answers a `chown`
    /// with success and keeps showing the mount's `uid`/`gid`. Returns
    /// whether the destination shows the owner and group asked for.
    fn owners_kept(&self, path: &Path, asked: (u32, u32), now: io::Result<(u32, u32)>) -> bool {
        let Ok(shown) = now else { return true };
        if asked == shown {
            return true;
        }
        if self.first_warning(true) {
            warn!(path = %path.display(), asked = %format_args!("{}:{}", asked.0, asked.1), shown = %format_args!("{}:{}", shown.0, shown.1),
                "the destination accepted the source's owner and group but did not keep them (owners = true; an SMB share without POSIX extensions shows its mount's uid/gid); entries keep the ones the share gives them; not reported again this run");
        }
        false
    }

    /// Whether this is the run's first warning of its kind (bits, or
    /// owners): a refusal and an ignored call share the one line.
    fn first_warning(&self, owner: bool) -> bool {
        !self.flag(owner).swap(true, Relaxed)
    }

    /// Whether the run already warned of its kind.
    fn warned(&self, owner: bool) -> bool {
        self.flag(owner).load(Relaxed)
    }

    fn flag(&self, owner: bool) -> &AtomicBool {
        if owner {
            &self.warned_owner
        } else {
            &self.warned_mode
        }
    }
}

/// `name` in the held folder `dir`, never followed, or `dir` itself.
fn held_meta(dir: &Dir, name: Option<&OsStr>) -> io::Result<Meta> {
    match name {
        Some(n) => dir.stat(n),
        None => dir.meta(),
    }
}

/// The process umask, from `/proc/self/status` (reading it with `umask(2)`
/// means setting it, which races with other threads creating files).
pub fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or_else(|| {
            // Set and restored at once (only where /proc is missing).
            let m = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
            rustix::process::umask(m);
            m.as_raw_mode()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(permissions: Permissions, owners: bool, root: bool) -> Modes {
        Modes {
            permissions,
            owners,
            umask: 0o022,
            root,
            warned_mode: AtomicBool::new(false),
            warned_owner: AtomicBool::new(false),
            attrs: Attrs::default(),
        }
    }

    #[test]
    fn creation_never_wider_than_the_source() {
        let m = modes(Permissions::Masked, false, true);
        assert_eq!(m.file_create(0o100600, true), 0o600);
        assert_eq!(m.file_create(0o104755, true), 0o755, "setuid dropped");
        assert_eq!(m.file_create(0o101777, true), 0o777, "no sticky on files");
        assert_eq!(m.dir_create(0o40700), 0o700);
        assert_eq!(m.dir_create(0o41777), 0o1777, "folders keep sticky");
        assert_eq!(m.dir_create(0o42775), 0o775, "setgid dropped");
        assert_eq!(m.dir_masked(0o41777), 0o1755);
        let owners = modes(Permissions::Masked, true, true);
        assert_eq!(owners.file_create(0o100644, true), 0o600);
        assert_eq!(owners.file_create(0o100644, false), 0o644, "inplace");
        let user = modes(Permissions::Masked, false, false);
        assert_eq!(user.dir_create(0o40555), 0o755, "owner may write in it");
        assert_eq!(user.dir_create(0o40750), 0o750);
    }

    #[test]
    fn owner_bits_added_for_writing_are_taken_off() {
        let user = modes(Permissions::Masked, false, false);
        assert_eq!(user.dir_fix_owner_bits(0o40555, 0o755), Some(0o555));
        assert_eq!(user.dir_fix_owner_bits(0o40555, 0o555), None);
        assert_eq!(user.dir_fix_owner_bits(0o40755, 0o755), None);
        assert_eq!(user.dir_fix_owner_bits(0o41555, 0o1755), Some(0o1555));
        let root = modes(Permissions::Masked, false, true);
        assert_eq!(root.dir_fix_owner_bits(0o40555, 0o755), None);
    }

    #[test]
    fn preserve_gives_setid_back_only_to_the_same_owner() {
        let m = modes(Permissions::Preserve, true, true);
        assert_eq!(m.preserved((0o104755, 1000, 50), 1000, 50), 0o4755);
        assert_eq!(m.preserved((0o104755, 1000, 50), 0, 50), 0o755);
        assert_eq!(m.preserved((0o102755, 1000, 50), 1000, 0), 0o755);
        assert_eq!(m.preserved((0o106755, 1000, 50), 1000, 50), 0o6755);
        assert_eq!(m.preserved((0o41777, 0, 0), 0, 0), 0o1777);
    }

    #[test]
    fn inplace_takes_off_what_the_source_does_not_grant() {
        let m = modes(Permissions::Masked, false, true);
        assert_eq!(m.inplace_narrowed(0o100600, 0o100644), Some(0o600));
        assert_eq!(
            m.inplace_narrowed(0o100755, 0o100644),
            None,
            "kept, not widened"
        );
        assert_eq!(
            m.inplace_narrowed(0o100755, 0o104755),
            Some(0o755),
            "setuid off"
        );
        assert_eq!(m.inplace_narrowed(0o100600, 0o100600), None);
    }

    #[test]
    fn a_refusal_is_reported_once_per_run_and_kind() {
        let m = modes(Permissions::Preserve, true, true);
        let e = || io::Error::from_raw_os_error(libc::EPERM);
        let p = Path::new("/x");
        assert!(m.refused(false, p, e()));
        assert!(!m.refused(false, p, e()));
        assert!(m.refused(true, p, e()), "owners are their own warning");
        assert!(!m.refused(true, p, e()));
    }

    #[test]
    fn bits_or_owners_accepted_but_not_kept_warn_once_with_refusals() {
        let m = modes(Permissions::Preserve, true, true);
        let p = Path::new("/x");
        assert!(m.bits_kept(p, 0o640, Ok(0o100640)));
        assert!(m.bits_kept(p, 0o2775, Ok(0o42775)));
        assert!(
            m.bits_kept(p, 0o600, Err(io::Error::other("gone"))),
            "unknown: no claim"
        );
        assert!(!m.bits_kept(p, 0o600, Ok(0o100755)), "SMB shows file_mode");
        assert!(!m.warned_owner.load(Relaxed));
        assert!(
            !m.refused(false, p, io::Error::from_raw_os_error(libc::EPERM)),
            "one line per kind"
        );
        assert!(m.owners_kept(p, (1000, 50), Ok((1000, 50))));
        assert!(!m.owners_kept(p, (1000, 50), Ok((0, 0))));
        assert!(
            !m.owners_kept(p, (1000, 50), Ok((1000, 0))),
            "the group counts too"
        );
        assert!(m.warned_owner.load(Relaxed));
    }

    #[test]
    fn umask_is_read_without_changing_it() {
        let m = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        rustix::process::umask(m);
        let before = m.as_raw_mode();
        assert_eq!(process_umask(), before);
    }
}
