//! The reporter thread: samples the [`Progress`] snapshot at a steady pace
//! and shows it — a live multi-line display on a terminal (indicatif,
//! redrawn in place, no clearing, so no flicker), or one plain greppable line
//! every `progress_interval` otherwise (no control characters at all) — and
//! the writer for diagnostics and notes that keeps them above the display.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::render::{Ewma, Rates, live_frame, plain_line, printable};
use super::term::{self, QuietControlEcho};
use super::{Phase, Progress, Snapshot};

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
            // The manifest bounds it (a day); an interval beyond what an
            // `Instant` can add panicked this thread.
            Style::Plain(interval.min(crate::manifest::MAX_PROGRESS_INTERVAL))
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
                    b.set_message(
                        live_frame(&p.snapshot(), &Rates::default(), 80, 24, 0).join("\n"),
                    );
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

/// The rates the reporter keeps between samples: the run's, and each file's
/// in flight (by start order, so a lane's next file starts afresh).
struct Sampler {
    now: Ewma,
    smoothed: Ewma,
    /// The backlog's bytes done (written or skipped as holes) per second.
    draining: Ewma,
    drained: u64,
    phase: Phase,
    at: Instant,
    bytes: u64,
    files: HashMap<u64, FileRate>,
}

struct FileRate {
    rate: Ewma,
    done: u64,
}

impl Sampler {
    fn new() -> Self {
        Self {
            now: Ewma::new(TAU_NOW),
            smoothed: Ewma::new(TAU_SMOOTHED),
            draining: Ewma::new(TAU_SMOOTHED),
            drained: 0,
            phase: Phase::Idle,
            at: Instant::now(),
            bytes: 0,
            files: HashMap::new(),
        }
    }

    fn sample(&mut self, snap: &Snapshot, now: Instant) {
        if snap.phase != self.phase {
            // A new stage: its rate starts afresh.
            (self.now, self.smoothed) = (Ewma::new(TAU_NOW), Ewma::new(TAU_SMOOTHED));
            self.draining = Ewma::new(TAU_SMOOTHED);
            self.phase = snap.phase;
        }
        let drained = snap.backlog_bytes_done.saturating_sub(self.drained);
        self.draining.record(drained, now - self.at);
        self.drained = snap.backlog_bytes_done;
        let dt = now - self.at;
        let delta = snap.bytes_done.saturating_sub(self.bytes);
        self.now.record(delta, dt);
        self.smoothed.record(delta, dt);
        (self.at, self.bytes) = (now, snap.bytes_done);
        let mut seen = HashMap::with_capacity(snap.transfers.len());
        for t in &snap.transfers {
            // A file's first sample covers its time in flight so far.
            let (mut f, span) = match self.files.remove(&t.seq) {
                Some(f) => (f, dt),
                None => {
                    let rate = Ewma::new(TAU_NOW);
                    (FileRate { rate, done: 0 }, t.elapsed)
                }
            };
            f.rate.record(t.done.saturating_sub(f.done), span);
            f.done = t.done;
            seen.insert(t.seq, f);
        }
        self.files = seen;
    }

    /// The snapshot with each file's rate filled in, and the run's rates.
    fn annotate(&self, mut snap: Snapshot, started: Instant) -> (Snapshot, Rates) {
        for t in &mut snap.transfers {
            t.rate = self.files.get(&t.seq).and_then(|f| f.rate.rate());
        }
        let rates = Rates {
            now: self.now.rate(),
            smoothed: self.smoothed.rate(),
            draining: self.draining.rate(),
            elapsed: started.elapsed(),
        };
        (snap, rates)
    }
}

/// When the loop samples and when it shows.
struct Pace {
    sample_every: Duration,
    print_every: Duration,
    next_sample: Instant,
    next_print: Instant,
}

impl Pace {
    fn new(style: Style, started: Instant) -> Self {
        // Plain output samples every second for the averages and prints
        // every interval; live output samples at each frame.
        let (sample_every, print_every) = match style {
            Style::Plain(d) => (
                Duration::from_secs(1).min(d),
                d.max(Duration::from_millis(10)),
            ),
            _ => (FRAME, FRAME),
        };
        Self {
            sample_every,
            print_every,
            next_sample: started + sample_every,
            next_print: started + print_every,
        }
    }

    fn due(next: &mut Instant, every: Duration, now: Instant) -> bool {
        if now < *next {
            return false;
        }
        *next += every;
        if *next < now {
            *next = now + every;
        }
        true
    }
}

fn report_loop(
    p: &Progress,
    style: Style,
    stop: &AtomicBool,
    live: Option<(indicatif::MultiProgress, indicatif::ProgressBar)>,
) {
    let started = Instant::now();
    let mut pace = Pace::new(style, started);
    let (multi, bar) = live.unzip();
    let mut sampler = Sampler::new();
    let (mut tick, mut height) = (0usize, 1usize);
    while !stop.load(Relaxed) {
        let now = Instant::now();
        let wake = pace.next_sample.min(pace.next_print);
        if now < wake {
            std::thread::park_timeout((wake - now).min(Duration::from_millis(50)));
            continue;
        }
        let snap = p.snapshot();
        if Pace::due(&mut pace.next_sample, pace.sample_every, now) {
            sampler.sample(&snap, now);
        }
        if !Pace::due(&mut pace.next_print, pace.print_every, now) {
            continue;
        }
        let (snap, rates) = sampler.annotate(snap, started);
        match &bar {
            Some(b) => {
                tick += 1;
                let rows = term::height().saturating_sub(1).max(1);
                let mut lines = live_frame(&snap, &rates, term::width(), rows, tick);
                // Never shrink: a shorter frame would leave stale lines below.
                height = height.max(lines.len()).min(rows.max(lines.len()));
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

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
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

    /// A sparse file: a little written, much skipped as holes. The ETA
    /// follows the backlog's drain (holes cost no wire time), not the rate
    /// of bytes written.
    #[test]
    fn the_backlog_drains_at_written_plus_skipped_bytes() {
        let mut s = Sampler::new();
        let t0 = s.at;
        let mut snap = Snapshot {
            phase: Phase::Transfer,
            backlog_bytes: 100 << 30,
            ..Snapshot::default()
        };
        for i in 1..=120u64 {
            snap.bytes_done = i << 20; // 1 MiB/s written
            snap.backlog_bytes_done = i * (101 << 20); // + 100 MiB/s of holes
            s.sample(&snap, t0 + Duration::from_secs(i));
        }
        let (snap, r) = s.annotate(snap, t0);
        let (written, draining) = (r.smoothed.unwrap(), r.draining.unwrap());
        assert!(
            (written / f64::from(1 << 20) - 1.0).abs() < 0.1,
            "{written}"
        );
        assert!(
            (draining / f64::from(101 << 20) - 1.0).abs() < 0.1,
            "{draining}"
        );
        let eta = crate::progress::eta(snap.backlog_bytes_left(), r.draining).unwrap();
        assert!(eta < Duration::from_secs(1000), "{eta:?}");
    }

    #[test]
    fn diagnostics_for_pipes_lose_control_characters_only() {
        let out = plain_bytes("a\x1b[31mb\tc\u{9b}d\n".as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), "a?[31mb\tc?d\n");
        // Invalid UTF-8 in a name is shown, not dropped.
        assert_eq!(plain_bytes(b"x\xffy"), "x\u{fffd}y".as_bytes());
    }
}
