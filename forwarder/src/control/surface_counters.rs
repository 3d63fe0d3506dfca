//! What the control surfaces (the control socket and the metrics endpoint) refused, displaced or
//! timed out: the figures behind their limits, shown by `flowpin status` and the metrics.
//!
//! Invariants: counters only grow; `api_connections_open` is a gauge kept by the connections' own
//! slot guards; relaxed atomics (read by reports only, never per packet).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The live counters, shared by the servers and the daemon's reports.
#[derive(Debug, Default)]
pub struct SurfaceCounters {
    /// Control connections holding a slot now.
    pub api_connections_open: AtomicU64,
    /// Control connections admitted.
    pub api_connections_accepted: AtomicU64,
    /// Waiting control connections closed to make room for a new one while every slot was taken.
    pub api_connections_displaced: AtomicU64,
    /// Control connections refused because every slot was serving a request.
    pub api_connections_refused: AtomicU64,
    /// Control requests refused for a line over the limit.
    pub api_requests_too_long: AtomicU64,
    /// Control connections closed because a request or an answer missed its deadline.
    pub api_timeouts: AtomicU64,
    /// Metrics requests by answer.
    pub metrics_ok: AtomicU64,
    /// Metrics requests for another path (404).
    pub metrics_not_found: AtomicU64,
    /// Metrics requests with another method than GET or HEAD (405).
    pub metrics_bad_method: AtomicU64,
    /// Metrics requests that were not HTTP, or whose head exceeded the limit (400).
    pub metrics_bad_request: AtomicU64,
    /// Metrics clients refused (503) because the client limit was reached.
    pub metrics_refused: AtomicU64,
    /// Metrics connections closed because the request or the answer missed its deadline.
    pub metrics_timeouts: AtomicU64,
}

/// Adds one to `counter`.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The counters as `flowpin status` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurfaceStatus {
    /// Control connections holding a slot now.
    pub api_connections_open: u64,
    /// Control connections admitted since start.
    pub api_connections_accepted: u64,
    /// Waiting control connections closed to make room for a new one.
    pub api_connections_displaced: u64,
    /// Control connections refused: every slot was serving a request.
    pub api_connections_refused: u64,
    /// Control request lines refused for their length.
    pub api_requests_too_long: u64,
    /// Control connections closed at a read or write deadline.
    pub api_timeouts: u64,
    /// Metrics answers 200.
    pub metrics_ok: u64,
    /// Metrics answers 404.
    pub metrics_not_found: u64,
    /// Metrics answers 405.
    pub metrics_bad_method: u64,
    /// Metrics answers 400.
    pub metrics_bad_request: u64,
    /// Metrics answers 503 (client limit).
    pub metrics_refused: u64,
    /// Metrics connections closed at a read or write deadline.
    pub metrics_timeouts: u64,
}

impl SurfaceCounters {
    /// A reading of every counter.
    pub fn report(&self) -> SurfaceStatus {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SurfaceStatus {
            api_connections_open: get(&self.api_connections_open),
            api_connections_accepted: get(&self.api_connections_accepted),
            api_connections_displaced: get(&self.api_connections_displaced),
            api_connections_refused: get(&self.api_connections_refused),
            api_requests_too_long: get(&self.api_requests_too_long),
            api_timeouts: get(&self.api_timeouts),
            metrics_ok: get(&self.metrics_ok),
            metrics_not_found: get(&self.metrics_not_found),
            metrics_bad_method: get(&self.metrics_bad_method),
            metrics_bad_request: get(&self.metrics_bad_request),
            metrics_refused: get(&self.metrics_refused),
            metrics_timeouts: get(&self.metrics_timeouts),
        }
    }
}
