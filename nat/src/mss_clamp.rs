//! TCP MSS clamping: lowering the maximum segment size a SYN or SYN-ACK announces to what a path with a
//! smaller MTU carries (the `TCPMSS --clamp-mss-to-pmtu` of iptables, done in place).
//!
//! Invariants of [`clamp_mss`]:
//! - only a TCP segment with SYN set is touched, and only its MSS option (kind 2, length 4) when it
//!   announces more than the limit; every other byte stays as it was;
//! - the TCP checksum is updated incrementally (RFC 1624 eqn. 3), so an invalid one stays exactly as
//!   invalid; an MSS option at an odd offset is accounted for byte-swapped, as the one's complement sum
//!   sees it;
//! - options are walked within the header only: a malformed option list (a length below 2 or past the
//!   header) ends the walk, leaving the segment unchanged; no option is added (a SYN without MSS
//!   announces 536 by default, RFC 9293 §3.7.1, which is below any limit a link needs);
//! - never allocates or panics: all offsets come from a `ParsedFrame` of this frame and are bounds
//!   checked again.

use crate::checksum::ChecksumDelta;
use crate::parse::{ParsedFrame, Transport};
use crate::rewrite::update_checksum;
use crate::wire::{read_u16, tcp, write_u16};

/// TCP option kind: end of the option list.
const OPTION_END: u8 = 0;
/// TCP option kind: no operation (one byte).
const OPTION_NOP: u8 = 1;
/// TCP option kind: maximum segment size (RFC 9293 §3.2).
const OPTION_MSS: u8 = 2;
/// The MSS option's length (kind, length, 16-bit value).
const OPTION_MSS_LEN: usize = 4;

/// IPv4 and TCP headers without options: what an MTU holds beyond a segment's payload.
pub const IPV4_TCP_HEADERS: u16 = 40;

/// The MSS that fills, but does not exceed, a packet of `mtu` bytes (RFC 879: MTU − 40); at least 1.
#[must_use]
pub const fn mss_for_mtu(mtu: u16) -> u16 {
    if mtu > IPV4_TCP_HEADERS {
        mtu - IPV4_TCP_HEADERS
    } else {
        1
    }
}

/// What [`clamp_mss`] did to a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MssClamp {
    /// Not a SYN, no MSS option, or one at or below the limit: nothing changed.
    Unchanged,
    /// The MSS option announced `from` and now announces the limit.
    Lowered {
        /// The MSS the segment announced.
        from: u16,
    },
}

/// Lowers the MSS option of a TCP SYN (or SYN-ACK) in `frame` to `limit` when it announces more, and
/// updates the TCP checksum. `parsed` must describe `frame` (else nothing changes).
pub fn clamp_mss(frame: &mut [u8], parsed: &ParsedFrame, limit: u16) -> MssClamp {
    let Transport::Tcp(segment) = parsed.transport else {
        return MssClamp::Unchanged;
    };
    if !segment.flags.syn() {
        return MssClamp::Unchanged;
    }
    let l4 = usize::from(parsed.l4_offset);
    let end = parsed.ip_end().min(frame.len());
    if l4 + tcp::MIN_HEADER_LEN > end {
        return MssClamp::Unchanged;
    }
    let header_end = l4 + usize::from(frame[l4 + 12] >> 4) * 4;
    if header_end > end {
        return MssClamp::Unchanged;
    }
    let Some(at) = find_mss_option(&frame[..header_end], l4 + tcp::MIN_HEADER_LEN) else {
        return MssClamp::Unchanged;
    };
    let value_at = at + 2;
    let from = read_u16(frame, value_at);
    if from <= limit {
        return MssClamp::Unchanged;
    }
    write_u16(frame, value_at, limit);
    // The checksum sums 16-bit words from the TCP header's start: a value at an odd offset from it
    // lands byte-swapped in the sum.
    let delta = if (value_at - l4) % 2 == 0 {
        ChecksumDelta::NONE.with_u16(from, limit)
    } else {
        ChecksumDelta::NONE.with_u16(from.swap_bytes(), limit.swap_bytes())
    };
    update_checksum(frame, l4 + tcp::CHECKSUM_OFFSET, delta);
    MssClamp::Lowered { from }
}

