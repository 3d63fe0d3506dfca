//! IPv4 fragments without reassembly: what a fragment is ([`fragmentation`]), the address-only
//! view of a later fragment ([`LaterFragment`]) and its translation ([`FragmentRewrite`]).
//!
//! The first fragment carries the transport header: it is parsed and translated like a whole
//! packet (its TCP/UDP/ICMP checksum covers the whole datagram, and the incremental update of
//! RFC 1624 for the address and port change is exact whatever the rest holds). A later fragment
//! carries only payload bytes: it follows the translation its first fragment's flow chose, which
//! changes its addresses, TTL and IPv4 header checksum only.
//!
//! Invariants:
//! - a fragment whose offset plus payload passes 65,535 bytes, a fragment with MF set whose payload
//!   is not a multiple of 8 bytes, and a first fragment with fewer than 8 payload bytes are refused,
//!   each under its own [`ParseError`];
//! - TCP fragments (both kinds) are refused (`Ipv4FragmentUnsupported`): TCP sets DF and sizes its
//!   segments by MSS, and a TCP first fragment would hide its payload from the state tracker;
//! - a [`LaterFragment`] holds offsets inside the frame it came from (`ip_end() <= frame.len()`);
//! - [`FragmentRewrite::apply`] writes only the Ethernet addresses, the TTL, the two IPv4
//!   addresses and the IPv4 header checksum (incrementally: exact for a header that verified).

use std::net::Ipv4Addr;

use crate::checksum::ChecksumDelta;
use crate::flow_key::IpProtocol;
use crate::fragment_tracker::DatagramId;
use crate::parse_error::ParseError;
use crate::rewrite::{
    MacPair, decrement_ttl, set_macs, ttl_decrement_delta, update_checksum, write_addresses,
};
use crate::translate_error::TranslateError;
use crate::wire::ipv4::{self, Ipv4Packet};

/// The largest IPv4 datagram (RFC 791: the total length is 16 bits).
const MAX_DATAGRAM: usize = 65_535;

/// What part of a datagram an IPv4 packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragmentation {
    /// Not fragmented (MF clear, offset 0).
    Whole,
    /// First fragment (MF set, offset 0): carries the transport header.
    First,
    /// A later fragment (offset > 0): payload only.
    Later,
}

/// What part of its datagram `ip` (already structurally valid) is, or why a fragment is refused.
///
/// # Errors
/// [`ParseError::Ipv4FragmentBeyondMaximum`], [`ParseError::Ipv4FragmentMisaligned`],
/// [`ParseError::Ipv4FirstFragmentTooShort`], [`ParseError::Ipv4FragmentUnsupported`] (TCP).
pub fn fragmentation<T: AsRef<[u8]>>(
    ip: &Ipv4Packet<T>,
    protocol: IpProtocol,
) -> Result<Fragmentation, ParseError> {
    let offset = usize::from(ip.fragment_offset()) * 8;
    let more = ip.more_fragments();
    if offset == 0 && !more {
        return Ok(Fragmentation::Whole);
    }
    if protocol == IpProtocol::Tcp {
        return Err(ParseError::Ipv4FragmentUnsupported);
    }
    let payload = ip.payload().len();
    if offset + payload > MAX_DATAGRAM - ip.header_len() {
        return Err(ParseError::Ipv4FragmentBeyondMaximum);
    }
    if more && !payload.is_multiple_of(8) {
        return Err(ParseError::Ipv4FragmentMisaligned);
    }
    if offset == 0 {
        if payload < 8 {
            return Err(ParseError::Ipv4FirstFragmentTooShort);
        }
        return Ok(Fragmentation::First);
    }
    Ok(Fragmentation::Later)
}

/// The address-only view of a later fragment. Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaterFragment {
    /// Offset of the IPv4 header.
    pub l3_offset: u16,
    /// The IPv4 total length of this fragment.
    pub ip_total_len: u16,
    /// The datagram it belongs to.
    pub datagram: DatagramId,
    /// The IPv4 TTL.
    pub ttl: u8,
}

