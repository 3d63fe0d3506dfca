//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Invariants:
//! - [`internet_checksum`] is the one's complement of the one's complement sum of the data (odd trailing
//!   byte padded with zero), optionally seeded with a pseudo-header sum.
//! - [`ChecksumDelta`] accumulates the term `~m + m'` of RFC 1624 eqn. 3 for every 16-bit word `m` that
//!   changes to `m'`; [`ChecksumDelta::apply`] computes `HC' = ~(~HC + Σ(~m + m'))`. Because one's complement
//!   addition never yields +0 from non-zero operands, the result equals a full recomputation bit for bit
//!   whenever the incoming checksum was valid and the covered data is not all zero words (with a
//!   pseudo-header it never is; an all-zero ICMP message is the caller's case), and an invalid incoming
//!   checksum keeps exactly its error (it is never repaired — RFC 1624 §3).
//! - UDP is special (RFC 768): a transmitted checksum of 0 means "none" and stays 0; a computed 0 is sent
//!   as 0xFFFF ([`udp_checksum_field`]).

/// Adds `data` as big-endian 16-bit words to a one's complement accumulator (`initial` may be a
/// pseudo-header sum). The result is not folded; fold it with [`fold`].
#[must_use]
pub fn sum_words(data: &[u8], initial: u64) -> u64 {
    let mut sum = initial;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// Folds a wide one's complement accumulator to 16 bits (end-around carry).
#[must_use]
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    // The loop leaves at most 16 significant bits.
    u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The Internet checksum of `data` seeded with `initial` (RFC 1071): `!fold(sum)`.
#[must_use]
pub fn internet_checksum(data: &[u8], initial: u64) -> u16 {
    !fold(sum_words(data, initial))
}

/// The one's complement sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768) for a transport
/// segment of `l4_len` bytes.
#[must_use]
pub fn ipv4_pseudo_header_sum(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u64 {
    sum_words(&src, 0) + sum_words(&dst, 0) + u64::from(protocol) + u64::from(l4_len)
}

/// What goes into a UDP checksum field for a computed checksum: 0 is sent as 0xFFFF (RFC 768).
#[must_use]
pub const fn udp_checksum_field(computed: u16) -> u16 {
    if computed == 0 { 0xFFFF } else { computed }
}

/// An accumulated RFC 1624 update term `Σ(~m + m')`, folded to 16 bits. Built once per flow from the
/// fields a rewrite changes, applied per packet in O(1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChecksumDelta(u16);

impl ChecksumDelta {
    /// No change.
    pub const NONE: Self = Self(0);

    /// Adds the change of one 16-bit word from `old` to `new`.
    #[must_use]
    pub const fn with_u16(self, old: u16, new: u16) -> Self {
        Self::add(self.0, Self::add(!old, new).0)
    }

    /// Adds the change of one 32-bit field (two words), e.g. an IPv4 address.
    #[must_use]
    pub const fn with_u32(self, old: u32, new: u32) -> Self {
        // Truncation to the high and low halves is intended.
        #[allow(clippy::cast_possible_truncation)]
        let (old_hi, old_lo, new_hi, new_lo) = (
            (old >> 16) as u16,
            old as u16,
            (new >> 16) as u16,
            new as u16,
        );
        self.with_u16(old_hi, new_hi).with_u16(old_lo, new_lo)
    }

    /// Adds another accumulated delta.
    #[must_use]
    pub const fn combine(self, other: Self) -> Self {
        Self::add(self.0, other.0)
    }

    /// The folded term, as stored.
    #[must_use]
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// RFC 1624 eqn. 3: `HC' = ~(~HC + delta)`.
    #[must_use]
    pub const fn apply(self, checksum: u16) -> u16 {
        !Self::add(!checksum, self.0).0
    }

    const fn add(a: u16, b: u16) -> Self {
        let sum = a as u32 + b as u32;
        // One end-around carry suffices: 0xFFFF + 0xFFFF = 0x1FFFE folds to 0xFFFF.
        #[allow(clippy::cast_possible_truncation)]
        let folded = ((sum & 0xFFFF) + (sum >> 16)) as u16;
        Self(folded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        // RFC 1071 §3 numerical example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data, 0)), 0xddf2);
        assert_eq!(internet_checksum(&data, 0), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum_words(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn known_ipv4_header_verifies() {
        // Header from a real capture (checksum 0xb861 at bytes 10..12).
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&header, 0), 0);
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(internet_checksum(&zeroed, 0), 0xb861);
    }

    #[test]
    fn udp_zero_goes_out_as_ffff() {
        assert_eq!(udp_checksum_field(0), 0xFFFF);
        assert_eq!(udp_checksum_field(0x1234), 0x1234);
    }

    fn recompute(data: &mut [u8], at: usize) -> u16 {
        data[at] = 0;
        data[at + 1] = 0;
        let c = internet_checksum(data, 0);
        data[at..at + 2].copy_from_slice(&c.to_be_bytes());
        c
    }

    fn word_strategy() -> impl Strategy<Value = u16> {
        prop_oneof![
            Just(0u16),
            Just(0xFFFF),
            Just(0x0001),
            Just(0xFFFE),
            any::<u16>()
        ]
    }

    proptest! {
        /// RFC 1624: incremental update equals full recomputation, including the 0x0000 / 0xFFFF edges.
        #[test]
        fn incremental_equals_full(
            mut data in proptest::collection::vec(word_strategy(), 3..40)
                .prop_map(|w| w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>()),
            changes in proptest::collection::vec((any::<prop::sample::Index>(), word_strategy()), 1..6),
        ) {
            prop_assume!(data.iter().skip(2).any(|&b| b != 0));
            let checksum = recompute(&mut data, 0);
            let mut delta = ChecksumDelta::NONE;
            for (index, new) in changes {
                let word = 1 + index.index(data.len() / 2 - 1);
                let old = u16::from_be_bytes([data[2 * word], data[2 * word + 1]]);
                data[2 * word..2 * word + 2].copy_from_slice(&new.to_be_bytes());
                delta = delta.with_u16(old, new);
            }
            let incremental = delta.apply(checksum);
            prop_assume!(data.iter().skip(2).any(|&b| b != 0));
            let full = recompute(&mut data, 0);
            prop_assert_eq!(incremental, full);
        }

        /// An invalid checksum keeps its exact error through an incremental update (never repaired).
        #[test]
        fn invalid_checksum_stays_invalid(
            mut data in proptest::collection::vec(any::<u8>(), 8..40),
            error in 1u16..0xFFFF,
            new in word_strategy(),
        ) {
            if data.len() % 2 == 1 { data.pop(); }
            prop_assume!(data.iter().skip(2).any(|&b| b != 0));
            let valid = recompute(&mut data, 0);
            let broken = ChecksumDelta::NONE.with_u16(0, error).apply(valid);
            let old = u16::from_be_bytes([data[2], data[3]]);
            data[2..4].copy_from_slice(&new.to_be_bytes());
            let updated = ChecksumDelta::NONE.with_u16(old, new).apply(broken);
            data[0..2].copy_from_slice(&updated.to_be_bytes());
            prop_assert_ne!(fold(sum_words(&data, 0)), 0xFFFF, "an invalid checksum was repaired");
        }

        #[test]
        fn u32_delta_is_two_u16_deltas(old in any::<u32>(), new in any::<u32>(), hc in any::<u16>()) {
            #[allow(clippy::cast_possible_truncation)]
            let by_words = ChecksumDelta::NONE
                .with_u16((old >> 16) as u16, (new >> 16) as u16)
                .with_u16(old as u16, new as u16);
            prop_assert_eq!(ChecksumDelta::NONE.with_u32(old, new).apply(hc), by_words.apply(hc));
        }
    }
}
