//! One-shot classification of an untrusted Ethernet frame into a small `Copy` summary.
//!
//! [`classify_frame`] validates, in this order: Ethernet (one 802.1Q tag at most), IPv4 structure
//! ([`Ipv4Packet::new_checked`]), the IPv4 header checksum (RFC 1812 §5.2.2), martian addresses
//! (RFC 1812 §5.3.7), fragments (`fragment.rs`: a non-first fragment yields its address-only
//! [`LaterFragment`] view; a first fragment of UDP or ICMP echo parses on, marked with its IP
//! identification), then the transport header. [`parse_frame`] refuses non-first fragments. For
//! ICMP errors it also validates the quoted packet: an IPv4 header (version 4, `5 <= IHL`) followed by at
//! least 8 bytes of its transport header (RFC 792), first fragment only, and of a protocol a flow can exist
//! for (TCP, UDP, ICMP echo).
//!
//! Invariants of an `Ok(ParsedFrame)` for the buffer it came from:
//! - every offset it holds is in bounds, and the transport header at `l4_offset` is complete;
//! - `l3_offset + ip_total_len <= frame.len()`; bytes past that (Ethernet padding, trailers) are ignored;
//! - transport checksums are *not* verified (an invalid one is carried through, never repaired);
//! - a first fragment's transport header is complete in it; its UDP length (the whole datagram's)
//!   is at least 8 and not checked against the fragment.

use crate::flow_key::{FlowKey, IpProtocol};
use crate::fragment::{Fragmentation, LaterFragment, fragmentation};
use crate::parse_error::ParseError;
use crate::wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetFrame};
use crate::wire::icmpv4::{self, Icmpv4Message, message_type};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::tcp::{TcpFlags, TcpSegment};
use crate::wire::udp::UdpDatagram;
use std::net::Ipv4Addr;

/// A classified IPv4 frame the translator can work on. Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedFrame {
    /// Offset of the IPv4 header (14, or 18 behind an 802.1Q tag).
    pub l3_offset: u16,
    /// Offset of the transport (TCP / UDP / ICMP) header.
    pub l4_offset: u16,
    /// The IPv4 total length: the packet ends at `l3_offset + ip_total_len`.
    pub ip_total_len: u16,
    /// The 5-tuple as the frame carries it (for ICMP errors: the outer addresses, ports 0).
    pub key: FlowKey,
    /// The IPv4 TTL.
    pub ttl: u8,
    /// The IPv4 DF flag.
    pub dont_fragment: bool,
    /// The IP identification when this is the first fragment of a datagram (MF set, offset 0):
    /// its later fragments follow its translation.
    pub first_fragment_ident: Option<u16>,
    /// Per-protocol details.
    pub transport: Transport,
}

/// What the transport header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP segment.
    Tcp(TcpInfo),
    /// A UDP datagram; `checksum_present` is false for a zero checksum field (RFC 768).
    Udp {
        /// The checksum field is not 0.
        checksum_present: bool,
    },
    /// An ICMP echo request (type 8) or reply (type 0); the id is in the key's ports.
    IcmpQuery {
        /// ICMP type.
        message_type: u8,
    },
    /// An ICMP error quoting a packet of some flow.
    IcmpError(IcmpErrorInfo),
}

/// TCP header fields the state tracker needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Control flags.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Payload bytes after the TCP header.
    pub payload_len: u16,
}

/// An ICMP error and the packet it quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpErrorInfo {
    /// ICMP type (3, 4, 11 or 12).
    pub message_type: u8,
    /// ICMP code.
    pub code: u8,
    /// Offset (in the frame) of the quoted IPv4 header.
    pub embedded_l3_offset: u16,
    /// Offset (in the frame) of the quoted transport header (at least 8 bytes present).
    pub embedded_l4_offset: u16,
    /// The quoted packet's 5-tuple as quoted. The flow the error belongs to, in the direction the error
    /// travels, is `embedded.reversed()`.
    pub embedded: FlowKey,
}

impl ParsedFrame {
    /// Offset one past the last byte of the IP packet (start of any Ethernet trailer).
    #[must_use]
    pub const fn ip_end(&self) -> usize {
        self.l3_offset as usize + self.ip_total_len as usize
    }
}

