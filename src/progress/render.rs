//! Rendering: pure functions from a [`Snapshot`] (and the [`Rates`] the
//! reporter measured) to the lines the operator sees — the live frame, the
//! plain line, the summary — plus the rate and ETA arithmetic. No clock, no
//! I/O: every line is unit- and snapshot-tested.

use std::time::Duration;

use super::{Phase, Snapshot, Transfer};
use crate::units::{HumanRate, human_bytes};

// ---- rates and ETAs (pure) ------------------------------------------------

/// Exponentially weighted moving average of a rate, with a time constant
/// `tau` and bias correction: until `tau` has passed it is the plain mean
/// over the time seen so far (no slow ramp up from zero), afterwards older
/// samples fade with weight `e^(-age/tau)`. Samples may be unevenly spaced.
#[derive(Debug, Clone, Copy)]
pub struct Ewma {
    tau_secs: f64,
    value: f64,
    weight: f64,
}

impl Ewma {
    pub fn new(tau: Duration) -> Self {
        Self {
            tau_secs: tau.as_secs_f64().max(1e-3),
            value: 0.0,
            weight: 0.0,
        }
    }

    /// Adds `bytes` moved during the last `dt`.
    pub fn record(&mut self, bytes: u64, dt: Duration) {
        let dt = dt.as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let keep = (-dt / self.tau_secs).exp();
        self.value = keep * self.value + (1.0 - keep) * (bytes as f64 / dt);
        self.weight = keep * self.weight + (1.0 - keep);
    }

    /// Bytes per second; `None` before the first sample.
    pub fn rate(&self) -> Option<f64> {
        (self.weight > 1e-12).then(|| self.value / self.weight)
    }
}

/// Time to move `remaining` bytes at `rate` bytes/s. `None` when the rate
/// is unknown or zero (stalled): an honest "don't know" beats "forever".
pub fn eta(remaining: u64, rate: Option<f64>) -> Option<Duration> {
    if remaining == 0 {
        return Some(Duration::ZERO);
    }
    let rate = rate.filter(|r| r.is_finite() && *r > 0.0)?;
    Duration::try_from_secs_f64(remaining as f64 / rate).ok()
}

/// Mean rate of several runs: total bytes over total time, so a long run
/// weighs more than a short one (`(bytes, seconds)` pairs).
pub fn mean_rate(runs: impl IntoIterator<Item = (u64, f64)>) -> Option<f64> {
    let (bytes, secs) = runs
        .into_iter()
        .filter(|(_, s)| s.is_finite() && *s > 0.0)
        .fold((0u64, 0f64), |(b, t), (rb, rs)| (b + rb, t + rs));
    (bytes > 0 && secs > 0.0).then(|| bytes as f64 / secs)
}

/// A duration for people, two units at most: `45s`, `3m 07s`, `2h 05m`,
/// `3d 04h`. Whole seconds (rates are never that precise).
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// An ETA for display: `-` when unknown.
pub fn fmt_eta(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_string(), fmt_duration)
}

fn fmt_rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| HumanRate(r).to_string())
}

fn percent(done: u64, total: u64) -> String {
    if total == 0 {
        return "100%".into();
    }
    format!("{:.1}%", done as f64 * 100.0 / total as f64)
}

// ---- lines and frames (pure) -----------------------------------------------

/// Everything one progress line needs besides the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// Recent rate (seconds).
    pub now: Option<f64>,
    /// Smoothed rate of bytes written (a minute).
    pub smoothed: Option<f64>,
    /// Smoothed rate (a minute) the backlog drains at: bytes written plus
    /// holes and zero runs left as holes, which take no time on the wire;
    /// the backlog's ETA.
    pub draining: Option<f64>,
    /// Time since the run started.
    pub elapsed: Duration,
}

