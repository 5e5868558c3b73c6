//! What the operator sees while a run goes (SPEC §8). Stages only bump
//! counters on [`Progress`] (a cheap clone over atomics, a few nanoseconds
//! per call); a [`Reporter`] thread samples them at a steady pace and turns
//! them into either a live multi-line display on a terminal (indicatif,
//! redrawn in place, no clearing, so no flicker), or one plain greppable line
//! every `progress_interval` otherwise (no control characters at all).
//! Stages never print.
//!
//! The figures are computed by pure functions ([`Ewma`], [`eta`],
//! [`plain_line`], [`live_frame`], [`summary_line`]) from a [`Snapshot`] of
//! the counters, so every line can be unit-tested without a clock.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::units::{HumanRate, human_bytes};

/// The shared counters. Stages write them with relaxed atomics; the
/// reporter reads them without locking anything but `current`.
#[derive(Debug, Default)]
pub struct Counters {
    /// One of the `PHASE_*` constants.
    pub phase: AtomicU8,
    /// Regular files and their bytes seen by the source walk.
    pub src_files: AtomicU64,
    pub src_bytes: AtomicU64,
    /// Regular files and their bytes seen by the destination walk.
    pub dst_files: AtomicU64,
    pub dst_bytes: AtomicU64,
    /// Entries (any kind) and file bytes decided `pending` so far by the scan.
    pub pending_files: AtomicU64,
    pub pending_bytes: AtomicU64,
    /// What the transfer stage set out to copy: entries other than folders
    /// (folders only get their times restored) and file bytes.
    pub backlog_files: AtomicU64,
    pub backlog_bytes: AtomicU64,
    /// Entries synced this run.
    pub files_done: AtomicU64,
    /// Bytes written to the destination this run (partial files included).
    pub bytes_done: AtomicU64,
    /// Sizes of the entries synced this run: what the DB holds as copied
    /// by this run (the summary, `run_end` and the `runs` row).
    pub bytes_synced: AtomicU64,
    /// Entries that failed this run.
    pub files_failed: AtomicU64,
    /// Sizes of the backlog entries finished this run (synced or failed):
    /// with `current_done`, how far through the backlog the run is.
    pub bytes_settled: AtomicU64,
    /// Bytes copied by all earlier runs of the job (the `runs` table).
    pub bytes_before: AtomicU64,
    /// The file being written: size and bytes written so far.
    pub current_size: AtomicU64,
    pub current_done: AtomicU64,
    /// The bandwidth limit in force, bytes/s; 0 = none.
    pub bwlimit: AtomicU64,
    /// Destination path of the file being written (buffer reused per file).
    pub current: Mutex<PathBuf>,
}

pub const PHASE_IDLE: u8 = 0;
pub const PHASE_SCAN: u8 = 1;
pub const PHASE_TRANSFER: u8 = 2;
pub const PHASE_MIRROR: u8 = 3;

/// Shared progress counters.
#[derive(Debug, Clone, Default)]
pub struct Progress(pub Arc<Counters>);

impl Progress {
    pub fn set_phase(&self, phase: u8) {
        self.0.phase.store(phase, Relaxed);
    }

    /// The writer starts a file. Reuses the path buffer: no allocation per
    /// file on trees of millions of small files.
    pub fn start_file(&self, path: &Path, size: u64) {
        if let Ok(mut c) = self.0.current.lock() {
            let s = c.as_mut_os_string();
            s.clear();
            s.push(path.as_os_str());
        }
        self.0.current_size.store(size, Relaxed);
        self.0.current_done.store(0, Relaxed);
    }

    /// `n` bytes of the current file reached the destination.
    pub fn add_written(&self, n: u64) {
        self.0.current_done.fetch_add(n, Relaxed);
        self.0.bytes_done.fetch_add(n, Relaxed);
    }

    /// A backlog entry of `size` bytes is synced.
    pub fn file_synced(&self, size: u64) {
        self.0.files_done.fetch_add(1, Relaxed);
        self.0.bytes_synced.fetch_add(size, Relaxed);
        self.settle(size);
    }

