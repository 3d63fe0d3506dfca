//! Counters of a worker's AF_XDP I/O (plain integers: a worker is single-threaded).

/// Per-port packet counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames queued for transmission.
    pub tx_packets: u64,
    /// Bytes queued for transmission.
    pub tx_bytes: u64,
    /// Frames dropped because the port's TX queue was full.
    pub tx_dropped_ring_full: u64,
    /// Frames refused for transmission (length under an Ethernet header): recycled.
    pub tx_dropped_invalid: u64,
    /// Transmissions completed by the kernel.
    pub tx_completed: u64,
    /// `sendto()` wakeups issued.
    pub tx_kicks: u64,
    /// `sendto()` wakeups that failed with a real error (not EAGAIN/EBUSY/ENOBUFS).
    pub tx_kick_errors: u64,
    /// Times the fill ring could not be topped up because the free pool was empty.
    pub fill_starved: u64,
}

/// Worker-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Frames recycled by the datapath's drop verdict.
    pub recycled: u64,
    /// `alloc_frame` calls that found the free pool at its reserve... or empty.
    pub alloc_failed: u64,
}
