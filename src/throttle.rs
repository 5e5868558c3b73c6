//! Bandwidth limit (SPEC §6): the `bwlimit` value ([`Schedule`]: one rate or
//! a day timetable, as rclone writes it) and the token bucket that enforces
//! it ([`Throttle`], over the `ratelimit` crate; this is the only module that
//! imports it). Reader and writer each own one `Throttle` with the same
//! schedule, since the limit applies to each link direction.
//!
//! Strictness comes from small slices: callers consume at most
//! [`Throttle::slice_len`] bytes per call, and the bucket holds at most one
//! slice, so no single read or write can burst past the rate. A timetable is
//! re-evaluated against the local clock at most once per
//! [`CHECK_EVERY`], so a month-long run follows thousands of boundaries for
//! the price of one `localtime_r` per second.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ratelimit::{Ratelimiter, TryWaitError};
use serde::{Serialize, Serializer};

use crate::units::{self, HumanRate};

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
const DAY_SECS: u32 = 24 * 3600;

// ---- the configured limit ------------------------------------------------

/// One timetable entry: from `at` (seconds after local midnight) the rate is
/// `rate` bytes/s (`None` = unlimited) until the next entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub at: u32,
    pub rate: Option<u64>,
}

/// `bwlimit` as resolved: a fixed rate (`None` = off), or a day timetable
/// like rclone's `"08:00,10M 12:00,20M 19:00,off"`. Before the first entry
/// of a day the last entry of the previous day is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Fixed(Option<u64>),
    /// At least one entry, strictly increasing times.
    Timetable(Vec<Slot>),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Fixed(None)
    }
}

impl Schedule {
    /// Parses a rate (`20M`, `20MB/s`, `0`, `off`) or a timetable of
    /// space-separated `HH:MM,RATE` entries in time order.
    pub fn parse(input: &str) -> Result<Self, String> {
        let t = input.trim();
        if !t.contains(',') && !t.contains(':') {
            return units::parse_rate(t)
                .map(Schedule::Fixed)
                .map_err(|e| e.to_string());
        }
        let mut slots: Vec<Slot> = Vec::new();
        for entry in t.split_whitespace() {
            let bad = |why: String| {
                format!(
                    "invalid timetable entry `{entry}`: {why}; expected entries like \
                     `08:00,10M 19:00,off` (HH:MM,RATE in time order)"
                )
            };
            let (time, rate) = entry
                .split_once(',')
                .ok_or_else(|| bad("missing `,RATE`".into()))?;
            let at =
                parse_hhmm(time).ok_or_else(|| bad(format!("`{time}` is not a time HH:MM")))?;
            let rate = units::parse_rate(rate).map_err(|e| bad(e.to_string()))?;
            if let Some(prev) = slots.last()
                && prev.at >= at
            {
                return Err(bad(format!(
                    "`{time}` does not come after {}",
                    hhmm(prev.at)
                )));
            }
            slots.push(Slot { at, rate });
        }
        if slots.is_empty() {
            return Err("empty timetable; write a rate like `20M` or `off`".into());
        }
        Ok(Schedule::Timetable(slots))
    }

    /// The rate in force at `secs` seconds after local midnight.
    pub fn rate_at(&self, secs: u32) -> Option<u64> {
        match self {
            Schedule::Fixed(r) => *r,
            Schedule::Timetable(slots) => slots
                .iter()
                .rev()
                .find(|s| s.at <= secs)
                .or(slots.last())
                .and_then(|s| s.rate),
        }
    }

    /// The rate in force now (local time).
    pub fn rate_now(&self) -> Option<u64> {
        match self {
            Schedule::Fixed(r) => *r,
            Schedule::Timetable(_) => self.rate_at(local_secs_of_day()),
        }
    }

    /// True when no entry ever limits: the throttle is then free.
    pub fn is_off(&self) -> bool {
        match self {
            Schedule::Fixed(r) => r.is_none(),
            Schedule::Timetable(slots) => slots.iter().all(|s| s.rate.is_none()),
        }
    }
}

/// `20.0 MiB/s`, `off`, or `08:00,10.0 MiB/s 19:00,off`.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Fixed(r) => f.write_str(&rate_text(*r)),
            Schedule::Timetable(slots) => {
                for (i, s) in slots.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{},{}", hhmm(s.at), rate_text(s.rate))?;
                }
                Ok(())
            }
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A rate for people: `20.0 MiB/s` or `off`.
pub fn rate_text(rate: Option<u64>) -> String {
    rate.map_or("off".into(), |r| HumanRate(r as f64).to_string())
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let ok = |p: &str| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || m.len() != 2 || !ok(m) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 3600 + m * 60)
}

fn hhmm(secs: u32) -> String {
    format!("{:02}:{:02}", secs / 3600, secs / 60 % 60)
}