/// True for addresses a router never forwards from or to (RFC 1812 §5.3.7, §4.2.2.11 and §4.2.3.1):
/// 0/8, 127/8, multicast 224/4, and 240/4 including the limited broadcast.
#[must_use]
pub const fn is_martian(address: Ipv4Addr) -> bool {
    let first = address.octets()[0];
    first == 0 || first == 127 || first >= 224
}

/// What a frame is to the translator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// A whole packet, or the first fragment of a datagram: it carries its transport header.
    Packet(ParsedFrame),
    /// A later fragment: addresses only.
    LaterFragment(LaterFragment),
}

/// Classifies an untrusted frame that must be a whole packet or a first fragment: a later
/// fragment is refused ([`ParseError::Ipv4NonFirstFragment`]). Never panics, never allocates.
///
/// # Errors
/// The first reason the frame cannot be translated; see [`ParseError`].
pub fn parse_frame(frame: &[u8]) -> Result<ParsedFrame, ParseError> {
    match classify_frame(frame)? {
        Classified::Packet(parsed) => Ok(parsed),
        Classified::LaterFragment(_) => Err(ParseError::Ipv4NonFirstFragment),
    }
}

/// Classifies an untrusted frame. Never panics, never allocates.
///
/// # Errors
/// The first reason the frame cannot be translated; see [`ParseError`].
pub fn classify_frame(frame: &[u8]) -> Result<Classified, ParseError> {
    let ethernet = EthernetFrame::new_checked(frame)?;
    match ethernet.ethertype() {
        ETHERTYPE_IPV4 => {}
        ETHERTYPE_IPV6 => return Err(ParseError::Ipv6),
        _ => return Err(ParseError::UnsupportedEtherType),
    }
    let l3_offset = ethernet.payload_offset();
    let ip = Ipv4Packet::new_checked(&frame[l3_offset..])?;
    if !ip.verify_checksum() {
        return Err(ParseError::Ipv4BadHeaderChecksum);
    }
    if is_martian(ip.source()) || is_martian(ip.destination()) {
        return Err(ParseError::Ipv4MartianAddress);
    }
    let protocol =
        IpProtocol::from_number(ip.protocol()).ok_or(ParseError::UnsupportedIpProtocol)?;
    let first_fragment = match fragmentation(&ip, protocol)? {
        Fragmentation::Whole => false,
        Fragmentation::First => true,
        Fragmentation::Later => {
            return Ok(Classified::LaterFragment(LaterFragment::of(&ip, l3_offset)));
        }
    };
    let l4_offset = l3_offset + ip.header_len();
    let payload = ip.payload();
    let (source_port, destination_port, transport) = match protocol {
        IpProtocol::Tcp => {
            let tcp = TcpSegment::new_checked(payload)?;
            let info = TcpInfo {
                flags: tcp.flags(),
                seq: tcp.seq_number(),
                ack: tcp.ack_number(),
                payload_len: narrow(tcp.payload_len()),
            };
            (
                tcp.source_port(),
                tcp.destination_port(),
                Transport::Tcp(info),
            )
        }
        IpProtocol::Udp => {
            let udp = if first_fragment {
                first_fragment_udp(payload)?
            } else {
                UdpDatagram::new_checked(payload)?
            };
            let checksum_present = udp.checksum() != 0;
            (
                udp.source_port(),
                udp.destination_port(),
                Transport::Udp { checksum_present },
            )
        }
        IpProtocol::Icmp => parse_icmp(payload, l4_offset)?,
    };
    let in_pieces = matches!(
        transport,
        Transport::Udp { .. } | Transport::IcmpQuery { .. }
    );
    if first_fragment && !in_pieces {
        return Err(ParseError::Ipv4FragmentUnsupported);
    }
    Ok(Classified::Packet(ParsedFrame {
        l3_offset: narrow(l3_offset),
        l4_offset: narrow(l4_offset),
        ip_total_len: ip.total_len(),
        key: FlowKey {
            protocol,
            source: ip.source(),
            destination: ip.destination(),
            source_port,
            destination_port,
        },
        ttl: ip.ttl(),
        dont_fragment: ip.dont_fragment(),
        first_fragment_ident: first_fragment.then(|| ip.ident()),
        transport,
    }))
}

