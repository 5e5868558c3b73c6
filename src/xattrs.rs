//! Extended attributes and ACLs (docs/tree-fidelity.md "Extended attributes and ACLs"):
//! what the source's ACLs allow the group (never more at the destination),
//! the attributes copied with `xattrs`/`acls`, and the once-per-run warning
//! when a destination refuses them. Every call is rustix's, on an open
//! descriptor (no path looked up again).
//!
//! The rule this leaf exists for: with an access ACL, `stat`'s group bits
//! are the ACL's *mask*, not the owning group's entry (`ACL_GROUP_OBJ`). A
//! `0600` file with `user:nobody:rw` shows `0660`; copying those bits
//! without the ACL would let the owning group read what the source denied
//! it. Without `acls`, the group bits of a copy are narrowed to the
//! owning-group entry ([`narrowed_mode`]), as `cp` without `--preserve`.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use rustix::fs::XattrFlags;
use rustix::io::Errno;
use tracing::warn;

/// The access ACL of a file or folder (POSIX, the kernel's binary form).
pub const ACL_ACCESS: &str = "system.posix_acl_access";
/// The default ACL of a folder (what new entries in it inherit).
pub const ACL_DEFAULT: &str = "system.posix_acl_default";
/// NFSv4 ACLs (the NFS client) and SMB security descriptors (the CIFS client).
pub const NFS4_ACL: &str = "system.nfs4_acl";
pub const CIFS_ACL: &str = "system.cifs_acl";

/// `posix_acl_xattr_header.a_version`.
const ACL_VERSION: u32 = 2;
/// `ACL_GROUP_OBJ`: the owning group's entry.
const ACL_GROUP_OBJ: u16 = 0x04;
const HEADER: usize = 4;
const ENTRY: usize = 8;

/// The permission bits (`rwx`, 0..=7) of the owning-group entry of an ACL
/// in the kernel's `system.posix_acl_access` form: a little-endian `u32`
/// version (2), then 8-byte entries `{tag u16, perm u16, id u32}`. `None`
/// when the bytes are not such an ACL or have no owning-group entry.
pub fn group_obj(acl: &[u8]) -> Option<u32> {
    let body = acl.get(HEADER..)?;
    let version = u32::from_le_bytes(acl.get(..HEADER)?.try_into().ok()?);
    if version != ACL_VERSION || !body.len().is_multiple_of(ENTRY) {
        return None;
    }
    body.chunks_exact(ENTRY).find_map(|e| {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        (tag == ACL_GROUP_OBJ).then_some(u32::from(perm) & 0o7)
    })
}

/// `mode` with its group bits no wider than `group_obj` allows (`None`:
/// an ACL that cannot be read: no group bits at all, the safe side).
pub fn narrow_group(mode: u32, group_obj: Option<u32>) -> u32 {
    let allowed = group_obj.map_or(0, |g| g << 3);
    (mode & !0o070) | (mode & 0o070 & allowed)
}

/// The mode a copy without its ACL may have: `mode` (from `fstat` of `fd`)
/// with the group bits narrowed to the access ACL's owning-group entry
/// when the entry has one. No ACL (or a filesystem without them): `mode`
/// as it is. Group bits already empty cost no call.
pub fn narrowed_mode(fd: impl AsFd, mode: u32) -> u32 {
    if mode & 0o070 == 0 {
        return mode;
    }
    match get(fd, ACL_ACCESS) {
        Ok(Some(acl)) => narrow_group(mode, group_obj(&acl)),
        Ok(None) => mode,
        // An ACL that exists but cannot be read: nothing for the group.
        Err(_) => narrow_group(mode, None),
    }
}

/// Whether an error says the attribute (or attributes at all) is absent.
fn absent(e: Errno) -> bool {
    e == Errno::NODATA || e == Errno::NOTSUP || e == Errno::OPNOTSUPP
}

