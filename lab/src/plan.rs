//! The address plan: every namespace, interface, address, MAC and gateway of a lab, computed
//! purely from its [`LabSpec`] and prefix (no I/O), so the same plan can be rebuilt from the
//! state file of a lab that another process brought up.
//!
//! The plan (k = uplink number from 1, n = LAN host number from 1):
//! - LAN 10.77.0.0/24: router `lan0` 10.77.0.1, host n `eth0` 10.77.0.(10 + n), gateway 10.77.0.1;
//!   the hosts and `lan0` meet on bridge `br0` in the switch namespace (ports `rtr`, `h1..hN`).
//! - Uplink k: 198.51.100.(8(k-1))/29, ISP k's `to-rtr` = .8(k-1)+1 (the gateway), router `wank` =
//!   .8(k-1)+2.
//! - ISP k ↔ inet: 192.0.2.(4(k-1))/30, inet's `ispk` = .4(k-1)+1, ISP k's `to-inet` = .4(k-1)+2.
//! - Servers: 203.0.113.10 ..= 203.0.113.13 on inet's `lo`; HTTP and the echo listen on each,
//!   iperf3 server i on address i only (see [`IPERF_PORTS`]). inet's routes back to the uplinks
//!   carry `src 203.0.113.10`, so a wildcard-bound UDP server answers from a server address.
//! - Uplinks sharing one router interface ([`UplinkWiring::Shared`]): every uplink's `router_iface`
//!   is `wan1` (MAC of uplink 1), carrying every uplink's address; [`UplinkWiring::Macvlan`]: uplink
//!   k's `wank` is a macvlan on the router's veth `wan0`. Either way the router's veth meets every
//!   ISP's `to-rtr` on bridge `seg0` in the segment namespace (ports `rtr`, `isp1..ispK`); the
//!   addresses are the same as with separate veths.
//! - MACs are locally administered and fixed: `02:77:RR:KK:NN:SS`, so a plan never needs to ask
//!   the kernel; distinct labs live in distinct namespaces and bridges, so equal MACs never meet.
//!
//! Invariant: every address and MAC in a plan is distinct (tested below).

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::Serialize;

use crate::name::{Role, namespace_name};
use crate::spec::{LabSpec, RouterKind, UplinkWiring};

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The LAN subnet and its prefix length.
pub const LAN_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 0);
/// Prefix length of the LAN subnet.
pub const LAN_PREFIX_LEN: u8 = 24;
/// Prefix length of every uplink subnet (inside 198.51.100.0/24).
pub const UPLINK_PREFIX_LEN: u8 = 29;
/// Prefix length of every ISP ↔ inet link (inside 192.0.2.0/24).
pub const TRANSIT_PREFIX_LEN: u8 = 30;
/// Number of server addresses in inet.
pub const SERVER_ADDRESS_COUNT: u8 = 4;
/// TCP port of the HTTP server.
pub const HTTP_PORT: u16 = 80;
/// UDP and TCP port of the echo server that answers with the source `address:port` it saw.
pub const ECHO_PORT: u16 = 7777;
/// Ports of the iperf3 servers; server i listens on `server_addrs[i]:IPERF_PORTS[i]` only (a UDP
/// test's replies must leave from the address the client sent to, and iperf3 answers from the
/// address its socket is bound to). Each runs one test at a time: give parallel clients distinct
/// servers.
pub const IPERF_PORTS: [u16; SERVER_ADDRESS_COUNT as usize] = [5201, 5202, 5203, 5204];

/// Name of the router's LAN interface.
pub const ROUTER_LAN_IFACE: &str = "lan0";
/// Name of every LAN host's interface.
pub const HOST_IFACE: &str = "eth0";
/// Name of the bridge in the switch namespace.
pub const SWITCH_BRIDGE: &str = "br0";
/// Name of the switch port that faces the router.
pub const SWITCH_ROUTER_PORT: &str = "rtr";
/// Name of an ISP's interface that faces the router.
pub const ISP_ROUTER_IFACE: &str = "to-rtr";
/// Name of an ISP's interface that faces inet.
pub const ISP_INET_IFACE: &str = "to-inet";

