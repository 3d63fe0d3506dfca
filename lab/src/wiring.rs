//! Builds a planned [`Topology`] in the kernel: namespaces, veth pairs (created directly inside
//! their namespaces, so no name ever appears in the root namespace), the LAN bridge, addresses,
//! routes, sysctls, offloads and the ISP counters. Router forwarding configuration is not done
//! here (see [`crate::kernel_router`] and [`crate::spec::RouterKind::None`]).
//!
//! Platform rules applied here (kernel and veth behaviour measured on the project's machines):
//! - frames that XDP/AF_XDP transmits into a veth are dropped unless the peer runs NAPI, so GRO is
//!   on at every peer of a router interface (switch port `rtr`, every ISP's `to-rtr`);
//! - TX checksum offload is off on the LAN hosts' `eth0`, the ISPs' `to-rtr` and inet's `ispk`, so
//!   packets reaching the router carry finished checksums;
//! - `net.core.txrehash=0` on the LAN hosts, so a TCP retransmission timeout does not re-hash a
//!   flow onto another multipath nexthop;
//! - the router's veth pairs (`lan0` ↔ `rtr`, `wank` ↔ `to-rtr`, both ends) have
//!   [`RouterNode::queues`](crate::RouterNode::queues) RX and TX queues, every other pair one. A veth
//!   delivers a frame on the receive queue numbered like the sender's transmit queue. The bridge and
//!   the ISP forward frames they received on a one-queue veth, so they pick the transmit queue towards
//!   the router from the packet's hash (one per flow, like RSS on a real NIC), and the router's
//!   `lan0` and `wank` receive different flows on different queues.
//! - uplinks on one router veth ([`UplinkWiring::Shared`], [`UplinkWiring::Macvlan`]): that veth's
//!   peer `rtr` (GRO on, the router's queue count) and every ISP's `to-rtr` (through a one-queue
//!   veth whose other end is port `ispk`) are ports of bridge `seg0` in the segment namespace;
//!   macvlans get the router's queue count too. (With several queues upstream too
//!   the forwarding hop would reuse the recorded receive queue, and every flow would end up on queue 0.)
//! - a tun uplink ([`crate::spec::UplinkSpec::tun`]) is two persistent tun devices, `wank` in the
//!   router and `to-rtr` in its ISP, joined by the relay process of [`crate::tun_relay`]; no MACs,
//!   no offloads to set, one queue.

use anyhow::{Result, bail};

use crate::command::{run, run_in, run_with_input};
use crate::isp_counters::counter_ruleset;
use crate::plan::{SWITCH_BRIDGE, SWITCH_ROUTER_PORT, SegmentNode, Topology, Uplink};
use crate::spec::{RouterKind, UplinkWiring};

fn ip(ns: &str, args: &[&str]) -> Result<()> {
    let mut argv = vec!["ip", "-n", ns];
    argv.extend_from_slice(args);
    run(&argv).map(drop)
}

/// `ip -n ns link add name [name_options] type veth peer name peer [peer_options]`, both ends with
/// `queues` RX and TX queues.
fn add_veth(
    ns: &str,
    (name, name_options): (&str, &[&str]),
    (peer, peer_options): (&str, &[&str]),
    queues: u16,
) -> Result<()> {
    let queues = queues.to_string();
    let queue_options = ["numtxqueues", &queues, "numrxqueues", &queues];
    let mut args = vec!["link", "add", name];
    args.extend_from_slice(name_options);
    args.extend_from_slice(&queue_options);
    args.extend_from_slice(&["type", "veth", "peer", "name", peer]);
    args.extend_from_slice(peer_options);
    args.extend_from_slice(&queue_options);
    ip(ns, &args)
}

fn cidr(addr: std::net::Ipv4Addr, prefix_len: u8) -> String {
    format!("{addr}/{prefix_len}")
}

/// Creates every namespace of `topology`; fails if one already exists (a name clash).
pub fn create_namespaces(topology: &Topology) -> Result<()> {
    let existing = crate::teardown::list_namespaces()?;
    for ns in topology.namespaces() {
        if existing.contains(&ns) {
            bail!(
                "namespace {ns} already exists: lab name {} is taken",
                topology.prefix
            );
        }
        run(&["ip", "netns", "add", &ns])?;
        ip(&ns, &["link", "set", "dev", "lo", "up"])?;
    }
    Ok(())
}