/// The plain line printed every `progress_interval` when stderr is not a
/// terminal. Starts with the phase (`scan:`, `transfer:`) so `grep` finds
/// it; the transfer line ends with the number of files in flight and the
/// largest of them, whose path comes last as it may contain anything.
/// Empty when there is nothing to report.
pub fn plain_line(s: &Snapshot, r: &Rates) -> String {
    let elapsed = fmt_duration(r.elapsed);
    match s.phase {
        Phase::Scan => format!(
            "scan: source {} files {}, destination {} files {}, pending {} entries {}, elapsed {elapsed}",
            s.src_files,
            human_bytes(s.src_bytes),
            s.dst_files,
            human_bytes(s.dst_bytes),
            s.pending_files,
            human_bytes(s.pending_bytes),
        ),
        Phase::Transfer => {
            let mut line = format!(
                "transfer: backlog {}/{} files {}/{} ({}) eta {}, rate {} smoothed {}{}, copied run {} total {}, failed {}, elapsed {elapsed}, active {}",
                s.backlog_files_done,
                s.backlog_files,
                human_bytes(s.backlog_bytes_done),
                human_bytes(s.backlog_bytes),
                percent(s.backlog_bytes_done, s.backlog_bytes),
                fmt_eta(eta(s.backlog_bytes_left(), r.draining.or(r.smoothed))),
                fmt_rate(r.now),
                fmt_rate(r.smoothed),
                limit_note(s.bwlimit),
                human_bytes(s.bytes_done),
                human_bytes(s.bytes_total()),
                s.files_failed,
                s.transfers.len(),
            );
            // The first of the largest: the one that decides when the run ends.
            let largest = s.transfers.iter().rev().max_by_key(|t| t.size);
            if let Some(t) = largest {
                line.push_str(&format!(
                    ", largest {}/{} ({}) eta {} {}",
                    human_bytes(t.done.min(t.size)),
                    human_bytes(t.size),
                    percent(t.done.min(t.size), t.size),
                    fmt_eta(file_eta(t)),
                    printable(&t.path.display().to_string()),
                ));
            }
            line
        }
        Phase::Mirror => format!("mirror: checking destination extras, elapsed {elapsed}"),
        Phase::Idle => String::new(),
    }
}

fn file_eta(t: &Transfer) -> Option<Duration> {
    eta(t.size.saturating_sub(t.done), t.rate)
}

fn limit_note(bwlimit: u64) -> String {
    if bwlimit == 0 {
        String::new()
    } else if bwlimit == crate::throttle::PAUSED {
        " limit paused".into()
    } else if bwlimit & crate::throttle::AUTO != 0 {
        match bwlimit & !crate::throttle::AUTO {
            0 => " limit auto".into(),
            r => format!(" limit auto {}", HumanRate(r as f64)),
        }
    } else {
        format!(" limit {}", HumanRate(bwlimit as f64))
    }
}

/// A path with control characters (possible in file names) made visible,
/// so a name can never inject escapes into a log or a terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// The live display on a terminal, one string per screen line, none wider
/// than `width` columns (a wrapped line would break the in-place redraw)
/// and no more than `height` lines (files in flight past that are counted
/// on a `+ N more` line). `tick` turns the spinner, so a stalled copy still
/// shows it is alive.
pub fn live_frame(
    s: &Snapshot,
    r: &Rates,
    width: usize,
    height: usize,
    tick: usize,
) -> Vec<String> {
    let spin = SPINNER[tick % SPINNER.len()];
    let elapsed = fmt_duration(r.elapsed);
    let lines = match s.phase {
        Phase::Scan => vec![
            format!("{spin} scan        elapsed {elapsed}"),
            format!(
                "  source      {:>12} files  {:>11}",
                s.src_files,
                human_bytes(s.src_bytes)
            ),
            format!(
                "  destination {:>12} files  {:>11}",
                s.dst_files,
                human_bytes(s.dst_bytes)
            ),
            format!(
                "  pending     {:>12} entries {:>10}",
                s.pending_files,
                human_bytes(s.pending_bytes)
            ),
        ],
        Phase::Transfer => {
            let mut lines = transfer_totals(s, r, width, spin);
            let room = height.saturating_sub(lines.len());
            lines.extend(transferring(&s.transfers, width, room));
            lines
        }
        Phase::Mirror => vec![format!(
            "{spin} mirror    checking destination extras, elapsed {elapsed}"
        )],
        Phase::Idle => vec![format!("{spin} jobrun    elapsed {elapsed}")],
    };
    lines.into_iter().map(|l| truncate(&l, width)).collect()
}

