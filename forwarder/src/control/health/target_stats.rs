//! Per probe target of one uplink: loss, mean RTT and jitter over the health window, and why its
//! last lost probe was lost. The uplink's verdict ([`super::state`]) sums the targets; these
//! figures say which target failed and how.
//!
//! Invariants: a target keeps at most `window` outcomes (the latest); jitter is the mean absolute
//! difference of consecutive answered RTTs in the window (RFC 3550 §6.4.1's `|D|`, unsmoothed), so
//! one answer gives no jitter; a target that a round no longer probes (removed by a reload) is
//! forgotten at that round.

use std::collections::VecDeque;

/// How one probe of one target ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOutcome {
    /// The target's label ([`crate::config::ProbeTarget::label`]).
    pub label: String,
    /// The RTT in µs, or why the probe counts as lost.
    pub outcome: Result<u64, String>,
}

/// One target's window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetWindow {
    /// The target's label.
    pub label: String,
    /// The latest outcomes: RTT in µs, `None` when lost.
    rtts: VecDeque<Option<u64>>,
    /// Why the latest lost probe was lost.
    pub last_failure: Option<String>,
}

impl TargetWindow {
    /// Lost probes over the window, in percent (0 with none yet).
    pub fn loss_percent(&self) -> f64 {
        let lost = self.rtts.iter().filter(|r| r.is_none()).count();
        if self.rtts.is_empty() {
            0.0
        } else {
            lost as f64 * 100.0 / self.rtts.len() as f64
        }
    }

    /// Mean RTT of the answered probes, in ms (`None` with no answer).
    pub fn rtt_ms(&self) -> Option<f64> {
        let answered: Vec<u64> = self.rtts.iter().flatten().copied().collect();
        (!answered.is_empty())
            .then(|| answered.iter().sum::<u64>() as f64 / answered.len() as f64 / 1000.0)
    }

    /// Mean absolute difference of consecutive answered RTTs, in ms (`None` below two answers).
    pub fn jitter_ms(&self) -> Option<f64> {
        let answered: Vec<u64> = self.rtts.iter().flatten().copied().collect();
        let steps: Vec<u64> = answered.windows(2).map(|w| w[0].abs_diff(w[1])).collect();
        (!steps.is_empty()).then(|| steps.iter().sum::<u64>() as f64 / steps.len() as f64 / 1000.0)
    }
}

/// Every probed target of one uplink, in probe order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetStats {
    targets: Vec<TargetWindow>,
}

impl TargetStats {
    /// Records one round's outcomes, keeping at most `window` per target.
    pub fn record(&mut self, outcomes: &[TargetOutcome], window: usize) {
        let mut previous = std::mem::take(&mut self.targets);
        for outcome in outcomes {
            let mut target = match previous.iter().position(|t| t.label == outcome.label) {
                Some(at) => previous.swap_remove(at),
                None => TargetWindow {
                    label: outcome.label.clone(),
                    ..TargetWindow::default()
                },
            };
            match &outcome.outcome {
                Ok(rtt_us) => target.rtts.push_back(Some(*rtt_us)),
                Err(failure) => {
                    target.rtts.push_back(None);
                    target.last_failure = Some(failure.clone());
                }
            }
            while target.rtts.len() > window.max(1) {
                target.rtts.pop_front();
            }
            self.targets.push(target);
        }
    }

    /// Forgets every target (probing turned off, or the carrier came back).
    pub fn clear(&mut self) {
        self.targets.clear();
    }

    /// The targets, in probe order.
    pub fn targets(&self) -> &[TargetWindow] {
        &self.targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(label: &str, rtt_ms: Option<u64>) -> TargetOutcome {
        TargetOutcome {
            label: label.into(),
            outcome: rtt_ms
                .map(|ms| ms * 1000)
                .ok_or_else(|| "DNS answered SERVFAIL".into()),
        }
    }

    #[test]
    fn loss_rtt_and_jitter_are_per_target_over_the_window() {
        let mut stats = TargetStats::default();
        for (a, b) in [
            (Some(10), None),
            (Some(14), Some(5)),
            (Some(12), None),
            (Some(20), None),
        ] {
            stats.record(&[outcome("a", a), outcome("b", b)], 3);
        }
        let [a, b] = stats.targets() else {
            panic!("two targets")
        };
        assert_eq!(a.label, "a");
        assert_eq!(a.loss_percent(), 0.0);
        // Window 3: 14, 12, 20 → mean 15.33, steps 2 and 8 → jitter 5.
        assert!((a.rtt_ms().unwrap() - 15.333).abs() < 0.01);
        assert_eq!(a.jitter_ms(), Some(5.0));
        assert!(a.last_failure.is_none());
        assert!((b.loss_percent() - 66.666).abs() < 0.01);
        assert_eq!(b.rtt_ms(), Some(5.0));
        assert_eq!(b.jitter_ms(), None, "one answer has no jitter");
        assert_eq!(b.last_failure.as_deref(), Some("DNS answered SERVFAIL"));
    }

    #[test]
    fn a_target_no_longer_probed_is_forgotten() {
        let mut stats = TargetStats::default();
        stats.record(&[outcome("a", Some(1)), outcome("b", Some(1))], 5);
        stats.record(&[outcome("b", Some(3))], 5);
        let labels: Vec<&str> = stats.targets().iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["b"]);
        assert_eq!(stats.targets()[0].jitter_ms(), Some(2.0));
    }
}
