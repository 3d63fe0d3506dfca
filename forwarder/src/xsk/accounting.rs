//! Exact frame accounting: every UMEM frame is in exactly one state.
//!
//! `free + fill + rx + in_flight + tx + completion == total`, always. The worker tracks three
//! exact running counts besides the free pool — frames handed to fill rings and not yet
//! received (`fill + rx`), frames held by the datapath (`in_flight`), frames handed to TX and not
//! yet reaped (`tx + completion`) — and splits the kernel-side sums with the rings' current
//! occupancy when it takes a snapshot.

/// Where a worker's frames are, at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameAccounting {
    /// Frames in the UMEM.
    pub total: u64,
    /// In the free pool (userspace, unused).
    pub free: u64,
    /// Given to a fill ring, not yet in an RX ring (the kernel owns them).
    pub fill: u64,
    /// Written by the kernel into an RX ring, not yet taken by `receive`.
    pub rx: u64,
    /// Held by the datapath (received or allocated, no verdict yet).
    pub in_flight: u64,
    /// Queued for or in a TX ring, or being transmitted.
    pub tx: u64,
    /// Transmitted, in a completion ring, not yet reaped.
    pub completion: u64,
}

impl FrameAccounting {
    /// Sum of all states.
    pub fn accounted(&self) -> u64 {
        self.free + self.fill + self.rx + self.in_flight + self.tx + self.completion
    }

    /// Whether every frame is in exactly one state.
    pub fn is_consistent(&self) -> bool {
        self.accounted() == self.total
    }
}

/// The worker's running counts (exact; updated on every transfer between states).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FrameLedger {
    pub total: u64,
    /// Given to fill rings, not yet received: `fill + rx`.
    pub kernel_rx: u64,
    pub in_flight: u64,
    /// Given to TX, not yet reaped: `tx + completion` (staged descriptors included).
    pub kernel_tx: u64,
}

impl FrameLedger {
    /// Whether `free` frames in the pool complete the ledger to `total`.
    pub fn balances(&self, free: u64) -> bool {
        free + self.kernel_rx + self.in_flight + self.kernel_tx == self.total
    }

    /// A snapshot, splitting the kernel-side sums by the rings' occupancy read now.
    pub fn snapshot(&self, free: u64, rx_ready: u64, completion_ready: u64) -> FrameAccounting {
        // The kernel cannot put more into RX than was filled, nor complete more than was sent;
        // `min` only guards against a torn read of the ring heads.
        let rx = rx_ready.min(self.kernel_rx);
        let completion = completion_ready.min(self.kernel_tx);
        FrameAccounting {
            total: self.total,
            free,
            fill: self.kernel_rx - rx,
            rx,
            in_flight: self.in_flight,
            tx: self.kernel_tx - completion,
            completion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_splits_kernel_sums_and_stays_consistent() {
        let ledger = FrameLedger {
            total: 100,
            kernel_rx: 40,
            in_flight: 10,
            kernel_tx: 20,
        };
        assert!(ledger.balances(30));
        assert!(!ledger.balances(29));
        let snapshot = ledger.snapshot(30, 15, 5);
        assert_eq!(snapshot.fill, 25);
        assert_eq!(snapshot.rx, 15);
        assert_eq!(snapshot.tx, 15);
        assert_eq!(snapshot.completion, 5);
        assert!(snapshot.is_consistent());
        let torn = ledger.snapshot(30, 1000, 1000);
        assert!(
            torn.is_consistent(),
            "ring reads beyond the ledger are clamped"
        );
    }

    #[test]
    fn a_leaked_frame_breaks_consistency() {
        let ledger = FrameLedger {
            total: 8,
            kernel_rx: 4,
            in_flight: 0,
            kernel_tx: 0,
        };
        assert!(!ledger.snapshot(3, 0, 0).is_consistent());
    }
}