/// A first fragment's UDP header: complete, with a length of at least its own 8 bytes (the rest of
/// the datagram is in later fragments, so the length is not checked against this one).
fn first_fragment_udp(payload: &[u8]) -> Result<UdpDatagram<&[u8]>, ParseError> {
    if payload.len() < crate::wire::udp::HEADER_LEN {
        return Err(ParseError::Ipv4FirstFragmentTooShort);
    }
    let udp = UdpDatagram::new_unchecked(payload);
    if usize::from(udp.len()) < crate::wire::udp::HEADER_LEN {
        return Err(ParseError::UdpLengthInvalid);
    }
    Ok(udp)
}

fn parse_icmp(payload: &[u8], l4_offset: usize) -> Result<(u16, u16, Transport), ParseError> {
    let icmp = Icmpv4Message::new_checked(payload)?;
    let kind = icmp.message_type();
    match kind {
        message_type::ECHO_REQUEST | message_type::ECHO_REPLY => Ok((
            icmp.echo_id(),
            icmp.echo_id(),
            Transport::IcmpQuery { message_type: kind },
        )),
        _ if message_type::is_translatable_error(kind) => {
            let embedded_l3_offset = l4_offset + icmpv4::HEADER_LEN;
            let (embedded, embedded_l4_offset) = parse_embedded(icmp.data(), embedded_l3_offset)?;
            let info = IcmpErrorInfo {
                message_type: kind,
                code: icmp.code(),
                embedded_l3_offset: narrow(embedded_l3_offset),
                embedded_l4_offset: narrow(embedded_l4_offset),
                embedded,
            };
            Ok((0, 0, Transport::IcmpError(info)))
        }
        _ => Err(ParseError::IcmpUnsupportedType),
    }
}

/// Validates the quoted packet of an ICMP error (RFC 792: IP header + first 8 bytes of its payload).
fn parse_embedded(
    quoted: &[u8],
    embedded_l3_offset: usize,
) -> Result<(FlowKey, usize), ParseError> {
    if quoted.len() < ipv4::MIN_HEADER_LEN + 8 {
        return Err(ParseError::IcmpErrorTruncated);
    }
    let ip = Ipv4Packet::new_unchecked(quoted);
    let header_len = ip.header_len();
    if ip.version() != 4
        || header_len < ipv4::MIN_HEADER_LEN
        || usize::from(ip.total_len()) < header_len
    {
        return Err(ParseError::IcmpErrorEmbeddedMalformed);
    }
    if quoted.len() < header_len + 8 {
        return Err(ParseError::IcmpErrorTruncated);
    }
    if ip.fragment_offset() != 0 {
        return Err(ParseError::IcmpErrorEmbeddedUnsupported);
    }
    let protocol =
        IpProtocol::from_number(ip.protocol()).ok_or(ParseError::IcmpErrorEmbeddedUnsupported)?;
    let l4 = &quoted[header_len..];
    let (source_port, destination_port) = match protocol {
        IpProtocol::Tcp | IpProtocol::Udp => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        IpProtocol::Icmp => {
            let inner = Icmpv4Message::new_unchecked(l4);
            if !matches!(
                inner.message_type(),
                message_type::ECHO_REQUEST | message_type::ECHO_REPLY
            ) {
                return Err(ParseError::IcmpErrorEmbeddedUnsupported);
            }
            (inner.echo_id(), inner.echo_id())
        }
    };
    let key = FlowKey {
        protocol,
        source: ip.source(),
        destination: ip.destination(),
        source_port,
        destination_port,
    };
    Ok((key, embedded_l3_offset + header_len))
}