impl LaterFragment {
    /// The view of a structurally valid later fragment whose header starts at `l3_offset`.
    #[must_use]
    pub fn of<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>, l3_offset: usize) -> Self {
        Self {
            l3_offset: u16::try_from(l3_offset).unwrap_or(u16::MAX),
            ip_total_len: ip.total_len(),
            datagram: DatagramId::of(ip),
            ttl: ip.ttl(),
        }
    }

    /// Offset one past the last byte of the fragment.
    #[must_use]
    pub const fn ip_end(&self) -> usize {
        self.l3_offset as usize + self.ip_total_len as usize
    }
}

/// How the later fragments of one datagram are translated: the addresses its first fragment was
/// given. 12 bytes, `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentRewrite {
    from_source: Ipv4Addr,
    from_destination: Ipv4Addr,
    to_source: Ipv4Addr,
    to_destination: Ipv4Addr,
    ip_delta: ChecksumDelta,
}

impl FragmentRewrite {
    /// The rewrite of fragments from `from` (source, destination) to `to`.
    #[must_use]
    pub const fn new(from: (Ipv4Addr, Ipv4Addr), to: (Ipv4Addr, Ipv4Addr)) -> Self {
        let ip_delta = ttl_decrement_delta()
            .with_u32(from.0.to_bits(), to.0.to_bits())
            .with_u32(from.1.to_bits(), to.1.to_bits());
        Self {
            from_source: from.0,
            from_destination: from.1,
            to_source: to.0,
            to_destination: to.1,
            ip_delta,
        }
    }

    /// The (source, destination) fragments carry when they leave.
    #[must_use]
    pub const fn to(&self) -> (Ipv4Addr, Ipv4Addr) {
        (self.to_source, self.to_destination)
    }

