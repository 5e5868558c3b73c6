//! What `lstat` says about an entry ([`Meta`]) and the one nanosecond
//! conversion of stat times ([`ns`]).

use rustix::fs::FileType;

use crate::decide::{EntryKind, Stamp};

/// What `lstat` says about an entry, as much as jobrun uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// `None` for FIFOs, sockets and devices.
    pub kind: Option<EntryKind>,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    pub len: u64,
    pub modified_ns: i64,
    pub accessed_ns: i64,
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
}

/// Seconds and nanoseconds since the epoch (as `stat` gives them) in
/// nanoseconds, saturating: the one conversion every stage uses.
pub fn ns(secs: i64, nanos: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

impl Meta {
    // The field types of `struct stat` differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    pub(super) fn from_stat(st: &rustix::fs::Stat) -> Self {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => Some(EntryKind::File),
            FileType::Directory => Some(EntryKind::Dir),
            FileType::Symlink => Some(EntryKind::Symlink),
            _ => None,
        };
        Meta {
            kind,
            mode: st.st_mode as u32,
            len: st.st_size as u64,
            modified_ns: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            accessed_ns: ns(st.st_atime as i64, st.st_atime_nsec as i64),
            dev: st.st_dev,
            ino: st.st_ino,
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }

    /// Kind, size and mtime, as the scan records them (`None` for a FIFO,
    /// socket or device).
    pub fn stamp(&self) -> Option<Stamp> {
        Some(Stamp {
            kind: self.kind?,
            size: self.len,
            modified_ns: self.modified_ns,
        })
    }
}
