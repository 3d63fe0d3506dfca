//! The index's slot word: a short hash tag, a record number and the side of the flow the key is.
//!
//! Layout of the `u32`: `tag (6 bits) | record (25 bits) | side (1 bit)`. The tag is never zero,
//! so the word `0` means "empty" and every occupied slot is non-zero. A record owns at most one
//! slot per side at a time, so a slot word is unique in the index while it is published.

use crate::handle::Side;

const SIDE_BITS: u32 = 1;
const RECORD_BITS: u32 = 25;
const TAG_SHIFT: u32 = SIDE_BITS + RECORD_BITS;

/// The largest number of records a table can have (2^25).
pub const MAX_RECORDS: usize = 1 << RECORD_BITS;

/// An occupied slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotWord(pub(crate) u32);

/// A key's hash, split into what the index uses: the home bucket and the tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyHash(pub(crate) u64);

impl KeyHash {
    /// A 6-bit tag from the hash's top bits (independent of the bucket bits), never 0.
    pub(crate) fn tag(self) -> u32 {
        ((self.0 >> 58) as u32).max(1)
    }

    /// The home bucket among `buckets`: a multiply-shift range reduction of the low 32 bits.
    pub(crate) fn home_bucket(self, buckets: usize) -> usize {
        (((self.0 as u32) as u64 * buckets as u64) >> 32) as usize
    }
}

impl SlotWord {
    pub(crate) fn new(hash: KeyHash, record: u32, side: Side) -> Self {
        debug_assert!((record as usize) < MAX_RECORDS);
        SlotWord((hash.tag() << TAG_SHIFT) | (record << SIDE_BITS) | side as u32)
    }

    pub(crate) fn tag(self) -> u32 {
        self.0 >> TAG_SHIFT
    }

    pub(crate) fn record(self) -> u32 {
        (self.0 >> SIDE_BITS) & ((1 << RECORD_BITS) - 1)
    }

    pub(crate) fn side(self) -> Side {
        if self.0 & 1 == 0 {
            Side::Lan
        } else {
            Side::Uplink
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_word_is_never_empty() {
        for (hash, record, side) in [
            (KeyHash(0), 0, Side::Lan),
            (KeyHash(u64::MAX), (MAX_RECORDS - 1) as u32, Side::Uplink),
            (KeyHash(0x8400_0000_0000_0000), 12345, Side::Uplink),
        ] {
            let word = SlotWord::new(hash, record, side);
            assert_ne!(word.0, 0);
            assert_eq!(word.tag(), hash.tag());
            assert_eq!(word.record(), record);
            assert_eq!(word.side(), side);
        }
    }

    #[test]
    fn home_bucket_stays_in_range() {
        for h in [0, 1, u32::MAX as u64, u64::MAX, 0xdead_beef_1234_5678] {
            for buckets in [1, 2, 7, 1000, 1 << 20] {
                assert!(KeyHash(h).home_bucket(buckets) < buckets);
            }
        }
    }
}