/// The value of attribute `name` of `fd`; `None` when it has none or its
/// filesystem keeps no attributes.
pub fn get(fd: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<Option<Vec<u8>>> {
    let (fd, name) = (fd.as_fd(), name.as_ref());
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if absent(e) => return Ok(None),
            Err(Errno::RANGE) => {
                let n = match rustix::fs::fgetxattr_query(fd, name) {
                    Ok(n) => n,
                    Err(e) if absent(e) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                buf.resize(n.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The names of `fd`'s attributes (every namespace the caller may see).
pub fn names(fd: impl AsFd) -> io::Result<Vec<OsString>> {
    let fd = fd.as_fd();
    let mut buf = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => break n,
            Err(e) if absent(e) => return Ok(Vec::new()),
            Err(Errno::RANGE) => {
                let want: usize = rustix::fs::flistxattr(fd, &mut [0u8; 0][..])?;
                buf.resize(want.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(split_names(&buf[..n]))
}

/// The NUL-separated list `listxattr` returns, as names.
fn split_names(list: &[u8]) -> Vec<OsString> {
    list.split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| OsStr::from_bytes(n).to_os_string())
        .collect()
}

/// Which attributes a run copies (`xattrs`, `acls`) and which it only
/// counts as left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keep {
    pub xattrs: bool,
    pub acls: bool,
    /// `trusted.*` is readable and writable by root only.
    pub root: bool,
}

/// What an attribute name is, for the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `user.*`, and `trusted.*` as root: the `xattrs` key.
    Xattr,
    /// An ACL of any model: the `acls` key.
    Acl,
    /// Anything else (`security.*`, the filesystem's own): never copied.
    Other,
}

pub fn kind(name: &OsStr, root: bool) -> Kind {
    let b = name.as_bytes();
    if b.starts_with(b"user.") || (root && b.starts_with(b"trusted.")) {
        Kind::Xattr
    } else if [ACL_ACCESS, ACL_DEFAULT, NFS4_ACL, CIFS_ACL]
        .iter()
        .any(|a| a.as_bytes() == b)
    {
        Kind::Acl
    } else {
        Kind::Other
    }
}

impl Keep {
    /// Whether attribute `name` is copied.
    pub fn copies(&self, name: &OsStr) -> bool {
        match kind(name, self.root) {
            Kind::Xattr => self.xattrs,
            Kind::Acl => self.acls,
            Kind::Other => false,
        }
    }

    pub fn any(&self) -> bool {
        self.xattrs || self.acls
    }
}

/// One attribute: its name and value.
pub type Attr = (OsString, Vec<u8>);

/// What an entry carries that the keys leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeftOut {
    pub xattrs: bool,
    pub acls: bool,
}

impl Keep {
    /// Of the attribute `names` an entry carries, the kinds left out.
    pub fn left_out<'n>(&self, names: impl IntoIterator<Item = &'n OsString>) -> LeftOut {
        let mut left = LeftOut::default();
        for n in names {
            match kind(n, self.root) {
                Kind::Xattr if !self.xattrs => left.xattrs = true,
                Kind::Acl if !self.acls => left.acls = true,
                _ => {}
            }
        }
        left
    }
}

/// The attributes of `fd` that `keep` copies, with their values, and the
/// kinds it carries that `keep` leaves out.
pub fn read(fd: impl AsFd, keep: Keep) -> io::Result<(Vec<Attr>, LeftOut)> {
    let fd = fd.as_fd();
    let all = names(fd)?;
    let left = keep.left_out(&all);
    let mut out = Vec::new();
    for name in all {
        if keep.copies(&name)
            && let Some(v) = get(fd, &name)?
        {
            out.push((name, v));
        }
    }
    Ok((out, left))
}

/// The run's attribute policy, shared by every lane and the committer.
#[derive(Debug, Default)]
pub struct Attrs {
    pub keep: Keep,
    warned: AtomicBool,
    refused: AtomicU64,
    /// Entries copied without attributes they carry (`xattrs`, `acls` off).
    left_xattrs: AtomicU64,
    left_acls: AtomicU64,
}

impl Attrs {
    pub fn new(xattrs: bool, acls: bool) -> Self {
        Self {
            keep: Keep {
                xattrs,
                acls,
                root: rustix::process::geteuid().is_root(),
            },
            ..Self::default()
        }
    }

    /// The attributes of the source entry `fd` to copy (none unless
    /// `xattrs`/`acls`), counting the kinds it carries that are left out.
    /// Attributes that cannot be read are not copied (the entry is).
    pub fn read(&self, fd: impl AsFd, path: &Path) -> Vec<Attr> {
        match read(fd, self.keep) {
            Ok((attrs, left)) => {
                self.left_xattrs.fetch_add(u64::from(left.xattrs), Relaxed);
                self.left_acls.fetch_add(u64::from(left.acls), Relaxed);
                attrs
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "attributes not read");
                Vec::new()
            }
        }
    }

    /// Entries copied this run without the extended attributes and the
    /// ACLs they carry (`xattrs`, `acls` off).
    pub fn left_out(&self) -> (u64, u64) {
        (self.left_xattrs.load(Relaxed), self.left_acls.load(Relaxed))
    }

    /// Gives `fd` the attributes `attrs` (read from its source) and takes
    /// off the copied kinds it has and the source has not. Best-effort: a
    /// destination that refuses them (`ENOTSUP`, `E2BIG`, `EPERM`, …)
    /// keeps the file; one warning per run, every refused entry counted.
    pub fn apply(&self, fd: impl AsFd, attrs: &[Attr], path: &Path) {
        if !self.keep.any() {
            return;
        }
        let fd = fd.as_fd();
        let mut result = Ok(());
        if let Ok(have) = names(fd) {
            for stale in have.iter().filter(|n| self.keep.copies(n)) {
                if !attrs.iter().any(|(n, _)| n == stale)
                    && let Err(e) = rustix::fs::fremovexattr(fd, stale.as_os_str())
                    && e != Errno::NODATA
                {
                    result = Err(e);
                }
            }
        }
        for (name, value) in attrs {
            if let Err(e) = rustix::fs::fsetxattr(fd, name.as_os_str(), value, XattrFlags::empty())
            {
                result = Err(e);
            }
        }
        if let Err(e) = result {
            self.refused(path, e.into());
        }
    }

    fn refused(&self, path: &Path, e: io::Error) {
        self.refused.fetch_add(1, Relaxed);
        if !self.warned.swap(true, Relaxed) {
            warn!(path = %path.display(), error = %e,
                "the destination refused extended attributes or ACLs (xattrs/acls); entries are kept without them; not reported again this run");
        }
    }

    /// Entries whose attributes the destination refused this run.
    pub fn refused_count(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// At the end of the transfer: how many entries the destination kept
    /// without their attributes, when any.
    pub fn report(&self) {
        let n = self.refused_count();
        if n > 0 {
            warn!(
                count = n,
                "{n} entries kept without their extended attributes or ACLs (refused by the destination)"
            );
        }
        let (xattrs, acls) = self.left_out();
        if let Some(line) = left_out_line(xattrs, acls) {
            warn!(xattrs, acls, "{line}");
        }
    }
}

/// The never-silent line: what was copied without attributes it carries,
/// naming the key that leaves them out; `None` when nothing was.
pub fn left_out_line(xattrs: u64, acls: u64) -> Option<String> {
    let mut parts = Vec::new();
    if acls > 0 {
        parts.push(format!(
            "{acls} carry ACLs that are not copied: acls = false"
        ));
    }
    if xattrs > 0 {
        parts.push(format!(
            "{xattrs} carry extended attributes that are not copied: xattrs = false"
        ));
    }
    (!parts.is_empty()).then(|| format!("entries copied: {}", parts.join("; ")))
}

/// `check`'s quick look: the source root and its first `limit` entries
/// (breadth first, never through a symlink), each with its `lstat` (none
/// when it cannot be read). One walk serves every probe of `check`.
pub fn first_entries(root: &Path, limit: usize) -> Vec<(PathBuf, Option<std::fs::Metadata>)> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([root.to_path_buf()]);
    while let Some(p) = queue.pop_front() {
        if out.len() > limit {
            break;
        }
        let md = std::fs::symlink_metadata(&p).ok();
        if let Some(entries) = md
            .as_ref()
            .filter(|m| m.is_dir())
            .and_then(|_| std::fs::read_dir(&p).ok())
        {
            let room = (limit + 1).saturating_sub(out.len() + 1 + queue.len());
            queue.extend(entries.filter_map(|e| e.ok().map(|e| e.path())).take(room));
        }
        out.push((p, md));
    }
    out
}

/// Of `paths`, how many carry extended attributes and how many ACLs that
/// `keep` leaves out.
pub fn left_out_among<'a>(paths: impl Iterator<Item = &'a Path>, keep: Keep) -> (u64, u64) {
    let (mut xattrs, mut acls) = (0u64, 0u64);
    for p in paths {
        let left = keep.left_out(&path_names(p));
        xattrs += u64::from(left.xattrs);
        acls += u64::from(left.acls);
    }
    (xattrs, acls)
}

