//! Setting atime and mtime on destination entries by path.
//!
//! One `utimensat(2)` with `AT_SYMLINK_NOFOLLOW` per entry.
//! `filetime::set_file_times` opens the file and sets the times on the
//! handle, which on a network share is an extra open and close round trip
//! per file and per folder (sshfs: OPEN + CLOSE, ~3 ms each under load on
//! netlab, where the copy itself of a small file takes a few ms). Not
//! following a symlink also means a folder swapped for a symlink gets its
//! own times changed, never those of whatever it points to.

use std::io;
use std::path::Path;

use filetime::FileTime;

/// Sets the access and modification times (ns since the epoch) of `path`
/// itself (a symlink is not followed).
pub fn set_by_path(path: &Path, accessed_ns: i64, modified_ns: i64) -> io::Result<()> {
    filetime::set_symlink_file_times(path, file_time(accessed_ns), file_time(modified_ns))
}

fn file_time(ns: i64) -> FileTime {
    FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sets_ns_times_on_files_folders_and_symlinks_themselves() {
        let t = tempfile::tempdir().unwrap();
        let (f, d, l) = (t.path().join("f"), t.path().join("d"), t.path().join("l"));
        std::fs::write(&f, b"x").unwrap();
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::symlink(&f, &l).unwrap();
        let before = std::fs::metadata(&f).unwrap().mtime();
        for (p, a, m) in [
            (&f, 1_000_000_001, 1_500_000_000_123_456_789),
            (&d, 7, -1_000_000_000),
            (&l, 3, 1_600_000_000_000_000_001),
        ] {
            set_by_path(p, a, m).unwrap();
            let md = std::fs::symlink_metadata(p).unwrap();
            assert_eq!(md.mtime() * 1_000_000_000 + md.mtime_nsec(), m, "{p:?}");
            assert_eq!(md.atime() * 1_000_000_000 + md.atime_nsec(), a, "{p:?}");
        }
        // The symlink's own times changed, not its target's.
        assert_eq!(
            std::fs::metadata(&f).unwrap().mtime(),
            1_500_000_000,
            "target keeps the time set on it directly (was {before})"
        );
        assert!(set_by_path(&t.path().join("missing"), 0, 0).is_err());
    }
}
