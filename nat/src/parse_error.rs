//! Why a frame cannot be translated: one variant per malformation or unsupported case.
//!
//! Invariant: [`ParseError::ALL`] lists every variant exactly once, in declaration order, and
//! [`ParseError::name`] gives each a distinct, stable snake_case name, so the datapath can keep one drop
//! counter per reason (index with [`ParseError::index`]) and export it under that name.

/// A frame the translator refuses, and why. Every variant is a counted drop in the datapath: a frame that
/// cannot be translated correctly is never handed on un-translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the Ethernet header (or the 802.1Q tag it announces).
    #[error("frame shorter than its Ethernet header")]
    RuntFrame,
    /// Neither IPv4 nor IPv6 after at most one 802.1Q tag (ARP, LLDP, QinQ, ...).
    #[error("EtherType is neither IPv4 nor IPv6")]
    UnsupportedEtherType,
    /// IPv6: classified only, never translated.
    #[error("IPv6 frame (classified, not translated)")]
    Ipv6,
    /// Fewer bytes than 20 or than the IHL announces.
    #[error("IPv4 header truncated")]
    Ipv4Truncated,
    /// The version nibble is not 4 under EtherType 0x0800.
    #[error("IPv4 version nibble is not 4")]
    Ipv4BadVersion,
    /// IHL below 5 (RFC 791).
    #[error("IPv4 IHL below 5")]
    Ipv4HeaderLengthTooShort,
    /// Total length smaller than the header.
    #[error("IPv4 total length below the header length")]
    Ipv4TotalLengthBelowHeader,
    /// Total length larger than the frame.
    #[error("IPv4 total length beyond the frame")]
    Ipv4TotalLengthBeyondFrame,
    /// The header checksum does not verify (RFC 1812 §5.2.2: a router drops it).
    #[error("IPv4 header checksum does not verify")]
    Ipv4BadHeaderChecksum,
    /// A fragment with MF set whose payload is not a multiple of 8 bytes (RFC 791).
    #[error("IPv4 fragment payload not a multiple of 8 bytes")]
    Ipv4FragmentMisaligned,
    /// Non-first fragment (offset > 0): carries no transport header. Only [`crate::parse_frame`]
    /// refuses it; [`crate::classify_frame`] gives its address-only view.
    #[error("IPv4 non-first fragment")]
    Ipv4NonFirstFragment,
    /// A fragment whose offset plus length passes the 65,535 bytes an IPv4 datagram can hold.
    #[error("IPv4 fragment beyond the largest datagram")]
    Ipv4FragmentBeyondMaximum,
    /// A first fragment too short to hold its transport header.
    #[error("IPv4 first fragment shorter than its transport header")]
    Ipv4FirstFragmentTooShort,
    /// A fragment of a datagram flowpin does not translate in pieces: TCP (which sets DF and sizes
    /// its segments by MSS), ICMP errors (at most 576 bytes, RFC 1812), other protocols.
    #[error("IPv4 fragment of a protocol not translated in pieces")]
    Ipv4FragmentUnsupported,
    /// Source or destination in 0/8, 127/8, 224/4 or 240/4 (RFC 1812 §5.3.7, §4.2.2.11): never translated.
    #[error("IPv4 martian source or destination")]
    Ipv4MartianAddress,
    /// Not TCP, UDP or ICMP.
    #[error("IP protocol is not TCP, UDP or ICMP")]
    UnsupportedIpProtocol,
    /// IP payload shorter than the 20-byte TCP header.
    #[error("TCP header truncated")]
    TcpTruncated,
    /// TCP data offset below 5.
    #[error("TCP data offset below 5")]
    TcpDataOffsetTooShort,
    /// TCP data offset past the end of the IP payload.
    #[error("TCP data offset beyond the payload")]
    TcpDataOffsetBeyondPayload,
    /// IP payload shorter than the 8-byte UDP header.
    #[error("UDP header truncated")]
    UdpTruncated,
    /// UDP length below 8 or beyond the IP payload.
    #[error("UDP length inconsistent with the IP payload")]
    UdpLengthInvalid,
    /// IP payload shorter than the 8-byte ICMP header.
    #[error("ICMP header truncated")]
    IcmpTruncated,
    /// An ICMP type that is neither echo request / reply nor a translatable error (RFC 5508 §4, §5).
    #[error("ICMP type not translated")]
    IcmpUnsupportedType,
    /// An ICMP error quoting less than the embedded IP header plus 8 bytes (RFC 792).
    #[error("ICMP error payload truncated")]
    IcmpErrorTruncated,
    /// The quoted IP header is malformed (version, IHL, total length).
    #[error("ICMP error embeds a malformed IP header")]
    IcmpErrorEmbeddedMalformed,
    /// The quoted packet is not something a flow can exist for (non-first fragment, an ICMP error,
    /// another protocol).
    #[error("ICMP error embeds a packet no flow can match")]
    IcmpErrorEmbeddedUnsupported,
}

