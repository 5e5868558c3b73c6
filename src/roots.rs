//! The job's roots as what they are, not as they are spelled: canonical
//! paths and (device, inode) identities, the overlap rule between the two
//! roots and the job's own files, and the last check the mirror makes
//! before each deletion. A leaf: every stage may use it.
//!
//! Why: a root written through a symlink (`link/alpha` with
//! `link -> root/projects`) compared by its text looks apart from a
//! destination `root` that in fact contains it, and a mirror then deletes
//! its own source. So both roots are resolved (symlinks followed, `..`
//! applied as the kernel would) and compared twice: by canonical path, and
//! by the identity of each existing ancestor, which also sees a bind mount
//! (another path, the same folder).

use rustix::fs::AtFlags;
use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use crate::decide::SourceRoot;

mod mountinfo;
use mountinfo::MountLine;

/// A folder's identity: device and inode, as `stat` reports them. Two
/// spellings of one folder (a symlink, a bind mount) have the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RootId {
    pub dev: u64,
    pub ino: u64,
}

impl RootId {
    /// The identity of what `path` names, following symlinks.
    pub fn of(path: &Path) -> io::Result<Self> {
        std::fs::metadata(path).map(|m| Self::of_meta(&m))
    }

    pub fn of_meta(md: &std::fs::Metadata) -> Self {
        Self {
            dev: md.dev(),
            ino: md.ino(),
        }
    }
}

/// The source root as found now: the one check the scan, the transfer
/// lanes and the mirror make of it, against its identity when the run
/// started (an unmounted share leaves its empty mount point behind, which
/// is another folder).
#[derive(Debug)]
pub struct RootNow {
    pub state: SourceRoot,
    /// Its identity, when it is a readable directory.
    pub id: Option<RootId>,
    /// The error behind `Missing` or `Unreadable`.
    pub error: Option<io::Error>,
}

impl RootNow {
    /// One `stat` and, for a directory, one `readdir` (is it empty?).
    pub fn look(root: &Path, at_start: Option<RootId>) -> Self {
        let failed = |state, e| Self {
            state,
            id: None,
            error: Some(e),
        };
        let md = match std::fs::metadata(root) {
            Ok(md) => md,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return failed(SourceRoot::Missing, e);
            }
            Err(e) => return failed(SourceRoot::Unreadable, e),
        };
        let id = RootId::of_meta(&md);
        if !md.is_dir() {
            return Self {
                state: SourceRoot::NotADirectory,
                id: None,
                error: None,
            };
        }
        if at_start.is_some_and(|s| s != id) {
            return Self {
                state: SourceRoot::Replaced,
                id: Some(id),
                error: None,
            };
        }
        match std::fs::read_dir(root) {
            Ok(mut entries) => Self {
                state: SourceRoot::Dir {
                    empty: entries.next().is_none(),
                },
                id: Some(id),
                error: None,
            },
            Err(e) => failed(SourceRoot::Unreadable, e),
        }
    }
}

impl RootNow {
    /// [`RootNow::look`] without the `readdir`, for a check repeated per
    /// entry: one `stat`. A directory is reported `Dir { empty: false }`
    /// (not looked into).
    pub fn stat(root: &Path, at_start: Option<RootId>) -> SourceRoot {
        match std::fs::metadata(root) {
            Ok(md) if !md.is_dir() => SourceRoot::NotADirectory,
            Ok(md) if at_start.is_some_and(|s| s != RootId::of_meta(&md)) => SourceRoot::Replaced,
            Ok(_) => SourceRoot::Dir { empty: false },
            Err(e) if e.kind() == io::ErrorKind::NotFound => SourceRoot::Missing,
            Err(_) => SourceRoot::Unreadable,
        }
    }
}

/// A path resolved to what it is: `path` is absolute and canonical (no
/// symlink, `.` or `..` in it); `exists` tells whether all of it exists or
/// only an ancestor does (a destination root not created yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub path: Utf8PathBuf,
    pub exists: bool,
}

