//! One uplink's health verdict from probe rounds and carrier: the pure state machine.
//!
//! States: `up` (takes new flows), `down` (takes none; its flows fail over), `probing` (was down, has
//! answered again, takes no new flows until `up_after` good rounds in a row). Transitions:
//! - any state → `down` at once when the carrier drops;
//! - `up` → `down` after `down_after` bad rounds in a row;
//! - `down` → `probing` on the first good round, `probing` → `up` after `up_after` good rounds in a
//!   row (counting that first one), `probing` → `down` on any bad round;
//! - carrier back: with configured targets the uplink stays `down` until the probes bring it back;
//!   probing only its gateway (no target configured, [`Health::probing_gateway`]) it is `up` at once,
//!   as with nothing to probe (the state then follows the carrier alone, `up` ⇔ carrier);
//! - `up` → `down` when the passive trigger is on (`passive_down_after_unanswered = N > 0`) and N new TCP
//!   flows in a row got no SYN-ACK within the window while none was answered ([`super::passive`]); the
//!   streak then restarts, and only probes bring the uplink back (validation requires something to
//!   probe).
//!
//! A round is *bad* when fewer than `min_answers` targets answered, or the window's loss reached
//! `down_loss_percent`, or its mean RTT reached `down_rtt_ms`. It is *good* when at least `min_answers`
//! answered and the window's loss is at most `up_loss_percent` and its RTT at most `up_rtt_ms`. Between
//! the two thresholds a round is neutral: it breaks a streak of the other kind and starts none, so loss
//! hovering around one threshold cannot make the state flap.
//!
//! A new uplink starts `up` when its carrier is up (flowpin starts forwarding at once; probes take it
//! down within `down_after` rounds if it is dead).

use std::collections::VecDeque;

use super::passive::{HandshakeCounts, PassiveSignal};
use crate::config::Health;

/// An uplink's health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Healthy: takes new flows.
    Up,
    /// Dead: takes no new flows; its pinned flows fail over.
    Down,
    /// Answering again after being down; not yet trusted with new flows.
    Probing,
}

impl HealthState {
    /// The name shown by `flowpin status` and the metrics.
    pub const fn name(self) -> &'static str {
        match self {
            HealthState::Up => "up",
            HealthState::Down => "down",
            HealthState::Probing => "probing",
        }
    }
}

/// What one probe round measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundResult {
    /// Targets probed.
    pub sent: u32,
    /// Targets that answered in time.
    pub answered: u32,
    /// Sum of the answered probes' RTTs (µs).
    pub rtt_sum_us: u64,
}

/// How a round was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundVerdict {
    /// Meets the up thresholds.
    Good,
    /// Meets a down threshold.
    Bad,
    /// Between the thresholds.
    Neutral,
}

/// One uplink's health tracker.
#[derive(Debug, Clone)]
pub struct UplinkHealth {
    state: HealthState,
    carrier: bool,
    good_streak: u32,
    bad_streak: u32,
    window: VecDeque<RoundResult>,
    passive: PassiveSignal,
    /// State changes so far (for the flap counter in the metrics).
    pub transitions: u64,
    /// Times the passive trigger took the uplink down.
    pub passive_downs: u64,
}

impl UplinkHealth {
    /// A tracker for an uplink whose carrier is `carrier`.
    pub fn new(carrier: bool) -> Self {
        Self {
            state: if carrier {
                HealthState::Up
            } else {
                HealthState::Down
            },
            carrier,
            good_streak: 0,
            bad_streak: 0,
            window: VecDeque::new(),
            passive: PassiveSignal::default(),
            transitions: 0,
            passive_downs: 0,
        }
    }

    /// The passive handshake signal.
    pub fn passive(&self) -> &PassiveSignal {
        &self.passive
    }

