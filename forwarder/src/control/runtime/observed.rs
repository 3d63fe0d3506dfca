//! What the daemon keeps only to show the admin: traffic rates, when each uplink's state last
//! changed, the last reload's outcome, when the daemon started, and what `flowpin flows kill` did.
//!
//! Invariants:
//! - an uplink's state time moves only when the state word status shows changes (`up`, `down`,
//!   `probing`, `draining`); every such change goes through a publish, which notes it;
//! - the traffic meter is sampled at each refresh (every second, and on kernel events; samples closer
//!   than [`MIN_INTERVAL_MS`](crate::control::traffic_rates::MIN_INTERVAL_MS) are ignored) from the
//!   raw per-slot sums, whose differences are all it needs;
//! - before any reload the last reload is the start's load of the file: successful, at the start.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Daemon;
use super::slot_totals::SlotTotals;
use crate::control::api::LastReload;
use crate::control::traffic_rates::{TrafficMeter, TrafficTotals};

/// The admin's figures beyond the datapath's counters.
#[derive(Debug)]
pub(super) struct Observed {
    /// Per-slot traffic rates.
    pub(super) meter: TrafficMeter,
    /// When the daemon started.
    pub(super) started_at: SystemTime,
    /// The last reload's outcome.
    pub(super) last_reload: LastReload,
    /// Flows `flowpin flows kill` removed.
    pub(super) flows_killed: u64,
    /// TCP resets `flowpin flows kill` sent (both directions counted).
    pub(super) kill_resets_sent: u64,
}

impl Observed {
    /// Figures of a daemon starting now.
    pub(super) fn starting() -> Self {
        let started_at = SystemTime::now();
        let at = unix_seconds(started_at);
        Self {
            meter: TrafficMeter::default(),
            started_at,
            last_reload: LastReload {
                success: true,
                at_unix_s: at,
                last_success_unix_s: at,
            },
            flows_killed: 0,
            kill_resets_sent: 0,
        }
    }

    /// Records a reload's outcome, now.
    pub(super) fn reloaded(&mut self, success: bool) {
        let at = unix_seconds(SystemTime::now());
        self.last_reload.success = success;
        self.last_reload.at_unix_s = at;
        if success {
            self.last_reload.last_success_unix_s = at;
        }
    }
}

/// `time` in seconds since the Unix epoch (0 before it).
pub(super) fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Daemon {
    /// Notes, for every live uplink, whether the state status shows changed; a change restarts its
    /// state time.
    pub(super) fn note_states(&mut self) {
        let now = SystemTime::now();
        for slot in 0..self.uplinks.len() {
            let fact = self.facts.get(slot).and_then(Option::as_ref);
            let shown = self.uplinks[slot].state_name(fact);
            let u = &mut self.uplinks[slot];
            if u.shown_state != shown {
                if !u.shown_state.is_empty() {
                    u.state_since = now;
                }
                u.shown_state = shown;
            }
        }
    }

    /// Samples every slot's traffic for the rates.
    pub(super) fn sample_traffic(&mut self) {
        let totals = (0..self.uplinks.len())
            .map(|slot| {
                let t = SlotTotals::sum(&self.counters, slot);
                TrafficTotals {
                    tx_packets: t.tx_packets,
                    tx_bytes: t.tx_bytes,
                    rx_packets: t.rx_packets,
                    rx_bytes: t.rx_bytes,
                }
            })
            .collect();
        let now_ms = self.clock.now_ms();
        self.observed.meter.sample(now_ms, totals);
    }
}
