//! Pure decisions, no I/O: the skip rule (SPEC §5), run mode (SPEC §3) and
//! the mirror safety rules (SPEC §7), type changes (`kinds`) and racy
//! reads (`racy`). Each returns a reason rather than a
//! bool so tests, logs and `check` can say *why*.

mod kinds;
mod racy;

pub use kinds::{
    TransferPass, TypeAction, TypeChangeNow, TypeRefusal, is_type_change, type_action,
    type_refusal_text,
};
pub use racy::{ReadStamp, TICK, moved_during_read, racy_window, time_granularity, time_not_held};

use std::fmt;
use std::time::Duration;

/// What a tree entry is. Other kinds (FIFOs, sockets, devices) never reach
/// the DB: the scan skips them with a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(Self::File),
            "dir" => Some(Self::Dir),
            "symlink" => Some(Self::Symlink),
            _ => None,
        }
    }
}

/// The facts the skip rule compares: kind, size and mtime of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub kind: EntryKind,
    pub size: u64,
    pub modified_ns: i128,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Skip(SkipReason),
    Copy(CopyReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Destination has the source's size and mtime (within `modify_window`).
    SameSizeAndMtime,
    /// Destination is exactly as jobrun left it after copying this very
    /// source version; its mtime differs only because the destination keeps
    /// coarser timestamps (FAT 2 s, SMB/NFS servers rounding to µs or s).
    UnchangedSinceCopy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyReason {
    Missing,
    KindDiffers,
    SizeDiffers,
    MtimeDiffers,
}

/// The skip rule: copy unless the destination exists as the same kind, with
/// the same size, and either the same mtime (within `window`) or exactly the
/// size and mtime jobrun observed on it right after its own copy of this
/// unchanged source (`after_copy`, cleared by the scan when the source
/// changes). Directories compare mtime only (their sizes are fs-specific).
pub fn needs_transfer(
    src: &Stamp,
    dst: Option<&Stamp>,
    after_copy: Option<&Stamp>,
    window: Duration,
) -> Decision {
    let Some(dst) = dst else {
        return Decision::Copy(CopyReason::Missing);
    };
    if dst.kind != src.kind {
        return Decision::Copy(CopyReason::KindDiffers);
    }
    if src.kind != EntryKind::Dir && dst.size != src.size {
        return Decision::Copy(CopyReason::SizeDiffers);
    }
    let diff = src.modified_ns.abs_diff(dst.modified_ns);
    if diff <= window.as_nanos() {
        return Decision::Skip(SkipReason::SameSizeAndMtime);
    }
    if after_copy == Some(dst) {
        return Decision::Skip(SkipReason::UnchangedSinceCopy);
    }
    Decision::Copy(CopyReason::MtimeDiffers)
}

/// How a run starts (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Pending rows exist: transfer them without walking either tree.
    Resume { files: u64, bytes: u64 },
    /// No backlog (or a new DB): walk both trees first.
    Scan,
    /// `--rescan` given while a backlog exists.
    ForcedScan { files: u64, bytes: u64 },
    /// `jobrun mirror` of a sharded job: the mirror stage alone, on the
    /// shards' rows, no scan and no backlog.
    Mirror,
}

/// Run mode from the backlog and `--rescan`.
pub fn run_mode(pending_files: u64, pending_bytes: u64, rescan: bool) -> RunMode {
    match (pending_files, rescan) {
        (0, _) => RunMode::Scan,
        (files, true) => RunMode::ForcedScan {
            files,
            bytes: pending_bytes,
        },
        (files, false) => RunMode::Resume {
            files,
            bytes: pending_bytes,
        },
    }
}

impl RunMode {
    pub fn scans(self) -> bool {
        !matches!(self, RunMode::Resume { .. } | RunMode::Mirror)
    }

    pub fn name(self) -> &'static str {
        match self {
            RunMode::Mirror => "mirror",
            m if m.scans() => "scan",
            _ => "resume",
        }
    }
}

// ---- mirror (SPEC §7) ------------------------------------------------------

