//! Bandwidth limit (SPEC §6): the run's `bwlimit` ([`LiveLimit`]: a
//! [`Schedule`] from `timetable`, replaceable by a reload) and the token
//! bucket that enforces it ([`Throttle`], over the `ratelimit` crate; this is
//! the only module that imports it). Reader and writer each own one
//! `Throttle` following the same `LiveLimit`, since the limit applies to each
//! link direction. A pause holds every lane at its next slice.
//!
//! Strictness comes from small slices: callers consume at most
//! [`Throttle::slice_len`] bytes per call, and the bucket holds at most one
//! slice, so no single read or write can burst past the rate. A timetable is
//! re-evaluated against the local clock at most once per
//! [`CHECK_EVERY`], so a month-long run follows thousands of boundaries for
//! the price of one clock reading per second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratelimit::{Ratelimiter, TryWaitError};

use crate::polite::{self, Controller};
use crate::timetable::local_week_secs;
pub use crate::timetable::{Limit, Schedule};

/// Largest slice consumed at once when limited.
const MAX_SLICE: u64 = 64 * 1024;
/// Bucket capacity, as a fraction of a second of the rate (1/50 s = 20 ms):
/// absorbs late wake-ups and short syscalls without letting any window
/// carry more than 20 ms worth above the rate.
const BUCKET_DIV: u64 = 50;
/// Catch-up: a throttle that fell behind its schedule (the machine stalled
/// it, a file open took long) runs this much faster until it is back on
/// schedule: +5 %, so that a 1 s window stays within SPEC §6's 10 %.
const CATCH_UP_DIV: u64 = 20;
/// At most this much lost time is made up; older debt is forgotten (so an
/// idle hour is not "owed" to the link).
const MAX_DEBT: Duration = Duration::from_secs(2);
/// Debt that switches catch-up on (hysteresis: it switches off at zero).
const DEBT_ON: Duration = Duration::from_millis(50);
/// How often a running throttle looks at the clock for a timetable boundary.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Under `auto`, calls beside another are delay samples only when none
/// was alone for this long (see [`Throttle::observe`]).
const ALONE_AT_LEAST: Duration = Duration::from_millis(250);
/// How often a paused lane looks whether the pause ended.
const PAUSE_POLL: Duration = Duration::from_millis(100);
/// The limit in force as one number (progress counters): 0 = none,
/// [`PAUSED`] = pause, else bytes/s.
pub const PAUSED: u64 = u64::MAX;
// No rate a manifest can spell reaches the pause code.
const _: () = assert!(crate::units::MAX_RATE < PAUSED);

/// Set in a limit code when the rate is `auto`'s (the rate in force is the
/// rest of the code): the progress line says `limit auto 20.0 MiB/s`.
pub const AUTO: u64 = 1 << 62;
const _: () = assert!(crate::units::MAX_RATE < AUTO && AUTO < PAUSED);

/// [`Limit`] as one number: 0 = off, [`PAUSED`], or bytes/s (`auto`:
/// [`AUTO`] alone, until a throttle adds the rate it holds).
pub fn limit_code(l: Limit) -> u64 {
    match l {
        Limit::Off => 0,
        Limit::Pause => PAUSED,
        Limit::Rate(r) => r,
        Limit::Auto(_) => AUTO,
    }
}

/// The rate a limit code stands for: `None` = off or paused.
pub fn code_rate(c: u64) -> Option<u64> {
    (c != PAUSED).then_some(c & !AUTO).filter(|&r| r > 0)
}

/// A limit code as `run_end` and the `runs` row say it: `off`, `pause`,
/// `2097152 B/s`, `auto` (no rate held yet) or `auto, 9751756 B/s`.
pub fn code_text(c: u64) -> String {
    match (c, code_rate(c)) {
        (PAUSED, _) => "pause".into(),
        (c, Some(r)) if c & AUTO != 0 => format!("auto, {r} B/s"),
        (c, None) if c & AUTO != 0 => "auto".into(),
        (_, Some(r)) => format!("{r} B/s"),
        (_, None) => "off".into(),
    }
}

