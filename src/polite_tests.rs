//! Table tests of the controller on a simulated link: one bottleneck with a
//! floor delay, a queue that fills when more is sent than the link leaves
//! free, and a competing bulk flow that keeps its own queue full.

use super::*;
use proptest::prelude::*;

const MS: Duration = Duration::from_millis(1);
/// The netlab link: 400 Mbit/s, 50 MB/s per direction, 10 ms of queue.
const LINK: f64 = 50e6;
const QUEUE_MAX: Duration = Duration::from_millis(10);
const STEP: Duration = Duration::from_millis(10);

/// What the link does at a time.
#[derive(Clone, Copy)]
struct Link {
    floor: Duration,
    /// A competing TCP flow: keeps the queue full (its loss point).
    competitor: bool,
    /// The queue the competitor keeps standing while it is there (a TCP
    /// flow's sawtooth at its loss point: up to the whole queue).
    comp_queue: Duration,
    /// Extra delay on every sample, a fraction of `jitter` from the PRNG.
    jitter: Duration,
}

const QUIET: Link = Link {
    floor: Duration::from_millis(1),
    competitor: false,
    comp_queue: QUEUE_MAX,
    jitter: Duration::ZERO,
};

struct Sim {
    ctl: Controller,
    now: Duration,
    /// Bytes standing in the bottleneck's queue (ours).
    queued: f64,
    rng: u64,
    /// (time, rate) after each step.
    trace: Vec<(Duration, u64)>,
}

impl Sim {
    fn new(cfg: Config) -> Self {
        Self {
            ctl: Controller::new(cfg, Duration::ZERO),
            now: Duration::ZERO,
            queued: 0.0,
            rng: 0x9E37_79B9_7F4A_7C15,
            trace: Vec::new(),
        }
    }

