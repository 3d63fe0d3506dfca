//! Per-slot datapath counters as status and metrics report them.
//!
//! Invariants: the workers' counters are per slot and only grow; a slot a reload gives to a new
//! uplink (a retired slot, or one past the end dropped earlier) gets a baseline (its totals at that moment, taken with the workers stopped) and reports the totals since,
//! so a series labelled by the uplink's name starts at 0 and never goes backwards. The passive health
//! signal reads the raw sums: it only uses their differences.

use std::sync::Arc;

use crate::datapath::DatapathCounters;

/// An uplink slot's datapath counters summed over the workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SlotTotals {
    pub(super) tx_packets: u64,
    pub(super) tx_bytes: u64,
    pub(super) rx_packets: u64,
    pub(super) rx_bytes: u64,
    pub(super) flows_created: u64,
    pub(super) tcp_handshakes_started: u64,
    pub(super) tcp_handshakes_answered: u64,
    pub(super) mss_clamped: u64,
}

impl SlotTotals {
    /// Slot `slot`'s counters summed over `workers`.
    pub(super) fn sum(workers: &[Arc<DatapathCounters>], slot: usize) -> Self {
        workers
            .iter()
            .filter_map(|w| w.uplinks.get(slot))
            .fold(Self::default(), |t, c| Self {
                tx_packets: t.tx_packets + c.tx_packets.get(),
                tx_bytes: t.tx_bytes + c.tx_bytes.get(),
                rx_packets: t.rx_packets + c.rx_packets.get(),
                rx_bytes: t.rx_bytes + c.rx_bytes.get(),
                flows_created: t.flows_created + c.flows_created.get(),
                tcp_handshakes_started: t.tcp_handshakes_started + c.tcp_handshakes_started.get(),
                tcp_handshakes_answered: t.tcp_handshakes_answered
                    + c.tcp_handshakes_answered.get(),
                mss_clamped: t.mss_clamped + c.mss_clamped.get(),
            })
    }

    /// The totals counted since `baseline` was taken.
    pub(super) fn since(self, baseline: Self) -> Self {
        Self {
            tx_packets: self.tx_packets.saturating_sub(baseline.tx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(baseline.tx_bytes),
            rx_packets: self.rx_packets.saturating_sub(baseline.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(baseline.rx_bytes),
            flows_created: self.flows_created.saturating_sub(baseline.flows_created),
            tcp_handshakes_started: self
                .tcp_handshakes_started
                .saturating_sub(baseline.tcp_handshakes_started),
            tcp_handshakes_answered: self
                .tcp_handshakes_answered
                .saturating_sub(baseline.tcp_handshakes_answered),
            mss_clamped: self.mss_clamped.saturating_sub(baseline.mss_clamped),
        }
    }
}

/// Makes `slots` (given to new uplinks) count from 0: their baselines become their totals now. Call
/// with the workers stopped.
pub(super) fn rebase_slots(
    baselines: &mut Vec<SlotTotals>,
    counters: &[Arc<DatapathCounters>],
    slots: &[usize],
) {
    for &slot in slots {
        if baselines.len() <= slot {
            baselines.resize(slot + 1, SlotTotals::default());
        }
        baselines[slot] = SlotTotals::sum(counters, slot);
    }
}