// ---- the run's limit, replaceable while it runs -----------------------------

/// The `bwlimit` a run follows, which a reload (SIGHUP) may replace: the
/// throttles compare [`LiveLimit`]'s generation at every call (one atomic
/// load) and take the new schedule at once.
#[derive(Debug, Default)]
pub struct LiveLimit {
    schedule: Mutex<Schedule>,
    generation: AtomicU64,
    /// Set when the run stops: a paused lane gives up waiting.
    cancelled: AtomicBool,
    /// `polite_target`: the queuing delay `auto` allows.
    target: Mutex<Duration>,
}

impl LiveLimit {
    pub fn new(schedule: Schedule) -> Arc<Self> {
        Self::polite(schedule, polite::DEFAULT_TARGET)
    }

    /// A limit whose `auto` entries hold the queuing delay to `target`.
    pub fn polite(schedule: Schedule, target: Duration) -> Arc<Self> {
        Arc::new(Self {
            schedule: Mutex::new(schedule),
            target: Mutex::new(target),
            ..Self::default()
        })
    }

    fn target(&self) -> Duration {
        *self.target.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> Schedule {
        self.schedule
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the schedule; every throttle follows within its next call.
    pub fn set(&self, schedule: Schedule) {
        *self.schedule.lock().unwrap_or_else(|e| e.into_inner()) = schedule;
        self.generation.fetch_add(1, Relaxed);
    }

    /// The run stops: lanes waiting in a pause return (their callers then
    /// see the stop request).
    pub fn cancel(&self) {
        self.cancelled.store(true, Relaxed);
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Relaxed)
    }
}

// ---- the enforcing token bucket ------------------------------------------

/// A token bucket following a [`LiveLimit`]. Shared by all readers (or all
/// writers) of a run's `transfers` lanes: the limit is for the whole run; the
/// active rate changes under it when the clock crosses a timetable boundary
/// or a reload replaces the schedule.
pub struct Throttle {
    live: Arc<LiveLimit>,
    /// The generation of `live` that `schedule` is.
    seen: AtomicU64,
    schedule: Mutex<Schedule>,
    /// Whether `schedule` is a timetable (the clock must be looked at).
    timed: AtomicBool,
    limiter: Ratelimiter,
    /// Rate in force, as [`limit_code`]: 0 = unlimited right now; under
    /// `auto` the controller's rate (without the [`AUTO`] bit).
    active: AtomicU64,
    /// The schedule's limit in force (`auto` is one limit whatever its rate).
    in_force: Mutex<Limit>,
    /// `auto`'s controller, fed by [`Throttle::paced`].
    polite: Mutex<Option<Controller>>,
    /// Whether `polite` is in charge (one atomic load per call).
    auto: AtomicBool,
    /// Origin of the controller's clock.
    epoch: Instant,
    /// Paced calls under way, and started so far (a call alone saw both
    /// unchanged), and when (µs after `epoch`) the last one alone ended.
    calls: AtomicU64,
    started: AtomicU64,
    last_alone: AtomicU64,
    /// `auto`'s slice: one size for the run, so that the calls' times
    /// compare (64 KiB unless the ceiling is below 3.2 MB/s); 0 otherwise.
    auto_slice: AtomicU64,
    next_check: Mutex<Instant>,
    check_every: Duration,
    /// Catch-up state; a mutex because all lanes share one throttle.
    pace: Mutex<Pace>,
    clock: fn() -> u32,
    /// Whether a limit change is an `info` diagnostic (one of the two
    /// throttles of a run says it, see [`Throttle::quiet`]).
    log_changes: bool,
}

/// Where the throttle stands against its schedule.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// Start of the schedule the catch-up compares with (reset on a rate change).
    since: Instant,
    /// Bytes consumed since `since`.
    bytes: u64,
    /// Running at the catch-up rate.
    boosted: bool,
}

