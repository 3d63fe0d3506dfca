//! Translation of ICMP errors that belong to a translated flow (RFC 5508 §4; RFC 5382 REQ-9 for TCP).
//!
//! An ICMP error travelling in direction D quotes a packet of the opposite direction, so given the flow's
//! rewrite for D (`from` → `to`), [`translate_icmp_error`]:
//! - checks that the quoted tuple is `from.reversed()` (the error belongs to that flow);
//! - rewrites the outer destination to `to.destination`, and the outer source to `to.source` when the
//!   rewrite translates sources (SNAT or hairpin: an error from a LAN host or a LAN router must never
//!   leave with a private source); an error from a router on the uplink side keeps its source;
//! - rewrites the quoted packet to `to.reversed()`: its addresses (RFC 5508 REQ-4 requires the embedded
//!   IP header be translated), its IP header checksum, its ports or echo id, and its transport checksum
//!   (UDP and ICMP echo: always inside the 8 quoted bytes, a zero UDP checksum stays zero; TCP: when the
//!   error quotes enough of the segment to contain it);
//! - updates the outer IP checksum (addresses, TTL −1) and the ICMP checksum, which covers every quoted
//!   byte it changed (RFC 5508 REQ-5) — all incrementally, so an invalid checksum stays invalid;
//! - sets the Ethernet addresses.
//!
//! It never creates an ICMP error (RFC 1812 §4.3.2.7); ICMP errors about ICMP errors never parse. On any
//! error the frame is unchanged.

use crate::checksum::ChecksumDelta;
use crate::flow_key::{FlowKey, IpProtocol};
use crate::parse::{ParsedFrame, Transport};
use crate::rewrite::{
    MacPair, Rewrite, decrement_ttl, set_macs, ttl_decrement_delta, update_checksum,
    update_udp_checksum, write_addresses,
};
use crate::translate_error::TranslateError;
use crate::wire::{icmpv4, ipv4, read_u16, read_u32, tcp, udp, write_u16};
use std::net::Ipv4Addr;

/// Translates an ICMP error of the flow whose rewrite (for the direction the error travels) is `rewrite`.
///
/// # Errors
/// [`TranslateError::NotAnIcmpError`], [`TranslateError::EmbeddedKeyMismatch`] (the quoted packet belongs
/// to another flow), [`TranslateError::KeyMismatch`] (outer destination is not the flow's),
/// [`TranslateError::TtlExceeded`], [`TranslateError::FrameMismatch`]. On error the frame is unchanged.
pub fn translate_icmp_error(
    frame: &mut [u8],
    parsed: &ParsedFrame,
    rewrite: &Rewrite,
    macs: MacPair,
) -> Result<(), TranslateError> {
    let Transport::IcmpError(error) = parsed.transport else {
        return Err(TranslateError::NotAnIcmpError);
    };
    let (from, to) = (rewrite.from(), rewrite.to());
    let l3 = usize::from(parsed.l3_offset);
    let l4 = usize::from(parsed.l4_offset);
    let el3 = usize::from(error.embedded_l3_offset);
    let el4 = usize::from(error.embedded_l4_offset);
    let end = parsed.ip_end();
    if frame.len() < end
        || el4 + 8 > end
        || el3 + ipv4::MIN_HEADER_LEN > el4
        || l4 + icmpv4::HEADER_LEN > el3
    {
        return Err(TranslateError::FrameMismatch);
    }
    if error.embedded != from.reversed() {
        return Err(TranslateError::EmbeddedKeyMismatch);
    }
    if parsed.key.destination != from.destination {
        return Err(TranslateError::KeyMismatch);
    }
    decrement_ttl(frame, l3)?;

    // Outer header.
    let outer_source = parsed.key.source;
    let new_outer_source = if from.source == to.source {
        outer_source
    } else {
        to.source
    };
    write_addresses(frame, l3, new_outer_source, to.destination);
    let outer_delta = ChecksumDelta::NONE
        .with_u32(outer_source.to_bits(), new_outer_source.to_bits())
        .with_u32(from.destination.to_bits(), to.destination.to_bits())
        .combine(ttl_decrement_delta());
    update_checksum(frame, l3 + ipv4::CHECKSUM_OFFSET, outer_delta);

    // Quoted packet: from.reversed() becomes to.reversed(). Every changed word is at an even offset from
    // the ICMP header (quoted header at +8, its length a multiple of 4), so each also feeds the ICMP delta.
    let quoted_to = to.reversed();
    let mut icmp_delta = ChecksumDelta::NONE;
    let embedded_ip_delta = replace_u32(
        frame,
        el3 + ipv4::SOURCE_OFFSET,
        quoted_to.source,
        &mut icmp_delta,
    )
    .combine(replace_u32(
        frame,
        el3 + ipv4::DESTINATION_OFFSET,
        quoted_to.destination,
        &mut icmp_delta,
    ));
    replace_checksum(frame, el3 + ipv4::CHECKSUM_OFFSET, &mut icmp_delta, |old| {
        embedded_ip_delta.apply(old)
    });
    match quoted_to.protocol {
        IpProtocol::Tcp | IpProtocol::Udp => {
            let ports = replace_u16(frame, el4, quoted_to.source_port, &mut icmp_delta).combine(
                replace_u16(frame, el4 + 2, quoted_to.destination_port, &mut icmp_delta),
            );
            // The UDP checksum is always among the 8 quoted bytes; the TCP one only when the error
            // quotes at least 18 bytes of the segment (RFC 1812 §4.3.2.3 routers usually do).
            let transport_delta = embedded_ip_delta.combine(ports);
            if quoted_to.protocol == IpProtocol::Udp {
                let at = el4 + udp::CHECKSUM_OFFSET;
                let before = read_u16(frame, at);
                update_udp_checksum(frame, at, transport_delta);
                icmp_delta = icmp_delta.with_u16(before, read_u16(frame, at));
            } else if el4 + tcp::CHECKSUM_OFFSET + 2 <= end {
                replace_checksum(frame, el4 + tcp::CHECKSUM_OFFSET, &mut icmp_delta, |old| {
                    transport_delta.apply(old)
                });
            }
        }
        IpProtocol::Icmp => {
            let id = replace_u16(
                frame,
                el4 + icmpv4::ECHO_ID_OFFSET,
                quoted_to.source_port,
                &mut icmp_delta,
            );
            replace_checksum(
                frame,
                el4 + icmpv4::CHECKSUM_OFFSET,
                &mut icmp_delta,
                |old| id.apply(old),
            );
        }
    }
    update_checksum(frame, l4 + icmpv4::CHECKSUM_OFFSET, icmp_delta);
    set_macs(frame, macs);
    Ok(())
}

