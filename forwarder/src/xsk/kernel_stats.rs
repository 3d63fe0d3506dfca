//! The kernel's per-socket AF_XDP counters (`XDP_STATISTICS`) and their publication to other threads.
//!
//! These are the losses flowpin's own counters cannot see: a frame the XDP program redirected but the
//! kernel could not place in the socket (RX ring full, fill ring empty) never reaches the worker.
//! The worker reads them with one `getsockopt` per port at its gauge cadence (never per packet) and
//! stores them into [`KernelStatsGauges`] with relaxed stores; any thread reads them.
//!
//! Invariants: each published value is a whole reading of one counter (a 64-bit atomic); the six
//! counters of a port are not read together atomically, so a reader racing a publication may see
//! some counters from the previous reading. They only grow for a socket's life, so every value read
//! is one the kernel reported. A port reads `None` until its first successful reading.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::PortId;

/// The kernel's counters of one socket (`XDP_STATISTICS`), cumulative since the socket was bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelSocketStats {
    /// Received frames dropped (e.g. RX ring full).
    pub rx_dropped: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
    /// Times the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived (frames dropped for lack of buffers).
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was empty when the kernel looked.
    pub tx_ring_empty_descs: u64,
}

/// Number of counters in [`KernelSocketStats`].
const COUNTERS: usize = 6;

impl KernelSocketStats {
    /// The counters, named as the kernel's `struct xdp_statistics` names them, in its order.
    pub fn named(&self) -> [(&'static str, u64); COUNTERS] {
        [
            ("rx_dropped", self.rx_dropped),
            ("rx_invalid_descs", self.rx_invalid_descs),
            ("tx_invalid_descs", self.tx_invalid_descs),
            ("rx_ring_full", self.rx_ring_full),
            ("rx_fill_ring_empty_descs", self.rx_fill_ring_empty_descs),
            ("tx_ring_empty_descs", self.tx_ring_empty_descs),
        ]
    }

    fn from_values(values: [u64; COUNTERS]) -> Self {
        let [
            rx_dropped,
            rx_invalid_descs,
            tx_invalid_descs,
            rx_ring_full,
            rx_fill_ring_empty_descs,
            tx_ring_empty_descs,
        ] = values;
        Self {
            rx_dropped,
            rx_invalid_descs,
            tx_invalid_descs,
            rx_ring_full,
            rx_fill_ring_empty_descs,
            tx_ring_empty_descs,
        }
    }
}

/// One port's last published reading.
#[derive(Debug, Default)]
struct PortGauges {
    /// Set (release) after the first reading's values are stored.
    published: AtomicBool,
    /// In [`KernelSocketStats::named`] order.
    values: [AtomicU64; COUNTERS],
}

/// A worker's last published kernel counters, by AF_XDP port; one writer (the worker), any readers.
#[derive(Debug)]
pub struct KernelStatsGauges {
    ports: Box<[PortGauges]>,
}

impl KernelStatsGauges {
    /// Gauges for a worker with `ports` ports, none published yet.
    pub fn new(ports: usize) -> Self {
        Self {
            ports: (0..ports).map(|_| PortGauges::default()).collect(),
        }
    }

    /// Publishes `stats` as port `port`'s reading (relaxed stores; a port beyond the worker's is
    /// ignored).
    #[inline]
    pub fn publish(&self, port: PortId, stats: &KernelSocketStats) {
        let Some(gauges) = self.ports.get(port.index()) else {
            return;
        };
        for (gauge, (_, value)) in gauges.values.iter().zip(stats.named()) {
            gauge.store(value, Ordering::Relaxed);
        }
        if !gauges.published.load(Ordering::Relaxed) {
            gauges.published.store(true, Ordering::Release);
        }
    }

    /// By AF_XDP port: its last published reading (`None` before the first).
    pub fn read(&self) -> Vec<Option<KernelSocketStats>> {
        self.ports
            .iter()
            .map(|gauges| {
                gauges.published.load(Ordering::Acquire).then(|| {
                    KernelSocketStats::from_values(std::array::from_fn(|i| {
                        gauges.values[i].load(Ordering::Relaxed)
                    }))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_reads_nothing_before_its_first_reading_then_the_last_one() {
        let gauges = KernelStatsGauges::new(2);
        assert_eq!(gauges.read(), vec![None, None]);
        let first = KernelSocketStats {
            rx_dropped: 1,
            rx_invalid_descs: 2,
            tx_invalid_descs: 3,
            rx_ring_full: 4,
            rx_fill_ring_empty_descs: 5,
            tx_ring_empty_descs: 6,
        };
        gauges.publish(PortId(1), &first);
        assert_eq!(gauges.read(), vec![None, Some(first)]);
        let second = KernelSocketStats {
            rx_ring_full: 40,
            ..first
        };
        gauges.publish(PortId(1), &second);
        gauges.publish(PortId(7), &first);
        assert_eq!(gauges.read(), vec![None, Some(second)]);
    }

    #[test]
    fn counters_are_named_as_the_kernel_names_them_and_round_trip() {
        let stats = KernelSocketStats {
            rx_dropped: 10,
            rx_invalid_descs: 20,
            tx_invalid_descs: 30,
            rx_ring_full: 40,
            rx_fill_ring_empty_descs: 50,
            tx_ring_empty_descs: 60,
        };
        let named = stats.named();
        assert_eq!(named[3], ("rx_ring_full", 40));
        assert_eq!(named[4], ("rx_fill_ring_empty_descs", 50));
        assert_eq!(KernelSocketStats::from_values(named.map(|(_, v)| v)), stats);
    }
}
