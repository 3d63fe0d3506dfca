//! The key index: cache-line buckets of 15 slot words plus an overflow counter, probed linearly
//! from a key's home bucket.
//!
//! Invariants:
//! - a published slot word lies in its key's home bucket or in a later one (wrapping); every
//!   bucket passed over between the home bucket and the slot's bucket has its `overflow` counter
//!   raised by one for as long as the slot stays published (raised *before* the slot is published,
//!   lowered *after* it is cleared). So a probe may stop at the first bucket whose counter is zero
//!   without missing any key published before the probe started;
//! - slots are claimed by compare-and-swap from 0 and cleared by compare-and-swap back to 0 by the
//!   record's owner only; the index never moves a published slot, so readers need no retry;
//! - inserters use sequentially consistent operations on slots and counters, so two inserters that
//!   publish and then scan always see at least one of each other's slots (the store-buffering
//!   argument in the crate docs relies on it).

use crate::memory::FixedArray;
use crate::slot::{KeyHash, SlotWord};
use crate::sync::{AtomicU32, Ordering};
use core::ops::ControlFlow;

/// Slots per bucket: 15 slot words and one overflow counter fill one 64-byte cache line.
pub(crate) const SLOTS_PER_BUCKET: usize = 15;

/// Average keys per bucket at full capacity (60 % of the slots), which keeps overflow rare.
const KEYS_PER_BUCKET_AT_CAPACITY: usize = 9;

/// Where a published slot lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotPosition {
    bucket: usize,
    slot: usize,
}

#[repr(C, align(64))]
pub(crate) struct Bucket {
    slots: [AtomicU32; SLOTS_PER_BUCKET],
    /// How many published slots have this bucket strictly between their home and their bucket.
    overflow: AtomicU32,
}

impl Bucket {
    fn new() -> Self {
        Bucket {
            slots: core::array::from_fn(|_| AtomicU32::new(0)),
            overflow: AtomicU32::new(0),
        }
    }
}

/// The index has no room on the probe path of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexFull;

pub(crate) struct Index {
    buckets: FixedArray<Bucket>,
}

impl Index {
    /// An index sized for `keys` keys at about 60 % slot occupancy.
    pub(crate) fn with_capacity_for(keys: usize) -> Self {
        let count = keys.div_ceil(KEYS_PER_BUCKET_AT_CAPACITY).max(2);
        Index {
            buckets: FixedArray::new(count, |_| Bucket::new()),
        }
    }

