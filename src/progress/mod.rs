//! Progress of a run (SPEC §8): the figures the stages report, and how the
//! operator sees them. Stages say what happened — `source_file`,
//! `set_backlog`, a lane's `file_started` / `bytes_written` / `file_done`,
//! the committer's `file_synced` — and never touch a counter themselves;
//! the counters are private to this module. Stages never print.
//!
//! - this file: [`Progress`] (a cheap clone over atomics, a few nanoseconds
//!   per call), the [`Phase`], one [`Lane`] slot per transfer lane (as
//!   rclone's `fs/accounting/stats.go` keeps its `transferring` list), and
//!   the [`Snapshot`] the rest reads;
//! - `render`: pure functions from a snapshot to lines (live frame, plain
//!   line, summary), rates and ETAs; unit- and snapshot-tested without a clock;
//! - `reporter`: the thread that samples the snapshot and draws it;
//! - `term`: the terminal's size and echo settings.

mod render;
mod reporter;
mod term;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use render::{
    Ewma, Rates, Summary, count, eta, fmt_duration, fmt_eta, live_frame, mean_rate, plain_line,
    printable, summary_line,
};
pub use reporter::{LogWriter, Reporter, Style};

/// Which stage is running: what the display shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    #[default]
    Idle = 0,
    Scan = 1,
    /// Also `jobrun verify`'s reading (its lanes use the same slots).
    Transfer = 2,
    Mirror = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Phase::Scan,
            2 => Phase::Transfer,
            3 => Phase::Mirror,
            _ => Phase::Idle,
        }
    }
}

/// The shared counters. Stages write them through [`Progress`] and [`Lane`]
/// with relaxed atomics; the reporter reads them, locking nothing but the
/// lanes' slots.
#[derive(Debug, Default)]
struct Counters {
    phase: AtomicU8,
    /// Regular files and their bytes seen by the source walk.
    src_files: AtomicU64,
    src_bytes: AtomicU64,
    /// Regular files and their bytes seen by the destination walk.
    dst_files: AtomicU64,
    dst_bytes: AtomicU64,
    /// Entries (any kind) and file bytes decided `pending` so far by the scan.
    pending_files: AtomicU64,
    pending_bytes: AtomicU64,
    /// What the transfer stage set out to copy: entries other than folders
    /// (folders only get their times restored) and file bytes.
    backlog_files: AtomicU64,
    backlog_bytes: AtomicU64,
    /// Backlog entries that left their lane (copied or failed).
    backlog_files_done: AtomicU64,
    /// Sizes of those, plus the bytes written so far of the files still in
    /// flight: one figure, so it moves with every block and never dips
    /// when a file moves from "in flight" to "done".
    backlog_bytes_done: AtomicU64,
    /// Entries recorded synced this run, and the bytes written for them:
    /// what the DB holds as copied by this run (the summary, `run_end`, the
    /// `runs` row and the metrics). Holes and hard-linked names add nothing.
    files_synced: AtomicU64,
    bytes_synced: AtomicU64,
    /// Entries recorded failed this run.
    files_failed: AtomicU64,
    /// Bytes written to the destination this run (partial files included;
    /// holes and zero runs left as holes are not written).
    bytes_written: AtomicU64,
    /// Bytes copied by all earlier runs of the job (the `runs` table).
    bytes_before: AtomicU64,
    /// The bandwidth limit in force, bytes/s (`throttle::limit_code`).
    bwlimit: AtomicU64,
    /// Start order of the files the lanes take: sorts the display stably.
    next_seq: AtomicU64,
    /// One slot per lane of the stage running now.
    lanes: Mutex<Vec<Arc<Slot>>>,
}

/// One lane's file in flight.
#[derive(Debug, Default)]
struct Slot {
    file: Mutex<SlotFile>,
    /// Bytes of `file` written so far; changed by the lane only.
    done: AtomicU64,
}

#[derive(Debug, Default)]
struct SlotFile {
    /// Start order of the file; 0 when the lane has no file.
    seq: u64,
    /// Reused per file: no allocation per file on trees of millions.
    path: PathBuf,
    size: u64,
    started: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked lane is a bug that ends the run anyway; its figures stay readable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Shared progress of one run (or verify).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Counters>);