    /// Translates the later fragment `view` describes in place, setting the Ethernet addresses.
    ///
    /// # Errors
    /// [`TranslateError::KeyMismatch`] when the fragment's addresses are not the ones this rewrite
    /// is for, [`TranslateError::TtlExceeded`] for TTL ≤ 1, [`TranslateError::FrameMismatch`] when
    /// `frame` is not the buffer `view` came from.
    pub fn apply(
        &self,
        frame: &mut [u8],
        view: &LaterFragment,
        macs: MacPair,
    ) -> Result<(), TranslateError> {
        let l3 = usize::from(view.l3_offset);
        if frame.len() < view.ip_end() || l3 + ipv4::MIN_HEADER_LEN > view.ip_end() {
            return Err(TranslateError::FrameMismatch);
        }
        if view.datagram.source != self.from_source
            || view.datagram.destination != self.from_destination
        {
            return Err(TranslateError::KeyMismatch);
        }
        decrement_ttl(frame, l3)?;
        write_addresses(frame, l3, self.to_source, self.to_destination);
        update_checksum(frame, l3 + ipv4::CHECKSUM_OFFSET, self.ip_delta);
        set_macs(frame, macs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_builder::{FrameSpec, L4Spec, build_frame};
    use crate::parse::{Classified, classify_frame};

    const MACS: MacPair = MacPair {
        source: [2, 0, 0, 0, 0, 1],
        destination: [2, 0, 0, 0, 0, 2],
    };

    /// A UDP frame cut at IP payload `range` as fragment `offset` (bytes) with MF `more`.
    pub fn fragment_of(whole: &[u8], range: std::ops::Range<usize>, more: bool) -> Vec<u8> {
        let mut frame = whole[..34].to_vec();
        frame.extend_from_slice(&whole[34 + range.start..34 + range.end]);
        let total = u16::try_from(20 + range.len()).unwrap();
        let flags = u16::try_from(range.start / 8).unwrap() | if more { 0x2000 } else { 0 };
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame[20..22].copy_from_slice(&flags.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
        frame
    }

    fn datagram(payload_len: usize) -> Vec<u8> {
        let payload = vec![0x5A; payload_len];
        let mut spec = FrameSpec::new(
            [10, 0, 0, 2],
            [198, 51, 100, 7],
            L4Spec::Udp {
                ports: (5000, 7),
                payload: &payload,
            },
        );
        spec.dont_fragment = false;
        build_frame(&spec)
    }

    #[test]
    fn first_fragment_parses_with_its_ident_and_later_ones_as_addresses() {
        let whole = datagram(100);
        let first = fragment_of(&whole, 0..48, true);
        let Classified::Packet(p) = classify_frame(&first).unwrap() else {
            panic!("a first fragment carries ports")
        };
        let ident = Ipv4Packet::new_unchecked(&whole[14..]).ident();
        assert_eq!(p.first_fragment_ident, Some(ident));
        assert_eq!((p.key.source_port, p.key.destination_port), (5000, 7));
        let later = fragment_of(&whole, 48..108, false);
        let Classified::LaterFragment(f) = classify_frame(&later).unwrap() else {
            panic!("a later fragment has no ports")
        };
        assert_eq!(f.datagram.id, ident);
        assert_eq!(f.ip_end(), later.len());
        assert_eq!(
            crate::parse::parse_frame(&later),
            Err(ParseError::Ipv4NonFirstFragment)
        );
    }

    #[test]
    fn malformed_fragments_have_their_own_reasons() {
        let whole = datagram(100);
        assert_eq!(
            classify_frame(&fragment_of(&whole, 0..44, true)),
            Err(ParseError::Ipv4FragmentMisaligned)
        );
        let mut beyond = fragment_of(&whole, 48..108, false);
        beyond[20..22].copy_from_slice(&0x1FFFu16.to_be_bytes());
        Ipv4Packet::new_unchecked(&mut beyond[14..]).fill_checksum();
        assert_eq!(
            classify_frame(&beyond),
            Err(ParseError::Ipv4FragmentBeyondMaximum)
        );
        let mut empty_first = fragment_of(&whole, 0..0, true);
        Ipv4Packet::new_unchecked(&mut empty_first[14..]).fill_checksum();
        assert_eq!(
            classify_frame(&empty_first),
            Err(ParseError::Ipv4FirstFragmentTooShort)
        );
        let mut tcp = fragment_of(&whole, 48..108, false);
        tcp[23] = 6;
        Ipv4Packet::new_unchecked(&mut tcp[14..]).fill_checksum();
        assert_eq!(
            classify_frame(&tcp),
            Err(ParseError::Ipv4FragmentUnsupported)
        );
    }

    #[test]
    fn a_later_fragment_gets_its_addresses_and_a_header_checksum_that_verifies() {
        let whole = datagram(100);
        let mut later = fragment_of(&whole, 48..108, false);
        let Ok(Classified::LaterFragment(view)) = classify_frame(&later) else {
            panic!("not a later fragment")
        };
        let rewrite = FragmentRewrite::new(
            (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(198, 51, 100, 7)),
            (
                Ipv4Addr::new(203, 0, 113, 1),
                Ipv4Addr::new(198, 51, 100, 7),
            ),
        );
        let payload_before = later[34..].to_vec();
        rewrite.apply(&mut later, &view, MACS).unwrap();
        let ip = Ipv4Packet::new_checked(&later[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.source(), Ipv4Addr::new(203, 0, 113, 1));
        assert_eq!(ip.ttl(), view.ttl - 1);
        assert_eq!(later[34..], payload_before[..], "the payload is untouched");
        let other = FragmentRewrite::new(
            (Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(198, 51, 100, 7)),
            rewrite.to(),
        );
        assert_eq!(
            other.apply(&mut later, &view, MACS),
            Err(TranslateError::KeyMismatch)
        );
    }
}
