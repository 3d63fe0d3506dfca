//! Entries of the kernel's link, IPv4 address and IPv4 neighbour tables, decoded from rtnetlink messages
//! (replies to a dump or get, and multicast events alike).
//!
//! Invariants: a MAC is exactly 6 bytes (anything else is "no MAC"); a neighbour's MAC is given only when
//! the entry is usable — it has a link-layer address and its state is none of `NONE`, `INCOMPLETE` or
//! `FAILED` (so `REACHABLE`, `STALE`, `DELAY`, `PROBE`, `PERMANENT` and `NOARP` are usable, as `ip neigh`
//! users expect).

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};

use super::Mac;

/// `NUD_INCOMPLETE | NUD_FAILED` (`linux/neighbour.h`): resolution pending or given up.
const NUD_UNRESOLVED: u16 = 0x01 | 0x20;

/// One entry of the link table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// Interface index.
    pub ifindex: u32,
    /// Interface name (`IFLA_IFNAME`; empty if the kernel sent none).
    pub name: String,
    /// Its MAC (`IFLA_ADDRESS`), if it has a 6-byte one.
    pub mac: Option<Mac>,
    /// Its link layer by hardware type (`ifi_type`); `None` for one flowpin does not serve.
    pub kind: Option<crate::link_kind::LinkKind>,
    /// Its MTU (`IFLA_MTU`; 0 if the kernel sent none).
    pub mtu: u32,
    /// Whether the link carries packets now: carrier (`IFF_LOWER_UP`) and operational
    /// (`IFF_RUNNING`). See [`operational`].
    pub carrier: bool,
}

/// One IPv4 address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv4Address {
    /// Interface index.
    pub ifindex: u32,
    /// The address (`IFA_LOCAL`, or `IFA_ADDRESS` when there is no local one).
    pub address: Ipv4Addr,
    /// Prefix length.
    pub prefix_len: u8,
}

/// One IPv4 neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv4Neighbour {
    /// Interface index.
    pub ifindex: u32,
    /// The neighbour's address.
    pub address: Ipv4Addr,
    /// Its MAC, when the entry is usable (see the module invariants).
    pub mac: Option<Mac>,
    /// Resolution is pending or was given up (`INCOMPLETE` or `FAILED`).
    pub unresolved: bool,
}

/// Whether a link with `flags` carries packets now: its carrier is up (`IFF_LOWER_UP`) *and* the kernel
/// has made it operational (`IFF_RUNNING`, RFC 2863 operstate up).
///
/// The two part at a carrier's return: `LOWER_UP` is set at once, but the kernel activates the link's
/// queueing discipline (and sets `RUNNING`) only later, from its link-watch work, which it runs at most
/// once a second for events it does not deem urgent (a physical NIC's carrier-up among them). Until then
/// everything the link transmits is dropped, an ARP request for the gateway included, and the kernel
/// retries that request only after a second. So a link counts as up only once both are set; the
/// link-watch run announces itself with an `RTM_NEWLINK` that wakes the control loop.
pub(crate) fn operational(flags: LinkFlags) -> bool {
    flags.contains(LinkFlags::LowerUp) && flags.contains(LinkFlags::Running)
}

/// Decodes a link message.
pub(crate) fn link(message: &LinkMessage) -> Link {
    let mut link = Link {
        ifindex: message.header.index,
        name: String::new(),
        mac: None,
        kind: crate::link_kind::LinkKind::of_hardware_type(u16::from(
            message.header.link_layer_type,
        )),
        mtu: 0,
        carrier: operational(message.header.flags),
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Address(bytes) => link.mac = mac(bytes),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            _ => {}
        }
    }
    link
}

/// Decodes an address message; `None` unless it holds an IPv4 address.
pub(crate) fn ipv4_address(message: &AddressMessage) -> Option<Ipv4Address> {
    let mut local = None;
    let mut peer = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(IpAddr::V4(a)) => local = Some(*a),
            AddressAttribute::Address(IpAddr::V4(a)) => peer = Some(*a),
            _ => {}
        }
    }
    Some(Ipv4Address {
        ifindex: message.header.index,
        address: local.or(peer)?,
        prefix_len: message.header.prefix_len,
    })
}

/// Decodes a neighbour message; `None` unless it is an IPv4 neighbour.
pub(crate) fn ipv4_neighbour(message: &NeighbourMessage) -> Option<Ipv4Neighbour> {
    let mut address = None;
    let mut link_layer = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => address = Some(*a),
            NeighbourAttribute::LinkLayerAddress(bytes) => link_layer = mac(bytes),
            _ => {}
        }
    }
    Some(Ipv4Neighbour {
        ifindex: message.header.ifindex,
        address: address?,
        mac: link_layer.filter(|_| usable(message.header.state)),
        unresolved: u16::from(message.header.state) & NUD_UNRESOLVED != 0,
    })
}

/// Whether a neighbour in `state` may be used (see the module invariants).
pub(crate) fn usable(state: NeighbourState) -> bool {
    let bits = u16::from(state);
    bits != 0 && bits & NUD_UNRESOLVED == 0
}

fn mac(bytes: &[u8]) -> Option<Mac> {
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_states_decide_usability() {
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Permanent,
            NeighbourState::Noarp,
        ] {
            assert!(usable(state), "{state:?} is usable");
        }
        for state in [
            NeighbourState::None,
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            // STALE | FAILED: a combination the kernel does not send, but failed is failed.
            NeighbourState::Other(0x24),
        ] {
            assert!(!usable(state), "{state:?} is not usable");
        }
    }

    #[test]
    fn a_mac_is_six_bytes() {
        assert_eq!(mac(&[1, 2, 3, 4, 5, 6]), Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(mac(&[1, 2, 3, 4, 5]), None);
        assert_eq!(mac(&[0; 20]), None);
    }
}
