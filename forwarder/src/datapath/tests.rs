//! Pipeline tests without root: real frames (built by `flowpin-nat`'s frame builder), a real snapshot
//! built from a real configuration, the real flow table and port pools.

use std::net::Ipv4Addr;

use flowpin_nat::frame_builder::{FrameSpec, L4Spec, build_frame};
use flowpin_nat::parse_frame;
use flowpin_nat::verify::checksums_valid;

use super::*;
use crate::control::snapshot::{SnapshotBuilder, UplinkFacts};
use crate::select::KeyHasher;

const LAN_MAC: Mac = [0x02, 0xaa, 0, 0, 0, 1];
const HOST_MAC: Mac = [0x02, 0x11, 0, 0, 0, 11];
const HOST2_MAC: Mac = [0x02, 0x11, 0, 0, 0, 12];
const WAN_MAC: [Mac; 2] = [[0x02, 0xbb, 0, 0, 0, 1], [0x02, 0xbb, 0, 0, 0, 2]];
const GW_MAC: [Mac; 2] = [[0x02, 0xcc, 0, 0, 0, 1], [0x02, 0xcc, 0, 0, 0, 2]];
const WAN_ADDR: [[u8; 4]; 2] = [[198, 51, 100, 2], [198, 51, 100, 10]];
const HOST: [u8; 4] = [10, 77, 0, 11];
const HOST2: [u8; 4] = [10, 77, 0, 12];
const SERVER: [u8; 4] = [203, 0, 113, 10];

const CONFIG: &str = r#"
[lan]
interface = "lan0"
prefixes = ["10.77.0.0/24"]

[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "198.51.100.1"
weight = 1

[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.9"
weight = 1

[nat]
port_range = "20000-29999"
"#;

struct Rig {
    snapshot: Snapshot,
    flows: Flows,
    counters: DatapathCounters,
    now_ms: u64,
    config: crate::config::Config,
    builder: SnapshotBuilder,
    gateways_resolved: bool,
}

const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

impl Rig {
    fn new(config: &str, gateways_resolved: bool) -> Self {
        let config = crate::config::parse(config, "test.toml", None).expect("valid config");
        let mut builder = SnapshotBuilder::new(KeyHasher::from_seed(7));
        let snapshot = Self::snapshot(&mut builder, &config, gateways_resolved, true);
        Rig {
            snapshot,
            flows: Flows::with_capacity(1 << 12).unwrap(),
            counters: DatapathCounters::default(),
            now_ms: 1_000_000,
            config,
            builder,
            gateways_resolved,
        }
    }

    fn snapshot(
        builder: &mut SnapshotBuilder,
        config: &crate::config::Config,
        gateways_resolved: bool,
        eligible: bool,
    ) -> Snapshot {
        let facts: Vec<_> = (0..config.uplinks.len())
            .map(|i| {
                Some(UplinkFacts {
                    address: Ipv4Addr::from(WAN_ADDR[i]),
                    mac: WAN_MAC[i],
                    gateway_mac: gateways_resolved.then_some(GW_MAC[i]),
                    mtu: 1500,
                    eligible,
                })
            })
            .collect();
        let lan = LanView {
            mac: LAN_MAC,
            address: LAN_ADDR,
            mtu: 1500,
            prefixes: config.lan.prefixes.clone(),
        };
        builder.build(
            config,
            lan,
            &facts,
            vec![
                (Ipv4Addr::from(HOST), HOST_MAC),
                (Ipv4Addr::from(HOST2), HOST2_MAC),
            ],
        )
    }

    /// Publishes a snapshot in which every uplink is (or none is) eligible for new flows, as the control
    /// plane does when health changes; flows and port pools carry over.
    fn set_eligible(&mut self, eligible: bool) {
        self.snapshot = Self::snapshot(
            &mut self.builder,
            &self.config,
            self.gateways_resolved,
            eligible,
        );
    }

    /// Sums one per-uplink counter over the uplinks.
    fn uplink_sum(&self, f: fn(&super::counters::UplinkCounters) -> u64) -> u64 {
        self.counters.uplinks.iter().map(f).sum()
    }

    fn process(&self, ingress: PortId, frame: &mut Vec<u8>) -> Verdict {
        let len = frame.len();
        frame.resize(2048, 0);
        let verdict = Pipeline {
            now_ms: self.now_ms,
            snapshot: &self.snapshot,
            flows: &self.flows,
            counters: &self.counters,
        }
        .process(ingress, frame, len);
        match verdict {
            Verdict::Transmit { len, .. } => frame.truncate(len),
            Verdict::Drop(_) => frame.truncate(len),
        }
        verdict
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.counters.drops[reason.index()].get()
    }
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, mac: Mac) -> Vec<u8> {
    let mut spec = FrameSpec::new(
        src,
        dst,
        L4Spec::Udp {
            ports: (sport, dport),
            payload: b"hello",
        },
    );
    spec.source_mac = mac;
    spec.destination_mac = LAN_MAC;
    build_frame(&spec)
}

fn endpoint(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let p = parse_frame(frame).expect("translated frames parse");
    (
        p.key.source,
        p.key.source_port,
        p.key.destination,
        p.key.destination_port,
    )
}

fn eth(frame: &[u8]) -> (Mac, Mac) {
    let mut d = [0; 6];
    let mut s = [0; 6];
    d.copy_from_slice(&frame[0..6]);
    s.copy_from_slice(&frame[6..12]);
    (d, s)
}

#[test]
fn outbound_udp_is_snatted_to_its_uplink_and_the_reply_reverse_translated() {
    let rig = Rig::new(CONFIG, true);
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
        panic!(
            "dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        );
    };
    let slot = port.uplink_slot().expect("leaves on an uplink");
    let (src, sport, dst, dport) = endpoint(&out);
    assert_eq!(
        src,
        Ipv4Addr::from(WAN_ADDR[usize::from(slot)]),
        "source is that uplink's address"
    );
    assert_eq!((dst, dport), (Ipv4Addr::from(SERVER), 7777));
    assert!(
        (20000..=29999).contains(&sport),
        "5000 is outside the NAT range: {sport}"
    );
    assert!(checksums_valid(&out, &parse_frame(&out).unwrap()));
    assert_eq!(
        eth(&out),
        (GW_MAC[usize::from(slot)], WAN_MAC[usize::from(slot)])
    );

    let mut reply = udp(
        SERVER,
        7777,
        WAN_ADDR[usize::from(slot)],
        sport,
        GW_MAC[usize::from(slot)],
    );
    let verdict = rig.process(PortId::uplink(slot), &mut reply);
    assert!(
        matches!(
            verdict,
            Verdict::Transmit {
                port: PortId::LAN,
                ..
            }
        ),
        "{verdict:?}"
    );
    assert_eq!(
        endpoint(&reply),
        (Ipv4Addr::from(SERVER), 7777, Ipv4Addr::from(HOST), 5000)
    );
    assert_eq!(eth(&reply), (HOST_MAC, LAN_MAC));
    assert!(checksums_valid(&reply, &parse_frame(&reply).unwrap()));
    assert_eq!(rig.flows.table.len(), 1);
}

#[test]
fn the_internal_port_is_preserved_when_free_and_in_range() {
    let rig = Rig::new(CONFIG, true);
    let mut out = udp(HOST, 25000, SERVER, 7777, HOST_MAC);
    assert!(matches!(
        rig.process(PortId::LAN, &mut out),
        Verdict::Transmit { .. }
    ));
    assert_eq!(endpoint(&out).1, 25000);
}

#[test]
fn one_internal_endpoint_keeps_one_external_endpoint_for_every_destination() {
    let rig = Rig::new(CONFIG, true);
    let mut seen = std::collections::HashSet::new();
    for i in 0..20u8 {
        let mut out = udp(HOST, 25001, [203, 0, 113, 10 + i], 7777, HOST_MAC);
        let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
            panic!("dropped")
        };
        let (src, sport, _, _) = endpoint(&out);
        seen.insert((port, src, sport));
    }
    assert_eq!(seen.len(), 1, "EIM: {seen:?}");
    assert_eq!(rig.flows.table.len(), 20);
}

#[test]
fn two_hosts_with_the_same_source_port_get_distinct_external_endpoints() {
    let rig = Rig::new(CONFIG, true);
    let mut ext = Vec::new();
    for (host, mac) in [(HOST, HOST_MAC), (HOST2, HOST2_MAC)] {
        let mut out = udp(host, 25002, SERVER, 7777, mac);
        let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
            panic!("dropped")
        };
        let (src, sport, _, _) = endpoint(&out);
        ext.push((port, src, sport));
    }
    assert_ne!((ext[0].1, ext[0].2), (ext[1].1, ext[1].2), "{ext:?}");
    // Both replies reach their own host.
    for ((port, src, sport), host) in ext.into_iter().zip([HOST, HOST2]) {
        let mut reply = udp(SERVER, 7777, src.octets(), sport, GW_MAC[0]);
        assert!(matches!(
            rig.process(port, &mut reply),
            Verdict::Transmit {
                port: PortId::LAN,
                ..
            }
        ));
        assert_eq!(endpoint(&reply).2, Ipv4Addr::from(host));
    }
}