impl Pace {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            bytes: 0,
            boosted: false,
        }
    }
}

impl Throttle {
    /// A throttle following a fixed `schedule` on the local clock.
    pub fn new(schedule: &Schedule) -> Self {
        Self::live(&LiveLimit::new(schedule.clone()))
    }

    /// A throttle following `live` (which a reload may change) on the
    /// local clock.
    pub fn live(live: &Arc<LiveLimit>) -> Self {
        Self::with_clock(live, local_week_secs, CHECK_EVERY)
    }

    /// The same throttle, without the diagnostic at each limit change:
    /// a run's read and write throttles change together, and the operator
    /// is told once.
    #[must_use]
    pub fn quiet(mut self) -> Self {
        self.log_changes = false;
        self
    }

    /// [`Throttle::live`] with a chosen clock (seconds after Monday 00:00)
    /// and re-evaluation interval, for tests.
    pub fn with_clock(live: &Arc<LiveLimit>, clock: fn() -> u32, check_every: Duration) -> Self {
        let limiter = Ratelimiter::builder(1)
            .max_tokens(1)
            .initial_available(0)
            .build()
            .expect("rate 1 and max_tokens 1 are valid");
        let seen = live.generation.load(Acquire);
        let schedule = live.get();
        let t = Self {
            live: live.clone(),
            seen: AtomicU64::new(seen),
            timed: AtomicBool::new(matches!(schedule, Schedule::Timetable(_))),
            schedule: Mutex::new(schedule),
            limiter,
            active: AtomicU64::new(0),
            in_force: Mutex::new(Limit::Off),
            polite: Mutex::new(None),
            auto: AtomicBool::new(false),
            epoch: Instant::now(),
            calls: AtomicU64::new(0),
            started: AtomicU64::new(0),
            last_alone: AtomicU64::new(0),
            auto_slice: AtomicU64::new(0),
            next_check: Mutex::new(Instant::now() + check_every),
            check_every,
            pace: Mutex::new(Pace::new()),
            clock,
            log_changes: true,
        };
        t.apply(t.schedule_limit(), None);
        t
    }

    /// The schedule's limit now. The clock is read only for a timetable:
    /// finding the local zone lists the zone database on some systems, a
    /// cost every run would otherwise pay at the start of its transfer.
    fn schedule_limit(&self) -> Limit {
        match &*self.schedule.lock().unwrap_or_else(|e| e.into_inner()) {
            Schedule::Fixed(l) => *l,
            timed @ Schedule::Timetable(_) => timed.limit_at((self.clock)()),
        }
    }

    /// Makes `limit` the one in force (no-op when it already is); `why`
    /// names the cause for the diagnostic.
    fn apply(&self, limit: Limit, why: Option<&str>) {
        let before = {
            let mut in_force = self.in_force.lock().unwrap_or_else(|e| e.into_inner());
            if *in_force == limit {
                return;
            }
            std::mem::replace(&mut *in_force, limit)
        };
        let rate = match limit {
            Limit::Auto(ceiling) => {
                let cfg = polite::Config::new(self.live.target(), ceiling);
                let c = Controller::new(cfg, self.epoch.elapsed());
                let r = c.rate();
                *self.controller() = Some(c);
                Some(r)
            }
            Limit::Rate(r) => Some(r),
            Limit::Off | Limit::Pause => None,
        };
        if let Limit::Auto(c) = limit {
            self.auto_slice
                .store(slice_for(c.unwrap_or(u64::MAX)), Relaxed);
        } else {
            self.auto_slice.store(0, Relaxed);
        }
        self.auto.store(matches!(limit, Limit::Auto(_)), Relaxed);
        if let Some(r) = rate {
            self.set_rate(r);
        }
        if let Some(why) = why.filter(|_| self.log_changes) {
            tracing::info!(from = %before, to = %limit, "bandwidth limit changed ({why})");
        }
        self.active.store(
            match limit {
                Limit::Off => 0,
                Limit::Pause => PAUSED,
                _ => rate.unwrap_or(0),
            },
            Relaxed,
        );
        *self.pace_state() = Pace::new();
    }

