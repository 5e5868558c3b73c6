//! Reads the times cannot vouch for: what moved while a file was read, its
//! timestamps' granularity, and git's racy files (a file changed within its
//! granularity of its read's start). Pure rules, as the rest of `decide`;
//! the reader (`transfer::reader`) applies them.

use std::time::Duration;

/// What the reader compares before and after reading a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStamp {
    pub size: u64,
    pub modified_ns: i64,
    pub changed_ns: i64,
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
pub fn time_granularity(modified_ns: i64) -> Duration {
    const S: i64 = 1_000_000_000;
    match (modified_ns.rem_euclid(S), modified_ns.div_euclid(S) % 2) {
        (0, 0) => Duration::from_secs(2),
        (0, _) => Duration::from_secs(1),
        _ => Duration::ZERO,
    }
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
pub fn racy_window(before: &ReadStamp, read_start_ns: i64) -> Option<Duration> {
    let window = time_granularity(before.modified_ns) + TICK;
    let newest = before.modified_ns.max(before.changed_ns);
    let settled = newest.saturating_add(window.as_nanos() as i64);
    (read_start_ns < settled).then_some(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

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
        let tick = TICK.as_nanos() as i64;
        let at = |m: i64, c: i64| ReadStamp {
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
        assert_eq!(racy_window(&at(i64::MAX, i64::MAX), 0), fine);
        assert_eq!(racy_window(&at(i64::MIN, i64::MIN), 0), None);
    }
}
