//! TCP header view (RFC 9293 §3.1).
//!
//! Invariant after [`TcpSegment::new_checked`]: the buffer (exactly the IP payload) holds the fixed
//! 20-byte header and `5 <= data offset` with the whole header (options included) inside the buffer.

use super::{read_u16, read_u32, write_u16, write_u32};
use crate::ParseError;

/// Length of a TCP header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 16;

/// TCP control flags (the low byte of the flags field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// FIN is set.
    #[must_use]
    pub const fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    /// SYN is set.
    #[must_use]
    pub const fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    /// RST is set.
    #[must_use]
    pub const fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    /// ACK is set.
    #[must_use]
    pub const fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// A view over a TCP segment.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    /// Wraps without checking (see the module contract in [`crate::wire`]).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps untrusted bytes (exactly the IP payload).
    ///
    /// # Errors
    /// [`ParseError::TcpTruncated`], [`ParseError::TcpDataOffsetTooShort`],
    /// [`ParseError::TcpDataOffsetBeyondPayload`].
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let segment = Self::new_unchecked(buffer);
        segment.check_len()?;
        Ok(segment)
    }

    /// Checks the invariant of the module docs.
    ///
    /// # Errors
    /// See [`TcpSegment::new_checked`].
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(ParseError::TcpTruncated);
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(ParseError::TcpDataOffsetTooShort);
        }
        if header_len > len {
            return Err(ParseError::TcpDataOffsetBeyondPayload);
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
    /// Sequence number.
    #[must_use]
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), 4)
    }
    /// Acknowledgment number.
    #[must_use]
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), 8)
    }
    /// Header length in bytes (data offset × 4).
    #[must_use]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[12] >> 4) * 4
    }
    /// Control flags.
    #[must_use]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[13])
    }
    /// Window.
    #[must_use]
    pub fn window(&self) -> u16 {
        read_u16(self.buffer.as_ref(), 14)
    }
    /// Checksum field.
    #[must_use]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), CHECKSUM_OFFSET)
    }
    /// Payload length (segment length minus header).
    #[must_use]
    pub fn payload_len(&self) -> usize {
        self.buffer.as_ref().len().saturating_sub(self.header_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
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
    /// Writes a 20-byte header without options; the checksum is left 0 for the caller to fill.
    pub fn write_header(
        &mut self,
        ports: (u16, u16),
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        window: u16,
    ) {
        let b = self.buffer.as_mut();
        write_u16(b, 0, ports.0);
        write_u16(b, 2, ports.1);
        write_u32(b, 4, seq);
        write_u32(b, 8, ack);
        b[12] = 5 << 4;
        b[13] = flags.0;
        write_u16(b, 14, window);
        write_u16(b, CHECKSUM_OFFSET, 0);
        write_u16(b, 18, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 40000 -> 443, seq 1, ack 2, data offset 6 (one 4-byte option), SYN|ACK, window 0x7210.
    const SEGMENT: [u8; 24] = [
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 2, 0x60, 0x12, 0x72, 0x10, 0xab, 0xcd, 0, 0,
        2, 4, 5, 0xb4,
    ];

    #[test]
    fn decodes_fields() {
        let s = TcpSegment::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!((s.source_port(), s.destination_port()), (40000, 443));
        assert_eq!((s.seq_number(), s.ack_number()), (1, 2));
        assert_eq!(s.header_len(), 24);
        assert!(s.flags().syn() && s.flags().ack() && !s.flags().rst() && !s.flags().fin());
        assert_eq!(s.window(), 0x7210);
        assert_eq!(s.checksum(), 0xabcd);
        assert_eq!(s.payload_len(), 0);
    }

    #[test]
    fn rejects_each_malformation() {
        assert_eq!(
            TcpSegment::new_checked(&SEGMENT[..19]).unwrap_err(),
            ParseError::TcpTruncated
        );
        let mut b = SEGMENT;
        b[12] = 0x40;
        assert_eq!(
            TcpSegment::new_checked(&b[..]).unwrap_err(),
            ParseError::TcpDataOffsetTooShort
        );
        b[12] = 0x70;
        assert_eq!(
            TcpSegment::new_checked(&b[..]).unwrap_err(),
            ParseError::TcpDataOffsetBeyondPayload
        );
    }

    #[test]
    fn encodes_header() {
        let mut b = [0xFFu8; 20];
        TcpSegment::new_unchecked(&mut b[..]).write_header(
            (40000, 443),
            1,
            2,
            TcpFlags(0x12),
            0x7210,
        );
        let mut expected = [0u8; 20];
        expected.copy_from_slice(&SEGMENT[..20]);
        expected[12] = 0x50;
        expected[16] = 0;
        expected[17] = 0;
        assert_eq!(b, expected);
    }
}
