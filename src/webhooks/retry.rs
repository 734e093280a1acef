//! When a failed delivery is tried again: exponential backoff with jitter, for a bounded time.
//!
//! Attempt n (1 = the first retry) waits `first × 2^(n-1)`, capped at `longest`, then scaled by
//! a random factor in [1 − jitter, 1 + jitter] so that the endpoints a fault failed together
//! do not all come back at the same instant. A delivery first tried more than `give_up_after`
//! ago is not retried again: its endpoint is disabled, with the reason shown.

use crate::domain::time::Timestamp;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub longest: Duration,
    pub give_up_after: Duration,
    /// 0.0 to 1.0.
    pub jitter: f64,
}

impl RetryPolicy {
    /// The production schedule: 5 s, 10 s, 20 s, … up to 1 h between attempts, for 24 h: about
    /// 33 attempts, the last ones an hour apart.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        first: Duration::from_secs(5),
        longest: Duration::from_secs(3600),
        give_up_after: Duration::from_secs(24 * 3600),
        jitter: 0.2,
    };

    /// The same shape scaled down so that `first` is the given delay (the tests' speed-up,
    /// `--webhook-retry-first-ms`): the cap and the give-up time shrink by the same factor.
    pub fn scaled_to(first: Duration) -> RetryPolicy {
        let factor = first.as_secs_f64() / Self::DEFAULT.first.as_secs_f64();
        RetryPolicy {
            first,
            longest: Self::DEFAULT.longest.mul_f64(factor),
            give_up_after: Self::DEFAULT.give_up_after.mul_f64(factor),
            jitter: Self::DEFAULT.jitter,
        }
    }

    /// The wait before retry `attempt` (1-based), for a `unit` drawn uniformly from [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let base = self
            .first
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.longest);
        let scale = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(scale)
    }

    /// Whether a delivery first tried `since_first` ago is past retrying.
    pub fn gives_up(&self, since_first: Duration) -> bool {
        since_first >= self.give_up_after
    }

    /// After the failed attempt number `attempts` (1-based) of a delivery first tried at
    /// `first`: when to try again, or `None` when its time is up (the endpoint is then
    /// disabled). `unit` is the jitter's draw, in [0, 1).
    pub fn next_attempt(
        &self,
        first: Timestamp,
        attempts: u32,
        now: Timestamp,
        unit: f64,
    ) -> Option<Timestamp> {
        let since_first = Duration::from_secs(u64::try_from(now.seconds_since(first)).unwrap_or(0));
        let at = now.plus(self.delay(attempts, unit));
        let deadline = first.plus(self.give_up_after);
        (!self.gives_up(since_first) && at.seconds_since(deadline) <= 0).then_some(at)
    }
}

/// A number in [0, 1) from the operating system's random source (0.5 if it fails: no jitter
/// is better than no retry).
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_default_schedule_doubles_to_an_hour_and_gives_up_after_a_day() {
        let p = RetryPolicy::DEFAULT;
        let secs = |n| p.delay(n, 0.5).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [5, 10, 20, 40]);
        assert_eq!(secs(11), 3600);
        assert_eq!(secs(1_000), 3600);
        assert!(!p.gives_up(Duration::from_secs(24 * 3600 - 1)));
        assert!(p.gives_up(Duration::from_secs(24 * 3600)));
        let attempts_in_a_day = (1..)
            .scan(Duration::ZERO, |total, n| {
                *total += p.delay(n, 0.5);
                Some(*total)
            })
            .take_while(|total| !p.gives_up(*total))
            .count();
        assert!((25..40).contains(&attempts_in_a_day), "{attempts_in_a_day}");
    }

    #[test]
    fn a_scaled_policy_keeps_the_shape() {
        let p = RetryPolicy::scaled_to(Duration::from_millis(50));
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(50));
        assert_eq!(p.delay(2, 0.5), Duration::from_millis(100));
        assert_eq!(p.longest, Duration::from_secs(36));
        assert_eq!(p.give_up_after, Duration::from_secs(864));
    }

    #[test]
    fn retries_stop_at_the_give_up_time() {
        let p = RetryPolicy::DEFAULT;
        let first = Timestamp::now();
        let next = p.next_attempt(first, 1, first, 0.5).expect("a retry");
        assert_eq!(next.seconds_since(first), 5);
        let late = first.plus(Duration::from_secs(24 * 3600 - 60));
        assert!(
            p.next_attempt(first, 30, late, 0.5).is_none(),
            "an hour's wait would pass the day"
        );
        assert!(p
            .next_attempt(first, 30, first.plus(Duration::from_secs(24 * 3600)), 0.0)
            .is_none());
        let early = first.plus(Duration::from_secs(3600));
        assert!(p.next_attempt(first, 10, early, 0.5).is_some());
    }

    proptest! {
        #[test]
        fn jitter_stays_within_its_bounds(attempt in 1u32..100, unit in 0.0f64..1.0) {
            let p = RetryPolicy::DEFAULT;
            let plain = p.delay(attempt, 0.5).as_secs_f64();
            let jittered = p.delay(attempt, unit).as_secs_f64();
            prop_assert!(jittered >= plain * 0.8 - 1e-6 && jittered <= plain * 1.2 + 1e-6);
        }

        #[test]
        fn random_units_are_in_range(_n in 0..50u8) {
            let u = random_unit();
            prop_assert!((0.0..1.0).contains(&u));
        }
    }
}
