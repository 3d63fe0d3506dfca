//! Packets the datapath originates towards a LAN host: ICMP "fragmentation needed" (3/4, RFC 1191),
//! ICMP net unreachable (3/0, RFC 1812 §5.2.7.1: no uplink can carry a new flow), host unreachable (3/1)
//! and administratively prohibited (3/13, RFC 1812 §5.2.7.1, e.g. when the NAT has no port left), and a
//! TCP RST for a flow (failover: the application reconnects at once).
//!
//! Invariants: builders write into a caller-provided buffer and return the frame length; they never
//! allocate or panic; on error nothing meaningful was written. No ICMP error is ever built about an ICMP
//! error, a fragment, or a frame sent to a link-layer broadcast or multicast address (RFC 1812 §4.3.2.7;
//! fragments and IP broadcast / multicast / martian addresses never parse). The quoted part is as much of
//! the offending IP packet as fits in 576 bytes (RFC 1812 §4.3.2.3), never less than its IP header plus 8
//! bytes.

use crate::checksum::{internet_checksum, ipv4_pseudo_header_sum};
use crate::flow_key::{FlowKey, IpProtocol};
use crate::parse::{ParsedFrame, Transport};
use crate::rewrite::MacPair;
use crate::wire::ethernet::{self, ETHERTYPE_IPV4, ETHERTYPE_VLAN, EthernetFrame};
use crate::wire::icmpv4::{Icmpv4Message, message_type, unreachable_code};
use crate::wire::ipv4::{self, Ipv4HeaderFields, Ipv4Packet, protocol};
use crate::wire::tcp::{TcpFlags, TcpSegment};
use crate::wire::write_u16;
use std::net::Ipv4Addr;

/// TTL of originated packets.
pub const ORIGINATED_TTL: u8 = 64;
/// Largest originated ICMP error datagram (RFC 1812 §4.3.2.3).
pub const MAX_ICMP_ERROR_DATAGRAM: usize = 576;

/// Which ICMP destination-unreachable to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachableKind {
    /// 3/4 with the next-hop MTU (RFC 1191 §4).
    FragmentationNeeded {
        /// The MTU of the uplink the packet did not fit.
        next_hop_mtu: u16,
    },
    /// 3/0: the router has no route (no usable uplink) towards the destination's network.
    NetUnreachable,
    /// 3/1.
    HostUnreachable,
    /// 3/13.
    AdministrativelyProhibited,
}

/// The router's identity on the LAN, the source of originated packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterIdentity {
    /// The router's LAN MAC.
    pub mac: [u8; 6],
    /// The router's LAN address.
    pub address: Ipv4Addr,
}

/// Why nothing was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The offending packet is itself an ICMP error (RFC 1812 §4.3.2.7).
    #[error("never an ICMP error about an ICMP error")]
    AboutIcmpError,
    /// The offending frame went to a link-layer broadcast or multicast address (RFC 1812 §4.3.2.7).
    #[error("offending frame was link-layer broadcast or multicast")]
    LinkLayerBroadcast,
    /// The output buffer cannot hold the headers plus the minimum quote.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// `offending` is not the frame `parsed` came from.
    #[error("frame does not match its parse result")]
    FrameMismatch,
    /// A TCP RST was asked for a non-TCP flow.
    #[error("not a TCP flow")]
    NotTcp,
}

