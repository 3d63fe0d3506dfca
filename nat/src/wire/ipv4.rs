//! IPv4 header view (RFC 791). Options are skipped by IHL, never interpreted.
//!
//! Invariant after [`Ipv4Packet::new_checked`]: version is 4, `5 <= IHL`, the whole header (IHL × 4
//! bytes) is in the buffer, and `header_len <= total_length <= buffer length`. Bytes past the total
//! length (Ethernet padding or trailer) are not part of the packet and are never read or written.

use super::{read_u16, write_u16};
use crate::ParseError;
use crate::checksum::internet_checksum;
use std::net::Ipv4Addr;

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Offset of the header checksum.
pub const CHECKSUM_OFFSET: usize = 10;
/// Offset of the source address.
pub const SOURCE_OFFSET: usize = 12;
/// Offset of the destination address.
pub const DESTINATION_OFFSET: usize = 16;
/// Offset of the TTL byte (followed by the protocol byte).
pub const TTL_OFFSET: usize = 8;
/// The "don't fragment" flag in the flags/fragment-offset word.
pub const FLAG_DONT_FRAGMENT: u16 = 0x4000;
/// The "more fragments" flag in the flags/fragment-offset word.
pub const FLAG_MORE_FRAGMENTS: u16 = 0x2000;
/// Mask of the fragment offset in the flags/fragment-offset word.
pub const FRAGMENT_OFFSET_MASK: u16 = 0x1FFF;

/// IP protocol numbers this crate handles.
pub mod protocol {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// A view over an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps without checking (see the module contract in [`crate::wire`]).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes (the buffer starts at the IP header and may extend past the packet).
    ///
    /// # Errors
    /// The first structural malformation: [`ParseError::Ipv4Truncated`], [`ParseError::Ipv4BadVersion`],
    /// [`ParseError::Ipv4HeaderLengthTooShort`], [`ParseError::Ipv4TotalLengthBelowHeader`],
    /// [`ParseError::Ipv4TotalLengthBeyondFrame`]. The checksum is not verified here.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the invariant of the module docs.
    ///
    /// # Errors
    /// See [`Ipv4Packet::new_checked`].
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(ParseError::Ipv4Truncated);
        }
        if self.version() != 4 {
            return Err(ParseError::Ipv4BadVersion);
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(ParseError::Ipv4HeaderLengthTooShort);
        }
        if len < header_len {
            return Err(ParseError::Ipv4Truncated);
        }
        let total = usize::from(self.total_len());
        if total < header_len {
            return Err(ParseError::Ipv4TotalLengthBelowHeader);
        }
        if total > len {
            return Err(ParseError::Ipv4TotalLengthBeyondFrame);
        }
        Ok(())
    }

    /// True when the header checksum verifies (RFC 1071).
    #[must_use]
    pub fn verify_checksum(&self) -> bool {
        internet_checksum(&self.buffer.as_ref()[..self.header_len()], 0) == 0
    }

    /// The version nibble.
    #[must_use]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[must_use]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0F) * 4
    }

    /// Total length of the packet in bytes.
    #[must_use]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 2)
    }

    /// Identification field.
    #[must_use]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 4)
    }

    /// The flags / fragment offset word.
    #[must_use]
    pub fn flags_and_fragment_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 6)
    }

    /// The DF flag.
    #[must_use]
    pub fn dont_fragment(&self) -> bool {
        self.flags_and_fragment_offset() & FLAG_DONT_FRAGMENT != 0
    }

    /// The MF flag.
    #[must_use]
    pub fn more_fragments(&self) -> bool {
        self.flags_and_fragment_offset() & FLAG_MORE_FRAGMENTS != 0
    }

    /// Fragment offset in 8-byte units.
    #[must_use]
    pub fn fragment_offset(&self) -> u16 {
        self.flags_and_fragment_offset() & FRAGMENT_OFFSET_MASK
    }

    /// Time to live.
    #[must_use]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[TTL_OFFSET]
    }

    /// Protocol number.
    #[must_use]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }

    /// Header checksum field.
    #[must_use]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), CHECKSUM_OFFSET)
    }

    /// Source address.
    #[must_use]
    pub fn source(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    /// Destination address.
    #[must_use]
    pub fn destination(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// The payload (transport header and data), up to the total length: trailers are excluded.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the TTL (checksum not updated).
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[TTL_OFFSET] = ttl;
    }

    /// Sets the header checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), CHECKSUM_OFFSET, checksum);
    }

    /// Sets the source address (checksum not updated).
    pub fn set_source(&mut self, address: Ipv4Addr) {
        self.buffer.as_mut()[SOURCE_OFFSET..SOURCE_OFFSET + 4].copy_from_slice(&address.octets());
    }

    /// Sets the destination address (checksum not updated).
    pub fn set_destination(&mut self, address: Ipv4Addr) {
        self.buffer.as_mut()[DESTINATION_OFFSET..DESTINATION_OFFSET + 4]
            .copy_from_slice(&address.octets());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let checksum = internet_checksum(&self.buffer.as_ref()[..self.header_len()], 0);
        self.set_checksum(checksum);
    }

    /// Writes an option-less header: version 4, IHL 5, DSCP 0, the given fields, identification 0,
    /// and a fresh checksum.
    pub fn write_header(&mut self, fields: &Ipv4HeaderFields) {
        let b = self.buffer.as_mut();
        b[0] = 0x45;
        b[1] = 0;
        write_u16(b, 2, fields.total_len);
        write_u16(b, 4, 0);
        write_u16(
            b,
            6,
            if fields.dont_fragment {
                FLAG_DONT_FRAGMENT
            } else {
                0
            },
        );
        b[TTL_OFFSET] = fields.ttl;
        b[9] = fields.protocol;
        self.set_source(fields.source);
        self.set_destination(fields.destination);
        self.fill_checksum();
    }
}

