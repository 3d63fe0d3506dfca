//! The traffic patterns of the lab benchmark: what each sends and what it measures.
//!
//! Invariants: the SYN flood runs last in a full run (it leaves both routers' tables full); a workload
//! that sizes the routers' tables sizes flowpin's flow capacity and K1's `nf_conntrack_max` alike.

use serde::{Deserialize, Serialize};

use crate::generator::GenProtocol;

/// Both routers' table size in the new-flow workload: more than a run of it creates (at most 7 trials
/// of ≤ 1.5 s at the generator's ceiling, < 0.5 Mpps here), so neither table fills.
pub const NEW_FLOW_TABLE: u32 = 4 << 20;
/// Both routers' table size in the SYN-flood workload: small, so the flood fills it at once.
pub const SYN_FLOOD_TABLE: u32 = 8192;

/// What a workload measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// Forwarding of `flows` established flows (rate search for ≤ 0.5 % loss, latency).
    Established,
    /// A new flow on every packet: the flow setup rate (rate search), tables sized not to fill.
    NewFlows,
    /// An unthrottled flood of new flows against small tables while an established flow and fresh
    /// connections run beside it (O and K1 only).
    SynFlood,
}

/// A traffic pattern.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Name in reports.
    pub name: &'static str,
    /// Frame length without FCS.
    pub frame_len: usize,
    /// Established flows (ignored for new-flow workloads).
    pub flows: u32,
    /// What it measures.
    pub kind: WorkloadKind,
    /// UDP or TCP SYN.
    pub protocol: GenProtocol,
    /// Flows in flowpin's table and in K1's conntrack (`nf_conntrack_max`); `None`: the lab's flowpin
    /// capacity and the machine's conntrack limit.
    pub table: Option<u32>,
}

impl Workload {
    /// Whether every packet starts a new flow.
    pub fn new_flow_per_packet(&self) -> bool {
        self.kind != WorkloadKind::Established
    }
}

/// The workloads of the full run (the SYN flood last: it leaves both tables full).
pub const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "64B 1k flows",
        frame_len: 60,
        flows: 1_000,
        kind: WorkloadKind::Established,
        protocol: GenProtocol::Udp,
        table: None,
    },
    Workload {
        name: "64B 100k flows",
        frame_len: 60,
        flows: 100_000,
        kind: WorkloadKind::Established,
        protocol: GenProtocol::Udp,
        table: None,
    },
    Workload {
        name: "1518B 1k flows",
        frame_len: 1514,
        flows: 1_000,
        kind: WorkloadKind::Established,
        protocol: GenProtocol::Udp,
        table: None,
    },
    Workload {
        name: "64B new flow per packet",
        frame_len: 60,
        flows: 0,
        kind: WorkloadKind::NewFlows,
        protocol: GenProtocol::Udp,
        table: Some(NEW_FLOW_TABLE),
    },
    SYN_FLOOD,
];

/// The SYN flood beside an established flow.
pub const SYN_FLOOD: Workload = Workload {
    name: "64B TCP SYN flood beside an established flow",
    frame_len: 60,
    flows: 0,
    kind: WorkloadKind::SynFlood,
    protocol: GenProtocol::TcpSyn,
    table: Some(SYN_FLOOD_TABLE),
};