/// Builds an ICMP destination unreachable from `router` to the sender of `offending`, into `out`.
/// The Ethernet destination is the offending frame's source MAC, and an 802.1Q tag is kept.
///
/// # Errors
/// See [`BuildError`].
pub fn build_unreachable(
    out: &mut [u8],
    offending: &[u8],
    parsed: &ParsedFrame,
    router: RouterIdentity,
    kind: UnreachableKind,
) -> Result<usize, BuildError> {
    if matches!(parsed.transport, Transport::IcmpError(_)) {
        return Err(BuildError::AboutIcmpError);
    }
    let l3 = usize::from(parsed.l3_offset);
    let end = parsed.ip_end();
    let l4 = usize::from(parsed.l4_offset);
    if offending.len() < end
        || l3 + ipv4::MIN_HEADER_LEN > l4
        || l4 > end
        || l3 < ethernet::HEADER_LEN
    {
        return Err(BuildError::FrameMismatch);
    }
    let offending_ethernet = EthernetFrame::new_unchecked(offending);
    if offending_ethernet.destination()[0] & 1 != 0 {
        return Err(BuildError::LinkLayerBroadcast);
    }
    let vlan = offending_ethernet.vlan_tci();
    let out_l3 = write_ethernet(
        out,
        MacPair {
            source: router.mac,
            destination: offending_ethernet.source(),
        },
        vlan,
    )?;
    let out_icmp = out_l3 + ipv4::MIN_HEADER_LEN;
    let out_quote = out_icmp + 8;
    let minimum_quote = l4 - l3 + 8;
    let room = out
        .len()
        .saturating_sub(out_quote)
        .min(MAX_ICMP_ERROR_DATAGRAM - 28);
    let quote_len = (end - l3).min(room);
    if quote_len < minimum_quote.min(end - l3) {
        return Err(BuildError::BufferTooSmall);
    }
    out[out_quote..out_quote + quote_len].copy_from_slice(&offending[l3..l3 + quote_len]);
    let (code, rest) = match kind {
        UnreachableKind::FragmentationNeeded { next_hop_mtu } => {
            let mtu = next_hop_mtu.to_be_bytes();
            (
                unreachable_code::FRAGMENTATION_NEEDED,
                [0, 0, mtu[0], mtu[1]],
            )
        }
        UnreachableKind::NetUnreachable => (unreachable_code::NET, [0; 4]),
        UnreachableKind::HostUnreachable => (unreachable_code::HOST, [0; 4]),
        UnreachableKind::AdministrativelyProhibited => (unreachable_code::ADMIN_PROHIBITED, [0; 4]),
    };
    let icmp_end = out_quote + quote_len;
    let mut icmp = Icmpv4Message::new_unchecked(&mut out[out_icmp..icmp_end]);
    icmp.write_header(message_type::DESTINATION_UNREACHABLE, code, rest);
    let checksum = internet_checksum(&out[out_icmp..icmp_end], 0);
    write_u16(out, out_icmp + 2, checksum);
    Ipv4Packet::new_unchecked(&mut out[out_l3..]).write_header(&Ipv4HeaderFields {
        source: router.address,
        destination: parsed.key.source,
        protocol: protocol::ICMP,
        ttl: ORIGINATED_TTL,
        total_len: to_u16(icmp_end - out_l3),
        dont_fragment: false,
    });
    Ok(icmp_end)
}

/// Builds a TCP RST carrying `key` (as the LAN host must receive it: source = the remote endpoint,
/// destination = the LAN host) with sequence number `seq`; with `ack` set, the ACK flag and number too.
/// RFC 9293 §3.10.7.3 / RFC 5961 §3.2: the RST resets the host's connection at once only when `seq` is
/// exactly the host's RCV.NXT — the latest acknowledgment number the host sent, which the tracker keeps.
///
/// # Errors
/// [`BuildError::NotTcp`], [`BuildError::BufferTooSmall`].
pub fn build_tcp_rst(
    out: &mut [u8],
    macs: MacPair,
    vlan: Option<u16>,
    key: FlowKey,
    seq: u32,
    ack: Option<u32>,
) -> Result<usize, BuildError> {
    if key.protocol != IpProtocol::Tcp {
        return Err(BuildError::NotTcp);
    }
    let l3 = write_ethernet(out, macs, vlan)?;
    let l4 = l3 + ipv4::MIN_HEADER_LEN;
    let end = l4 + 20;
    if out.len() < end {
        return Err(BuildError::BufferTooSmall);
    }
    let flags = TcpFlags(TcpFlags::RST | if ack.is_some() { TcpFlags::ACK } else { 0 });
    TcpSegment::new_unchecked(&mut out[l4..end]).write_header(
        (key.source_port, key.destination_port),
        seq,
        ack.unwrap_or(0),
        flags,
        0,
    );
    let pseudo = ipv4_pseudo_header_sum(
        key.source.octets(),
        key.destination.octets(),
        protocol::TCP,
        20,
    );
    let checksum = internet_checksum(&out[l4..end], pseudo);
    TcpSegment::new_unchecked(&mut out[l4..end]).set_checksum(checksum);
    Ipv4Packet::new_unchecked(&mut out[l3..]).write_header(&Ipv4HeaderFields {
        source: key.source,
        destination: key.destination,
        protocol: protocol::TCP,
        ttl: ORIGINATED_TTL,
        total_len: to_u16(end - l3),
        dont_fragment: true,
    });
    Ok(end)
}