/// Offsets and lengths inside a frame are below 64 KiB by construction (an IPv4 total length is a u16
/// and headers precede it); saturate rather than panic should a caller hand a larger buffer.
fn narrow(value: usize) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_builder::{FrameSpec, L4Spec, build_frame};

    fn spec(l4: L4Spec<'_>) -> FrameSpec<'_> {
        FrameSpec::new([10, 0, 0, 2], [198, 51, 100, 7], l4)
    }

    #[test]
    fn classifies_udp() {
        let frame = build_frame(&spec(L4Spec::Udp {
            ports: (5000, 53),
            payload: b"hello",
        }));
        let p = parse_frame(&frame).unwrap();
        assert_eq!(p.l3_offset, 14);
        assert_eq!(p.l4_offset, 34);
        assert_eq!(p.ip_total_len, 20 + 8 + 5);
        assert_eq!(p.key.protocol, IpProtocol::Udp);
        assert_eq!((p.key.source_port, p.key.destination_port), (5000, 53));
        assert_eq!(p.key.source, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.ttl, 64);
        assert!(p.dont_fragment);
        assert_eq!(
            p.transport,
            Transport::Udp {
                checksum_present: true
            }
        );
    }

    #[test]
    fn classifies_tcp_behind_a_vlan_tag_with_ip_options_and_trailer() {
        let mut s = spec(L4Spec::Tcp {
            ports: (40000, 443),
            seq: 7,
            ack: 9,
            flags: 0x18,
            payload: b"abc",
        });
        s.vlan = Some(100);
        s.ip_options = &[1, 1, 1, 0];
        s.trailer = &[0xEE; 6];
        let frame = build_frame(&s);
        let p = parse_frame(&frame).unwrap();
        assert_eq!((p.l3_offset, p.l4_offset), (18, 18 + 24));
        assert_eq!(p.ip_end(), frame.len() - 6);
        let Transport::Tcp(tcp) = p.transport else {
            panic!("not tcp: {p:?}")
        };
        assert_eq!((tcp.seq, tcp.ack, tcp.payload_len), (7, 9, 3));
        assert!(tcp.flags.ack() && !tcp.flags.syn());
    }

    #[test]
    fn echo_id_mirrors_between_request_and_reply() {
        let request = parse_frame(&build_frame(&spec(L4Spec::Echo {
            request: true,
            id: 77,
            seq: 1,
        })))
        .unwrap();
        let reply = build_frame(&FrameSpec::new(
            [198, 51, 100, 7],
            [10, 0, 0, 2],
            L4Spec::Echo {
                request: false,
                id: 77,
                seq: 1,
            },
        ));
        let reply = parse_frame(&reply).unwrap();
        assert_eq!(request.key.reversed(), reply.key);
        assert_eq!(request.key.source_port, 77);
    }

    #[test]
    fn classifies_icmp_error_and_its_embedded_flow() {
        let original = build_frame(&spec(L4Spec::Udp {
            ports: (5000, 53),
            payload: b"q",
        }));
        let error = build_frame(&FrameSpec::new(
            [203, 0, 113, 1],
            [10, 0, 0, 2],
            L4Spec::IcmpError {
                message_type: 11,
                code: 0,
                rest: [0; 4],
                quoted: &original[14..],
            },
        ));
        let p = parse_frame(&error).unwrap();
        let Transport::IcmpError(e) = p.transport else {
            panic!("not an error: {p:?}")
        };
        assert_eq!((e.message_type, e.code), (11, 0));
        assert_eq!(e.embedded_l3_offset, 14 + 20 + 8);
        assert_eq!(e.embedded_l4_offset, 14 + 20 + 8 + 20);
        assert_eq!(e.embedded, parse_frame(&original).unwrap().key);
    }

    #[test]
    fn refuses_ipv6_arp_and_runts() {
        let mut frame = build_frame(&spec(L4Spec::Udp {
            ports: (1, 2),
            payload: b"",
        }));
        assert_eq!(parse_frame(&frame[..10]), Err(ParseError::RuntFrame));
        frame[12..14].copy_from_slice(&0x86DDu16.to_be_bytes());
        assert_eq!(parse_frame(&frame), Err(ParseError::Ipv6));
        frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse_frame(&frame), Err(ParseError::UnsupportedEtherType));
    }

    #[test]
    fn refuses_fragments_martians_and_bad_checksums() {
        let base = build_frame(&spec(L4Spec::Udp {
            ports: (1, 2),
            payload: b"xx",
        }));
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut f = base.clone();
            edit(&mut f);
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.fill_checksum();
            parse_frame(&f)
        };
        assert_eq!(
            with(&|f| f[20] = 0x20),
            Err(ParseError::Ipv4FragmentMisaligned)
        );
        assert_eq!(
            with(&|f| f[21] = 0x01),
            Err(ParseError::Ipv4NonFirstFragment)
        );
        assert_eq!(with(&|f| f[30] = 224), Err(ParseError::Ipv4MartianAddress));
        assert_eq!(with(&|f| f[26] = 127), Err(ParseError::Ipv4MartianAddress));
        assert_eq!(
            with(&|f| f[23] = 47),
            Err(ParseError::UnsupportedIpProtocol)
        );
        let mut bad = base.clone();
        bad[24] ^= 0xFF;
        assert_eq!(parse_frame(&bad), Err(ParseError::Ipv4BadHeaderChecksum));
    }

    proptest::proptest! {
        /// Arbitrary bytes and single-byte corruptions of valid frames never panic the parser, and
        /// whatever it accepts keeps every offset inside the frame.
        #[test]
        fn never_panics_and_offsets_stay_in_bounds(
            random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            value in proptest::prelude::any::<u8>(),
            kind in 0usize..4,
        ) {
            let original = build_frame(&spec(L4Spec::Udp { ports: (1, 2), payload: b"x" }));
            let valid = [
                build_frame(&spec(L4Spec::Udp { ports: (5000, 53), payload: b"payload" })),
                build_frame(&spec(L4Spec::Tcp { ports: (1, 2), seq: 3, ack: 4, flags: 0x10, payload: b"p" })),
                build_frame(&spec(L4Spec::Echo { request: true, id: 9, seq: 1 })),
                build_frame(&FrameSpec::new([203, 0, 113, 1], [10, 0, 0, 2], L4Spec::IcmpError {
                    message_type: 3, code: 1, rest: [0; 4], quoted: &original[14..],
                })),
            ];
            for mut frame in [random, valid[kind].clone()] {
                let i = at.index(frame.len().max(1)).min(frame.len().saturating_sub(1));
                if let Some(byte) = frame.get_mut(i) {
                    *byte = value;
                }
                if let Ok(p) = parse_frame(&frame) {
                    proptest::prop_assert!(p.ip_end() <= frame.len());
                    proptest::prop_assert!(usize::from(p.l4_offset) < p.ip_end());
                    if let Transport::IcmpError(e) = p.transport {
                        proptest::prop_assert!(usize::from(e.embedded_l4_offset) + 8 <= p.ip_end());
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_icmp_errors_about_icmp_errors_and_truncated_quotes() {
        let original = build_frame(&spec(L4Spec::Udp {
            ports: (5000, 53),
            payload: b"q",
        }));
        let inner_error = build_frame(&FrameSpec::new(
            [10, 0, 0, 2],
            [198, 51, 100, 7],
            L4Spec::IcmpError {
                message_type: 3,
                code: 3,
                rest: [0; 4],
                quoted: &original[14..],
            },
        ));
        let outer = |quoted: &[u8]| {
            build_frame(&FrameSpec::new(
                [203, 0, 113, 1],
                [10, 0, 0, 2],
                L4Spec::IcmpError {
                    message_type: 3,
                    code: 1,
                    rest: [0; 4],
                    quoted,
                },
            ))
        };
        assert_eq!(
            parse_frame(&outer(&inner_error[14..])),
            Err(ParseError::IcmpErrorEmbeddedUnsupported)
        );
        assert_eq!(
            parse_frame(&outer(&original[14..14 + 27])),
            Err(ParseError::IcmpErrorTruncated)
        );
        let mut bad_version = original[14..].to_vec();
        bad_version[0] = 0x65;
        assert_eq!(
            parse_frame(&outer(&bad_version)),
            Err(ParseError::IcmpErrorEmbeddedMalformed)
        );
        let redirect = build_frame(&spec(L4Spec::IcmpError {
            message_type: 5,
            code: 0,
            rest: [0; 4],
            quoted: &original[14..],
        }));
        assert_eq!(parse_frame(&redirect), Err(ParseError::IcmpUnsupportedType));
    }
}
