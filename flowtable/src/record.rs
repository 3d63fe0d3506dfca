//! One flow record: both keys and the immutable value (the *body*, published with a seqlock), and
//! the per-packet mutable state (atomics).
//!
//! Invariants:
//! - the body is written only by the thread that moved the record `Free -> Writing` (or
//!   `Aborted -> Writing` on a retry), and only while the status is `Writing`;
//! - a reader that copied the body trusts the copy only if the sequence word read before the copy
//!   was not `Free`/`Writing` and the one read after it has the same generation (a seqlock whose
//!   "odd" state is `Writing`). A torn copy is discarded while still `MaybeUninit`, never turned
//!   into a `K` or `V`;
//! - memory is never returned to the allocator while the table lives, so a stale index (from a
//!   removed slot or a stale handle) always points at a valid `Record`, at worst of another
//!   incarnation, which the generation check detects.

use crate::guarded::{GuardedWord, tag_of};
use crate::status::{Seq, Status};
use crate::sync::{AtomicU32, Ordering, fence};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

/// The immutable part of a flow: its two keys (index 0 = LAN side, 1 = uplink side) and value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Body<K, V> {
    pub(crate) keys: [K; 2],
    pub(crate) value: V,
}

#[repr(C)]
pub(crate) struct Record<K, V> {
    /// Generation and status, see [`crate::status`].
    pub(crate) seq: AtomicU32,
    /// Low 32 bits of the last-seen time in milliseconds (wrapping; see [`expand_last_seen`]).
    pub(crate) last_seen: AtomicU32,
    /// The datapath's protocol-state word (TCP tracker, 48 bits), updated by compare-and-swap.
    pub(crate) protocol_state: GuardedWord,
    /// Packets per direction: index 0 = arrived on the LAN side, 1 = arrived on the uplink side.
    pub(crate) packets: [GuardedWord; 2],
    /// Bytes per direction, indexed like `packets`.
    pub(crate) bytes: [GuardedWord; 2],
    body: UnsafeCell<MaybeUninit<Body<K, V>>>,
}

// SAFETY: the only non-atomic field is `body`; it is written by exactly one thread (the owner in
// status `Writing`) and read by others only through `read_body`, which copies it with volatile
// reads and discards any copy that may have overlapped a write (seqlock, see the module docs).
// Values cross threads only by copy, so `Send` for K and V suffices.
unsafe impl<K: Send, V: Send> Sync for Record<K, V> {}

