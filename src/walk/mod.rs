//! The one walker: every tree jobrun lists (the scan's two walks, the
//! mirror's fresh listing of the destination) is walked here, by one set
//! of rules. Below the stages: it reads a tree and yields its entries; it
//! never touches the DB and judges nothing but what no caller may see.
//!
//! The rules, each written once:
//! - pre-order, siblings sorted by name (bytewise, or folded for a
//!   case-insensitive destination): the order the scan's merge relies on;
//! - every folder opened from its parent's descriptor through no symlink
//!   (`beneath`), each entry stat'ed from its folder's descriptor;
//! - an entry the filter excludes is neither yielded nor, for a folder,
//!   entered (counted once);
//! - NFS silly-rename files (`.nfs` and hex, [`is_nfs_silly_name`]) are
//!   never yielded: never data to copy, never an extra to delete;
//! - folders are listed ahead of the walk on a few threads (`list`);
//! - each folder on another device than its parent is marked a mount
//!   point, and one recorded as a mount point by the last scan that is no
//!   longer one (or is empty where it held entries) is yielded as
//!   [`Mount::Gone`] and not entered (`mounts`).
//!
//! What a caller decides itself: jobrun's temporaries, special files,
//! symlinks, the other root.

mod list;
mod mounts;

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::debug;

use crate::beneath::{Dir, Root};
use crate::filter::Filter;
use crate::fsmeta::is_nfs_silly_name;
use list::{Child, Listers, Listing};

pub use list::LISTERS;
pub use mounts::{Gone, Recorded, look as look_mount};

/// How a tree is walked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Entries left out, folders not entered.
    pub filter: Filter,
    /// Siblings sorted by folded name (a case-insensitive destination).
    pub fold: bool,
    /// Listing threads ahead of the walk (0: the walk lists every folder
    /// itself); [`LISTERS`] for a real walk.
    pub listers: usize,
    /// The mount points the last scan of this tree recorded (none for a
    /// destination).
    pub mounts: Recorded,
}

/// What a walked folder is as a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// Not a mount point (or not a folder, or the root).
    No,
    /// On another device than the folder it is in; `entries`: its listing
    /// held any (a listing that failed keeps what was recorded).
    Point { entries: bool },
    /// Recorded as a mount point, and gone: not entered.
    Gone(Gone),
}

/// One walked entry: the root, or an entry of a listed folder.
pub struct Node {
    pub name: OsString,
    pub path: PathBuf,
    /// `lstat` of the entry.
    pub meta: std::io::Result<std::fs::Metadata>,
    /// The folder it is in (none for the root).
    pub dir: Option<Arc<Dir>>,
    pub mount: Mount,
}

/// A walk failure: depth (0 = the root), the path that could not be read
/// (a folder that could not be listed, or the root), and the error.
pub type WalkError = (usize, PathBuf, std::io::Error);

/// A depth-first, pre-order walk with siblings sorted by name (bytewise) and
/// symlinks not followed: the order of walkdir's `sort_by_file_name`, i.e.
/// the component-wise `Path` order the scan's merge-join relies on. Each
/// entry is stat'ed relative to its open directory (std's
/// `DirEntry::metadata`, an `fstatat`) rather than by full path as walkdir
/// does, which spares the kernel one full path lookup per entry (≈40 % of a
/// no-op rescan's CPU with walkdir). The folders it enters next are listed
/// ahead on a few threads ([`list`]); memory: one sorted listing per
/// level of the current path, and the bounded listings ahead.
///
/// Each folder is opened from its parent's descriptor through no symlink
/// (`beneath`), never by path: a folder swapped for a symlink before it is
/// listed is a walk error for that folder (so the mirror deletes nothing
/// this run), never a listing of whatever it points to.
///
/// An entry the filter excludes is neither yielded nor, for a folder,
/// opened: an excluded `.snapshot` costs one name comparison, not a walk.
pub struct Walk {
    root: Option<PathBuf>,
    listers: Arc<Listers>,
    /// Entries the filter left out (folders counted once, not their contents).
    excluded: u64,
    /// NFS silly-rename files left out.
    silly: u64,
    /// Per open directory level: its children not yet yielded.
    stack: Vec<Level>,
    /// A folder that could not be listed, reported by the next call.
    failed: Option<WalkError>,
}

