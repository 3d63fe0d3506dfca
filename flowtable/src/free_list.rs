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
//! - the records never used yet are popped in order 0, 1, 2, …, so the records ever used are
//!   exactly `0..` one past the highest number popped; the table keeps that extent so a sweep
//!   never crosses the never-used rest, and a small table of flows stays dense in memory.

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
    /// A stack holding every record, record 0 on top, then 1, 2, … in order.
    pub(crate) fn full<K, V>(records: &[Record<K, V>]) -> Self {
        let list = FreeList(AtomicU64::new(pack(EMPTY, 0)));
        for number in (0..records.len()).rev() {
            list.push(records, u32::try_from(number).unwrap_or(EMPTY));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_every_record_once_then_reuses_the_last_freed_first() {
        let records: Vec<Record<u64, u64>> = (0..4).map(|_| Record::new()).collect();
        let list = FreeList::full(&records);
        let popped: Vec<_> = (0..4).map(|_| list.pop(&records).expect("free")).collect();
        assert_eq!(popped, [0, 1, 2, 3], "never-used records in order");
        assert_eq!(list.pop(&records), None);
        list.push(&records, 2);
        list.push(&records, 0);
        assert_eq!(list.pop(&records), Some(0));
        assert_eq!(list.pop(&records), Some(2));
        assert_eq!(list.pop(&records), None);
    }
}
