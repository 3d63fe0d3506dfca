//! Mirror of `struct flowpin_local_addr`: one of the router's own IPv4 addresses.
//!
//! Packets to these addresses go to the kernel, except hairpin traffic from the LAN to an uplink's
//! NAT address ([`LocalAddr::nat`]) inside its port range, which goes to AF_XDP, and return traffic
//! arriving on the interface a NAT entry names (the uplink's), which goes to AF_XDP too: that is how
//! several uplinks on one interface are told apart.

use std::mem::{offset_of, size_of};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use crate::c_layout as c;
use crate::iface_config::{put, take};

/// Value of the `flowpin_local` map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct LocalAddr {
    /// `LOCAL_*` flag bits.
    pub flags: u32,
    /// With the NAT flag: first port of the owning uplink's range, inclusive.
    pub port_min: u16,
    /// With the NAT flag: last port of the owning uplink's range, inclusive.
    pub port_max: u16,
    /// With the NAT flag: the ifindex of the owning uplink's interface; else 0.
    pub ifindex: u32,
}

const _: () = {
    assert!(size_of::<LocalAddr>() == c::LOCAL_ADDR_SIZE);
    assert!(offset_of!(LocalAddr, flags) == c::LOCAL_ADDR_FLAGS);
    assert!(offset_of!(LocalAddr, port_min) == c::LOCAL_ADDR_PORT_MIN);
    assert!(offset_of!(LocalAddr, port_max) == c::LOCAL_ADDR_PORT_MAX);
    assert!(offset_of!(LocalAddr, ifindex) == c::LOCAL_ADDR_IFINDEX);
};

/// The map value as bytes.
pub type LocalAddrBytes = [u8; c::LOCAL_ADDR_SIZE];

impl LocalAddr {
    /// An address of the router that is not a NAT address (LAN gateway, management, ...).
    pub const fn host() -> Self {
        Self {
            flags: 0,
            port_min: 0,
            port_max: 0,
            ifindex: 0,
        }
    }

    /// The NAT address of an uplink on interface `ifindex`, with its port / ICMP identifier range.
    pub fn nat(ports: RangeInclusive<u16>, ifindex: u32) -> Self {
        Self {
            flags: c::LOCAL_NAT,
            port_min: *ports.start(),
            port_max: *ports.end(),
            ifindex,
        }
    }

    /// Whether this is an uplink's NAT address.
    pub fn is_nat(&self) -> bool {
        self.flags & c::LOCAL_NAT != 0
    }

    /// The map key of `address`: its octets in wire order, read as a native `u32`.
    pub fn key(address: Ipv4Addr) -> u32 {
        u32::from_ne_bytes(address.octets())
    }

    /// The value as the program reads it.
    pub fn to_bytes(&self) -> LocalAddrBytes {
        let mut bytes = [0; c::LOCAL_ADDR_SIZE];
        put(&mut bytes, c::LOCAL_ADDR_FLAGS, &self.flags.to_ne_bytes());
        put(
            &mut bytes,
            c::LOCAL_ADDR_PORT_MIN,
            &self.port_min.to_ne_bytes(),
        );
        put(
            &mut bytes,
            c::LOCAL_ADDR_PORT_MAX,
            &self.port_max.to_ne_bytes(),
        );
        put(
            &mut bytes,
            c::LOCAL_ADDR_IFINDEX,
            &self.ifindex.to_ne_bytes(),
        );
        bytes
    }

    /// Decodes a map value.
    pub fn from_bytes(bytes: &LocalAddrBytes) -> Self {
        Self {
            flags: u32::from_ne_bytes(take(bytes, c::LOCAL_ADDR_FLAGS)),
            port_min: u16::from_ne_bytes(take(bytes, c::LOCAL_ADDR_PORT_MIN)),
            port_max: u16::from_ne_bytes(take(bytes, c::LOCAL_ADDR_PORT_MAX)),
            ifindex: u32::from_ne_bytes(take(bytes, c::LOCAL_ADDR_IFINDEX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_address_encodes_at_the_c_offsets() {
        let value = LocalAddr::nat(1024..=65535, 7);
        let bytes = value.to_bytes();
        assert_eq!(
            bytes[c::LOCAL_ADDR_FLAGS..][..4],
            c::LOCAL_NAT.to_ne_bytes()
        );
        assert_eq!(bytes[c::LOCAL_ADDR_PORT_MIN..][..2], 1024u16.to_ne_bytes());
        assert_eq!(bytes[c::LOCAL_ADDR_PORT_MAX..][..2], 65535u16.to_ne_bytes());
        assert_eq!(bytes[c::LOCAL_ADDR_IFINDEX..][..4], 7u32.to_ne_bytes());
        assert_eq!(LocalAddr::from_bytes(&bytes), value);
        assert!(value.is_nat());
        assert!(!LocalAddr::host().is_nat());
    }

    #[test]
    fn key_is_the_address_in_wire_order() {
        let key = LocalAddr::key(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(key.to_ne_bytes(), [192, 0, 2, 1]);
    }
}