#[test]
fn unsolicited_inbound_is_dropped_and_creates_nothing() {
    let rig = Rig::new(CONFIG, true);
    let mut inbound = udp(SERVER, 7777, WAN_ADDR[0], 25000, GW_MAC[0]);
    assert_eq!(
        rig.process(PortId::uplink(0), &mut inbound),
        Verdict::Drop(DropReason::UnsolicitedInbound)
    );
    assert_eq!(rig.flows.table.len(), 0);
    assert_eq!(rig.drops(DropReason::UnsolicitedInbound), 1);
}

#[test]
fn spoofed_lan_sources_are_dropped_and_create_nothing() {
    let rig = Rig::new(CONFIG, true);
    let mut out = udp([192, 168, 1, 5], 5000, SERVER, 7777, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut out),
        Verdict::Drop(DropReason::SpoofedSource)
    );
    assert_eq!(rig.flows.table.len(), 0);
}

#[test]
fn no_flow_leaves_before_its_gateway_is_resolved() {
    let rig = Rig::new(CONFIG, false);
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    // Unresolved gateways make every uplink ineligible for new flows: the host is told.
    assert_eq!(rig.process(PortId::LAN, &mut out).port(), Some(PortId::LAN));
    assert_net_unreachable(&out, &udp(HOST, 5000, SERVER, 7777, HOST_MAC));
    assert_eq!(rig.drops(DropReason::NoUplink), 1);
    assert_eq!(rig.flows.table.len(), 0);
}

/// Asserts `answer` is an ICMP net unreachable (3/0) from the router's LAN side to the sender of
/// `offending`, quoting it whole, with valid checksums.
fn assert_net_unreachable(answer: &[u8], offending: &[u8]) {
    assert_unreachable_to_host(answer, offending, 0);
}

/// Asserts `answer` is an ICMP destination unreachable with `code` from the router's LAN side to the
/// sender of `offending` (HOST), quoting it whole, with valid checksums.
fn assert_unreachable_to_host(answer: &[u8], offending: &[u8], code: u8) {
    let p = parse_frame(answer).expect("the answer parses");
    let flowpin_nat::Transport::IcmpError(info) = p.transport else {
        panic!("not an ICMP error: {p:?}")
    };
    assert_eq!(
        (info.message_type, info.code),
        (3, code),
        "destination unreachable"
    );
    assert_eq!(
        (p.key.source, p.key.destination),
        (LAN_ADDR, Ipv4Addr::from(HOST))
    );
    assert_eq!(eth(answer), (HOST_MAC, LAN_MAC));
    assert!(checksums_valid(answer, &p));
    assert_eq!(info.embedded, parse_frame(offending).unwrap().key);
    assert_eq!(
        &answer[14 + 28..],
        &offending[14..],
        "quotes the packet whole"
    );
}

/// The lab's rate limit for the viability guard's answers: 10 per second, 3 at once.
fn limited(config: &str) -> String {
    format!("{config}\n[failover]\nnet_unreachable_per_s = 10\nnet_unreachable_burst = 3\n")
}

