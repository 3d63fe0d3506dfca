//! Which link layer an interface has: Ethernet, or none at all (an "L3 device").
//!
//! PPPoE lines (`ppp0`), WireGuard and OpenVPN tunnels (`wg0`, `tun0`) and LTE modems in raw-IP mode
//! (`wwan0`) carry bare IPv4 packets: no MAC, no Ethernet header, no ARP. flowpin serves them as
//! uplinks on the same AF_XDP path as Ethernet ones (see `docs/architecture.md`, "L3 uplinks").
//!
//! Invariants:
//! - the kernel's hardware type (`ARPHRD_*`, `dev->type`) alone decides: Ethernet (`ARPHRD_ETHER`),
//!   or L3 for exactly the types below; anything else is neither and is refused as an interface;
//! - one list, read by the rtnetlink view ([`crate::control::netinfo`]), the XDP program's interface
//!   map and the AF_XDP ports alike, so the three never disagree about a device.

/// `ARPHRD_ETHER` (`linux/if_arp.h`): Ethernet, veth, macvlan, bridges, bonds.
pub const ARPHRD_ETHER: u16 = 1;

/// The hardware types of devices without a link-layer header: `ARPHRD_NONE` (tun, WireGuard),
/// `ARPHRD_PPP` (pppd), `ARPHRD_RAWIP` (qmi_wwan / mhi raw-IP modems).
pub const LAYER3_HARDWARE_TYPES: [u16; 3] = [0xfffe, 512, 519];

/// The link layer of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// An Ethernet header in front of every packet, a MAC, neighbours resolved by ARP.
    Ethernet,
    /// Bare IP packets: no MAC, no header, no neighbours.
    Layer3,
}

impl LinkKind {
    /// The kind of a device of hardware type `arphrd`; `None` for any other link layer.
    pub fn of_hardware_type(arphrd: u16) -> Option<Self> {
        if arphrd == ARPHRD_ETHER {
            Some(Self::Ethernet)
        } else if LAYER3_HARDWARE_TYPES.contains(&arphrd) {
            Some(Self::Layer3)
        } else {
            None
        }
    }

    /// Whether the device has no link-layer header.
    pub fn is_layer3(self) -> bool {
        self == Self::Layer3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_tun_ppp_and_raw_ip_are_known_loopback_is_not() {
        assert_eq!(LinkKind::of_hardware_type(1), Some(LinkKind::Ethernet));
        assert_eq!(LinkKind::of_hardware_type(0xfffe), Some(LinkKind::Layer3));
        assert_eq!(LinkKind::of_hardware_type(512), Some(LinkKind::Layer3));
        assert_eq!(LinkKind::of_hardware_type(519), Some(LinkKind::Layer3));
        assert_eq!(LinkKind::of_hardware_type(772), None); // ARPHRD_LOOPBACK
        assert!(LinkKind::Layer3.is_layer3());
        assert!(!LinkKind::Ethernet.is_layer3());
    }
}
