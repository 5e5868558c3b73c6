//! The filesystem: jobrun's temporaries, FIFOs, tmpfs mounts, owners.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn is_temp(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b".jobrun-") && b.ends_with(b".tmp")
}

/// jobrun temporaries anywhere under `root`.
pub fn temps(root: &Path) -> Vec<PathBuf> {
    if !root.exists() {
        return vec![];
    }
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| is_temp(e.file_name()))
        .map(|e| e.into_path())
        .collect()
}

pub fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {p:?}"
    );
}

/// A tmpfs mounted at `path`, unmounted on drop.
pub struct Mount(pub PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        // Quietly: a test may have unmounted it already (`not mounted`).
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// A tmpfs of `size` (`"45m"`) mounted at `at` (made if missing), unmounted
/// on drop. Needs root; fails, never passes, where it cannot be mounted.
#[track_caller]
pub fn tmpfs(at: &Path, size: &str) -> Mount {
    super::require_root();
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot mount a tmpfs at {}", at.display());
    Mount(at.to_path_buf())
}