/// The transfer's head: files in flight, backlog with its ETA, rates,
/// totals. Each line has a long and a short form; the long one when it
/// fits, so a narrow terminal (60 columns) keeps the ETA and the totals.
fn transfer_totals(s: &Snapshot, r: &Rates, width: usize, spin: char) -> Vec<String> {
    let (done, total) = (s.backlog_bytes_done, s.backlog_bytes);
    let eta = fmt_eta(eta(s.backlog_bytes_left(), r.draining.or(r.smoothed)));
    let (files, pct) = (
        format!("{}/{}", s.backlog_files_done, s.backlog_files),
        percent(done, total),
    );
    let limit = limit_note(s.bwlimit);
    vec![
        format!(
            "{spin} transfer  {} active, elapsed {}",
            s.transfers.len(),
            fmt_duration(r.elapsed)
        ),
        fit(
            width,
            &[
                format!(
                    "  backlog  {} {files} files  {} / {} ({pct})  eta {eta}",
                    bar(done, total, 20),
                    human_bytes(done),
                    human_bytes(total),
                ),
                format!(
                    "  backlog  {files} files  {} / {} ({pct})  eta {eta}",
                    human_bytes(done),
                    human_bytes(total),
                ),
                format!(
                    "  backlog {files} {}/{} {pct} eta {eta}",
                    human_bytes(done),
                    human_bytes(total),
                ),
            ],
        ),
        fit(
            width,
            &[
                format!(
                    "  rate     {} now, {} smoothed{}",
                    fmt_rate(r.now),
                    fmt_rate(r.smoothed),
                    limit.replace(" limit", ", limit"),
                ),
                format!(
                    "  rate {} now, {} avg{}",
                    fmt_rate(r.now),
                    fmt_rate(r.smoothed),
                    limit.replace(" limit", ", limit"),
                ),
                format!(
                    "  rate {} now{}",
                    fmt_rate(r.now),
                    limit.replace(" limit", ", limit")
                ),
            ],
        ),
        fit(
            width,
            &[
                format!(
                    "  copied   {} this run, {} in total, {} failed",
                    human_bytes(s.bytes_done),
                    human_bytes(s.bytes_total()),
                    s.files_failed,
                ),
                format!(
                    "  copied {} run, {} total, {} failed",
                    human_bytes(s.bytes_done),
                    human_bytes(s.bytes_total()),
                    s.files_failed,
                ),
            ],
        ),
    ]
}

/// One line per file in flight (rclone's "Transferring:" block), in start
/// order so lines never jump; within `room` lines, the last one saying how
/// many more there are.
fn transferring(files: &[Transfer], width: usize, room: usize) -> Vec<String> {
    let shown = if files.len() <= room {
        files.len()
    } else {
        room.saturating_sub(1)
    };
    let mut lines: Vec<String> = files[..shown]
        .iter()
        .map(|t| transfer_line(t, width))
        .collect();
    if shown < files.len() && room > 0 {
        lines.push(format!("  + {} more", files.len() - shown));
    }
    lines
}

/// `  * path  done/size  pct  rate  eta`: the figures keep their columns;
/// the path gets what is left, shortened in the middle (the file name at
/// the end and the top folders stay readable).
fn transfer_line(t: &Transfer, width: usize) -> String {
    let done = t.done.min(t.size);
    let pct = (done * 100).checked_div(t.size).unwrap_or(100);
    let sizes = format!("{:>9}/{:<9}", human_bytes(done), human_bytes(t.size));
    let eta = fmt_eta(file_eta(t));
    let long = format!("{sizes} {pct:>3}% {:>11} eta {eta:<7}", fmt_rate(t.rate));
    let short = format!("{sizes} eta {eta}");
    let path = printable(&t.path.display().to_string());
    // Below ~12 columns a path says nothing: the short figures instead.
    let figures = if width.saturating_sub(4 + long.chars().count()) >= 12 {
        long
    } else {
        short
    };
    let room = width.saturating_sub(5 + figures.chars().count()).max(1);
    let path = shorten_middle(&path, room);
    let pad = room.saturating_sub(path.chars().count());
    format!("  * {path}{} {figures}", " ".repeat(pad))
        .trim_end()
        .to_string()
}

/// The first of `forms` that fits in `width` columns, else the last one.
fn fit(width: usize, forms: &[String]) -> String {
    forms
        .iter()
        .find(|f| f.chars().count() <= width)
        .or(forms.last())
        .cloned()
        .unwrap_or_default()
}

fn bar(done: u64, total: u64, cells: usize) -> String {
    let filled = if total == 0 {
        cells
    } else {
        ((done.min(total) as f64 / total as f64) * cells as f64).round() as usize
    };
    format!("[{}{}]", "█".repeat(filled), "░".repeat(cells - filled))
}