/// The per-run cap on mirror deletions (`max_delete`). Every deleted entry
/// counts, directories included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MaxDelete {
    /// No cap.
    Off,
    /// At most this many entries per run.
    Count(u64),
    /// At most this share of the destination's entries once the copy is
    /// done (source entries plus extras, roots excluded), in hundredths of a
    /// percent (`1000` = 10%), rounded up so that a small tree may still
    /// lose one entry.
    Percent(u32),
}

/// Default `max_delete`: 10% of the destination's entries. See docs/mirror-and-safety.md
/// ("Mirror") for why.
pub const DEFAULT_MAX_DELETE: MaxDelete = MaxDelete::Percent(1000);

impl MaxDelete {
    /// How many deletions the cap allows out of `dest_entries` entries.
    pub fn allowed(self, dest_entries: u64) -> u64 {
        match self {
            Self::Off => u64::MAX,
            Self::Count(n) => n,
            Self::Percent(h) => {
                let num = u128::from(dest_entries) * u128::from(h);
                u64::try_from(num.div_ceil(10_000)).unwrap_or(u64::MAX)
            }
        }
    }
}

impl fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(h) if h % 100 == 0 => write!(f, "{}%", h / 100),
            Self::Percent(h) => {
                let s = format!("{}.{:02}", h / 100, h % 100);
                write!(f, "{}%", s.trim_end_matches('0'))
            }
        }
    }
}

/// The source root as the mirror stage finds it right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRoot {
    /// A readable directory, the very one (device, inode) the stage began with.
    Dir {
        empty: bool,
    },
    Missing,
    NotADirectory,
    Unreadable,
    /// Not the directory the stage began with: unmounted, remounted or
    /// swapped while deleting. A mount point left behind looks empty, and
    /// every source path under it looks absent.
    Replaced,
}

/// Run-level facts the mirror rails judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorRun {
    /// The source root, checked live.
    pub source_root: SourceRoot,
    /// Source entries (root excluded) recorded by the last scan.
    pub source_entries: u64,
    /// Entries the last source walk could not read.
    pub source_walk_errors: u64,
    /// Destination entries (root and jobrun temporaries excluded) in the
    /// listing the candidates come from (taken before the transfer when
    /// the run scanned).
    pub dest_entries: u64,
    /// Listed destination entries with no source row.
    pub candidates: u64,
}

/// What a live `symlink_metadata` of a candidate's source path said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceNow {
    /// `ENOENT`, or `ENOTDIR` (a parent is not a directory): truly absent.
    Absent,
    Present,
    /// Present, but not a folder: a destination folder has no counterpart
    /// in it (its source became a file or a symlink).
    NotAFolder,
    /// Any other error (permission, I/O): absence is not proven.
    Unknown,
}

/// What a live `symlink_metadata` of the candidate itself said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestNow {
    Gone,
    Is(Stamp),
    Unknown,
}

/// The live facts about one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub source: SourceNow,
    pub dest: DestNow,
}

/// Why the mirror stage deletes nothing (more) this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source root is missing, unreadable, not a directory, or changed.
    SourceRoot(SourceRoot),
    /// The source listing is incomplete (rclone: "not deleting files as
    /// there were IO errors").
    SourceWalkErrors(u64),
    /// The source is empty while the destination is not: what an unmounted
    /// share looks like.
    SourceEmpty { dest_entries: u64 },
    /// More candidates than `max_delete` allows out of `base` entries.
    OverCap {
        candidates: u64,
        allowed: u64,
        cap: MaxDelete,
        base: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SourceRoot(state) => {
                let what = match state {
                    SourceRoot::Missing => "is missing",
                    SourceRoot::NotADirectory => "is not a directory",
                    SourceRoot::Replaced => {
                        "changed during the mirror stage (unmounted or remounted?)"
                    }
                    SourceRoot::Unreadable | SourceRoot::Dir { .. } => "cannot be read",
                };
                write!(f, "the source root {what}")
            }
            Self::SourceWalkErrors(n) => write!(
                f,
                "the last source scan could not read {}, so its listing is incomplete",
                entries(*n)
            ),
            Self::SourceEmpty { dest_entries } => write!(
                f,
                "the source root is empty but the destination holds {} \
                 (an unmounted share looks empty); delete them by hand if that is really wanted",
                entries(*dest_entries)
            ),
            Self::OverCap {
                candidates,
                allowed,
                cap,
                base,
            } => {
                let of = match cap {
                    MaxDelete::Percent(_) => format!(" of {base} destination entries"),
                    MaxDelete::Count(_) | MaxDelete::Off => String::new(),
                };
                write!(
                    f,
                    "{} would be deleted, over `max_delete` {cap}{of} (allows {allowed}); \
                     to allow them for one run: --max-delete {candidates}",
                    entries(*candidates)
                )
            }
        }
    }
}