    /// A backlog entry of `size` bytes failed; it still counts as processed
    /// for the backlog's progress (it will not be copied this run).
    pub fn file_failed(&self, size: u64) {
        self.0.files_failed.fetch_add(1, Relaxed);
        self.settle(size);
    }

    fn settle(&self, size: u64) {
        self.0.bytes_settled.fetch_add(size, Relaxed);
        self.0.current_size.store(0, Relaxed);
        self.0.current_done.store(0, Relaxed);
    }

    /// A consistent-enough copy of the counters (each read is atomic; the
    /// set is not, which only matters for a frame).
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.0;
        let current = c
            .current
            .lock()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Snapshot {
            phase: c.phase.load(Relaxed),
            src_files: c.src_files.load(Relaxed),
            src_bytes: c.src_bytes.load(Relaxed),
            dst_files: c.dst_files.load(Relaxed),
            dst_bytes: c.dst_bytes.load(Relaxed),
            pending_files: c.pending_files.load(Relaxed),
            pending_bytes: c.pending_bytes.load(Relaxed),
            backlog_files: c.backlog_files.load(Relaxed),
            backlog_bytes: c.backlog_bytes.load(Relaxed),
            files_done: c.files_done.load(Relaxed),
            files_failed: c.files_failed.load(Relaxed),
            bytes_done: c.bytes_done.load(Relaxed),
            bytes_settled: c.bytes_settled.load(Relaxed),
            bytes_before: c.bytes_before.load(Relaxed),
            current_size: c.current_size.load(Relaxed),
            // With `transfers` > 1 the lanes share this one "current file"
            // slot, so its byte count can mix files: never shown above the size.
            current_done: c
                .current_done
                .load(Relaxed)
                .min(c.current_size.load(Relaxed)),
            bwlimit: c.bwlimit.load(Relaxed),
            current,
        }
    }
}

/// The counters at one instant: everything a line or a frame shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub phase: u8,
    pub src_files: u64,
    pub src_bytes: u64,
    pub dst_files: u64,
    pub dst_bytes: u64,
    pub pending_files: u64,
    pub pending_bytes: u64,
    pub backlog_files: u64,
    pub backlog_bytes: u64,
    pub files_done: u64,
    pub files_failed: u64,
    pub bytes_done: u64,
    pub bytes_settled: u64,
    pub bytes_before: u64,
    pub current_size: u64,
    pub current_done: u64,
    pub bwlimit: u64,
    pub current: String,
}

impl Snapshot {
    /// Backlog entries processed (synced or failed).
    pub fn backlog_files_done(&self) -> u64 {
        self.files_done + self.files_failed
    }

    /// Backlog bytes processed, the current file's written part included;
    /// never more than the backlog.
    pub fn backlog_bytes_done(&self) -> u64 {
        (self.bytes_settled + self.current_done).min(self.backlog_bytes)
    }

    pub fn backlog_bytes_left(&self) -> u64 {
        self.backlog_bytes - self.backlog_bytes_done()
    }

    /// Bytes copied by this run and all earlier ones.
    pub fn bytes_total(&self) -> u64 {
        self.bytes_before + self.bytes_done
    }

    fn has_current(&self) -> bool {
        self.current_size > 0 && !self.current.is_empty()
    }
}

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
    /// Recent rate (seconds), for the current file's ETA.
    pub now: Option<f64>,
    /// Smoothed rate (a minute), for the backlog's ETA.
    pub smoothed: Option<f64>,
    /// Time since the run started.
    pub elapsed: Duration,
}

