//! Write-back pacing and the other system calls of the transfer's write
//! path (`sync_file_range`, `posix_fadvise`, `syncfs`, a checked `close`);
//! the raw ones live in `sys`.

use std::fs::File;
use std::io;

use tracing::warn;

/// Write-back pacing for unlimited runs: large ranges, so the syscalls cost
/// nothing next to the data (see docs/bandwidth.md).
pub(super) const WRITEBACK_UNLIMITED: u64 = 8 << 20;

/// When limited, ranges of this much time at the active rate: small enough
/// that one range leaving at link speed is not a burst in a 100 ms window.
const WRITEBACK_LIMITED_DIV: u64 = 64;
/// Smallest range when limited: below it, the headers of each write
/// request (NFS, SMB2, TCP) become a visible share of the wire.
const WRITEBACK_LIMITED_MIN: u64 = 64 << 10;

/// The write-back range of one lane of `lanes` sharing the rate `rate`:
/// 1/64 s of its share, a power of two (so ranges stay page-aligned in
/// blocks of a power-of-two size), 64 KiB to [`WRITEBACK_UNLIMITED`].
pub(super) fn limited_range(rate: u64, lanes: u64) -> u64 {
    let share = rate / WRITEBACK_LIMITED_DIV / lanes.max(1);
    let pow2 = 1u64 << share.max(1).ilog2();
    pow2.clamp(WRITEBACK_LIMITED_MIN, WRITEBACK_UNLIMITED)
}

/// Keeps the dirty page-cache data a file leaves behind small (SPEC §6): a
/// kernel-buffered mount (NFS, CIFS, FUSE writeback) would otherwise bank
/// the throttled writes and flush them later at link rate. Every range of
/// written bytes is handed to write-out (`sync_file_range(WRITE)`) as soon
/// as the range before it has been waited for and dropped from the cache
/// (`WAIT_BEFORE|WRITE|WAIT_AFTER`, then `posix_fadvise(DONTNEED)`): one
/// range in flight, one being written, never more.
#[derive(Debug, Default)]
pub(super) struct WriteBack {
    /// Bytes written to the file so far.
    written: u64,
    /// Start of the bytes not yet handed to write-out.
    queued: u64,
    /// The range handed to write-out last, not yet waited for.
    in_flight: Option<(u64, u64)>,
    /// Set when the filesystem refuses `sync_file_range` (then nothing is paced).
    off: bool,
}

impl WriteBack {
    /// Records `n` more bytes written; submits a range once `range` bytes
    /// are pending.
    pub(super) fn wrote(&mut self, f: &File, n: usize, range: u64) -> io::Result<()> {
        self.written += n as u64;
        if self.off || self.written - self.queued < range {
            return Ok(());
        }
        let next = (self.queued, self.written - self.queued);
        self.queued = self.written;
        // The previous range first: only one range is ever in flight, so
        // the server sees the writes in file order (rclone mount without a
        // VFS cache refuses out-of-order writes: "can't seek").
        if let Some(prev) = self.in_flight.take() {
            self.settle(f, prev)?;
        }
        self.sync(f, next, libc::SYNC_FILE_RANGE_WRITE)?;
        self.in_flight = Some(next);
        Ok(())
    }

    /// Records `n` more bytes written and waits until everything written
    /// has left (handed to write-out and acknowledged, then dropped from
    /// the cache): under `auto` the write and its write-back are one timed
    /// call. Nothing is left in flight.
    pub(super) fn write_through(&mut self, f: &File, n: usize) -> io::Result<()> {
        self.written += n as u64;
        if let Some(prev) = self.in_flight.take() {
            self.settle(f, prev)?;
        }
        if self.off || self.written == self.queued {
            return Ok(());
        }
        let range = (self.queued, self.written - self.queued);
        self.queued = self.written;
        self.settle(f, range)
    }

    /// Records a hole of `n` bytes skipped (`sparse`): nothing to write
    /// out, so nothing pending is submitted for it.
    pub(super) fn skipped(&mut self, n: u64) {
        if self.queued == self.written {
            self.queued += n;
        }
        self.written += n;
    }

    /// Waits until the range handed to write-out last has left (a limited
    /// writer calls it before taking the tokens of its next chunk: a lane
    /// whose share's transport stalled then resumes at the rate, instead of
    /// releasing what it wrote meanwhile in one burst).
    pub(super) fn settle_in_flight(&mut self, f: &File) -> io::Result<()> {
        match self.in_flight.take() {
            Some(prev) if !self.off => self.settle(f, prev),
            _ => Ok(()),
        }
    }