/// The attribute names of `path` itself (never followed); none when they
/// cannot be listed.
fn path_names(path: &Path) -> Vec<OsString> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::llistxattr(path, &mut buf[..]) {
        Ok(n) => split_names(&buf[..n]),
        Err(_) => Vec::new(),
    }
}

/// The ACL model of a filesystem: which ACLs `acls = true` copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclModel {
    /// POSIX access and default ACLs (local filesystems, NFSv3).
    Posix,
    /// `system.nfs4_acl` (the NFSv4 client).
    Nfs4,
    /// `system.cifs_acl` (the SMB client's security descriptors).
    Smb,
}

impl std::fmt::Display for AclModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Posix => "POSIX ACLs",
            Self::Nfs4 => "NFSv4 ACLs",
            Self::Smb => "SMB security descriptors",
        })
    }
}

const NFS_SUPER_MAGIC: u64 = 0x6969;
const CIFS_MAGIC: u64 = 0xFF53_4D42;
const SMB2_MAGIC: u64 = 0xFE53_4D42;

/// The model from `statfs`'s magic and, for NFS (whose magic is the same
/// for every version), the mount's filesystem type (`nfs4` or `nfs`).
pub fn model_of(magic: u64, fstype: Option<&str>) -> AclModel {
    match magic {
        NFS_SUPER_MAGIC if fstype == Some("nfs4") => AclModel::Nfs4,
        CIFS_MAGIC | SMB2_MAGIC => AclModel::Smb,
        _ => AclModel::Posix,
    }
}

