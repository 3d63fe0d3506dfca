//! What the control plane learns from the kernel about interfaces and neighbours.
//!
//! Interface index, MAC, MTU and IPv4 addresses, and the gateway MAC of each uplink, are read from the
//! kernel's link, address and neighbour tables over rtnetlink (a `NETLINK_ROUTE` socket: [`rtnetlink`]
//! sends the requests, [`entries`] decodes the replies). This runs only in the control plane — at start,
//! on every rtnetlink event ([`super::link_events`]) and on the once-a-second re-read — never per packet;
//! each read is a few syscalls on a short-lived socket, no process. When a gateway has no usable
//! neighbour entry, [`solicit_neighbour`] makes the kernel resolve it (it sends the ARP request itself,
//! out of the right device: see [`solicit`]).
//!
//! Invariants: every answer is what the kernel's tables hold at the moment of the request (nothing is
//! cached here); an error names the interface and the request that failed, with the errno.

pub(crate) mod entries;
pub(crate) mod rtnetlink;
mod solicit;
#[cfg(test)]
pub(crate) mod test_messages;

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use rtnetlink::RouteSocket;

use crate::link_kind::LinkKind;

pub use crate::datapath::Mac;

/// What the datapath needs to know about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Kernel interface name.
    pub name: String,
    /// Kernel interface index.
    pub ifindex: u32,
    /// Its MAC address (all zero on a device without a link layer).
    pub mac: Mac,
    /// Whether the device has no link layer (tun, PPP, raw-IP): no MAC, no neighbours.
    pub layer3: bool,
    /// Its MTU.
    pub mtu: u32,
    /// Whether the link carries packets now (carrier and operational; see [`entries::operational`]).
    pub carrier: bool,
    /// Its IPv4 addresses with prefix lengths, in kernel order.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

/// Parses a MAC address written `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts
            .next()
            .with_context(|| format!("MAC {s:?} is too short"))?;
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("bad MAC {s:?}"))?;
    }
    if parts.next().is_some() {
        bail!("MAC {s:?} is too long");
    }
    Ok(mac)
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads one interface's index, MAC, MTU, carrier and IPv4 addresses.
pub fn interface(name: &str) -> Result<InterfaceInfo> {
    read_interface(name).with_context(|| format!("reading interface {name:?}"))
}

fn read_interface(name: &str) -> Result<InterfaceInfo> {
    let mut socket = RouteSocket::open()?;
    let link = link_named(&mut socket, name)?;
    let addresses = ipv4_addresses(&mut socket)?;
    interface_info(link, &addresses)
}

/// The interface facts from its link entry and the IPv4 address table (kernel order kept).
fn interface_info(
    link: entries::Link,
    addresses: &[entries::Ipv4Address],
) -> Result<InterfaceInfo> {
    let layer3 = match link.kind {
        Some(LinkKind::Layer3) => true,
        Some(LinkKind::Ethernet) => false,
        None => bail!(
            "interface is neither Ethernet nor a device without a link layer (tun, PPP, raw-IP)"
        ),
    };
    let mac = match link.mac {
        Some(mac) => mac,
        None if layer3 => [0; 6],
        None => bail!("interface has no MAC address (not an Ethernet interface)"),
    };
    Ok(InterfaceInfo {
        ipv4: addresses
            .iter()
            .filter(|a| a.ifindex == link.ifindex)
            .map(|a| (a.address, a.prefix_len))
            .collect(),
        name: link.name,
        ifindex: link.ifindex,
        mac,
        layer3,
        mtu: link.mtu,
        carrier: link.carrier,
    })
}

/// The MAC of `ip` in the neighbour table of `dev`, if the entry is usable (reachable, stale, delay,
/// probe, permanent or noarp — not none, incomplete or failed).
pub fn neighbour(dev: &str, ip: Ipv4Addr) -> Result<Option<Mac>> {
    Ok(usable_mac(&neighbours_of(dev)?, ip))
}

/// The MAC of the first usable entry for `ip`.
fn usable_mac(entries: &[entries::Ipv4Neighbour], ip: Ipv4Addr) -> Option<Mac> {
    entries
        .iter()
        .filter(|n| n.address == ip)
        .find_map(|n| n.mac)
}

/// Every usable IPv4 neighbour of `dev` with its MAC, in kernel order (see [`neighbour`] for usable).
pub fn neighbours(dev: &str) -> Result<Vec<(Ipv4Addr, Mac)>> {
    Ok(neighbours_of(dev)?
        .iter()
        .filter_map(|n| Some((n.address, n.mac?)))
        .collect())
}