/// One open directory level of the walk.
struct Level {
    path: PathBuf,
    dir: Arc<Dir>,
    children: std::vec::IntoIter<Child>,
}

impl Walk {
    /// The walk of `root`.
    pub fn new(root: &Path, opts: Options) -> Self {
        let Options {
            filter,
            fold,
            listers,
            mounts,
        } = opts;
        Self {
            root: Some(root.to_path_buf()),
            listers: Listers::new(root, &filter, fold, mounts, listers),
            excluded: 0,
            silly: 0,
            stack: Vec::new(),
            failed: None,
        }
    }

    /// Entries the filter left out so far (an excluded folder counts once).
    pub fn excluded(&self) -> u64 {
        self.excluded
    }

    /// NFS silly-rename files left out so far.
    pub fn silly(&self) -> u64 {
        self.silly
    }

    /// Puts the listing of the folder at `path` on the stack (its children
    /// come next).
    fn descend(&mut self, path: PathBuf, listed: std::io::Result<Listing>) {
        let depth = self.stack.len() + 1;
        match listed {
            Ok(l) => self.stack.push(Level {
                path,
                dir: l.dir,
                children: l.children.into_iter(),
            }),
            Err(e) => {
                let e = std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
                self.failed = Some((depth, path, e));
            }
        }
    }

    /// The root's node, its listing put on the stack.
    fn root(&mut self, root: PathBuf) -> Result<Node, WalkError> {
        match std::fs::symlink_metadata(&root) {
            Ok(md) => {
                if md.is_dir() {
                    let listed = Root::open(&root)
                        .and_then(|r| r.dir(Path::new("")))
                        .and_then(|d| self.listers.list(d, &root, &[], md.dev()));
                    self.descend(root.clone(), listed);
                }
                Ok(Node {
                    name: root.file_name().unwrap_or(root.as_os_str()).to_owned(),
                    path: root,
                    meta: Ok(md),
                    dir: None,
                    mount: Mount::No,
                })
            }
            Err(e) => Err((0, root, e)),
        }
    }

    /// The node of `child`, found in the folder `parent` at `path`: a
    /// folder's listing put on the stack unless it is a mount that went.
    fn child(&mut self, child: Child, path: PathBuf, parent: Arc<Dir>) -> Node {
        let mut mount = if child.mount {
            Mount::Point { entries: true }
        } else {
            Mount::No
        };
        if let Some(gone) = child.gone {
            mount = Mount::Gone(gone);
        } else if let Some(slot) = &child.sub {
            let listed = self.listers.take(slot);
            if child.mount {
                let entries = match &listed {
                    Ok(l) => !l.children.is_empty(),
                    Err(_) => child.was_mount.unwrap_or(true),
                };
                mount = if !entries && child.was_mount == Some(true) {
                    Mount::Gone(Gone::Empty)
                } else {
                    Mount::Point { entries }
                };
            }
            if !matches!(mount, Mount::Gone(_)) {
                self.descend(path.clone(), listed);
            }
        }
        Node {
            meta: child.meta,
            name: child.name,
            path,
            dir: Some(parent),
            mount,
        }
    }
}

impl Drop for Walk {
    fn drop(&mut self) {
        self.listers.close();
    }
}

/// An NFS client's silly rename: a file (never a folder) so named.
fn is_silly(child: &Child) -> bool {
    child.meta.as_ref().is_ok_and(|m| !m.is_dir()) && is_nfs_silly_name(&child.name)
}