/// Wires the LAN: bridge, router `lan0`, hosts' `eth0`, addresses, default routes.
pub fn wire_lan(topology: &Topology) -> Result<()> {
    let switch = &topology.switch_ns;
    let router = &topology.router;
    ip(switch, &["link", "add", SWITCH_BRIDGE, "type", "bridge"])?;
    ip(switch, &["link", "set", "dev", SWITCH_BRIDGE, "up"])?;
    let lan_mac = router.lan_mac.to_string();
    add_veth(
        switch,
        (SWITCH_ROUTER_PORT, &[]),
        (
            &router.lan_iface,
            &["address", &lan_mac, "netns", &router.ns],
        ),
        router.queues,
    )?;
    ip(
        switch,
        &[
            "link",
            "set",
            SWITCH_ROUTER_PORT,
            "master",
            SWITCH_BRIDGE,
            "up",
        ],
    )?;
    run_in(switch, &["ethtool", "-K", SWITCH_ROUTER_PORT, "gro", "on"])?;
    ip(
        &router.ns,
        &[
            "addr",
            "add",
            &cidr(router.lan_addr, router.lan_prefix_len),
            "dev",
            &router.lan_iface,
        ],
    )?;
    ip(&router.ns, &["link", "set", "dev", &router.lan_iface, "up"])?;
    for host in &topology.lan_hosts {
        let mac = host.mac.to_string();
        add_veth(
            switch,
            (&host.switch_port, &[]),
            (&host.iface, &["address", &mac, "netns", &host.ns]),
            1,
        )?;
        ip(
            switch,
            &[
                "link",
                "set",
                &host.switch_port,
                "master",
                SWITCH_BRIDGE,
                "up",
            ],
        )?;
        ip(
            &host.ns,
            &[
                "addr",
                "add",
                &cidr(host.addr, router.lan_prefix_len),
                "dev",
                &host.iface,
            ],
        )?;
        ip(&host.ns, &["link", "set", "dev", &host.iface, "up"])?;
        ip(
            &host.ns,
            &["route", "add", "default", "via", &host.gateway.to_string()],
        )?;
        run_in(&host.ns, &["ethtool", "-K", &host.iface, "tx", "off"])?;
        run_in(&host.ns, &["sysctl", "-qw", "net.core.txrehash=0"])?;
    }
    Ok(())
}

