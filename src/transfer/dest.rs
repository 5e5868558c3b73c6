//! Destination path helpers shared by the writer, the committer and the
//! reader: temporary names, folder creation with the source folder's bits,
//! the symlinked-folder rule, and the stamp of what was written.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::beneath::{Dir, Meta, Root};
use crate::decide::{EntryKind, Stamp};
use crate::modes::Modes;

/// Makes the destination folder `name` in `parent` (`rel` below the roots)
/// with the `mode` argument its source folder's bits give (see
/// [`Modes::dir_create`]) — read live, below the held source root through
/// no symlink, as a folder created for a file is created before its own row
/// is applied. A source folder that cannot be read (or is no folder now)
/// gives `0700`. Not root, a parent that arrived read-only like its source
/// is opened for its owner first. With `owners`, a new folder gets the
/// source's owners at once, while it is still empty. `AlreadyExists` is
/// returned as it is (another lane made it a moment ago, by the same rule).
pub(super) fn make_dir(
    dest: &Root,
    source: &Root,
    modes: &Modes,
    parent: &Dir,
    name: &OsStr,
    rel: &Path,
) -> io::Result<()> {
    let src = source.dir(rel).ok().and_then(|d| {
        let md = d.meta().ok()?;
        let mode = match d.open_self() {
            Ok(fd) => crate::xattrs::narrowed_mode(&fd, md.mode),
            Err(_) => crate::xattrs::narrow_group(md.mode, None),
        };
        Some(Meta { mode, ..md })
    });
    let mode = src.map_or(0o700, |md| modes.dir_create(md.mode));
    match parent.mkdir(name, mode) {
        Err(e)
            if e.kind() == io::ErrorKind::PermissionDenied && modes.open_dir_for_owner(parent) =>
        {
            parent.mkdir(name, mode)
        }
        r => r,
    }?;
    if modes.owners
        && let Some(md) = src
    {
        let _ = modes.lchown(parent, Some(name), md.uid, md.gid, &dest.path().join(rel));
    }
    Ok(())
}

/// The source folder `rel` (below the held root, through no symlink),
/// opened for reading; `None` when it cannot be opened or is no folder now.
pub(super) fn source_dir(source: &Root, rel: &Path) -> Option<OwnedFd> {
    source.dir(rel).and_then(|d| d.open_self()).ok()
}

/// The bits a folder row's `mode` gives its copy: with the group bits no
/// wider than the source folder's ACL allows (see `crate::xattrs`); no
/// group bits when the source folder cannot be opened to tell.
pub(super) fn dir_mode(source: &Root, src_path: &Path, mode: u32) -> u32 {
    if mode & 0o070 == 0 {
        return mode;
    }
    match source
        .rel(src_path)
        .ok()
        .and_then(|rel| source_dir(source, rel))
    {
        Some(d) => crate::xattrs::narrowed_mode(&d, mode),
        None => crate::xattrs::narrow_group(mode, None),
    }
}

/// Counts what the source folder `src_path` carries that the keys leave
/// out; with `xattrs`/`acls`, gives the destination folder (`name` in
/// `dir`, or `dir` itself) its attributes (best-effort, see
/// [`crate::xattrs::Attrs::apply`]). A source folder that cannot be opened
/// or read gives nothing and takes nothing off.
pub(super) fn copy_dir_attrs(
    source: &Root,
    src_path: &Path,
    modes: &Modes,
    (dir, name): (&Dir, Option<&OsStr>),
    dest_path: &Path,
) {
    let src = source
        .rel(src_path)
        .ok()
        .and_then(|rel| source_dir(source, rel));
    let Some(src) = src else { return };
    let attrs = modes.attrs.read(&src, src_path);
    if !modes.attrs.keep.any() {
        return;
    }
    let held = match name {
        Some(n) => dir.sub(n).and_then(|d| d.open_self()),
        None => dir.open_self(),
    };
    if let Ok(fd) = held {
        modes.attrs.apply(&fd, &attrs, dest_path);
    }
}

/// The topmost folder of `dir` (itself included, `root` excluded) that is a
/// symlink. In the destination, writing through it would put files wherever
/// it points (a source folder that was a symlink when jobrun copied it, say
/// to `/etc`, and is a real folder now), so such entries fail instead; the
/// reader applies the same rule to the source.
pub(super) fn symlinked_folder(root: &Path, dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .take_while(|a| *a != root && a.starts_with(root))
        .filter(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
        .last()
        .map(Path::to_path_buf)
}

/// The failure text of a destination entry below a symlink: `e` (the
/// refusal, from the kernel), and the symlink's name when it is still there
/// (a second look, for the operator only).
pub(super) fn symlinked_folder_error(root: &Path, dir: &Path, e: &io::Error) -> String {
    match symlinked_folder(root, dir) {
        Some(link) => format!(
            "{e} (destination folder `{}` is a symlink; replace it with a folder)",
            link.display()
        ),
        None => e.to_string(),
    }
}

/// Warns, once per run (`warned`), of a destination that shows a time far
/// from the source's it was given (a date past its range, clamped): the
/// row and the audit line keep the source's, the row's after-copy stamp
/// what the destination shows (the next scan compares with it).
pub(super) fn time_held(warned: &mut bool, dest: &Path, (asked, shown): (i128, i128)) {
    if crate::decide::time_not_held(asked, shown) && !std::mem::replace(warned, true) {
        tracing::warn!(path = %dest.display(), source = %crate::audit::rfc3339_ns(asked), shown = %crate::audit::rfc3339_ns(shown),
            "the destination cannot hold the source's modification time; the state DB and the audit log keep the source's; not reported again this run");
    }
}

/// A restored folder's after-copy stamp, its time checked by [`time_held`].
pub(super) fn dir_stamp(warned: &mut bool, d: &crate::db::PendingFile, md: &Meta) -> Stamp {
    time_held(warned, &d.dest, (d.modified_ns, md.modified_ns));
    stamp_of(EntryKind::Dir, md)
}

pub(super) fn stamp_of(kind: EntryKind, md: &Meta) -> Stamp {
    Stamp {
        kind,
        size: md.len,
        modified_ns: md.modified_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinked_folders_are_found_below_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(t.path().join("elsewhere/c")).unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), root.join("a/link")).unwrap();
        // The root itself may be a symlink: the user chose that path.
        let via = t.path().join("via");
        std::os::unix::fs::symlink(&root, &via).unwrap();
        assert_eq!(symlinked_folder(&root, &root.join("a/b")), None);
        assert_eq!(symlinked_folder(&root, &root.join("a/new/deeper")), None);
        assert_eq!(
            symlinked_folder(&root, &root.join("a/link/c")),
            Some(root.join("a/link"))
        );
        assert_eq!(
            symlinked_folder(&root, &root.join("a/link")),
            Some(root.join("a/link"))
        );
        assert_eq!(symlinked_folder(&via, &via.join("a/b")), None);
        assert_eq!(symlinked_folder(&root, &root), None);
    }
}