/// The router namespace and its LAN side.
#[derive(Debug, Clone, Serialize)]
pub struct RouterNode {
    /// Namespace name.
    pub ns: String,
    /// LAN interface name (`lan0`).
    pub lan_iface: String,
    /// LAN address (10.77.0.1), the LAN hosts' gateway.
    pub lan_addr: Ipv4Addr,
    /// LAN prefix length.
    pub lan_prefix_len: u8,
    /// MAC of `lan0`.
    pub lan_mac: MacAddr,
    /// Who forwards.
    pub kind: RouterKind,
    /// RX and TX queues of the router's veth pairs (`lan0`, `wanK` and their peers); flowpin runs this
    /// many workers.
    pub queues: u16,
    /// flowpin's flow table capacity.
    pub flow_capacity: u32,
}

/// One LAN host.
#[derive(Debug, Clone, Serialize)]
pub struct LanHost {
    /// 1-based host number.
    pub number: usize,
    /// Namespace name.
    pub ns: String,
    /// Interface name (`eth0`).
    pub iface: String,
    /// Address (10.77.0.(10 + n)).
    pub addr: Ipv4Addr,
    /// MAC of `eth0`.
    pub mac: MacAddr,
    /// Default gateway (the router's `lan0`).
    pub gateway: Ipv4Addr,
    /// Name of this host's port on the switch bridge.
    pub switch_port: String,
}

/// One uplink: the router's `wank`, the ISP namespace behind it and its link to inet.
#[derive(Debug, Clone, Serialize)]
pub struct Uplink {
    /// 1-based uplink number.
    pub number: usize,
    /// Weight of the uplink in the spec.
    pub weight: u32,
    /// Whether `router_iface` and `isp_router_iface` are tun devices joined by the lab's relay
    /// ([`crate::tun_relay`]) rather than a veth pair (the MACs are then unused).
    pub tun: bool,
    /// Router interface name (`wank`).
    pub router_iface: String,
    /// Router address on this uplink (what masquerade / SNAT must use).
    pub router_addr: Ipv4Addr,
    /// MAC of the router's `wank`.
    pub router_mac: MacAddr,
    /// Uplink subnet (network address).
    pub network: Ipv4Addr,
    /// Uplink subnet prefix length.
    pub prefix_len: u8,
    /// Gateway address (the ISP's `to-rtr`).
    pub gateway: Ipv4Addr,
    /// Gateway MAC (the ISP's `to-rtr`).
    pub gateway_mac: MacAddr,
    /// ISP namespace name.
    pub isp_ns: String,
    /// ISP interface facing the router (`to-rtr`).
    pub isp_router_iface: String,
    /// ISP interface facing inet (`to-inet`).
    pub isp_inet_iface: String,
    /// ISP address on the transit link to inet.
    pub isp_transit_addr: Ipv4Addr,
    /// inet's interface facing this ISP (`ispk`).
    pub inet_iface: String,
    /// inet's address on the transit link (the ISP's default gateway).
    pub inet_transit_addr: Ipv4Addr,
}

/// The segment joining the router's one uplink veth to every ISP (not [`UplinkWiring::Separate`]).
#[derive(Debug, Clone, Serialize)]
pub struct SegmentNode {
    /// Namespace name.
    pub ns: String,
    /// The bridge (`seg0`).
    pub bridge: String,
    /// The bridge port facing the router (`rtr`).
    pub router_port: String,
    /// The router's veth on the segment: `wan1` (shared) or `wan0` (macvlan parent).
    pub router_iface: String,
    /// MAC of that veth.
    pub router_mac: MacAddr,
}

impl SegmentNode {
    /// The bridge port facing ISP `number`.
    pub fn isp_port(number: usize) -> String {
        format!("isp{number}")
    }
}

/// The internet namespace and its servers.
#[derive(Debug, Clone, Serialize)]
pub struct InetNode {
    /// Namespace name.
    pub ns: String,
    /// Server addresses (203.0.113.10 upwards); every server listens on each.
    pub server_addrs: Vec<Ipv4Addr>,
    /// HTTP port.
    pub http_port: u16,
    /// UDP and TCP echo port.
    pub echo_port: u16,
    /// iperf3 servers (address and port; one test at a time each).
    pub iperf_servers: Vec<SocketAddrV4>,
}

/// Every name and address of one lab.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// Prefix of every namespace name.
    pub prefix: String,
    /// LAN hosts, host 1 first.
    pub lan_hosts: Vec<LanHost>,
    /// Namespace of the LAN bridge.
    pub switch_ns: String,
    /// The router.
    pub router: RouterNode,
    /// Uplinks, uplink 1 first.
    pub uplinks: Vec<Uplink>,
    /// How the uplinks reach their ISPs.
    pub wiring: UplinkWiring,
    /// The segment bridge, when the uplinks share the router's veth.
    pub segment: Option<SegmentNode>,
    /// The internet.
    pub inet: InetNode,
}