impl ParseError {
    /// Every variant, in declaration order (`ALL[e.index()] == e`).
    pub const ALL: [Self; 26] = [
        Self::RuntFrame,
        Self::UnsupportedEtherType,
        Self::Ipv6,
        Self::Ipv4Truncated,
        Self::Ipv4BadVersion,
        Self::Ipv4HeaderLengthTooShort,
        Self::Ipv4TotalLengthBelowHeader,
        Self::Ipv4TotalLengthBeyondFrame,
        Self::Ipv4BadHeaderChecksum,
        Self::Ipv4FragmentMisaligned,
        Self::Ipv4NonFirstFragment,
        Self::Ipv4FragmentBeyondMaximum,
        Self::Ipv4FirstFragmentTooShort,
        Self::Ipv4FragmentUnsupported,
        Self::Ipv4MartianAddress,
        Self::UnsupportedIpProtocol,
        Self::TcpTruncated,
        Self::TcpDataOffsetTooShort,
        Self::TcpDataOffsetBeyondPayload,
        Self::UdpTruncated,
        Self::UdpLengthInvalid,
        Self::IcmpTruncated,
        Self::IcmpUnsupportedType,
        Self::IcmpErrorTruncated,
        Self::IcmpErrorEmbeddedMalformed,
        Self::IcmpErrorEmbeddedUnsupported,
    ];

    /// A stable snake_case name for counters and logs.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::RuntFrame => "runt_frame",
            Self::UnsupportedEtherType => "unsupported_ethertype",
            Self::Ipv6 => "ipv6",
            Self::Ipv4Truncated => "ipv4_truncated",
            Self::Ipv4BadVersion => "ipv4_bad_version",
            Self::Ipv4HeaderLengthTooShort => "ipv4_header_length_too_short",
            Self::Ipv4TotalLengthBelowHeader => "ipv4_total_length_below_header",
            Self::Ipv4TotalLengthBeyondFrame => "ipv4_total_length_beyond_frame",
            Self::Ipv4BadHeaderChecksum => "ipv4_bad_header_checksum",
            Self::Ipv4FragmentMisaligned => "ipv4_fragment_misaligned",
            Self::Ipv4NonFirstFragment => "ipv4_non_first_fragment",
            Self::Ipv4FragmentBeyondMaximum => "ipv4_fragment_beyond_maximum",
            Self::Ipv4FirstFragmentTooShort => "ipv4_first_fragment_too_short",
            Self::Ipv4FragmentUnsupported => "ipv4_fragment_unsupported",
            Self::Ipv4MartianAddress => "ipv4_martian_address",
            Self::UnsupportedIpProtocol => "unsupported_ip_protocol",
            Self::TcpTruncated => "tcp_truncated",
            Self::TcpDataOffsetTooShort => "tcp_data_offset_too_short",
            Self::TcpDataOffsetBeyondPayload => "tcp_data_offset_beyond_payload",
            Self::UdpTruncated => "udp_truncated",
            Self::UdpLengthInvalid => "udp_length_invalid",
            Self::IcmpTruncated => "icmp_truncated",
            Self::IcmpUnsupportedType => "icmp_unsupported_type",
            Self::IcmpErrorTruncated => "icmp_error_truncated",
            Self::IcmpErrorEmbeddedMalformed => "icmp_error_embedded_malformed",
            Self::IcmpErrorEmbeddedUnsupported => "icmp_error_embedded_unsupported",
        }
    }

    /// The position of this variant in [`ParseError::ALL`] (a dense counter index).
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Looks a variant up by its [`name`](ParseError::name).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn all_is_complete_ordered_and_names_are_distinct_snake_case() {
        let names: HashSet<_> = ParseError::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(names.len(), ParseError::ALL.len());
        for (i, e) in ParseError::ALL.into_iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(ParseError::from_name(e.name()), Some(e));
            assert!(
                e.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
        }
    }
}