/// The offset of the first well-formed MSS option in `header[start..]` (the TCP options), if any.
fn find_mss_option(header: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    while at < header.len() {
        match header[at] {
            OPTION_END => return None,
            OPTION_NOP => at += 1,
            kind => {
                let len = usize::from(*header.get(at + 1)?);
                if len < 2 || at + len > header.len() {
                    return None;
                }
                if kind == OPTION_MSS {
                    return (len == OPTION_MSS_LEN).then_some(at);
                }
                at += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_builder::{FrameSpec, L4Spec, build_frame};
    use crate::parse::parse_frame;
    use crate::verify::checksum_report;
    use proptest::prelude::*;

    /// A TCP segment with `options` (padded with end-of-list to a multiple of 4) and `flags`.
    fn segment(flags: u8, options: &[u8]) -> Vec<u8> {
        let mut frame = build_frame(&FrameSpec::new(
            [192, 168, 1, 10],
            [198, 51, 100, 7],
            L4Spec::Tcp {
                ports: (40000, 443),
                seq: 1,
                ack: 0,
                flags,
                payload: b"",
            },
        ));
        let mut padded = options.to_vec();
        padded.resize(options.len().div_ceil(4) * 4, OPTION_END);
        let l4 = 34;
        frame.splice(l4 + 20..l4 + 20, padded.iter().copied());
        frame[l4 + 12] = u8::try_from((20 + padded.len()) / 4).unwrap() << 4;
        let total = u16::try_from(frame.len() - 14).unwrap();
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        refill_checksums(&mut frame);
        frame
    }

    fn refill_checksums(frame: &mut [u8]) {
        let mut ip = crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut frame[14..]);
        ip.fill_checksum();
        frame[34 + 16..34 + 18].fill(0);
        let sum = crate::checksum::ipv4_pseudo_header_sum(
            frame[26..30].try_into().unwrap(),
            frame[30..34].try_into().unwrap(),
            6,
            u16::try_from(frame.len() - 34).unwrap(),
        );
        let checksum = crate::checksum::internet_checksum(&frame[34..], sum);
        frame[34 + 16..34 + 18].copy_from_slice(&checksum.to_be_bytes());
    }

    fn clamp(frame: &mut [u8], limit: u16) -> MssClamp {
        let parsed = parse_frame(frame).unwrap();
        clamp_mss(frame, &parsed, limit)
    }

    const MSS_1460: [u8; 4] = [2, 4, 0x05, 0xB4];

    #[test]
    fn lowers_the_mss_of_a_syn_and_keeps_the_checksum_valid() {
        let mut frame = segment(0x02, &MSS_1460);
        assert_eq!(clamp(&mut frame, 1452), MssClamp::Lowered { from: 1460 });
        assert_eq!(&frame[54..58], &[2, 4, 0x05, 0xAC]);
        assert!(checksum_report(&frame, &parse_frame(&frame).unwrap()).all_valid());
    }

    #[test]
    fn lowers_the_mss_of_a_syn_ack_too() {
        let mut frame = segment(0x12, &MSS_1460);
        assert_eq!(clamp(&mut frame, 1400), MssClamp::Lowered { from: 1460 });
        assert!(checksum_report(&frame, &parse_frame(&frame).unwrap()).all_valid());
    }

    #[test]
    fn leaves_non_syn_small_mss_and_absent_option_alone() {
        for (flags, options, limit) in [
            (0x10, &MSS_1460[..], 1000),
            (0x02, &MSS_1460[..], 1460),
            (0x02, &[1, 1, 3, 3, 7][..], 1000),
            (0x02, &[][..], 1000),
        ] {
            let original = segment(flags, options);
            let mut frame = original.clone();
            assert_eq!(clamp(&mut frame, limit), MssClamp::Unchanged, "{options:?}");
            assert_eq!(frame, original);
        }
    }

    #[test]
    fn malformed_option_lists_are_left_alone() {
        // A zero length, a length past the header, an MSS option of the wrong length.
        for options in [
            &[8, 0, 2, 4, 5, 0xB4][..],
            &[8, 40][..],
            &[2, 3, 5, 0xB4][..],
        ] {
            let original = segment(0x02, options);
            let mut frame = original.clone();
            assert_eq!(clamp(&mut frame, 536), MssClamp::Unchanged, "{options:?}");
            assert_eq!(frame, original);
        }
    }

    #[test]
    fn an_mss_option_at_an_odd_offset_is_summed_byte_swapped() {
        let mut frame = segment(0x02, &[1, 2, 4, 0x23, 0x45]);
        assert_eq!(
            clamp(&mut frame, 0x1234),
            MssClamp::Lowered { from: 0x2345 }
        );
        assert_eq!(&frame[55..59], &[2, 4, 0x12, 0x34]);
        assert!(checksum_report(&frame, &parse_frame(&frame).unwrap()).all_valid());
    }

    #[test]
    fn an_invalid_checksum_stays_exactly_as_invalid() {
        let mut frame = segment(0x02, &MSS_1460);
        frame[34 + 16] ^= 0x5A;
        let mut expected = frame.clone();
        expected[56..58].copy_from_slice(&1400u16.to_be_bytes());
        refill_checksums(&mut expected);
        expected[34 + 16] ^= 0x5A;
        clamp(&mut frame, 1400);
        assert_eq!(frame, expected);
    }

    #[test]
    fn mss_for_mtu_leaves_room_for_both_headers() {
        assert_eq!(mss_for_mtu(1500), 1460);
        assert_eq!(mss_for_mtu(1492), 1452);
        assert_eq!(mss_for_mtu(40), 1);
    }

    proptest! {
        /// Whatever the options before it and the values, a clamped segment equals the same segment
        /// built with the lower MSS and full checksums.
        #[test]
        fn equals_a_full_recomputation(
            nops in 0usize..5,
            before in proptest::collection::vec(3u8..=30, 0..2),
            from in any::<u16>(),
            limit in any::<u16>(),
        ) {
            let mut options = vec![OPTION_NOP; nops];
            for kind in &before {
                options.extend([*kind, 4, 0xAB, 0xCD]);
            }
            let at = 54 + options.len();
            options.extend([OPTION_MSS, 4]);
            options.extend(from.to_be_bytes());
            let mut frame = segment(0x02, &options);
            let mut expected = frame.clone();
            let outcome = clamp(&mut frame, limit);
            if from > limit {
                prop_assert_eq!(outcome, MssClamp::Lowered { from });
                expected[at + 2..at + 4].copy_from_slice(&limit.to_be_bytes());
                refill_checksums(&mut expected);
            } else {
                prop_assert_eq!(outcome, MssClamp::Unchanged);
            }
            prop_assert_eq!(frame, expected);
        }
    }
}