    /// Feeds the uplink's summed handshake counters at `now_ms` (every control tick); returns the new
    /// state if the passive trigger took an up uplink down.
    pub fn handshakes(
        &mut self,
        now_ms: u64,
        counts: HandshakeCounts,
        settings: &Health,
    ) -> Option<HealthState> {
        let streak = self
            .passive
            .observe(now_ms, counts, settings.passive_answer_window_ms);
        if !settings.passive_trigger_enabled()
            || self.state != HealthState::Up
            || streak < u64::from(settings.passive_down_after_unanswered)
        {
            return None;
        }
        self.passive.restart();
        self.good_streak = 0;
        self.bad_streak = 0;
        self.passive_downs += 1;
        self.set(HealthState::Down)
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Loss over the window, in percent (0 with no round yet).
    pub fn loss_percent(&self) -> f64 {
        let (sent, answered) = self.window.iter().fold((0u64, 0u64), |(s, a), r| {
            (s + u64::from(r.sent), a + u64::from(r.answered))
        });
        if sent == 0 {
            0.0
        } else {
            (sent - answered) as f64 * 100.0 / sent as f64
        }
    }

    /// Mean RTT of the window's answered probes, in milliseconds (`None` with no answer).
    pub fn rtt_ms(&self) -> Option<f64> {
        let (answered, sum) = self.window.iter().fold((0u64, 0u64), |(a, s), r| {
            (a + u64::from(r.answered), s + r.rtt_sum_us)
        });
        (answered > 0).then(|| sum as f64 / answered as f64 / 1000.0)
    }

    /// Records the carrier; returns the new state if it changed.
    pub fn carrier(&mut self, carrier: bool, settings: &Health) -> Option<HealthState> {
        if carrier == self.carrier {
            return None;
        }
        self.carrier = carrier;
        self.good_streak = 0;
        self.bad_streak = 0;
        self.window.clear();
        let next = if !carrier {
            HealthState::Down
        } else if settings.targets.is_empty() || settings.probing_gateway {
            HealthState::Up
        } else {
            // Carrier back: the configured probes decide, starting from scratch.
            HealthState::Down
        };
        self.set(next)
    }

    /// Judges a finished round and returns the new state if it changed. Rounds are ignored while the
    /// carrier is down.
    pub fn round(&mut self, result: RoundResult, settings: &Health) -> Option<HealthState> {
        if !self.carrier {
            return None;
        }
        self.window.push_back(result);
        while self.window.len() > settings.window.max(1) as usize {
            self.window.pop_front();
        }
        match self.judge(result, settings) {
            RoundVerdict::Good => {
                self.good_streak += 1;
                self.bad_streak = 0;
            }
            RoundVerdict::Bad => {
                self.bad_streak += 1;
                self.good_streak = 0;
            }
            RoundVerdict::Neutral => {
                self.good_streak = 0;
                self.bad_streak = 0;
            }
        }
        let next = match self.state {
            HealthState::Up if self.bad_streak >= settings.down_after => HealthState::Down,
            HealthState::Down if self.good_streak >= 1 => HealthState::Probing,
            HealthState::Probing if self.bad_streak >= 1 => HealthState::Down,
            _ => self.state,
        };
        let next = if next == HealthState::Probing && self.good_streak >= settings.up_after {
            HealthState::Up
        } else {
            next
        };
        self.set(next)
    }

    /// The verdict on `result` given the window (which already includes it).
    pub fn judge(&self, result: RoundResult, settings: &Health) -> RoundVerdict {
        let answered = result.answered >= settings.min_answers;
        let loss = self.loss_percent();
        let rtt = self.rtt_ms().unwrap_or(0.0);
        if !answered
            || loss >= f64::from(settings.down_loss_percent)
            || rtt >= f64::from(settings.down_rtt_ms)
        {
            RoundVerdict::Bad
        } else if loss <= f64::from(settings.up_loss_percent)
            && rtt <= f64::from(settings.up_rtt_ms)
        {
            RoundVerdict::Good
        } else {
            RoundVerdict::Neutral
        }
    }

    fn set(&mut self, next: HealthState) -> Option<HealthState> {
        if next == self.state {
            return None;
        }
        self.state = next;
        self.transitions += 1;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProbeKind, ProbeTarget};

    fn settings(targets: usize) -> Health {
        Health {
            targets: (0..targets)
                .map(|i| ProbeTarget {
                    kind: ProbeKind::Icmp,
                    address: std::net::Ipv4Addr::new(203, 0, 113, 10 + i as u8),
                    port: 0,
                    query: String::new(),
                    http: None,
                })
                .collect(),
            ..Health::DEFAULT
        }
    }

    fn round(sent: u32, answered: u32, rtt_ms: u64) -> RoundResult {
        RoundResult {
            sent,
            answered,
            rtt_sum_us: u64::from(answered) * rtt_ms * 1000,
        }
    }

    #[test]
    fn goes_down_after_exactly_down_after_bad_rounds() {
        let s = settings(3);
        let mut h = UplinkHealth::new(true);
        for _ in 0..20 {
            assert_eq!(h.round(round(3, 3, 5), &s), None);
        }
        assert_eq!(h.round(round(3, 0, 0), &s), None);
        assert_eq!(h.round(round(3, 0, 0), &s), None);
        assert_eq!(h.round(round(3, 0, 0), &s), Some(HealthState::Down));
        assert_eq!(h.state(), HealthState::Down);
    }

    #[test]
    fn recovers_through_probing_only_after_up_after_good_rounds() {
        let s = Health {
            window: 1,
            ..settings(2)
        };
        let mut h = UplinkHealth::new(true);
        for _ in 0..3 {
            h.round(round(2, 0, 0), &s);
        }
        assert_eq!(h.state(), HealthState::Down);
        assert_eq!(h.round(round(2, 2, 5), &s), Some(HealthState::Probing));
        for _ in 1..s.up_after - 1 {
            assert_eq!(h.round(round(2, 2, 5), &s), None);
        }
        assert_eq!(h.round(round(2, 2, 5), &s), Some(HealthState::Up));
        // A bad round while probing sends it back down at once.
        let mut h2 = UplinkHealth::new(true);
        for _ in 0..3 {
            h2.round(round(2, 0, 0), &s);
        }
        h2.round(round(2, 2, 5), &s);
        assert_eq!(h2.round(round(2, 0, 0), &s), Some(HealthState::Down));
    }

    #[test]
    fn carrier_loss_is_immediate_and_carrier_return_needs_probes() {
        let s = settings(1);
        let mut h = UplinkHealth::new(true);
        assert_eq!(h.carrier(false, &s), Some(HealthState::Down));
        assert_eq!(
            h.round(round(1, 1, 1), &s),
            None,
            "rounds ignored without carrier"
        );
        assert_eq!(h.carrier(true, &s), None, "still down until probes answer");
        assert_eq!(h.round(round(1, 1, 1), &s), Some(HealthState::Probing));
        // Without targets the carrier alone decides.
        let none = settings(0);
        let mut c = UplinkHealth::new(false);
        assert_eq!(c.state(), HealthState::Down);
        assert_eq!(c.carrier(true, &none), Some(HealthState::Up));
    }

    #[test]
    fn probing_only_the_gateway_a_dead_gateway_goes_down_and_a_link_return_is_up_at_once() {
        let gateway = std::net::Ipv4Addr::new(192, 0, 2, 1);
        let s = Health::DEFAULT.resolved_for(gateway);
        assert!(s.probing_gateway);
        let mut h = UplinkHealth::new(true);
        for _ in 0..s.down_after - 1 {
            assert_eq!(h.round(round(1, 0, 0), &s), None);
        }
        assert_eq!(h.round(round(1, 0, 0), &s), Some(HealthState::Down));
        assert_eq!(h.carrier(false, &s), None, "already down");
        assert_eq!(h.carrier(true, &s), Some(HealthState::Up), "link back");
        assert_eq!(h.loss_percent(), 0.0, "the window starts afresh");
        // With a configured target a link's return waits for the probes.
        let configured = settings(1);
        let mut c = UplinkHealth::new(true);
        c.carrier(false, &configured);
        assert_eq!(c.carrier(true, &configured), None);
        assert_eq!(c.state(), HealthState::Down);
    }

    #[test]
    fn latency_above_the_down_threshold_is_bad_and_between_thresholds_is_neutral() {
        let s = Health {
            window: 1,
            ..settings(1)
        };
        let mut h = UplinkHealth::new(true);
        assert_eq!(
            h.judge(round(1, 1, 2000), &s),
            RoundVerdict::Good,
            "empty window"
        );
        h.round(round(1, 1, 2000), &s);
        assert_eq!(h.judge(round(1, 1, 2000), &s), RoundVerdict::Bad);
        h.round(round(1, 1, 1200), &s);
        assert_eq!(h.judge(round(1, 1, 1200), &s), RoundVerdict::Neutral);
        h.round(round(1, 1, 10), &s);
        assert_eq!(h.judge(round(1, 1, 10), &s), RoundVerdict::Good);
    }

    fn passive(n: u32) -> Health {
        Health {
            passive_down_after_unanswered: n,
            passive_answer_window_ms: 1000,
            ..settings(2)
        }
    }

    fn handshakes(started: u64, answered: u64) -> HandshakeCounts {
        HandshakeCounts { started, answered }
    }

    #[test]
    fn the_passive_trigger_is_off_by_default() {
        let s = settings(2);
        let mut h = UplinkHealth::new(true);
        h.handshakes(0, handshakes(0, 0), &s);
        for t in 1..100 {
            assert_eq!(h.handshakes(t * 100, handshakes(t * 10, 0), &s), None);
        }
        assert!(h.passive().unanswered_in_a_row() > 100, "still measured");
        assert_eq!(h.state(), HealthState::Up);
    }

    #[test]
    fn n_unanswered_handshakes_in_a_row_take_the_uplink_down_and_probes_bring_it_back() {
        let s = passive(5);
        let mut h = UplinkHealth::new(true);
        h.handshakes(0, handshakes(0, 0), &s);
        // Four SYNs unanswered for a window: not yet.
        h.handshakes(100, handshakes(4, 0), &s);
        assert_eq!(h.handshakes(1100, handshakes(4, 0), &s), None);
        // An answer in between resets the count: 4 + 4 unanswered, but not in a row.
        h.handshakes(1200, handshakes(5, 1), &s);
        h.handshakes(1300, handshakes(9, 1), &s);
        assert_eq!(h.handshakes(2300, handshakes(9, 1), &s), None);
        assert_eq!(h.passive().unanswered_in_a_row(), 4);
        // The fifth in a row, a window later: down.
        h.handshakes(2400, handshakes(10, 1), &s);
        assert_eq!(
            h.handshakes(3400, handshakes(10, 1), &s),
            Some(HealthState::Down)
        );
        assert_eq!(h.passive_downs, 1);
        assert_eq!(h.passive().unanswered_in_a_row(), 0, "streak restarts");
        // Probes answering bring it back through probing.
        let mut next = None;
        for _ in 0..s.up_after {
            next = h.round(round(2, 2, 5), &s).or(next);
        }
        assert_eq!(h.state(), HealthState::Up, "{next:?}");
        // Slow but answered handshakes (within the window) never trigger.
        for t in 0..100u64 {
            let now = 4000 + t * 100;
            assert_eq!(
                h.handshakes(now, handshakes(10 + t, 1 + t.saturating_sub(5)), &s),
                None
            );
        }
        assert_eq!(h.state(), HealthState::Up);
    }

    /// 30 % independent probe loss over 3 targets (M = 1) for 2000 rounds never takes the uplink down:
    /// window loss stays below 60 %, and a round with no answer at all needs three losses at once.
    #[test]
    fn thirty_percent_probe_loss_does_not_flap() {
        use rand::{Rng, SeedableRng};
        let s = settings(3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut h = UplinkHealth::new(true);
        for _ in 0..2000 {
            let answered = (0..3).filter(|_| rng.random::<f64>() >= 0.3).count() as u32;
            h.round(round(3, answered, 5), &s);
        }
        assert_eq!(h.transitions, 0, "state changed under 30 % loss");
        assert_eq!(h.state(), HealthState::Up);
        assert!(
            (20.0..40.0).contains(&h.loss_percent()),
            "{}",
            h.loss_percent()
        );
    }
}