#[test]
fn with_no_usable_uplink_new_flows_get_net_unreachable_and_pinned_flows_stay() {
    let mut rig = Rig::new(&limited(CONFIG), true);
    let mut pinned = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    let Some(uplink) = rig.process(PortId::LAN, &mut pinned).port() else {
        panic!("the first flow leaves while uplinks are healthy")
    };
    rig.set_eligible(false);
    // The pinned flow still leaves by its uplink, both ways: nothing is evicted.
    let mut again = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    assert_eq!(rig.process(PortId::LAN, &mut again).port(), Some(uplink));
    let (src, sport, _, _) = endpoint(&again);
    let mut reply = udp(SERVER, 7777, src.octets(), sport, GW_MAC[0]);
    assert_eq!(rig.process(uplink, &mut reply).port(), Some(PortId::LAN));
    // A new flow (UDP, TCP SYN, echo request) is dropped and its host told, nothing created.
    let mut syn_spec = FrameSpec::new(
        HOST,
        SERVER,
        L4Spec::Tcp {
            ports: (40000, 80),
            seq: 1,
            ack: 0,
            flags: 0x02,
            payload: b"",
        },
    );
    syn_spec.source_mac = HOST_MAC;
    let mut echo_spec = FrameSpec::new(
        HOST,
        SERVER,
        L4Spec::Echo {
            request: true,
            id: 9,
            seq: 1,
        },
    );
    echo_spec.source_mac = HOST_MAC;
    for offending in [
        udp(HOST, 5001, SERVER, 7777, HOST_MAC),
        build_frame(&syn_spec),
        build_frame(&echo_spec),
    ] {
        let mut frame = offending.clone();
        assert_eq!(
            rig.process(PortId::LAN, &mut frame).port(),
            Some(PortId::LAN)
        );
        assert_net_unreachable(&frame, &offending);
    }
    assert_eq!(rig.drops(DropReason::NoUplink), 3);
    assert_eq!(rig.counters.originated.get(), 3);
    assert_eq!(rig.flows.table.len(), 1, "only the pinned flow");
    // An uplink back: new flows leave again.
    rig.set_eligible(true);
    let mut new = udp(HOST, 5002, SERVER, 7777, HOST_MAC);
    assert!(
        rig.process(PortId::LAN, &mut new)
            .port()
            .is_some_and(|p| p != PortId::LAN)
    );
}

#[test]
fn net_unreachable_answers_are_rate_limited_per_worker() {
    let mut rig = Rig::new(&limited(CONFIG), true);
    rig.set_eligible(false);
    let answered = |rig: &Rig, first_port: u16| {
        (0..20)
            .filter(|i| {
                let mut frame = udp(HOST, first_port + i, SERVER, 7777, HOST_MAC);
                rig.process(PortId::LAN, &mut frame).port() == Some(PortId::LAN)
            })
            .count()
    };
    assert_eq!(answered(&rig, 1000), 3, "the burst");
    assert_eq!(rig.drops(DropReason::NoUplink), 20, "every one dropped");
    assert_eq!(rig.counters.net_unreachable_suppressed.get(), 17);
    rig.now_ms += 99;
    assert_eq!(answered(&rig, 2000), 0, "10 per second: not before 100 ms");
    rig.now_ms += 1;
    assert_eq!(answered(&rig, 3000), 1);
    rig.now_ms += 60_000;
    assert_eq!(answered(&rig, 4000), 3, "refilled to the burst, not beyond");
    // Switched off: dropped and counted, never answered.
    let mut off = Rig::new(
        &format!("{CONFIG}\n[failover]\nnet_unreachable_per_s = 0\n"),
        true,
    );
    off.set_eligible(false);
    assert_eq!(answered(&off, 1000), 0);
    assert_eq!(off.drops(DropReason::NoUplink), 20);
}

/// One uplink with a NAT range of four ports, and a port-exhaustion answer budget of 10/s, 3 at once.
const FOUR_PORTS: &str = r#"
[lan]
interface = "lan0"
prefixes = ["10.77.0.0/24"]

[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "198.51.100.1"

[nat]
port_range = "20000-20003"
port_exhausted_icmp_per_s = 10
port_exhausted_icmp_burst = 3
"#;

/// RFC 4787 / 5382 let a NAT that cannot create a mapping say so: the new flow (and a new hairpin
/// flow, which needs a mapping too) is dropped under `nat_ports_exhausted`, nothing is evicted, and
/// the host gets an ICMP administratively prohibited (3/13), rate limited by its own bucket.
#[test]
fn a_new_flow_without_a_free_port_gets_administratively_prohibited_within_its_budget() {
    let mut rig = Rig::new(FOUR_PORTS, true);
    // HOST2 holds one port (a hairpin target), HOST the three others.
    let mut target = udp(HOST2, 6000, SERVER, 3478, HOST2_MAC);
    assert!(rig.process(PortId::LAN, &mut target).port().is_some());
    let (target_ip, target_port, _, _) = endpoint(&target);
    for sport in 5000..5003 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        assert_eq!(
            rig.process(PortId::LAN, &mut out).port(),
            Some(PortId::uplink(0))
        );
    }
    let exhausted = DropReason::NatAllocation(flowpin_nat::AllocError::Exhausted);
    let outbound = udp(HOST, 5003, SERVER, 7777, HOST_MAC);
    let hairpin = udp(HOST, 5004, target_ip.octets(), target_port, HOST_MAC);
    for offending in [outbound.clone(), hairpin] {
        let mut frame = offending.clone();
        assert_eq!(
            rig.process(PortId::LAN, &mut frame).port(),
            Some(PortId::LAN),
            "answered on the LAN"
        );
        assert_unreachable_to_host(&frame, &offending, 13);
    }
    assert_eq!(rig.drops(exhausted), 2, "counted under the NAT reason");
    assert_eq!(rig.counters.originated.get(), 2);
    assert_eq!(rig.flows.table.len(), 4, "nothing evicted, nothing created");
    // The budget: one more token of the burst, then suppressed until the bucket refills.
    let answered = |rig: &Rig, tries: u16| {
        (0..tries)
            .filter(|i| {
                let mut frame = udp(HOST, 5100 + i, SERVER, 7777, HOST_MAC);
                rig.process(PortId::LAN, &mut frame).port() == Some(PortId::LAN)
            })
            .count()
    };
    assert_eq!(answered(&rig, 5), 1);
    assert_eq!(rig.counters.port_exhausted_icmp_suppressed.get(), 4);
    assert_eq!(
        rig.counters.net_unreachable_suppressed.get(),
        0,
        "its own bucket"
    );
    assert_eq!(rig.drops(exhausted), 7);
    rig.now_ms += 100;
    assert_eq!(answered(&rig, 5), 1, "10 per second");
    // Switched off: dropped and counted, never answered.
    let off = Rig::new(
        &FOUR_PORTS.replace(
            "port_exhausted_icmp_per_s = 10",
            "port_exhausted_icmp_per_s = 0",
        ),
        true,
    );
    for sport in 5010..5014 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        assert!(off.process(PortId::LAN, &mut out).port().is_some());
    }
    let mut frame = outbound;
    assert_eq!(
        off.process(PortId::LAN, &mut frame),
        Verdict::Drop(exhausted)
    );
    assert_eq!(off.counters.originated.get(), 0);
}