/// Seconds since local midnight (the timetable is in local time, as rclone's).
fn local_secs_of_day() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: `localtime_r` writes only into `tm`, which outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = !unsafe { libc::localtime_r(&now, &mut tm) }.is_null();
    if ok {
        (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec) as u32
    } else {
        (now.rem_euclid(DAY_SECS as libc::time_t)) as u32
    }
}

// ---- the enforcing token bucket ------------------------------------------

/// A token bucket following a [`Schedule`]. Shared by all readers (or all
/// writers) of a run's `transfers` lanes: the limit is for the whole run; the
/// active rate changes under it when the clock crosses a timetable boundary.
pub struct Throttle {
    schedule: Schedule,
    /// `Some` unless the schedule never limits (then every call is free).
    limiter: Option<Ratelimiter>,
    /// Rate in force, bytes/s; 0 = unlimited right now.
    active: AtomicU64,
    next_check: Mutex<Instant>,
    check_every: Duration,
    /// Catch-up state; a mutex because all lanes share one throttle.
    pace: Mutex<Pace>,
    clock: fn() -> u32,
    /// Whether a timetable change is an `info` diagnostic (one of the two
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
    /// A throttle following `schedule` on the local clock.
    pub fn new(schedule: &Schedule) -> Self {
        Self::with_clock(schedule, local_secs_of_day, CHECK_EVERY)
    }

    /// The same throttle, without the diagnostic at each timetable change:
    /// a run's read and write throttles change together, and the operator
    /// is told once.
    #[must_use]
    pub fn quiet(mut self) -> Self {
        self.log_changes = false;
        self
    }

    /// [`Throttle::new`] with a chosen clock (seconds after midnight) and
    /// re-evaluation interval, for tests.
    pub fn with_clock(schedule: &Schedule, clock: fn() -> u32, check_every: Duration) -> Self {
        let limiter = (!schedule.is_off()).then(|| {
            Ratelimiter::builder(1)
                .max_tokens(1)
                .initial_available(0)
                .build()
                .expect("rate 1 and max_tokens 1 are valid")
        });
        let t = Self {
            schedule: schedule.clone(),
            limiter,
            active: AtomicU64::new(0),
            next_check: Mutex::new(Instant::now()),
            check_every,
            pace: Mutex::new(Pace::new()),
            clock,
            log_changes: true,
        };
        if t.limiter.is_some() {
            t.apply(t.schedule_rate(), false);
            *t.next_check.lock().expect("throttle lock") = Instant::now() + check_every;
        }
        t
    }

    fn schedule_rate(&self) -> Option<u64> {
        match &self.schedule {
            Schedule::Fixed(r) => *r,
            Schedule::Timetable(_) => self.schedule.rate_at((self.clock)()),
        }
    }

    /// Makes `rate` the one in force (no-op when it already is).
    fn apply(&self, rate: Option<u64>, log: bool) {
        let (Some(l), new) = (&self.limiter, rate.unwrap_or(0)) else {
            return;
        };
        if new == self.active.load(Relaxed) {
            return;
        }
        if new > 0 {
            // Capacity first: `set_rate` keeps a max_tokens that is not u64::MAX.
            l.set_max_tokens(bucket_for(new));
            l.set_rate(new);
        }
        if log && self.log_changes {
            tracing::info!(
                from = %rate_text(self.active()),
                to = %rate_text(rate),
                "bandwidth limit changed (timetable)"
            );
        }
        self.active.store(new, Relaxed);
        *self.pace_state() = Pace::new();
    }

