//! A per-worker token bucket that bounds how often the datapath originates a packet of one kind (the
//! ICMP net unreachable it answers new flows with while no uplink can carry them, the ICMP
//! administratively prohibited it answers new flows with that got no external port, ...).
//!
//! Invariants:
//! - over any interval of `t` ms a bucket grants at most `burst + per_second × t / 1000` tokens; a bucket
//!   never used before starts full;
//! - only the owning worker calls [`TokenBucket::take`]: relaxed load + store on two atomics, no
//!   read-modify-write, no lock, no allocation, no clock — `now` is the batch's time argument;
//! - `per_second == 0` or `burst == 0` grants nothing (the packet kind is switched off);
//! - a smaller limit (after a reload) applies at the next call: the stored tokens are capped by it.

use std::sync::atomic::{AtomicU64, Ordering};

/// One token, in the bucket's unit (a thousandth of a token, so a rate in tokens per second refills
/// exactly `per_second` units per millisecond).
const TOKEN: u64 = 1000;

/// How many tokens a bucket grants: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: u32,
    /// The most tokens the bucket holds (what an idle bucket grants at once).
    pub burst: u32,
}

impl RateLimit {
    /// Grants nothing.
    pub const OFF: RateLimit = RateLimit {
        per_second: 0,
        burst: 0,
    };
}

/// The state of one bucket, written by its owning worker only.
#[derive(Debug, Default)]
pub struct TokenBucket {
    /// Tokens held, in thousandths.
    milli_tokens: AtomicU64,
    /// `1 + ` the time (ms) of the last call; 0 before the first (the bucket then starts full).
    stamp: AtomicU64,
}

impl TokenBucket {
    /// Takes one token at `now_ms` under `limit`; `true` when one was available.
    #[inline]
    pub fn take(&self, now_ms: u64, limit: RateLimit) -> bool {
        let capacity = u64::from(limit.burst) * TOKEN;
        if capacity == 0 || limit.per_second == 0 {
            return false;
        }
        let stamp = self.stamp.load(Ordering::Relaxed);
        let held = if stamp == 0 {
            capacity
        } else {
            let elapsed = now_ms.saturating_sub(stamp - 1);
            self.milli_tokens
                .load(Ordering::Relaxed)
                .saturating_add(elapsed.saturating_mul(u64::from(limit.per_second)))
                .min(capacity)
        };
        // A clock that went backwards (never with the monotonic clock) only refills less.
        self.stamp
            .store(now_ms.max(stamp.saturating_sub(1)) + 1, Ordering::Relaxed);
        let granted = held >= TOKEN;
        self.milli_tokens
            .store(if granted { held - TOKEN } else { held }, Ordering::Relaxed);
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 10,
        burst: 5,
    };

    fn granted(bucket: &TokenBucket, now_ms: u64, tries: usize, limit: RateLimit) -> usize {
        (0..tries).filter(|_| bucket.take(now_ms, limit)).count()
    }

    #[test]
    fn starts_full_grants_the_burst_then_refills_at_the_rate() {
        let b = TokenBucket::default();
        assert_eq!(granted(&b, 5, 100, LIMIT), 5, "the burst, at once");
        assert_eq!(granted(&b, 5, 100, LIMIT), 0, "empty");
        // 10 per second: one token per 100 ms, not before.
        assert_eq!(granted(&b, 104, 10, LIMIT), 0);
        assert_eq!(granted(&b, 105, 10, LIMIT), 1);
        // Partial refills add up: 50 ms + 50 ms is one token.
        assert_eq!(granted(&b, 155, 10, LIMIT), 0);
        assert_eq!(granted(&b, 205, 10, LIMIT), 1);
        // A long idle time refills to the burst, never beyond.
        assert_eq!(granted(&b, 60_000, 100, LIMIT), 5);
    }

    #[test]
    fn grants_at_most_burst_plus_rate_times_time_under_flood() {
        let b = TokenBucket::default();
        let mut total = 0;
        // A frame every millisecond for 3 s.
        for now in 1_000..4_000 {
            total += granted(&b, now, 1, LIMIT);
        }
        // 5 at once, then one per 100 ms over 2.999 s.
        assert_eq!(total, 5 + 29);
    }

    #[test]
    fn zero_rate_or_burst_grants_nothing_and_a_lower_limit_caps_at_once() {
        let b = TokenBucket::default();
        assert_eq!(granted(&b, 1, 10, RateLimit::OFF), 0);
        assert_eq!(
            granted(
                &b,
                1,
                10,
                RateLimit {
                    per_second: 10,
                    burst: 0
                }
            ),
            0
        );
        let b = TokenBucket::default();
        assert_eq!(granted(&b, 0, 1, LIMIT), 1, "4 left");
        let smaller = RateLimit {
            per_second: 10,
            burst: 2,
        };
        assert_eq!(granted(&b, 0, 10, smaller), 2, "capped to the new burst");
    }
}