/// RFC 6888 REQ-4: `[nat] ports_per_host` bounds one host's mappings; the host over its quota is
/// told (3/13) and another host still gets ports.
#[test]
fn a_host_over_its_port_quota_is_refused_and_told_while_others_get_ports() {
    let config = FOUR_PORTS.replace(
        "port_range = \"20000-20003\"",
        "port_range = \"20000-20999\"\nports_per_host = 2",
    );
    let rig = Rig::new(&config, true);
    for sport in 5000..5002 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        assert_eq!(
            rig.process(PortId::LAN, &mut out).port(),
            Some(PortId::uplink(0))
        );
    }
    // A second flow of a mapped endpoint takes no quota (EIM: the same mapping).
    let mut same_endpoint = udp(HOST, 5000, [192, 0, 2, 9], 53, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut same_endpoint).port(),
        Some(PortId::uplink(0))
    );
    let offending = udp(HOST, 5002, SERVER, 7777, HOST_MAC);
    let mut frame = offending.clone();
    assert_eq!(
        rig.process(PortId::LAN, &mut frame).port(),
        Some(PortId::LAN)
    );
    assert_unreachable_to_host(&frame, &offending, 13);
    assert_eq!(
        rig.drops(DropReason::NatAllocation(
            flowpin_nat::AllocError::QuotaExceeded
        )),
        1
    );
    let mut other_host = udp(HOST2, 5002, SERVER, 7777, HOST2_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut other_host).port(),
        Some(PortId::uplink(0))
    );
}

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, mac: Mac) -> Vec<u8> {
    let mut spec = FrameSpec::new(
        src,
        dst,
        L4Spec::Tcp {
            ports: (sport, dport),
            seq: 1000,
            ack: if flags & 0x10 != 0 { 5001 } else { 0 },
            flags,
            payload: b"",
        },
    );
    spec.source_mac = mac;
    spec.destination_mac = LAN_MAC;
    build_frame(&spec)
}

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;

#[test]
fn tcp_handshakes_started_and_answered_are_counted_on_their_uplink() {
    let rig = Rig::new(CONFIG, true);
    let started = |rig: &Rig| rig.uplink_sum(|c| c.tcp_handshakes_started.get());
    let answered = |rig: &Rig| rig.uplink_sum(|c| c.tcp_handshakes_answered.get());
    let mut syn = tcp(HOST, 40000, SERVER, 80, SYN, HOST_MAC);
    let Some(port) = rig.process(PortId::LAN, &mut syn).port() else {
        panic!("the SYN leaves")
    };
    let slot = usize::from(port.uplink_slot().unwrap());
    let (src, sport, _, _) = endpoint(&syn);
    assert_eq!(rig.counters.uplinks[slot].tcp_handshakes_started.get(), 1);
    assert_eq!(answered(&rig), 0);
    // A retransmitted SYN opens nothing new; a flow picked up mid-stream is no handshake.
    let mut again = tcp(HOST, 40000, SERVER, 80, SYN, HOST_MAC);
    rig.process(PortId::LAN, &mut again);
    let mut midstream = tcp(HOST, 40001, SERVER, 80, ACK, HOST_MAC);
    assert!(rig.process(PortId::LAN, &mut midstream).port().is_some());
    assert_eq!(started(&rig), 1);
    // The SYN-ACK answers it, once, on its uplink; a retransmitted one counts no more.
    for _ in 0..2 {
        let mut syn_ack = tcp(SERVER, 80, src.octets(), sport, SYN_ACK, GW_MAC[slot]);
        assert_eq!(rig.process(port, &mut syn_ack).port(), Some(PortId::LAN));
    }
    assert_eq!(rig.counters.uplinks[slot].tcp_handshakes_answered.get(), 1);
    assert_eq!(answered(&rig), 1);
    // A SYN that gets no answer stays started only.
    let mut lonely = tcp(HOST, 40002, SERVER, 80, SYN, HOST_MAC);
    assert!(rig.process(PortId::LAN, &mut lonely).port().is_some());
    assert_eq!((started(&rig), answered(&rig)), (2, 1));
    // UDP flows are no handshakes.
    let mut datagram = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    rig.process(PortId::LAN, &mut datagram);
    assert_eq!(started(&rig), 2);
}

#[test]
fn malformed_frames_are_counted_under_their_own_reason() {
    let rig = Rig::new(CONFIG, true);
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    out[14 + 10] ^= 0xff; // break the IPv4 header checksum
    assert_eq!(
        rig.process(PortId::LAN, &mut out),
        Verdict::Drop(DropReason::Malformed(
            flowpin_nat::ParseError::Ipv4BadHeaderChecksum
        ))
    );
    let mut runt = vec![0u8; 10];
    assert!(matches!(
        rig.process(PortId::LAN, &mut runt),
        Verdict::Drop(DropReason::Malformed(_))
    ));
}

#[test]
fn echo_requests_open_icmp_flows_and_replies_come_back_with_the_original_id() {
    let rig = Rig::new(CONFIG, true);
    let mut spec = FrameSpec::new(
        HOST,
        SERVER,
        L4Spec::Echo {
            request: true,
            id: 0x4242,
            seq: 1,
        },
    );
    spec.source_mac = HOST_MAC;
    let mut out = build_frame(&spec);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
        panic!("dropped")
    };
    let (src, id, _, _) = endpoint(&out);
    assert!(checksums_valid(&out, &parse_frame(&out).unwrap()));
    let reply_spec = FrameSpec::new(
        SERVER,
        src.octets(),
        L4Spec::Echo {
            request: false,
            id,
            seq: 1,
        },
    );
    let mut reply = build_frame(&reply_spec);
    assert!(matches!(
        rig.process(port, &mut reply),
        Verdict::Transmit {
            port: PortId::LAN,
            ..
        }
    ));
    let (_, rid, dst, _) = endpoint(&reply);
    assert_eq!((dst, rid), (Ipv4Addr::from(HOST), 0x4242));
    assert!(checksums_valid(&reply, &parse_frame(&reply).unwrap()));
}