/// Resolves an absolute path: its longest existing prefix is canonicalised
/// (symlinks followed, `..` applied after them, as the kernel does), and
/// the rest, which cannot hold a symlink since it does not exist, is
/// applied lexically.
pub fn resolve(path: &Utf8Path) -> Result<Resolved, String> {
    let parts: Vec<Utf8Component> = path.components().collect();
    for keep in (1..=parts.len()).rev() {
        let prefix: Utf8PathBuf = parts[..keep].iter().collect();
        match std::fs::canonicalize(&prefix) {
            Ok(real) => {
                let mut out = Utf8PathBuf::from_path_buf(real).map_err(|p| {
                    format!("`{path}` resolves to `{}`, which is not UTF-8", p.display())
                })?;
                for c in &parts[keep..] {
                    match c {
                        Utf8Component::CurDir => {}
                        Utf8Component::ParentDir => {
                            out.pop();
                        }
                        other => out.push(other.as_str()),
                    }
                }
                return Ok(Resolved {
                    path: out,
                    exists: keep == parts.len(),
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) && keep > 1 => {}
            Err(e) => return Err(format!("cannot resolve `{prefix}`: {e}")),
        }
    }
    Err(format!("cannot resolve `{path}`"))
}

/// The identities of `path` (when it exists) and of each existing ancestor.
fn identity_chain(path: &Utf8Path) -> Vec<RootId> {
    path.ancestors()
        .filter_map(|a| RootId::of(a.as_std_path()).ok())
        .collect()
}

/// How two resolved folders relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// The same folder.
    Same,
    /// The first lies inside the second.
    Inside,
    /// The first contains the second.
    Contains,
}

/// Whether `a` and `b` overlap: by canonical path (one is a prefix of the
/// other, components compared), or by identity (an existing ancestor of
/// one is the other, e.g. through a bind mount).
pub fn overlap(a: &Resolved, b: &Resolved) -> Option<Overlap> {
    if a.path == b.path {
        return Some(Overlap::Same);
    }
    if a.path.starts_with(&b.path) {
        return Some(Overlap::Inside);
    }
    if b.path.starts_with(&a.path) {
        return Some(Overlap::Contains);
    }
    let id = |r: &Resolved| {
        r.exists
            .then(|| RootId::of(r.path.as_std_path()).ok())
            .flatten()
    };
    let (a_id, b_id) = (id(a), id(b));
    if a_id.is_some() && a_id == b_id {
        return Some(Overlap::Same);
    }
    if b_id.is_some_and(|b| identity_chain(&a.path).contains(&b)) {
        return Some(Overlap::Inside);
    }
    if a_id.is_some_and(|a| identity_chain(&b.path).contains(&a)) {
        return Some(Overlap::Contains);
    }
    None
}

/// Whether the file at `file` (the DB, the log) would lie inside the
/// folder `tree`, by path or by identity of its existing ancestors.
pub fn file_inside(file: &Resolved, tree: &Resolved) -> bool {
    if file.path.starts_with(&tree.path) {
        return true;
    }
    let Some(tree_id) = tree
        .exists
        .then(|| RootId::of(tree.path.as_std_path()).ok())
        .flatten()
    else {
        return false;
    };
    file.path
        .parent()
        .is_some_and(|p| identity_chain(p).contains(&tree_id))
}

/// Why the mirror keeps a candidate it would otherwise delete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsafe {
    #[error("`{0}` is a symlink on the way; not followed")]
    Symlink(PathBuf),
    #[error("`{0}` is another mount inside the destination; the mirror never deletes across it")]
    OtherMount(PathBuf),
    #[error("`{0}` is the source root (bind mount?); never deleted")]
    SourceRoot(PathBuf),
    #[error("`{0}` is not below the destination root")]
    Outside(PathBuf),
    #[error("cannot check `{0}`: {1}")]
    Unreadable(PathBuf, String),
}

/// The mirror's last check before each deletion: the entry must be reached
/// from the destination root through real folders only (no symlink), all on
/// the destination root's own mount (a bind mount of the source, or of any
/// folder, is another mount even on the same filesystem), and neither it
/// nor a folder above it may be the source root. Folders already checked
/// are remembered, so a deletion costs one `statx` of the entry and of each
/// folder not seen before.
pub struct DeleteGuard {
    dest_root: PathBuf,
    mount: Mount,
    source: RootId,
    checked: HashSet<PathBuf>,
}