    fn set_rate(&self, r: u64) {
        // Capacity first: `set_rate` keeps a max_tokens that is not u64::MAX.
        // Under `auto` it holds one of its slices, whatever the rate.
        let slice = self.auto_slice.load(Relaxed);
        self.limiter.set_max_tokens(bucket_for(r).max(slice));
        self.limiter.set_rate(r);
    }

    fn controller(&self) -> std::sync::MutexGuard<'_, Option<Controller>> {
        self.polite.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compares the bytes consumed with what the rate allowed since
    /// `pace_since`, and switches the +5 % catch-up on or off.
    fn pace_state(&self) -> std::sync::MutexGuard<'_, Pace> {
        // A poisoned lock only means another lane panicked mid-update of
        // plain numbers; they are still usable.
        self.pace.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pace(&self, n: u64) {
        if self.auto.load(Relaxed) {
            // `auto` makes up nothing: a lost moment is no debt to the link.
            return;
        }
        let l = &self.limiter;
        let rate = self.active.load(Relaxed);
        let mut p = self.pace_state();
        p.bytes += n;
        let bytes = p.bytes;
        let now = Instant::now();
        let since = p.since;
        let due = rate as f64 * now.saturating_duration_since(since).as_secs_f64();
        let mut behind = due - bytes as f64;
        let cap = rate as f64 * MAX_DEBT.as_secs_f64();
        if behind > cap {
            p.since = since + Duration::from_secs_f64((behind - cap) / rate as f64);
            behind = cap;
        }
        let boost = if p.boosted {
            behind > 0.0
        } else {
            behind > rate as f64 * DEBT_ON.as_secs_f64()
        };
        if boost != p.boosted {
            p.boosted = boost;
            l.set_rate(if boost {
                rate + rate / CATCH_UP_DIV
            } else {
                rate
            });
        }
    }

    /// Takes a reloaded schedule at once; looks at the clock if a check is
    /// due; cheap otherwise (two atomic loads).
    fn refresh(&self) {
        let reloaded = self.live.generation.load(Acquire) != self.seen.load(Relaxed);
        if !reloaded && !self.timed.load(Relaxed) {
            return;
        }
        let now = Instant::now();
        // Held while applying, so that concurrent lanes change the rate once.
        let mut next = self.next_check.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.live.generation.load(Acquire);
        if generation != self.seen.load(Relaxed) {
            let schedule = self.live.get();
            self.timed
                .store(matches!(schedule, Schedule::Timetable(_)), Relaxed);
            *self.schedule.lock().unwrap_or_else(|e| e.into_inner()) = schedule;
            self.seen.store(generation, Relaxed);
            *next = now + self.check_every;
            self.apply(self.schedule_limit(), Some("reloaded"));
            return;
        }
        if now < *next {
            return;
        }
        *next = now + self.check_every;
        self.apply(self.schedule_limit(), Some("timetable"));
    }

    /// Rate in force now, bytes/s; `None` = unlimited; [`PAUSED`] = pause.
    pub fn active(&self) -> Option<u64> {
        Some(self.active.load(Relaxed)).filter(|&r| r > 0)
    }

    /// Whether `auto` sets the rate now (its calls are delay samples).
    pub fn is_auto(&self) -> bool {
        self.auto.load(Relaxed) && self.active.load(Relaxed) != PAUSED
    }

    /// The limit in force as [`limit_code`] encodes it, `auto`'s rate now
    /// marked [`AUTO`] (what the progress line shows).
    pub fn code(&self) -> u64 {
        let a = self.active.load(Relaxed);
        if self.auto.load(Relaxed) && a != PAUSED {
            a | AUTO
        } else {
            a
        }
    }

