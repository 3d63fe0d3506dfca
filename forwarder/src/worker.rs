//! A datapath worker: one thread, one queue, one AF_XDP UMEM shared by its LAN and uplink sockets.
//!
//! Each loop iteration: receive a batch; read `now` once; load the control plane's snapshot once; parse
//! the batch and look all its flows up at once; run the sans-IO pipeline on every frame; queue each frame for transmission on its egress port or recycle
//! it; flush the rings once. When nothing arrives it sleeps in `poll()` (idle = poll) or spins
//! (idle = busy-poll). No allocation, lock, syscall (other than the ring wakeups) or log per packet.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::config::IdleStrategy;
use crate::datapath::{
    BATCH, DatapathCounters, DropReason, Flows, Pipeline, PortId, PreparedBatch, SnapshotCell,
    Verdict,
};
use crate::xsk::{self, XskWorker};

/// How long an idle worker sleeps in `poll()` before looking at the stop flag again.
const IDLE_POLL_MS: i32 = 100;

/// The time base every worker and the control plane share: milliseconds since the daemon started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Milliseconds since start (never 0, so 0 can mean "never").
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }
}

/// What a worker shares with the others and the control plane.
#[derive(Debug, Clone)]
pub struct WorkerShared {
    /// The current snapshot.
    pub snapshot: Arc<SnapshotCell>,
    /// The flow table.
    pub flows: Arc<Flows>,
    /// Set to stop every worker.
    pub stop: Arc<AtomicBool>,
    /// The common time base.
    pub clock: Clock,
}

/// Runs a worker until `shared.stop` is set. `xsk`'s ports must be in datapath port order: the LAN
/// first, then uplink slot 0, 1, ... (so an xsk port index equals the datapath [`PortId`]).
pub fn run(
    mut xsk: XskWorker,
    shared: WorkerShared,
    counters: Arc<DatapathCounters>,
    idle: IdleStrategy,
) -> XskWorker {
    let mut batch = Vec::with_capacity(BATCH);
    let mut prepared = PreparedBatch::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let received = xsk.receive(BATCH, &mut batch);
        if received == 0 {
            xsk.flush();
            match idle {
                IdleStrategy::Poll if !xsk.tx_outstanding() => {
                    let _ = xsk.wait(IDLE_POLL_MS);
                }
                _ => std::hint::spin_loop(),
            }
            continue;
        }
        let snapshot = shared.snapshot.load();
        let pipeline = Pipeline {
            now_ms: shared.clock.now_ms(),
            snapshot: &snapshot,
            flows: &shared.flows,
            counters: &counters,
        };
        counters.batches.add(1);
        prepared.clear();
        for frame in &batch {
            prepared.push(xsk.data(frame));
        }
        pipeline.look_up(&mut prepared);
        for (index, mut frame) in batch.drain(..).enumerate() {
            let Some(rx) = frame.rx_port() else {
                xsk.recycle(frame);
                continue;
            };
            let ingress = PortId(rx.0 as u8);
            let start = frame.start() as usize;
            let len = frame.len() as usize;
            let verdict = {
                let chunk = xsk.chunk_mut(&mut frame);
                pipeline.process_prepared(&prepared, index, ingress, &mut chunk[start..], len)
            };
            match verdict {
                Verdict::Transmit { port, len } => {
                    if !frame.set_len(len as u32)
                        || !xsk.transmit(frame, xsk::PortId(u16::from(port.0)))
                    {
                        counters.count_drop(DropReason::TxRingFull);
                    }
                }
                Verdict::Drop(_) => xsk.recycle(frame),
            }
        }
        xsk.flush();
    }
    xsk
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_reads_zero_and_never_goes_back() {
        let c = Clock::start();
        let a = c.now_ms();
        let b = c.now_ms();
        assert!(a >= 1 && b >= a);
    }
}
