//! Names and metadata every stage may use: jobrun's own temporaries (a
//! row's, a root probe's) and how they are recognised, NFS silly-rename
//! files, and lstat data as a [`ScanEntry`].

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::beneath::ns;
use crate::db::{RowId, ScanEntry};
use crate::decide::EntryKind;

/// Name of the temporary sibling for row `id`: short (a long source name
/// cannot push it past NAME_MAX), unique per row, and recognisable by the
/// scan and the mirror stage as never being user data.
pub fn temp_name(id: RowId) -> String {
    format!(".jobrun-{id}.tmp")
}

/// Name of a root probe's temporary (`.jobrun-0<pid>.tmp`): a temporary's
/// name, which no row uses (row ids have no leading zero), removed by the
/// next scan if a kill leaves it behind. Only letters `jobrun`, `tmp`: its
/// upper case differs in every letter (the case probe relies on it).
pub fn probe_name() -> OsString {
    OsString::from(format!(".jobrun-0{}.tmp", std::process::id()))
}

/// Whether `name` is one of jobrun's own temporaries (see `transfer::temp_name`).
pub fn is_temp_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b".jobrun-")
        && b.ends_with(b".tmp")
        && b.len() > 12
        && b[8..b.len() - 4].iter().all(u8::is_ascii_digit)
}

/// Whether `name` is an NFS client's "silly rename" (`.nfs` and 24 hex
/// digits, Linux; other clients use other lengths of hex): a file deleted
/// while some process had it open, which the client removes at the last
/// close. Never data to copy, never an extra to delete (the unlink would
/// only rename it again, or fail with EBUSY).
pub fn is_nfs_silly_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.len() >= 4 + 16 && b.starts_with(b".nfs") && b[4..].iter().all(u8::is_ascii_hexdigit)
}

/// Converts lstat data into a row; `None` for FIFOs, sockets and devices.
/// `inode_dev`: the device of a source whose names of one file share an
/// inode with a link count of 1 (see [`link_key`]).
pub fn to_entry(
    path: PathBuf,
    md: &std::fs::Metadata,
    inode_dev: Option<u64>,
) -> Option<ScanEntry> {
    use std::os::unix::fs::MetadataExt;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        return None;
    };
    let created_ns = md.created().ok().map(crate::beneath::system_ns);
    Some(ScanEntry {
        path,
        kind,
        size: md.len(),
        modified_ns: ns(md.mtime(), md.mtime_nsec()),
        accessed_ns: ns(md.atime(), md.atime_nsec()),
        changed_ns: ns(md.ctime(), md.ctime_nsec()),
        created_ns,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        // From the walk's own stat: no extra system call.
        link: link_key(
            kind == EntryKind::File,
            md.nlink(),
            (md.dev(), md.ino()),
            inode_dev,
        ),
    })
}

/// The (device, inode) a file's row records for its hard-link group, or
/// `None` when it is in none. A link count above 1 says so; so does any
/// file on `inode_dev`, the device of a source whose client shows a link
/// count of 1 for every name but one inode number for the names of one
/// file (the kernel's SMB client, see `roots::Filesystem::names_share_inode`):
/// there the groups are the rows sharing it (`StateDb::link_shared`,
/// `StateDb::shared_link_names`), found in the DB, not in memory.
pub fn link_key(
    is_file: bool,
    nlink: u64,
    (dev, ino): (u64, u64),
    inode_dev: Option<u64>,
) -> Option<(u64, u64)> {
    (is_file && (nlink > 1 || inode_dev == Some(dev))).then_some((dev, ino))
}

/// The never-silent line of the hard links and holes a job leaves out
/// (`hard_links = false`, `sparse = false`); `None` when none.
pub fn tree_left_out_line(hard_linked: u64, sparse: u64) -> Option<String> {
    let mut parts = Vec::new();
    if hard_linked > 0 {
        parts.push(format!(
            "{hard_linked} source files are hard links, each name copied on its own: hard_links = false"
        ));
    }
    if sparse > 0 {
        parts.push(format!(
            "{sparse} source files have holes, written as zeros: sparse = false"
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        assert!(is_temp_name(OsStr::new(".jobrun-12.tmp")));
        assert!(!is_temp_name(OsStr::new(".jobrun-.tmp")));
        assert!(!is_temp_name(OsStr::new(".jobrun-1a.tmp")));
        assert!(!is_temp_name(OsStr::new("jobrun-12.tmp")));
        assert!(!is_temp_name(OsStr::new("data.tmp")));
    }

    #[test]
    fn nfs_silly_names() {
        assert!(is_nfs_silly_name(OsStr::new(
            ".nfs000000000012a4f700000001"
        )));
        assert!(!is_nfs_silly_name(OsStr::new(".nfs")));
        assert!(!is_nfs_silly_name(OsStr::new(".nfsrc")));
        assert!(!is_nfs_silly_name(OsStr::new(".nfs0000000000zz")));
        assert!(!is_nfs_silly_name(OsStr::new(
            "x.nfs000000000012a4f700000001"
        )));
    }

    #[test]
    fn a_files_group_key_from_its_link_count_or_its_sources_inode_numbers() {
        let (dev, other) = (41, 42);
        // Local disks and NFS: the link count decides.
        assert_eq!(link_key(true, 2, (dev, 7), None), Some((dev, 7)));
        assert_eq!(link_key(true, 1, (dev, 7), None), None);
        // The SMB client: a link count of 1, every file on its device keyed.
        assert_eq!(link_key(true, 1, (dev, 7), Some(dev)), Some((dev, 7)));
        assert_eq!(link_key(true, 3, (dev, 7), Some(dev)), Some((dev, 7)));
        // A mount nested below it (another device) goes by its link count.
        assert_eq!(link_key(true, 1, (other, 7), Some(dev)), None);
        // Folders and symlinks are never in a group.
        assert_eq!(link_key(false, 1, (dev, 7), Some(dev)), None);
        assert_eq!(link_key(false, 2, (dev, 7), None), None);
    }

    #[test]
    fn probe_names_are_temporaries() {
        assert!(is_temp_name(&probe_name()));
        assert_ne!(probe_name().to_ascii_uppercase(), probe_name());
    }
}
