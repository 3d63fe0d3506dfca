//! Mirror of `struct flowpin_iface_config`: what an attached interface is to the XDP program.
//!
//! Invariants: `slot < MAX_IFACES` and unique among configured interfaces (it selects the XSKMAP
//! keys of the interface's queues). An uplink interface may carry several uplinks: their NAT
//! addresses and ranges are in the local-address map ([`crate::LocalAddr::nat`]), which names the
//! interface, so the program dispatches return traffic by destination address.

use std::mem::{offset_of, size_of};

use crate::c_layout as c;

/// What an interface is to flowpin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Role {
    /// The LAN side: transit goes to AF_XDP, other protocols are dropped.
    Lan = c::ROLE_LAN,
    /// An uplink interface: return traffic to the NAT address of one of its uplinks inside that
    /// uplink's range goes to AF_XDP.
    Uplink = c::ROLE_UPLINK,
}

/// Value of the `flowpin_ifaces` map, keyed by ifindex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct IfaceConfig {
    /// [`Role`] as its C value.
    pub role: u32,
    /// Interface slot, `< MAX_IFACES`.
    pub slot: u32,
    /// `IFACE_*` bits: [`IFACE_L3`] for a device without a link-layer header.
    pub flags: u32,
}

/// Flag of [`IfaceConfig::flags`]: the device has no link-layer header (tun, PPP, WireGuard, raw-IP
/// modems). The program reads the IPv4 header at the packet's start and pushes a synthetic Ethernet
/// header (zero MACs, type IPv4) in front of what it redirects to AF_XDP.
pub const IFACE_L3: u32 = c::IFACE_L3;

const _: () = {
    assert!(size_of::<IfaceConfig>() == c::IFACE_CONFIG_SIZE);
    assert!(offset_of!(IfaceConfig, role) == c::IFACE_CONFIG_ROLE);
    assert!(offset_of!(IfaceConfig, slot) == c::IFACE_CONFIG_SLOT);
    assert!(offset_of!(IfaceConfig, flags) == c::IFACE_CONFIG_FLAGS);
};

/// The map value as bytes.
pub type IfaceConfigBytes = [u8; c::IFACE_CONFIG_SIZE];

impl IfaceConfig {
    /// A LAN interface in `slot`.
    pub const fn lan(slot: u32) -> Self {
        Self {
            role: Role::Lan as u32,
            slot,
            flags: 0,
        }
    }

    /// An uplink interface in `slot` (its uplinks' addresses are in the local-address map).
    pub const fn uplink(slot: u32) -> Self {
        Self {
            role: Role::Uplink as u32,
            slot,
            flags: 0,
        }
    }

    /// The same interface marked as having no link-layer header when `layer3` ([`IFACE_L3`]).
    #[must_use]
    pub const fn layer3(mut self, layer3: bool) -> Self {
        if layer3 {
            self.flags |= IFACE_L3;
        } else {
            self.flags &= !IFACE_L3;
        }
        self
    }

    /// The role, if the value is a known one.
    pub fn role(&self) -> Option<Role> {
        match self.role {
            c::ROLE_LAN => Some(Role::Lan),
            c::ROLE_UPLINK => Some(Role::Uplink),
            _ => None,
        }
    }

    /// The value as the program reads it (native endian, C layout, zeroed padding).
    pub fn to_bytes(&self) -> IfaceConfigBytes {
        let mut bytes = [0; c::IFACE_CONFIG_SIZE];
        put(&mut bytes, c::IFACE_CONFIG_ROLE, &self.role.to_ne_bytes());
        put(&mut bytes, c::IFACE_CONFIG_SLOT, &self.slot.to_ne_bytes());
        put(&mut bytes, c::IFACE_CONFIG_FLAGS, &self.flags.to_ne_bytes());
        bytes
    }

    /// Decodes a map value.
    pub fn from_bytes(bytes: &IfaceConfigBytes) -> Self {
        Self {
            role: u32::from_ne_bytes(take(bytes, c::IFACE_CONFIG_ROLE)),
            slot: u32::from_ne_bytes(take(bytes, c::IFACE_CONFIG_SLOT)),
            flags: u32::from_ne_bytes(take(bytes, c::IFACE_CONFIG_FLAGS)),
        }
    }
}

/// Writes `field` at `offset` of a map value.
pub(crate) fn put(bytes: &mut [u8], offset: usize, field: &[u8]) {
    bytes[offset..offset + field.len()].copy_from_slice(field);
}

/// Reads an `N`-byte field at `offset` of a map value.
pub(crate) fn take<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut field = [0; N];
    field.copy_from_slice(&bytes[offset..offset + N]);
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_values_match_the_header() {
        assert_eq!(Role::Lan as u32, c::ROLE_LAN);
        assert_eq!(Role::Uplink as u32, c::ROLE_UPLINK);
        assert_ne!(c::ROLE_LAN, c::ROLE_UPLINK);
    }

    #[test]
    fn uplink_config_encodes_at_the_c_offsets() {
        let config = IfaceConfig::uplink(3);
        let bytes = config.to_bytes();
        assert_eq!(
            bytes[c::IFACE_CONFIG_ROLE..][..4],
            c::ROLE_UPLINK.to_ne_bytes()
        );
        assert_eq!(bytes[c::IFACE_CONFIG_SLOT..][..4], 3u32.to_ne_bytes());
        assert_eq!(bytes[c::IFACE_CONFIG_FLAGS..][..4], [0; 4]);
        assert_eq!(IfaceConfig::from_bytes(&bytes), config);
        assert_eq!(config.role(), Some(Role::Uplink));
    }

    #[test]
    fn layer3_flag_encodes_at_the_c_offset_and_clears() {
        let config = IfaceConfig::uplink(2).layer3(true);
        let bytes = config.to_bytes();
        assert_eq!(
            bytes[c::IFACE_CONFIG_FLAGS..][..4],
            c::IFACE_L3.to_ne_bytes()
        );
        assert_eq!(IfaceConfig::from_bytes(&bytes), config);
        assert_eq!(config.layer3(false).flags, 0);
    }

    #[test]
    fn lan_config_round_trips_and_unknown_roles_are_none() {
        let config = IfaceConfig::lan(0);
        assert_eq!(IfaceConfig::from_bytes(&config.to_bytes()), config);
        assert_eq!(config.role(), Some(Role::Lan));
        let bogus = IfaceConfig { role: 77, ..config };
        assert_eq!(bogus.role(), None);
    }
}
