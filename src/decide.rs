//! Pure decisions, no I/O: the skip rule (SPEC §5) and run mode (SPEC §3).
//! Each returns a reason rather than a bool so tests, logs and `check` can
//! say *why*.

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
    pub modified_ns: i64,
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
    if u128::from(diff) <= window.as_nanos() {
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
        !matches!(self, RunMode::Resume { .. })
    }

    pub fn name(self) -> &'static str {
        if self.scans() { "scan" } else { "resume" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CopyReason::*;
    use Decision::*;
    use EntryKind::*;
    use SkipReason::*;

    fn st(kind: EntryKind, size: u64, m: i64) -> Stamp {
        Stamp {
            kind,
            size,
            modified_ns: m,
        }
    }

    const S: i64 = 1_000_000_000;

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
}