#[test]
fn an_icmp_port_unreachable_from_the_internet_reaches_the_lan_host_translated() {
    let rig = Rig::new(CONFIG, true);
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
        panic!("dropped")
    };
    // The server answers with port unreachable quoting the translated datagram.
    let quoted = out[14..].to_vec();
    let (src, _, _, _) = endpoint(&out);
    let spec = FrameSpec::new(
        SERVER,
        src.octets(),
        L4Spec::IcmpError {
            message_type: 3,
            code: 3,
            rest: [0; 4],
            quoted: &quoted,
        },
    );
    let mut error = build_frame(&spec);
    assert!(matches!(
        rig.process(port, &mut error),
        Verdict::Transmit {
            port: PortId::LAN,
            ..
        }
    ));
    let p = parse_frame(&error).unwrap();
    assert_eq!(p.key.destination, Ipv4Addr::from(HOST));
    let flowpin_nat::Transport::IcmpError(info) = p.transport else {
        panic!("not an ICMP error")
    };
    assert_eq!(
        (info.embedded.source, info.embedded.source_port),
        (Ipv4Addr::from(HOST), 5000)
    );
    assert!(checksums_valid(&error, &p));
}

/// Path MTU discovery inbound: a packet from the internet too big for the LAN with DF set is answered
/// with ICMP fragmentation needed carrying the LAN MTU, from the uplink's address and MAC to the
/// gateway it came from, out of that uplink, quoting the packet as received; rate limited per worker.
#[test]
fn a_too_big_packet_from_an_uplink_gets_fragmentation_needed_back_out_of_that_uplink() {
    let mut rig = Rig::new(CONFIG, true);
    rig.snapshot.lan.mtu = 1400;
    rig.snapshot.frag_needed_to_uplink = RateLimit {
        per_second: 1,
        burst: 2,
    };
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
        panic!("dropped")
    };
    let slot = port.uplink_slot().unwrap();
    let (external, external_port, _, _) = endpoint(&out);
    let payload = vec![0x5a; 1450];
    let too_big = |dont_fragment: bool| {
        let mut spec = FrameSpec::new(
            SERVER,
            external.octets(),
            L4Spec::Udp {
                ports: (7777, external_port),
                payload: &payload,
            },
        );
        spec.source_mac = GW_MAC[usize::from(slot)];
        spec.destination_mac = WAN_MAC[usize::from(slot)];
        spec.dont_fragment = dont_fragment;
        build_frame(&spec)
    };
    let offending = too_big(true);
    let mut frame = offending.clone();
    assert_eq!(
        rig.process(port, &mut frame).port(),
        Some(port),
        "sent back out of the uplink it came in by"
    );
    let p = parse_frame(&frame).expect("the answer parses");
    let flowpin_nat::Transport::IcmpError(info) = p.transport else {
        panic!("not an ICMP error: {p:?}")
    };
    assert_eq!(
        (info.message_type, info.code),
        (3, 4),
        "fragmentation needed"
    );
    let l4 = usize::from(p.l4_offset);
    assert_eq!(
        u16::from_be_bytes([frame[l4 + 6], frame[l4 + 7]]),
        1400,
        "the LAN MTU"
    );
    assert_eq!(
        (p.key.source, p.key.destination),
        (external, Ipv4Addr::from(SERVER)),
        "from the uplink's address to the remote sender"
    );
    assert_eq!(external, Ipv4Addr::from(WAN_ADDR[usize::from(slot)]));
    assert_eq!(
        eth(&frame),
        (GW_MAC[usize::from(slot)], WAN_MAC[usize::from(slot)]),
        "uplink MAC to the gateway"
    );
    assert!(checksums_valid(&frame, &p));
    assert_eq!(
        info.embedded,
        parse_frame(&offending).unwrap().key,
        "quotes the packet as received, untranslated"
    );
    assert_eq!(
        &frame[l4 + 8..l4 + 8 + 28],
        &offending[14..14 + 28],
        "the quoted header and first 8 bytes"
    );
    assert_eq!(rig.drops(DropReason::FragmentationNeeded), 1);
    assert_eq!(rig.counters.originated.get(), 1);
    // The budget: one more answer, then suppressed; without DF a plain drop.
    let mut frame = offending.clone();
    assert_eq!(rig.process(port, &mut frame).port(), Some(port));
    let mut frame = offending.clone();
    assert_eq!(
        rig.process(port, &mut frame),
        Verdict::Drop(DropReason::FragmentationNeeded)
    );
    assert_eq!(rig.counters.frag_needed_to_uplink_suppressed.get(), 1);
    assert_eq!(rig.counters.originated.get(), 2);
    let mut frame = too_big(false);
    assert_eq!(
        rig.process(port, &mut frame),
        Verdict::Drop(DropReason::WouldFragment)
    );
}

#[test]
fn a_too_big_packet_with_df_gets_fragmentation_needed_with_the_mtu() {
    let rig = Rig::new(CONFIG, true);
    let payload = vec![0u8; 1600];
    let mut spec = FrameSpec::new(
        HOST,
        SERVER,
        L4Spec::Udp {
            ports: (5000, 7777),
            payload: &payload,
        },
    );
    spec.source_mac = HOST_MAC;
    let mut out = build_frame(&spec);
    let verdict = rig.process(PortId::LAN, &mut out);
    assert!(
        matches!(
            verdict,
            Verdict::Transmit {
                port: PortId::LAN,
                ..
            }
        ),
        "{verdict:?}"
    );
    let p = parse_frame(&out).unwrap();
    assert_eq!(p.key.destination, Ipv4Addr::from(HOST));
    let flowpin_nat::Transport::IcmpError(info) = p.transport else {
        panic!("not an ICMP error")
    };
    assert_eq!((info.message_type, info.code), (3, 4));
    assert_eq!(
        u16::from_be_bytes([
            out[usize::from(p.l4_offset) + 6],
            out[usize::from(p.l4_offset) + 7]
        ]),
        1500
    );
    assert!(checksums_valid(&out, &p));
    assert_eq!(eth(&out).0, HOST_MAC);
}

