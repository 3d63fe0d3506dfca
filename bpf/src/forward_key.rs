//! Mirror of `struct flowpin_forward_key`: one forwarded port of one uplink's NAT address.
//!
//! TCP/UDP to such a port from the uplink (and from the LAN: hairpin) goes to AF_XDP; the datapath
//! opens the forwarded flow. A forwarded port range is one key per port.

use std::mem::{offset_of, size_of};
use std::net::Ipv4Addr;

use crate::c_layout as c;
use crate::iface_config::put;

/// Key of the `flowpin_forwards` map (its value is `1u32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(C)]
pub struct ForwardKey {
    /// The uplink's NAT address in wire order, read as a native `u32`.
    pub addr: u32,
    /// The forwarded destination port.
    pub port: u16,
    /// The IP protocol number (6 TCP, 17 UDP).
    pub protocol: u8,
    /// Zero.
    pub pad: u8,
}

const _: () = {
    assert!(size_of::<ForwardKey>() == c::FORWARD_KEY_SIZE);
    assert!(offset_of!(ForwardKey, addr) == c::FORWARD_KEY_ADDR);
    assert!(offset_of!(ForwardKey, port) == c::FORWARD_KEY_PORT);
    assert!(offset_of!(ForwardKey, protocol) == c::FORWARD_KEY_PROTOCOL);
};

/// The key as bytes.
pub type ForwardKeyBytes = [u8; c::FORWARD_KEY_SIZE];

impl ForwardKey {
    /// Port `port` of `protocol` (IP number) to `address`.
    pub fn new(address: Ipv4Addr, protocol: u8, port: u16) -> Self {
        Self {
            addr: u32::from_ne_bytes(address.octets()),
            port,
            protocol,
            pad: 0,
        }
    }

    /// The key as the program reads it.
    pub fn to_bytes(&self) -> ForwardKeyBytes {
        let mut bytes = [0; c::FORWARD_KEY_SIZE];
        put(&mut bytes, c::FORWARD_KEY_ADDR, &self.addr.to_ne_bytes());
        put(&mut bytes, c::FORWARD_KEY_PORT, &self.port.to_ne_bytes());
        put(&mut bytes, c::FORWARD_KEY_PROTOCOL, &[self.protocol]);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_at_the_c_offsets_with_a_zero_pad() {
        let bytes = ForwardKey::new(Ipv4Addr::new(192, 0, 2, 1), 6, 8080).to_bytes();
        assert_eq!(bytes[c::FORWARD_KEY_ADDR..][..4], [192, 0, 2, 1]);
        assert_eq!(bytes[c::FORWARD_KEY_PORT..][..2], 8080u16.to_ne_bytes());
        assert_eq!(bytes[c::FORWARD_KEY_PROTOCOL], 6);
        assert_eq!(bytes[c::FORWARD_KEY_PROTOCOL + 1..], [0]);
    }
}