/// "1 entry", "2 entries".
fn entries(n: u64) -> String {
    if n == 1 {
        "1 entry".into()
    } else {
        format!("{n} entries")
    }
}

/// Why a candidate is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepReason {
    /// The source path exists now (created after the listing).
    SourcePresent,
    /// The source path could not be checked.
    SourceUnknown,
    /// Already gone from the destination.
    DestGone,
    /// The destination entry is no longer what the listing recorded.
    DestChanged,
    /// The destination entry could not be checked.
    DestUnknown,
}

/// The mirror policy from the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorPolicy {
    pub max_delete: MaxDelete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorVerdict {
    /// Stop the stage; delete nothing (more).
    Refuse(Refusal),
    Keep(KeepReason),
    Delete,
}

/// The run-level rails, in order: a usable source root, a complete source
/// listing, a non-empty source (unless the destination is empty too), and
/// the `max_delete` cap over all candidates. A percentage cap is taken of
/// the destination as the copy leaves it, source entries plus extras: the
/// listing alone may predate the copy (a first run into a destination that
/// holds only an old partial copy would otherwise look like all extras).
pub fn may_mirror(run: &MirrorRun, policy: &MirrorPolicy) -> Result<(), Refusal> {
    let empty_now = match run.source_root {
        SourceRoot::Dir { empty } => empty,
        other => return Err(Refusal::SourceRoot(other)),
    };
    if run.source_walk_errors > 0 {
        return Err(Refusal::SourceWalkErrors(run.source_walk_errors));
    }
    if (empty_now || run.source_entries == 0) && run.dest_entries > 0 {
        return Err(Refusal::SourceEmpty {
            dest_entries: run.dest_entries,
        });
    }
    let base = run.source_entries.saturating_add(run.candidates);
    let allowed = policy.max_delete.allowed(base);
    if run.candidates > allowed {
        return Err(Refusal::OverCap {
            candidates: run.candidates,
            allowed,
            cap: policy.max_delete,
            base,
        });
    }
    Ok(())
}

/// Whether the destination entry `listed` (no source row in the DB) is
/// deleted, given the run (re-checked for every candidate, so a source
/// root that vanishes mid-stage stops it) and what a live check of the
/// candidate's source path and of the candidate itself found. A candidate is
/// deleted only when its source is proven absent and the destination entry
/// is still what the listing recorded (same kind; files and symlinks also
/// same size and mtime; a directory's mtime moves as its contents go). A
/// destination folder whose source path is now a file or a symlink has no
/// counterpart either (a type change: the transfer copies the new entry
/// once the folder is gone).
pub fn mirror_verdict(
    run: &MirrorRun,
    listed: &Stamp,
    live: &Live,
    policy: &MirrorPolicy,
) -> MirrorVerdict {
    if let Err(refusal) = may_mirror(run, policy) {
        return MirrorVerdict::Refuse(refusal);
    }
    match live.source {
        SourceNow::Absent => {}
        SourceNow::NotAFolder if listed.kind == EntryKind::Dir => {}
        SourceNow::Present | SourceNow::NotAFolder => {
            return MirrorVerdict::Keep(KeepReason::SourcePresent);
        }
        SourceNow::Unknown => return MirrorVerdict::Keep(KeepReason::SourceUnknown),
    }
    let now = match live.dest {
        DestNow::Gone => return MirrorVerdict::Keep(KeepReason::DestGone),
        DestNow::Unknown => return MirrorVerdict::Keep(KeepReason::DestUnknown),
        DestNow::Is(now) => now,
    };
    let same = now.kind == listed.kind
        && (now.kind == EntryKind::Dir
            || (now.size == listed.size && now.modified_ns == listed.modified_ns));
    if same {
        MirrorVerdict::Delete
    } else {
        MirrorVerdict::Keep(KeepReason::DestChanged)
    }
}

