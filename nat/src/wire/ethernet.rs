//! Ethernet II frame view with at most one 802.1Q tag.
//!
//! Invariant after [`EthernetFrame::new_checked`]: the buffer holds the 14-byte header, and the 4-byte
//! 802.1Q tag too when the outer EtherType is 0x8100; [`EthernetFrame::payload_offset`] is then in bounds.

use super::{read_u16, write_u16};
use crate::ParseError;

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of one 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// EtherType (TPID) of an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType (TPID) of an 802.1ad service tag.
pub const ETHERTYPE_QINQ: u16 = 0x88A8;

/// A view over an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps without checking (see the module contract in [`crate::wire`]).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes: the header (and tag, if any) must be present.
    ///
    /// # Errors
    /// [`ParseError::RuntFrame`] when the buffer is shorter than the header it announces.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the header (and tag) fit.
    ///
    /// # Errors
    /// [`ParseError::RuntFrame`].
    pub fn check_len(&self) -> Result<(), ParseError> {
        let bytes = self.buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::RuntFrame);
        }
        if read_u16(bytes, 12) == ETHERTYPE_VLAN && bytes.len() < HEADER_LEN + VLAN_TAG_LEN {
            return Err(ParseError::RuntFrame);
        }
        Ok(())
    }

    /// Destination MAC address.
    #[must_use]
    pub fn destination(&self) -> [u8; 6] {
        let b = self.buffer.as_ref();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    /// Source MAC address.
    #[must_use]
    pub fn source(&self) -> [u8; 6] {
        let b = self.buffer.as_ref();
        [b[6], b[7], b[8], b[9], b[10], b[11]]
    }

    /// The 802.1Q tag control information (PCP, DEI, VID) when the frame carries one tag.
    #[must_use]
    pub fn vlan_tci(&self) -> Option<u16> {
        let b = self.buffer.as_ref();
        (read_u16(b, 12) == ETHERTYPE_VLAN).then(|| read_u16(b, 14))
    }

    /// The EtherType of the payload (after the tag, if any).
    #[must_use]
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        if read_u16(b, 12) == ETHERTYPE_VLAN {
            read_u16(b, 16)
        } else {
            read_u16(b, 12)
        }
    }

    /// Offset of the payload (the L3 header).
    #[must_use]
    pub fn payload_offset(&self) -> usize {
        if self.vlan_tci().is_some() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_destination(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[0..6].copy_from_slice(&mac);
    }

    /// Sets the source MAC address.
    pub fn set_source(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[6..12].copy_from_slice(&mac);
    }

    /// Writes an untagged header.
    pub fn set_untagged_header(&mut self, destination: [u8; 6], source: [u8; 6], ethertype: u16) {
        self.set_destination(destination);
        self.set_source(source);
        write_u16(self.buffer.as_mut(), 12, ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED: [u8; 14] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00];
    const TAGGED: [u8; 18] = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x81, 0x00, 0x20, 0x64, 0x86, 0xdd,
    ];

    #[test]
    fn decodes_untagged() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.destination(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(f.source(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(f.vlan_tci(), None);
        assert_eq!(f.payload_offset(), 14);
    }

    #[test]
    fn decodes_one_vlan_tag() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(f.vlan_tci(), Some(0x2064));
        assert_eq!(f.ethertype(), ETHERTYPE_IPV6);
        assert_eq!(f.payload_offset(), 18);
    }

    #[test]
    fn truncated_is_runt() {
        assert_eq!(
            EthernetFrame::new_checked(&UNTAGGED[..13]).unwrap_err(),
            ParseError::RuntFrame
        );
        assert_eq!(
            EthernetFrame::new_checked(&TAGGED[..17]).unwrap_err(),
            ParseError::RuntFrame
        );
    }

    #[test]
    fn encodes_header() {
        let mut bytes = [0u8; 14];
        EthernetFrame::new_unchecked(&mut bytes[..]).set_untagged_header(
            [1, 2, 3, 4, 5, 6],
            [7, 8, 9, 10, 11, 12],
            0x0800,
        );
        assert_eq!(bytes, UNTAGGED);
    }
}
