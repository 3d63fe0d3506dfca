//! ICMPv4 message view (RFC 792, RFC 1812 §4.3).
//!
//! Invariant after [`Icmpv4Message::new_checked`]: the buffer (exactly the IP payload) holds the 8-byte
//! ICMP header (type, code, checksum, and the 4-byte rest-of-header: echo id + sequence, or unused +
//! next-hop MTU). The embedded packet of an error message is checked by the frame parser, not here.

use super::{read_u16, write_u16};
use crate::ParseError;

/// Length of the ICMP header (including the 4-byte rest-of-header).
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 2;
/// Offset of the echo identifier.
pub const ECHO_ID_OFFSET: usize = 4;

/// ICMP message types this crate names.
pub mod message_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DESTINATION_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated by RFC 6633 but still an error message).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 12;

    /// True for the error messages that quote an offending packet and that a NAT translates
    /// (RFC 5508 §4: unreachable, source quench, time exceeded, parameter problem). Redirects are not
    /// translated: they concern the LAN's first hop, never a translated flow.
    #[must_use]
    pub const fn is_translatable_error(kind: u8) -> bool {
        matches!(
            kind,
            DESTINATION_UNREACHABLE | SOURCE_QUENCH | TIME_EXCEEDED | PARAMETER_PROBLEM
        )
    }

    /// True for every ICMP error message type (RFC 1812 §4.3.2.7: never send an error about one).
    #[must_use]
    pub const fn is_error(kind: u8) -> bool {
        matches!(
            kind,
            DESTINATION_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAMETER_PROBLEM
        )
    }
}

/// Codes of destination unreachable used here.
pub mod unreachable_code {
    /// Net unreachable (RFC 1812 §5.2.7.1: no route to the destination network).
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Fragmentation needed and DF set (RFC 1191: carries the next-hop MTU).
    pub const FRAGMENTATION_NEEDED: u8 = 4;
    /// Communication administratively prohibited (RFC 1812 §5.2.7.1).
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// A view over an ICMPv4 message.
#[derive(Debug, Clone, Copy)]
pub struct Icmpv4Message<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Message<T> {
    /// Wraps without checking (see the module contract in [`crate::wire`]).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes (exactly the IP payload).
    ///
    /// # Errors
    /// [`ParseError::IcmpTruncated`] when the 8-byte header is not there.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let message = Self::new_unchecked(buffer);
        if message.buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::IcmpTruncated);
        }
        Ok(message)
    }

    /// Message type.
    #[must_use]
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// Message code.
    #[must_use]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// Checksum field.
    #[must_use]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), CHECKSUM_OFFSET)
    }
    /// Echo identifier (meaningful for echo request / reply).
    #[must_use]
    pub fn echo_id(&self) -> u16 {
        read_u16(self.buffer.as_ref(), ECHO_ID_OFFSET)
    }
    /// Echo sequence number (meaningful for echo request / reply).
    #[must_use]
    pub fn echo_seq(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 6)
    }
    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    #[must_use]
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 6)
    }
    /// The data after the 8-byte header (the quoted packet of an error).
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Message<T> {
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), CHECKSUM_OFFSET, checksum);
    }
    /// Sets the echo identifier (checksum not updated).
    pub fn set_echo_id(&mut self, id: u16) {
        write_u16(self.buffer.as_mut(), ECHO_ID_OFFSET, id);
    }
    /// Writes type, code, a zero checksum and the 4-byte rest-of-header.
    pub fn write_header(&mut self, message_type: u8, code: u8, rest: [u8; 4]) {
        let b = self.buffer.as_mut();
        b[0] = message_type;
        b[1] = code;
        write_u16(b, CHECKSUM_OFFSET, 0);
        b[4..8].copy_from_slice(&rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: [u8; 12] = [8, 0, 0xf7, 0xfd, 0x12, 0x34, 0x00, 0x07, 1, 2, 3, 4];

    #[test]
    fn decodes_echo() {
        let m = Icmpv4Message::new_checked(&ECHO[..]).unwrap();
        assert_eq!(
            (m.message_type(), m.code()),
            (message_type::ECHO_REQUEST, 0)
        );
        assert_eq!(m.echo_id(), 0x1234);
        assert_eq!(m.echo_seq(), 7);
        assert_eq!(m.data(), &[1, 2, 3, 4]);
        assert_eq!(m.checksum(), 0xf7fd);
    }

    #[test]
    fn truncated_header_is_rejected() {
        assert_eq!(
            Icmpv4Message::new_checked(&ECHO[..7]).unwrap_err(),
            ParseError::IcmpTruncated
        );
    }

    #[test]
    fn error_classification() {
        assert!(message_type::is_translatable_error(3));
        assert!(message_type::is_translatable_error(11));
        assert!(!message_type::is_translatable_error(5));
        assert!(message_type::is_error(5));
        assert!(!message_type::is_error(8));
    }

    #[test]
    fn encodes_header() {
        let mut b = [0xFFu8; 8];
        let mut m = Icmpv4Message::new_unchecked(&mut b[..]);
        m.write_header(3, 4, [0, 0, 0x05, 0xdc]);
        m.set_echo_id(0);
        assert_eq!(b, [3, 4, 0, 0, 0, 0, 0x05, 0xdc]);
    }
}