/// The ACL model of the filesystem holding `path`, or of its nearest
/// existing ancestor (a destination root a run will create); `None` when
/// none can be looked at.
pub fn acl_model(path: &Path) -> Option<AclModel> {
    let (at, fs) = path
        .ancestors()
        .find_map(|a| rustix::fs::statfs(a).ok().map(|fs| (a, fs)))?;
    #[allow(clippy::unnecessary_cast)]
    let magic = fs.f_type as u64;
    let fstype = (magic == NFS_SUPER_MAGIC)
        .then(|| mount_fstype(at))
        .flatten();
    Some(model_of(magic, fstype.as_deref()))
}

/// The filesystem type of the mount holding `path` (`roots`: by the
/// kernel's mount id, one reading of mountinfo for the whole house).
fn mount_fstype(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    crate::roots::Filesystem::of(&path).ok().map(|f| f.fstype)
}

/// With `acls = true`, the line refusing two roots of different ACL
/// models (no translation between them); `None` when they match or one
/// cannot be told.
pub fn models_differ(source: &Path, destination: &Path) -> Option<String> {
    let (s, d) = (acl_model(source)?, acl_model(destination)?);
    model_refusal((source, s), (destination, d))
}

/// With `acls = true`, the line saying that the source cannot show the
/// ACLs of its model (its filesystem answers "not supported" for the
/// model's attribute on the source root: an NFS server without ACLs, a
/// filesystem mounted without them), so none is copied; `None` when it
/// can, or cannot be asked (another rail says why).
pub fn acls_unseen(source: &Path) -> Option<String> {
    let model = acl_model(source)?;
    let name = match model {
        AclModel::Posix => ACL_ACCESS,
        AclModel::Nfs4 => NFS4_ACL,
        AclModel::Smb => CIFS_ACL,
    };
    let e = rustix::fs::getxattr(source, name, &mut [0u8; 0][..]).err()?;
    unseen_line(
        source,
        model,
        name,
        e == Errno::NOTSUP || e == Errno::OPNOTSUPP,
    )
}

/// The line of [`acls_unseen`], pure: `unsupported` when the source's
/// filesystem says it keeps no such attribute.
fn unseen_line(source: &Path, model: AclModel, name: &str, unsupported: bool) -> Option<String> {
    unsupported.then(|| {
        format!(
            "the source `{}` shows no {model} ({name}: not supported by its filesystem or \
             server): acls = true copies none from it; files keep only their permission bits",
            source.display()
        )
    })
}