/// Writes the Ethernet header (and tag) and returns the L3 offset; checks the buffer holds at least the
/// Ethernet and IPv4 headers plus 8 bytes.
fn write_ethernet(out: &mut [u8], macs: MacPair, vlan: Option<u16>) -> Result<usize, BuildError> {
    let l3 = if vlan.is_some() {
        ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN
    } else {
        ethernet::HEADER_LEN
    };
    if out.len() < l3 + ipv4::MIN_HEADER_LEN + 8 {
        return Err(BuildError::BufferTooSmall);
    }
    let mut frame = EthernetFrame::new_unchecked(&mut *out);
    match vlan {
        Some(tci) => {
            frame.set_untagged_header(macs.destination, macs.source, ETHERTYPE_VLAN);
            write_u16(out, 14, tci);
            write_u16(out, 16, ETHERTYPE_IPV4);
        }
        None => frame.set_untagged_header(macs.destination, macs.source, ETHERTYPE_IPV4),
    }
    Ok(l3)
}

fn to_u16(value: usize) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_builder::{FrameSpec, L4Spec, build_frame};
    use crate::parse::parse_frame;
    use crate::verify::checksums_valid;

    const ROUTER: RouterIdentity = RouterIdentity {
        mac: [0x02, 0, 0, 0, 0, 0xFE],
        address: Ipv4Addr::new(192, 168, 1, 1),
    };

    #[test]
    fn fragmentation_needed_quotes_the_offender_and_carries_the_mtu() {
        let payload = [7u8; 1400];
        let offending = build_frame(&FrameSpec::new(
            [192, 168, 1, 10],
            [198, 51, 100, 7],
            L4Spec::Udp {
                ports: (5000, 443),
                payload: &payload,
            },
        ));
        let parsed = parse_frame(&offending).unwrap();
        let mut out = [0u8; 1600];
        let len = build_unreachable(
            &mut out,
            &offending,
            &parsed,
            ROUTER,
            UnreachableKind::FragmentationNeeded { next_hop_mtu: 1400 },
        )
        .unwrap();
        assert_eq!(len, 14 + MAX_ICMP_ERROR_DATAGRAM);
        let reply = parse_frame(&out[..len]).unwrap();
        assert!(checksums_valid(&out[..len], &reply));
        assert_eq!(reply.key.source, ROUTER.address);
        assert_eq!(reply.key.destination, parsed.key.source);
        assert_eq!(&out[0..6], &offending[6..12]);
        let Transport::IcmpError(e) = reply.transport else {
            panic!("{reply:?}")
        };
        assert_eq!((e.message_type, e.code), (3, 4));
        assert_eq!(
            u16::from_be_bytes([out[14 + 20 + 6], out[14 + 20 + 7]]),
            1400
        );
        assert_eq!(e.embedded, parsed.key);
    }

    #[test]
    fn small_offender_is_quoted_whole_and_vlan_kept() {
        let mut spec = FrameSpec::new(
            [192, 168, 1, 10],
            [198, 51, 100, 7],
            L4Spec::Tcp {
                ports: (1, 2),
                seq: 3,
                ack: 4,
                flags: 2,
                payload: b"",
            },
        );
        spec.vlan = Some(7);
        let offending = build_frame(&spec);
        let parsed = parse_frame(&offending).unwrap();
        let mut out = [0u8; 200];
        let len = build_unreachable(
            &mut out,
            &offending,
            &parsed,
            ROUTER,
            UnreachableKind::AdministrativelyProhibited,
        )
        .unwrap();
        assert_eq!(len, 18 + 20 + 8 + 40);
        let reply = parse_frame(&out[..len]).unwrap();
        assert_eq!(reply.l3_offset, 18);
        assert!(checksums_valid(&out[..len], &reply));
        assert_eq!(&out[18 + 28..len], &offending[18..]);
    }

    #[test]
    fn net_unreachable_is_type_3_code_0_about_the_offender() {
        let offending = build_frame(&FrameSpec::new(
            [192, 168, 1, 10],
            [198, 51, 100, 7],
            L4Spec::Echo {
                request: true,
                id: 0x1234,
                seq: 1,
            },
        ));
        let parsed = parse_frame(&offending).unwrap();
        let mut out = [0u8; 200];
        let len = build_unreachable(
            &mut out,
            &offending,
            &parsed,
            ROUTER,
            UnreachableKind::NetUnreachable,
        )
        .unwrap();
        // Ethernet + IP + ICMP header + the whole 36-byte echo request (8 bytes of data) quoted.
        assert_eq!(len, 14 + 20 + 8 + 36);
        let reply = parse_frame(&out[..len]).unwrap();
        assert!(checksums_valid(&out[..len], &reply));
        assert_eq!(reply.key.source, ROUTER.address);
        assert_eq!(reply.key.destination, Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(&out[0..6], &offending[6..12], "back to the sender's MAC");
        assert_eq!(&out[6..12], &ROUTER.mac);
        let Transport::IcmpError(e) = reply.transport else {
            panic!("{reply:?}")
        };
        assert_eq!((e.message_type, e.code), (3, 0));
        assert_eq!(
            &out[14 + 20 + 4..14 + 20 + 8],
            &[0; 4],
            "unused word is zero"
        );
        assert_eq!(e.embedded, parsed.key);
        assert_eq!(&out[14 + 28..len], &offending[14..]);
    }

    #[test]
    fn never_about_an_icmp_error_nor_a_broadcast_and_never_overflows() {
        let quoted = build_frame(&FrameSpec::new(
            [198, 51, 100, 7],
            [192, 168, 1, 10],
            L4Spec::Udp {
                ports: (1, 2),
                payload: b"",
            },
        ));
        let error = build_frame(&FrameSpec::new(
            [192, 168, 1, 10],
            [198, 51, 100, 7],
            L4Spec::IcmpError {
                message_type: 3,
                code: 3,
                rest: [0; 4],
                quoted: &quoted[14..],
            },
        ));
        let mut out = [0u8; 600];
        assert_eq!(
            build_unreachable(
                &mut out,
                &error,
                &parse_frame(&error).unwrap(),
                ROUTER,
                UnreachableKind::HostUnreachable
            ),
            Err(BuildError::AboutIcmpError)
        );
        let mut broadcast = FrameSpec::new(
            [192, 168, 1, 10],
            [198, 51, 100, 7],
            L4Spec::Udp {
                ports: (1, 2),
                payload: b"",
            },
        );
        broadcast.destination_mac = [0xFF; 6];
        let frame = build_frame(&broadcast);
        assert_eq!(
            build_unreachable(
                &mut out,
                &frame,
                &parse_frame(&frame).unwrap(),
                ROUTER,
                UnreachableKind::HostUnreachable
            ),
            Err(BuildError::LinkLayerBroadcast)
        );
        let frame = build_frame(&FrameSpec::new(
            [192, 168, 1, 10],
            [198, 51, 100, 7],
            L4Spec::Udp {
                ports: (1, 2),
                payload: b"",
            },
        ));
        assert_eq!(
            build_unreachable(
                &mut out[..50],
                &frame,
                &parse_frame(&frame).unwrap(),
                ROUTER,
                UnreachableKind::HostUnreachable
            ),
            Err(BuildError::BufferTooSmall)
        );
    }

    #[test]
    fn tcp_rst_is_valid_and_exact() {
        let key = FlowKey {
            protocol: IpProtocol::Tcp,
            source: Ipv4Addr::new(198, 51, 100, 7),
            destination: Ipv4Addr::new(192, 168, 1, 10),
            source_port: 443,
            destination_port: 40000,
        };
        let mut out = [0u8; 64];
        let macs = MacPair {
            source: ROUTER.mac,
            destination: [2, 0, 0, 0, 0, 1],
        };
        let len = build_tcp_rst(&mut out, macs, None, key, 0x1000_0000, Some(77)).unwrap();
        assert_eq!(len, 54);
        let parsed = parse_frame(&out[..len]).unwrap();
        assert_eq!(parsed.key, key);
        assert!(checksums_valid(&out[..len], &parsed));
        let Transport::Tcp(tcp) = parsed.transport else {
            panic!()
        };
        assert!(tcp.flags.rst() && tcp.flags.ack());
        assert_eq!((tcp.seq, tcp.ack), (0x1000_0000, 77));
        assert_eq!(
            build_tcp_rst(
                &mut out,
                macs,
                None,
                FlowKey {
                    protocol: IpProtocol::Udp,
                    ..key
                },
                0,
                None
            ),
            Err(BuildError::NotTcp)
        );
        assert_eq!(
            build_tcp_rst(&mut out[..40], macs, None, key, 0, None),
            Err(BuildError::BufferTooSmall)
        );
    }
}