    /// Takes the tokens for `n` bytes ([`Self::consume`]), then does the
    /// call `io` that moves them; under `auto` the time the call took is a
    /// delay sample for the controller (see `polite`).
    pub fn paced<T>(
        &self,
        n: usize,
        io: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        self.consume(n);
        if !self.auto.load(Relaxed) {
            return io();
        }
        let others = self.calls.fetch_add(1, Relaxed);
        let ticket = self.started.fetch_add(1, Relaxed);
        let start = Instant::now();
        let out = io();
        self.calls.fetch_sub(1, Relaxed);
        // Alone from start to end: no other lane's call shared the link.
        let alone = others == 0 && self.started.load(Relaxed) == ticket + 1;
        let out = out?;
        self.observe(start, n, alone);
        Ok(out)
    }

    /// One call that started at `start` moved `n` bytes. Its time is a
    /// delay sample when it was a whole slice (a short tail call is
    /// quicker, not less queued) and alone: the lanes share one connection
    /// to the server on most mounts, so a call beside another waits for
    /// the other's bytes, its own run's queue, which the other users of the
    /// link never see. When no call has been alone for
    /// [`ALONE_AT_LEAST`], every call is a sample again (a link slowed by
    /// another user makes every call overlap: that must not blind it).
    fn observe(&self, start: Instant, n: usize, alone: bool) {
        let end = Instant::now();
        let now = end - self.epoch;
        let mut c = self.controller();
        let Some(ctl) = c.as_mut() else {
            return;
        };
        let last_alone = Duration::from_micros(self.last_alone.load(Relaxed));
        let whole = n as u64 >= self.auto_slice.load(Relaxed);
        if !whole || (!alone && now.saturating_sub(last_alone) < ALONE_AT_LEAST) {
            ctl.moved(now, n as u64);
            return;
        }
        if alone {
            self.last_alone.store(now.as_micros() as u64, Relaxed);
        }
        ctl.sample(now, end - start, n as u64);
        let (r, ceiling) = (ctl.rate(), ctl.config().ceiling);
        // `RUST_LOG=jobrun::throttle=trace`: every sample, for a bench.
        tracing::trace!(
            dir = if self.log_changes { "read" } else { "write" },
            t_ms = (end - self.epoch).as_millis() as u64,
            delay_us = (end - start).as_micros() as u64,
            base_us = ctl.base().map_or(0, |d| d.as_micros() as u64),
            queuing_us = ctl.queuing().map_or(0, |d| d.as_micros() as u64),
            rate = r,
            "auto sample"
        );
        drop(c);
        let a = self.active.load(Relaxed);
        // Small moves are not worth re-arming the bucket for, but the
        // ceiling is reached exactly.
        let moved = r.abs_diff(a) > a / 64 || (r != a && Some(r) == ceiling);
        if a != PAUSED && a != 0 && moved {
            self.set_rate(r);
            self.active.store(r, Relaxed);
        }
    }

    /// Whether bytes must go through [`Self::consume`] right now (a rate or
    /// a pause). Also the point where a timetable boundary or a reload is
    /// noticed: call it per block.
    pub fn is_limited(&self) -> bool {
        self.refresh();
        self.active.load(Relaxed) > 0
    }

    /// Bytes to move per `consume` call: ≤ 64 KiB and ≤ 1/50 s of the rate.
    pub fn slice_len(&self) -> usize {
        match self.active.load(Relaxed) {
            0 => usize::MAX,
            PAUSED => MAX_SLICE as usize,
            // `auto`: slices of one size, so that their times compare.
            _ if self.auto.load(Relaxed) => self.auto_slice.load(Relaxed) as usize,
            r => slice_for(r) as usize,
        }
    }