    /// Compares the bytes consumed with what the rate allowed since
    /// `pace_since`, and switches the +5 % catch-up on or off.
    fn pace_state(&self) -> std::sync::MutexGuard<'_, Pace> {
        // A poisoned lock only means another lane panicked mid-update of
        // plain numbers; they are still usable.
        self.pace.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pace(&self, l: &Ratelimiter, n: u64) {
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

    /// Looks at the clock if a check is due; cheap otherwise.
    fn refresh(&self) {
        if self.limiter.is_none() || matches!(self.schedule, Schedule::Fixed(_)) {
            return;
        }
        let now = Instant::now();
        // Held while applying, so that concurrent lanes change the rate once.
        let mut next = self.next_check.lock().expect("throttle lock");
        if now < *next {
            return;
        }
        *next = now + self.check_every;
        self.apply(self.schedule_rate(), true);
    }

    /// Rate in force now, bytes/s; `None` = unlimited.
    pub fn active(&self) -> Option<u64> {
        Some(self.active.load(Relaxed)).filter(|&r| r > 0)
    }

    /// Whether bytes must go through [`Self::consume`] right now. Also the
    /// point where a timetable boundary is noticed: call it per block.
    pub fn is_limited(&self) -> bool {
        self.refresh();
        self.active.load(Relaxed) > 0
    }

    /// Bytes to move per `consume` call: ≤ 64 KiB and ≤ 1/50 s of the rate.
    pub fn slice_len(&self) -> usize {
        match self.active.load(Relaxed) {
            0 => usize::MAX,
            r => slice_for(r) as usize,
        }
    }

    /// Blocks until `n` bytes (≤ [`Self::slice_len`]) may pass.
    pub fn consume(&self, n: usize) {
        let Some(l) = &self.limiter else { return };
        let mut left = n as u64;
        while left > 0 {
            self.refresh();
            if self.active.load(Relaxed) == 0 {
                return;
            }
            let step = left.min(slice_for(self.active.load(Relaxed)));
            match l.try_wait_n(step) {
                Ok(()) => {
                    left -= step;
                    self.pace(l, step);
                }
                Err(TryWaitError::Insufficient(d)) => {
                    std::thread::sleep(d.max(Duration::from_micros(100)))
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
    fn unlimited_costs_nothing() {
        for s in [
            Schedule::Fixed(None),
            Schedule::parse("08:00,off 19:00,0").unwrap(),
        ] {
            let t = Throttle::new(&s);
            assert!(t.limiter.is_none());
            let start = Instant::now();
            for _ in 0..1_000_000 {
                assert!(!t.is_limited());
                t.consume(1 << 20);
            }
            assert!(start.elapsed() < Duration::from_secs(1));
        }
    }

    #[test]
    fn limit_holds_as_lower_bound() {
        // 1 MiB at 4 MiB/s must take at least ~0.25 s (bucket starts empty).
        let t = Throttle::new(&Schedule::Fixed(Some(4 << 20)));
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
        let t = Throttle::new(&Schedule::Fixed(Some(rate)));
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
        assert_eq!(Throttle::new(&Schedule::Fixed(Some(1000))).slice_len(), 20);
        assert_eq!(Throttle::new(&Schedule::Fixed(Some(1))).slice_len(), 1);
    }

    static NOW: AtomicU32 = AtomicU32::new(0);
    fn fake_clock() -> u32 {
        NOW.load(Relaxed)
    }

    #[test]
    fn rate_follows_the_clock_across_boundaries() {
        let s = Schedule::parse("08:00,1M 12:00,off 19:00,4M").unwrap();
        NOW.store(9 * 3600, Relaxed);
        let t = Throttle::with_clock(&s, fake_clock, Duration::ZERO);
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
        let t = Throttle::with_clock(&s, fake_clock2, Duration::from_secs(3600));
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
        let s = Schedule::parse("00:00,1M 00:01,2M").unwrap();
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
    fn timetable_parses_like_rclone() {
        let s = Schedule::parse("08:00,10M 12:00,20MB/s 19:00,off").unwrap();
        let want = vec![
            Slot {
                at: 8 * 3600,
                rate: Some(10 << 20),
            },
            Slot {
                at: 12 * 3600,
                rate: Some(20_000_000),
            },
            Slot {
                at: 19 * 3600,
                rate: None,
            },
        ];
        assert_eq!(s, Schedule::Timetable(want));
        assert_eq!(
            s.rate_at(7 * 3600 + 3599),
            None,
            "before 08:00: yesterday's 19:00"
        );
        assert_eq!(s.rate_at(8 * 3600), Some(10 << 20));
        assert_eq!(s.rate_at(12 * 3600 - 1), Some(10 << 20));
        assert_eq!(s.rate_at(12 * 3600), Some(20_000_000));
        assert_eq!(s.rate_at(DAY_SECS - 1), None);
        assert_eq!(s.to_string(), "08:00,10.0 MiB/s 12:00,19.1 MiB/s 19:00,off");
        assert!(!s.is_off());
        assert_eq!(Schedule::parse(" 7:30,1K ").unwrap().rate_at(0), Some(1024));
        assert_eq!(
            Schedule::parse("20M").unwrap(),
            Schedule::Fixed(Some(20 << 20))
        );
        assert_eq!(Schedule::parse("off").unwrap(), Schedule::Fixed(None));
        assert_eq!(Schedule::parse("0").unwrap().to_string(), "off");
    }

    #[test]
    fn bad_timetables_say_why() {
        let cases = [
            ("08:00,10M 07:00,1M", "does not come after 08:00"),
            ("08:00,10M 08:00,1M", "does not come after 08:00"),
            ("24:00,1M", "is not a time"),
            ("08:60,1M", "is not a time"),
            ("8h,1M", "is not a time"),
            ("08:00", "missing `,RATE`"),
            ("08:00 10M", "missing `,RATE`"),
            ("08:00,fast", "invalid rate `fast`"),
            ("08:00,-1", "invalid rate"),
            (",", "is not a time"),
        ];
        for (input, want) in cases {
            let e = Schedule::parse(input).unwrap_err();
            assert!(e.contains(want), "{input:?}: {e}");
        }
        assert!(Schedule::parse("fast").is_err());
    }
}
