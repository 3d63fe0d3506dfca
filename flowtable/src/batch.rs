//! Batch lookup for the datapath: hash the whole batch and prefetch every home bucket, then
//! prefetch the first candidate record of each key, then verify. Memory latency of one key is
//! hidden behind the work on the others.

use crate::handle::Found;
use crate::slot::KeyHash;
use crate::sync::Ordering;
use crate::table::FlowTable;
use core::hash::Hash;
use core::ops::ControlFlow;

/// Keys processed per internal round (stack arrays, no allocation).
const ROUND: usize = 16;

impl<K, V> FlowTable<K, V>
where
    K: Copy + Eq + Hash,
    V: Copy,
{
    /// Looks up every key of `keys`, writing the result for `keys[i]` into `found[i]`; same
    /// results as calling [`lookup`](Self::lookup) on each. Panics if `found` is shorter than
    /// `keys`.
    pub fn lookup_batch(&self, keys: &[K], found: &mut [Option<Found<V>>]) {
        assert!(
            found.len() >= keys.len(),
            "result slice shorter than the key batch"
        );
        for (keys, found) in keys.chunks(ROUND).zip(found.chunks_mut(ROUND)) {
            self.lookup_round(keys, found);
        }
    }

    fn lookup_round(&self, keys: &[K], found: &mut [Option<Found<V>>]) {
        let mut hashes = [KeyHash(0); ROUND];
        for (hash, key) in hashes.iter_mut().zip(keys) {
            *hash = self.hash(key);
            prefetch(self.index.home_bucket_ptr(*hash));
        }
        // First tag match of each key, and prefetch of its record.
        let mut candidates = [None; ROUND];
        for (candidate, hash) in candidates.iter_mut().zip(&hashes[..keys.len()]) {
            *candidate = self
                .index
                .probe(*hash, Ordering::Acquire, |word, _| ControlFlow::Break(word));
            if let Some(word) = candidate {
                prefetch((&raw const self.records[word.record() as usize]).cast());
            }
        }
        for ((result, key), (candidate, hash)) in found
            .iter_mut()
            .zip(keys)
            .zip(candidates.iter().zip(hashes))
        {
            *result = match candidate {
                None => None,
                Some(word) => match self.live_match(*word, key) {
                    Some(hit) => Some(hit),
                    // A tag collision or a slot in flux: the full probe decides.
                    None => self.lookup_hashed(key, hash),
                },
            };
        }
    }
}

#[inline(always)]
fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint that never faults, whatever the address; SSE is part of the
    // x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use crate::FlowTable;

    #[test]
    fn batch_lookup_agrees_with_single_lookups() {
        let t: FlowTable<u64, u64> = FlowTable::with_capacity(4096).expect("valid");
        for flow in 0..3000u64 {
            t.insert_if_absent(flow, flow + 1_000_000, flow * 3, 0)
                .expect("room");
        }
        // Hits on both sides and misses, in a batch longer than one round.
        let keys: Vec<u64> = (0..100u64)
            .map(|i| match i % 3 {
                0 => i * 29,
                1 => 1_000_000 + i * 7,
                _ => 9_000_000 + i,
            })
            .collect();
        let mut found = vec![None; keys.len()];
        t.lookup_batch(&keys, &mut found);
        for (key, result) in keys.iter().zip(&found) {
            assert_eq!(*result, t.lookup(key), "key {key}");
            assert_eq!(
                result.is_some(),
                *key < 3000 || (1_000_000..1_003_000).contains(key)
            );
        }
    }
}
