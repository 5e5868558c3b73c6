//! `bwlimit = "auto"` (issue 29): the controller that sets the rate from the
//! delay jobrun's own I/O sees, after LEDBAT (RFC 6817), as a pure state
//! machine: delay samples and a clock in, a rate out. No I/O, no clock of
//! its own; the throttle feeds it and paces at [`Controller::rate`].
//!
//! - The **base delay** is the floor of the link: the minimum of per-minute
//!   minima over the last [`BASE_MINUTES`] minutes (LEDBAT's base history).
//!   A route change that raises the floor ages out of it in that time.
//! - The **current delay** is the minimum of the samples of the last
//!   [`CURRENT_WINDOW`] (at least the last [`CURRENT_SAMPLES`]), so one slow
//!   call, or a burst of them (a busy CPU, a server hiccup), is no queue: a
//!   queue at the bottleneck delays every call while it stands.
//! - queuing delay = current − base. Above the target the rate drops
//!   multiplicatively (at most once per [`DECREASE_EVERY`], so the queue has
//!   time to drain before it is judged again, unless it is still growing),
//!   each cut in a row deeper than the last (a queue that outlasts the cuts
//!   is another user's); below it
//!   the rate grows additively, by up to [`Config::ramp`] per second scaled
//!   by how far below the target it is (LEDBAT's off-target gain), up to
//!   the ceiling.
//! - While the copy cannot use its rate (small files, a slow disk) the rate
//!   grows no further than twice what was moved: a rate never used is
//!   a burst waiting for the next big file.
//! - The clock may jump: a step back counts as no time; a step forward
//!   ages the base history by the minutes it skipped and counts at most one
//!   second of growth.

use std::collections::VecDeque;
use std::time::Duration;

/// Minutes of per-minute minima kept for the base delay (RFC 6817: 10).
pub const BASE_MINUTES: usize = 10;
/// Samples whose minimum is the current delay, at least (RFC 6817:
/// CURRENT_FILTER)...
pub const CURRENT_SAMPLES: usize = 4;
/// ... and all those of this last stretch of time: the lanes time hundreds
/// of calls a second, and a busy machine delays a few in a row.
pub const CURRENT_WINDOW: Duration = Duration::from_millis(100);
/// Rates are never set below this (a stalled copy times nothing).
pub const MIN_RATE: u64 = 1 << 20;
/// Where a run starts (below the ceiling, if that is lower).
pub const START_RATE: u64 = 4 << 20;
/// Growth per second at zero queuing delay when `auto` has no ceiling.
pub const DEFAULT_RAMP: u64 = 8 << 20;
/// The most that one decrease keeps: halving at most, as TCP on a loss.
const MIN_KEEP: f64 = 0.5;
/// Shortest time between two decreases.
pub const DECREASE_EVERY: Duration = Duration::from_millis(200);
/// A decrease this soon after the one before is one more in a row (see
/// [`Controller::sample`]).
const IN_A_ROW: Duration = Duration::from_millis(400);
/// ... and a queue still growing after a cut is cut again this soon.
const REGROW_WINDOW: Duration = Duration::from_millis(50);
/// The rate is kept within this many times what was moved in the last
/// second (application-limited: see the module header). A copy that uses
/// its rate moves about the rate, so this never holds back one that does.
const USED_HEADROOM: f64 = 2.0;
/// Growth counted at most for this long between two samples.
const MAX_STEP: Duration = Duration::from_secs(1);
/// Default `polite_target`: the queuing delay the controller allows.
pub const DEFAULT_TARGET: Duration = Duration::from_millis(2);

/// What the controller is asked to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Queuing delay allowed above the base (`polite_target`).
    pub target: Duration,
    /// The rate never goes above this (`auto, 60M`); `None`: no ceiling.
    pub ceiling: Option<u64>,
    /// Growth per second at zero queuing delay, bytes/s per s.
    pub ramp: u64,
}

impl Config {
    /// `target` and `ceiling` with the ramp that follows: a fifth of the
    /// ceiling per second (back to it within 5 s), [`DEFAULT_RAMP`] without.
    pub fn new(target: Duration, ceiling: Option<u64>) -> Self {
        let ramp = ceiling.map_or(DEFAULT_RAMP, |c| (c / 5).max(1));
        Self {
            target,
            ceiling,
            ramp,
        }
    }

    fn floor(&self) -> f64 {
        self.ceiling.map_or(MIN_RATE, |c| c.min(MIN_RATE)) as f64
    }

    fn top(&self) -> f64 {
        self.ceiling.unwrap_or(crate::units::MAX_RATE) as f64
    }
}

/// The controller's state; see the module header.
#[derive(Debug, Clone)]
pub struct Controller {
    cfg: Config,
    /// Per-minute minima, newest last: (minute since the start, minimum).
    base: VecDeque<(u64, Duration)>,
    /// The last samples, newest last: (time counted, delay).
    current: VecDeque<(Duration, Duration)>,
    rate: f64,
    /// The caller's clock at the last sample, and the time counted since
    /// the start (a step back counts as none).
    last: Duration,
    elapsed: Duration,
    /// `elapsed` at the last sample (growth is counted from there).
    grown_at: Duration,
    /// Minute index the clock was in at the last sample.
    minute: u64,
    last_decrease: Option<Duration>,
    /// Decreases in a row (each within [`IN_A_ROW`] of the one before,
    /// the queue above the target all along: `stood`), and the queue at the
    /// last one.
    cuts: u32,
    stood: bool,
    cut_at: Duration,
    /// Bytes moved since `window_start`, and in the window before.
    window_start: Duration,
    window_bytes: u64,
    used: Option<f64>,
}