#[test]
fn new_flows_spread_by_weight_and_each_stays_pinned() {
    let config = CONFIG.replacen("weight = 1", "weight = 3", 1);
    let rig = Rig::new(&config, true);
    let mut per_uplink = [0usize; 2];
    for sport in 30000..34000u16 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
            panic!("dropped")
        };
        let slot = usize::from(port.uplink_slot().unwrap());
        per_uplink[slot] += 1;
        let (src, _, _, _) = endpoint(&out);
        assert_eq!(
            src,
            Ipv4Addr::from(WAN_ADDR[slot]),
            "never another uplink's address"
        );
        // The second packet of the flow takes the same uplink.
        let mut again = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        assert_eq!(
            rig.process(PortId::LAN, &mut again),
            Verdict::Transmit {
                port,
                len: again.len()
            }
        );
    }
    let share = per_uplink[0] as f64 / 4000.0;
    assert!((share - 0.75).abs() < 0.05, "3:1 split gave {per_uplink:?}");
}

/// RFC 4787 REQ-1 across a weight change: the next flow of an internal endpoint whose mapping lives on
/// uplink A stays on A with the same external endpoint, though the new weights would choose B for it.
#[test]
fn an_endpoints_new_flows_follow_its_live_mapping_after_a_weight_change() {
    let mut rig = Rig::new(CONFIG, true);
    let mut first = udp(HOST, 40000, SERVER, 7777, HOST_MAC);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut first) else {
        panic!("dropped")
    };
    let slot = usize::from(port.uplink_slot().unwrap());
    let (external, external_port, _, _) = endpoint(&first);
    // Weights that put nearly every key on the other uplink.
    let other = 1 - slot;
    let weights = if other == 0 { (1000, 1) } else { (1, 1000) };
    let config = CONFIG
        .replacen("weight = 1", &format!("weight = {}", weights.0), 1)
        .replacen(
            "weight = 1\n\n[nat]",
            &format!("weight = {}\n\n[nat]", weights.1),
            1,
        );
    rig.config = crate::config::parse(&config, "test.toml", None).expect("valid config");
    rig.set_eligible(true);
    let mut fresh_on_other = 0;
    for sport in 41000..41100u16 {
        let mut out = udp(HOST, sport, SERVER, 7777, HOST_MAC);
        let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
            panic!("dropped")
        };
        fresh_on_other += usize::from(usize::from(port.uplink_slot().unwrap()) == other);
    }
    assert!(
        fresh_on_other > 95,
        "the new weights are in force: {fresh_on_other}/100"
    );
    for destination in [[203, 0, 113, 11], [203, 0, 113, 12], [192, 0, 2, 33]] {
        let mut next = udp(HOST, 40000, destination, 53, HOST_MAC);
        let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut next) else {
            panic!("dropped")
        };
        assert_eq!(usize::from(port.uplink_slot().unwrap()), slot);
        let (source, source_port, _, _) = endpoint(&next);
        assert_eq!(
            (source, source_port),
            (external, external_port),
            "one external endpoint"
        );
    }
}

/// The live-mapping override keeps EIM only for the stickiness modes that promise it (`endpoint`,
/// `host`): under `flow` (and `host-dest`), documented to break EIM, one internal endpoint's flows to
/// many destinations spread by their own key instead of all following its first mapping.
#[test]
fn only_eim_keeping_stickiness_modes_follow_an_endpoints_live_mapping() {
    let shares = |stickiness: &str| {
        let rig = Rig::new(&format!("{CONFIG}stickiness = \"{stickiness}\"\n"), true);
        let mut per_uplink = [0usize; 2];
        for i in 0..200u16 {
            let destination = [198, 18, (i >> 8) as u8, i as u8];
            let mut out = udp(HOST, 40000, destination, 443, HOST_MAC);
            let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
                panic!("dropped")
            };
            let slot = usize::from(port.uplink_slot().unwrap());
            assert_eq!(endpoint(&out).0, Ipv4Addr::from(WAN_ADDR[slot]));
            per_uplink[slot] += 1;
        }
        per_uplink
    };
    let flow = shares("flow");
    assert!(
        flow.iter().all(|&n| n >= 50),
        "flow stickiness spreads one endpoint's flows: {flow:?}"
    );
    let host_dest = shares("host-dest");
    assert!(
        host_dest.iter().all(|&n| n >= 50),
        "host-dest spreads by destination: {host_dest:?}"
    );
    for eim in ["endpoint", "host"] {
        let split = shares(eim);
        assert!(split.contains(&200), "{eim} keeps one uplink: {split:?}");
    }
}

#[test]
fn a_hairpinned_packet_reaches_the_target_host_from_the_senders_external_endpoint() {
    let rig = Rig::new(CONFIG, true);
    // HOST2 opens a mapping (e.g. to a STUN server).
    let mut out = udp(HOST2, 25010, SERVER, 3478, HOST2_MAC);
    let Verdict::Transmit { .. } = rig.process(PortId::LAN, &mut out) else {
        panic!("dropped")
    };
    let (ext2, ext2_port, _, _) = endpoint(&out);
    // HOST sends to HOST2's external endpoint.
    let mut hp = udp(HOST, 25011, ext2.octets(), ext2_port, HOST_MAC);
    let verdict = rig.process(PortId::LAN, &mut hp);
    assert!(
        matches!(
            verdict,
            Verdict::Transmit {
                port: PortId::LAN,
                ..
            }
        ),
        "{verdict:?}"
    );
    let (src, sport, dst, dport) = endpoint(&hp);
    assert_eq!((dst, dport), (Ipv4Addr::from(HOST2), 25010));
    assert!(
        WAN_ADDR.contains(&src.octets()),
        "the target sees an external address: {src}"
    );
    assert_eq!(sport, 25011);
    assert_eq!(eth(&hp).0, HOST2_MAC);
    assert!(checksums_valid(&hp, &parse_frame(&hp).unwrap()));
    // HOST2's answer to that external endpoint comes back to HOST, from HOST2's external endpoint.
    let mut back = udp(HOST2, 25010, src.octets(), sport, HOST2_MAC);
    let verdict = rig.process(PortId::LAN, &mut back);
    assert!(
        matches!(
            verdict,
            Verdict::Transmit {
                port: PortId::LAN,
                ..
            }
        ),
        "{verdict:?}"
    );
    assert_eq!(
        endpoint(&back),
        (ext2, ext2_port, Ipv4Addr::from(HOST), 25011)
    );
    assert_eq!(eth(&back).0, HOST_MAC);
}

