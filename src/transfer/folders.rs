//! Folders recently checked by a lane, shared by all lanes of one side.
//!
//! Before a file is read (source) or written (destination), its folder is
//! checked: every folder from the root down is looked up to make sure none
//! is a symlink (and, on the destination, the folder is created if
//! missing). On a share each lookup can be a round trip, and with several
//! lanes working in the same folders the one-folder memo a lane kept missed
//! most of the time (netlab `small`, 4 lanes: ~6,000 folder lookups and
//! ~500 `mkdir`s racing each other for 390 folders). A folder checked by
//! any lane within [`TTL`] is taken as checked: the window in which a
//! folder swapped for a symlink would go unnoticed stays as short as it was
//! with one lane, while a folder of thousands of files is checked again
//! every couple of seconds rather than once per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a check holds.
pub const TTL: Duration = Duration::from_secs(2);
/// Entries kept at most; expired ones are dropped first, then all.
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Default)]
pub struct CheckedFolders {
    seen: Mutex<HashMap<PathBuf, Instant>>,
}

impl CheckedFolders {
    /// Whether `dir` was checked less than [`TTL`] ago.
    pub fn is_fresh(&self, dir: &Path) -> bool {
        self.lock().get(dir).is_some_and(|at| at.elapsed() < TTL)
    }

    /// Records that `dir` has just been checked.
    pub fn checked(&self, dir: &Path) {
        let mut seen = self.lock();
        if seen.len() >= MAX_ENTRIES {
            seen.retain(|_, at| at.elapsed() < TTL);
            if seen.len() >= MAX_ENTRIES {
                seen.clear();
            }
        }
        seen.insert(dir.to_path_buf(), Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Instant>> {
        // Plain data: a lane that panicked mid-insert leaves it usable.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_only_after_a_check_and_bounded() {
        let c = CheckedFolders::default();
        assert!(!c.is_fresh(Path::new("/a")));
        c.checked(Path::new("/a"));
        assert!(c.is_fresh(Path::new("/a")));
        assert!(!c.is_fresh(Path::new("/a/b")));
        for i in 0..MAX_ENTRIES + 10 {
            c.checked(&PathBuf::from(format!("/d{i}")));
        }
        assert!(c.lock().len() <= MAX_ENTRIES);
        assert!(c.is_fresh(Path::new(&format!("/d{}", MAX_ENTRIES + 9))));
    }

    #[test]
    fn a_check_expires() {
        let c = CheckedFolders::default();
        c.lock().insert(
            PathBuf::from("/old"),
            Instant::now() - TTL - Duration::from_millis(1),
        );
        assert!(!c.is_fresh(Path::new("/old")));
    }
}
