//! What the state file holds, as plain values (no layout, no I/O).
//!
//! - Uplinks are named: a flow refers to the file's uplink entry, whose name finds the uplink (and
//!   its slot) under the configuration of the run that restores it.
//! - Times are daemon milliseconds ([`crate::worker::Clock`]: `CLOCK_MONOTONIC`), valid within one
//!   boot; `boot_id` tells another boot's file apart.
//! - Nothing here is trusted on load: the restore checks every flow against the running snapshot.

use std::net::Ipv4Addr;

use flowpin_nat::{AllocatorSecret, FlowKey, IpProtocol, TcpTracker};

use crate::datapath::{FlowKind, Mac, Placement};

/// The whole saved state of one daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    /// The kernel's boot id when it was saved (`/proc/sys/kernel/random/boot_id`, 16 bytes).
    pub boot_id: [u8; 16],
    /// Daemon time of the save.
    pub saved_at_ms: u64,
    /// The stickiness hash's secret seed.
    pub stickiness_seed: u64,
    /// The uplinks the flows and quarantines refer to.
    pub uplinks: Vec<SavedUplink>,
    /// The live flows.
    pub flows: Vec<FileFlow>,
    /// The running port quarantines (RFC 6888 REQ-8).
    pub quarantines: Vec<FileQuarantine>,
}

/// One uplink: its name, its NAT address then, and its pools' secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedUplink {
    /// The file's own index of the uplink (what flows and quarantines refer to).
    pub id: u16,
    /// The configured name.
    pub name: String,
    /// The external address its pools handed ports out for.
    pub address: Ipv4Addr,
    /// The TCP, UDP and ICMP pools' secrets.
    pub secrets: [AllocatorSecret; 3],
}

/// One flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFlow {
    /// The uplink's [`SavedUplink::id`].
    pub uplink: u16,
    /// The LAN-side key as it arrives.
    pub lan_from: FlowKey,
    /// The LAN-side key as it leaves (its source: the external endpoint).
    pub lan_to: FlowKey,
    /// The LAN host's MAC.
    pub lan_host_mac: Mac,
    /// The hairpin target's MAC (zero otherwise).
    pub peer_mac: Mac,
    /// The placing policy rule.
    pub policy: u8,
    /// Outbound or hairpin.
    pub kind: FlowKind,
    /// What decided the uplink.
    pub placement: Placement,
    /// The deciding snapshot's generation (low 32 bits).
    pub generation: u32,
    /// The table's protocol-state word.
    pub protocol_state: u64,
    /// Last seen (daemon ms).
    pub last_seen_ms: u64,
    /// The TCP tracker's words (zero for UDP and ICMP).
    pub tcp: TcpTracker,
}

/// One running quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileQuarantine {
    /// The uplink's [`SavedUplink::id`].
    pub uplink: u16,
    /// Which of its pools.
    pub protocol: IpProtocol,
    /// The port.
    pub port: u16,
    /// When it ends (daemon ms).
    pub until_ms: u64,
}
