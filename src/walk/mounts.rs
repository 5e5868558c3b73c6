//! Mount points inside a tree: the ones a walk finds (a folder on another
//! device than the folder it is in) and the ones the last scan recorded,
//! which tell a share unmounted below the root from a folder emptied on
//! purpose. An unmounted share leaves its bare mount point behind: walked
//! as it is, every row below it would look vanished and every copy of it
//! an extra to delete.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Why a folder recorded as a mount point is taken for a mount that went
/// away: nothing below it is copied, forgotten or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// On the same device as the folder it is in now.
    NotAMount,
    /// Still a mount point, but empty where it held entries.
    Empty,
}

impl Gone {
    /// What the folder is now, for the line that names it.
    pub fn what(self) -> &'static str {
        match self {
            Gone::NotAMount => "was a mount point and is not one now",
            Gone::Empty => "is a mount point that is empty now where it held entries",
        }
    }
}

/// The mount points the last scan recorded in one tree, by path relative
/// to its root, and whether each held entries then.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    points: HashMap<PathBuf, bool>,
    /// The folders that hold one of them: only their listings look their
    /// sub-folders up.
    parents: HashSet<PathBuf>,
}

impl Recorded {
    /// From (relative path, held entries) pairs.
    pub fn new(points: impl IntoIterator<Item = (PathBuf, bool)>) -> Self {
        let points: HashMap<PathBuf, bool> = points
            .into_iter()
            .filter(|(p, _)| !p.as_os_str().is_empty())
            .collect();
        let parents = points
            .keys()
            .map(|p| p.parent().unwrap_or(Path::new("")).to_path_buf())
            .collect();
        Self { points, parents }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Whether the folder at `rel` holds a recorded mount point.
    pub(super) fn holds_any(&self, rel: &Path) -> bool {
        !self.parents.is_empty() && self.parents.contains(rel)
    }

    /// `Some(held entries)` when `rel` was recorded as a mount point.
    pub(super) fn held_entries(&self, rel: &Path) -> Option<bool> {
        self.points.get(rel).copied()
    }
}

/// A recorded mount point as it is now, for a stage that did not walk
/// (the mirror of a run that resumed without a scan): `Some` when it went
/// (on its parent's device, or empty where it held entries). Two `lstat`s,
/// and a `readdir` only of a mount point that held entries. A folder that
/// is missing or no longer a folder is not judged here.
pub fn look(path: &Path, held_entries: bool) -> Option<Gone> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())?;
    let parent = std::fs::symlink_metadata(path.parent()?).ok()?;
    if md.dev() == parent.dev() {
        return Some(Gone::NotAMount);
    }
    if held_entries && std::fs::read_dir(path).ok()?.next().is_none() {
        return Some(Gone::Empty);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_looked_up_not_every_folder() {
        let r = Recorded::new([
            (PathBuf::from("projects"), true),
            (PathBuf::from("a/b/c"), false),
            (PathBuf::new(), true),
        ]);
        assert!(r.holds_any(Path::new("")));
        assert!(r.holds_any(Path::new("a/b")));
        assert!(!r.holds_any(Path::new("a")));
        assert_eq!(r.held_entries(Path::new("projects")), Some(true));
        assert_eq!(r.held_entries(Path::new("a/b/c")), Some(false));
        assert_eq!(r.held_entries(Path::new("a/b")), None);
        assert!(!Recorded::default().holds_any(Path::new("")));
    }

    #[test]
    fn a_folder_on_its_parents_device_is_no_mount() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("m")).unwrap();
        assert_eq!(look(&t.path().join("m"), true), Some(Gone::NotAMount));
        assert_eq!(look(&t.path().join("missing"), true), None);
    }
}