impl<K, V> Record<K, V> {
    pub(crate) fn new() -> Self {
        Record {
            seq: AtomicU32::new(Seq::new(0, Status::Free).0),
            last_seen: AtomicU32::new(0),
            protocol_state: GuardedWord::new(),
            packets: [GuardedWord::new(), GuardedWord::new()],
            bytes: [GuardedWord::new(), GuardedWord::new()],
            body: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    pub(crate) fn load_seq(&self, order: Ordering) -> Seq {
        Seq(self.seq.load(order))
    }

    /// Compare-and-swap of the whole sequence word (generation included, so no ABA).
    pub(crate) fn transition(&self, from: Seq, to: Seq) -> Result<(), Seq> {
        self.seq
            .compare_exchange(from.0, to.0, Ordering::SeqCst, Ordering::SeqCst)
            .map(drop)
            .map_err(Seq)
    }
}

impl<K: Copy, V: Copy> Record<K, V> {
    /// Writes the body and resets the mutable state for a new flow.
    ///
    /// Caller contract: the caller owns the record, i.e. it moved it into `Writing` itself and the
    /// status is still `Writing`.
    pub(crate) fn write_flow(&self, body: Body<K, V>, now_ms: u64) {
        debug_assert_eq!(self.load_seq(Ordering::Relaxed).status(), Status::Writing);
        // Orders the `Writing` store (done by the caller) before the body stores, so a reader that
        // sees any byte of the new body also sees the new generation on its second read.
        fence(Ordering::Release);
        // SAFETY: the record is in status `Writing` and owned by this thread (caller contract), so
        // no other thread writes the body; concurrent readers may copy it, but they validate the
        // generation afterwards and discard any overlapping copy. The pointer is valid and aligned
        // (it comes from the `UnsafeCell` of a live `Record`).
        unsafe { core::ptr::write_volatile(self.body.get(), MaybeUninit::new(body)) };
        self.reset_mutable(now_ms);
    }

    /// Resets last-seen, protocol state and counters for the current generation (owner only,
    /// status `Writing`).
    pub(crate) fn reset_mutable(&self, now_ms: u64) {
        let tag = tag_of(self.load_seq(Ordering::Relaxed).generation());
        self.last_seen.store(now_ms as u32, Ordering::Relaxed);
        self.protocol_state.reset(tag, 0);
        for direction in 0..2 {
            self.packets[direction].reset(tag, 0);
            self.bytes[direction].reset(tag, 0);
        }
    }

    /// Copies the body if the record holds a written incarnation and the copy is not torn.
    /// Returns the sequence word read before the copy (its status may be stale by now, its
    /// generation is the one the body belongs to).
    pub(crate) fn read_body(&self, order: Ordering) -> Option<(Seq, Body<K, V>)> {
        let before = self.load_seq(order);
        if matches!(before.status(), Status::Free | Status::Writing) {
            return None;
        }
        // SAFETY: the pointer is valid and aligned for the whole life of the table. The status
        // was neither `Free` nor `Writing`, so the body was fully written at least once; a
        // concurrent rewrite can tear the copy, which is why it stays `MaybeUninit` until the
        // generation check below passes.
        let copy = unsafe { core::ptr::read_volatile(self.body.get()) };
        fence(Ordering::Acquire);
        let after = self.load_seq(Ordering::Relaxed);
        if !after.same_generation(before) || matches!(after.status(), Status::Writing) {
            return None;
        }
        // SAFETY: the generation did not change and the record was not being written across the
        // copy, so the bytes are exactly those of the `Body` written for this generation.
        Some((before, unsafe { copy.assume_init() }))
    }
}

/// Rebuilds a full millisecond timestamp from its stored low 32 bits, given the current time.
/// Correct for ages below 2^31 ms (24.8 days); a stamp slightly in the future (another worker's
/// clock read a little later) counts as age 0.
pub(crate) fn expand_last_seen(now_ms: u64, stored: u32) -> u64 {
    let age = (now_ms as u32).wrapping_sub(stored) as i32;
    if age <= 0 {
        now_ms
    } else {
        now_ms.saturating_sub(age as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_expands_across_the_32_bit_wrap() {
        let then = (1u64 << 32) - 10;
        assert_eq!(expand_last_seen(then + 100, then as u32), then);
        assert_eq!(expand_last_seen(5_000, 4_000), 4_000);
        assert_eq!(expand_last_seen(5_000, 5_003), 5_000);
    }

    #[test]
    fn body_is_unreadable_until_written_and_after_reuse() {
        let record: Record<u64, u64> = Record::new();
        assert!(record.read_body(Ordering::Acquire).is_none());
        let writing = Seq::new(0, Status::Free).next_incarnation();
        record.seq.store(writing.0, Ordering::SeqCst);
        record.write_flow(
            Body {
                keys: [1, 2],
                value: 3,
            },
            9,
        );
        assert!(
            record.read_body(Ordering::Acquire).is_none(),
            "still Writing"
        );
        record
            .seq
            .store(writing.with_status(Status::Live).0, Ordering::SeqCst);
        let (seq, body) = record.read_body(Ordering::Acquire).expect("live record");
        assert_eq!(
            (seq.status(), body.keys, body.value),
            (Status::Live, [1, 2], 3)
        );
        assert_eq!(record.last_seen.load(Ordering::Relaxed), 9);
    }
}
