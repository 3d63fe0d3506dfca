//! What happens to a dead uplink's pinned flows, to the flows an uplink's address change (DHCP renewal)
//! left with the old address, and moving flows back after a recovery.
//!
//! Invariants:
//! - only flows pinned to the dead uplink are touched — or, after an address change, only those of the
//!   renumbered uplink whose external address is not its current one — and only outbound ones (hairpin
//!   flows never leave by an uplink);
//! - a flow is removed from the table before its external port is released, and only by the call that
//!   removed it (so a port is never released twice nor while a worker can still translate with it);
//! - `reset` sends the RST to the LAN host *before* removing the flow, with the sequence number the host
//!   expects (its last acknowledgment, RFC 5961 §3.2), so the application sees the reset at once;
//! - nothing here sends a packet on an uplink: moved flows get a new mapping only when their next packet
//!   arrives, chosen from the snapshot in force (which no longer offers the dead uplink).

use std::net::{Ipv4Addr, SocketAddrV4};

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

    /// Opens a raw socket whose packets leave by uplink `interface` from its `address`: bound to the
    /// device and the address, so the uplink's source route (the rule `from ADDRESS oif INTERFACE`,
    /// installed while the uplink is probed) sends them to its gateway.
    pub fn open_on_uplink(interface: &str, address: Ipv4Addr) -> std::io::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?;
        socket.set_header_included_v4(true)?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.bind(&SockAddr::from(SocketAddrV4::new(address, 0)))?;
        Ok(Self { socket })
    }

    /// Resets the remote's side of the outbound TCP flow `value` (tracker words `tracker`): an RST
    /// from the flow's external endpoint to the remote, with the sequence number the remote expects
    /// (its last acknowledgment, or the host's next sequence number when it acknowledged nothing).
    /// Returns `false` when the tracker knows neither (nothing was sent, so nothing to reset). Send it
    /// through a socket of [`RstSender::open_on_uplink`] for the flow's uplink.
    pub fn reset_remote(
        &self,
        value: &FlowValue,
        tracker: flowpin_nat::TcpTracker,
    ) -> std::io::Result<bool> {
        let lan = value.lan_key();
        let (external, external_port) = value.external_endpoint();
        let key = FlowKey {
            protocol: IpProtocol::Tcp,
            source: external,
            source_port: external_port,
            destination: lan.destination,
            destination_port: lan.destination_port,
        };
        let Some(seq) = tracker
            .rst_seq_towards_outside()
            .or(tracker.inside_next_seq())
        else {
            return Ok(false);
        };
        self.send(key, seq, tracker.outside_next_seq())?;
        Ok(true)
    }

    /// Builds the RST of `key` and sends it to its destination.
    fn send(&self, key: FlowKey, seq: u32, ack: Option<u32>) -> std::io::Result<()> {
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
        self.send(key, seq, ack)
    }
}

/// Which outbound flows of an uplink a failover pass takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selection {
    /// Every one (the uplink went down or was removed).
    All,
    /// Those whose external address is not this one, the uplink's current address (it changed).
    NotFrom(Ipv4Addr),
}

/// What a removed flow's last reference does to its external port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortRelease {
    /// Quarantined (RFC 6888 REQ-8): the address is still the uplink's.
    Quarantine,
    /// Free at once: the flow's address is no longer the uplink's, no remote can reach the port on it.
    Free,
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
    fail_over_selected(
        flows,
        snapshot,
        (slot, Selection::All),
        policy,
        PortRelease::Quarantine,
        rst,
        now_ms,
    )
}

/// After uplink `slot`'s address changed (a DHCP renewal brought another one): fails over its outbound
/// flows that still leave with an address other than its address in `snapshot` (the new one), per
/// `policy` with `keep` acting as `move` (the old address is gone: a kept flow gets no answer). Their
/// ports are freed without quarantine, since nothing can reach them on the old address any more. A
/// no-op when `snapshot` has no view of the uplink.
pub fn fail_over_renumbered(
    flows: &Flows,
    snapshot: &Snapshot,
    slot: u8,
    policy: &Failover,
    rst: Option<&RstSender>,
    now_ms: u64,
) -> FailoverReport {
    let Some(current) = snapshot.uplink(slot).map(|u| u.address) else {
        return FailoverReport::default();
    };
    fail_over_selected(
        flows,
        snapshot,
        (slot, Selection::NotFrom(current)),
        &policy.keep_as_move(),
        PortRelease::Free,
        rst,
        now_ms,
    )
}

