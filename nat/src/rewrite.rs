//! A per-direction NAT rewrite, built once per flow and applied to every packet of that direction.
//!
//! [`Rewrite::new`] takes the tuple as it arrives and the tuple as it must leave, and precomputes the
//! RFC 1624 checksum terms (VPP nat44-ed style: deltas once per session). One general source+destination
//! rewrite covers:
//! - SNAT, LAN → uplink: source address/port become the mapping's (RFC 4787 REQ-1, RFC 5382 REQ-1);
//! - reverse NAT, uplink → LAN: destination address/port become the internal endpoint's;
//! - ICMP echo id translation: the id is the "port" (RFC 5508 REQ-1a); both key ports hold it;
//! - hairpinning, LAN → another LAN host's mapping: both source (to the sender's mapping) and destination
//!   (to the target's internal endpoint) change, so the target sees the sender's external address:port
//!   (RFC 4787 REQ-9, RFC 5382 REQ-8).
//!
//! Invariants of [`Rewrite::apply`]: it either returns `Ok` having rewritten addresses, ports or echo id,
//! TTL (−1), the Ethernet addresses, and every checksum incrementally, or returns an error having changed
//! nothing. It never allocates or panics. Checksums: the IPv4 header checksum and the TCP / UDP / ICMP
//! checksum are updated by precomputed deltas, so an invalid incoming L4 checksum stays exactly as invalid
//! (never repaired); a UDP checksum of 0 ("none", RFC 768) stays 0 and a computed 0 is sent as 0xFFFF;
//! an ICMP message that becomes all zero words gets 0xFFFF, the only checksum that verifies it.

use crate::checksum::{ChecksumDelta, udp_checksum_field};
use crate::flow_key::{FlowKey, IpProtocol};
use crate::parse::{ParsedFrame, Transport};
use crate::translate_error::TranslateError;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::{icmpv4, ipv4, read_u16, tcp, udp, write_u16};
use std::net::Ipv4Addr;

/// Ethernet addresses for a translated frame, taken by the datapath from its uplink snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacPair {
    /// Source MAC (the egress interface's).
    pub source: [u8; 6],
    /// Destination MAC (the next hop's).
    pub destination: [u8; 6],
}

/// Why a rewrite cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteBuildError {
    /// `from` and `to` have different protocols.
    #[error("a rewrite cannot change the protocol")]
    ProtocolChange,
    /// An ICMP query key whose two ports (the echo id) differ.
    #[error("ICMP query keys carry the echo id in both ports")]
    IcmpPortsDiffer,
}

/// A precomputed per-direction rewrite: 32 bytes, `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    from: FlowKey,
    to: FlowKey,
    /// Address changes plus the TTL decrement, for the IPv4 header checksum.
    ip_delta: ChecksumDelta,
    /// Pseudo-header address changes plus port changes (TCP/UDP), or the echo id change (ICMP).
    l4_delta: ChecksumDelta,
}

/// The TTL/protocol word loses 0x0100 when TTL is decremented.
const TTL_DECREMENT: ChecksumDelta = ChecksumDelta::NONE.with_u16(0x0100, 0);

const fn address_delta(delta: ChecksumDelta, old: Ipv4Addr, new: Ipv4Addr) -> ChecksumDelta {
    delta.with_u32(old.to_bits(), new.to_bits())
}

impl Rewrite {
    /// Builds the rewrite that turns packets carrying `from` into packets carrying `to`.
    ///
    /// # Errors
    /// [`RewriteBuildError`] when the keys' protocols differ, or an ICMP key's ports differ.
    pub const fn new(from: FlowKey, to: FlowKey) -> Result<Self, RewriteBuildError> {
        if from.protocol as u8 != to.protocol as u8 {
            return Err(RewriteBuildError::ProtocolChange);
        }
        let addresses = address_delta(
            address_delta(ChecksumDelta::NONE, from.source, to.source),
            from.destination,
            to.destination,
        );
        let l4_delta = match from.protocol {
            IpProtocol::Icmp => {
                if from.source_port != from.destination_port
                    || to.source_port != to.destination_port
                {
                    return Err(RewriteBuildError::IcmpPortsDiffer);
                }
                ChecksumDelta::NONE.with_u16(from.source_port, to.source_port)
            }
            IpProtocol::Tcp | IpProtocol::Udp => addresses
                .with_u16(from.source_port, to.source_port)
                .with_u16(from.destination_port, to.destination_port),
        };
        Ok(Self {
            from,
            to,
            ip_delta: addresses.combine(TTL_DECREMENT),
            l4_delta,
        })
    }

