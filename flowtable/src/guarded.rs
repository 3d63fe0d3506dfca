//! A mutable per-flow word guarded by the flow's incarnation: the top 16 bits hold the low 16 bits
//! of the record's generation, the low 48 bits the payload (a counter or the protocol state).
//!
//! Invariant: every update is a compare-and-swap that requires the tag of the handle's generation,
//! and re-initialising a record for a new flow stores the new tag first. So an update through a
//! stale handle (the flow was removed and the record reused) cannot land on the new flow, even if
//! its thread was preempted between checking the handle and updating; it is dropped instead. (Only
//! a reuse count that is an exact multiple of 65,536 during one such preemption could alias.)

use crate::sync::{AtomicU64, Ordering};

const PAYLOAD_BITS: u32 = 48;

/// The largest payload: 2^48 - 1 (also the wrap-around point of counters).
pub const PAYLOAD_MAX: u64 = (1 << PAYLOAD_BITS) - 1;

/// The tag of a generation.
pub(crate) fn tag_of(generation: u32) -> u64 {
    u64::from(generation as u16)
}

pub(crate) struct GuardedWord(AtomicU64);

impl GuardedWord {
    pub(crate) fn new() -> Self {
        GuardedWord(AtomicU64::new(0))
    }

    /// Re-initialises the word for a new incarnation (called by the record's owner only).
    pub(crate) fn reset(&self, tag: u64, payload: u64) {
        self.0.store(compose(tag, payload), Ordering::Relaxed);
    }

    /// The payload if the word belongs to the incarnation with `tag`.
    pub(crate) fn load(&self, tag: u64) -> Option<u64> {
        let word = self.0.load(Ordering::Acquire);
        (word >> PAYLOAD_BITS == tag).then_some(word & PAYLOAD_MAX)
    }

    /// The payload whatever the incarnation (the free list's link while the record is free).
    pub(crate) fn load_any(&self) -> u64 {
        self.0.load(Ordering::Relaxed) & PAYLOAD_MAX
    }

    /// Adds `amount` (wrapping at 2^48) unless the word belongs to another incarnation.
    pub(crate) fn add(&self, tag: u64, amount: u64) -> bool {
        let mut word = self.0.load(Ordering::Relaxed);
        loop {
            if word >> PAYLOAD_BITS != tag {
                return false;
            }
            let next = compose(tag, word.wrapping_add(amount));
            match self
                .0
                .compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => word = actual,
            }
        }
    }

    /// Compare-and-swap of the payload within the incarnation `tag`: `None` if the word belongs to
    /// another incarnation, else `Ok(previous)` or `Err(actual payload)`.
    pub(crate) fn compare_exchange(
        &self,
        tag: u64,
        current: u64,
        new: u64,
    ) -> Option<Result<u64, u64>> {
        let expected = compose(tag, current);
        match self.0.compare_exchange(
            expected,
            compose(tag, new),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Some(Ok(current)),
            Err(actual) if actual >> PAYLOAD_BITS == tag => Some(Err(actual & PAYLOAD_MAX)),
            Err(_) => None,
        }
    }
}

fn compose(tag: u64, payload: u64) -> u64 {
    (tag << PAYLOAD_BITS) | (payload & PAYLOAD_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_of_another_incarnation_are_refused() {
        let word = GuardedWord::new();
        word.reset(tag_of(7), 0);
        assert!(word.add(tag_of(7), 5));
        assert!(!word.add(tag_of(8), 5));
        assert_eq!(word.load(tag_of(7)), Some(5));
        assert_eq!(word.load(tag_of(8)), None);
        assert_eq!(word.compare_exchange(tag_of(7), 5, 9), Some(Ok(5)));
        assert_eq!(word.compare_exchange(tag_of(7), 5, 1), Some(Err(9)));
        assert_eq!(word.compare_exchange(tag_of(6), 9, 1), None);
        word.reset(tag_of(8), 0);
        assert_eq!(
            word.compare_exchange(tag_of(7), 9, 1),
            None,
            "stale CAS after reuse"
        );
        assert_eq!(word.load(tag_of(8)), Some(0));
    }

    #[test]
    fn payload_wraps_at_48_bits_without_touching_the_tag() {
        let word = GuardedWord::new();
        word.reset(tag_of(u32::MAX), PAYLOAD_MAX);
        assert!(word.add(tag_of(u32::MAX), 2));
        assert_eq!(word.load(tag_of(u32::MAX)), Some(1));
    }
}
