//! Bandwidth limit (SPEC §6): a token bucket over the `ratelimit` crate, the
//! only module that imports it. Reader and writer each own one `Throttle`
//! with the same rate, since the limit applies to each link direction.
//!
//! Strictness comes from small slices: callers consume at most
//! [`Throttle::slice_len`] bytes per call, and the bucket holds at most one
//! slice, so no single read or write can burst past the rate.

use std::time::Duration;

use ratelimit::{Ratelimiter, TryWaitError};

/// Largest slice consumed at once when limited.
const MAX_SLICE: u64 = 64 * 1024;

pub struct Throttle {
    limiter: Option<Ratelimiter>,
}

impl Throttle {
    /// `None` = unlimited: `consume` is then a no-op.
    pub fn new(rate: Option<u64>) -> Self {
        let limiter = rate.map(|r| {
            Ratelimiter::builder(r)
                .max_tokens(slice_for(r))
                .initial_available(0)
                .build()
                .expect("rate > 0 and max_tokens >= 1 are valid")
        });
        Self { limiter }
    }

    pub fn is_limited(&self) -> bool {
        self.limiter.is_some()
    }

    /// Bytes to move per `consume` call: ≤ 64 KiB and ≤ 1/50 s of the rate.
    pub fn slice_len(&self) -> usize {
        self.limiter
            .as_ref()
            .map_or(usize::MAX, |l| slice_for(l.rate()) as usize)
    }

    /// Blocks until `n` bytes (≤ [`Self::slice_len`]) may pass.
    pub fn consume(&self, n: usize) {
        let Some(l) = &self.limiter else { return };
        let mut left = n as u64;
        while left > 0 {
            let step = left.min(l.max_tokens());
            loop {
                match l.try_wait_n(step) {
                    Ok(()) => break,
                    Err(TryWaitError::Insufficient(d)) => {
                        std::thread::sleep(d.max(Duration::from_micros(100)))
                    }
                    // max_tokens shrank under us (rate change): retry with the new size.
                    Err(_) => break,
                }
            }
            left -= step;
        }
    }
}

fn slice_for(rate: u64) -> u64 {
    (rate / 50).clamp(1, MAX_SLICE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn unlimited_costs_nothing() {
        let t = Throttle::new(None);
        assert!(!t.is_limited());
        let start = Instant::now();
        for _ in 0..1_000_000 {
            t.consume(1 << 20);
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn limit_holds_as_lower_bound() {
        // 1 MiB at 4 MiB/s must take at least ~0.25 s (bucket starts empty).
        let t = Throttle::new(Some(4 << 20));
        assert_eq!(t.slice_len(), 64 * 1024);
        let start = Instant::now();
        let mut left = 1usize << 20;
        while left > 0 {
            let n = left.min(t.slice_len());
            t.consume(n);
            left -= n;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(230),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn slices_shrink_for_slow_rates() {
        assert_eq!(Throttle::new(Some(1000)).slice_len(), 20);
        assert_eq!(Throttle::new(Some(1)).slice_len(), 1);
    }
}
