//! What happens to a dead uplink's pinned flows, and moving flows back after a recovery.
//!
//! Invariants:
//! - only flows pinned to the dead uplink are touched, and only outbound ones (hairpin flows never leave
//!   by an uplink);
//! - a flow is removed from the table before its external port is released, and only by the call that
//!   removed it (so a port is never released twice nor while a worker can still translate with it);
//! - `reset` sends the RST to the LAN host *before* removing the flow, with the sequence number the host
//!   expects (its last acknowledgment, RFC 5961 §3.2), so the application sees the reset at once;
//! - nothing here sends a packet on an uplink: moved flows get a new mapping only when their next packet
//!   arrives, chosen from the snapshot in force (which no longer offers the dead uplink).
#![forbid(unsafe_code)]

use std::net::SocketAddrV4;

use flowpin_nat::originate::build_tcp_rst;
use flowpin_nat::{FlowKey, IpProtocol, MacPair, TcpPhase};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{Failback, FailbackMode, Failover, FailoverAction};
use crate::datapath::{FlowKind, FlowValue, Flows, Snapshot};

/// What one failover pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailoverReport {
    /// Flows removed so their next packet opens a new flow elsewhere.
    pub moved: u64,
    /// TCP flows reset (RST sent to the LAN host, flow removed).
    pub reset: u64,
    /// Flows left pinned (`keep`).
    pub kept: u64,
}

/// Sends TCP RSTs to LAN hosts through the router's kernel (a raw IP socket, header included): the
/// packet leaves by the LAN interface like any packet the router originates. Not per packet.
#[derive(Debug)]
pub struct RstSender {
    socket: Socket,
}

impl RstSender {
    /// Opens the raw socket (needs CAP_NET_RAW).
    pub fn open() -> std::io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?;
        socket.set_header_included_v4(true)?;
        Ok(Self { socket })
    }

    /// Resets the LAN host's side of the TCP flow `value` whose tracker words are `tracker`.
    pub fn reset(
        &self,
        value: &FlowValue,
        tracker: flowpin_nat::TcpTracker,
    ) -> std::io::Result<()> {
        let lan = value.lan_key();
        // As the host must receive it: from the remote endpoint to the host.
        let key = FlowKey {
            protocol: IpProtocol::Tcp,
            source: lan.destination,
            source_port: lan.destination_port,
            destination: lan.source,
            destination_port: lan.source_port,
        };
        let (seq, ack) = match tracker.rst_seq_towards_inside() {
            Some(seq) => (seq, tracker.outside_next_seq()),
            // The host has acknowledged nothing yet (SYN sent): an RST acceptable in SYN-SENT acks
            // its SYN (RFC 9293 §3.10.7.3); the inside word's upper half is its next sequence number.
            None => (0, Some((tracker.inside >> 32) as u32)),
        };
        let mut frame = [0u8; 64];
        let macs = MacPair {
            source: [0; 6],
            destination: [0; 6],
        };
        let len =
            build_tcp_rst(&mut frame, macs, None, key, seq, ack).map_err(std::io::Error::other)?;
        let packet = &frame[flowpin_nat::wire::ethernet::HEADER_LEN..len];
        self.socket.send_to(
            packet,
            &SockAddr::from(SocketAddrV4::new(key.destination, 0)),
        )?;
        Ok(())
    }
}

/// Fails over every outbound flow pinned to uplink `slot` per `policy`. `rst` is `None` when no raw
/// socket could be opened: `reset` flows are then only removed (the host learns of it from the remote's
/// RST or its own timeout).
pub fn fail_over(
    flows: &Flows,
    snapshot: &Snapshot,
    slot: u8,
    policy: &Failover,
    rst: Option<&RstSender>,
    now_ms: u64,
) -> FailoverReport {
    let mut report = FailoverReport::default();
    for flow in flows.table.snapshot(now_ms) {
        let value = flow.value;
        if value.uplink != slot || value.kind != FlowKind::Outbound {
            continue;
        }
        let action = match value.protocol() {
            IpProtocol::Tcp => policy.tcp,
            IpProtocol::Udp => policy.udp,
            IpProtocol::Icmp => policy.icmp,
        };
        match action {
            FailoverAction::Keep => report.kept += 1,
            FailoverAction::Move => {
                if remove_and_release(flows, snapshot, flow.handle, now_ms) {
                    report.moved += 1;
                }
            }
            FailoverAction::Reset => {
                let tracker = flows.tracker(flow.handle).map(|t| t.load());
                let closed = tracker
                    .is_some_and(|t| matches!(t.phase(), TcpPhase::Reset | TcpPhase::FinBoth));
                if let (Some(rst), Some(tracker), false) = (rst, tracker, closed)
                    && let Err(error) = rst.reset(&value, tracker)
                {
                    tracing::warn!(%error, "sending a TCP reset to the LAN host");
                }
                if remove_and_release(flows, snapshot, flow.handle, now_ms) {
                    report.reset += 1;
                }
            }
        }
    }
    report
}

/// Failback `move-after`: removes UDP flows of the configured class that sit on another uplink than
/// `slot` while the chooser now picks `slot` for them. Returns how many moved.
pub fn move_back(
    flows: &Flows,
    snapshot: &Snapshot,
    slot: u8,
    failback: &Failback,
    now_ms: u64,
) -> u64 {
    if failback.mode != FailbackMode::MoveAfter {
        return 0;
    }
    let mut moved = 0;
    for flow in flows.table.snapshot(now_ms) {
        let value = flow.value;
        let key = value.lan_key();
        if value.kind != FlowKind::Outbound
            || key.protocol != IpProtocol::Udp
            || value.uplink == slot
            || failback
                .udp_ports
                .is_some_and(|ports| !ports.contains(key.destination_port))
        {
            continue;
        }
        let chosen = snapshot.policy.decide(&key, 0).uplink;
        if chosen == Some(usize::from(slot))
            && remove_and_release(flows, snapshot, flow.handle, now_ms)
        {
            moved += 1;
        }
    }
    moved
}

fn remove_and_release(
    flows: &Flows,
    snapshot: &Snapshot,
    handle: flowpin_flowtable::FlowHandle,
    now_ms: u64,
) -> bool {
    let Some(value) = flows.table.remove(handle) else {
        return false;
    };
    snapshot.release_mapping(&value, now_ms);
    true
}