    /// The tuple packets carry when they arrive.
    #[must_use]
    pub const fn from(&self) -> FlowKey {
        self.from
    }

    /// The tuple packets carry when they leave.
    #[must_use]
    pub const fn to(&self) -> FlowKey {
        self.to
    }

    /// The rewrite of the opposite direction (its replies): `to.reversed()` → `from.reversed()`.
    #[must_use]
    pub const fn inverse(&self) -> Self {
        match Self::new(self.to.reversed(), self.from.reversed()) {
            Ok(rewrite) => rewrite,
            // Unreachable: `self` was valid, and reversing keeps protocols and ICMP port equality.
            Err(_) => *self,
        }
    }

    /// Applies the rewrite in place to the frame `parsed` describes, setting the Ethernet addresses.
    ///
    /// # Errors
    /// [`TranslateError::KeyMismatch`] when `parsed.key != self.from()`,
    /// [`TranslateError::TtlExceeded`] for TTL ≤ 1, [`TranslateError::FrameMismatch`] when `frame` is not
    /// the buffer `parsed` came from, [`TranslateError::IcmpErrorNeedsEmbeddedTranslation`] for ICMP errors.
    /// On error the frame is unchanged.
    pub fn apply(
        &self,
        frame: &mut [u8],
        parsed: &ParsedFrame,
        macs: MacPair,
    ) -> Result<(), TranslateError> {
        let l4_needed = match parsed.transport {
            Transport::Tcp(_) => tcp::MIN_HEADER_LEN,
            Transport::Udp { .. } => udp::HEADER_LEN,
            Transport::IcmpQuery { .. } => icmpv4::HEADER_LEN,
            Transport::IcmpError(_) => {
                return Err(TranslateError::IcmpErrorNeedsEmbeddedTranslation);
            }
        };
        let l3 = usize::from(parsed.l3_offset);
        let l4 = usize::from(parsed.l4_offset);
        if frame.len() < parsed.ip_end()
            || l4 + l4_needed > parsed.ip_end()
            || l3 + ipv4::MIN_HEADER_LEN > l4
        {
            return Err(TranslateError::FrameMismatch);
        }
        if parsed.key != self.from {
            return Err(TranslateError::KeyMismatch);
        }
        decrement_ttl(frame, l3)?;
        write_addresses(frame, l3, self.to.source, self.to.destination);
        update_checksum(frame, l3 + ipv4::CHECKSUM_OFFSET, self.ip_delta);
        match self.from.protocol {
            IpProtocol::Tcp => {
                write_ports(frame, l4, self.to);
                update_checksum(frame, l4 + tcp::CHECKSUM_OFFSET, self.l4_delta);
            }
            IpProtocol::Udp => {
                write_ports(frame, l4, self.to);
                update_udp_checksum(frame, l4 + udp::CHECKSUM_OFFSET, self.l4_delta);
            }
            IpProtocol::Icmp => {
                write_u16(frame, l4 + icmpv4::ECHO_ID_OFFSET, self.to.source_port);
                update_icmp_checksum(&mut frame[l4..parsed.ip_end()], self.l4_delta);
            }
        }
        set_macs(frame, macs);
        Ok(())
    }
}

/// Decrements the TTL at `l3` (the checksum term is part of the caller's delta).
pub(crate) fn decrement_ttl(frame: &mut [u8], l3: usize) -> Result<(), TranslateError> {
    let ttl = frame[l3 + ipv4::TTL_OFFSET];
    if ttl <= 1 {
        return Err(TranslateError::TtlExceeded);
    }
    frame[l3 + ipv4::TTL_OFFSET] = ttl - 1;
    Ok(())
}

/// The checksum term of a TTL decrement.
pub(crate) const fn ttl_decrement_delta() -> ChecksumDelta {
    TTL_DECREMENT
}

pub(crate) fn write_addresses(
    frame: &mut [u8],
    l3: usize,
    source: Ipv4Addr,
    destination: Ipv4Addr,
) {
    frame[l3 + ipv4::SOURCE_OFFSET..l3 + ipv4::SOURCE_OFFSET + 4].copy_from_slice(&source.octets());
    frame[l3 + ipv4::DESTINATION_OFFSET..l3 + ipv4::DESTINATION_OFFSET + 4]
        .copy_from_slice(&destination.octets());
}

fn write_ports(frame: &mut [u8], l4: usize, to: FlowKey) {
    write_u16(frame, l4, to.source_port);
    write_u16(frame, l4 + 2, to.destination_port);
}

