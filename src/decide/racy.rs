//! Reads the times cannot vouch for: what moved while a file was read, its
//! timestamps' granularity, and git's racy files (a file changed within its
//! granularity of its read's start). Pure rules, as the rest of `decide`;
//! the reader (`transfer::reader`) applies them.

use std::time::Duration;

/// What the reader compares before and after reading a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStamp {
    pub size: u64,
    pub modified_ns: i128,
    pub changed_ns: i128,
}

/// Added to every timestamp granularity: a file's times come from its
/// writer's clock tick (Linux 1-10 ms, Windows 15.6 ms), which may lag the
/// clock the reader reads by up to one tick.
pub const TICK: Duration = Duration::from_millis(20);

/// The timestamp granularity of the filesystem a file's mtime came from:
/// a whole second is a filesystem that keeps seconds (ext3, ext4 with
/// 128-byte inodes, NFS servers on those), an even one FAT's 2 s; anything
/// finer keeps sub-seconds. A time set to a whole second by hand (`touch
/// -d`, an archive, a copy from FAT) only makes its window wider than needed.
pub fn time_granularity(modified_ns: i128) -> Duration {
    const S: i128 = 1_000_000_000;
    match (modified_ns.rem_euclid(S), modified_ns.div_euclid(S) % 2) {
        (0, 0) => Duration::from_secs(2),
        (0, _) => Duration::from_secs(1),
        _ => Duration::ZERO,
    }
}

/// Whether a destination that shows `shown` right after its mtime was
/// set to `asked` cannot hold that time: more than FAT's 2 s apart. A
/// coarser granularity only rounds; a date past the destination's range
/// (ext4 ends in 2446, 128-byte inodes and FAT sooner) is clamped years
/// away.
pub fn time_not_held(asked: i128, shown: i128) -> bool {
    asked.abs_diff(shown) > 2_000_000_000
}

/// What moved between two stats of a file being read, if anything: the
/// copy may then mix two versions. The ctime moves on every write and
/// cannot be set back (`touch -r` sets it to now).
pub fn moved_during_read(before: &ReadStamp, after: &ReadStamp) -> Option<&'static str> {
    if after.size != before.size {
        Some("size")
    } else if after.modified_ns != before.modified_ns {
        Some("mtime")
    } else if after.changed_ns != before.changed_ns {
        Some("ctime")
    } else {
        None
    }
}

/// A racy file (git's racy index entries): its mtime or ctime lies within
/// its timestamp granularity (plus [`TICK`]) of the moment its read began
/// (`read_start_ns`, this machine's clock), so a write during or just after
/// the read may leave every time as it was. Returns the window it must wait
/// after the read began before a second read can vouch for the first; None
/// for a file whose times are older (the common case: any later write
/// moves them).
pub fn racy_window(before: &ReadStamp, read_start_ns: impl Into<i128>) -> Option<Duration> {
    let window = time_granularity(before.modified_ns) + TICK;
    let newest = before.modified_ns.max(before.changed_ns);
    let settled = newest + window.as_nanos() as i128;
    (read_start_ns.into() < settled).then_some(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn granularity_from_the_mtime() {
        assert_eq!(time_granularity(100 * S + 1), Duration::ZERO);
        assert_eq!(time_granularity(100 * S + 1_000), Duration::ZERO);
        assert_eq!(time_granularity(101 * S), Duration::from_secs(1));
        assert_eq!(time_granularity(100 * S), Duration::from_secs(2));
        assert_eq!(time_granularity(-3 * S), Duration::from_secs(1));
        assert_eq!(time_granularity(-S / 2), Duration::ZERO);
        assert_eq!(time_granularity(0), Duration::from_secs(2));
    }

    #[test]
    fn a_time_not_held_is_one_clamped_not_one_rounded() {
        let far = 32_503_680_000 * S + 250;
        assert!(time_not_held(far, 15_032_385_535 * S), "3000 shown as 2446");
        assert!(time_not_held(
            -2_147_483_649 * S,
            -2_147_483_648 * S + 3 * S
        ));
        assert!(!time_not_held(far, far));
        assert!(!time_not_held(101 * S + 1, 102 * S), "FAT rounds up to 2 s");
        assert!(
            !time_not_held(101 * S + 123, 101 * S + 100),
            "SMB keeps 100 ns"
        );
    }

    #[test]
    fn what_moved_during_a_read() {
        let b = ReadStamp {
            size: 10,
            modified_ns: 5 * S,
            changed_ns: 6 * S,
        };
        assert_eq!(moved_during_read(&b, &b), None);
        for (after, what) in [
            (ReadStamp { size: 11, ..b }, "size"),
            (ReadStamp { size: 9, ..b }, "size"),
            (
                ReadStamp {
                    modified_ns: 5 * S + 1,
                    ..b
                },
                "mtime",
            ),
            (
                ReadStamp {
                    changed_ns: 7 * S,
                    ..b
                },
                "ctime",
            ),
            (
                ReadStamp {
                    size: 11,
                    changed_ns: 7 * S,
                    ..b
                },
                "size",
            ),
        ] {
            assert_eq!(moved_during_read(&b, &after), Some(what), "{after:?}");
        }
    }

    #[test]
    fn racy_files_are_those_written_within_their_granularity_of_the_read() {
        let tick = TICK.as_nanos() as i128;
        let at = |m: i128, c: i128| ReadStamp {
            size: 1,
            modified_ns: m,
            changed_ns: c,
        };
        let one = Some(Duration::from_secs(1) + TICK);
        let fine = Some(TICK);
        // Whole odd seconds: racy until a second (and a tick) has passed.
        assert_eq!(racy_window(&at(101 * S, 101 * S), 101 * S + S / 3), one);
        assert_eq!(racy_window(&at(101 * S, 101 * S), 102 * S + tick - 1), one);
        assert_eq!(racy_window(&at(101 * S, 101 * S), 102 * S + tick), None);
        // An old mtime put back, a recent ctime: the ctime counts.
        assert_eq!(racy_window(&at(7 * S, 101 * S), 101 * S + 5), one);
        // Even seconds: FAT's two.
        let two = Some(Duration::from_secs(2) + TICK);
        assert_eq!(racy_window(&at(100 * S, 100 * S), 101 * S + S / 2), two);
        // Sub-second times: only the tick.
        let m = 100 * S + 123;
        assert_eq!(racy_window(&at(m, m), m + tick / 2), fine);
        assert_eq!(racy_window(&at(m, m), m + tick), None);
        assert_eq!(racy_window(&at(m, m), m + 3600 * S), None);
        // A time ahead of this clock (a server's clock ahead, a future mtime).
        assert_eq!(racy_window(&at(m + 60 * S, m), m), fine);
        // Extremes do not overflow.
        assert_eq!(racy_window(&at(i64::MAX.into(), i64::MAX.into()), 0), fine);
        assert_eq!(racy_window(&at(i64::MIN.into(), i64::MIN.into()), 0), None);
        assert_eq!(racy_window(&at(15_032_385_535 * S + 1, 0), 0), fine, "2446");
    }
}