    /// Blocks until `n` bytes (≤ [`Self::slice_len`]) may pass. While
    /// paused it waits for the pause to end (or the run to stop).
    pub fn consume(&self, n: usize) {
        let l = &self.limiter;
        let mut left = n as u64;
        while left > 0 {
            self.refresh();
            let step = match self.active.load(Relaxed) {
                0 => return,
                PAUSED => {
                    if self.live.is_cancelled() {
                        return;
                    }
                    std::thread::sleep(PAUSE_POLL);
                    continue;
                }
                _ if self.auto.load(Relaxed) => left.min(self.auto_slice.load(Relaxed)),
                r => left.min(slice_for(r)),
            };
            match l.try_wait_n(step) {
                Ok(()) => {
                    left -= step;
                    self.pace(step);
                }
                Err(TryWaitError::Insufficient(d)) => {
                    std::thread::sleep(d.clamp(Duration::from_micros(100), PAUSE_POLL))
                }
                // max_tokens shrank under us (rate change): retry with the new size.
                Err(_) => {}
            }
        }
    }
}

fn slice_for(rate: u64) -> u64 {
    (rate / 50).clamp(1, MAX_SLICE)
}

fn bucket_for(rate: u64) -> u64 {
    (rate / BUCKET_DIV).max(slice_for(rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    fn drain(t: &Throttle, mut bytes: usize) {
        while bytes > 0 {
            let n = bytes.min(t.slice_len());
            t.consume(n);
            bytes -= n;
        }
    }

    #[test]
    fn a_limit_code_reads_as_run_end_writes_it() {
        let said = |l| code_text(limit_code(l));
        assert_eq!(said(Limit::Off), "off");
        assert_eq!(said(Limit::Pause), "pause");
        assert_eq!(said(Limit::Rate(2 << 20)), "2097152 B/s");
        assert_eq!(
            said(Limit::Auto(Some(60 << 20))),
            "auto",
            "no rate held yet"
        );
        assert_eq!(code_text(AUTO | 9_751_756), "auto, 9751756 B/s");
    }

    #[test]
    fn unlimited_costs_nothing() {
        for s in [
            Schedule::Fixed(Limit::Off),
            Schedule::parse("08:00,off 19:00,0").unwrap(),
        ] {
            let t = Throttle::new(&s);
            let start = Instant::now();
            for _ in 0..1_000_000 {
                assert!(!t.is_limited());
                t.consume(1 << 20);
            }
            // 1 TiB "consumed": any wait at all (a millisecond each) would
            // take over 16 minutes; the bound is generous for a loaded box.
            assert!(start.elapsed() < Duration::from_secs(30));
        }
    }

    #[test]
    fn limit_holds_as_lower_bound() {
        // 1 MiB at 4 MiB/s must take at least ~0.25 s (bucket starts empty).
        let t = Throttle::new(&Schedule::Fixed(Limit::Rate(4 << 20)));
        assert!(t.is_limited());
        assert_eq!(t.slice_len(), 64 * 1024);
        let start = Instant::now();
        drain(&t, 1 << 20);
        assert!(
            start.elapsed() >= Duration::from_millis(230),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_stalled_throttle_catches_up_by_at_most_5_percent() {
        let rate = 4u64 << 20;
        let t = Throttle::new(&Schedule::Fixed(Limit::Rate(rate)));
        // Stalled for 1 s (the machine, a slow open): 4 MiB behind schedule.
        std::thread::sleep(Duration::from_secs(1));
        t.consume(t.slice_len());
        assert!(t.pace_state().boosted, "behind schedule: catch-up on");
        // Making up 1 s of rate must still take >= 1/1.05 s (minus the 20 ms bucket).
        let start = Instant::now();
        drain(&t, rate as usize);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(930), "{took:?}");
        // Debt beyond MAX_DEBT is forgotten, and once on schedule the boost ends.
        std::thread::sleep(Duration::from_secs(3));
        drain(&t, t.slice_len());
        let (bytes, since) = {
            let p = t.pace_state();
            (p.bytes as f64, p.since)
        };
        let behind = rate as f64 * since.elapsed().as_secs_f64() - bytes;
        assert!(behind <= rate as f64 * 2.05, "debt capped at 2 s: {behind}");
    }

    #[test]
    fn slices_shrink_for_slow_rates() {
        assert_eq!(
            Throttle::new(&Schedule::Fixed(Limit::Rate(1000))).slice_len(),
            20
        );
        assert_eq!(
            Throttle::new(&Schedule::Fixed(Limit::Rate(1))).slice_len(),
            1
        );
    }

    static NOW: AtomicU32 = AtomicU32::new(0);
    fn fake_clock() -> u32 {
        NOW.load(Relaxed)
    }

    fn clock_never_read() -> u32 {
        panic!("the clock is read for a fixed limit")
    }

    #[test]
    fn a_fixed_limit_never_reads_the_clock() {
        for l in [Limit::Off, Limit::Pause, Limit::Rate(1 << 20)] {
            let t = Throttle::with_clock(
                &LiveLimit::new(Schedule::Fixed(l)),
                clock_never_read,
                Duration::ZERO,
            );
            // Each call re-evaluates the schedule (check_every = 0).
            assert_eq!(t.is_limited(), l != Limit::Off);
            assert_eq!(t.is_limited(), l != Limit::Off);
        }
    }

    #[test]
    fn rate_follows_the_clock_across_boundaries() {
        let s = Schedule::parse("08:00,1M 12:00,off 19:00,4M").unwrap();
        NOW.store(9 * 3600, Relaxed);
        let t = Throttle::with_clock(&LiveLimit::new(s), fake_clock, Duration::ZERO);
        assert_eq!(t.active(), Some(1 << 20));
        assert_eq!(t.slice_len(), (1 << 20) / 50);
        // 12:00: off, the throttle becomes free at once.
        NOW.store(12 * 3600, Relaxed);
        assert!(!t.is_limited());
        let start = Instant::now();
        drain(&t, 64 << 20);
        assert!(start.elapsed() < Duration::from_millis(200));
        // 19:00: 4 MiB/s; 512 KiB takes >= ~0.1 s again.
        NOW.store(19 * 3600, Relaxed);
        assert!(t.is_limited());
        assert_eq!(t.active(), Some(4 << 20));
        let start = Instant::now();
        drain(&t, 512 << 10);
        assert!(
            start.elapsed() >= Duration::from_millis(110),
            "{:?}",
            start.elapsed()
        );
        // Past midnight, before 08:00: the last entry still holds.
        NOW.store(3 * 3600, Relaxed);
        assert_eq!((t.is_limited(), t.active()), (true, Some(4 << 20)));
    }

    static NOW2: AtomicU32 = AtomicU32::new(0);
    fn fake_clock2() -> u32 {
        NOW2.load(Relaxed)
    }

    #[test]
    fn clock_is_read_at_most_every_check_interval() {
        let s = Schedule::parse("00:00,1M 00:01,2M").unwrap();
        let t = Throttle::with_clock(&LiveLimit::new(s), fake_clock2, Duration::from_secs(3600));
        NOW2.store(120, Relaxed);
        assert_eq!((t.is_limited(), t.active()), (true, Some(1 << 20)));
    }

    static NOW3: AtomicU32 = AtomicU32::new(0);
    fn fake_clock3() -> u32 {
        NOW3.load(Relaxed)
    }

    /// A run's read and write throttles change together; the operator is
    /// told once (`-v` printed the change twice).
    #[test]
    fn a_change_is_said_once_for_a_quiet_pair() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Captured::default();
        let writer = out.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let s = LiveLimit::new(Schedule::parse("00:00,1M 00:01,2M").unwrap());
        tracing::subscriber::with_default(sub, || {
            let read = Throttle::with_clock(&s, fake_clock3, Duration::ZERO);
            let write = Throttle::with_clock(&s, fake_clock3, Duration::ZERO).quiet();
            NOW3.store(120, Relaxed);
            assert!(read.is_limited() && write.is_limited());
            assert_eq!(read.active(), Some(2 << 20));
            assert_eq!(write.active(), Some(2 << 20));
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("bandwidth limit changed").count(), 1, "{text}");
    }

    #[test]
    fn pause_holds_until_the_next_entry_and_a_reload_applies_at_once() {
        let live = LiveLimit::new(Schedule::parse("pause").unwrap());
        let t = std::sync::Arc::new(Throttle::live(&live));
        assert!(t.is_limited());
        assert_eq!(t.active(), Some(PAUSED));
        let (t2, started) = (t.clone(), Instant::now());
        let lane = std::thread::spawn(move || {
            t2.consume(1000);
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(400));
        assert!(!lane.is_finished(), "a paused lane waits");
        live.set(Schedule::Fixed(Limit::Rate(1 << 20)));
        let waited = lane.join().unwrap();
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        assert!(
            waited < Duration::from_secs(5),
            "the reload ended the pause: {waited:?}"
        );
        assert_eq!(t.active(), Some(1 << 20));
        // A stopping run cancels the wait.
        live.set(Schedule::parse("pause").unwrap());
        assert!(t.is_limited());
        live.cancel();
        t.consume(1000);
        // Off after a limit: free again.
        live.set(Schedule::Fixed(Limit::Off));
        assert!(!t.is_limited());
    }

    /// The fixed limit's property under `auto`: the throttle paces at the
    /// controller's rate, which never exceeds the ceiling, so no 1 s or
    /// 100 ms window carries more than the fixed limit's bounds allow.
    #[test]
    fn auto_climbs_to_its_ceiling_never_above_it_and_backs_off_on_a_queue() {
        let ceiling = 8u64 << 20;
        let t = Throttle::new(&Schedule::Fixed(Limit::Auto(Some(ceiling))));
        assert!(t.is_limited());
        assert_eq!(t.code(), AUTO | polite::START_RATE);
        assert_eq!(t.slice_len(), 64 << 10);
        let start = Instant::now();
        let mut log = Vec::new();
        // ~3 s on a quiet machine; a loaded one stalls a call now and then,
        // which the controller takes for a queue: up to 30 s allowed.
        while t.active() != Some(ceiling) && start.elapsed() < Duration::from_secs(30) {
            let n = t.slice_len();
            t.paced(n, || Ok(())).unwrap();
            log.push((start.elapsed().as_secs_f64(), n as f64));
        }
        assert_eq!(t.active(), Some(ceiling), "a quiet link: up to the ceiling");
        for (window, bound) in [(1.0, 1.07), (0.1, 1.25)] {
            let mut j = 0;
            let mut sum = 0.0;
            for i in 0..log.len() {
                sum += log[i].1;
                while log[i].0 - log[j].0 > window {
                    sum -= log[j].1;
                    j += 1;
                }
                let most = bound * ceiling as f64 * window;
                assert!(sum <= most, "{sum} bytes in {window} s at {}", log[i].0);
            }
        }
        // Each call now takes 20 ms (a queue ten times the target): it backs off.
        for _ in 0..40 {
            t.paced(64 << 10, || {
                std::thread::sleep(Duration::from_millis(20));
                Ok(())
            })
            .unwrap();
        }
        let backed = t.active().unwrap();
        assert!(backed <= ceiling / 2, "{backed}");
        assert_eq!(t.code(), AUTO | backed);
        // A reload to a fixed rate ends `auto`.
        t.live.set(Schedule::Fixed(Limit::Rate(1 << 20)));
        assert!(t.is_limited());
        assert_eq!(t.code(), 1 << 20);
    }
}
