//! Pipeline tests: real frames (built by `flowpin-nat`'s frame builder), a real snapshot built from
//! [`Settings`] the way the control plane builds one from its configuration, the real flow table and
//! port pools.
//!
//! This module owns the [`Rig`] and the frame helpers; the tests live in one file per concern. A test
//! that checks a clause of an RFC starts its name with it (`rfc4787_req1_…`).

use std::net::Ipv4Addr;
use std::sync::Arc;

use flowpin_nat::frame_builder::{FrameSpec, L4Spec, build_frame};
use flowpin_nat::verify::checksums_valid;
use flowpin_nat::{
    PortAllocator, PortAllocatorConfig, PortRange, RefreshPolicy, Timeouts, parse_frame,
};

use super::*;
use crate::select::{KeyHasher, PolicySpec, PolicyTable, Stickiness, UplinkStatus};

mod accounting;
mod flow_share;
mod forwards;
mod fragments;
mod host_limits;
mod icmp;
mod mapping;
mod mss_clamp;
mod placement;
mod refusals;
mod table_full;

const LAN_MAC: Mac = [0x02, 0xaa, 0, 0, 0, 1];
const HOST_MAC: Mac = [0x02, 0x11, 0, 0, 0, 11];
const HOST2_MAC: Mac = [0x02, 0x11, 0, 0, 0, 12];
const WAN_MAC: [Mac; 2] = [[0x02, 0xbb, 0, 0, 0, 1], [0x02, 0xbb, 0, 0, 0, 2]];
const GW_MAC: [Mac; 2] = [[0x02, 0xcc, 0, 0, 0, 1], [0x02, 0xcc, 0, 0, 0, 2]];
const WAN_ADDR: [[u8; 4]; 2] = [[198, 51, 100, 2], [198, 51, 100, 10]];
const HOST: [u8; 4] = [10, 77, 0, 11];
const HOST2: [u8; 4] = [10, 77, 0, 12];
const SERVER: [u8; 4] = [203, 0, 113, 10];

/// What a test configures: the few knobs of the router's configuration the pipeline sees, each
/// defaulting to what the configuration file defaults to.
#[derive(Clone, Debug)]
struct Settings {
    /// One uplink per weight, named `isp1`, `isp2`, ….
    weights: Vec<u32>,
    /// The NAT port range.
    port_range: (u16, u16),
    /// `[nat] ports_per_host`.
    ports_per_host: u32,
    /// Hosts each port pool counts at once.
    max_hosts: usize,
    /// `[nat] stickiness`.
    stickiness: Stickiness,
    /// `[nat] filtering = "endpoint-independent"`.
    endpoint_independent_filtering: bool,
    /// `[nat] early_drop_unanswered`.
    early_drop_unanswered: bool,
    /// `[datapath] flow_share_pressure_percent` and `flow_share_floor`.
    flow_share: crate::datapath::FlowShare,
    /// `[failover] net_unreachable_per_s` and `_burst`.
    net_unreachable: RateLimit,
    /// `[nat] port_exhausted_icmp_per_s` and `_burst`.
    port_exhausted_icmp: RateLimit,
    /// `[[forward]]`, one rule per uplink.
    forwards: Vec<ForwardRule>,
}

impl Default for Settings {
    /// Two uplinks of weight 1, NAT ports 20000-29999, every other knob at its default.
    fn default() -> Self {
        Settings {
            weights: vec![1, 1],
            port_range: (20000, 29999),
            ports_per_host: flowpin_nat::port_alloc::NO_HARD_QUOTA,
            max_hosts: 4096,
            stickiness: Stickiness::Endpoint,
            endpoint_independent_filtering: false,
            flow_share: crate::datapath::FlowShare::default(),
            early_drop_unanswered: true,
            net_unreachable: RateLimit {
                per_second: 100,
                burst: 50,
            },
            port_exhausted_icmp: RateLimit {
                per_second: 100,
                burst: 50,
            },
            forwards: Vec::new(),
        }
    }
}

impl Settings {
    /// The default NAT timeouts (UDP 300 s, TCP 7440 s established and 240 s transitory, ICMP 60 s),
    /// refreshed by outbound packets only.
    fn timeouts() -> Timeouts {
        Timeouts {
            udp_ms: 300_000,
            tcp_established_ms: 7_440_000,
            tcp_transitory_ms: 240_000,
            icmp_ms: 60_000,
            udp_refresh: RefreshPolicy::OutboundOnly,
            icmp_refresh: RefreshPolicy::OutboundOnly,
        }
    }

    /// One uplink's port pools.
    fn uplink_nat(&self) -> UplinkNat {
        let range = PortRange::new(self.port_range.0, self.port_range.1).expect("a port range");
        let ports = PortAllocatorConfig {
            per_host_quota: self.ports_per_host,
            max_hosts: self.max_hosts,
            ..PortAllocatorConfig::new(range)
        };
        UplinkNat {
            tcp: PortAllocator::new(ports),
            udp: PortAllocator::new(ports),
            icmp: PortAllocator::new(PortAllocatorConfig {
                keep_port_class: false,
                ..ports
            }),
        }
    }

