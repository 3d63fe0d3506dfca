//! What the datapath decides for one frame.

use super::counters::DropReason;

/// A worker's ports: index 0 is the LAN interface, index `1 + k` is uplink slot `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u8);

impl PortId {
    /// The LAN interface's port.
    pub const LAN: PortId = PortId(0);

    /// The port of uplink slot `slot`.
    pub const fn uplink(slot: u8) -> PortId {
        PortId(slot + 1)
    }

    /// The uplink slot of this port, `None` for the LAN port.
    pub const fn uplink_slot(self) -> Option<u8> {
        match self.0 {
            0 => None,
            n => Some(n - 1),
        }
    }
}

/// The fate of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the (rewritten) frame on `port`; its first `len` bytes are the packet.
    Transmit {
        /// Egress port.
        port: PortId,
        /// Frame length after the rewrite (a generated ICMP error may be longer or shorter).
        len: usize,
    },
    /// Drop the frame; the reason has been counted.
    Drop(DropReason),
    /// A later IPv4 fragment copied aside until its first fragment comes: the frame itself is free
    /// (its fate is counted when it is released or expires).
    Held,
}

impl Verdict {
    /// The egress port of a transmit verdict, `None` for a drop.
    pub const fn port(self) -> Option<PortId> {
        match self {
            Verdict::Transmit { port, .. } => Some(port),
            Verdict::Drop(_) | Verdict::Held => None,
        }
    }
}
