//! Per-uplink traffic rates (packets/s, bits/s) from the datapath's cumulative counters, sampled by
//! the control loop.
//!
//! Invariants:
//! - a rate is the difference of two samples at least [`MIN_INTERVAL_MS`] apart over their distance
//!   in time; samples closer to the last one are ignored, so a burst of kernel events does not shrink
//!   the interval to nothing;
//! - a counter that went backwards (its slot was given to a new uplink) reads as rate 0, never as a
//!   huge wrapped number;
//! - before two samples exist every rate is 0.
//!
//! Sans-IO: the caller passes the time and the counters.

use crate::control::api::TrafficRates;

/// The shortest interval a rate is measured over, in ms.
pub const MIN_INTERVAL_MS: u64 = 900;

/// One slot's cumulative counters: packets and bytes out of the uplink, packets and bytes in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    /// Packets sent out of the uplink.
    pub tx_packets: u64,
    /// Bytes sent out of the uplink.
    pub tx_bytes: u64,
    /// Packets received on the uplink for the LAN.
    pub rx_packets: u64,
    /// Bytes received on the uplink for the LAN.
    pub rx_bytes: u64,
}

/// The last two samples of every slot.
#[derive(Debug, Default)]
pub struct TrafficMeter {
    previous: Option<(u64, Vec<TrafficTotals>)>,
    latest: Option<(u64, Vec<TrafficTotals>)>,
}

impl TrafficMeter {
    /// Records `totals` (by slot) taken at `now_ms`, unless the latest sample is less than
    /// [`MIN_INTERVAL_MS`] old.
    pub fn sample(&mut self, now_ms: u64, totals: Vec<TrafficTotals>) {
        if let Some((at, _)) = &self.latest
            && now_ms < at + MIN_INTERVAL_MS
        {
            return;
        }
        self.previous = self.latest.replace((now_ms, totals));
    }

    /// Slot `slot`'s rates between the last two samples.
    pub fn rates(&self, slot: usize) -> TrafficRates {
        let (Some((then, old)), Some((now, new))) = (&self.previous, &self.latest) else {
            return TrafficRates::default();
        };
        let (Some(old), Some(new)) = (old.get(slot), new.get(slot)) else {
            return TrafficRates::default();
        };
        let seconds = (now - then) as f64 / 1000.0;
        let per_s = |new: u64, old: u64| match new.checked_sub(old) {
            Some(delta) => delta as f64 / seconds,
            None => 0.0,
        };
        TrafficRates {
            tx_pps: per_s(new.tx_packets, old.tx_packets),
            tx_bps: per_s(new.tx_bytes, old.tx_bytes) * 8.0,
            rx_pps: per_s(new.rx_packets, old.rx_packets),
            rx_bps: per_s(new.rx_bytes, old.rx_bytes) * 8.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(tx_packets: u64, tx_bytes: u64, rx_packets: u64, rx_bytes: u64) -> TrafficTotals {
        TrafficTotals {
            tx_packets,
            tx_bytes,
            rx_packets,
            rx_bytes,
        }
    }

    #[test]
    fn rates_are_the_difference_of_the_last_two_samples_over_their_interval() {
        let mut m = TrafficMeter::default();
        assert_eq!(m.rates(0), TrafficRates::default(), "no sample yet");
        m.sample(1_000, vec![totals(100, 10_000, 50, 5_000)]);
        assert_eq!(m.rates(0), TrafficRates::default(), "one sample: no rate");
        m.sample(3_000, vec![totals(300, 30_000, 50, 9_000)]);
        let r = m.rates(0);
        assert_eq!(r.tx_pps, 100.0);
        assert_eq!(r.tx_bps, 80_000.0);
        assert_eq!(r.rx_pps, 0.0);
        assert_eq!(r.rx_bps, 16_000.0);
        assert_eq!(m.rates(1), TrafficRates::default(), "unknown slot");
    }

    #[test]
    fn samples_too_close_to_the_last_are_ignored() {
        let mut m = TrafficMeter::default();
        m.sample(1_000, vec![totals(0, 0, 0, 0)]);
        m.sample(2_000, vec![totals(1_000, 0, 0, 0)]);
        m.sample(2_100, vec![totals(5_000, 0, 0, 0)]);
        assert_eq!(m.rates(0).tx_pps, 1_000.0, "the 100 ms sample is ignored");
        m.sample(2_000 + MIN_INTERVAL_MS, vec![totals(1_900, 0, 0, 0)]);
        assert_eq!(m.rates(0).tx_pps, 1_000.0);
    }

    #[test]
    fn a_counter_that_went_backwards_reads_as_zero() {
        let mut m = TrafficMeter::default();
        m.sample(0, vec![totals(500, 500, 500, 500)]);
        m.sample(1_000, vec![totals(10, 10, 600, 600)]);
        let r = m.rates(0);
        assert_eq!((r.tx_pps, r.tx_bps), (0.0, 0.0));
        assert_eq!((r.rx_pps, r.rx_bps), (100.0, 800.0));
    }
}
