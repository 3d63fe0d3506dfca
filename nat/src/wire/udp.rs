//! UDP header view (RFC 768).
//!
//! Invariant after [`UdpDatagram::new_checked`]: the buffer (exactly the IP payload) holds the 8-byte
//! header and `8 <= UDP length <= IP payload length` (the kernel's conntrack rule: a shorter UDP length
//! is accepted and the rest of the IP payload is ignored, a longer one is malformed).

use super::{read_u16, write_u16};
use crate::ParseError;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 6;

/// A view over a UDP datagram.
#[derive(Debug, Clone, Copy)]
pub struct UdpDatagram<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// Wraps without checking (see the module contract in [`crate::wire`]).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes (exactly the IP payload).
    ///
    /// # Errors
    /// [`ParseError::UdpTruncated`], [`ParseError::UdpLengthInvalid`].
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let datagram = Self::new_unchecked(buffer);
        datagram.check_len()?;
        Ok(datagram)
    }

    /// Checks the invariant of the module docs.
    ///
    /// # Errors
    /// See [`UdpDatagram::new_checked`].
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::UdpTruncated);
        }
        let declared = usize::from(self.len());
        if declared < HEADER_LEN || declared > len {
            return Err(ParseError::UdpLengthInvalid);
        }
        Ok(())
    }

    /// Source port.
    #[must_use]
    pub fn source_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 0)
    }
    /// Destination port.
    #[must_use]
    pub fn destination_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 2)
    }
    /// The UDP length field (header + data).
    #[must_use]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 4)
    }
    /// True when the length field says there is no data.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }
    /// Checksum field (0 = none transmitted).
    #[must_use]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), CHECKSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    /// Sets the source port (checksum not updated).
    pub fn set_source_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), 0, port);
    }
    /// Sets the destination port (checksum not updated).
    pub fn set_destination_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), 2, port);
    }
    /// Sets the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(self.buffer.as_mut(), CHECKSUM_OFFSET, checksum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATAGRAM: [u8; 10] = [0x13, 0x88, 0x00, 0x35, 0x00, 0x0a, 0x12, 0x34, 0xde, 0xad];

    #[test]
    fn decodes_fields() {
        let d = UdpDatagram::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!((d.source_port(), d.destination_port()), (5000, 53));
        assert_eq!(d.len(), 10);
        assert!(!d.is_empty());
        assert_eq!(d.checksum(), 0x1234);
    }

    #[test]
    fn shorter_udp_length_than_payload_is_accepted() {
        let mut b = DATAGRAM;
        b[5] = 8;
        assert!(UdpDatagram::new_checked(&b[..]).is_ok());
    }

    #[test]
    fn rejects_each_malformation() {
        assert_eq!(
            UdpDatagram::new_checked(&DATAGRAM[..7]).unwrap_err(),
            ParseError::UdpTruncated
        );
        assert_eq!(
            UdpDatagram::new_checked(&DATAGRAM[..9]).unwrap_err(),
            ParseError::UdpLengthInvalid
        );
        let mut b = DATAGRAM;
        b[5] = 7;
        assert_eq!(
            UdpDatagram::new_checked(&b[..]).unwrap_err(),
            ParseError::UdpLengthInvalid
        );
    }

    #[test]
    fn encodes_ports_and_checksum() {
        let mut b = DATAGRAM;
        let mut d = UdpDatagram::new_unchecked(&mut b[..]);
        d.set_source_port(1);
        d.set_destination_port(2);
        d.set_checksum(3);
        assert_eq!(&b[..8], &[0, 1, 0, 2, 0, 10, 0, 3]);
    }
}
