//! Builds well-formed Ethernet/IPv4 frames with correct checksums from a short description.
//!
//! For tests, benches, the fuzz target and the datapath's own tests: it allocates and is never used on
//! the per-packet path. Every frame it returns passes [`parse_frame`](crate::parse_frame) unless the spec
//! itself describes something the parser refuses (e.g. a fragment or a martian address).

use crate::checksum::{internet_checksum, ipv4_pseudo_header_sum, udp_checksum_field};
use crate::wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_VLAN};
use crate::wire::ipv4::protocol;

/// What to put after the IPv4 header.
#[derive(Debug, Clone, Copy)]
pub enum L4Spec<'a> {
    /// UDP with a computed checksum.
    Udp {
        /// (source, destination) ports.
        ports: (u16, u16),
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// UDP whose checksum field is 0 ("none", RFC 768).
    UdpWithoutChecksum {
        /// (source, destination) ports.
        ports: (u16, u16),
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// TCP with a 20-byte header and a computed checksum.
    Tcp {
        /// (source, destination) ports.
        ports: (u16, u16),
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number.
        ack: u32,
        /// Flags byte.
        flags: u8,
        /// Payload bytes.
        payload: &'a [u8],
    },
    /// ICMP echo request (`request`) or reply, 8 bytes of data.
    Echo {
        /// Request (type 8) or reply (type 0).
        request: bool,
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
    },
    /// An ICMP error quoting `quoted` (an IP packet or its prefix).
    IcmpError {
        /// ICMP type.
        message_type: u8,
        /// ICMP code.
        code: u8,
        /// The 4 bytes after the checksum (e.g. next-hop MTU).
        rest: [u8; 4],
        /// The quoted bytes.
        quoted: &'a [u8],
    },
}

/// A frame to build.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpec<'a> {
    /// Ethernet destination.
    pub destination_mac: [u8; 6],
    /// Ethernet source.
    pub source_mac: [u8; 6],
    /// One 802.1Q tag (TCI) if set.
    pub vlan: Option<u16>,
    /// IPv4 source.
    pub source: [u8; 4],
    /// IPv4 destination.
    pub destination: [u8; 4],
    /// TTL.
    pub ttl: u8,
    /// DF flag.
    pub dont_fragment: bool,
    /// IPv4 identification.
    pub ident: u16,
    /// IPv4 options (length a multiple of 4, at most 40).
    pub ip_options: &'a [u8],
    /// Bytes after the IP packet (Ethernet padding or trailer).
    pub trailer: &'a [u8],
    /// Transport.
    pub l4: L4Spec<'a>,
}

impl<'a> FrameSpec<'a> {
    /// A spec with fixed MACs (02:00:00:00:00:01 → 02:00:00:00:00:02), TTL 64, DF set, no tag, no
    /// options, no trailer.
    #[must_use]
    pub const fn new(source: [u8; 4], destination: [u8; 4], l4: L4Spec<'a>) -> Self {
        Self {
            destination_mac: [2, 0, 0, 0, 0, 2],
            source_mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            source,
            destination,
            ttl: 64,
            dont_fragment: true,
            ident: 0x1234,
            ip_options: &[],
            trailer: &[],
            l4,
        }
    }
}

/// Builds the frame described by `spec`.
///
/// # Panics
/// If the spec cannot be encoded (IP options longer than 40 bytes or not a multiple of 4, a packet over
/// 65535 bytes) — a bug in the caller's spec.
#[must_use]
pub fn build_frame(spec: &FrameSpec<'_>) -> Vec<u8> {
    assert!(
        spec.ip_options.len().is_multiple_of(4) && spec.ip_options.len() <= 40,
        "bad IP options length"
    );
    let mut l4 = Vec::new();
    let protocol = match spec.l4 {
        L4Spec::Udp { ports, payload } | L4Spec::UdpWithoutChecksum { ports, payload } => {
            let len = u16::try_from(8 + payload.len()).expect("UDP too long");
            l4.extend_from_slice(&ports.0.to_be_bytes());
            l4.extend_from_slice(&ports.1.to_be_bytes());
            l4.extend_from_slice(&len.to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            l4.extend_from_slice(payload);
            if matches!(spec.l4, L4Spec::Udp { .. }) {
                let sum = ipv4_pseudo_header_sum(spec.source, spec.destination, protocol::UDP, len);
                let checksum = udp_checksum_field(internet_checksum(&l4, sum));
                l4[6..8].copy_from_slice(&checksum.to_be_bytes());
            }
            protocol::UDP
        }
        L4Spec::Tcp {
            ports,
            seq,
            ack,
            flags,
            payload,
        } => {
            l4.extend_from_slice(&ports.0.to_be_bytes());
            l4.extend_from_slice(&ports.1.to_be_bytes());
            l4.extend_from_slice(&seq.to_be_bytes());
            l4.extend_from_slice(&ack.to_be_bytes());
            l4.extend_from_slice(&[0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
            l4.extend_from_slice(payload);
            let len = u16::try_from(l4.len()).expect("TCP too long");
            let sum = ipv4_pseudo_header_sum(spec.source, spec.destination, protocol::TCP, len);
            let checksum = internet_checksum(&l4, sum);
            l4[16..18].copy_from_slice(&checksum.to_be_bytes());
            protocol::TCP
        }
        L4Spec::Echo { request, id, seq } => {
            l4.extend_from_slice(&[if request { 8 } else { 0 }, 0, 0, 0]);
            l4.extend_from_slice(&id.to_be_bytes());
            l4.extend_from_slice(&seq.to_be_bytes());
            l4.extend_from_slice(b"flowpin!");
            let checksum = internet_checksum(&l4, 0);
            l4[2..4].copy_from_slice(&checksum.to_be_bytes());
            protocol::ICMP
        }
        L4Spec::IcmpError {
            message_type,
            code,
            rest,
            quoted,
        } => {
            l4.extend_from_slice(&[message_type, code, 0, 0]);
            l4.extend_from_slice(&rest);
            l4.extend_from_slice(quoted);
            let checksum = internet_checksum(&l4, 0);
            l4[2..4].copy_from_slice(&checksum.to_be_bytes());
            protocol::ICMP
        }
    };
    let header_len = 20 + spec.ip_options.len();
    let total_len = u16::try_from(header_len + l4.len()).expect("IP packet too long");
    let mut frame = Vec::with_capacity(18 + usize::from(total_len) + spec.trailer.len());
    frame.extend_from_slice(&spec.destination_mac);
    frame.extend_from_slice(&spec.source_mac);
    if let Some(tci) = spec.vlan {
        frame.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        frame.extend_from_slice(&tci.to_be_bytes());
    }
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_start = frame.len();
    let ihl = u8::try_from(header_len / 4).expect("IHL fits");
    frame.extend_from_slice(&[0x40 | ihl, 0]);
    frame.extend_from_slice(&total_len.to_be_bytes());
    frame.extend_from_slice(&spec.ident.to_be_bytes());
    frame.extend_from_slice(&(if spec.dont_fragment { 0x4000u16 } else { 0 }).to_be_bytes());
    frame.extend_from_slice(&[spec.ttl, protocol, 0, 0]);
    frame.extend_from_slice(&spec.source);
    frame.extend_from_slice(&spec.destination);
    frame.extend_from_slice(spec.ip_options);
    let checksum = internet_checksum(&frame[ip_start..], 0);
    frame[ip_start + 10..ip_start + 12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&l4);
    frame.extend_from_slice(spec.trailer);
    frame
}
