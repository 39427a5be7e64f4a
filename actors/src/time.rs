//! Time as data. Cores never read a clock: the shell passes `now` in, and timers are actions.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since an arbitrary origin chosen by the shell (process start, or 0 in the
/// simulator). Only differences are meaningful.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Time(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);
    pub fn ms(self) -> u64 {
        self.0
    }
    pub fn plus_ms(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }
    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}ms", self.0)
    }
}

/// A wall-clock-free source of `Time` for shells: milliseconds since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct MonoClock {
    start: std::time::Instant,
}

impl MonoClock {
    pub fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
        }
    }
    pub fn now(&self) -> Time {
        Time(self.start.elapsed().as_millis() as u64)
    }
    /// How long from now until `at` (zero if already past): what a shell sleeps for a timer.
    pub fn until(&self, at: Time) -> std::time::Duration {
        std::time::Duration::from_millis(at.since(self.now()))
    }
}

impl Default for MonoClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Capped exponential backoff with jitter drawn from a caller-supplied seed, so cores stay
/// deterministic. `attempt` counts from 0.
pub fn backoff_ms(attempt: u32, base_ms: u64, cap_ms: u64, jitter_seed: u64) -> u64 {
    let exp = base_ms.saturating_mul(1u64 << attempt.min(20));
    let capped = exp.min(cap_ms);
    // Up to +25% jitter, from a cheap hash of the seed (splitmix64 finaliser).
    let mut z = jitter_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    capped + z % (capped / 4 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let a = backoff_ms(0, 100, 5_000, 1);
        let b = backoff_ms(3, 100, 5_000, 1);
        let c = backoff_ms(30, 100, 5_000, 1);
        assert!((100..=125).contains(&a), "{a}");
        assert!((800..=1000).contains(&b), "{b}");
        assert!((5_000..=6_250).contains(&c), "{c}");
    }

    #[test]
    fn time_arithmetic_saturates() {
        assert_eq!(Time(5).since(Time(9)), 0);
        assert_eq!(Time(u64::MAX).plus_ms(1), Time(u64::MAX));
    }
}
