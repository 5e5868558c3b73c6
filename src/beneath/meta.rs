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
    pub modified_ns: i128,
    pub accessed_ns: i128,
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
}

/// Seconds and nanoseconds since the epoch (as `stat` gives them) in
/// nanoseconds, exact over any `stat` time (i128: an i64 of ns ends in
/// 2262, ext4 keeps 2446): the one conversion every stage uses.
pub fn ns(secs: i64, nanos: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nanos)
}

/// A `SystemTime` (a birth time) in nanoseconds since the epoch, before
/// it too.
pub fn system_ns(t: std::time::SystemTime) -> i128 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
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