impl DeleteGuard {
    pub fn new(dest_root: &Path, source: RootId) -> io::Result<Self> {
        let mount = Mount::of(dest_root)?;
        Ok(Self {
            dest_root: dest_root.to_path_buf(),
            mount,
            source,
            checked: HashSet::new(),
        })
    }

    /// `Ok` when `path` (a candidate below the destination root) may be
    /// deleted as far as where it lies goes.
    pub fn check(&mut self, path: &Path) -> Result<(), Unsafe> {
        let rel = crate::relpath::strictly_below(path, &self.dest_root)
            .ok_or_else(|| Unsafe::Outside(path.to_path_buf()))?;
        let mut dir = self.dest_root.clone();
        let mut parts = rel.components().peekable();
        while let Some(c) = parts.next() {
            dir.push(c);
            let last = parts.peek().is_none();
            if !last && self.checked.contains(&dir) {
                continue;
            }
            self.check_one(&dir, last)?;
            if !last {
                self.checked.insert(dir.clone());
            }
        }
        Ok(())
    }

    fn check_one(&self, path: &Path, last: bool) -> Result<(), Unsafe> {
        let m = match Mount::of_nofollow(path) {
            Ok(m) => m,
            // Gone since the listing: the deletion itself will say so.
            Err(e) if last && e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Unsafe::Unreadable(path.to_path_buf(), e.to_string())),
        };
        if m.symlink && !last {
            return Err(Unsafe::Symlink(path.to_path_buf()));
        }
        if m.symlink {
            // A symlink candidate is removed itself, never followed.
            return Ok(());
        }
        if m.id == self.source {
            return Err(Unsafe::SourceRoot(path.to_path_buf()));
        }
        if !m.same_mount(&self.mount) {
            return Err(Unsafe::OtherMount(path.to_path_buf()));
        }
        Ok(())
    }
}

/// The filesystem a root lies on, as `/proc/self/mountinfo` names its
/// mount: what stays the same when the same share is mounted again at the
/// same place (an NFS `fsid` and the device number may change on a
/// remount; the server's export, the type and the mount point do not). A
/// root that does not exist (yet) lies on the filesystem of its nearest
/// existing ancestor, where a run would create it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Filesystem {
    /// `nfs4`, `cifs`, `fuse.sshfs`, `ext4`, `tmpfs`, …
    pub fstype: String,
    /// The mount's source: `server:/export`, `//server/share`, a device.
    pub source: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// The folder of the filesystem mounted there (`/` but for a bind mount
    /// of a subfolder).
    pub root: String,
}

impl Filesystem {
    /// The filesystem `path` (absolute, canonical) lies on: the mount of its
    /// nearest existing ancestor, by the kernel's mount id (by device and
    /// the longest mount point above it on kernels before 5.8).
    pub fn of(path: &Path) -> io::Result<Self> {
        MountLine::of(path).map(|l| l.fs)
    }

    /// Whether the names of one file on the filesystem `path` lies on show
    /// one inode number while their link count says 1: the kernel's SMB
    /// client (`cifs`, `smb3`) with the server's inode numbers (`serverino`,
    /// its default; with `noserverino` the client numbers inodes itself, a
    /// file's names apart and across mounts anew, so nothing is grouped).
    pub fn names_share_inode(path: &Path) -> io::Result<bool> {
        let l = MountLine::of(path)?;
        Ok(mountinfo::names_share_inode(&l.fs.fstype, &l.opts))
    }
}

impl MountLine {
    /// The line of the mount `path` (absolute, canonical) lies on, see
    /// [`Filesystem::of`].
    fn of(path: &Path) -> io::Result<Self> {
        let mut at = path;
        let m = loop {
            match Mount::of(at) {
                Ok(m) => break m,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) && at.parent().is_some() =>
                {
                    at = at.parent().expect("checked above");
                }
                Err(e) => return Err(e),
            }
        };
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        Filesystem::find_line(&text, &m, at).ok_or_else(|| {
            io::Error::other(format!(
                "no mount in /proc/self/mountinfo holds `{}`",
                at.display()
            ))
        })
    }
}