#[test]
fn expiry_follows_the_protocol_timeouts() {
    let rig = Rig::new(CONFIG, true);
    let mut out = udp(HOST, 25003, SERVER, 7777, HOST_MAC);
    let Verdict::Transmit { .. } = rig.process(PortId::LAN, &mut out) else {
        panic!("dropped")
    };
    let t = &rig.snapshot.timeouts;
    let f = rig.flows.table.live_flows(rig.now_ms).next().unwrap();
    let d = flows::deadline(t, &f.value, f.protocol_state, f.last_seen_ms);
    assert_eq!(
        d,
        rig.now_ms + 300_000,
        "UDP: 300 s after the last outbound packet"
    );
}

#[test]
fn by_default_only_the_remote_a_flow_was_opened_to_may_answer() {
    let rig = Rig::new(CONFIG, true);
    let mut out = udp(HOST, 25020, SERVER, 3478, HOST_MAC);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
        panic!("dropped")
    };
    let (ext, ext_port, _, _) = endpoint(&out);
    let mut stranger = udp([203, 0, 113, 99], 5555, ext.octets(), ext_port, GW_MAC[0]);
    assert_eq!(
        rig.process(port, &mut stranger),
        Verdict::Drop(DropReason::UnsolicitedInbound)
    );
    assert_eq!(rig.flows.table.len(), 1, "the stranger created nothing");
}

#[test]
fn endpoint_independent_filtering_lets_any_remote_reach_a_live_mapping() {
    let config = format!("{CONFIG}filtering = \"endpoint-independent\"\n");
    let rig = Rig::new(&config, true);
    let mut out = udp(HOST, 25021, SERVER, 3478, HOST_MAC);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
        panic!("dropped")
    };
    let (ext, ext_port, _, _) = endpoint(&out);
    let mut peer = udp([203, 0, 113, 99], 5555, ext.octets(), ext_port, GW_MAC[0]);
    let verdict = rig.process(port, &mut peer);
    assert!(
        matches!(
            verdict,
            Verdict::Transmit {
                port: PortId::LAN,
                ..
            }
        ),
        "{verdict:?}"
    );
    assert_eq!(
        endpoint(&peer),
        (
            Ipv4Addr::new(203, 0, 113, 99),
            5555,
            Ipv4Addr::from(HOST),
            25021
        )
    );
    assert_eq!(eth(&peer).0, HOST_MAC);
    assert!(checksums_valid(&peer, &parse_frame(&peer).unwrap()));
    // The host's answer leaves with the same external endpoint (EIM).
    let mut answer = udp(HOST, 25021, [203, 0, 113, 99], 5555, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut answer),
        Verdict::Transmit {
            port,
            len: answer.len()
        }
    );
    assert_eq!(endpoint(&answer).0, ext);
    assert_eq!(endpoint(&answer).1, ext_port);
    // A port nobody holds stays closed.
    let mut probe = udp([203, 0, 113, 99], 5555, ext.octets(), 29999, GW_MAC[0]);
    assert_eq!(
        rig.process(port, &mut probe),
        Verdict::Drop(DropReason::UnsolicitedInbound)
    );
}

#[test]
fn a_prepared_batch_decides_like_frame_by_frame_processing() {
    let rig = Rig::new(CONFIG, true);
    let pipeline = Pipeline {
        now_ms: rig.now_ms,
        snapshot: &rig.snapshot,
        flows: &rig.flows,
        counters: &rig.counters,
    };
    // Two packets of one new flow, a malformed frame and an unsolicited inbound one, in one batch: the
    // batch's lookups all happen before the first packet creates the flow.
    let mut frames = vec![
        (PortId::LAN, udp(HOST, 25030, SERVER, 7777, HOST_MAC)),
        (PortId::LAN, udp(HOST, 25030, SERVER, 7777, HOST_MAC)),
        (PortId::LAN, vec![0u8; 20]),
        (
            PortId::uplink(0),
            udp(SERVER, 7777, WAN_ADDR[0], 29000, GW_MAC[0]),
        ),
    ];
    let mut batch = PreparedBatch::new();
    for (_, f) in &frames {
        assert!(batch.push(f));
    }
    pipeline.look_up(&mut batch);
    let verdicts: Vec<Verdict> = frames
        .iter_mut()
        .enumerate()
        .map(|(i, (port, f))| {
            let len = f.len();
            f.resize(2048, 0);
            pipeline.process_prepared(&batch, i, *port, f, len)
        })
        .collect();
    let Verdict::Transmit { port, .. } = verdicts[0] else {
        panic!("{verdicts:?}")
    };
    assert_eq!(
        verdicts[1], verdicts[0],
        "the second packet adopts the flow the first created"
    );
    assert!(matches!(
        verdicts[2],
        Verdict::Drop(DropReason::Malformed(_))
    ));
    assert_eq!(verdicts[3], Verdict::Drop(DropReason::UnsolicitedInbound));
    assert!(port.uplink_slot().is_some());
    assert_eq!(rig.flows.table.len(), 1);
    assert_eq!(
        rig.flows
            .table
            .live_flows(rig.now_ms)
            .next()
            .unwrap()
            .counters
            .packets[0],
        2,
        "both packets counted on the one flow"
    );
}

/// A rig whose flow table holds `capacity` flows (a full table refuses new flows: the default).
fn small_rig(capacity: usize) -> Rig {
    let mut rig = Rig::new(CONFIG, true);
    rig.flows = Flows::with_capacity(capacity).unwrap();
    rig
}

/// Like [`small_rig`] with `[nat] early_drop_unanswered = true`.
fn small_early_drop_rig(capacity: usize) -> Rig {
    let mut rig = Rig::new(&format!("{CONFIG}early_drop_unanswered = true\n"), true);
    rig.flows = Flows::with_capacity(capacity).unwrap();
    rig
}