impl Controller {
    pub fn new(cfg: Config, now: Duration) -> Self {
        let start = (START_RATE as f64).min(cfg.top()).max(cfg.floor());
        Self {
            cfg,
            base: VecDeque::new(),
            current: VecDeque::new(),
            rate: start,
            last: now,
            elapsed: Duration::ZERO,
            grown_at: Duration::ZERO,
            minute: 0,
            last_decrease: None,
            cuts: 0,
            stood: false,
            cut_at: Duration::ZERO,
            window_start: now,
            window_bytes: 0,
            used: None,
        }
    }

    /// The rate to pace at, bytes/s: within [floor, ceiling].
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    pub fn config(&self) -> Config {
        self.cfg
    }

    /// The base delay learned so far.
    pub fn base(&self) -> Option<Duration> {
        self.base.iter().map(|b| b.1).min()
    }

    /// The filtered current delay.
    pub fn current(&self) -> Option<Duration> {
        self.current.iter().map(|c| c.1).min()
    }

    /// Current minus base.
    pub fn queuing(&self) -> Option<Duration> {
        Some(self.current()?.saturating_sub(self.base()?))
    }

    /// One call took `delay` to move `bytes` at `now` (the clock of the
    /// caller, any origin): updates the delays and the rate.
    pub fn sample(&mut self, now: Duration, delay: Duration, bytes: u64) {
        self.advance(now);
        // Growth for the time since the last sample (calls without one
        // between them included), at most a second of it.
        let dt = self.elapsed.saturating_sub(self.grown_at).min(MAX_STEP);
        self.grown_at = self.elapsed;
        self.note_used(now, bytes);
        self.record(delay);
        let (Some(q), target) = (self.queuing(), self.cfg.target) else {
            return;
        };
        if q > target {
            let since = self.last_decrease.map(|t| self.elapsed.saturating_sub(t));
            // A queue half as long again as at the last cut is still
            // growing: that cut was too shallow, the next one is due now.
            let growing = q >= self.cut_at + self.cut_at / 2;
            let due = |d: Duration| d >= DECREASE_EVERY || (growing && d >= REGROW_WINDOW);
            if since.is_none_or(due) {
                // A queue that stayed above the target from one cut to the
                // next is not (only) ours: ours drains once the rate is
                // below the link. Each cut in a row goes deeper, so a
                // competitor just above the target is yielded to as fast as
                // one far above it.
                let in_a_row = since.is_some_and(|d| d <= IN_A_ROW) && self.stood;
                self.stood = true;
                self.cuts = if in_a_row { self.cuts + 1 } else { 1 };
                self.cut_at = q;
                // The further above the target, the deeper the cut.
                let over = (q - target).as_secs_f64() / target.as_secs_f64().max(1e-6);
                let depth = 0.125 * (over.min(4.0) + 0.5 * f64::from(self.cuts - 1));
                self.rate *= (1.0 - depth).max(MIN_KEEP);
                self.last_decrease = Some(self.elapsed);
            }
        } else {
            self.stood = false;
            let off = 1.0 - q.as_secs_f64() / target.as_secs_f64().max(1e-6);
            let grow = self.cfg.ramp as f64 * off * dt.as_secs_f64();
            let cap = self
                .used
                .map_or(f64::INFINITY, |u| (u * USED_HEADROOM).max(self.cfg.floor()));
            self.rate = (self.rate + grow).min(cap);
        }
        self.rate = self.rate.clamp(self.cfg.floor(), self.cfg.top());
    }

    /// A call moved `bytes` at `now` without a delay sample (what was
    /// moved still counts: see [`USED_HEADROOM`]).
    pub fn moved(&mut self, now: Duration, bytes: u64) {
        self.advance(now);
        self.note_used(now, bytes);
    }

    /// Moves the clock to `now`.
    fn advance(&mut self, now: Duration) {
        // A step back counts as no time; the caller's clock is followed
        // from there.
        let dt = now.saturating_sub(self.last);
        self.last = now;
        self.elapsed += dt;
        let minute = self.elapsed.as_secs() / 60;
        if minute != self.minute {
            // Minutes skipped without a sample age the history all the same.
            self.minute = minute;
            self.base.retain(|b| b.0 + BASE_MINUTES as u64 > minute);
        }
        if dt > MAX_STEP || now < self.window_start {
            // A long gap or a step back: what the window measured is stale.
            self.window_start = now;
            self.window_bytes = 0;
            self.used = None;
        }
    }

    fn note_used(&mut self, now: Duration, bytes: u64) {
        self.window_bytes += bytes;
        let span = now.saturating_sub(self.window_start);
        if span >= Duration::from_secs(1) {
            self.used = Some(self.window_bytes as f64 / span.as_secs_f64());
            self.window_start = now;
            self.window_bytes = 0;
        }
    }

    fn record(&mut self, delay: Duration) {
        match self.base.back_mut() {
            Some((m, d)) if *m == self.minute => *d = (*d).min(delay),
            _ => self.base.push_back((self.minute, delay)),
        }
        self.current.push_back((self.elapsed, delay));
        while self.current.len() > CURRENT_SAMPLES
            && self.elapsed.saturating_sub(self.current[0].0) > CURRENT_WINDOW
        {
            self.current.pop_front();
        }
    }
}

#[cfg(test)]
#[path = "polite_tests.rs"]
mod tests;