/// The refusal line of [`models_differ`], pure.
fn model_refusal(
    (source, s): (&Path, AclModel),
    (destination, d): (&Path, AclModel),
) -> Option<String> {
    (s != d).then(|| {
        format!(
            "the source `{}` keeps {s} and the destination `{}` keeps {d}: \
             jobrun does not translate ACLs between models; remove `acls` or use two roots of one model",
            source.display(),
            destination.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = ACL_VERSION.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            v.extend(tag.to_le_bytes());
            v.extend(perm.to_le_bytes());
            v.extend(id.to_le_bytes());
        }
        v
    }

    /// `0600` + `user:nobody:rw`: user_obj rw, user nobody rw, group_obj
    /// none, mask rw, other none (what `setfacl -m u:nobody:rw` writes).
    fn nobody_rw() -> Vec<u8> {
        acl(&[
            (0x01, 6, u32::MAX),
            (0x02, 6, 65534),
            (0x04, 0, u32::MAX),
            (0x10, 6, u32::MAX),
            (0x20, 0, u32::MAX),
        ])
    }

    #[test]
    fn the_owning_group_entry_is_read_not_the_mask() {
        assert_eq!(group_obj(&nobody_rw()), Some(0));
        let g_r = acl(&[(0x01, 7, 0), (0x04, 4, 0), (0x08, 7, 50), (0x10, 7, 0)]);
        assert_eq!(group_obj(&g_r), Some(4));
    }

    #[test]
    fn bad_acl_bytes_are_not_an_acl() {
        assert_eq!(group_obj(&[]), None);
        assert_eq!(group_obj(&[2, 0, 0]), None, "short header");
        let mut v = nobody_rw();
        v.pop();
        assert_eq!(group_obj(&v), None, "torn entry");
        let mut v1 = nobody_rw();
        v1[0] = 1;
        assert_eq!(group_obj(&v1), None, "unknown version");
        assert_eq!(group_obj(&acl(&[(0x01, 6, 0)])), None, "no group entry");
    }

    #[test]
    fn group_bits_never_wider_than_the_owning_group() {
        assert_eq!(narrow_group(0o100660, Some(0)), 0o100600);
        assert_eq!(narrow_group(0o100670, Some(4)), 0o100640);
        assert_eq!(narrow_group(0o100640, Some(7)), 0o100640, "never widened");
        assert_eq!(narrow_group(0o42775, None), 0o42705, "unreadable: none");
    }

    #[test]
    fn a_source_that_cannot_show_acls_is_said() {
        let p = Path::new("/mnt/old");
        assert_eq!(
            unseen_line(p, AclModel::Nfs4, NFS4_ACL, true).as_deref(),
            Some(
                "the source `/mnt/old` shows no NFSv4 ACLs (system.nfs4_acl: not supported by \
                 its filesystem or server): acls = true copies none from it; files keep only \
                 their permission bits"
            )
        );
        assert_eq!(unseen_line(p, AclModel::Posix, ACL_ACCESS, false), None);
        // A folder that can hold ACLs (this one has none: "no data").
        let t = tempfile::tempdir().unwrap();
        if rustix::fs::getxattr(t.path(), ACL_ACCESS, &mut [0u8; 0][..]) == Err(Errno::NODATA) {
            assert_eq!(acls_unseen(t.path()), None);
        }
        assert_eq!(acls_unseen(Path::new("/no/such/root")), None);
    }

    #[test]
    fn acl_models_by_magic_and_nfs_version() {
        assert_eq!(model_of(0xEF53, None), AclModel::Posix, "ext4");
        assert_eq!(model_of(0x6969, Some("nfs")), AclModel::Posix, "NFSv3");
        assert_eq!(model_of(0x6969, Some("nfs4")), AclModel::Nfs4);
        assert_eq!(model_of(0xFF53_4D42, None), AclModel::Smb);
        assert_eq!(model_of(0xFE53_4D42, Some("smb3")), AclModel::Smb);
        let (a, b) = (Path::new("/mnt/old"), Path::new("/mnt/new"));
        assert_eq!(
            model_refusal((a, AclModel::Posix), (b, AclModel::Posix)),
            None
        );
        assert_eq!(
            model_refusal((a, AclModel::Nfs4), (b, AclModel::Smb)).as_deref(),
            Some(
                "the source `/mnt/old` keeps NFSv4 ACLs and the destination `/mnt/new` keeps \
                 SMB security descriptors: jobrun does not translate ACLs between models; \
                 remove `acls` or use two roots of one model"
            )
        );
        assert_eq!(
            acl_model(Path::new("/proc/self/no/such/thing")),
            Some(AclModel::Posix)
        );
    }

    #[test]
    fn names_and_kinds() {
        assert_eq!(
            split_names(b"user.a\0system.posix_acl_access\0"),
            vec![OsString::from("user.a"), OsString::from(ACL_ACCESS)]
        );
        assert_eq!(split_names(b""), Vec::<OsString>::new());
        assert_eq!(kind(OsStr::new("user.x"), false), Kind::Xattr);
        assert_eq!(kind(OsStr::new("trusted.x"), false), Kind::Other);
        assert_eq!(kind(OsStr::new("trusted.x"), true), Kind::Xattr);
        assert_eq!(kind(OsStr::new(ACL_DEFAULT), false), Kind::Acl);
        assert_eq!(kind(OsStr::new("security.selinux"), true), Kind::Other);
        let keep = Keep {
            xattrs: true,
            acls: false,
            root: false,
        };
        assert!(keep.copies(OsStr::new("user.x")));
        assert!(!keep.copies(OsStr::new(ACL_ACCESS)));
    }
}