impl Iterator for Walk {
    type Item = Result<Node, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(f) = self.failed.take() {
            return Some(Err(f));
        }
        if let Some(root) = self.root.take() {
            return Some(self.root(root));
        }
        loop {
            let top = self.stack.last_mut()?;
            match top.children.next() {
                Some(child) => {
                    if child.excluded {
                        self.excluded += 1;
                        continue;
                    }
                    if is_silly(&child) {
                        self.silly += 1;
                        debug!(path = %top.path.join(&child.name).display(), "NFS silly-rename file left out");
                        continue;
                    }
                    let path = top.path.join(&child.name);
                    let dir = top.dir.clone();
                    return Some(Ok(self.child(child, path, dir)));
                }
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn opts(filter: &Filter, listers: usize) -> Options {
        Options {
            filter: filter.clone(),
            listers,
            ..Options::default()
        }
    }

    /// NFS silly-rename files are left out by the walker itself (every
    /// caller walks by the same rule); a folder so named, or a name that
    /// only starts like one, is walked.
    #[test]
    fn silly_rename_files_are_never_yielded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir_all(root.join("d/.nfs000000000012a4f700000002")).unwrap();
        std::fs::write(root.join(".nfs000000000012a4f700000001"), b"x").unwrap();
        std::fs::write(root.join("d/.nfs0000000000000001000000ab"), b"x").unwrap();
        std::fs::write(root.join(".nfsnot-hex"), b"x").unwrap();
        let mut walk = Walk::new(&root, opts(&Filter::default(), LISTERS));
        let names: Vec<PathBuf> = walk
            .by_ref()
            .map(|n| n.unwrap().path.strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        let want: Vec<PathBuf> = ["", ".nfsnot-hex", "d", "d/.nfs000000000012a4f700000002"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(names, want);
        assert_eq!(walk.silly(), 2);
    }

    #[test]
    fn sorted_walk_matches_walkdir_order_and_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        for p in [
            "a.txt", "a-b/c", "a b", "a/b.c/d", "a/b/c", "z", "é/x", "a/b-",
        ] {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if !p.exists() {
                std::fs::write(&p, b"x").unwrap();
            }
        }
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let ours: Vec<PathBuf> = Walk::new(&root, opts(&Filter::default(), 0))
            .map(|n| n.unwrap().path)
            .collect();
        let theirs: Vec<PathBuf> = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .collect();
        assert_eq!(ours, theirs);
        let mut sorted = ours.clone();
        sorted.sort();
        assert_eq!(ours, sorted, "walk order must be Path order");
        assert!(matches!(
            Walk::new(
                &dir.path().join("missing"),
                opts(&Filter::default(), LISTERS)
            )
            .next(),
            Some(Err((0, _, _)))
        ));
    }

    #[test]
    fn a_folder_swapped_for_a_symlink_mid_walk_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/inside"), b"x").unwrap();
        std::fs::write(root.join("z"), b"x").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("secret"), b"x").unwrap();
        let none = Filter::default();
        // No listers: nobody lists `d` before the swap below.
        let mut walk = Walk::new(&root, opts(&none, 0));
        assert!(
            walk.next()
                .is_some_and(|n| n.is_ok_and(|n| n.dir.is_none()))
        );
        // The root is listed (`d` a folder in it); `d` is swapped before the
        // walk goes down into it.
        std::fs::rename(root.join("d"), dir.path().join("d.moved")).unwrap();
        std::os::unix::fs::symlink(&out, root.join("d")).unwrap();
        let rest: Vec<_> = walk.collect();
        let paths: Vec<PathBuf> = rest
            .iter()
            .map(|n| match n {
                Ok(n) => n.path.clone(),
                Err((_, p, _)) => p.clone(),
            })
            .collect();
        assert_eq!(paths, [root.join("d"), root.join("d"), root.join("z")]);
        let Err((depth, _, e)) = &rest[1] else {
            panic!("{paths:?}: `d` must fail, not be listed");
        };
        assert_eq!(*depth, 2);
        assert!(
            e.to_string().contains("symlink in path; not followed"),
            "{e}"
        );
    }

