//! Exact frame accounting: every UMEM frame is in exactly one state.
//!
//! `free + fill + rx + in_flight + tx + completion == total`, always. The worker tracks three
//! exact running counts besides the free pool — frames handed to fill rings and not yet
//! received (`fill + rx`), frames held by the datapath (`in_flight`), frames handed to TX and not
//! yet reaped (`tx + completion`) — and splits the kernel-side sums with the rings' current
//! occupancy when it takes a snapshot.
//!
//! [`FrameGauges`] carry a worker's snapshots to other threads (the control plane's status and
//! metrics): the worker publishes one every few batches and when it goes idle; a reader gets the
//! states of one single publication (a sequence counter detects a read that straddled a
//! publication; two buffers keep the previous publication readable while the next is written), so
//! what it reads sums to `total` like the snapshot did. Publishing is a handful of relaxed stores,
//! one release fence and one release store: no lock, no syscall, no read-modify-write.

use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Where a worker's frames are, at one instant (also the status API's per-worker `frames`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    /// The states, named as the metrics label them, in frame-flow order.
    pub fn states(&self) -> [(&'static str, u64); 6] {
        [
            ("free", self.free),
            ("fill", self.fill),
            ("rx", self.rx),
            ("in_flight", self.in_flight),
            ("tx", self.tx),
            ("completion", self.completion),
        ]
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

/// The states of [`FrameAccounting`], in publication order.
const STATES: usize = 7;

/// A worker's last published [`FrameAccounting`], readable from any thread.
///
/// One writer (the worker), any number of readers; two buffers, so a worker descheduled in the
/// middle of a publication never hides the previous one. Publication `k` (from 1) is written into
/// buffer `k % 2` between `sequence = 2k - 1` ("writing k") and `sequence = 2k` ("k done"). A reader
/// that saw `sequence` at `s` reads the buffer of the last finished publication `k = s / 2`; that
/// buffer is rewritten only by publication `k + 2`, which starts by storing `2k + 3`, so the copy is
/// whole if `sequence` is still below that after the read (the fences order the data accesses
/// against those sequence accesses).
#[derive(Debug, Default)]
pub struct FrameGauges {
    /// `2k`: publication `k` is the last finished one; `2k + 1`: publication `k + 1` is being written.
    sequence: AtomicU64,
    /// By publication parity: `total, free, fill, rx, in_flight, tx, completion`.
    buffers: [[AtomicU64; STATES]; 2],
}

impl FrameGauges {
    /// Reads before a reader gives up on a whole copy (the worker republished twice during each).
    const READ_ATTEMPTS: usize = 64;

    /// Publishes `accounting`. Only the owning worker may call this (plain load + store of the
    /// sequence: one writer).
    #[inline]
    pub fn publish(&self, accounting: &FrameAccounting) {
        let done = self.sequence.load(Ordering::Relaxed) / 2;
        let writing = done + 1;
        self.sequence.store(2 * writing - 1, Ordering::Relaxed);
        // A reader that sees any of the stores below also sees "writing" in its second load.
        fence(Ordering::Release);
        let values = [
            accounting.total,
            accounting.free,
            accounting.fill,
            accounting.rx,
            accounting.in_flight,
            accounting.tx,
            accounting.completion,
        ];
        let buffer = &self.buffers[(writing % 2) as usize];
        for (gauge, value) in buffer.iter().zip(values) {
            gauge.store(value, Ordering::Relaxed);
        }
        // A reader that sees "done" also sees the stores above.
        self.sequence.store(2 * writing, Ordering::Release);
    }

    /// The last finished publication; `None` before the first, or if the worker republished twice
    /// during each of `READ_ATTEMPTS` (64) reads.
    pub fn read(&self) -> Option<FrameAccounting> {
        for _ in 0..Self::READ_ATTEMPTS {
            let seen = self.sequence.load(Ordering::Acquire);
            let done = seen / 2;
            if done == 0 {
                return None;
            }
            let mut values = [0u64; STATES];
            for (value, gauge) in values.iter_mut().zip(&self.buffers[(done % 2) as usize]) {
                *value = gauge.load(Ordering::Relaxed);
            }
            // The loads above complete before the sequence is read again.
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) < 2 * (done + 2) - 1 {
                let [total, free, fill, rx, in_flight, tx, completion] = values;
                return Some(FrameAccounting {
                    total,
                    free,
                    fill,
                    rx,
                    in_flight,
                    tx,
                    completion,
                });
            }
            std::hint::spin_loop();
        }
        None
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

    #[test]
    fn gauges_read_nothing_before_the_first_publication_then_the_last_one() {
        let gauges = FrameGauges::default();
        assert_eq!(gauges.read(), None);
        let ledger = FrameLedger {
            total: 4096,
            kernel_rx: 2048,
            in_flight: 3,
            kernel_tx: 45,
        };
        let first = ledger.snapshot(4096 - 2048 - 3 - 45, 7, 5);
        gauges.publish(&first);
        assert_eq!(gauges.read(), Some(first));
        let second = FrameLedger {
            kernel_rx: 1024,
            in_flight: 0,
            kernel_tx: 0,
            ..ledger
        }
        .snapshot(4096 - 1024, 0, 0);
        gauges.publish(&second);
        let read = gauges.read().unwrap();
        assert_eq!(read, second);
        assert_eq!(read.accounted(), 4096, "published states sum to the UMEM");
    }

    #[test]
    fn a_reader_racing_the_worker_always_gets_states_that_sum_to_the_umem() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        const TOTAL: u64 = 4096;
        let gauges = Arc::new(FrameGauges::default());
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (gauges, done) = (gauges.clone(), done.clone());
            std::thread::spawn(move || {
                let mut step = 0u64;
                while !done.load(Ordering::Relaxed) {
                    // Frames move between states on every step; the ledger always balances.
                    let kernel_rx = step % 2048;
                    let in_flight = (step * 7) % 64;
                    let kernel_tx = (step * 13) % 1024;
                    let ledger = FrameLedger {
                        total: TOTAL,
                        kernel_rx,
                        in_flight,
                        kernel_tx,
                    };
                    let free = TOTAL - kernel_rx - in_flight - kernel_tx;
                    gauges.publish(&ledger.snapshot(free, step % 17, step % 5));
                    step += 1;
                }
                step
            })
        };
        let mut reads = 0u64;
        while reads < 200_000 {
            if let Some(read) = gauges.read() {
                assert_eq!(read.total, TOTAL);
                assert!(read.is_consistent(), "torn read: {read:?}");
                reads += 1;
            }
        }
        done.store(true, Ordering::Relaxed);
        let steps = writer.join().unwrap();
        assert!(steps > 0);
    }
}