/// Opens a UDP flow from `host:sport` and answers it from the server; returns its external endpoint.
fn answered_udp_flow(rig: &Rig, host: [u8; 4], mac: Mac, sport: u16) -> (Ipv4Addr, u16) {
    let mut out = udp(host, sport, SERVER, 7777, mac);
    let Verdict::Transmit { port, .. } = rig.process(PortId::LAN, &mut out) else {
        panic!(
            "dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        )
    };
    let slot = port.uplink_slot().unwrap();
    let (external, external_port, _, _) = endpoint(&out);
    let mut reply = udp(
        SERVER,
        7777,
        external.octets(),
        external_port,
        GW_MAC[usize::from(slot)],
    );
    assert_eq!(
        rig.process(PortId::uplink(slot), &mut reply).port(),
        Some(PortId::LAN)
    );
    (external, external_port)
}

/// With early drop on, a SYN flood into a full table: each new SYN makes room by early-dropping
/// never-answered flows, so new connections keep getting through, while answered flows are never
/// touched.
#[test]
fn a_full_table_early_drops_unanswered_flows_and_keeps_answered_ones() {
    let rig = small_early_drop_rig(64);
    let answered: Vec<_> = (0..8)
        .map(|i| {
            (
                5000 + i,
                answered_udp_flow(&rig, HOST2, HOST2_MAC, 5000 + i),
            )
        })
        .collect();
    for sport in 30000..30300u16 {
        let mut syn = tcp(HOST, sport, SERVER, 80, SYN, HOST_MAC);
        assert!(
            rig.process(PortId::LAN, &mut syn).port().is_some(),
            "SYN {sport} dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        );
    }
    assert!(rig.flows.table.len() <= 64);
    assert_eq!(rig.drops(DropReason::FlowTableFull), 0);
    let early = rig.counters.flows_early_dropped.get();
    assert!(early >= 300 - 56, "the flood made its own room: {early}");
    for (sport, external) in answered {
        let mut again = udp(HOST2, sport, SERVER, 7777, HOST2_MAC);
        assert!(rig.process(PortId::LAN, &mut again).port().is_some());
        let (source, source_port, _, _) = endpoint(&again);
        assert_eq!(
            (source, source_port),
            external,
            "an answered flow kept its mapping"
        );
    }
    assert_eq!(
        rig.flows.table.len(),
        rig.flows.table.live_flows(rig.now_ms).count(),
        "every counted flow is live"
    );
}

/// By default a full table evicts nothing, not even flows that were never answered (their ports keep
/// their RFC 6888 REQ-8 quarantine): the new flow is refused under `flow_table_full`.
#[test]
fn by_default_a_full_table_refuses_new_flows_and_keeps_unanswered_ones() {
    let rig = small_rig(64);
    let mut pinned = Vec::new();
    for sport in 30000..30300u16 {
        let mut syn = tcp(HOST, sport, SERVER, 80, SYN, HOST_MAC);
        match rig.process(PortId::LAN, &mut syn) {
            Verdict::Transmit { port, .. } => pinned.push((sport, port, endpoint(&syn))),
            Verdict::Drop(reason) => assert_eq!(reason, DropReason::FlowTableFull, "{sport}"),
        }
    }
    assert!(pinned.len() >= 32, "the table took flows: {}", pinned.len());
    assert_eq!(rig.flows.table.len(), pinned.len(), "and then refused");
    assert_eq!(
        rig.drops(DropReason::FlowTableFull),
        300 - pinned.len() as u64
    );
    assert_eq!(rig.counters.flows_early_dropped.get(), 0);
    // Every unanswered flow is still pinned with its mapping: its retransmitted SYN leaves the same way.
    for (sport, port, (source, source_port, _, _)) in pinned {
        let mut again = tcp(HOST, sport, SERVER, 80, SYN, HOST_MAC);
        assert_eq!(rig.process(PortId::LAN, &mut again).port(), Some(port));
        let (again_source, again_port, _, _) = endpoint(&again);
        assert_eq!((again_source, again_port), (source, source_port));
    }
}

/// When every flow was answered, nothing is evicted even with early drop on: the new flow is refused
/// and counted.
#[test]
fn a_table_full_of_answered_flows_refuses_new_ones() {
    let rig = small_early_drop_rig(16);
    let answered: Vec<_> = (0..16)
        .map(|i| answered_udp_flow(&rig, HOST2, HOST2_MAC, 6000 + i))
        .collect();
    let mut unsolicited_udp = udp(HOST, 7000, SERVER, 7777, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut unsolicited_udp),
        Verdict::Drop(DropReason::FlowTableFull)
    );
    let mut syn = tcp(HOST, 7001, SERVER, 80, SYN, HOST_MAC);
    assert_eq!(
        rig.process(PortId::LAN, &mut syn),
        Verdict::Drop(DropReason::FlowTableFull)
    );
    assert_eq!(rig.counters.flows_early_dropped.get(), 0);
    assert_eq!(rig.flows.table.len(), answered.len());
}

/// A UDP flow's outbound stamps keep its "answered" mark, and the mark does not disturb its expiry.
#[test]
fn the_replied_mark_survives_outbound_stamps_and_leaves_the_timeout_alone() {
    let mut rig = small_rig(16);
    let external = answered_udp_flow(&rig, HOST, HOST_MAC, 5000);
    rig.now_ms += 10 * flows::OUTBOUND_STAMP_GRANULARITY_MS;
    let mut out = udp(HOST, 5000, SERVER, 7777, HOST_MAC);
    assert!(rig.process(PortId::LAN, &mut out).port().is_some());
    let flow = rig
        .flows
        .table
        .live_flows(rig.now_ms)
        .next()
        .expect("the flow");
    assert_ne!(
        flow.protocol_state & flows::REPLIED,
        0,
        "still marked answered"
    );
    assert!(!flows::is_unreplied(&flow.value, flow.protocol_state));
    assert_eq!(
        flow.protocol_state & !flows::REPLIED,
        rig.now_ms,
        "stamped now"
    );
    let deadline = flows::deadline(
        &rig.snapshot.timeouts,
        &flow.value,
        flow.protocol_state,
        flow.last_seen_ms,
    );
    assert_eq!(
        deadline,
        rig.now_ms + 300_000,
        "UDP timeout from the last outbound packet"
    );
    let _ = external;
}

/// A flood of new endpoints longer than the NAT range: early-dropped flows free their ports at once
/// (no quarantine for a mapping nobody answered), so the range never runs dry and another host still
/// gets a mapping. With quarantine, 20 000 SYNs (2 uplinks × 10 000 ports) would exhaust it.
#[test]
fn early_dropped_flows_give_their_ports_back_without_quarantine() {
    let rig = small_early_drop_rig(64);
    for sport in 1024..26024u16 {
        let mut syn = tcp(HOST, sport, SERVER, 80, SYN, HOST_MAC);
        assert!(
            rig.process(PortId::LAN, &mut syn).port().is_some(),
            "SYN {sport} dropped: {:?}",
            rig.counters.nonzero_drops().collect::<Vec<_>>()
        );
    }
    let mut syn = tcp(HOST2, 40000, SERVER, 80, SYN, HOST2_MAC);
    assert!(rig.process(PortId::LAN, &mut syn).port().is_some());
    assert_eq!(rig.counters.nonzero_drops().count(), 0);
}
