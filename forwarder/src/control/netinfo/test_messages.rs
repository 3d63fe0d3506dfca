//! Builders of the rtnetlink messages the kernel sends, for unit tests: entries as `netlink-packet-route`
//! models them, and datagrams holding them as the kernel lays them out (serialized, so tests parse
//! them back through the same path real replies and events take).

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{DoneMessage, ErrorMessage, NLM_F_MULTIPART, NetlinkPayload};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};

use super::Mac;
use super::rtnetlink::encode;

/// A link entry (`RTM_NEWLINK`).
/// `lower_up`: the link carries packets (`IFF_LOWER_UP | IFF_RUNNING`).
pub(crate) fn link(ifindex: u32, name: &str, mac: Mac, mtu: u32, lower_up: bool) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    m.header.link_layer_type = netlink_packet_route::link::LinkLayerType::Ether;
    m.header.flags = LinkFlags::Up | LinkFlags::Broadcast;
    if lower_up {
        m.header.flags |= LinkFlags::LowerUp | LinkFlags::Running;
    }
    m.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::Mtu(mtu),
        LinkAttribute::Address(mac.to_vec()),
    ];
    m
}

/// An IPv4 address entry (`RTM_NEWADDR`), local and address alike as on a broadcast interface.
pub(crate) fn ipv4_address(ifindex: u32, address: Ipv4Addr, prefix_len: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.index = ifindex;
    m.header.prefix_len = prefix_len;
    m.attributes = vec![
        AddressAttribute::Address(IpAddr::V4(address)),
        AddressAttribute::Local(IpAddr::V4(address)),
    ];
    m
}

/// An IPv4 neighbour entry (`RTM_NEWNEIGH`); `mac: None` for one without a link-layer address.
pub(crate) fn ipv4_neighbour(
    ifindex: u32,
    address: Ipv4Addr,
    mac: Option<Mac>,
    state: NeighbourState,
) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ifindex;
    m.header.state = state;
    m.attributes = vec![NeighbourAttribute::Destination(NeighbourAddress::Inet(
        address,
    ))];
    if let Some(mac) = mac {
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    m
}

/// One datagram: `messages` as parts of a multipart reply to `sequence` (`NLM_F_MULTI`, plus `flags`),
/// then `NLMSG_DONE` when `done`.
pub(crate) fn dump_datagram(
    messages: Vec<RouteNetlinkMessage>,
    sequence: u32,
    flags: u16,
    done: bool,
) -> Vec<u8> {
    let mut datagram = Vec::new();
    for m in messages {
        datagram.extend(encode(
            NetlinkPayload::InnerMessage(m),
            NLM_F_MULTIPART | flags,
            sequence,
        ));
    }
    if done {
        datagram.extend(encode(
            NetlinkPayload::Done(DoneMessage::default()),
            NLM_F_MULTIPART,
            sequence,
        ));
    }
    datagram
}

/// The `NLMSG_ERROR` datagram refusing request `sequence` with `errno`.
pub(crate) fn error_datagram(sequence: u32, errno: i32) -> Vec<u8> {
    let mut error = ErrorMessage::default();
    error.code = std::num::NonZeroI32::new(-errno);
    // The kernel echoes the request's header; its content does not matter to us.
    error.header = vec![0; 16];
    encode(NetlinkPayload::Error(error), 0, sequence)
}