    /// The policy table's inputs: no rules, the uplinks by weight.
    fn policy_spec(&self) -> PolicySpec {
        PolicySpec {
            uplinks: (1..=self.weights.len())
                .map(|i| format!("isp{i}"))
                .collect(),
            stickiness: self.stickiness,
            rules: Vec::new(),
        }
    }
}

struct Rig {
    snapshot: Snapshot,
    flows: Flows,
    counters: DatapathCounters,
    fragments: std::cell::RefCell<Fragments>,
    now_ms: u64,
    settings: Settings,
    /// Each uplink's port pools, carried from snapshot to snapshot as the control plane does.
    pools: Vec<Arc<UplinkNat>>,
    gateways_resolved: bool,
}

const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

impl Rig {
    fn new(settings: Settings, gateways_resolved: bool) -> Self {
        let pools: Vec<_> = settings
            .weights
            .iter()
            .map(|_| Arc::new(settings.uplink_nat()))
            .collect();
        Rig {
            snapshot: Self::snapshot(&settings, &pools, 1, gateways_resolved, true),
            flows: Flows::with_capacity(1 << 12).unwrap(),
            counters: DatapathCounters::default(),
            fragments: std::cell::RefCell::new(Fragments::new(flowpin_nat::FragmentLimits {
                datagrams: 64,
                timeout_ms: 2000,
                held: 4,
                held_bytes: 2048,
            })),
            now_ms: 1_000_000,
            settings,
            pools,
            gateways_resolved,
        }
    }

    /// The snapshot of generation `generation`: the LAN 10.77.0.0/24 with two known hosts, the
    /// uplinks of `settings` (gateways resolved or not), all eligible for new flows or none.
    fn snapshot(
        settings: &Settings,
        pools: &[Arc<UplinkNat>],
        generation: u64,
        gateways_resolved: bool,
        eligible: bool,
    ) -> Snapshot {
        let uplinks: Vec<_> = (0..settings.weights.len())
            .map(|i| {
                Some(UplinkView {
                    name: format!("isp{}", i + 1),
                    address: Ipv4Addr::from(WAN_ADDR[i]),
                    mac: WAN_MAC[i],
                    gateway_mac: gateways_resolved.then_some(GW_MAC[i]),
                    mtu: 1500,
                    mss_clamp: None,
                    nat: pools[i].clone(),
                })
            })
            .collect();
        let status: Vec<_> = settings
            .weights
            .iter()
            .map(|&weight| UplinkStatus {
                weight,
                tier: 1,
                eligible: eligible && gateways_resolved,
            })
            .collect();
        Snapshot {
            generation,
            lan: LanView {
                mac: LAN_MAC,
                address: LAN_ADDR,
                mtu: 1500,
                prefixes: vec!["10.77.0.0/24".parse().unwrap()],
            },
            uplinks,
            policy: PolicyTable::build(&settings.policy_spec(), &status, KeyHasher::from_seed(7)),
            timeouts: Settings::timeouts(),
            lan_neighbours: vec![
                (Ipv4Addr::from(HOST), HOST_MAC),
                (Ipv4Addr::from(HOST2), HOST2_MAC),
            ],
            endpoint_independent_filtering: settings.endpoint_independent_filtering,
            net_unreachable: settings.net_unreachable,
            port_exhausted_icmp: settings.port_exhausted_icmp,
            frag_needed_to_uplink: RateLimit {
                per_second: 100,
                burst: 50,
            },
            frag_needed_to_lan: RateLimit {
                per_second: 100,
                burst: 50,
            },
            early_drop_unanswered: settings.early_drop_unanswered,
            flow_share: settings.flow_share,
            forwards: ForwardTable::new(
                settings.forwards.clone(),
                if eligible && gateways_resolved {
                    u32::MAX
                } else {
                    0
                },
            ),
        }
    }

    /// Publishes a snapshot in which every uplink is (or none is) eligible for new flows, as the control
    /// plane does when health changes; flows and port pools carry over.
    fn set_eligible(&mut self, eligible: bool) {
        self.snapshot = Self::snapshot(
            &self.settings,
            &self.pools,
            self.snapshot.generation + 1,
            self.gateways_resolved,
            eligible,
        );
    }

    /// Sums one per-uplink counter over the uplinks.
    fn uplink_sum(&self, f: fn(&super::counters::UplinkCounters) -> u64) -> u64 {
        self.counters.uplinks.iter().map(f).sum()
    }

    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            now_ms: self.now_ms,
            snapshot: &self.snapshot,
            flows: &self.flows,
            counters: &self.counters,
            fragments: &self.fragments,
        }
    }

    fn process(&self, ingress: PortId, frame: &mut Vec<u8>) -> Verdict {
        let len = frame.len();
        frame.resize(2048, 0);
        let verdict = self.pipeline().process(ingress, frame, len);
        match verdict {
            Verdict::Transmit { len, .. } => frame.truncate(len),
            Verdict::Drop(_) | Verdict::Held => frame.truncate(len),
        }
        verdict
    }

    /// Processes `frame`, which must be transmitted; its egress port.
    fn transmit(&self, ingress: PortId, frame: &mut Vec<u8>) -> PortId {
        match self.process(ingress, frame) {
            Verdict::Transmit { port, .. } => port,
            Verdict::Drop(reason) => panic!("dropped: {reason:?}"),
            Verdict::Held => panic!("held"),
        }
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