/// Wires every uplink: router `wank` ↔ ISP k `to-rtr`, ISP k `to-inet` ↔ inet `ispk`, addresses, routes,
/// forwarding in the ISP, and the ISP's counters.
pub fn wire_uplinks(topology: &Topology) -> Result<()> {
    let router = &topology.router.ns;
    let queues = topology.router.queues;
    let inet = &topology.inet.ns;
    // Server addresses first: the routes below name the primary one as their source.
    for addr in &topology.inet.server_addrs {
        ip(inet, &["addr", "add", &cidr(*addr, 32), "dev", "lo"])?;
    }
    if let Some(segment) = &topology.segment {
        wire_segment(topology, segment)?;
    }
    for uplink in &topology.uplinks {
        let isp = &uplink.isp_ns;
        if uplink.tun {
            // Two persistent tuns; the relay (crate::tun_relay) joins them once started.
            ip(
                router,
                &["tuntap", "add", "dev", &uplink.router_iface, "mode", "tun"],
            )?;
            ip(
                isp,
                &[
                    "tuntap",
                    "add",
                    "dev",
                    &uplink.isp_router_iface,
                    "mode",
                    "tun",
                ],
            )?;
        } else {
            match &topology.segment {
                None => add_veth(
                    router,
                    (
                        &uplink.router_iface,
                        &["address", &uplink.router_mac.to_string()],
                    ),
                    (
                        &uplink.isp_router_iface,
                        &["address", &uplink.gateway_mac.to_string(), "netns", isp],
                    ),
                    queues,
                )?,
                Some(segment) => wire_isp_to_segment(segment, uplink)?,
            }
        }
        ip(
            router,
            &[
                "addr",
                "add",
                &cidr(uplink.router_addr, uplink.prefix_len),
                "dev",
                &uplink.router_iface,
            ],
        )?;
        ip(router, &["link", "set", "dev", &uplink.router_iface, "up"])?;
        ip(
            isp,
            &[
                "addr",
                "add",
                &cidr(uplink.gateway, uplink.prefix_len),
                "dev",
                &uplink.isp_router_iface,
            ],
        )?;
        ip(isp, &["link", "set", "dev", &uplink.isp_router_iface, "up"])?;
        if !uplink.tun {
            run_in(
                isp,
                &[
                    "ethtool",
                    "-K",
                    &uplink.isp_router_iface,
                    "gro",
                    "on",
                    "tx",
                    "off",
                ],
            )?;
        }

        add_veth(
            isp,
            (&uplink.isp_inet_iface, &[]),
            (&uplink.inet_iface, &["netns", inet]),
            1,
        )?;
        let transit_len = crate::plan::TRANSIT_PREFIX_LEN;
        ip(
            isp,
            &[
                "addr",
                "add",
                &cidr(uplink.isp_transit_addr, transit_len),
                "dev",
                &uplink.isp_inet_iface,
            ],
        )?;
        ip(isp, &["link", "set", "dev", &uplink.isp_inet_iface, "up"])?;
        ip(
            isp,
            &[
                "route",
                "add",
                "default",
                "via",
                &uplink.inet_transit_addr.to_string(),
            ],
        )?;
        ip(
            inet,
            &[
                "addr",
                "add",
                &cidr(uplink.inet_transit_addr, transit_len),
                "dev",
                &uplink.inet_iface,
            ],
        )?;
        ip(inet, &["link", "set", "dev", &uplink.inet_iface, "up"])?;
        run_in(inet, &["ethtool", "-K", &uplink.inet_iface, "tx", "off"])?;
        let uplink_net = cidr(uplink.network, uplink.prefix_len);
        ip(
            inet,
            &[
                "route",
                "add",
                &uplink_net,
                "via",
                &uplink.isp_transit_addr.to_string(),
            ],
        )?;

        run_in(isp, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let rules = counter_ruleset(&uplink.isp_router_iface, uplink.router_addr);
        run_with_input(&["ip", "netns", "exec", isp, "nft", "-f", "-"], &rules)?;
    }
    Ok(())
}

/// The segment bridge and the router's veth on it (and, for macvlan wiring, every uplink's macvlan
/// on that veth).
fn wire_segment(topology: &Topology, segment: &SegmentNode) -> Result<()> {
    let (ns, router) = (&segment.ns, &topology.router);
    // The segment's devices have no address; coming up they would announce their link-local
    // groups (an IGMPv3 report from 0.0.0.0) to every ISP, whose counters would take it for a
    // wrong uplink.
    run_in(
        ns,
        &["sysctl", "-qw", "net.ipv4.igmp_link_local_mcast_reports=0"],
    )?;
    ip(ns, &["link", "add", &segment.bridge, "type", "bridge"])?;
    ip(ns, &["link", "set", "dev", &segment.bridge, "up"])?;
    let router_mac = segment.router_mac.to_string();
    add_veth(
        ns,
        (&segment.router_port, &[]),
        (
            &segment.router_iface,
            &["address", &router_mac, "netns", &router.ns],
        ),
        router.queues,
    )?;
    let port = &segment.router_port;
    ip(ns, &["link", "set", port, "master", &segment.bridge, "up"])?;
    run_in(ns, &["ethtool", "-K", port, "gro", "on"])?;
    ip(
        &router.ns,
        &["link", "set", "dev", &segment.router_iface, "up"],
    )?;
    if topology.wiring == UplinkWiring::Macvlan {
        let queues = router.queues.to_string();
        for uplink in &topology.uplinks {
            let mac = uplink.router_mac.to_string();
            let args = [
                "link",
                "add",
                &uplink.router_iface,
                "link",
                &segment.router_iface,
                "address",
                &mac,
                "numtxqueues",
                &queues,
                "numrxqueues",
                &queues,
                "type",
                "macvlan",
                "mode",
                "bridge",
            ];
            ip(&router.ns, &args)?;
        }
    }
    Ok(())
}

/// ISP `uplink`'s `to-rtr` on the segment bridge.
fn wire_isp_to_segment(segment: &SegmentNode, uplink: &Uplink) -> Result<()> {
    let port = SegmentNode::isp_port(uplink.number);
    let gateway_mac = uplink.gateway_mac.to_string();
    add_veth(
        &segment.ns,
        (&port, &[]),
        (
            &uplink.isp_router_iface,
            &["address", &gateway_mac, "netns", &uplink.isp_ns],
        ),
        1,
    )?;
    ip(
        &segment.ns,
        &["link", "set", &port, "master", &segment.bridge, "up"],
    )
}

/// Router configuration common to every [`RouterKind`]: forwarding on. For
/// [`RouterKind::None`] also permanent neighbours for gateways and LAN hosts and a plain default
/// route via uplink 1 (the router's own traffic); the kernel router gets its multipath route in
/// [`crate::kernel_router::configure`].
pub fn prepare_router(topology: &Topology) -> Result<()> {
    let router = &topology.router;
    run_in(&router.ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    if router.kind == RouterKind::None {
        permanent_neighbours(topology)?;
    }
    if router.kind != RouterKind::Kernel
        && let Some(first) = topology.uplinks.first()
    {
        ip(
            &router.ns,
            &[
                "route",
                "replace",
                "default",
                "via",
                &first.gateway.to_string(),
                "dev",
                &first.router_iface,
            ],
        )?;
    }
    Ok(())
}

/// Permanent neighbour entries for the gateways and the LAN hosts (router kind `None`).
fn permanent_neighbours(topology: &Topology) -> Result<()> {
    let router = &topology.router;
    {
        for uplink in topology.uplinks.iter().filter(|u| !u.tun) {
            let (gateway, mac) = (uplink.gateway.to_string(), uplink.gateway_mac.to_string());
            ip(
                &router.ns,
                &[
                    "neigh",
                    "replace",
                    &gateway,
                    "lladdr",
                    &mac,
                    "dev",
                    &uplink.router_iface,
                    "nud",
                    "permanent",
                ],
            )?;
        }
        for host in &topology.lan_hosts {
            let (addr, mac) = (host.addr.to_string(), host.mac.to_string());
            ip(
                &router.ns,
                &[
                    "neigh",
                    "replace",
                    &addr,
                    "lladdr",
                    &mac,
                    "dev",
                    &router.lan_iface,
                    "nud",
                    "permanent",
                ],
            )?;
        }
    }
    Ok(())
}
