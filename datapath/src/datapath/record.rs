//! The immutable part of a flow record, as stored in the shared flow table.
//!
//! Built once, on the flow's first packet, and never changed: the two precomputed rewrites (with their
//! checksum deltas), the uplink the flow is pinned to, and the Ethernet addresses the uplink snapshot
//! cannot supply (the LAN host's MAC). Gateway and interface MACs are *not* stored: they come from the
//! snapshot at transmit time, so a gateway MAC change takes effect for every flow at once.

use flowpin_nat::{FlowKey, IpProtocol, Rewrite};

/// A MAC address.
pub type Mac = [u8; 6];

/// How a flow's two keys relate to interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// LAN host ↔ internet through the pinned uplink: LAN-side key packets arrive on the LAN and leave on
    /// the uplink; uplink-side key packets arrive on an uplink and leave on the LAN.
    Outbound,
    /// LAN host ↔ LAN host through an external mapping (hairpinning, RFC 4787 REQ-9): both keys' packets
    /// arrive on and leave by the LAN.
    Hairpin,
}

/// What decided an outbound flow's uplink (kept for `flowpin explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Placement {
    /// The policy group's weighted choice for the flow's stickiness key (and hairpin flows, which
    /// involve no choice).
    #[default]
    Chosen,
    /// The flow's internal endpoint already held a live mapping on another member of the group: the
    /// flow joined that mapping's uplink instead of the group's choice (endpoint-independent mapping
    /// across weight changes; stickiness `endpoint` and `host` only).
    JoinedLiveMapping,
    /// Opened from outside: an inbound packet admitted by endpoint-independent filtering, on the
    /// uplink it arrived on.
    OpenedFromOutside,
    /// The group's choice refused the host a port (its fair share of a pool under pressure, or its
    /// hard quota): the flow spilled to another eligible member of the group.
    SpilledOverShare,
    /// Opened from outside through a port forward (`[[forward]]`) of the uplink it arrived on, and
    /// pinned to it: its external port is the forward's, outside the NAT range, so it holds no
    /// mapping of a port pool; [`FlowValue::policy`] holds the forward's index.
    Forwarded,
}

/// What the flow table stores per flow (immutable after insertion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowValue {
    /// Rewrite for packets carrying the LAN-side key.
    pub lan_side: Rewrite,
    /// Rewrite for packets carrying the uplink-side key (the inverse of `lan_side`).
    pub uplink_side: Rewrite,
    /// The LAN host's MAC, learnt from the flow's first packet: destination of uplink-side packets.
    pub lan_host_mac: Mac,
    /// For hairpin flows, the target host's MAC (destination of LAN-side packets); zero otherwise.
    pub peer_mac: Mac,
    /// The uplink slot whose address and port pool hold the flow's external endpoint.
    pub uplink: u8,
    /// The policy rule that placed the flow (`u8::MAX` = the default group); for a
    /// [`Placement::Forwarded`] flow, the index of its `[[forward]]`.
    pub policy: u8,
    /// Outbound or hairpin.
    pub kind: FlowKind,
    /// What decided the uplink.
    pub placement: Placement,
    /// The generation (low 32 bits) of the snapshot the flow was decided under: `flowpin explain` finds
    /// the uplink states and weights of that moment in the control plane's decision history.
    pub generation: u32,
}

// The value is copied on every lookup: keep it compact. Two rewrites of 32 bytes, two MACs, four bytes
// and the 4-byte generation make 84 bytes (no padding, no byte spare).
const _: () = assert!(std::mem::size_of::<FlowValue>() == 84);

impl FlowValue {
    /// The value of a new flow whose LAN-side packets take `lan_side`; the other direction gets its
    /// inverse. `peer_mac` is zero (set it for hairpin flows), `placement` is
    /// [`Placement::Chosen`] (set it otherwise). `generation` is the deciding snapshot's
    /// [`super::Snapshot::generation`] (truncated to 32 bits).
    pub fn new(
        lan_side: Rewrite,
        lan_host_mac: Mac,
        uplink: u8,
        policy: u8,
        kind: FlowKind,
        generation: u64,
    ) -> Self {
        Self {
            lan_side,
            uplink_side: lan_side.inverse(),
            lan_host_mac,
            peer_mac: [0; 6],
            uplink,
            policy,
            kind,
            placement: Placement::Chosen,
            generation: generation as u32,
        }
    }

    /// The LAN host's endpoint as it sent the first packet (address, port or echo id).
    pub fn internal_endpoint(&self) -> (std::net::Ipv4Addr, u16) {
        let k = self.lan_side.from();
        (k.source, k.source_port)
    }

    /// The external endpoint the LAN host's packets leave with.
    pub fn external_endpoint(&self) -> (std::net::Ipv4Addr, u16) {
        let k = self.lan_side.to();
        (k.source, k.source_port)
    }

    /// The flow's protocol.
    pub fn protocol(&self) -> IpProtocol {
        self.lan_side.from().protocol
    }

    /// The key packets from the LAN carry.
    pub fn lan_key(&self) -> FlowKey {
        self.lan_side.from()
    }

    /// The key packets from the far side carry.
    pub fn uplink_key(&self) -> FlowKey {
        self.uplink_side.from()
    }
}