/// What the run recorded as done, for the summary and the `runs` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub files_synced: u64,
    pub bytes_synced: u64,
    pub files_failed: u64,
}

impl Progress {
    pub fn set_phase(&self, phase: Phase) {
        self.0.phase.store(phase as u8, Relaxed);
    }

    /// The source walk saw a regular file of `size` bytes.
    pub fn source_file(&self, size: u64) {
        self.0.src_files.fetch_add(1, Relaxed);
        self.0.src_bytes.fetch_add(size, Relaxed);
    }

    /// The destination walk saw a regular file of `size` bytes.
    pub fn dest_file(&self, size: u64) {
        self.0.dst_files.fetch_add(1, Relaxed);
        self.0.dst_bytes.fetch_add(size, Relaxed);
    }

    /// The scan has decided `files` entries (`bytes` of files) pending so far.
    pub fn scan_pending(&self, files: u64, bytes: u64) {
        self.0.pending_files.store(files, Relaxed);
        self.0.pending_bytes.store(bytes, Relaxed);
    }

    /// What the transfer (or verify) sets out to do: entries and file bytes.
    pub fn set_backlog(&self, files: u64, bytes: u64) {
        self.0.backlog_files.store(files, Relaxed);
        self.0.backlog_bytes.store(bytes, Relaxed);
    }

    /// Bytes copied by the job's earlier runs (the total shown beside this run's).
    pub fn set_bytes_before(&self, bytes: u64) {
        self.0.bytes_before.store(bytes, Relaxed);
    }

    /// Entries the transfer (or verify) set out to do.
    pub fn backlog_files(&self) -> u64 {
        self.0.backlog_files.load(Relaxed)
    }

    /// The limit in force now, as `throttle::limit_code` encodes it.
    pub fn set_limit(&self, code: u64) {
        self.0.bwlimit.store(code, Relaxed);
    }

    /// The limit in force now (see [`Self::set_limit`]).
    pub fn limit(&self) -> u64 {
        self.0.bwlimit.load(Relaxed)
    }

    /// `n` fresh slots, one per lane of the stage about to run; the slots
    /// of an earlier stage are dropped from the display.
    pub fn lanes(&self, n: usize) -> Vec<Lane> {
        let slots: Vec<Arc<Slot>> = (0..n).map(|_| Arc::default()).collect();
        *lock(&self.0.lanes) = slots.clone();
        slots
            .into_iter()
            .map(|slot| Lane {
                progress: self.clone(),
                slot,
            })
            .collect()
    }

    /// The committer recorded a backlog entry as synced, `written` bytes
    /// written for it (holes and hard links write none).
    pub fn file_synced(&self, written: u64) {
        self.0.files_synced.fetch_add(1, Relaxed);
        self.0.bytes_synced.fetch_add(written, Relaxed);
    }

    /// The committer recorded an entry as failed (a file, or a folder
    /// whose times could not be restored).
    pub fn file_failed(&self) {
        self.0.files_failed.fetch_add(1, Relaxed);
    }

    /// What the run recorded as done so far.
    pub fn totals(&self) -> Totals {
        Totals {
            files_synced: self.0.files_synced.load(Relaxed),
            bytes_synced: self.0.bytes_synced.load(Relaxed),
            files_failed: self.0.files_failed.load(Relaxed),
        }
    }

    /// The files the lanes have in flight, in the order they started.
    pub fn in_flight(&self) -> Vec<Transfer> {
        let slots = lock(&self.0.lanes).clone();
        let mut out: Vec<Transfer> = slots
            .iter()
            .enumerate()
            .filter_map(|(lane, slot)| {
                let f = lock(&slot.file);
                (f.seq != 0).then(|| Transfer {
                    lane,
                    seq: f.seq,
                    path: f.path.clone(),
                    size: f.size,
                    // Read under the lock, as the lane resets it under it.
                    done: slot.done.load(Relaxed),
                    elapsed: f.started.map_or(Duration::ZERO, |t| t.elapsed()),
                    rate: None,
                })
            })
            .collect();
        out.sort_by_key(|t| t.seq);
        out
    }