    fn noise(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Runs `secs` seconds on `link`: each 10 ms step sends at the
    /// controller's rate and reports the delay a call then sees.
    fn run(&mut self, secs: f64, link: impl Fn(Duration) -> Link) {
        let end = self.now + Duration::from_secs_f64(secs);
        while self.now < end {
            let l = link(self.now);
            let rate = self.ctl.rate() as f64;
            let free = if l.competitor { 0.0 } else { LINK };
            let dt = STEP.as_secs_f64();
            self.queued =
                (self.queued + (rate - free) * dt).clamp(0.0, LINK * QUEUE_MAX.as_secs_f64());
            let queue = if l.competitor {
                l.comp_queue
            } else {
                Duration::from_secs_f64(self.queued / LINK)
            };
            let jitter = l.jitter.mul_f64(self.noise());
            // A 64 KiB call: the floor, the queue, its own time on the wire.
            let delay = l.floor + queue + jitter + Duration::from_secs_f64(65536.0 / LINK);
            let sent = (rate.min(if l.competitor { LINK * 0.05 } else { LINK }) * dt) as u64;
            self.now += STEP;
            self.ctl.sample(self.now, delay, sent);
            self.trace.push((self.now, self.ctl.rate()));
        }
    }

    /// The mean rate from `from` s to `to` s, bytes/s.
    fn mean(&self, from: f64, to: f64) -> f64 {
        let r: Vec<f64> = self
            .trace
            .iter()
            .filter(|(t, _)| (from..to).contains(&t.as_secs_f64()))
            .map(|&(_, r)| r as f64)
            .collect();
        r.iter().sum::<f64>() / r.len() as f64
    }

    /// The first time at or after `from` s where `ok(rate)` holds.
    fn first(&self, from: f64, ok: impl Fn(f64) -> bool) -> Option<f64> {
        self.trace
            .iter()
            .find(|(t, r)| t.as_secs_f64() >= from && ok(*r as f64))
            .map(|(t, _)| t.as_secs_f64() - from)
    }

    fn max_rate(&self) -> u64 {
        self.trace.iter().map(|t| t.1).max().unwrap_or(0)
    }
}

fn cfg(ceiling: Option<u64>) -> Config {
    Config::new(DEFAULT_TARGET, ceiling)
}

#[test]
fn steady_floor_climbs_to_the_ceiling_and_stays() {
    let ceiling = 30_000_000;
    let mut s = Sim::new(cfg(Some(ceiling)));
    s.run(20.0, |_| QUIET);
    let t = s
        .first(0.0, |r| r >= ceiling as f64)
        .expect("reaches the ceiling");
    assert!(t <= 6.0, "ceiling after {t} s");
    assert_eq!(s.max_rate(), ceiling);
    assert_eq!(s.ctl.rate(), ceiling);
    assert_eq!(
        s.ctl.base(),
        Some(MS + Duration::from_secs_f64(65536.0 / LINK))
    );
}

#[test]
fn a_rising_queue_holds_the_rate_near_the_link() {
    // No ceiling: the link itself is the limit; the queue it builds stops the rate.
    let mut s = Sim::new(cfg(None));
    s.run(60.0, |_| QUIET);
    let mean = s.mean(20.0, 60.0);
    assert!(mean >= 0.85 * LINK, "mean {mean}");
    assert!(mean <= 1.1 * LINK, "mean {mean}");
    // The queue it leaves stays near the target, well below the 10 ms.
    let q = s.ctl.queuing().unwrap();
    assert!(q <= 3 * DEFAULT_TARGET, "{q:?}");
}

#[test]
fn a_competitor_arriving_and_leaving() {
    let mut s = Sim::new(cfg(None));
    let with = |t: Duration| Link {
        competitor: (30.0..60.0).contains(&t.as_secs_f64()),
        ..QUIET
    };
    s.run(90.0, with);
    // Yields: down to a twentieth of the link within 2 s, and stays there.
    let yielded = s.first(30.0, |r| r <= LINK / 20.0).expect("yields");
    assert!(yielded <= 2.0, "yielded after {yielded} s");
    assert!(s.mean(33.0, 60.0) <= LINK / 20.0, "{}", s.mean(33.0, 60.0));
    // Takes the link back: >= 85 % within 10 s.
    let back = s.first(60.0, |r| r >= 0.85 * LINK).expect("takes back");
    assert!(back <= 10.0, "back after {back} s");
}

/// netlab's `tx` case: the competitor's queue, as jobrun's calls see it,
/// stands only 1.5 times the target above the floor (3 ms; its median,
/// in the other direction from the calls' data). A cut that only scales
/// with how far above the target the queue is took 9 s to yield (0.94 a
/// cut); a queue that stays however much the rate is cut is someone
/// else's: each cut in a row goes deeper.
#[test]
fn a_competitor_just_above_the_target_is_yielded_to_within_2_s() {
    let mut s = Sim::new(cfg(None));
    let with = |t: Duration| Link {
        competitor: (30.0..60.0).contains(&t.as_secs_f64()),
        comp_queue: 3 * MS,
        ..QUIET
    };
    s.run(90.0, with);
    let yielded = s.first(30.0, |r| r <= LINK / 20.0).expect("yields");
    assert!(yielded <= 2.0, "yielded after {yielded} s");
    assert!(s.mean(33.0, 60.0) <= LINK / 20.0, "{}", s.mean(33.0, 60.0));
    let back = s.first(60.0, |r| r >= 0.85 * LINK).expect("takes back");
    assert!(back <= 10.0, "back after {back} s");
}

/// netlab's `tx` case as measured: the competitor's slow start fills the
/// whole queue for a moment (a first cut at 11 ms of queue), then its queue
/// stands above the target, shrinking slowly (a TCP sawtooth between two
/// losses: 3.5 ms down to 2.6 ms). Cuts in a row are judged by the queue
/// staying above the target, not by its length against the cut before:
/// each shorter queue broke the row and the cuts went on at 5-9 % each.
#[test]
fn a_competitor_arriving_with_a_full_queue_then_standing_just_above_is_yielded_to() {
    let mut c = Controller::new(cfg(None), Duration::ZERO);
    let mut now = Duration::ZERO;
    let mut feed = |c: &mut Controller, n: u32, delay: &dyn Fn(u32) -> Duration| {
        for i in 0..n {
            now += STEP;
            c.sample(now, delay(i), (LINK * 0.01) as u64);
        }
    };
    feed(&mut c, 2000, &|_| 2 * MS);
    let before = c.rate() as f64;
    assert!(before >= LINK, "{before}");
    feed(&mut c, 15, &|_| 13 * MS);
    assert!(
        (c.rate() as f64) <= before * 0.6,
        "one deep cut: {}",
        c.rate()
    );
    feed(&mut c, 185, &|i| {
        2 * MS + Duration::from_micros(3500 - 5 * u64::from(i))
    });
    let after = c.rate() as f64;
    assert!(after <= before / 10.0, "{after} of {before} after 2 s");
}

/// Alone, its own queue drains once the rate is below the link: a first
/// cut too shallow for that is followed at once (the queue still grows),
/// and the rate holds near the link, not a sawtooth down to 60 % of it
/// (a queue that grew for the 200 ms between two cuts, then one deep cut).
#[test]
fn its_own_queue_costs_one_shallow_cut_at_a_time() {
    let mut s = Sim::new(cfg(None));
    s.run(60.0, |_| QUIET);
    let lowest = s
        .trace
        .iter()
        .filter(|(t, _)| t.as_secs_f64() >= 20.0)
        .map(|t| t.1)
        .min()
        .unwrap() as f64;
    assert!(lowest >= 0.8 * LINK, "lowest {lowest}");
}

#[test]
fn a_noisy_floor_is_not_a_queue() {
    // Every call up to 3 ms late at random (a busy machine, a server's hiccups).
    let ceiling = 40_000_000;
    let mut s = Sim::new(cfg(Some(ceiling)));
    s.run(60.0, |_| Link {
        jitter: 3 * MS,
        ..QUIET
    });
    let mean = s.mean(10.0, 60.0);
    assert!(mean >= 0.85 * ceiling as f64, "mean {mean}");
}

#[test]
fn a_raised_floor_ages_out_of_the_base_history() {
    // Route change at 2 min: the floor goes from 1 ms to 20 ms. The
    // controller takes it for a queue until the old minima have aged out.
    let ceiling = 30_000_000;
    let mut s = Sim::new(cfg(Some(ceiling)));
    let change = 120.0;
    let link = move |t: Duration| Link {
        floor: if t.as_secs_f64() < change {
            MS
        } else {
            20 * MS
        },
        ..QUIET
    };
    s.run(change + 60.0 * (BASE_MINUTES as f64 + 2.0), link);
    assert!(s.first(change, |r| r <= MIN_RATE as f64).unwrap() <= 2.0);
    let back = 5.0
        + s.first(change + 5.0, |r| r >= ceiling as f64)
            .expect("recovers");
    let limit = 60.0 * (BASE_MINUTES as f64 + 1.0) + 10.0;
    assert!(back <= limit, "back after {back} s");
    assert!(
        back >= 60.0 * (BASE_MINUTES as f64 - 1.0),
        "too early: {back} s"
    );
    assert_eq!(
        s.ctl.base(),
        Some(20 * MS + Duration::from_secs_f64(65536.0 / LINK))
    );
}

#[test]
fn a_clock_jump_neither_floods_nor_stalls() {
    let ceiling = 30_000_000;
    let mut s = Sim::new(cfg(Some(ceiling)));
    s.run(2.0, |_| QUIET);
    let before = s.ctl.rate();
    assert!(before < ceiling);
    // Forward an hour (a suspended machine): one second of growth at most,
    // and the base history starts over.
    s.now += Duration::from_secs(3600);
    s.ctl.sample(s.now, 5 * MS, 65536);
    let grown = s.ctl.rate() - before;
    assert!(grown <= s.ctl.config().ramp, "grew {grown}");
    assert_eq!(s.ctl.base(), Some(5 * MS));
    // Backwards an hour: counted as no time; no panic, no step in rate.
    let r = s.ctl.rate();
    s.now -= Duration::from_secs(3600);
    s.ctl.sample(s.now, 5 * MS, 65536);
    assert_eq!(s.ctl.rate(), r);
    // And it goes on working from there.
    s.run(10.0, |_| QUIET);
    assert_eq!(s.ctl.rate(), ceiling);
}

#[test]
fn an_unused_rate_does_not_grow() {
    // The copy moves 2 MB/s (small files): the rate stays near twice that.
    let mut c = Controller::new(cfg(None), Duration::ZERO);
    for i in 1..=3000u64 {
        c.sample(STEP * i as u32, 2 * MS, 20_000);
    }
    assert!(c.rate() <= 4_100_000, "{}", c.rate());
    assert!(c.rate() >= 3_900_000, "{}", c.rate());
}

#[test]
fn a_lower_ceiling_than_the_floor_rate_is_kept() {
    let mut c = Controller::new(cfg(Some(1000)), Duration::ZERO);
    assert_eq!(c.rate(), 1000);
    c.sample(Duration::from_secs(1), Duration::from_secs(1), 1);
    c.sample(Duration::from_secs(2), Duration::from_secs(9), 1);
    assert_eq!(c.rate(), 1000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    /// Whatever the delays and the clock do, the rate stays within
    /// [min, ceiling]: the throttle pacing at it never exceeds the ceiling.
    #[test]
    fn the_rate_never_leaves_its_bounds(
        ceiling in proptest::option::of(1u64..1u64 << 40),
        target_us in 1u64..100_000,
        steps in proptest::collection::vec((0i64..5_000_000, 0u64..1_000_000, 0u64..1 << 20), 1..200),
    ) {
        let cfg = Config::new(Duration::from_micros(target_us), ceiling);
        let mut now = Duration::from_secs(1 << 20);
        let mut c = Controller::new(cfg, now);
        let top = ceiling.unwrap_or(crate::units::MAX_RATE);
        let floor = ceiling.map_or(MIN_RATE, |c| c.min(MIN_RATE));
        for (dt_us, delay_us, bytes) in steps {
            // Mostly forward, sometimes back (dt < 1 s back a tenth of the time).
            let dt = dt_us - 500_000;
            now = if dt >= 0 {
                now + Duration::from_micros(dt as u64)
            } else {
                now.saturating_sub(Duration::from_micros((-dt) as u64))
            };
            c.sample(now, Duration::from_micros(delay_us), bytes);
            prop_assert!(c.rate() <= top, "{} > {top}", c.rate());
            prop_assert!(c.rate() >= floor, "{} < {floor}", c.rate());
        }
    }
}
