//! Full checksum verification of a parsed frame, for tests, the fuzz target and diagnostics (not for the
//! per-packet path: a NAT carries transport checksums through without verifying them).
//!
//! Invariant: each field of [`ChecksumReport`] is true exactly when a full RFC 1071 recomputation over
//! the bytes `parse_frame` delimits (never the Ethernet trailer) verifies.

use crate::checksum::{fold, ipv4_pseudo_header_sum, sum_words};
use crate::parse::{ParsedFrame, Transport};
use crate::wire::ipv4::Ipv4Packet;

/// Which checksums of a frame verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumReport {
    /// The IPv4 header checksum.
    pub ip: bool,
    /// The TCP, UDP (a zero UDP checksum counts as valid) or ICMP checksum.
    pub l4: bool,
    /// For ICMP errors, the quoted IPv4 header's checksum.
    pub embedded_ip: Option<bool>,
}

impl ChecksumReport {
    /// True when every checksum present verifies.
    #[must_use]
    pub const fn all_valid(&self) -> bool {
        self.ip && self.l4 && !matches!(self.embedded_ip, Some(false))
    }
}

/// Verifies every checksum of a frame `parse_frame` accepted. Returns all-false when `frame` is shorter
/// than `parsed` says.
#[must_use]
pub fn checksum_report(frame: &[u8], parsed: &ParsedFrame) -> ChecksumReport {
    let invalid = ChecksumReport {
        ip: false,
        l4: false,
        embedded_ip: None,
    };
    let (l3, l4, end) = (
        usize::from(parsed.l3_offset),
        usize::from(parsed.l4_offset),
        parsed.ip_end(),
    );
    if frame.len() < end || l4 > end || l3 > l4 {
        return invalid;
    }
    let ip_ok = fold(sum_words(&frame[l3..l4], 0)) == 0xFFFF;
    let segment = &frame[l4..end];
    let pseudo = |protocol: u8| {
        let ip = Ipv4Packet::new_unchecked(&frame[l3..]);
        let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
        ipv4_pseudo_header_sum(
            ip.source().octets(),
            ip.destination().octets(),
            protocol,
            len,
        )
    };
    let (l4_ok, embedded_ip) = match parsed.transport {
        Transport::Tcp(_) => (fold(sum_words(segment, pseudo(6))) == 0xFFFF, None),
        Transport::Udp { checksum_present } => {
            let udp_len = segment
                .get(4..6)
                .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            let datagram = segment.get(..udp_len).unwrap_or(segment);
            let ip = Ipv4Packet::new_unchecked(&frame[l3..]);
            let len = u16::try_from(datagram.len()).unwrap_or(u16::MAX);
            let sum =
                ipv4_pseudo_header_sum(ip.source().octets(), ip.destination().octets(), 17, len);
            (
                !checksum_present || fold(sum_words(datagram, sum)) == 0xFFFF,
                None,
            )
        }
        Transport::IcmpQuery { .. } => (fold(sum_words(segment, 0)) == 0xFFFF, None),
        Transport::IcmpError(e) => {
            let (el3, el4) = (
                usize::from(e.embedded_l3_offset),
                usize::from(e.embedded_l4_offset),
            );
            let embedded = frame.get(el3..el4).map(|h| fold(sum_words(h, 0)) == 0xFFFF);
            (
                fold(sum_words(segment, 0)) == 0xFFFF,
                Some(embedded.unwrap_or(false)),
            )
        }
    };
    ChecksumReport {
        ip: ip_ok,
        l4: l4_ok,
        embedded_ip,
    }
}

/// Shorthand for `checksum_report(..).all_valid()`.
#[must_use]
pub fn checksums_valid(frame: &[u8], parsed: &ParsedFrame) -> bool {
    checksum_report(frame, parsed).all_valid()
}