/// Fields of an option-less IPv4 header this crate originates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4HeaderFields {
    /// Source address.
    pub source: Ipv4Addr,
    /// Destination address.
    pub destination: Ipv4Addr,
    /// Protocol number.
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Total length (header + payload).
    pub total_len: u16,
    /// The DF flag.
    pub dont_fragment: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    // 192.168.0.1 -> 192.168.0.199, UDP, total length 0x73, DF, TTL 64, checksum 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn packet(total: usize) -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        bytes.resize(total, 0xAB);
        bytes
    }

    #[test]
    fn decodes_fields() {
        let bytes = packet(0x73);
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_fragment());
        assert!(!p.more_fragments());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::UDP);
        assert_eq!(p.source(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.destination(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn trailer_is_not_payload() {
        let bytes = packet(0x73 + 10);
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn rejects_each_malformation() {
        assert_eq!(
            Ipv4Packet::new_checked(&HEADER[..19]).unwrap_err(),
            ParseError::Ipv4Truncated
        );
        let mut b = packet(0x73);
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::Ipv4BadVersion
        );
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::Ipv4HeaderLengthTooShort
        );
        b[0] = 0x4F;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..40]).unwrap_err(),
            ParseError::Ipv4Truncated
        );
        b[0] = 0x46;
        b[2] = 0;
        b[3] = 22;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::Ipv4TotalLengthBelowHeader
        );
        b[3] = 0x74;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::Ipv4TotalLengthBeyondFrame
        );
    }

    #[test]
    fn bad_checksum_is_detected_and_fill_repairs_it() {
        let mut bytes = packet(0x73);
        bytes[11] ^= 1;
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0xb861);
    }

    #[test]
    fn writes_header() {
        let mut bytes = [0u8; 20];
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.write_header(&Ipv4HeaderFields {
            source: Ipv4Addr::new(192, 168, 0, 1),
            destination: Ipv4Addr::new(192, 168, 0, 199),
            protocol: protocol::UDP,
            ttl: 64,
            total_len: 0x73,
            dont_fragment: true,
        });
        assert_eq!(bytes, HEADER);
    }
}