// ---- case-insensitive destinations (SMB, VFAT) ---------------------------

/// A name as a case-insensitive destination compares it: lowercased
/// (Unicode simple lowercase when the name is UTF-8, ASCII lowercase of the
/// bytes otherwise). A superset of what Samba and VFAT fold for the names
/// users write; a false match only refuses a file, it never overwrites one.
pub fn fold_name(name: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    match std::str::from_utf8(name) {
        Ok(s) if s.chars().any(char::is_uppercase) => Cow::Owned(s.to_lowercase().into_bytes()),
        Ok(_) => Cow::Borrowed(name),
        Err(_) if name.iter().any(u8::is_ascii_uppercase) => Cow::Owned(name.to_ascii_lowercase()),
        Err(_) => Cow::Borrowed(name),
    }
}

/// Sibling order on a case-insensitive destination: folded name first, then
/// the bytes, so names that fold equal are next to each other.
pub fn cmp_names_folded(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    fold_name(a).cmp(&fold_name(b)).then_with(|| a.cmp(b))
}

/// Relative paths compared component by component on folded names only:
/// `Equal` pairs a source entry with the destination entry it would land
/// on. Consistent with walks whose siblings are sorted by
/// [`cmp_names_folded`].
pub fn cmp_paths_folded(a: &std::path::Path, b: &std::path::Path) -> std::cmp::Ordering {
    use std::os::unix::ffi::OsStrExt;
    let (mut a, mut b) = (a.components(), b.components());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => {
                let o =
                    fold_name(x.as_os_str().as_bytes()).cmp(&fold_name(y.as_os_str().as_bytes()));
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// Why a source entry is not written to a case-insensitive destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseCollision {
    /// Its name folds equal to an earlier sibling's (`winner`), which the
    /// destination would replace.
    Name { winner: std::path::PathBuf },
    /// It is below `folder`, a folder whose name collides with `winner`'s.
    InFolder {
        folder: std::path::PathBuf,
        winner: std::path::PathBuf,
    },
}

/// Finds the source entries that would land on an earlier entry of the same
/// folder when the destination ignores case. Fed the source's relative
/// paths in walk order (pre-order, siblings by [`cmp_names_folded`]), the
/// first of each group of names that fold equal wins; memory is one entry
/// per level of the current path.
#[derive(Debug, Default)]
pub struct CaseCollisions {
    /// Per depth (index 0 = the root's children): folded name and path of
    /// the last winning entry at that depth under the current folder.
    last: Vec<Option<(Vec<u8>, std::path::PathBuf)>>,
    /// A folder that lost, with its winner: everything below it loses.
    lost: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl CaseCollisions {
    /// The next source entry's path relative to the root (empty = the root).
    pub fn check(&mut self, rel: &std::path::Path, is_dir: bool) -> Option<CaseCollision> {
        use std::os::unix::ffi::OsStrExt;
        let depth = rel.components().count();
        let name = rel.file_name()?;
        if let Some((folder, winner)) = &self.lost {
            if rel.starts_with(folder) {
                return Some(CaseCollision::InFolder {
                    folder: folder.clone(),
                    winner: winner.clone(),
                });
            }
            self.lost = None;
        }
        let folded = fold_name(name.as_bytes()).into_owned();
        if let Some(Some((prev, winner))) = self.last.get(depth - 1)
            && *prev == folded
        {
            let winner = winner.clone();
            self.last.truncate(depth);
            if is_dir {
                self.lost = Some((rel.to_path_buf(), winner.clone()));
            }
            return Some(CaseCollision::Name { winner });
        }
        self.last.truncate(depth - 1);
        self.last.resize(depth - 1, None);
        self.last.push(Some((folded, rel.to_path_buf())));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CopyReason::*;
    use Decision::*;
    use EntryKind::*;
    use SkipReason::*;

    fn st(kind: EntryKind, size: u64, m: i128) -> Stamp {
        Stamp {
            kind,
            size,
            modified_ns: m,
        }
    }

    const S: i128 = 1_000_000_000;

    #[test]
    fn skip_rule_table() {
        let src = st(File, 10, 100 * S + 123);
        let w0 = Duration::ZERO;
        let w2 = Duration::from_secs(2);
        type Case = (
            &'static str,
            Option<Stamp>,
            Option<Stamp>,
            Duration,
            Decision,
        );
        let cases: &[Case] = &[
            ("missing", None, None, w0, Copy(Missing)),
            (
                "dir where file",
                Some(st(Dir, 10, 100 * S + 123)),
                None,
                w0,
                Copy(KindDiffers),
            ),
            ("same", Some(src), None, w0, Skip(SameSizeAndMtime)),
            (
                "size differs",
                Some(st(File, 11, 100 * S + 123)),
                None,
                w0,
                Copy(SizeDiffers),
            ),
            (
                "truncated, same mtime",
                Some(st(File, 9, 100 * S + 123)),
                None,
                w0,
                Copy(SizeDiffers),
            ),
            (
                "newer mtime",
                Some(st(File, 10, 101 * S)),
                None,
                w0,
                Copy(MtimeDiffers),
            ),
            (
                "coarse dest, no record",
                Some(st(File, 10, 100 * S)),
                None,
                w0,
                Copy(MtimeDiffers),
            ),
            (
                "coarse dest in window",
                Some(st(File, 10, 100 * S)),
                None,
                w2,
                Skip(SameSizeAndMtime),
            ),
            (
                "fat 2s in window",
                Some(st(File, 10, 102 * S)),
                None,
                w2,
                Skip(SameSizeAndMtime),
            ),
            (
                "outside window",
                Some(st(File, 10, 103 * S)),
                None,
                w2,
                Copy(MtimeDiffers),
            ),
            (
                "coarse dest as we left it",
                Some(st(File, 10, 100 * S)),
                Some(st(File, 10, 100 * S)),
                w0,
                Skip(UnchangedSinceCopy),
            ),
            (
                "dest touched after our copy",
                Some(st(File, 10, 105 * S)),
                Some(st(File, 10, 100 * S)),
                w0,
                Copy(MtimeDiffers),
            ),
        ];
        for (name, dst, after, window, want) in cases {
            assert_eq!(
                needs_transfer(&src, dst.as_ref(), after.as_ref(), *window),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn directories_ignore_size() {
        let src = st(Dir, 4096, 5 * S);
        assert_eq!(
            needs_transfer(&src, Some(&st(Dir, 80, 5 * S)), None, Duration::ZERO),
            Skip(SameSizeAndMtime)
        );
        assert_eq!(
            needs_transfer(&src, Some(&st(Dir, 4096, 6 * S)), None, Duration::ZERO),
            Copy(MtimeDiffers)
        );
    }

    #[test]
    fn run_mode_rules() {
        assert_eq!(run_mode(0, 0, false), RunMode::Scan);
        assert_eq!(run_mode(0, 0, true), RunMode::Scan);
        assert_eq!(
            run_mode(3, 10, false),
            RunMode::Resume {
                files: 3,
                bytes: 10
            }
        );
        assert_eq!(
            run_mode(3, 10, true),
            RunMode::ForcedScan {
                files: 3,
                bytes: 10
            }
        );
        assert!(RunMode::Scan.scans());
        assert!(!run_mode(1, 1, false).scans());
        assert_eq!(run_mode(1, 1, false).name(), "resume");
        assert_eq!(RunMode::ForcedScan { files: 1, bytes: 1 }.name(), "scan");
    }

    #[test]
    fn kinds_round_trip() {
        for k in [File, Dir, Symlink] {
            assert_eq!(EntryKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EntryKind::parse("fifo"), None);
    }
    // ---- mirror ----------------------------------------------------------

    const OK_ROOT: SourceRoot = SourceRoot::Dir { empty: false };

    fn run(root: SourceRoot, src: u64, errors: u64, dest: u64, cand: u64) -> MirrorRun {
        MirrorRun {
            source_root: root,
            source_entries: src,
            source_walk_errors: errors,
            dest_entries: dest,
            candidates: cand,
        }
    }

    type MirrorCase = (
        &'static str,
        MirrorRun,
        Stamp,
        Live,
        MirrorPolicy,
        MirrorVerdict,
    );

    /// The stamps and policies the mirror tables use: a file, a folder, a
    /// destination unchanged since the listing with the source absent.
    struct MirrorFixture {
        pct10: MirrorPolicy,
        off: MirrorPolicy,
        file: Stamp,
        dir: Stamp,
        normal: MirrorRun,
    }

    fn mirror_fixture() -> MirrorFixture {
        MirrorFixture {
            pct10: MirrorPolicy {
                max_delete: MaxDelete::Percent(1000),
            },
            off: MirrorPolicy {
                max_delete: MaxDelete::Off,
            },
            file: st(File, 10, 5 * S),
            dir: st(Dir, 4096, 5 * S),
            normal: run(OK_ROOT, 100, 0, 100, 3),
        }
    }

    fn absent_same(s: Stamp) -> Live {
        Live {
            source: SourceNow::Absent,
            dest: DestNow::Is(s),
        }
    }

    #[test]
    fn mirror_type_changes() {
        use KeepReason::*;
        use MirrorVerdict::*;
        let MirrorFixture {
            pct10,
            file,
            dir,
            normal,
            ..
        } = mirror_fixture();
        let cases: &[MirrorCase] = &[
            (
                "folder whose source is now a file or symlink",
                normal,
                dir,
                Live {
                    source: SourceNow::NotAFolder,
                    dest: DestNow::Is(dir),
                },
                pct10,
                Delete,
            ),
            (
                "file whose source is now a file (a folder is never one)",
                normal,
                file,
                Live {
                    source: SourceNow::NotAFolder,
                    dest: DestNow::Is(file),
                },
                pct10,
                Keep(SourcePresent),
            ),
        ];
        check_mirror_cases(cases);
    }

    fn check_mirror_cases(cases: &[MirrorCase]) {
        for (name, run, listed, live, policy, want) in cases {
            assert_eq!(mirror_verdict(run, listed, live, policy), *want, "{name}");
        }
    }

    #[test]
    fn mirror_refusals_table() {
        use MirrorVerdict::*;
        let cap = |max_delete| MirrorPolicy { max_delete };
        let MirrorFixture {
            pct10,
            off,
            file,
            normal,
            ..
        } = mirror_fixture();
        let cases: &[MirrorCase] = &[
            (
                "source root missing",
                run(SourceRoot::Missing, 100, 0, 100, 3),
                file,
                absent_same(file),
                off,
                Refuse(Refusal::SourceRoot(SourceRoot::Missing)),
            ),
            (
                "source root not a directory",
                run(SourceRoot::NotADirectory, 100, 0, 100, 3),
                file,
                absent_same(file),
                off,
                Refuse(Refusal::SourceRoot(SourceRoot::NotADirectory)),
            ),
            (
                "source root unreadable",
                run(SourceRoot::Unreadable, 100, 0, 100, 3),
                file,
                absent_same(file),
                off,
                Refuse(Refusal::SourceRoot(SourceRoot::Unreadable)),
            ),
            (
                "source root replaced mid-stage",
                run(SourceRoot::Replaced, 100, 0, 100, 3),
                file,
                absent_same(file),
                off,
                Refuse(Refusal::SourceRoot(SourceRoot::Replaced)),
            ),
            (
                "source walk had errors",
                run(OK_ROOT, 100, 2, 100, 3),
                file,
                absent_same(file),
                off,
                Refuse(Refusal::SourceWalkErrors(2)),
            ),
            (
                "source root empty now",
                run(SourceRoot::Dir { empty: true }, 100, 0, 100, 3),
                file,
                absent_same(file),
                off,
                Refuse(Refusal::SourceEmpty { dest_entries: 100 }),
            ),
            (
                "source listing empty",
                run(OK_ROOT, 0, 0, 7, 7),
                file,
                absent_same(file),
                off,
                Refuse(Refusal::SourceEmpty { dest_entries: 7 }),
            ),
            (
                "over the percent cap",
                run(OK_ROOT, 89, 0, 100, 12),
                file,
                absent_same(file),
                pct10,
                Refuse(Refusal::OverCap {
                    candidates: 12,
                    allowed: 11,
                    cap: MaxDelete::Percent(1000),
                    base: 101,
                }),
            ),
            (
                "over the count cap",
                normal,
                file,
                absent_same(file),
                cap(MaxDelete::Count(2)),
                Refuse(Refusal::OverCap {
                    candidates: 3,
                    allowed: 2,
                    cap: MaxDelete::Count(2),
                    base: 103,
                }),
            ),
        ];
        check_mirror_cases(cases);
    }

    #[test]
    fn mirror_live_checks_table() {
        use KeepReason::*;
        use MirrorVerdict::*;
        let MirrorFixture {
            pct10,
            file,
            dir,
            normal,
            ..
        } = mirror_fixture();
        let cases: &[MirrorCase] = &[
            (
                "absent, unchanged file",
                normal,
                file,
                absent_same(file),
                pct10,
                Delete,
            ),
            (
                "absent dir whose mtime moved",
                normal,
                dir,
                absent_same(st(Dir, 60, 9 * S)),
                pct10,
                Delete,
            ),
            (
                "source present now",
                normal,
                file,
                Live {
                    source: SourceNow::Present,
                    dest: DestNow::Is(file),
                },
                pct10,
                Keep(SourcePresent),
            ),
            (
                "source cannot be checked",
                normal,
                file,
                Live {
                    source: SourceNow::Unknown,
                    dest: DestNow::Is(file),
                },
                pct10,
                Keep(SourceUnknown),
            ),
            (
                "dest already gone",
                normal,
                file,
                Live {
                    source: SourceNow::Absent,
                    dest: DestNow::Gone,
                },
                pct10,
                Keep(DestGone),
            ),
            (
                "dest cannot be checked",
                normal,
                file,
                Live {
                    source: SourceNow::Absent,
                    dest: DestNow::Unknown,
                },
                pct10,
                Keep(DestUnknown),
            ),
            (
                "dest file rewritten since listing",
                normal,
                file,
                absent_same(st(File, 10, 6 * S)),
                pct10,
                Keep(DestChanged),
            ),
            (
                "dest file resized since listing",
                normal,
                file,
                absent_same(st(File, 11, 5 * S)),
                pct10,
                Keep(DestChanged),
            ),
            (
                "dest kind changed since listing",
                normal,
                file,
                absent_same(dir),
                pct10,
                Keep(DestChanged),
            ),
        ];
        check_mirror_cases(cases);
    }

    #[test]
    fn mirror_edges() {
        let off = MirrorPolicy {
            max_delete: MaxDelete::Off,
        };
        // Empty source and empty destination: nothing to protect.
        assert_eq!(
            may_mirror(&run(SourceRoot::Dir { empty: true }, 0, 0, 0, 0), &off),
            Ok(())
        );
        // Exactly at the cap is allowed; 10% of 5 entries rounds up to 1.
        let pct10 = MirrorPolicy {
            max_delete: MaxDelete::Percent(1000),
        };
        assert_eq!(may_mirror(&run(OK_ROOT, 90, 0, 100, 10), &pct10), Ok(()));
        assert_eq!(may_mirror(&run(OK_ROOT, 4, 0, 5, 1), &pct10), Ok(()));
        assert_eq!(MaxDelete::Percent(1000).allowed(0), 0);
        assert_eq!(MaxDelete::Percent(10_000).allowed(7), 7);
        assert_eq!(MaxDelete::Percent(1).allowed(10_001), 2);
        assert_eq!(MaxDelete::Off.allowed(3), u64::MAX);
        assert_eq!(MaxDelete::Count(0).allowed(3), 0);
    }

    #[test]
    fn mirror_texts() {
        assert_eq!(MaxDelete::Percent(1000).to_string(), "10%");
        assert_eq!(MaxDelete::Percent(250).to_string(), "2.5%");
        assert_eq!(MaxDelete::Percent(5).to_string(), "0.05%");
        assert_eq!(MaxDelete::Count(7).to_string(), "7");
        assert_eq!(MaxDelete::Off.to_string(), "off");
        let texts = [
            (
                Refusal::SourceRoot(SourceRoot::Missing),
                "source root is missing",
            ),
            (
                Refusal::SourceRoot(SourceRoot::NotADirectory),
                "not a directory",
            ),
            (
                Refusal::SourceRoot(SourceRoot::Unreadable),
                "cannot be read",
            ),
            (
                Refusal::SourceRoot(SourceRoot::Dir { empty: false }),
                "cannot be read",
            ),
            (Refusal::SourceRoot(SourceRoot::Replaced), "unmounted"),
            (Refusal::SourceWalkErrors(3), "could not read 3 entries"),
            (Refusal::SourceWalkErrors(1), "could not read 1 entry,"),
            (
                Refusal::SourceEmpty { dest_entries: 4 },
                "destination holds 4 entries",
            ),
            (
                Refusal::OverCap {
                    candidates: 12,
                    allowed: 10,
                    cap: MaxDelete::Percent(1000),
                    base: 100,
                },
                "12 entries would be deleted, over `max_delete` 10% of 100 destination entries (allows 10); to allow them for one run: --max-delete 12",
            ),
            (
                Refusal::OverCap {
                    candidates: 3,
                    allowed: 2,
                    cap: MaxDelete::Count(2),
                    base: 100,
                },
                "3 entries would be deleted, over `max_delete` 2 (allows 2)",
            ),
        ];
        for (r, want) in texts {
            assert!(r.to_string().contains(want), "{r}");
        }
    }
    #[test]
    fn fold_name_lowercases_utf8_and_ascii_of_other_bytes() {
        assert_eq!(&*fold_name(b"Case.TXT"), b"case.txt");
        assert_eq!(&*fold_name("ÉTÉ".as_bytes()), "été".as_bytes());
        assert_eq!(&*fold_name(b"A\xffB"), b"a\xffb");
        assert!(matches!(fold_name(b"plain"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn folded_order_puts_names_that_fold_equal_side_by_side() {
        let mut names: Vec<&[u8]> = vec![b"case.txt", b"Cb", b"Case.txt", b"a", b"CASE.txt"];
        names.sort_by(|a, b| cmp_names_folded(a, b));
        assert_eq!(
            names,
            vec![&b"a"[..], b"CASE.txt", b"Case.txt", b"case.txt", b"Cb"]
        );
        use std::cmp::Ordering::*;
        use std::path::Path;
        assert_eq!(
            cmp_paths_folded(Path::new("Dir/A"), Path::new("dir/a")),
            Equal
        );
        assert_eq!(cmp_paths_folded(Path::new("dir"), Path::new("Dir/a")), Less);
        assert_eq!(cmp_paths_folded(Path::new("b"), Path::new("A")), Greater);
    }

    #[test]
    fn case_collisions_first_of_each_group_wins_and_folders_take_their_content() {
        use std::path::{Path, PathBuf};
        let mut c = CaseCollisions::default();
        let walk = [
            ("", true),
            ("A.txt", false),
            ("a.txt", false),
            ("b", false),
            ("Dir", true),
            ("Dir/x", false),
            ("Dir/y", false),
            ("dir", true),
            ("dir/x", false),
            ("dir/z", false),
            ("e", true),
            ("e/X", false),
            ("e/x", false),
            ("e/sub", true),
            ("e/sub/x", false),
            ("f", false),
        ];
        let got: Vec<_> = walk
            .iter()
            .map(|(p, d)| (*p, c.check(Path::new(p), *d)))
            .filter(|(_, r)| r.is_some())
            .collect();
        let name = |w: &str| {
            Some(CaseCollision::Name {
                winner: PathBuf::from(w),
            })
        };
        let inside = || {
            Some(CaseCollision::InFolder {
                folder: "dir".into(),
                winner: "Dir".into(),
            })
        };
        assert_eq!(
            got,
            vec![
                ("a.txt", name("A.txt")),
                ("dir", name("Dir")),
                ("dir/x", inside()),
                ("dir/z", inside()),
                ("e/x", name("e/X")),
            ]
        );
        // Same names in different folders never collide.
        let mut c = CaseCollisions::default();
        for p in ["a", "a/x", "b", "b/X", "b/x/y"] {
            assert_eq!(c.check(Path::new(p), true), None, "{p}");
        }
    }
}