impl Filesystem {
    #[cfg(test)]
    fn find(mountinfo: &str, m: &Mount, at: &Path) -> Option<Self> {
        Self::find_line(mountinfo, m, at).map(|l| l.fs)
    }

    /// The line of `mountinfo` for the mount `m` of the existing `at`.
    fn find_line(mountinfo: &str, m: &Mount, at: &Path) -> Option<MountLine> {
        let mut lines = mountinfo.lines().filter_map(MountLine::parse);
        match m.mnt_id {
            Some(id) => lines.rfind(|l| l.id == id),
            None => {
                let dev = format!(
                    "{}:{}",
                    rustix::fs::major(m.id.dev),
                    rustix::fs::minor(m.id.dev)
                );
                lines
                    .filter(|l| l.dev == dev && at.starts_with(&l.fs.mount_point))
                    .max_by_key(|l| l.fs.mount_point.len())
            }
        }
    }

    /// NFS, SMB/CIFS, FUSE (sshfs, rclone…) and the cluster filesystems:
    /// what `require_mounts` accepts. `fuseblk` (a local disk through FUSE,
    /// e.g. NTFS) is not one.
    pub fn is_network(&self) -> bool {
        matches!(
            self.fstype.as_str(),
            "nfs"
                | "nfs4"
                | "cifs"
                | "smb3"
                | "smbfs"
                | "fuse"
                | "ceph"
                | "9p"
                | "afs"
                | "lustre"
                | "gpfs"
                | "glusterfs"
                | "beegfs"
        ) || self.fstype.starts_with("fuse.")
    }

    /// As stored in the DB's `meta` (JSON).
    pub fn to_meta(&self) -> String {
        serde_json::to_string(self).expect("four strings serialize")
    }

