//! Mirror of `struct flowpin_counter`: one decision's packets and bytes on one CPU.

use std::mem::{offset_of, size_of};

use crate::c_layout as c;

/// Value of the `flowpin_counters` per-CPU array (summed over CPUs by the loader).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Counter {
    /// Packets that took the decision.
    pub packets: u64,
    /// Their bytes, from the Ethernet header on.
    pub bytes: u64,
}

const _: () = {
    assert!(size_of::<Counter>() == c::COUNTER_SIZE);
    assert!(offset_of!(Counter, packets) == c::COUNTER_PACKETS);
    assert!(offset_of!(Counter, bytes) == c::COUNTER_BYTES);
    assert!(c::COUNTER_PACKETS == 0 && c::COUNTER_BYTES == 8);
};

impl Counter {
    /// Decodes a per-CPU value as read from the map: `[packets, bytes]`.
    pub const fn from_words(words: [u64; 2]) -> Self {
        Self {
            packets: words[0],
            bytes: words[1],
        }
    }

    /// Adds another CPU's (or interval's) count.
    pub const fn plus(self, other: Self) -> Self {
        Self {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_decode_in_field_order_and_sum() {
        let a = Counter::from_words([3, 300]);
        assert_eq!(
            a,
            Counter {
                packets: 3,
                bytes: 300
            }
        );
        assert_eq!(
            a.plus(Counter::from_words([1, 60])),
            Counter {
                packets: 4,
                bytes: 360
            }
        );
    }
}