    /// A consistent-enough copy of the counters (each read is atomic; the
    /// set is not, which only matters for a frame).
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.0;
        let backlog_bytes = c.backlog_bytes.load(Relaxed);
        Snapshot {
            phase: Phase::from_u8(c.phase.load(Relaxed)),
            src_files: c.src_files.load(Relaxed),
            src_bytes: c.src_bytes.load(Relaxed),
            dst_files: c.dst_files.load(Relaxed),
            dst_bytes: c.dst_bytes.load(Relaxed),
            pending_files: c.pending_files.load(Relaxed),
            pending_bytes: c.pending_bytes.load(Relaxed),
            backlog_files: c.backlog_files.load(Relaxed),
            backlog_bytes,
            backlog_files_done: c.backlog_files_done.load(Relaxed),
            backlog_bytes_done: c.backlog_bytes_done.load(Relaxed).min(backlog_bytes),
            files_done: c.files_synced.load(Relaxed),
            files_failed: c.files_failed.load(Relaxed),
            bytes_done: c.bytes_written.load(Relaxed),
            bytes_synced: c.bytes_synced.load(Relaxed),
            bytes_before: c.bytes_before.load(Relaxed),
            bwlimit: c.bwlimit.load(Relaxed),
            transfers: self.in_flight(),
        }
    }
}

/// One lane's slot: the lane registers the file it takes, adds the bytes
/// it writes, and says when the file leaves it. Dropping the lane empties
/// its slot.
#[derive(Debug)]
pub struct Lane {
    progress: Progress,
    slot: Arc<Slot>,
}

impl Lane {
    /// The lane starts writing (or reading, for verify) `path`, `size` bytes.
    /// `path` is what the display shows: relative to the root, preferably.
    pub fn file_started(&self, path: &Path, size: u64) {
        self.drop_file();
        let mut f = lock(&self.slot.file);
        f.seq = self.progress.0.next_seq.fetch_add(1, Relaxed) + 1;
        let s = f.path.as_mut_os_string();
        s.clear();
        s.push(path.as_os_str());
        f.size = size;
        f.started = Some(Instant::now());
        self.slot.done.store(0, Relaxed);
    }

    /// `n` more bytes of the lane's file reached the destination.
    pub fn bytes_written(&self, n: u64) {
        let c = &self.progress.0;
        self.slot.done.fetch_add(n, Relaxed);
        c.bytes_written.fetch_add(n, Relaxed);
        c.backlog_bytes_done.fetch_add(n, Relaxed);
    }

    /// `n` more bytes of the lane's file are done without being written: a
    /// hole, or a run of zeros left as one (`sparse`).
    pub fn bytes_skipped(&self, n: u64) {
        let c = &self.progress.0;
        self.slot.done.fetch_add(n, Relaxed);
        c.backlog_bytes_done.fetch_add(n, Relaxed);
    }

    /// A backlog entry of `size` bytes left the lane, copied or failed: it
    /// counts as done for the backlog (a failed one will not be copied this
    /// run). The entry need not have been started (a symlink, a file the
    /// reader could not open).
    pub fn file_done(&self, size: u64) {
        let c = &self.progress.0;
        let mut f = lock(&self.slot.file);
        let written = if f.seq == 0 {
            0
        } else {
            self.slot.done.swap(0, Relaxed)
        };
        f.seq = 0;
        // Only the part not yet counted: one add, so the figure never dips.
        c.backlog_bytes_done
            .fetch_add(size.saturating_sub(written), Relaxed);
        c.backlog_files_done.fetch_add(1, Relaxed);
    }

    /// The lane's file was given up without an outcome (a stop, a file the
    /// reader abandoned): it stays pending, and its written part no longer
    /// counts as done.
    pub fn drop_file(&self) {
        let mut f = lock(&self.slot.file);
        if f.seq != 0 {
            let written = self.slot.done.swap(0, Relaxed);
            self.progress
                .0
                .backlog_bytes_done
                .fetch_sub(written, Relaxed);
            f.seq = 0;
        }
    }

    /// The limit the lane sees in force, as `throttle::limit_code` encodes it.
    pub fn set_limit(&self, code: u64) {
        self.progress.set_limit(code);
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        lock(&self.slot.file).seq = 0;
    }
}

