//! Type changes: a source entry and its destination counterpart on either
//! side of the folder line (one a folder, the other not). Pure rules, as
//! the rest of `decide`: what the scan records, and what the transfer does
//! about each recorded change (see `transfer::typechange`).

use super::{DestNow, EntryKind, Stamp};

/// Whether a source entry and its destination counterpart differ across
/// the folder line (exactly one of them is a folder). The scan records
/// these; a file that became a symlink (or back) is an overwrite like any
/// other and needs nothing more.
pub fn is_type_change(src: EntryKind, dst: EntryKind) -> bool {
    (src == EntryKind::Dir) != (dst == EntryKind::Dir)
}

/// When the transfer settles the recorded type changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferPass {
    /// The run's transfer, before any mirror.
    First,
    /// Again after the mirror, for the entries that waited for it.
    AfterMirror,
}

/// What the transfer does about one recorded type change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeAction {
    /// The file or symlink the scan saw is still there where the source
    /// has a folder: it goes, as an overwrite replaces a file (no
    /// `delete_extras` needed), and the folder is made in its place.
    Replace,
    /// A folder must go: the mirror empties and removes it this run
    /// (through its rails), then the transfer copies the entry.
    WaitForMirror,
    /// Nothing to settle: the row is no longer pending or no longer a type
    /// change, or the destination entry is gone or not what the scan saw
    /// (the copy meets whatever is there, as any copy does).
    Forget,
    /// The entry fails, for this reason.
    Fail(TypeRefusal),
}

/// Why a folder in the way of a file or symlink is not replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeRefusal {
    /// Only the mirror removes folders, and only with `delete_extras`.
    NeedsDeleteExtras,
    /// The mirror ran and kept the folder (a rail, the guard or a live
    /// check kept an entry in it, or the folder itself).
    MirrorKept,
}

/// A recorded type change as the transfer finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeChangeNow {
    /// The source row's kind, and whether it is still pending.
    pub kind: EntryKind,
    pub pending: bool,
    /// The destination entry the scan saw, and what is there now.
    pub recorded: Stamp,
    pub dest: DestNow,
    /// The source entry is a folder right now (checked only for a
    /// replacement).
    pub source_is_dir: bool,
}

/// Decides one recorded type change. A non-folder is replaced only while
/// it is exactly what the scan saw (kind, size, mtime: a symlink swapped in
/// since is not the scan's, and stays refused by the lanes) and the source
/// is a folder now; a folder only ever goes through the mirror.
pub fn type_action(now: &TypeChangeNow, delete_extras: bool, pass: TransferPass) -> TypeAction {
    if !now.pending || !is_type_change(now.kind, now.recorded.kind) {
        return TypeAction::Forget;
    }
    let DestNow::Is(dest) = now.dest else {
        return TypeAction::Forget;
    };
    if now.recorded.kind != EntryKind::Dir {
        return if dest == now.recorded && now.source_is_dir {
            TypeAction::Replace
        } else {
            TypeAction::Forget
        };
    }
    if dest.kind != EntryKind::Dir {
        return TypeAction::Forget;
    }
    match (delete_extras, pass) {
        (false, _) => TypeAction::Fail(TypeRefusal::NeedsDeleteExtras),
        (true, TransferPass::First) => TypeAction::WaitForMirror,
        (true, TransferPass::AfterMirror) => TypeAction::Fail(TypeRefusal::MirrorKept),
    }
}