    /// A tree wide and deep enough that the listers run ahead of the walk
    /// and hit their bound: the same entries, in the same order, with the
    /// same metadata and the same exclusions, as the walk that lists every
    /// folder itself.
    #[test]
    fn listing_ahead_changes_nothing_the_walk_yields() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        for a in 0..30 {
            for b in 0..4 {
                let d = root.join(format!("d{a}/s{b}"));
                std::fs::create_dir_all(d.join("deep/er")).unwrap();
                for f in 0..5 {
                    std::fs::write(d.join(format!("f{f}")), vec![b'x'; f]).unwrap();
                }
                std::fs::write(d.join("deep/er/last"), b"y").unwrap();
                std::fs::write(d.join("skip.tmp"), b"y").unwrap();
            }
        }
        let filter = Filter::new(&["*.tmp".into(), "d7/".into()], &[]).unwrap();
        let walk = |listers| {
            let mut w = Walk::new(&root, opts(&filter, listers));
            let got: Vec<(PathBuf, u64, bool)> = w
                .by_ref()
                .map(|n| {
                    let n = n.unwrap();
                    let md = n.meta.unwrap();
                    (n.path, md.len(), md.is_dir())
                })
                .collect();
            (got, w.excluded())
        };
        let serial = walk(0);
        assert_eq!(serial.0.len(), 1 + 29 + 29 * 4 * (1 + 5 + 2 + 1));
        assert_eq!(serial.1, 1 + 29 * 4);
        for _ in 0..5 {
            assert_eq!(walk(LISTERS), serial);
        }
    }

    /// With listers running ahead, a folder swapped for a symlink is either
    /// listed as the folder it was (opened before the swap) or fails; never
    /// is what the link points to listed.
    #[test]
    fn listing_ahead_never_follows_a_swapped_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("secret"), b"x").unwrap();
        for i in 0..50 {
            std::fs::create_dir_all(root.join(format!("d{i:02}"))).unwrap();
            std::fs::write(root.join(format!("d{i:02}/inside")), b"x").unwrap();
        }
        let none = Filter::default();
        let mut walk = Walk::new(&root, opts(&none, LISTERS));
        assert!(
            walk.next()
                .is_some_and(|n| n.is_ok_and(|n| n.dir.is_none()))
        );
        for i in 0..50 {
            let d = root.join(format!("d{i:02}"));
            std::fs::rename(&d, dir.path().join(format!("moved{i}"))).unwrap();
            std::os::unix::fs::symlink(&out, &d).unwrap();
        }
        for n in walk.flatten() {
            assert_ne!(n.name, "secret", "{}", n.path.display());
        }
    }
    /// A folder the last scan recorded as a mount point, now on its
    /// parent's device (a share unmounted, its bare mount point left): the
    /// walk yields it as gone and does not enter it, whatever it holds now;
    /// its siblings are walked as ever.
    #[test]
    fn a_recorded_mount_point_on_its_parents_device_is_gone_and_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        for f in ["projects/a", "projects/b", "other/x"] {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), b"x").unwrap();
        }
        for listers in [0, LISTERS] {
            let mounts = Recorded::new([(PathBuf::from("projects"), true)]);
            let walk = Walk::new(
                &root,
                Options {
                    listers,
                    mounts,
                    ..Options::default()
                },
            );
            let got: Vec<(PathBuf, Mount)> = walk
                .map(|n| {
                    let n = n.unwrap();
                    let rel = n.path.strip_prefix(&root).unwrap().to_path_buf();
                    (rel, n.mount)
                })
                .collect();
            let want: Vec<(PathBuf, Mount)> = [
                ("", Mount::No),
                ("other", Mount::No),
                ("other/x", Mount::No),
                ("projects", Mount::Gone(Gone::NotAMount)),
            ]
            .into_iter()
            .map(|(p, m)| (PathBuf::from(p), m))
            .collect();
            assert_eq!(got, want, "listers {listers}");
        }
    }
}