    pub fn from_meta(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

impl std::fmt::Display for Filesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` ({}) mounted at `{}`",
            self.source, self.fstype, self.mount_point
        )?;
        if self.root != "/" {
            write!(f, " (its folder `{}`)", self.root)?;
        }
        Ok(())
    }
}

/// What a run does about a root's filesystem (one rule for both roots, and
/// the only mount rail of the roots: a share unmounted leaves its mount
/// point, or the folder above the root, on another filesystem; a share
/// mounted over a local root puts it on another one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsCheck {
    /// First sighting: remember it.
    Record,
    /// As recorded.
    Same,
    /// Another filesystem than the recorded one, described.
    Moved { recorded: String },
    /// `require_mounts` is on and this is not a network filesystem.
    NotNetwork,
}

/// Compares the filesystem a root is on now with the one recorded in the
/// DB. `legacy_mount_point`: a DB from before filesystems were recorded
/// remembers only whether the root was a mount point (`root`: its path).
pub fn fs_check(
    recorded: Option<&Filesystem>,
    legacy_mount_point: Option<bool>,
    root: &Path,
    now: &Filesystem,
    require_network: bool,
) -> FsCheck {
    if require_network && !now.is_network() {
        return FsCheck::NotNetwork;
    }
    match recorded {
        Some(r) if r == now => FsCheck::Same,
        Some(r) => FsCheck::Moved {
            recorded: r.to_string(),
        },
        None if legacy_mount_point == Some(true) && Path::new(&now.mount_point) != root => {
            FsCheck::Moved {
                recorded: format!("a mount point of its own at `{}`", root.display()),
            }
        }
        None => FsCheck::Record,
    }
}

/// What `statx` says of one entry: its identity and its mount.
struct Mount {
    id: RootId,
    /// The kernel's mount id (Linux 5.8+), which tells a bind mount from
    /// its parent even on one filesystem; `None` on older kernels, where
    /// only the device can be compared.
    mnt_id: Option<u64>,
    symlink: bool,
}

impl Mount {
    fn of(path: &Path) -> io::Result<Self> {
        statx(path, AtFlags::empty())
    }

    fn of_nofollow(path: &Path) -> io::Result<Self> {
        statx(path, AtFlags::SYMLINK_NOFOLLOW)
    }

    fn same_mount(&self, root: &Mount) -> bool {
        match (self.mnt_id, root.mnt_id) {
            (Some(a), Some(b)) => a == b && self.id.dev == root.id.dev,
            _ => self.id.dev == root.id.dev,
        }
    }
}

fn statx(path: &Path, flags: AtFlags) -> io::Result<Mount> {
    use rustix::fs::{FileType, StatxFlags};
    let buf = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        flags | AtFlags::NO_AUTOMOUNT,
        StatxFlags::TYPE | StatxFlags::INO | StatxFlags::MNT_ID,
    )?;
    Ok(Mount {
        id: RootId {
            dev: rustix::fs::makedev(buf.stx_dev_major, buf.stx_dev_minor),
            ino: buf.stx_ino,
        },
        mnt_id: (buf.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(buf.stx_mnt_id),
        symlink: FileType::from_raw_mode(u32::from(buf.stx_mode)) == FileType::Symlink,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8(p: &Path) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(p.to_path_buf()).unwrap()
    }

    #[test]
    fn resolves_symlinks_dotdot_and_missing_tails() {
        let t = tempfile::tempdir().unwrap();
        let base = utf8(&std::fs::canonicalize(t.path()).unwrap());
        std::fs::create_dir_all(base.join("root/projects/alpha")).unwrap();
        std::os::unix::fs::symlink(base.join("root/projects"), base.join("link")).unwrap();
        let r = resolve(&base.join("link/alpha")).unwrap();
        assert_eq!(r.path, base.join("root/projects/alpha"));
        assert!(r.exists);
        // `..` after a symlink is applied to where the link leads.
        let r = resolve(&base.join("link/../x")).unwrap();
        assert_eq!(r.path, base.join("root/x"));
        assert!(!r.exists);
        // A missing tail is applied lexically below the nearest ancestor.
        let r = resolve(&base.join("link/new/a/../b/")).unwrap();
        assert_eq!(r.path, base.join("root/projects/new/b"));
        assert!(!r.exists);
    }

    #[test]
    fn overlap_by_path_and_identity() {
        let t = tempfile::tempdir().unwrap();
        let base = utf8(&std::fs::canonicalize(t.path()).unwrap());
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        std::fs::create_dir_all(base.join("c")).unwrap();
        let r = |p: &str| resolve(&base.join(p)).unwrap();
        assert_eq!(overlap(&r("a"), &r("a/")), Some(Overlap::Same));
        assert_eq!(overlap(&r("a/b"), &r("a")), Some(Overlap::Inside));
        assert_eq!(overlap(&r("a"), &r("a/b/new")), Some(Overlap::Contains));
        assert_eq!(overlap(&r("a"), &r("c")), None);
        // `ab` is not inside `a`: components, not text.
        std::fs::create_dir_all(base.join("ab")).unwrap();
        assert_eq!(overlap(&r("ab"), &r("a")), None);
        assert!(file_inside(&r("a/b/job.db"), &r("a")));
        assert!(!file_inside(&r("c/job.db"), &r("a")));
    }

    #[test]
    fn guard_refuses_symlinks_on_the_way() {
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        let (src, dst) = (base.join("src"), base.join("dst"));
        std::fs::create_dir_all(src.join("x")).unwrap();
        std::fs::create_dir_all(dst.join("d")).unwrap();
        std::fs::write(dst.join("d/f"), b"").unwrap();
        std::os::unix::fs::symlink(&src, dst.join("l")).unwrap();
        let mut g = DeleteGuard::new(&dst, RootId::of(&src).unwrap()).unwrap();
        assert_eq!(g.check(&dst.join("d/f")), Ok(()));
        assert_eq!(g.check(&dst.join("d")), Ok(()));
        // The link itself may go; nothing through it.
        assert_eq!(g.check(&dst.join("l")), Ok(()));
        assert_eq!(
            g.check(&dst.join("l/x")),
            Err(Unsafe::Symlink(dst.join("l")))
        );
        assert_eq!(g.check(&dst), Err(Unsafe::Outside(dst.clone())));
        assert_eq!(
            g.check(&base.join("other")),
            Err(Unsafe::Outside(base.join("other")))
        );
    }

    fn fs(fstype: &str, source: &str, at: &str) -> Filesystem {
        Filesystem {
            fstype: fstype.into(),
            source: source.into(),
            mount_point: at.into(),
            root: "/".into(),
        }
    }

    #[test]
    fn mountinfo_lines_by_mount_id_or_device() {
        let info = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    40 27 0:50 / /mnt/my\\040share rw shared:7 - nfs4 srv:/export/a\\134b rw,vers=4.2\n\
                    41 27 254:0 /srv/x /bind rw - ext4 /dev/vda rw\n";
        let m = |mnt_id, dev| Mount {
            id: RootId { dev, ino: 1 },
            mnt_id,
            symlink: false,
        };
        let nfs = Filesystem::find(info, &m(Some(40), 0), Path::new("/mnt/my share/x")).unwrap();
        assert_eq!(nfs, fs("nfs4", "srv:/export/a\\b", "/mnt/my share"));
        assert!(nfs.is_network());
        let bind = Filesystem::find(info, &m(Some(41), 0), Path::new("/bind")).unwrap();
        assert_eq!(bind.root, "/srv/x");
        assert!(bind.to_string().contains("its folder `/srv/x`"), "{bind}");
        // Without mount ids: the device and the longest mount point above.
        let dev = rustix::fs::makedev(254, 0);
        let b = Filesystem::find(info, &m(None, dev), Path::new("/bind/y")).unwrap();
        assert_eq!(b.mount_point, "/bind");
        let r = Filesystem::find(info, &m(None, dev), Path::new("/home")).unwrap();
        assert_eq!(r, fs("ext4", "/dev/vda", "/"));
        assert!(!r.is_network());
        assert_eq!(Filesystem::from_meta(&r.to_meta()), Some(r));
        assert!(Filesystem::find(info, &m(Some(99), 0), Path::new("/")).is_none());
    }

    #[test]
    fn a_missing_root_is_on_its_ancestors_filesystem() {
        let t = tempfile::tempdir().unwrap();
        let here = Filesystem::of(t.path()).unwrap();
        assert_eq!(Filesystem::of(&t.path().join("a/b/c")).unwrap(), here);
        assert_eq!(Filesystem::of(Path::new("/")).unwrap().mount_point, "/");
    }

    #[test]
    fn fs_check_rules() {
        let local = fs("ext4", "/dev/vda", "/");
        let share = fs("nfs4", "srv:/e", "/mnt/s");
        let root = Path::new("/mnt/s/dst");
        assert_eq!(fs_check(None, None, root, &local, false), FsCheck::Record);
        assert_eq!(
            fs_check(Some(&local), None, root, &local, false),
            FsCheck::Same
        );
        assert_eq!(
            fs_check(Some(&share), Some(true), root, &local, false),
            FsCheck::Moved {
                recorded: "`srv:/e` (nfs4) mounted at `/mnt/s`".into()
            }
        );
        // The reverse: a share mounted over a local root.
        assert!(matches!(
            fs_check(Some(&local), None, root, &share, false),
            FsCheck::Moved { .. }
        ));
        assert_eq!(
            fs_check(None, None, root, &local, true),
            FsCheck::NotNetwork
        );
        assert_eq!(
            fs_check(Some(&share), None, root, &share, true),
            FsCheck::Same
        );
        assert_eq!(fs_check(None, None, root, &share, true), FsCheck::Record);
        assert!(fs("fuse.sshfs", "u@h:", "/m").is_network());
        assert!(!fs("fuseblk", "/dev/sdb1", "/m").is_network());
        // A DB from before: it knew only that the root was a mount point.
        let own = fs("nfs4", "srv:/e", "/mnt/s/dst");
        assert_eq!(
            fs_check(None, Some(true), root, &own, false),
            FsCheck::Record
        );
        assert!(matches!(
            fs_check(None, Some(true), root, &local, false),
            FsCheck::Moved { .. }
        ));
        assert_eq!(
            fs_check(None, Some(false), root, &share, false),
            FsCheck::Record
        );
    }
}