/// The failure text of a folder that is not replaced by the `kind` the
/// source now has at `dest`.
pub fn type_refusal_text(why: TypeRefusal, dest: &std::path::Path, kind: EntryKind) -> String {
    let head = format!(
        "destination `{}` is a folder where the source now has a {}",
        dest.display(),
        kind.as_str()
    );
    match why {
        TypeRefusal::NeedsDeleteExtras => format!(
            "{head}; a folder is removed only with `delete_extras = true` \
             (nothing of it deleted; not copied)"
        ),
        TypeRefusal::MirrorKept => format!(
            "{head}; the mirror did not remove it (it kept an entry in it: see its note \
             and the log); not copied"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntryKind::*;

    const S: i128 = 1_000_000_000;

    fn st(kind: EntryKind, size: u64, modified_ns: i128) -> Stamp {
        Stamp {
            kind,
            size,
            modified_ns,
        }
    }

    type ActionCase = (&'static str, TypeChangeNow, bool, TransferPass, TypeAction);

    fn type_fixture() -> (Stamp, Stamp, Stamp) {
        (
            st(File, 10, 5 * S),
            st(Symlink, 3, 5 * S),
            st(Dir, 4096, 5 * S),
        )
    }

    fn pending(
        kind: EntryKind,
        recorded: Stamp,
        dest: DestNow,
        source_is_dir: bool,
    ) -> TypeChangeNow {
        TypeChangeNow {
            kind,
            pending: true,
            recorded,
            dest,
            source_is_dir,
        }
    }

    fn check_type_cases(cases: &[ActionCase]) {
        for (name, now, delete_extras, pass, want) in cases {
            assert_eq!(type_action(now, *delete_extras, *pass), *want, "{name}");
        }
    }

    /// A file or symlink where the source has a folder.
    #[test]
    fn type_changes_to_a_folder() {
        use TransferPass::First;
        use TypeAction::*;
        let (file, link, _) = type_fixture();
        let now = pending;
        let cases: &[ActionCase] = &[
            (
                "file → folder",
                now(Dir, file, DestNow::Is(file), true),
                false,
                First,
                Replace,
            ),
            (
                "link → folder",
                now(Dir, link, DestNow::Is(link), true),
                true,
                First,
                Replace,
            ),
            (
                "a link swapped in since the scan",
                now(Dir, file, DestNow::Is(link), true),
                false,
                First,
                Forget,
            ),
            (
                "the file rewritten since the scan",
                now(Dir, file, DestNow::Is(st(File, 11, 5 * S)), true),
                false,
                First,
                Forget,
            ),
            (
                "the source no longer a folder",
                now(Dir, file, DestNow::Is(file), false),
                false,
                First,
                Forget,
            ),
            (
                "already gone",
                now(Dir, file, DestNow::Gone, true),
                false,
                First,
                Forget,
            ),
        ];
        check_type_cases(cases);
    }

    /// A folder where the source has a file or symlink.
    #[test]
    fn type_changes_from_a_folder() {
        use TransferPass::{AfterMirror, First};
        use TypeAction::*;
        let (file, _, dir) = type_fixture();
        let now = pending;
        let refuse = Fail(TypeRefusal::NeedsDeleteExtras);
        let kept = Fail(TypeRefusal::MirrorKept);
        let cases: &[ActionCase] = &[
            (
                "folder → file, no mirror",
                now(File, dir, DestNow::Is(dir), false),
                false,
                First,
                refuse,
            ),
            (
                "folder → link, no mirror",
                now(Symlink, dir, DestNow::Is(dir), false),
                false,
                AfterMirror,
                refuse,
            ),
            (
                "folder → file, mirror to come",
                now(File, dir, DestNow::Is(dir), false),
                true,
                First,
                WaitForMirror,
            ),
            (
                "folder → file, mirror kept it",
                now(File, dir, DestNow::Is(dir), false),
                true,
                AfterMirror,
                kept,
            ),
            (
                "folder removed by the mirror",
                now(File, dir, DestNow::Gone, false),
                true,
                AfterMirror,
                Forget,
            ),
            (
                "folder replaced by a file since",
                now(File, dir, DestNow::Is(file), false),
                true,
                First,
                Forget,
            ),
            (
                "folder unreadable",
                now(File, dir, DestNow::Unknown, false),
                true,
                First,
                Forget,
            ),
            (
                "the source back to a folder",
                now(Dir, dir, DestNow::Is(dir), true),
                true,
                First,
                Forget,
            ),
            (
                "file ↔ link is no type change",
                now(Symlink, file, DestNow::Is(file), false),
                true,
                First,
                Forget,
            ),
        ];
        check_type_cases(cases);
    }

    #[test]
    fn type_changes_settled_or_named() {
        use TypeAction::*;
        let (_, _, dir) = type_fixture();
        let now = pending;
        use TransferPass::First;
        let synced = TypeChangeNow {
            pending: false,
            ..now(File, dir, DestNow::Is(dir), false)
        };
        assert_eq!(type_action(&synced, false, First), Forget, "not pending");
        let text = type_refusal_text(
            TypeRefusal::NeedsDeleteExtras,
            std::path::Path::new("/d/e"),
            File,
        );
        assert!(
            text.contains("`/d/e`") && text.contains("`delete_extras = true`"),
            "{text}"
        );
        assert!(is_type_change(File, Dir) && is_type_change(Dir, Symlink));
        assert!(!is_type_change(File, Symlink) && !is_type_change(Dir, Dir));
    }
}
