//! One AF_XDP socket of a worker: one (interface, queue), with its own four rings.
//!
//! Invariants: the fill and completion rings belong to this (device, queue) only — frames given
//! to this fill ring come back on this port's RX ring, descriptors put on this TX ring come back
//! on this completion ring. `kernel_rx` counts the frames given to the fill ring and not yet
//! received, exactly. `staged` never exceeds its capacity (the TX ring size), so it never
//! allocates. On a device without a link layer (`link_header_skip` 14) a frame is transmitted from
//! after its Ethernet header, so the descriptor's address is the frame's plus 14 (the completion
//! ring gives it back masked to the chunk).

use std::collections::VecDeque;
use std::os::fd::RawFd;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, RingRx, RingTx, User};

use super::PortCounters;

/// A bound AF_XDP socket and its rings.
pub(super) struct Port {
    pub name: String,
    pub ifindex: u32,
    pub queue: u32,
    pub fd: RawFd,
    pub zerocopy: bool,
    pub tx_budget: u32,
    pub device: DeviceQueue,
    pub rx: RingRx,
    pub tx: RingTx,
    pub user: User,
    /// Descriptors accepted by `transmit` and not yet in the TX ring.
    pub staged: VecDeque<XdpDesc>,
    /// Frames given to the fill ring and not yet received.
    pub kernel_rx: u64,
    pub counters: PortCounters,
    /// Bytes of each frame's head not transmitted: 14 (the synthetic Ethernet header) on a device
    /// without a link layer, 0 on Ethernet.
    pub link_header_skip: u32,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("queue", &self.queue)
            .field("fd", &self.fd)
            .field("zerocopy", &self.zerocopy)
            .field("staged", &self.staged.len())
            .field("kernel_rx", &self.kernel_rx)
            .finish_non_exhaustive()
    }
}