pub(crate) fn update_checksum(frame: &mut [u8], at: usize, delta: ChecksumDelta) {
    let updated = delta.apply(read_u16(frame, at));
    write_u16(frame, at, updated);
}

/// UDP: a zero checksum ("none") stays zero; a computed zero goes out as 0xFFFF (RFC 768).
pub(crate) fn update_udp_checksum(frame: &mut [u8], at: usize, delta: ChecksumDelta) {
    let old = read_u16(frame, at);
    if old != 0 {
        write_u16(frame, at, udp_checksum_field(delta.apply(old)));
    }
}

/// ICMP has no pseudo-header, so a whole message can be zero words: its sum is then +0 and only
/// 0xFFFF verifies, while RFC 1624 eqn. 3 (which cannot tell +0 from −0) yields 0x0000. The check
/// runs only when the update yields 0x0000 (one packet in 65,536 at most), so the result still
/// equals a full recomputation bit for bit.
pub(crate) fn update_icmp_checksum(message: &mut [u8], delta: ChecksumDelta) {
    let at = icmpv4::CHECKSUM_OFFSET;
    let updated = delta.apply(read_u16(message, at));
    let all_zero = || {
        message
            .iter()
            .enumerate()
            .all(|(i, b)| *b == 0 || i == at || i == at + 1)
    };
    let field = if updated == 0 && all_zero() {
        0xFFFF
    } else {
        updated
    };
    write_u16(message, at, field);
}

