//! The per-worker families: frames, batches, translations, UMEM frame states and the kernel's
//! AF_XDP socket counters, labelled by worker index (and port and state where they split).

use super::text::family;
use crate::control::api::{StatusReport, WorkerStatus};

/// A per-worker counter family: name, help, and the worker's value.
type WorkerCounter = (&'static str, &'static str, fn(&WorkerStatus) -> u64);

/// The per-worker counters, in exposition order.
const COUNTERS: [WorkerCounter; 6] = [
    (
        "flowpin_worker_rx_frames_total",
        "Frames the worker received.",
        |w| w.rx_frames,
    ),
    (
        "flowpin_worker_tx_frames_total",
        "Frames the worker queued for transmission (refused ones are counted as drops).",
        |w| w.tx_frames,
    ),
    (
        "flowpin_worker_batches_total",
        "Batches the worker processed.",
        |w| w.batches,
    ),
    (
        "flowpin_worker_outbound_packets_total",
        "Packets the worker received on the LAN and translated out of an uplink.",
        |w| w.outbound_packets,
    ),
    (
        "flowpin_worker_inbound_packets_total",
        "Packets the worker received on an uplink and translated to the LAN (replies arrive on the queue the uplink's RSS picks, whichever worker created the flow).",
        |w| w.inbound_packets,
    ),
    (
        "flowpin_worker_flows_created_total",
        "Flows the worker created.",
        |w| w.flows_created,
    ),
];

/// Writes every per-worker family of `status`.
pub(super) fn write(out: &mut String, status: &StatusReport) {
    for (name, help, field) in COUNTERS {
        let mut f = family(out, name, "counter", help);
        for w in &status.workers {
            f.sample(&[("worker", &w.index.to_string())], field(w) as f64);
        }
    }
    let mut f = family(
        out,
        "flowpin_worker_batch_size_mean",
        "gauge",
        "Mean frames per received batch since start; rate(flowpin_worker_rx_frames_total) / rate(flowpin_worker_batches_total) gives it over any window.",
    );
    for w in &status.workers {
        if let Some(mean) = mean_batch_size(w) {
            f.sample(&[("worker", &w.index.to_string())], mean);
        }
    }
    let mut f = family(
        out,
        "flowpin_worker_frames",
        "gauge",
        "UMEM frames of the worker in each state (free, fill, rx, in_flight, tx, completion; they sum to flowpin_worker_umem_frames), as the worker last published them (every 64 batches and when idle).",
    );
    for w in &status.workers {
        if let Some(frames) = &w.frames {
            let worker = w.index.to_string();
            for (state, n) in frames.states() {
                f.sample(&[("worker", &worker), ("state", state)], n as f64);
            }
        }
    }
    let mut f = family(
        out,
        "flowpin_worker_umem_frames",
        "gauge",
        "Frames in the worker's UMEM.",
    );
    for w in &status.workers {
        if let Some(frames) = &w.frames {
            f.sample(&[("worker", &w.index.to_string())], frames.total as f64);
        }
    }
    let mut f = family(
        out,
        "flowpin_xsk_kernel_total",
        "counter",
        "The kernel's counters of each worker's AF_XDP socket per port (lan or uplink name), as the worker last read them (every 64 batches and when idle): rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full (frames lost: the worker did not drain the RX ring in time), rx_fill_ring_empty_descs (frames lost: no UMEM frame in the fill ring), tx_ring_empty_descs. They restart from 0 when a reload reopens the sockets.",
    );
    for w in &status.workers {
        let worker = w.index.to_string();
        for socket in &w.sockets {
            for (counter, n) in socket.counters() {
                f.sample(
                    &[
                        ("worker", &worker),
                        ("port", &socket.port),
                        ("counter", counter),
                    ],
                    n as f64,
                );
            }
        }
    }
}

/// A worker's mean batch size since start: every frame it received was processed in one of its
/// batches. `None` before its first batch.
fn mean_batch_size(worker: &WorkerStatus) -> Option<f64> {
    (worker.batches > 0).then(|| worker.rx_frames as f64 / worker.batches as f64)
}
