//! Creation times on the destinations that take them: a share mounted by
//! the kernel's SMB client (cifs), through its `user.cifs.creationtime`
//! extended attribute. Elsewhere (local disks, NFS) a creation time cannot
//! be set; it is only recorded in the state DB by the scan.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use rustix::fs::XattrFlags;

use super::Root;

/// `f_type` of a cifs mount (SMB1 dialect and SMB2/3).
const CIFS_MAGIC: u64 = 0xFF53_4D42;
const SMB2_MAGIC: u64 = 0xFE53_4D42;

/// The cifs client's pseudo attribute: 8 bytes, little-endian, Windows
/// FILETIME (100 ns since 1601-01-01 UTC). Setting it sends the server an
/// SMB2 SET_INFO with that creation time.
const CREATION_XATTR: &str = "user.cifs.creationtime";

/// 100 ns intervals from 1601-01-01 to 1970-01-01.
const NT_EPOCH: i64 = 116_444_736_000_000_000;

/// `unix_ns` as a FILETIME; 0 (the FILETIME of "no time") before 1601,
/// the last FILETIME past its end (year 60056).
pub(super) fn nt_time(unix_ns: i128) -> u64 {
    u64::try_from((unix_ns.div_euclid(100) + i128::from(NT_EPOCH)).max(0)).unwrap_or(u64::MAX)
}

impl Root {
    /// Whether entries below this root take a creation time: the root is on
    /// a cifs mount. Looked up once per root (`fstatfs`), then remembered.
    pub fn takes_creation_time(&self) -> bool {
        *self.cifs.get_or_init(|| {
            rustix::fs::fstatfs(&self.fd)
                .is_ok_and(|s| matches!(s.f_type as u64, CIFS_MAGIC | SMB2_MAGIC))
        })
    }

    /// Gives `file`, created below this root, the creation time
    /// `created_ns` (ns since the epoch) where the destination takes one
    /// (see [`Root::takes_creation_time`]); elsewhere, or without a recorded
    /// time, it does nothing. Set before the file's mtime: the server may
    /// stamp times while the file is open, never its creation time.
    pub fn set_created(&self, file: &File, created_ns: Option<i128>) -> io::Result<()> {
        let Some(nt) = created_ns.map(nt_time) else {
            return Ok(());
        };
        if !self.takes_creation_time() {
            return Ok(());
        }
        rustix::fs::fsetxattr(
            file.as_fd(),
            CREATION_XATTR,
            &nt.to_le_bytes(),
            XattrFlags::empty(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetime_counts_100ns_from_1601() {
        assert_eq!(nt_time(0), 116_444_736_000_000_000);
        // 2020-09-13T12:26:40.123456789Z keeps 100 ns: …1234567.
        assert_eq!(
            nt_time(1_600_000_000_123_456_789),
            116_444_736_000_000_000 + 16_000_000_001_234_567
        );
        assert_eq!(nt_time(-1), 116_444_735_999_999_999);
        assert!(nt_time(i64::MIN.into()) > 0);
        assert_eq!(nt_time(-11_644_473_600_000_000_000 - 100), 0, "before 1601");
        assert_eq!(nt_time(i128::MAX), u64::MAX, "past 60056");
    }

    #[test]
    fn a_local_root_takes_no_creation_time_and_gets_no_attribute() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        assert!(!root.takes_creation_time());
        let f = File::create(t.path().join("f")).unwrap();
        root.set_created(&f, Some(1_600_000_000_000_000_000))
            .unwrap();
        let mut buf = [0u8; 64];
        let got = rustix::fs::fgetxattr(f.as_fd(), CREATION_XATTR, &mut buf);
        assert!(got.is_err(), "no {CREATION_XATTR} on a local file: {got:?}");
    }
}