    pub(crate) fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.buckets.len() * size_of::<Bucket>()
    }

    /// The address of a key's home bucket, for prefetching.
    pub(crate) fn home_bucket_ptr(&self, hash: KeyHash) -> *const u8 {
        let bucket: *const Bucket = &self.buckets[hash.home_bucket(self.buckets.len())];
        bucket.cast()
    }

    /// Calls `visit` with every published slot whose tag matches `hash`, in probe order, until it
    /// breaks or the probe ends.
    pub(crate) fn probe<R>(
        &self,
        hash: KeyHash,
        order: Ordering,
        mut visit: impl FnMut(SlotWord, SlotPosition) -> ControlFlow<R>,
    ) -> Option<R> {
        let count = self.buckets.len();
        let tag = hash.tag();
        let mut bucket = hash.home_bucket(count);
        for _ in 0..count {
            let cell = &self.buckets[bucket];
            // Read the whole line first, then compare all tags without branches; only tag
            // matches (usually none or one) are visited.
            let words: [u32; SLOTS_PER_BUCKET] =
                core::array::from_fn(|slot| cell.slots[slot].load(order));
            let mut matches = 0u32;
            for (slot, word) in words.iter().enumerate() {
                matches |= u32::from(SlotWord(*word).tag() == tag) << slot;
            }
            while matches != 0 {
                let slot = matches.trailing_zeros() as usize;
                matches &= matches - 1;
                let position = SlotPosition { bucket, slot };
                if let ControlFlow::Break(found) = visit(SlotWord(words[slot]), position) {
                    return Some(found);
                }
            }
            if cell.overflow.load(order) == 0 {
                return None;
            }
            bucket = (bucket + 1) % count;
        }
        None
    }

    /// Publishes `word` on the probe path of `hash` and returns where.
    pub(crate) fn publish(&self, hash: KeyHash, word: SlotWord) -> Result<SlotPosition, IndexFull> {
        let count = self.buckets.len();
        let home = hash.home_bucket(count);
        let mut bucket = home;
        for passed in 0..count {
            let cell = &self.buckets[bucket];
            for (slot, cell_slot) in cell.slots.iter().enumerate() {
                if cell_slot.load(Ordering::Relaxed) == 0
                    && cell_slot
                        .compare_exchange(0, word.0, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                {
                    return Ok(SlotPosition { bucket, slot });
                }
            }
            if passed + 1 == count {
                break;
            }
            cell.overflow.fetch_add(1, Ordering::SeqCst);
            bucket = (bucket + 1) % count;
        }
        // Every bucket is full: undo the overflow marks made on the way.
        self.lower_overflow(home, count - 1);
        Err(IndexFull)
    }

    /// Clears a slot this thread's record owns (published by `publish` for the same `hash`).
    pub(crate) fn retract(&self, hash: KeyHash, word: SlotWord, position: SlotPosition) {
        let cleared = self.buckets[position.bucket].slots[position.slot].compare_exchange(
            word.0,
            0,
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
        debug_assert!(
            cleared.is_ok(),
            "a record's slot was cleared by someone else"
        );
        if cleared.is_err() {
            return; // never lower counters for a slot this call did not clear
        }
        let count = self.buckets.len();
        let home = hash.home_bucket(count);
        let passed = (position.bucket + count - home) % count;
        self.lower_overflow(home, passed);
    }

    /// Finds the position of a published slot word of the owning record.
    pub(crate) fn position_of(&self, hash: KeyHash, word: SlotWord) -> Option<SlotPosition> {
        self.probe(hash, Ordering::SeqCst, |candidate, position| {
            if candidate == word {
                ControlFlow::Break(position)
            } else {
                ControlFlow::Continue(())
            }
        })
    }

    fn lower_overflow(&self, home: usize, passed: usize) {
        let count = self.buckets.len();
        for step in 0..passed {
            self.buckets[(home + step) % count]
                .overflow
                .fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::Side;

    fn words_found(index: &Index, hash: KeyHash) -> Vec<u32> {
        let mut found = Vec::new();
        index.probe::<()>(hash, Ordering::Acquire, |word, _| {
            found.push(word.record());
            ControlFlow::Continue(())
        });
        found
    }

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(size_of::<Bucket>(), 64);
        assert_eq!(align_of::<Bucket>(), 64);
    }

    #[test]
    fn overflowing_keys_stay_reachable_and_counters_return_to_zero() {
        let index = Index::with_capacity_for(4); // 2 buckets
        let hash = KeyHash(0x4000_0000_0000_0000); // all in one home bucket
        let mut published = Vec::new();
        for record in 0..(2 * SLOTS_PER_BUCKET as u32) {
            let word = SlotWord::new(hash, record, Side::Lan);
            published.push((word, index.publish(hash, word).expect("room")));
        }
        let extra = SlotWord::new(hash, 999, Side::Uplink);
        assert_eq!(index.publish(hash, extra), Err(IndexFull));
        assert_eq!(words_found(&index, hash).len(), 2 * SLOTS_PER_BUCKET);
        for (word, position) in &published {
            assert_eq!(index.position_of(hash, *word), Some(*position));
            index.retract(hash, *word, *position);
        }
        assert!(words_found(&index, hash).is_empty());
        for bucket in index.buckets.iter() {
            assert_eq!(bucket.overflow.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn probe_skips_other_tags() {
        let index = Index::with_capacity_for(100);
        let a = KeyHash(0x0400_0000_0000_0001);
        let b = KeyHash(0x0800_0000_0000_0001); // same bucket, other tag
        index
            .publish(a, SlotWord::new(a, 1, Side::Lan))
            .expect("room");
        index
            .publish(b, SlotWord::new(b, 2, Side::Lan))
            .expect("room");
        assert_eq!(words_found(&index, a), vec![1]);
        assert_eq!(words_found(&index, b), vec![2]);
    }
}
