//! The pool of free records: a lock-free LIFO stack (Treiber) threaded through the records.
//!
//! Invariants:
//! - a record is on the stack exactly when its status is `Free` and no thread has popped it; its
//!   protocol-state word (unused while free) holds the number of the next free record, tagged
//!   with the record's *next* generation, so a stale handle of the last flow (whose guarded
//!   updates require the last generation's tag) can never overwrite the link. (`last_seen` would
//!   not do: its store is unguarded.)
//! - the head word packs the top record number (or `EMPTY`) with a counter bumped by every push
//!   and pop, so a pop that read a stale `next` (the top was popped and pushed again meanwhile)
//!   fails its compare-and-swap instead of corrupting the stack (no ABA); records are never
//!   freed to the allocator, so reading a stale `next` is always a valid read;
//! - reuse is immediate (LIFO), which is safe because every access through an old handle is
//!   checked against the record's generation (see the crate docs);
//! - the records never used yet are popped in a spread order ([`spread`]): the first `k` in use
//!   lie evenly over the whole array, not in its first `k` places, so a bounded scan from any
//!   position of the shared sweep cursor (early drop) meets live records in proportion to the
//!   table's fill instead of crossing a run of never-used ones.

use crate::guarded::tag_of;
use crate::record::Record;
use crate::sync::{AtomicU64, Ordering};

const EMPTY: u32 = u32::MAX;

pub(crate) struct FreeList(AtomicU64);

fn pack(top: u32, counter: u32) -> u64 {
    (u64::from(counter) << 32) | u64::from(top)
}

fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

impl FreeList {
    /// A stack holding every record, record 0 on top, then the others in [`spread`] order.
    pub(crate) fn full<K, V>(records: &[Record<K, V>]) -> Self {
        let list = FreeList(AtomicU64::new(pack(EMPTY, 0)));
        let len = records.len() as u64;
        let stride = spread_stride(len);
        for position in (0..len).rev() {
            list.push(records, spread(position, stride, len));
        }
        list
    }

    /// Pops a free record number, or `None` if the stack is empty.
    pub(crate) fn pop<K, V>(&self, records: &[Record<K, V>]) -> Option<u32> {
        let mut head = self.0.load(Ordering::Acquire);
        loop {
            let (top, counter) = unpack(head);
            if top == EMPTY {
                return None;
            }
            let next = records[top as usize].protocol_state.load_any() as u32;
            match self.0.compare_exchange_weak(
                head,
                pack(next, counter.wrapping_add(1)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(top),
                Err(actual) => head = actual,
            }
        }
    }

    /// Pushes a record this thread owns (status `Free`, not on the stack).
    pub(crate) fn push<K, V>(&self, records: &[Record<K, V>], number: u32) {
        let mut head = self.0.load(Ordering::Relaxed);
        loop {
            let (top, counter) = unpack(head);
            let record = &records[number as usize];
            let next_generation = record
                .load_seq(Ordering::Relaxed)
                .next_incarnation()
                .generation();
            record
                .protocol_state
                .reset(tag_of(next_generation), u64::from(top));
            match self.0.compare_exchange_weak(
                head,
                pack(number, counter.wrapping_add(1)),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }
}

/// The `position`-th record popped from a full stack of `len`: `position · stride mod len`.
fn spread(position: u64, stride: u64, len: u64) -> u32 {
    u32::try_from(position * stride % len).unwrap_or(0)
}

/// A stride near `len / φ` (the golden ratio), coprime with `len`: successive positions fill the
/// array as evenly as such a sequence can, and every record is visited once.
fn spread_stride(len: u64) -> u64 {
    if len <= 2 {
        return 1;
    }
    let mut stride = (len * 618 / 1000).max(1);
    while gcd(stride, len) != 1 {
        stride += 1;
    }
    stride
}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_every_record_once_then_reuses_the_last_freed_first() {
        let records: Vec<Record<u64, u64>> = (0..4).map(|_| Record::new()).collect();
        let list = FreeList::full(&records);
        let popped: Vec<_> = (0..4).map(|_| list.pop(&records).expect("free")).collect();
        assert_eq!(popped, [0, 3, 2, 1], "stride 3 (coprime with 4)");
        assert_eq!(list.pop(&records), None);
        list.push(&records, 2);
        list.push(&records, 0);
        assert_eq!(list.pop(&records), Some(0));
        assert_eq!(list.pop(&records), Some(2));
        assert_eq!(list.pop(&records), None);
    }

    /// The first quarter of a table's records in use lie over the whole of it: every run of 64
    /// records holds some of them (a run of never-used records would stall a bounded scan).
    #[test]
    fn the_first_records_used_are_spread_over_the_whole_table() {
        for len in [1000u64, 16_384, 262_144, 1_000_003] {
            let stride = spread_stride(len);
            assert_eq!(gcd(stride, len), 1);
            let mut used = vec![false; len as usize];
            for position in 0..len / 4 {
                used[spread(position, stride, len) as usize] = true;
            }
            let emptiest = used
                .windows(64)
                .map(|run| run.iter().filter(|u| **u).count())
                .min()
                .unwrap();
            assert!(
                emptiest >= 8,
                "{len}: a run of 64 with only {emptiest} in use"
            );
        }
    }
}
