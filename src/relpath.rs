//! A path relative to its root: the one rule for "this entry's path below
//! the tree it was found in" (the walk's entries, the DB's rows, the
//! mirror's candidates, the audit log's lines). A leaf: std only.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` relative to `root`: empty for the root itself, `None` when
/// `path` is not below `root`. What `Path::strip_prefix` answers, but
/// where `root` is a byte prefix of `path` (the walker joins each name to
/// the root's own bytes, and the DB stores the paths it was given) no
/// component is parsed: this runs for every comparison of the scan's merge.
pub fn relative<'p>(path: &'p Path, root: &Path) -> Option<&'p Path> {
    let (p, r) = (path.as_os_str().as_bytes(), root.as_os_str().as_bytes());
    let rest = p.strip_prefix(r).and_then(|rest| match rest {
        [] => Some(rest),
        [b'/', rest @ ..] => Some(rest),
        _ if r.ends_with(b"/") => Some(rest),
        _ => None,
    });
    match rest {
        Some(rest) if !rest.starts_with(b"/") && !rest.starts_with(b"./") => {
            Some(Path::new(OsStr::from_bytes(rest)))
        }
        _ => path.strip_prefix(root).ok(),
    }
}

/// [`relative`] for a path strictly below `root` (not the root itself).
pub fn strictly_below<'p>(path: &'p Path, root: &Path) -> Option<&'p Path> {
    relative(path, root).filter(|r| !r.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_is_strip_prefix() {
        for (path, root) in [
            ("/a/b/c", "/a/b"),
            ("/a/b", "/a/b"),
            ("/a/b/c/d", "/a/b/"),
            ("/a/b//c", "/a/b"),
            ("/a/./b/c", "/a/./b"),
            ("/x/y", "/"),
            ("/a/bc", "/a/b"),
            ("/a", "/a/b"),
            ("/c/d", "/a/b"),
        ] {
            let (path, root) = (Path::new(path), Path::new(root));
            assert_eq!(
                relative(path, root),
                path.strip_prefix(root).ok(),
                "{path:?} under {root:?}"
            );
        }
        assert_eq!(strictly_below(Path::new("/a/b"), Path::new("/a/b")), None);
        assert_eq!(
            strictly_below(Path::new("/a/b/c"), Path::new("/a/b")),
            Some(Path::new("c"))
        );
    }
}