fn mac(role: u8, uplink: u8, number: u8, side: u8) -> MacAddr {
    MacAddr([0x02, 0x77, role, uplink, number, side])
}

fn offset(base: Ipv4Addr, by: usize) -> Ipv4Addr {
    let by = u32::try_from(by).unwrap_or(u32::MAX);
    Ipv4Addr::from(u32::from(base).saturating_add(by))
}

fn small(value: usize) -> u8 {
    u8::try_from(value).unwrap_or(u8::MAX)
}

impl Topology {
    /// The plan of the lab `prefix` with shape `spec` (which must have passed
    /// [`LabSpec::validate`]).
    pub fn plan(prefix: &str, spec: &LabSpec) -> Topology {
        let router_lan_addr = offset(LAN_NETWORK, 1);
        let lan_hosts = (1..=spec.lan_hosts)
            .map(|number| LanHost {
                number,
                ns: namespace_name(prefix, Role::LanHost(number)),
                iface: HOST_IFACE.to_owned(),
                addr: offset(LAN_NETWORK, 10 + number),
                mac: mac(0, 0, small(number), 2),
                gateway: router_lan_addr,
                switch_port: format!("h{number}"),
            })
            .collect();
        let uplinks = spec
            .uplinks
            .iter()
            .enumerate()
            .map(|(index, uplink)| {
                let number = index + 1;
                let network = offset(Ipv4Addr::new(198, 51, 100, 0), 8 * index);
                let transit = offset(Ipv4Addr::new(192, 0, 2, 0), 4 * index);
                let (router_iface, router_mac) = match spec.wiring {
                    UplinkWiring::Shared => ("wan1".to_owned(), mac(1, 1, 0, 2)),
                    _ => (format!("wan{number}"), mac(1, small(number), 0, 2)),
                };
                Uplink {
                    number,
                    weight: uplink.weight,
                    tun: uplink.tun,
                    router_iface,
                    router_addr: offset(network, 2),
                    router_mac,
                    network,
                    prefix_len: UPLINK_PREFIX_LEN,
                    gateway: offset(network, 1),
                    gateway_mac: mac(1, small(number), 0, 1),
                    isp_ns: namespace_name(prefix, Role::Isp(number)),
                    isp_router_iface: ISP_ROUTER_IFACE.to_owned(),
                    isp_inet_iface: ISP_INET_IFACE.to_owned(),
                    isp_transit_addr: offset(transit, 2),
                    inet_iface: format!("isp{number}"),
                    inet_transit_addr: offset(transit, 1),
                }
            })
            .collect();
        Topology {
            prefix: prefix.to_owned(),
            lan_hosts,
            switch_ns: namespace_name(prefix, Role::Switch),
            router: RouterNode {
                ns: namespace_name(prefix, Role::Router),
                lan_iface: ROUTER_LAN_IFACE.to_owned(),
                lan_addr: router_lan_addr,
                lan_prefix_len: LAN_PREFIX_LEN,
                lan_mac: mac(0, 0, 0, 1),
                kind: spec.router,
                queues: spec.queues,
                flow_capacity: spec.flow_capacity,
            },
            uplinks,
            wiring: spec.wiring,
            segment: match spec.wiring {
                UplinkWiring::Separate => None,
                wiring => Some(SegmentNode {
                    ns: namespace_name(prefix, Role::Segment),
                    bridge: "seg0".to_owned(),
                    router_port: "rtr".to_owned(),
                    router_iface: match wiring {
                        UplinkWiring::Macvlan => "wan0".to_owned(),
                        _ => "wan1".to_owned(),
                    },
                    router_mac: match wiring {
                        UplinkWiring::Macvlan => mac(1, 0, 0, 2),
                        _ => mac(1, 1, 0, 2),
                    },
                }),
            },
            inet: InetNode {
                ns: namespace_name(prefix, Role::Inet),
                server_addrs: (0..SERVER_ADDRESS_COUNT)
                    .map(|i| Ipv4Addr::new(203, 0, 113, 10 + i))
                    .collect(),
                http_port: HTTP_PORT,
                echo_port: ECHO_PORT,
                iperf_servers: (0..SERVER_ADDRESS_COUNT)
                    .zip(IPERF_PORTS)
                    .map(|(i, port)| SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10 + i), port))
                    .collect(),
            },
        }
    }

    /// Every namespace of the lab, in creation order (torn down in reverse).
    pub fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = self.lan_hosts.iter().map(|host| host.ns.clone()).collect();
        all.push(self.switch_ns.clone());
        all.push(self.router.ns.clone());
        all.extend(self.uplinks.iter().map(|uplink| uplink.isp_ns.clone()));
        all.push(self.inet.ns.clone());
        all.extend(self.segment.iter().map(|segment| segment.ns.clone()));
        all
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::spec::UplinkSpec;

    fn contains(network: Ipv4Addr, prefix_len: u8, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(prefix_len));
        u32::from(addr) & mask == u32::from(network)
    }

    #[test]
    fn default_plan_matches_the_documented_addresses() {
        let plan = Topology::plan("fpx", &LabSpec::default());
        assert_eq!(plan.router.ns, "fpx-rtr");
        assert_eq!(plan.router.lan_addr, Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(plan.lan_hosts[0].addr, Ipv4Addr::new(10, 77, 0, 11));
        assert_eq!(plan.lan_hosts[1].addr, Ipv4Addr::new(10, 77, 0, 12));
        assert_eq!(plan.lan_hosts[1].ns, "fpx-lan2");
        assert_eq!(plan.uplinks[1].router_iface, "wan2");
        assert_eq!(plan.uplinks[1].gateway, Ipv4Addr::new(198, 51, 100, 9));
        assert_eq!(plan.uplinks[1].router_addr, Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(
            plan.uplinks[1].inet_transit_addr,
            Ipv4Addr::new(192, 0, 2, 5)
        );
        assert_eq!(
            plan.uplinks[1].isp_transit_addr,
            Ipv4Addr::new(192, 0, 2, 6)
        );
        assert_eq!(plan.inet.server_addrs.len(), 4);
        assert_eq!(plan.uplinks[0].router_mac.to_string(), "02:77:01:01:00:02");
        assert_eq!(
            plan.namespaces(),
            [
                "fpx-lan1", "fpx-lan2", "fpx-sw", "fpx-rtr", "fpx-isp1", "fpx-isp2", "fpx-inet"
            ]
        );
    }

    #[test]
    fn largest_plan_has_distinct_addresses_and_macs_in_their_ranges() {
        let spec = LabSpec {
            lan_hosts: crate::spec::MAX_LAN_HOSTS,
            uplinks: vec![UplinkSpec::ethernet(1); crate::spec::MAX_UPLINKS],
            ..LabSpec::default()
        };
        spec.validate().unwrap();
        let plan = Topology::plan("fpbig", &spec);
        let mut addrs = vec![plan.router.lan_addr];
        let mut macs = vec![plan.router.lan_mac];
        for host in &plan.lan_hosts {
            assert!(
                contains(LAN_NETWORK, LAN_PREFIX_LEN, host.addr),
                "{}",
                host.addr
            );
            assert!(host.addr.is_private());
            addrs.push(host.addr);
            macs.push(host.mac);
        }
        for uplink in &plan.uplinks {
            assert!(contains(Ipv4Addr::new(198, 51, 100, 0), 24, uplink.network));
            assert!(contains(uplink.network, uplink.prefix_len, uplink.gateway));
            assert!(contains(
                uplink.network,
                uplink.prefix_len,
                uplink.router_addr
            ));
            assert!(contains(
                Ipv4Addr::new(192, 0, 2, 0),
                24,
                uplink.isp_transit_addr
            ));
            addrs.extend([
                uplink.router_addr,
                uplink.gateway,
                uplink.isp_transit_addr,
                uplink.inet_transit_addr,
            ]);
            macs.extend([uplink.router_mac, uplink.gateway_mac]);
        }
        addrs.extend(plan.inet.server_addrs.iter().copied());
        let distinct_addrs: HashSet<_> = addrs.iter().collect();
        assert_eq!(
            distinct_addrs.len(),
            addrs.len(),
            "an address is used twice"
        );
        let distinct_macs: HashSet<_> = macs.iter().collect();
        assert_eq!(distinct_macs.len(), macs.len(), "a MAC is used twice");
        assert!(
            macs.iter().all(|mac| mac.0[0] & 0b11 == 0b10),
            "MACs are local unicast"
        );
    }
}