fn neighbours_of(dev: &str) -> Result<Vec<entries::Ipv4Neighbour>> {
    let read = || -> Result<_> {
        let mut socket = RouteSocket::open()?;
        let ifindex = link_named(&mut socket, dev)?.ifindex;
        let mut request = NeighbourMessage::default();
        request.header.family = AddressFamily::Inet;
        // The kernel filters the dump by device; the filter below keeps us right on kernels that do not.
        request
            .attributes
            .push(NeighbourAttribute::IfIndex(ifindex));
        let replies = socket.dump(
            &format!("RTM_GETNEIGH dump (IPv4, {dev:?})"),
            RouteNetlinkMessage::GetNeighbour(request),
        )?;
        Ok(ipv4_neighbours_on(&replies, ifindex))
    };
    read().with_context(|| format!("reading the neighbours of {dev:?}"))
}

/// The IPv4 neighbours of interface `ifindex` among `replies`.
fn ipv4_neighbours_on(
    replies: &[RouteNetlinkMessage],
    ifindex: u32,
) -> Vec<entries::Ipv4Neighbour> {
    replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewNeighbour(m) => entries::ipv4_neighbour(m),
            _ => None,
        })
        .filter(|n| n.ifindex == ifindex)
        .collect()
}

/// Makes the kernel resolve `gateway` on every interface whose IPv4 subnet holds it, each through its own
/// device (see [`solicit`]): two uplinks that share a gateway address both get theirs resolved. When no
/// subnet holds it (an on-link route to a gateway outside the address's prefix, say), the datagram goes
/// wherever the routing table sends it.
pub fn solicit_neighbour(gateway: Ipv4Addr) -> Result<()> {
    let devices = devices_on_link_to(gateway).context("finding the devices a gateway is on")?;
    if devices.is_empty() {
        return solicit::send_probe(None, gateway);
    }
    let mut first_error = None;
    for device in &devices {
        if let Err(e) = solicit_neighbour_on(device, gateway) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Makes the kernel resolve `gateway` on `device` (it sends the ARP request itself); see [`solicit`].
pub fn solicit_neighbour_on(device: &str, gateway: Ipv4Addr) -> Result<()> {
    solicit::send_probe(Some(device), gateway)
}

/// Makes the kernel ask for `gateway` on `device` again *now*: an entry whose resolution is pending or
/// failed is removed first (the kernel re-sends a pending request only after its retransmit time, a
/// second by default, so a lost first request or answer would otherwise cost that second), then the
/// gateway is solicited, which creates a fresh entry and sends the ARP request at once. A usable entry
/// is never touched; an entry with no MAC holds nothing anyone could lose.
pub fn ask_gateway_again(device: &str, gateway: Ipv4Addr) -> Result<()> {
    let stale_request = neighbours_of(device)?
        .into_iter()
        .find(|n| n.address == gateway && n.unresolved && n.mac.is_none());
    if let Some(entry) = stale_request {
        let mut request = NeighbourMessage::default();
        request.header.family = AddressFamily::Inet;
        request.header.ifindex = entry.ifindex;
        request
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                gateway,
            )));
        let what = format!("RTM_DELNEIGH ({gateway} on {device:?})");
        match RouteSocket::open()?.change(&what, RouteNetlinkMessage::DelNeighbour(request), 0) {
            Ok(()) => {}
            // Resolved or expired in the meantime: soliciting is all that is left to do.
            Err(e) if errno_of(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    solicit_neighbour_on(device, gateway)
}

/// The errno at the root of `error`, if it is an I/O error.
fn errno_of(error: &anyhow::Error) -> Option<i32> {
    error
        .root_cause()
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::raw_os_error)
}

/// Names of the interfaces with an IPv4 subnet that holds `gateway` (and not as their own address).
fn devices_on_link_to(gateway: Ipv4Addr) -> Result<Vec<String>> {
    let mut socket = RouteSocket::open()?;
    let addresses = ipv4_addresses(&mut socket)?;
    let mut ifindexes: Vec<u32> = addresses
        .iter()
        .filter(|a| a.address != gateway && solicit::in_subnet(gateway, a.address, a.prefix_len))
        .map(|a| a.ifindex)
        .collect();
    ifindexes.sort_unstable();
    ifindexes.dedup();
    if ifindexes.is_empty() {
        return Ok(Vec::new());
    }
    let links = socket.dump(
        "RTM_GETLINK dump",
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
    )?;
    Ok(links
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(m) => Some(entries::link(m)),
            _ => None,
        })
        .filter(|l| ifindexes.contains(&l.ifindex))
        .map(|l| l.name)
        .collect())
}

