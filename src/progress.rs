//! What the operator sees while a run goes (SPEC §8). Stages only bump
//! counters on [`Progress`] (a cheap clone over atomics); a [`Reporter`]
//! thread turns them into a live line on a terminal, or a plain greppable
//! line every `progress_interval` otherwise. Stages never print.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::units::{HumanRate, human_bytes};

#[derive(Debug, Default)]
pub struct Counters {
    pub phase: AtomicU8,
    pub src_files: AtomicU64,
    pub src_bytes: AtomicU64,
    pub dst_files: AtomicU64,
    pub dst_bytes: AtomicU64,
    pub pending_files: AtomicU64,
    pub pending_bytes: AtomicU64,
    pub backlog_files: AtomicU64,
    pub backlog_bytes: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_failed: AtomicU64,
    pub bytes_before: AtomicU64,
    pub current_size: AtomicU64,
    pub current_done: AtomicU64,
    pub bwlimit: AtomicU64,
    pub current: Mutex<Option<PathBuf>>,
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

    pub fn start_file(&self, path: &Path, size: u64) {
        if let Ok(mut c) = self.0.current.lock() {
            *c = Some(path.to_path_buf());
        }
        self.0.current_size.store(size, Relaxed);
        self.0.current_done.store(0, Relaxed);
    }

    pub fn add_written(&self, n: u64) {
        self.0.current_done.fetch_add(n, Relaxed);
        self.0.bytes_done.fetch_add(n, Relaxed);
    }
}

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
        } else if std::io::stderr().is_terminal() {
            Style::Live
        } else {
            Style::Plain(interval)
        }
    }
}

/// One progress line from the counters; `elapsed` gives the rate.
pub fn line(p: &Progress, elapsed: Duration) -> String {
    let c = &p.0;
    match c.phase.load(Relaxed) {
        PHASE_SCAN => format!(
            "scan: source {} files {} | destination {} files {} | pending {} files {}",
            c.src_files.load(Relaxed),
            human_bytes(c.src_bytes.load(Relaxed)),
            c.dst_files.load(Relaxed),
            human_bytes(c.dst_bytes.load(Relaxed)),
            c.pending_files.load(Relaxed),
            human_bytes(c.pending_bytes.load(Relaxed)),
        ),
        PHASE_TRANSFER => {
            let done = c.bytes_done.load(Relaxed);
            let total = c.backlog_bytes.load(Relaxed);
            let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
            let eta = if rate > 0.0 && total > done {
                humantime::format_duration(Duration::from_secs(
                    ((total - done) as f64 / rate) as u64,
                ))
                .to_string()
            } else {
                "-".into()
            };
            let current = c
                .current
                .lock()
                .ok()
                .and_then(|g| g.as_ref().map(|p| p.display().to_string()))
                .unwrap_or_default();
            let limit = match c.bwlimit.load(Relaxed) {
                0 => String::new(),
                b => format!(", limit {}", HumanRate(b as f64)),
            };
            format!(
                "transfer: {}/{} files, {}/{} ({}{}), eta {}, failed {}, total copied {} | {} ({}/{})",
                c.files_done.load(Relaxed),
                c.backlog_files.load(Relaxed),
                human_bytes(done),
                human_bytes(total),
                HumanRate(rate),
                limit,
                eta,
                c.files_failed.load(Relaxed),
                human_bytes(c.bytes_before.load(Relaxed) + done),
                current,
                human_bytes(c.current_done.load(Relaxed)),
                human_bytes(c.current_size.load(Relaxed)),
            )
        }
        PHASE_MIRROR => "mirror: checking destination extras".into(),
        _ => String::new(),
    }
}

/// Prints progress from its own thread until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    pub fn start(p: &Progress, style: Style) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = match style {
            Style::Hidden => None,
            Style::Live | Style::Plain(_) => {
                let (p, stop) = (p.clone(), stop.clone());
                Some(std::thread::spawn(move || report_loop(&p, style, &stop)))
            }
        };
        Self { stop, handle }
    }
}

fn report_loop(p: &Progress, style: Style, stop: &AtomicBool) {
    let start = Instant::now();
    let tick = match style {
        Style::Plain(d) => d.max(Duration::from_millis(100)),
        _ => Duration::from_millis(250),
    };
    let bar = (style == Style::Live).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {wide_msg}")
                .expect("static template is valid"),
        );
        b
    });
    let mut next = Instant::now() + tick;
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(50).min(tick));
        if Instant::now() < next {
            continue;
        }
        next += tick;
        let text = line(p, start.elapsed());
        if text.is_empty() {
            continue;
        }
        match &bar {
            Some(b) => {
                b.set_message(text);
                b.tick();
            }
            None => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