pub(crate) fn set_macs(frame: &mut [u8], macs: MacPair) {
    let mut ethernet = EthernetFrame::new_unchecked(frame);
    ethernet.set_destination(macs.destination);
    ethernet.set_source(macs.source);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_builder::{FrameSpec, L4Spec, build_frame};
    use crate::parse::parse_frame;
    use crate::verify::checksum_report;
    use proptest::prelude::*;

    const MACS: MacPair = MacPair {
        source: [0xAA; 6],
        destination: [0xBB; 6],
    };
    const LAN: [u8; 4] = [192, 168, 1, 10];
    const REMOTE: [u8; 4] = [198, 51, 100, 7];
    const EXTERNAL: [u8; 4] = [203, 0, 113, 2];

    fn snat_of(key: FlowKey, port: u16) -> Rewrite {
        let mut to = key;
        to.source = Ipv4Addr::from(EXTERNAL);
        to.source_port = port;
        if key.protocol == IpProtocol::Icmp {
            to.destination_port = port;
        }
        Rewrite::new(key, to).unwrap()
    }

    #[test]
    fn rewrite_is_at_most_32_bytes() {
        assert!(size_of::<Rewrite>() <= 32, "{}", size_of::<Rewrite>());
    }

    #[test]
    fn snat_udp_matches_a_frame_built_with_the_new_tuple() {
        let input = build_frame(&FrameSpec::new(
            LAN,
            REMOTE,
            L4Spec::Udp {
                ports: (5000, 53),
                payload: b"query",
            },
        ));
        let parsed = parse_frame(&input).unwrap();
        let mut frame = input.clone();
        snat_of(parsed.key, 61000)
            .apply(&mut frame, &parsed, MACS)
            .unwrap();
        let mut spec = FrameSpec::new(
            EXTERNAL,
            REMOTE,
            L4Spec::Udp {
                ports: (61000, 53),
                payload: b"query",
            },
        );
        spec.ttl = 63;
        spec.source_mac = MACS.source;
        spec.destination_mac = MACS.destination;
        assert_eq!(frame, build_frame(&spec));
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let spec = FrameSpec::new(
            LAN,
            REMOTE,
            L4Spec::UdpWithoutChecksum {
                ports: (5000, 53),
                payload: b"q",
            },
        );
        let mut frame = build_frame(&spec);
        let parsed = parse_frame(&frame).unwrap();
        snat_of(parsed.key, 1234)
            .apply(&mut frame, &parsed, MACS)
            .unwrap();
        assert_eq!(&frame[34 + 6..34 + 8], &[0, 0]);
    }

    #[test]
    fn icmp_message_that_becomes_all_zero_gets_checksum_ffff() {
        // An echo reply with id 0xFFFF and nothing else set sums to −0, so 0x0000 is its valid
        // checksum; translated to id 0 the message is all zero words and only 0xFFFF verifies.
        let spec = FrameSpec::new(
            REMOTE,
            EXTERNAL,
            L4Spec::Echo {
                request: false,
                id: 0xFFFF,
                seq: 0,
            },
        );
        let mut input = build_frame(&spec);
        let l4 = 14 + 20;
        input[l4 + 8..].fill(0);
        input[l4 + 2..l4 + 4].fill(0);
        let parsed = parse_frame(&input).unwrap();
        assert!(checksum_report(&input, &parsed).l4);
        let mut to = parsed.key;
        to.destination = Ipv4Addr::from(LAN);
        (to.source_port, to.destination_port) = (0, 0);
        let mut frame = input.clone();
        Rewrite::new(parsed.key, to)
            .unwrap()
            .apply(&mut frame, &parsed, MACS)
            .unwrap();
        assert_eq!(&frame[l4 + 2..l4 + 4], &[0xFF, 0xFF]);
        assert!(checksum_report(&frame, &parse_frame(&frame).unwrap()).all_valid());
    }

    #[test]
    fn errors_leave_the_frame_untouched() {
        let mut spec = FrameSpec::new(
            LAN,
            REMOTE,
            L4Spec::Tcp {
                ports: (1, 2),
                seq: 0,
                ack: 0,
                flags: 2,
                payload: b"",
            },
        );
        spec.ttl = 1;
        let input = build_frame(&spec);
        let parsed = parse_frame(&input).unwrap();
        let mut frame = input.clone();
        assert_eq!(
            snat_of(parsed.key, 9).apply(&mut frame, &parsed, MACS),
            Err(TranslateError::TtlExceeded)
        );
        assert_eq!(frame, input);
        let other = FlowKey {
            source_port: 3,
            ..parsed.key
        };
        assert_eq!(
            snat_of(other, 9).apply(&mut frame, &parsed, MACS),
            Err(TranslateError::KeyMismatch)
        );
        assert_eq!(
            snat_of(parsed.key, 9).apply(&mut frame[..40], &parsed, MACS),
            Err(TranslateError::FrameMismatch)
        );
        assert_eq!(frame, input);
    }

    #[test]
    fn build_refuses_protocol_change_and_uneven_icmp_ports() {
        let key = FlowKey {
            protocol: IpProtocol::Icmp,
            source: Ipv4Addr::from(LAN),
            destination: Ipv4Addr::from(REMOTE),
            source_port: 1,
            destination_port: 1,
        };
        assert_eq!(
            Rewrite::new(
                key,
                FlowKey {
                    protocol: IpProtocol::Udp,
                    ..key
                }
            ),
            Err(RewriteBuildError::ProtocolChange)
        );
        assert_eq!(
            Rewrite::new(
                key,
                FlowKey {
                    source_port: 2,
                    ..key
                }
            ),
            Err(RewriteBuildError::IcmpPortsDiffer)
        );
    }

    fn l4_strategy() -> impl Strategy<Value = (u8, u16, u16, u8, Vec<u8>)> {
        (
            0u8..4,
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
    }

    proptest! {
        /// SNAT followed by the reverse NAT of the reply direction's inverse restores the packet
        /// (addresses, ports / echo id and every checksum), apart from two TTL decrements and the MACs.
        #[test]
        fn snat_then_reverse_restores_the_original(
            (kind, sport, dport, flags, payload) in l4_strategy(),
            external_port in any::<u16>(),
            ttl in 3u8..=255,
            src in any::<u32>(),
        ) {
            let lan = (Ipv4Addr::from_bits(src & 0x00FF_FFFF | 0x0A00_0000)).octets();
            let l4 = match kind {
                0 => L4Spec::Udp { ports: (sport, dport), payload: &payload },
                1 => L4Spec::UdpWithoutChecksum { ports: (sport, dport), payload: &payload },
                2 => L4Spec::Tcp { ports: (sport, dport), seq: u32::from(sport) << 7, ack: 5, flags, payload: &payload },
                _ => L4Spec::Echo { request: true, id: sport, seq: dport },
            };
            let mut spec = FrameSpec::new(lan, REMOTE, l4);
            spec.ttl = ttl;
            let original = build_frame(&spec);
            let parsed = parse_frame(&original).unwrap();
            let snat = snat_of(parsed.key, external_port);
            let mut frame = original.clone();
            snat.apply(&mut frame, &parsed, MACS).unwrap();
            let translated = parse_frame(&frame).unwrap();
            prop_assert_eq!(translated.key, snat.to());
            prop_assert!(crate::verify::checksums_valid(&frame, &translated));
            let back = snat.inverse().inverse();
            let restore = Rewrite::new(snat.to(), snat.from()).unwrap();
            prop_assert_eq!(back, snat);
            restore.apply(&mut frame, &translated, MacPair { source: spec.source_mac, destination: spec.destination_mac }).unwrap();
            spec.ttl = ttl - 2;
            prop_assert_eq!(frame, build_frame(&spec));
        }
    }
}