/// The link entry of interface `name` (one `RTM_GETLINK` by name).
fn link_named(socket: &mut RouteSocket, name: &str) -> Result<entries::Link> {
    let mut request = LinkMessage::default();
    request
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    match socket.get(
        &format!("RTM_GETLINK {name:?}"),
        RouteNetlinkMessage::GetLink(request),
    )? {
        RouteNetlinkMessage::NewLink(m) => Ok(entries::link(&m)),
        other => bail!(
            "rtnetlink RTM_GETLINK {name:?}: unexpected reply {}",
            other.message_type()
        ),
    }
}

/// Every IPv4 address of every interface, in kernel order.
fn ipv4_addresses(socket: &mut RouteSocket) -> Result<Vec<entries::Ipv4Address>> {
    let mut request = AddressMessage::default();
    request.header.family = AddressFamily::Inet;
    let replies = socket.dump(
        "RTM_GETADDR dump (IPv4)",
        RouteNetlinkMessage::GetAddress(request),
    )?;
    Ok(ipv4_addresses_in(&replies))
}

/// The IPv4 addresses among `replies`, in their order.
fn ipv4_addresses_in(replies: &[RouteNetlinkMessage]) -> Vec<entries::Ipv4Address> {
    replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewAddress(m) => entries::ipv4_address(m),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NLM_F_DUMP_INTR;
    use netlink_packet_route::link::LinkFlags;
    use netlink_packet_route::neighbour::NeighbourState;

    use super::rtnetlink::{Answer, Progress, absorb};
    use super::test_messages as msg;
    use super::*;

    const WAN1: Mac = [2, 0, 0, 0, 1, 2];
    const GW_MAC: Mac = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Feeds `datagrams` for request `sequence` through the receive path; the answer once complete.
    fn receive(datagrams: &[Vec<u8>], sequence: u32, dumping: bool) -> Result<Answer> {
        let mut answer = Answer::default();
        for (i, datagram) in datagrams.iter().enumerate() {
            if absorb(datagram, sequence, dumping, &mut answer)? == Progress::Done {
                assert_eq!(i + 1, datagrams.len(), "complete before the last datagram");
                return Ok(answer);
            }
        }
        bail!("incomplete after {} datagrams", datagrams.len())
    }

    #[test]
    fn an_interface_from_its_link_reply_and_the_address_dump() {
        let link_reply = msg::dump_datagram(
            vec![RouteNetlinkMessage::NewLink(msg::link(
                5, "wan1", WAN1, 1400, true,
            ))],
            7,
            0,
            false,
        );
        let link = match receive(&[link_reply], 7, false)
            .unwrap()
            .messages
            .as_slice()
        {
            [RouteNetlinkMessage::NewLink(m)] => entries::link(m),
            other => panic!("one link expected, got {other:?}"),
        };
        // The address dump in two datagrams, another interface's address between wan1's two, and a
        // stray message of another request that must be ignored.
        let addresses = [
            msg::dump_datagram(
                vec![
                    RouteNetlinkMessage::NewAddress(msg::ipv4_address(5, ip("198.51.100.2"), 29)),
                    RouteNetlinkMessage::NewAddress(msg::ipv4_address(3, ip("10.0.1.1"), 24)),
                ],
                8,
                0,
                false,
            ),
            [
                msg::dump_datagram(
                    vec![RouteNetlinkMessage::NewAddress(msg::ipv4_address(
                        5,
                        ip("9.9.9.9"),
                        8,
                    ))],
                    99,
                    0,
                    false,
                ),
                msg::dump_datagram(
                    vec![RouteNetlinkMessage::NewAddress(msg::ipv4_address(
                        5,
                        ip("198.51.100.3"),
                        32,
                    ))],
                    8,
                    0,
                    true,
                ),
            ]
            .concat(),
        ];
        let answer = receive(&addresses, 8, true).unwrap();
        assert!(!answer.interrupted);
        let info = interface_info(link, &ipv4_addresses_in(&answer.messages)).unwrap();
        assert_eq!(
            info,
            InterfaceInfo {
                name: "wan1".into(),
                ifindex: 5,
                mac: WAN1,
                layer3: false,
                mtu: 1400,
                carrier: true,
                ipv4: vec![(ip("198.51.100.2"), 29), (ip("198.51.100.3"), 32)],
            }
        );
    }

    #[test]
    fn carrier_is_lower_up_and_an_interface_needs_a_mac() {
        let mut m = msg::link(4, "wan2", WAN1, 1500, false);
        assert!(!entries::link(&m).carrier);
        m.attributes
            .retain(|a| !matches!(a, LinkAttribute::Address(_)));
        // A carrier the kernel has not made operational yet does not carry packets.
        m.header.flags |= LinkFlags::LowerUp;
        assert!(!entries::link(&m).carrier);
        m.header.flags |= LinkFlags::Running;
        assert!(entries::link(&m).carrier);
        let error = interface_info(entries::link(&m), &[]).unwrap_err();
        assert!(format!("{error:#}").contains("no MAC address"), "{error:#}");
    }

    #[test]
    fn a_device_without_link_layer_has_no_mac_and_other_kinds_are_refused() {
        let mut m = msg::link(7, "tun0", WAN1, 1492, true);
        m.attributes
            .retain(|a| !matches!(a, LinkAttribute::Address(_)));
        m.header.link_layer_type = netlink_packet_route::link::LinkLayerType::None;
        let info = interface_info(entries::link(&m), &[]).unwrap();
        assert!(info.layer3);
        assert_eq!(info.mac, [0; 6]);
        m.header.link_layer_type = netlink_packet_route::link::LinkLayerType::Ppp;
        assert!(interface_info(entries::link(&m), &[]).unwrap().layer3);
        m.header.link_layer_type = netlink_packet_route::link::LinkLayerType::Loopback;
        let error = interface_info(entries::link(&m), &[]).unwrap_err();
        assert!(
            format!("{error:#}").contains("neither Ethernet"),
            "{error:#}"
        );
    }

    #[test]
    fn the_gateway_mac_is_the_first_usable_entry_on_the_device() {
        let gw = ip("198.51.100.1");
        let dump = msg::dump_datagram(
            vec![
                // Same gateway address on another uplink: not ours.
                RouteNetlinkMessage::NewNeighbour(msg::ipv4_neighbour(
                    6,
                    gw,
                    Some([1; 6]),
                    NeighbourState::Reachable,
                )),
                RouteNetlinkMessage::NewNeighbour(msg::ipv4_neighbour(
                    5,
                    ip("198.51.100.7"),
                    Some([7; 6]),
                    NeighbourState::Stale,
                )),
                RouteNetlinkMessage::NewNeighbour(msg::ipv4_neighbour(
                    5,
                    gw,
                    Some(GW_MAC),
                    NeighbourState::Stale,
                )),
            ],
            3,
            0,
            true,
        );
        let replies = receive(&[dump], 3, true).unwrap().messages;
        let on_wan1 = ipv4_neighbours_on(&replies, 5);
        assert_eq!(usable_mac(&on_wan1, gw), Some(GW_MAC));
        assert_eq!(
            usable_mac(&ipv4_neighbours_on(&replies, 6), gw),
            Some([1; 6])
        );
        assert_eq!(usable_mac(&on_wan1, ip("198.51.100.9")), None);
    }

    #[test]
    fn unresolved_neighbours_give_no_mac() {
        let gw = ip("198.51.100.1");
        for (mac, state) in [
            (None, NeighbourState::Incomplete),
            (Some(GW_MAC), NeighbourState::Failed),
            (Some(GW_MAC), NeighbourState::None),
            (None, NeighbourState::Reachable),
        ] {
            let dump = msg::dump_datagram(
                vec![RouteNetlinkMessage::NewNeighbour(msg::ipv4_neighbour(
                    5, gw, mac, state,
                ))],
                1,
                0,
                true,
            );
            let replies = receive(&[dump], 1, true).unwrap().messages;
            assert_eq!(
                usable_mac(&ipv4_neighbours_on(&replies, 5), gw),
                None,
                "{mac:?} {state:?}"
            );
        }
    }

    #[test]
    fn a_refused_request_names_the_errno() {
        let error = receive(&[msg::error_datagram(4, libc::ENODEV)], 4, false).unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("refused") && text.contains("No such device"),
            "{text}"
        );
    }

    #[test]
    fn an_interrupted_dump_is_flagged() {
        let dump = msg::dump_datagram(
            vec![RouteNetlinkMessage::NewAddress(msg::ipv4_address(
                5,
                ip("198.51.100.2"),
                29,
            ))],
            2,
            NLM_F_DUMP_INTR,
            true,
        );
        assert!(receive(&[dump], 2, true).unwrap().interrupted);
    }

    #[test]
    fn a_truncated_datagram_is_an_error() {
        let mut dump = msg::dump_datagram(
            vec![RouteNetlinkMessage::NewAddress(msg::ipv4_address(
                5,
                ip("198.51.100.2"),
                29,
            ))],
            2,
            0,
            true,
        );
        dump.truncate(dump.len() - 3);
        assert!(receive(&[dump], 2, true).is_err());
    }

    #[test]
    fn mac_parsing_rejects_bad_input() {
        assert!(parse_mac("aa:bb:cc:dd:ee").is_err());
        assert!(parse_mac("aa:bb:cc:dd:ee:ff:00").is_err());
        assert!(parse_mac("zz:bb:cc:dd:ee:ff").is_err());
        assert_eq!(format_mac(&[1, 2, 3, 0xa, 0xb, 0xc]), "01:02:03:0a:0b:0c");
    }
}
