//! The passive health signal: per uplink, new TCP flows whose SYN got a SYN-ACK versus those that got
//! none within `passive_answer_window_ms`, from the datapath's per-worker counters summed by the control
//! plane at each control tick (whenever it reads the carriers: at least every second).
//!
//! The datapath counts two things per uplink and keeps no timer: handshakes *started* (a new outbound TCP
//! flow opened by a SYN) and handshakes *answered* (its first SYN-ACK came back). This tracker samples the
//! two sums over time and derives the **unanswered streak**: the flows started after the last answer was
//! seen and at least one window ago. None of them got a SYN-ACK (no answer at all arrived since), so each
//! is a flow that went unanswered for a whole window, in a row. An answer ends the streak.
//!
//! Invariants: the streak only counts flows older than the window (a slow but working path is not
//! blamed before its SYN-ACK could arrive); flows started before the tracker's first sample or before
//! [`PassiveSignal::restart`] are never counted; samples older than the window are dropped, so memory is
//! bounded by `window / tick`. Sampling more rarely only delays the verdict by up to one tick.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::datapath::DatapathCounters;

/// One uplink's handshake counters, summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeCounts {
    /// New outbound TCP flows opened by a SYN.
    pub started: u64,
    /// Of those, the ones whose SYN-ACK came back.
    pub answered: u64,
}

impl HandshakeCounts {
    /// Sums uplink `slot`'s counters over every worker.
    pub fn sum(workers: &[Arc<DatapathCounters>], slot: usize) -> Self {
        workers
            .iter()
            .filter_map(|w| w.uplinks.get(slot))
            .fold(Self::default(), |sum, c| Self {
                started: sum.started + c.tcp_handshakes_started.get(),
                answered: sum.answered + c.tcp_handshakes_answered.get(),
            })
    }
}

/// The passive signal of one uplink.
#[derive(Debug, Clone, Default)]
pub struct PassiveSignal {
    /// (time ms, handshakes started): the newest sample at or before `now - window` first, then newer ones.
    samples: VecDeque<(u64, u64)>,
    /// The counts of the last sample (`None` before the first).
    latest: Option<HandshakeCounts>,
    /// Handshakes started when the streak last began (the last answer, restart or first sample).
    started_at_streak_start: u64,
    /// The current unanswered streak.
    streak: u64,
}

impl PassiveSignal {
    /// Takes the sample `counts` at `now_ms` and returns the unanswered streak.
    pub fn observe(&mut self, now_ms: u64, counts: HandshakeCounts, window_ms: u32) -> u64 {
        match self.latest {
            None => self.started_at_streak_start = counts.started,
            Some(latest) if counts.answered > latest.answered => {
                self.started_at_streak_start = counts.started;
            }
            Some(_) => {}
        }
        self.latest = Some(counts);
        self.samples.push_back((now_ms, counts.started));
        let matured_before = now_ms.saturating_sub(u64::from(window_ms));
        while self.samples.len() >= 2 && self.samples[1].0 <= matured_before {
            self.samples.pop_front();
        }
        let matured = self
            .samples
            .front()
            .filter(|(at, _)| *at <= matured_before)
            .map_or(0, |(_, started)| *started);
        self.streak = matured.saturating_sub(self.started_at_streak_start);
        self.streak
    }

    /// Forgets the current streak: only flows started from now on are judged (after the signal took the
    /// uplink down, so it takes it down again only on fresh evidence).
    pub fn restart(&mut self) {
        if let Some(latest) = self.latest {
            self.started_at_streak_start = latest.started;
        }
        self.streak = 0;
    }

    /// New TCP flows in a row that got no SYN-ACK within the window (since the last answer).
    pub fn unanswered_in_a_row(&self) -> u64 {
        self.streak
    }

    /// The handshake counts of the last sample.
    pub fn counts(&self) -> HandshakeCounts {
        self.latest.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u32 = 1000;

    fn counts(started: u64, answered: u64) -> HandshakeCounts {
        HandshakeCounts { started, answered }
    }

    #[test]
    fn unanswered_flows_count_only_once_their_window_has_passed() {
        let mut p = PassiveSignal::default();
        assert_eq!(p.observe(0, counts(0, 0), WINDOW), 0);
        // Five SYNs at 100 ms, none answered: not judged before 1100 ms.
        assert_eq!(p.observe(100, counts(5, 0), WINDOW), 0);
        assert_eq!(p.observe(1000, counts(5, 0), WINDOW), 0);
        assert_eq!(p.observe(1100, counts(5, 0), WINDOW), 5);
        // Three more at 1200 ms join the streak at 2200 ms.
        assert_eq!(p.observe(1200, counts(8, 0), WINDOW), 5);
        assert_eq!(p.observe(2200, counts(8, 0), WINDOW), 8);
        assert_eq!(p.unanswered_in_a_row(), 8);
    }

    #[test]
    fn an_answer_ends_the_streak_and_slow_answers_within_the_window_never_count() {
        let mut p = PassiveSignal::default();
        p.observe(0, counts(0, 0), WINDOW);
        for t in 1..=30u64 {
            // One SYN per 100 ms, each answered 500 ms later.
            let started = t;
            let answered = t.saturating_sub(5);
            assert_eq!(
                p.observe(t * 100, counts(started, answered), WINDOW),
                0,
                "at {t}"
            );
        }
        // Answers stop: the streak grows by the flows started after the last answer, a window late.
        let mut p = PassiveSignal::default();
        p.observe(0, counts(10, 10), WINDOW);
        p.observe(100, counts(12, 10), WINDOW);
        assert_eq!(p.observe(1100, counts(14, 10), WINDOW), 2);
        assert_eq!(p.observe(1200, counts(14, 11), WINDOW), 0, "an answer");
    }

    #[test]
    fn flows_before_the_first_sample_or_a_restart_are_not_judged_and_memory_is_bounded() {
        let mut p = PassiveSignal::default();
        p.observe(5_000, counts(100, 0), WINDOW);
        assert_eq!(p.observe(7_000, counts(100, 0), WINDOW), 0);
        p.observe(7_100, counts(104, 0), WINDOW);
        assert_eq!(p.observe(8_100, counts(104, 0), WINDOW), 4);
        p.restart();
        assert_eq!(p.unanswered_in_a_row(), 0);
        assert_eq!(p.observe(9_100, counts(104, 0), WINDOW), 0);
        for t in 0..10_000u64 {
            p.observe(10_000 + t * 100, counts(104, 0), WINDOW);
        }
        assert!(p.samples.len() <= 12, "{}", p.samples.len());
    }
}