/// The plain line printed every `progress_interval` when stderr is not a
/// terminal. Starts with the phase (`scan:`, `transfer:`) so `grep` finds
/// it; the current path comes last, as it may contain anything. Empty when
/// there is nothing to report.
pub fn plain_line(s: &Snapshot, r: &Rates) -> String {
    let elapsed = fmt_duration(r.elapsed);
    match s.phase {
        PHASE_SCAN => format!(
            "scan: source {} files {}, destination {} files {}, pending {} entries {}, elapsed {elapsed}",
            s.src_files,
            human_bytes(s.src_bytes),
            s.dst_files,
            human_bytes(s.dst_bytes),
            s.pending_files,
            human_bytes(s.pending_bytes),
        ),
        PHASE_TRANSFER => {
            let mut line = format!(
                "transfer: backlog {}/{} files {}/{} ({}) eta {}, rate {} smoothed {}{}, copied run {} total {}, failed {}, elapsed {elapsed}",
                s.backlog_files_done(),
                s.backlog_files,
                human_bytes(s.backlog_bytes_done()),
                human_bytes(s.backlog_bytes),
                percent(s.backlog_bytes_done(), s.backlog_bytes),
                fmt_eta(eta(s.backlog_bytes_left(), r.smoothed)),
                fmt_rate(r.now),
                fmt_rate(r.smoothed),
                limit_note(s.bwlimit),
                human_bytes(s.bytes_done),
                human_bytes(s.bytes_total()),
                s.files_failed,
            );
            if s.has_current() {
                line.push_str(&format!(
                    ", current {}/{} eta {} {}",
                    human_bytes(s.current_done),
                    human_bytes(s.current_size),
                    fmt_eta(eta(s.current_size.saturating_sub(s.current_done), r.now)),
                    printable(&s.current),
                ));
            }
            line
        }
        PHASE_MIRROR => format!("mirror: checking destination extras, elapsed {elapsed}"),
        _ => String::new(),
    }
}

fn limit_note(bwlimit: u64) -> String {
    if bwlimit == 0 {
        String::new()
    } else if bwlimit == crate::throttle::PAUSED {
        " limit paused".into()
    } else {
        format!(" limit {}", HumanRate(bwlimit as f64))
    }
}