    /// Before close: everything written is out of the cache, so that times
    /// set afterwards are the last change the server sees.
    pub(super) fn finish(&mut self, f: &File) -> io::Result<()> {
        if self.off {
            return Ok(());
        }
        if let Some(prev) = self.in_flight.take() {
            self.settle(f, prev)?;
        }
        if self.written > self.queued {
            let rest = (self.queued, self.written - self.queued);
            self.queued = self.written;
            self.in_flight = Some(rest);
        }
        if let Some(last) = self.in_flight.take() {
            self.settle(f, last)?;
        }
        Ok(())
    }

    fn settle(&mut self, f: &File, range: (u64, u64)) -> io::Result<()> {
        self.sync(
            f,
            range,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER,
        )?;
        // Advice only: its failure changes nothing that matters.
        let _ = rustix::fs::fadvise(
            f,
            range.0,
            std::num::NonZeroU64::new(range.1),
            rustix::fs::Advice::DontNeed,
        );
        Ok(())
    }

    fn sync(&mut self, f: &File, (off, len): (u64, u64), flags: libc::c_uint) -> io::Result<()> {
        if self.off {
            return Ok(());
        }
        let Err(e) = crate::sys::sync_file_range(f, off, len, flags) else {
            return Ok(());
        };
        match e.raw_os_error() {
            // Not supported here (e.g. some FUSE or overlay setups): write
            // unpaced rather than fail the copy.
            Some(libc::ENOSYS)
            | Some(libc::EINVAL)
            | Some(libc::ESPIPE)
            | Some(libc::EOPNOTSUPP) => {
                warn!(error = %e, "sync_file_range refused: file written without write-back pacing");
                self.off = true;
                Ok(())
            }
            _ => Err(e),
        }
    }
}

pub(super) use crate::sys::close_checked;

/// `syncfs(2)` on the filesystem holding `f`: everything written to it
/// (data, times, renames) reaches stable storage.
pub(super) fn sync_filesystem(f: &File) -> io::Result<()> {
    Ok(rustix::fs::syncfs(f)?)
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn limited_ranges_are_powers_of_two_and_all_lanes_hold_under_1_64_s_of_the_rate() {
        // A lane holds one range not yet acknowledged (see `WriteBack`).
        for (rate, lanes, want) in [
            (5 << 20, 8, 64 << 10),
            (100 << 20, 3, 512 << 10),
            (200 << 20, 4, 512 << 10),
            (1 << 10, 64, 64 << 10),
            (1 << 40, 1, WRITEBACK_UNLIMITED),
            (u64::MAX, 0, WRITEBACK_UNLIMITED),
        ] {
            let r = limited_range(rate, lanes);
            assert_eq!(r, want, "rate {rate} lanes {lanes}");
            assert!(r.is_power_of_two());
        }
        for lanes in 1..=64 {
            for mib in [5, 20, 100] {
                let rate = mib << 20;
                // At most 1/64 s of the rate in all once the ranges are
                // above their floor.
                let held = lanes * limited_range(rate, lanes);
                assert!(
                    held <= rate / 64 || limited_range(rate, lanes) == WRITEBACK_LIMITED_MIN,
                    "{mib} MiB/s, {lanes} lanes: {held}"
                );
            }
        }
    }
}

#[cfg(test)]
mod through_tests {
    use super::*;
    use std::io::Write;

    /// Under `auto` each chunk's write-back is inside the timed call: after
    /// it nothing of the file is queued or in flight, also when a range
    /// submitted before (a fixed limit until a timetable entry) was.
    #[test]
    fn write_through_leaves_nothing_pending() {
        let mut f = tempfile::tempfile().unwrap();
        let mut wb = WriteBack::default();
        f.write_all(&[7; 100_000]).unwrap();
        wb.wrote(&f, 100_000, 65536).unwrap();
        assert!(wb.in_flight.is_some() || wb.off);
        for _ in 0..3 {
            f.write_all(&[8; 65536]).unwrap();
            wb.write_through(&f, 65536).unwrap();
            assert_eq!(wb.in_flight, None);
            assert_eq!(wb.queued, wb.written);
        }
        assert_eq!(wb.written, 100_000 + 3 * 65536);
        wb.finish(&f).unwrap();
    }
}
