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
    for (counter, name, help) in XSK_FAMILIES {
        let mut f = family(out, name, "counter", help);
        for w in &status.workers {
            let worker = w.index.to_string();
            for socket in &w.sockets {
                let value = socket
                    .counters()
                    .iter()
                    .find(|(c, _)| *c == counter)
                    .map_or(0, |(_, n)| *n);
                f.sample(&[("worker", &worker), ("port", &socket.port)], value as f64);
            }
        }
    }
}

/// One family per kernel AF_XDP socket counter (`XDP_STATISTICS`): the kernel's name, the family's,
/// its help. Each worker's socket per port (lan or uplink name), as the worker last read them (every
/// 64 batches and when idle); they restart from 0 when a reload reopens the sockets.
const XSK_FAMILIES: [(&str, &str, &str); 6] = [
    (
        "rx_dropped",
        "flowpin_xsk_rx_dropped_total",
        "Frames the kernel dropped on receive for the AF_XDP socket (any reason).",
    ),
    (
        "rx_invalid_descs",
        "flowpin_xsk_rx_invalid_descs_total",
        "Invalid descriptors the kernel found in the AF_XDP socket's fill ring.",
    ),
    (
        "tx_invalid_descs",
        "flowpin_xsk_tx_invalid_descs_total",
        "Invalid descriptors the kernel found in the AF_XDP socket's TX ring.",
    ),
    (
        "rx_ring_full",
        "flowpin_xsk_rx_ring_full_total",
        "Frames lost because the AF_XDP socket's RX ring was full (the worker did not drain it in time).",
    ),
    (
        "rx_fill_ring_empty_descs",
        "flowpin_xsk_rx_fill_ring_empty_descs_total",
        "Frames lost because the AF_XDP socket's fill ring had no UMEM frame.",
    ),
    (
        "tx_ring_empty_descs",
        "flowpin_xsk_tx_ring_empty_descs_total",
        "Times the kernel found the AF_XDP socket's TX ring empty when it looked (not a loss).",
    ),
];

/// A worker's mean batch size since start: every frame it received was processed in one of its
/// batches. `None` before its first batch.
fn mean_batch_size(worker: &WorkerStatus) -> Option<f64> {
    (worker.batches > 0).then(|| worker.rx_frames as f64 / worker.batches as f64)
}