/// A path with control characters (possible in file names) made visible,
/// so a name can never inject escapes into a log or a terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// The live display on a terminal, one string per screen line, none wider
/// than `width` columns (a wrapped line would break the in-place redraw).
/// `tick` turns the spinner, so a stalled copy still shows it is alive.
pub fn live_frame(s: &Snapshot, r: &Rates, width: usize, tick: usize) -> Vec<String> {
    let spin = SPINNER[tick % SPINNER.len()];
    let elapsed = fmt_duration(r.elapsed);
    let lines = match s.phase {
        PHASE_SCAN => vec![
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
        PHASE_TRANSFER => {
            let path_room = width.saturating_sub(13);
            let (current, file_line) = if s.has_current() {
                (
                    shorten_left(&printable(&s.current), path_room),
                    format!(
                        "  file     {} {:>10} / {:<10} eta {}",
                        bar(s.current_done, s.current_size, 20),
                        human_bytes(s.current_done),
                        human_bytes(s.current_size),
                        fmt_eta(eta(s.current_size.saturating_sub(s.current_done), r.now)),
                    ),
                )
            } else {
                (String::new(), "  file".to_string())
            };
            vec![
                format!("{spin} transfer  {current}"),
                file_line,
                format!(
                    "  backlog  {} {}/{} files  {} / {} ({})  eta {}",
                    bar(s.backlog_bytes_done(), s.backlog_bytes, 20),
                    s.backlog_files_done(),
                    s.backlog_files,
                    human_bytes(s.backlog_bytes_done()),
                    human_bytes(s.backlog_bytes),
                    percent(s.backlog_bytes_done(), s.backlog_bytes),
                    fmt_eta(eta(s.backlog_bytes_left(), r.smoothed)),
                ),
                format!(
                    "  rate     {} now, {} smoothed{}",
                    fmt_rate(r.now),
                    fmt_rate(r.smoothed),
                    limit_note(s.bwlimit).replace(" limit", ", limit"),
                ),
                format!(
                    "  copied   {} this run, {} in total, {} failed, elapsed {elapsed}",
                    human_bytes(s.bytes_done),
                    human_bytes(s.bytes_total()),
                    s.files_failed,
                ),
            ]
        }
        PHASE_MIRROR => vec![format!(
            "{spin} mirror    checking destination extras, elapsed {elapsed}"
        )],
        _ => vec![format!("{spin} jobrun    elapsed {elapsed}")],
    };
    lines.into_iter().map(|l| truncate(&l, width)).collect()
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

/// Keeps the end of a path (the file name) when it does not fit.
fn shorten_left(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let tail: String = s.chars().skip(n - (width - 1)).collect();
    format!("…{tail}")
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

// ---- the reporter thread ----------------------------------------------------

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Redrawn in place on a terminal.
    Live,
    /// One plain line every interval (cron, pipes).
    Plain(Duration),
    /// Nothing (`--quiet`).
    Hidden,
}

impl Style {
    pub fn pick(quiet: bool, interval: Duration) -> Self {
        if quiet {
            Style::Hidden
        } else if std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        {
            // A dumb terminal cannot move the cursor: plain lines instead.
            Style::Live
        } else {
            Style::Plain(interval)
        }
    }
}

/// Live frames per second: steady, and cheap next to any copy.
const FRAME: Duration = Duration::from_millis(200);
/// Time constants: the "now" rate follows the last seconds; the smoothed
/// one, used for the backlog's ETA, about a minute.
const TAU_NOW: Duration = Duration::from_secs(3);
const TAU_SMOOTHED: Duration = Duration::from_secs(60);

/// The live display while it is up, so diagnostics ([`LogWriter`]) and
/// notes ([`Reporter::say`]) can be printed above it without tearing it.
static LIVE: Mutex<Option<indicatif::MultiProgress>> = Mutex::new(None);

fn live() -> Option<indicatif::MultiProgress> {
    LIVE.lock().ok().and_then(|g| g.clone())
}

/// stderr for tracing's fmt layer (`main.rs`): prints above the live
/// display when there is one, else straight to stderr.
pub struct LogWriter;

impl Write for LogWriter {
    /// Never fails: a diagnostic that cannot be shown (stderr closed, e.g.
    /// `| head`) is dropped. Reporting the failure would make tracing print
    /// to that same stderr, which panics, and a panic would kill the run.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = match live() {
            Some(m) => m.suspend(|| std::io::stderr().write_all(buf)),
            None if stderr_is_plain() => std::io::stderr().write_all(&plain_bytes(buf)),
            None => std::io::stderr().write_all(buf),
        };
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn stderr_is_plain() -> bool {
    static PLAIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PLAIN.get_or_init(|| !std::io::stderr().is_terminal())
}

/// A diagnostic for a file or pipe: control characters (which a file name
/// can smuggle in, e.g. an escape sequence) become `?`; newlines and tabs
/// stay. Tracing's colours are already off there (`main.rs`).
fn plain_bytes(buf: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(buf)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect::<String>()
        .into_bytes()
}

/// Samples the counters from its own thread and shows them until dropped.
pub struct Reporter {
    style: Style,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    _echo: Option<QuietControlEcho>,
}

/// While the live display is up, the terminal does not echo control keys
/// as `^C`. indicatif leaves the cursor at the right edge of the display's
/// last line, so the two characters of a `^C` wrapped onto a new line and
/// every later redraw (and the final clear) landed one line too low,
/// leaving the display's first line behind after Ctrl-C. Restored on drop.
struct QuietControlEcho(libc::termios);

impl QuietControlEcho {
    fn start() -> Option<Self> {
        // SAFETY: plain termios calls on stderr; `t` is written by tcgetattr
        // before it is read.
        unsafe {
            // Only in the terminal's foreground: a background run (`&`) gets
            // no keys from it.
            if libc::tcgetpgrp(2) != libc::getpgrp() {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(2, &mut t) != 0 || t.c_lflag & libc::ECHOCTL == 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHOCTL;
            set_termios(&t).then_some(Self(saved))
        }
    }
}

impl Drop for QuietControlEcho {
    fn drop(&mut self) {
        set_termios(&self.0);
    }
}

/// `tcsetattr` on stderr with SIGTTOU blocked, so that a run moved to the
/// background in between (Ctrl-Z, `bg`) is not stopped by it.
fn set_termios(t: &libc::termios) -> bool {
    // SAFETY: signal-mask calls on this thread only, restored right after;
    // `t` is a valid termios.
    unsafe {
        let (mut block, mut old): (libc::sigset_t, libc::sigset_t) =
            (std::mem::zeroed(), std::mem::zeroed());
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        let ok = libc::tcsetattr(2, libc::TCSANOW, t) == 0;
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        ok
    }
}

impl Reporter {
    pub fn start(p: &Progress, style: Style) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = match style {
            Style::Hidden => None,
            Style::Live | Style::Plain(_) => {
                let (p, stop) = (p.clone(), stop.clone());
                let live = (style == Style::Live).then(|| {
                    let m = indicatif::MultiProgress::with_draw_target(
                        indicatif::ProgressDrawTarget::stderr_with_hz(10),
                    );
                    // Overwrite lines in place instead of clearing them first.
                    m.set_move_cursor(true);
                    let b = m.add(indicatif::ProgressBar::new_spinner());
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{msg}")
                            .expect("static template is valid"),
                    );
                    // Drawn before any note is printed above it: with no
                    // line of its own on screen, indicatif's in-place redraw
                    // would overwrite the last note.
                    b.set_message(live_frame(&p.snapshot(), &Rates::default(), 80, 0).join("\n"));
                    b.force_draw();
                    if let Ok(mut g) = LIVE.lock() {
                        *g = Some(m.clone());
                    }
                    (m, b)
                });
                Some(std::thread::spawn(move || {
                    report_loop(&p, style, &stop, live);
                }))
            }
        };
        Self {
            style,
            stop,
            handle,
            _echo: (style == Style::Live)
                .then(QuietControlEcho::start)
                .flatten(),
        }
    }

    /// Prints a note (mode line, stage results) on stderr, above the live
    /// display if there is one; nothing under `--quiet`.
    pub fn say(&self, line: &str) {
        match (self.style, live()) {
            (Style::Hidden, _) => {}
            (_, Some(m)) => {
                let _ = m.println(line);
            }
            _ => {
                let _ = writeln!(std::io::stderr(), "{}", printable(line));
            }
        }
    }
}

fn report_loop(
    p: &Progress,
    style: Style,
    stop: &AtomicBool,
    live: Option<(indicatif::MultiProgress, indicatif::ProgressBar)>,
) {
    let started = Instant::now();
    // Plain output samples every second for the averages and prints every
    // interval; live output samples at each frame.
    let (sample_every, print_every) = match style {
        Style::Plain(d) => (
            Duration::from_secs(1).min(d),
            d.max(Duration::from_millis(10)),
        ),
        _ => (FRAME, FRAME),
    };
    let (multi, bar) = live.unzip();
    let (mut now_rate, mut smoothed) = (Ewma::new(TAU_NOW), Ewma::new(TAU_SMOOTHED));
    let (mut last_at, mut last_bytes, mut last_phase) = (Instant::now(), 0u64, PHASE_IDLE);
    let mut next_sample = last_at + sample_every;
    let mut next_print = started + print_every;
    let (mut tick, mut height) = (0usize, 1usize);
    while !stop.load(Relaxed) {
        let now = Instant::now();
        let wake = next_sample.min(next_print);
        if now < wake {
            std::thread::sleep((wake - now).min(Duration::from_millis(50)));
            continue;
        }
        let snap = p.snapshot();
        if snap.phase != last_phase {
            // A new stage: its rate starts afresh.
            (now_rate, smoothed) = (Ewma::new(TAU_NOW), Ewma::new(TAU_SMOOTHED));
            last_phase = snap.phase;
        }
        if now >= next_sample {
            let delta = snap.bytes_done.saturating_sub(last_bytes);
            now_rate.record(delta, now - last_at);
            smoothed.record(delta, now - last_at);
            (last_at, last_bytes) = (now, snap.bytes_done);
            next_sample += sample_every;
            if next_sample < now {
                next_sample = now + sample_every;
            }
        }
        if now < next_print {
            continue;
        }
        next_print += print_every;
        if next_print < now {
            next_print = now + print_every;
        }
        let rates = Rates {
            now: now_rate.rate(),
            smoothed: smoothed.rate(),
            elapsed: started.elapsed(),
        };
        match &bar {
            Some(b) => {
                tick += 1;
                let mut lines = live_frame(&snap, &rates, terminal_width(), tick);
                // Never shrink: a shorter frame would leave stale lines below.
                height = height.max(lines.len());
                lines.resize(height, String::new());
                b.set_message(lines.join("\n"));
            }
            None => {
                let text = plain_line(&snap, &rates);
                if !text.is_empty() {
                    let _ = writeln!(std::io::stderr(), "{text}");
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(m) = multi {
        let _ = m.clear();
    }
}

fn terminal_width() -> usize {
    let (_, cols) = console::Term::stderr().size();
    usize::from(cols).saturating_sub(1).max(20)
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        if let Ok(mut g) = LIVE.lock() {
            *g = None;
        }
    }
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

    #[test]
    fn backlog_progress_counts_settled_and_current_bytes() {
        let p = Progress::default();
        p.0.backlog_files.store(3, Relaxed);
        p.0.backlog_bytes.store(300, Relaxed);
        p.start_file(Path::new("/d/a"), 100);
        p.add_written(60);
        assert_eq!(p.snapshot().backlog_bytes_done(), 60);
        p.add_written(40);
        p.file_synced(100);
        p.start_file(Path::new("/d/b"), 100);
        p.add_written(10);
        p.file_failed(100); // the rest of b will not be copied this run
        let s = p.snapshot();
        assert_eq!(s.backlog_files_done(), 2);
        assert_eq!(s.backlog_bytes_done(), 200);
        assert_eq!(s.backlog_bytes_left(), 100);
        assert_eq!(
            s.bytes_done, 110,
            "bytes written, failed file's part included"
        );
        assert!(!s.has_current());
    }

    fn transfer_snapshot() -> Snapshot {
        Snapshot {
            phase: PHASE_TRANSFER,
            backlog_files: 5000,
            backlog_bytes: 40 << 30,
            files_done: 1198,
            files_failed: 2,
            bytes_done: 1 << 30,
            bytes_settled: (1 << 30) - 3 * MIB,
            bytes_before: 300 << 30,
            current_size: 5 * MIB,
            current_done: 3 * MIB,
            bwlimit: 20 * MIB,
            current: "/mnt/dst/projects/2019/raw/run-0042/scan.tif".into(),
            ..Default::default()
        }
    }

    fn rates() -> Rates {
        Rates {
            now: Some(20.0 * MIB as f64),
            smoothed: Some(19.5 * MIB as f64),
            elapsed: Duration::from_secs(62),
        }
    }

    /// A scan part-way through, shared by the line and frame snapshots.
    fn scan_snapshot() -> Snapshot {
        Snapshot {
            phase: PHASE_SCAN,
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
            current_size: 0,
            current_done: 0,
            bwlimit: 0,
            ..transfer_snapshot()
        };
        let lines = [
            plain_line(&scan, &early),
            plain_line(&transfer_snapshot(), &rates()),
            plain_line(&between_files, &early),
            plain_line(
                &Snapshot {
                    phase: PHASE_MIRROR,
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
        let wide = [
            live_frame(&scan, &rates(), 100, 0).join("\n"),
            live_frame(&transfer_snapshot(), &rates(), 100, 1).join("\n"),
        ];
        insta::assert_snapshot!(wide.join("\n---\n"));
        for width in [20, 40, 79] {
            for line in live_frame(&transfer_snapshot(), &rates(), width, 0) {
                assert!(line.chars().count() <= width, "{line:?} wider than {width}");
            }
        }
        let narrow = live_frame(&transfer_snapshot(), &rates(), 40, 0);
        assert!(narrow[0].ends_with("scan.tif"), "{narrow:?}");
        assert!(narrow[0].contains('…'), "{narrow:?}");
    }

    #[test]
    fn control_characters_in_names_are_neutralised() {
        let s = Snapshot {
            current: "/d/evil\x1b[2Jname\r\n".into(),
            ..transfer_snapshot()
        };
        for text in [
            plain_line(&s, &rates()),
            live_frame(&s, &rates(), 200, 0).join(""),
        ] {
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }

    #[test]
    fn diagnostics_for_pipes_lose_control_characters_only() {
        let out = plain_bytes("a\x1b[31mb\tc\u{9b}d\n".as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), "a?[31mb\tc?d\n");
        // Invalid UTF-8 in a name is shown, not dropped.
        assert_eq!(plain_bytes(b"x\xffy"), "x\u{fffd}y".as_bytes());
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
}