/// Writes an address, adds its change to `outer`, and returns the change alone.
fn replace_u32(
    frame: &mut [u8],
    at: usize,
    new: Ipv4Addr,
    outer: &mut ChecksumDelta,
) -> ChecksumDelta {
    let old = read_u32(frame, at);
    frame[at..at + 4].copy_from_slice(&new.octets());
    let change = ChecksumDelta::NONE.with_u32(old, new.to_bits());
    *outer = outer.combine(change);
    change
}

/// Writes a 16-bit field, adds its change to `outer`, and returns the change alone.
fn replace_u16(frame: &mut [u8], at: usize, new: u16, outer: &mut ChecksumDelta) -> ChecksumDelta {
    let old = read_u16(frame, at);
    write_u16(frame, at, new);
    let change = ChecksumDelta::NONE.with_u16(old, new);
    *outer = outer.combine(change);
    change
}

/// Updates a checksum field with `update` and adds the field's own change to `outer`.
fn replace_checksum(
    frame: &mut [u8],
    at: usize,
    outer: &mut ChecksumDelta,
    update: impl Fn(u16) -> u16,
) {
    let old = read_u16(frame, at);
    replace_u16(frame, at, update(old), outer);
}

/// The flow key an ICMP error must be looked up with: the quoted packet's tuple reversed (the direction
/// the error travels). `None` when `parsed` is not an ICMP error.
#[must_use]
pub const fn icmp_error_flow_key(parsed: &ParsedFrame) -> Option<FlowKey> {
    match parsed.transport {
        Transport::IcmpError(error) => Some(error.embedded.reversed()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_builder::{FrameSpec, L4Spec, build_frame};
    use crate::parse::parse_frame;
    use crate::verify::checksum_report;

    const MACS: MacPair = MacPair {
        source: [0xAA; 6],
        destination: [0xBB; 6],
    };
    const LAN: [u8; 4] = [192, 168, 1, 10];
    const REMOTE: [u8; 4] = [198, 51, 100, 7];
    const EXTERNAL: [u8; 4] = [203, 0, 113, 2];
    const HOP: [u8; 4] = [203, 0, 113, 254];

    fn error_frame(source: [u8; 4], destination: [u8; 4], quoted: &[u8]) -> Vec<u8> {
        build_frame(&FrameSpec::new(
            source,
            destination,
            L4Spec::IcmpError {
                message_type: 11,
                code: 0,
                rest: [0; 4],
                quoted,
            },
        ))
    }

    fn outbound(l4: L4Spec<'_>) -> (Vec<u8>, Rewrite) {
        let lan_frame = build_frame(&FrameSpec::new(LAN, REMOTE, l4));
        let key = parse_frame(&lan_frame).unwrap().key;
        let mut to = FlowKey {
            source: Ipv4Addr::from(EXTERNAL),
            source_port: 62000,
            ..key
        };
        if key.protocol == IpProtocol::Icmp {
            to.destination_port = 62000;
        }
        (lan_frame, Rewrite::new(key, to).unwrap())
    }

    /// An inbound Time Exceeded from a router beyond the uplink, about a translated packet, reaches the
    /// LAN host quoting the packet exactly as the host sent it (addresses, ports/id, checksums).
    #[test]
    fn inbound_error_quotes_the_original_packet() {
        for l4 in [
            L4Spec::Udp {
                ports: (5000, 53),
                payload: b"query",
            },
            L4Spec::UdpWithoutChecksum {
                ports: (5000, 53),
                payload: b"query",
            },
            L4Spec::Tcp {
                ports: (40000, 443),
                seq: 1,
                ack: 0,
                flags: 2,
                payload: b"",
            },
            L4Spec::Echo {
                request: true,
                id: 99,
                seq: 1,
            },
        ] {
            let (lan_frame, snat) = outbound(l4);
            let mut wan_frame = lan_frame.clone();
            snat.apply(&mut wan_frame, &parse_frame(&lan_frame).unwrap(), MACS)
                .unwrap();
            let mut error = error_frame(HOP, EXTERNAL, &wan_frame[14..]);
            let parsed = parse_frame(&error).unwrap();
            assert_eq!(icmp_error_flow_key(&parsed), Some(snat.to().reversed()));
            translate_icmp_error(&mut error, &parsed, &snat.inverse(), MACS).unwrap();
            let mut quoted = lan_frame[14..].to_vec();
            quoted[8] -= 1; // the quoted packet had passed the NAT (TTL −1)
            crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut quoted[..]).fill_checksum();
            let mut expected = FrameSpec::new(
                HOP,
                LAN,
                L4Spec::IcmpError {
                    message_type: 11,
                    code: 0,
                    rest: [0; 4],
                    quoted: &quoted,
                },
            );
            expected.ttl = 63;
            expected.source_mac = MACS.source;
            expected.destination_mac = MACS.destination;
            assert_eq!(error, build_frame(&expected), "{l4:?}");
            let report = checksum_report(&error, &parse_frame(&error).unwrap());
            assert!(report.all_valid(), "{report:?}");
        }
    }

    /// An outbound error (a LAN host's port unreachable about an inbound UDP datagram) leaves with the
    /// external address outside and inside.
    #[test]
    fn outbound_error_hides_the_private_address() {
        let (_, snat) = outbound(L4Spec::Udp {
            ports: (5000, 53),
            payload: b"",
        });
        let reply = build_frame(&FrameSpec::new(
            REMOTE,
            LAN,
            L4Spec::Udp {
                ports: (53, 5000),
                payload: b"answer",
            },
        ));
        let mut error = build_frame(&FrameSpec::new(
            LAN,
            REMOTE,
            L4Spec::IcmpError {
                message_type: 3,
                code: 3,
                rest: [0; 4],
                quoted: &reply[14..],
            },
        ));
        let parsed = parse_frame(&error).unwrap();
        translate_icmp_error(&mut error, &parsed, &snat, MACS).unwrap();
        let out = parse_frame(&error).unwrap();
        assert_eq!(out.key.source, Ipv4Addr::from(EXTERNAL));
        let Transport::IcmpError(e) = out.transport else {
            panic!()
        };
        assert_eq!(e.embedded, snat.to().reversed());
        assert!(checksum_report(&error, &out).all_valid());
        assert!(
            !error.windows(4).any(|w| w == LAN),
            "private address leaked"
        );
    }

    #[test]
    fn refuses_errors_of_other_flows_and_leaves_them_untouched() {
        let (lan_frame, snat) = outbound(L4Spec::Udp {
            ports: (5000, 53),
            payload: b"",
        });
        let mut error = error_frame(HOP, EXTERNAL, &lan_frame[14..]);
        let parsed = parse_frame(&error).unwrap();
        let before = error.clone();
        assert_eq!(
            translate_icmp_error(&mut error, &parsed, &snat.inverse(), MACS),
            Err(TranslateError::EmbeddedKeyMismatch)
        );
        assert_eq!(error, before);
        let lan_parsed = parse_frame(&lan_frame).unwrap();
        let mut lan_copy = lan_frame.clone();
        assert_eq!(
            translate_icmp_error(&mut lan_copy, &lan_parsed, &snat, MACS),
            Err(TranslateError::NotAnIcmpError)
        );
    }
}
