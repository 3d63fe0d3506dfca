//! Finding the highest offered rate forwarded with at most a given loss (RFC 2544-style binary search).
//!
//! The search is a pure state machine: [`RateSearch::next_rate`] proposes a rate, the caller runs a
//! trial and reports the loss with [`RateSearch::record`]. Invariants: the best rate reported has
//! itself passed (loss ≤ the limit) — never an interpolation; the interval [pass, fail) only shrinks;
//! the search stops after `max_steps` trials or when the interval is narrower than `resolution` of the
//! upper bound.

/// Binary search state.
#[derive(Debug, Clone)]
pub struct RateSearch {
    /// The highest rate the generator can offer.
    ceiling: u64,
    /// Highest rate that passed so far.
    passed: Option<u64>,
    /// Lowest rate that failed so far (`None`: nothing failed yet).
    failed: Option<u64>,
    loss_limit: f64,
    resolution: f64,
    steps_left: usize,
}

impl RateSearch {
    /// A search up to `ceiling_pps` (e.g. the generator's own ceiling) for loss ≤ `loss_limit` (0.005 =
    /// 0.5 %), stopping at `resolution` (0.02 = 2 %) or after `max_steps` trials.
    pub fn new(ceiling_pps: u64, loss_limit: f64, resolution: f64, max_steps: usize) -> Self {
        Self {
            ceiling: ceiling_pps,
            passed: None,
            failed: None,
            loss_limit,
            resolution,
            steps_left: max_steps,
        }
    }

    /// The next rate to try, or `None` when done. The first try is the ceiling itself.
    pub fn next_rate(&self) -> Option<u64> {
        if self.steps_left == 0 || self.ceiling == 0 {
            return None;
        }
        let Some(high) = self.failed else {
            // Nothing failed: try the ceiling (once it passed, nothing higher can be offered).
            return if self.passed.is_some() {
                None
            } else {
                Some(self.ceiling)
            };
        };
        let low = self.passed.unwrap_or(0);
        if high <= low + 1 || (high - low) as f64 <= self.resolution * high as f64 {
            return None;
        }
        Some(low + (high - low) / 2)
    }

    /// Records the outcome of a trial at `rate`: `loss` is the fraction lost (0..=1).
    pub fn record(&mut self, rate: u64, loss: f64) {
        self.steps_left = self.steps_left.saturating_sub(1);
        if loss <= self.loss_limit {
            self.passed = Some(self.passed.map_or(rate, |p| p.max(rate)));
        } else {
            self.failed = Some(self.failed.map_or(rate, |f| f.min(rate)));
        }
    }

    /// The highest rate that passed, if any did.
    pub fn best(&self) -> Option<u64> {
        self.passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a device that forwards everything up to `capacity` and loses the excess.
    fn search(ceiling: u64, capacity: u64, steps: usize) -> (Option<u64>, usize) {
        let mut s = RateSearch::new(ceiling, 0.005, 0.01, steps);
        let mut trials = 0;
        while let Some(rate) = s.next_rate() {
            trials += 1;
            let loss = rate.saturating_sub(capacity) as f64 / rate as f64;
            s.record(rate, loss);
        }
        (s.best(), trials)
    }

    #[test]
    fn a_device_faster_than_the_generator_passes_at_the_ceiling_in_one_trial() {
        assert_eq!(search(1_000_000, 5_000_000, 10), (Some(1_000_000), 1));
    }

    #[test]
    fn converges_to_within_resolution_below_capacity() {
        let (best, trials) = search(1_000_000, 600_000, 20);
        let best = best.unwrap();
        // Up to 0.5 % loss is allowed, so up to capacity / 0.995 passes.
        assert!((590_000..=603_015).contains(&best), "{best}");
        assert!(trials <= 20);
    }

    #[test]
    fn never_reports_a_rate_that_did_not_pass() {
        let (best, _) = search(1_000_000, 0, 8);
        assert_eq!(best, None);
        let (best, trials) = search(1_000_000, 300_000, 3);
        assert_eq!(trials, 3);
        // 1 M fails, 500 k fails, 250 k passes.
        assert_eq!(best, Some(250_000));
    }
}