/// A file in flight, as the display and `status` show it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transfer {
    /// The lane's index.
    pub lane: usize,
    /// Start order: lines sorted by it do not jump.
    pub seq: u64,
    pub path: PathBuf,
    pub size: u64,
    /// Bytes written so far.
    pub done: u64,
    /// Since the lane took the file.
    pub elapsed: Duration,
    /// Its recent rate, bytes/s; set by the reporter, which samples it.
    pub rate: Option<f64>,
}

/// The counters at one instant: everything a line or a frame shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub phase: Phase,
    pub src_files: u64,
    pub src_bytes: u64,
    pub dst_files: u64,
    pub dst_bytes: u64,
    pub pending_files: u64,
    pub pending_bytes: u64,
    pub backlog_files: u64,
    pub backlog_bytes: u64,
    /// Backlog entries finished (copied or failed).
    pub backlog_files_done: u64,
    /// Backlog bytes finished, the written part of files in flight
    /// included; never more than the backlog.
    pub backlog_bytes_done: u64,
    /// Entries recorded synced this run.
    pub files_done: u64,
    pub files_failed: u64,
    /// Bytes written this run, partial files included.
    pub bytes_done: u64,
    /// Sizes of the entries recorded synced this run.
    pub bytes_synced: u64,
    pub bytes_before: u64,
    pub bwlimit: u64,
    /// Files in flight, in start order.
    pub transfers: Vec<Transfer>,
}

impl Snapshot {
    pub fn backlog_bytes_left(&self) -> u64 {
        self.backlog_bytes - self.backlog_bytes_done
    }

    /// Bytes copied by this run and all earlier ones.
    pub fn bytes_total(&self) -> u64 {
        self.bytes_before + self.bytes_done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_progress_counts_finished_and_in_flight_bytes() {
        let p = Progress::default();
        p.set_backlog(3, 300);
        let lanes = p.lanes(2);
        lanes[0].file_started(Path::new("a"), 100);
        lanes[0].bytes_written(60);
        assert_eq!(p.snapshot().backlog_bytes_done, 60);
        lanes[1].file_started(Path::new("b"), 100);
        lanes[1].bytes_written(10);
        let s = p.snapshot();
        assert_eq!(s.backlog_bytes_done, 70, "both lanes' bytes count");
        assert_eq!(
            s.transfers
                .iter()
                .map(|t| (t.path.to_str().unwrap(), t.done))
                .collect::<Vec<_>>(),
            [("a", 60), ("b", 10)],
            "in start order"
        );
        lanes[0].bytes_written(40);
        lanes[0].file_done(100);
        p.file_synced(100);
        lanes[1].file_done(100); // failed: the rest of b will not be copied this run
        p.file_failed();
        let s = p.snapshot();
        assert_eq!(s.backlog_files_done, 2);
        assert_eq!(s.backlog_bytes_done, 200);
        assert_eq!(s.backlog_bytes_left(), 100);
        assert_eq!(
            s.bytes_done, 110,
            "bytes written, failed file's part included"
        );
        assert!(s.transfers.is_empty());
        assert_eq!(
            p.totals(),
            Totals {
                files_synced: 1,
                bytes_synced: 100,
                files_failed: 1
            }
        );
    }

    #[test]
    fn an_entry_never_started_counts_whole_and_a_dropped_file_not_at_all() {
        let p = Progress::default();
        p.set_backlog(3, 300);
        let lanes = p.lanes(1);
        lanes[0].file_done(5); // a symlink
        lanes[0].file_started(Path::new("c"), 100);
        lanes[0].bytes_written(30);
        lanes[0].drop_file(); // stopped: stays pending
        let s = p.snapshot();
        assert_eq!((s.backlog_files_done, s.backlog_bytes_done), (1, 5));
        assert_eq!(s.bytes_done, 30);
        lanes[0].file_started(Path::new("d"), 100);
        drop(lanes);
        assert!(p.in_flight().is_empty(), "a dropped lane empties its slot");
        assert_eq!(p.lanes(3).len(), 3);
    }

    #[test]
    fn phases_round_trip() {
        let p = Progress::default();
        for ph in [Phase::Scan, Phase::Transfer, Phase::Mirror, Phase::Idle] {
            p.set_phase(ph);
            assert_eq!(p.snapshot().phase, ph);
        }
    }
}