fn truncate(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// Keeps the start and, longer, the end of a path (the file name) when it
/// does not fit, with `…` in between.
fn shorten_middle(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width <= 1 {
        return "…".chars().take(width).collect();
    }
    let keep = width - 1;
    let head = keep / 3;
    let tail = keep - head;
    let start: String = s.chars().take(head).collect();
    let end: String = s.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// What the one-line summary at the end of a run reports.
#[derive(Debug, Clone)]
pub struct Summary<'a> {
    /// Entries synced this run.
    pub files: u64,
    /// Bytes copied this run.
    pub bytes: u64,
    pub failed: u64,
    /// Destination entries the mirror stage deleted (shown when > 0);
    /// `None` without a mirror stage.
    pub deleted: Option<u64>,
    /// A dry run: `deleted` counts what would have been deleted.
    pub dry_run: bool,
    pub elapsed: Duration,
    /// `scan` or `resume`; unknown when the run stopped before it was known.
    pub mode: Option<&'a str>,
    pub exit_code: u8,
    pub reason: &'a str,
}

/// `1 file`, `2 files`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The one line every run ends with (on stdout, also under `--quiet`).
/// Keeps the `jobrun: N files, X copied` head that scripts grep for.
pub fn summary_line(s: &Summary<'_>) -> String {
    let secs = s.elapsed.as_secs_f64();
    let took = if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        fmt_duration(s.elapsed)
    };
    let mean = if secs > 0.0 {
        s.bytes as f64 / secs
    } else {
        0.0
    };
    let mode = s.mode.map(|m| format!(", mode {m}")).unwrap_or_default();
    let deleted = match (s.deleted, s.dry_run) {
        (None, true) => ", dry run".into(),
        (Some(n), true) => format!(", {n} to delete (dry run)"),
        (None | Some(0), false) => String::new(),
        (Some(n), false) => format!(", {n} deleted"),
    };
    format!(
        "jobrun: {}, {} copied in {took} ({} mean){deleted}, {} failed{mode}, exit {} ({})",
        count(s.files, "file", "files"),
        human_bytes(s.bytes),
        HumanRate(mean),
        s.failed,
        s.exit_code,
        s.reason,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn ewma_of_a_steady_rate_is_that_rate_from_the_first_sample() {
        let mut e = Ewma::new(Duration::from_secs(60));
        assert_eq!(e.rate(), None);
        e.record(20 * MIB / 5, Duration::from_millis(200));
        assert!((e.rate().unwrap() - 20.0 * MIB as f64).abs() < 1.0);
        for _ in 0..1000 {
            e.record(20 * MIB / 5, Duration::from_millis(200));
        }
        assert!((e.rate().unwrap() - 20.0 * MIB as f64).abs() < 1.0);
    }

    #[test]
    fn ewma_follows_a_step_with_its_time_constant() {
        let mut e = Ewma::new(Duration::from_secs(10));
        for _ in 0..1000 {
            e.record(100, Duration::from_secs(1)); // 100 B/s for long
        }
        for _ in 0..10 {
            e.record(200, Duration::from_secs(1)); // then 200 B/s for one tau
        }
        // 1 - e^-1 = 63.2% of the way from 100 to 200.
        let r = e.rate().unwrap();
        assert!((r - 163.2).abs() < 0.5, "{r}");
        // Uneven sample spacing gives the same answer as even spacing.
        let mut a = Ewma::new(Duration::from_secs(10));
        let mut b = Ewma::new(Duration::from_secs(10));
        a.record(1000, Duration::from_secs(10));
        for _ in 0..10 {
            b.record(100, Duration::from_secs(1));
        }
        assert!((a.rate().unwrap() - b.rate().unwrap()).abs() < 1e-6);
    }

    #[test]
    fn ewma_ignores_empty_intervals_and_counts_stalls() {
        let mut e = Ewma::new(Duration::from_secs(1));
        e.record(100, Duration::ZERO);
        assert_eq!(e.rate(), None);
        e.record(0, Duration::from_secs(100));
        assert_eq!(e.rate(), Some(0.0));
    }

    #[test]
    fn eta_arithmetic() {
        let gib = 1u64 << 30;
        assert_eq!(
            eta(10 * gib, Some(10.0 * MIB as f64)),
            Some(Duration::from_secs(1024))
        );
        assert_eq!(eta(0, None), Some(Duration::ZERO));
        assert_eq!(eta(1, None), None);
        assert_eq!(eta(1, Some(0.0)), None);
        assert_eq!(eta(1, Some(f64::NAN)), None);
        assert_eq!(eta(u64::MAX, Some(1e-300)), None, "overflow is unknown");
    }

    #[test]
    fn mean_rate_weighs_runs_by_their_time() {
        assert_eq!(mean_rate([]), None);
        assert_eq!(mean_rate([(0, 10.0)]), None);
        // 100 B in 1 s and 0 B in 9 s: 10 B/s, not the 50 B/s of a mean of means.
        assert_eq!(mean_rate([(100, 1.0), (0, 9.0)]), Some(10.0));
        assert_eq!(mean_rate([(100, 0.0), (50, 5.0)]), Some(10.0));
    }

    #[test]
    fn durations_for_people() {
        let s = Duration::from_secs;
        assert_eq!(fmt_duration(s(0)), "0s");
        assert_eq!(fmt_duration(s(59)), "59s");
        assert_eq!(fmt_duration(s(187)), "3m 07s");
        assert_eq!(fmt_duration(s(7500)), "2h 05m");
        assert_eq!(fmt_duration(s(3 * 86_400 + 4 * 3600 + 59)), "3d 04h");
        assert_eq!(fmt_eta(None), "-");
    }

    fn transfer(lane: usize, path: &str, size: u64, done: u64, rate: f64) -> Transfer {
        Transfer {
            lane,
            seq: lane as u64 + 10,
            path: path.into(),
            size,
            done,
            elapsed: Duration::from_secs(5),
            rate: Some(rate),
        }
    }

    fn transfer_snapshot() -> Snapshot {
        Snapshot {
            phase: Phase::Transfer,
            backlog_files: 5000,
            backlog_files_done: 1200,
            backlog_bytes: 40 << 30,
            backlog_bytes_done: 1 << 30,
            files_done: 1198,
            files_failed: 2,
            bytes_done: 1 << 30,
            bytes_before: 300 << 30,
            bwlimit: 20 * MIB,
            transfers: vec![
                transfer(
                    0,
                    "projects/2019/raw/run-0042/scan.tif",
                    5 * MIB,
                    3 * MIB,
                    5.0 * MIB as f64,
                ),
                transfer(
                    1,
                    "projects/2019/raw/run-0042/video-master-final.mov",
                    200 * MIB,
                    120 * MIB,
                    12.5 * MIB as f64,
                ),
                transfer(2, "small.txt", 1000, 0, 0.0),
                transfer(
                    3,
                    "projects/2020/notes/readme.md",
                    40 << 10,
                    20 << 10,
                    1.5 * MIB as f64,
                ),
            ],
            ..Default::default()
        }
    }

    fn rates() -> Rates {
        Rates {
            now: Some(20.0 * MIB as f64),
            smoothed: Some(19.5 * MIB as f64),
            draining: Some(19.5 * MIB as f64),
            elapsed: Duration::from_secs(62),
        }
    }

    /// A scan part-way through, shared by the line and frame snapshots.
    fn scan_snapshot() -> Snapshot {
        Snapshot {
            phase: Phase::Scan,
            src_files: 12_345,
            src_bytes: 5 << 30,
            dst_files: 12_000,
            dst_bytes: 4 << 30,
            pending_files: 345,
            pending_bytes: 100 * MIB,
            ..Default::default()
        }
    }

    #[test]
    fn plain_lines_snapshot() {
        let scan = scan_snapshot();
        let early = Rates {
            elapsed: Duration::from_secs(12),
            ..Default::default()
        };
        let between_files = Snapshot {
            transfers: Vec::new(),
            bwlimit: 0,
            ..transfer_snapshot()
        };
        let lines = [
            plain_line(&scan, &early),
            plain_line(&transfer_snapshot(), &rates()),
            plain_line(&between_files, &early),
            plain_line(
                &Snapshot {
                    phase: Phase::Mirror,
                    ..Default::default()
                },
                &early,
            ),
        ];
        insta::assert_snapshot!(lines.join("\n"));
        assert_eq!(plain_line(&Snapshot::default(), &early), "");
    }

    #[test]
    fn live_frames_snapshot_and_fit_the_width() {
        let scan = scan_snapshot();
        let one_line_short = live_frame(&transfer_snapshot(), &rates(), 100, 7, 2);
        let frames = [
            live_frame(&scan, &rates(), 100, 24, 0).join("\n"),
            live_frame(&transfer_snapshot(), &rates(), 100, 24, 1).join("\n"),
            live_frame(&transfer_snapshot(), &rates(), 60, 24, 1).join("\n"),
            one_line_short.join("\n"),
        ];
        insta::assert_snapshot!(frames.join("\n---\n"));
        for width in [20, 40, 60, 79] {
            for line in live_frame(&transfer_snapshot(), &rates(), width, 24, 0) {
                assert!(line.chars().count() <= width, "{line:?} wider than {width}");
            }
        }
        assert_eq!(one_line_short.len(), 7, "capped to the height");
        assert_eq!(one_line_short[6], "  + 2 more");
        let narrow = live_frame(&transfer_snapshot(), &rates(), 60, 24, 0);
        // 60 columns: the backlog keeps its ETA, the totals stay whole.
        assert!(narrow[1].ends_with("eta 34m 08s"), "{narrow:#?}");
        assert!(narrow[3].ends_with("2 failed"), "{narrow:#?}");
        // Paths lose their middle, never their file name.
        assert!(
            narrow[5].contains('…') && narrow[5].contains("-final.mov"),
            "{narrow:#?}"
        );
    }

    #[test]
    fn transfer_lines_keep_their_order_and_columns() {
        let s = transfer_snapshot();
        let lines = live_frame(&s, &rates(), 100, 24, 0);
        let files: Vec<&String> = lines.iter().filter(|l| l.starts_with("  * ")).collect();
        assert_eq!(files.len(), 4);
        assert!(files[0].contains("scan.tif") && files[3].contains("readme.md"));
        // A finished lane's line goes; the others keep their order.
        let mut fewer = s.clone();
        fewer.transfers.remove(1);
        let after = live_frame(&fewer, &rates(), 100, 24, 0);
        assert_eq!(after[4], lines[4]);
        assert_eq!(after[6], lines[7]);
        let col = |l: &str| l[..l.find(" eta ").unwrap()].chars().count();
        assert!(files.iter().all(|l| col(l) == col(files[0])), "{files:#?}");
    }

    #[test]
    fn paths_are_shortened_in_the_middle() {
        assert_eq!(shorten_middle("abcdefghij", 10), "abcdefghij");
        assert_eq!(shorten_middle("abcdefghij", 7), "ab…ghij");
        assert_eq!(shorten_middle("abcdefghij", 1), "…");
        assert_eq!(shorten_middle("abcdefghij", 0), "");
    }

    #[test]
    fn control_characters_in_names_are_neutralised() {
        let mut s = transfer_snapshot();
        s.transfers[1].path = "/d/evil\x1b[2Jname\r\n".into();
        for text in [
            plain_line(&s, &rates()),
            live_frame(&s, &rates(), 200, 24, 0).join(""),
        ] {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }

    #[test]
    fn summary_snapshot() {
        let ok = Summary {
            files: 1200,
            bytes: 12 << 30,
            failed: 0,
            deleted: None,
            dry_run: false,
            elapsed: Duration::from_secs(3 * 3600 + 25 * 60 + 7),
            mode: Some("resume"),
            exit_code: 0,
            reason: "ok",
        };
        let short = Summary {
            files: 1,
            bytes: 3 * MIB,
            failed: 1,
            deleted: None,
            dry_run: false,
            elapsed: Duration::from_millis(1500),
            mode: Some("scan"),
            exit_code: 1,
            reason: "some files failed",
        };
        let aborted = Summary {
            files: 0,
            bytes: 0,
            failed: 0,
            deleted: None,
            dry_run: false,
            elapsed: Duration::ZERO,
            mode: Some("scan"),
            exit_code: 4,
            reason: "aborted",
        };
        let dry = Summary {
            files: 0,
            bytes: 0,
            failed: 0,
            deleted: Some(2),
            dry_run: true,
            elapsed: Duration::from_secs(2),
            mode: Some("scan"),
            exit_code: 0,
            reason: "ok",
        };
        let dry_no_mirror = Summary {
            deleted: None,
            ..dry.clone()
        };
        insta::assert_snapshot!(
            [ok, short, aborted, dry, dry_no_mirror]
                .iter()
                .map(summary_line)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn the_limit_in_force_under_auto_says_auto_and_its_rate() {
        use crate::throttle::{AUTO, PAUSED};
        assert_eq!(limit_note(AUTO), " limit auto");
        assert_eq!(limit_note(AUTO | (20 * MIB)), " limit auto 20.0 MiB/s");
        assert_eq!(limit_note(20 * MIB), " limit 20.0 MiB/s");
        assert_eq!(limit_note(PAUSED), " limit paused");
        assert_eq!(limit_note(0), "");
    }
}