fn fail_over_selected(
    flows: &Flows,
    snapshot: &Snapshot,
    (slot, selection): (u8, Selection),
    policy: &Failover,
    release: PortRelease,
    rst: Option<&RstSender>,
    now_ms: u64,
) -> FailoverReport {
    let mut report = FailoverReport::default();
    for flow in flows.table.live_flows(now_ms) {
        let value = flow.value;
        if value.uplink != slot || value.kind != FlowKind::Outbound {
            continue;
        }
        if let Selection::NotFrom(current) = selection
            && value.external_endpoint().0 == current
        {
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
                if remove_and_release(flows, snapshot, flow.handle, release, now_ms) {
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
                if remove_and_release(flows, snapshot, flow.handle, release, now_ms) {
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
    for flow in flows.table.live_flows(now_ms) {
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
            && remove_and_release(
                flows,
                snapshot,
                flow.handle,
                PortRelease::Quarantine,
                now_ms,
            )
        {
            moved += 1;
        }
    }
    moved
}

/// Removes flow `handle` from the table and releases its mapping per `release`; `false` when another
/// call removed it first (then that call released it).
pub(crate) fn remove_and_release(
    flows: &Flows,
    snapshot: &Snapshot,
    handle: flowpin_flowtable::FlowHandle,
    release: PortRelease,
    now_ms: u64,
) -> bool {
    let Some(value) = flows.remove(handle) else {
        return false;
    };
    match release {
        PortRelease::Quarantine => snapshot.release_mapping(&value, now_ms),
        // The same release as an unanswered flow's: the last reference frees the port at once.
        PortRelease::Free => snapshot.release_unanswered_mapping(&value, now_ms),
    }
    true
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use flowpin_nat::{FlowKey, IpProtocol, Rewrite};

    use super::*;
    use crate::config::FailoverAction;
    use crate::control::snapshot::{SnapshotBuilder, UplinkFacts};
    use crate::datapath::LanView;

    const CONFIG: &str = r#"
[lan]
interface = "lan0"
prefixes = ["10.77.0.0/24"]
[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "198.51.100.1"
[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.9"
[nat]
port_range = "20000-29999"
"#;
    const OLD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const NEW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);
    const ISP2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

    /// A snapshot whose isp1 has `isp1_address` (the pools carry over between builds).
    fn snapshot(builder: &mut SnapshotBuilder, isp1_address: Ipv4Addr) -> Snapshot {
        let config = crate::config::parse(CONFIG, "t.toml", None).unwrap();
        let facts = [isp1_address, ISP2]
            .iter()
            .enumerate()
            .map(|(i, &address)| {
                Some(UplinkFacts {
                    address,
                    mac: [2, 0, 0, 0, 0, i as u8],
                    gateway_mac: Some([2, 0, 0, 0, 1, i as u8]),
                    mtu: 1500,
                    eligible: true,
                })
            })
            .collect::<Vec<_>>();
        let lan = LanView {
            mac: [2, 0, 0, 0, 9, 9],
            address: Ipv4Addr::new(10, 77, 0, 1),
            mtu: 1500,
            prefixes: config.lan.prefixes.clone(),
        };
        builder.build(&config, lan, &facts, Vec::new())
    }

    /// Pins a flow from LAN port `port` to uplink `slot` under `snapshot`, as the datapath does: a
    /// port from the uplink's pool, the uplink's current address, the flow counted against its host.
    /// Returns its external port.
    fn pin(flows: &Flows, snapshot: &Snapshot, slot: u8, protocol: IpProtocol, port: u16) -> u16 {
        let key = FlowKey {
            protocol,
            source: Ipv4Addr::new(10, 77, 0, 11),
            source_port: port,
            destination: Ipv4Addr::new(203, 0, 113, 10),
            // An echo flow's key carries its identifier as both ports.
            destination_port: if protocol == IpProtocol::Icmp {
                port
            } else {
                443
            },
        };
        let uplink = snapshot.uplink(slot).unwrap();
        let external = uplink
            .nat
            .pool(protocol)
            .acquire(key.source, port, 0)
            .unwrap();
        let translated = FlowKey {
            source: uplink.address,
            source_port: external,
            destination_port: if protocol == IpProtocol::Icmp {
                external
            } else {
                key.destination_port
            },
            ..key
        };
        let rewrite = Rewrite::new(key, translated).unwrap();
        let value = FlowValue::new(
            rewrite,
            [2, 0, 0, 0, 0, 7],
            slot,
            u8::MAX,
            FlowKind::Outbound,
            snapshot.generation,
        );
        flows.hosts.take_in_place(key.source).unwrap();
        flows
            .table
            .insert_if_absent(value.lan_key(), value.uplink_key(), value, 0)
            .unwrap();
        external
    }

    #[test]
    fn after_an_address_change_only_the_old_addresss_flows_fail_over_and_their_ports_are_free() {
        let mut builder = SnapshotBuilder::new(1, Default::default());
        let flows = Flows::with_capacity(64).unwrap();
        let before = snapshot(&mut builder, OLD);
        let old_tcp = pin(&flows, &before, 0, IpProtocol::Tcp, 40000);
        let old_udp = pin(&flows, &before, 0, IpProtocol::Udp, 40001);
        let old_icmp = pin(&flows, &before, 0, IpProtocol::Icmp, 7);
        pin(&flows, &before, 1, IpProtocol::Udp, 40002);
        let after = snapshot(&mut builder, NEW);
        let new_udp = pin(&flows, &after, 0, IpProtocol::Udp, 40003);
        // `keep` cannot keep a flow whose address is gone: it moves.
        let policy = Failover {
            icmp: FailoverAction::Keep,
            ..Failover::default()
        };

        let report = fail_over_renumbered(&flows, &after, 0, &policy, None, 1000);

        assert_eq!(
            report,
            FailoverReport {
                moved: 2,
                reset: 1,
                kept: 0
            }
        );
        let left: Vec<(u8, Ipv4Addr)> = flows
            .table
            .live_flows(1000)
            .map(|f| (f.value.uplink, f.value.external_endpoint().0))
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(
            left.contains(&(0, NEW)) && left.contains(&(1, ISP2)),
            "{left:?}"
        );
        let pools = &after.uplink(0).unwrap().nat;
        for (protocol, port) in [
            (IpProtocol::Tcp, old_tcp),
            (IpProtocol::Udp, old_udp),
            (IpProtocol::Icmp, old_icmp),
        ] {
            let pool = pools.pool(protocol);
            assert_eq!(pool.owner_of(port), None, "{protocol:?} {port}");
            assert!(!pool.is_quarantined(port, 1000), "{protocol:?} {port}");
        }
        assert_eq!(pools.udp.references(new_udp), 1, "the new address's flow");
        assert_eq!(
            flows.hosts.held(Ipv4Addr::new(10, 77, 0, 11)),
            2,
            "the host's count follows the flows failed over"
        );
        // A second pass finds nothing more.
        assert_eq!(
            fail_over_renumbered(&flows, &after, 0, &policy, None, 2000),
            FailoverReport::default()
        );
    }

    #[test]
    fn a_dead_uplinks_failover_still_quarantines_its_ports() {
        let mut builder = SnapshotBuilder::new(1, Default::default());
        let flows = Flows::with_capacity(64).unwrap();
        let snapshot = snapshot(&mut builder, OLD);
        let port = pin(&flows, &snapshot, 0, IpProtocol::Udp, 40001);
        let report = fail_over(&flows, &snapshot, 0, &Failover::default(), None, 1000);
        assert_eq!(report.moved, 1);
        assert_eq!(flows.hosts.live(), 0, "the host left with its last flow");
        assert!(
            snapshot
                .uplink(0)
                .unwrap()
                .nat
                .udp
                .is_quarantined(port, 1000)
        );
    }
}
