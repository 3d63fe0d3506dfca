//! The table itself: construction, lookups, per-packet updates through handles, and removal.
//! Inserting, sweeping, batch lookups and the live-flow iterator live in their own modules as further `impl`
//! blocks of [`FlowTable`].

use crate::free_list::FreeList;
use crate::guarded::{PAYLOAD_MAX, tag_of};
use crate::handle::{FlowCounters, FlowHandle, Found, Side};
use crate::index::Index;
use crate::memory::FixedArray;
use crate::record::{Body, Record, expand_last_seen};
use crate::slot::{KeyHash, MAX_RECORDS, SlotWord};
use crate::status::{Seq, Status};
use crate::sync::{AtomicUsize, Ordering};
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::ops::ControlFlow;
use foldhash::fast::RandomState;

/// Why a table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// The capacity was zero or above [`FlowTable::MAX_CAPACITY`].
    #[error("flow table capacity must be between 1 and {max}, got {requested}")]
    OutOfRange {
        /// The capacity asked for.
        requested: usize,
        /// The largest supported capacity.
        max: usize,
    },
}

/// A fixed-capacity, lock-free concurrent flow table; see the crate docs for the design.
///
/// `K` is a key (both of a flow's keys have the same type), `V` the immutable per-flow value.
pub struct FlowTable<K, V> {
    pub(crate) records: FixedArray<Record<K, V>>,
    pub(crate) index: Index,
    hasher: RandomState,
    /// Records not `Free` (reserved before claiming, released after freeing).
    pub(crate) occupied: AtomicUsize,
    free: FreeList,
    /// One past the highest record number ever claimed: the free stack hands never-used records
    /// out in order, so every record at or beyond it has always been `Free`.
    pub(crate) used_extent: AtomicUsize,
    pub(crate) sweep_cursor: AtomicUsize,
}

impl<K, V> fmt::Debug for FlowTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowTable")
            .field("capacity", &self.records.len())
            .field("occupied", &self.occupied.load(Ordering::Relaxed))
            .field("buckets", &self.index.bucket_count())
            .finish()
    }
}

impl<K, V> FlowTable<K, V>
where
    K: Copy + Eq + Hash,
    V: Copy,
{
    /// The largest capacity (flows) a table supports: 2^25.
    pub const MAX_CAPACITY: usize = MAX_RECORDS;

    /// The largest protocol-state value: the word has 48 bits (the other 16 guard it against
    /// stale handles).
    pub const PROTOCOL_STATE_MAX: u64 = PAYLOAD_MAX;

    /// A table for up to `capacity` flows, with a hash seed drawn at random for this table
    /// (foldhash's per-process random seed mixed with a per-table one). All memory is allocated
    /// here; nothing allocates afterwards.
    pub fn with_capacity(capacity: usize) -> Result<Self, CapacityError> {
        if capacity == 0 || capacity > Self::MAX_CAPACITY {
            return Err(CapacityError::OutOfRange {
                requested: capacity,
                max: Self::MAX_CAPACITY,
            });
        }
        let records = FixedArray::new(capacity, |_| Record::new());
        let free = FreeList::full(&records);
        Ok(FlowTable {
            records,
            index: Index::with_capacity_for(2 * capacity),
            hasher: RandomState::default(),
            occupied: AtomicUsize::new(0),
            free,
            used_extent: AtomicUsize::new(0),
            sweep_cursor: AtomicUsize::new(0),
        })
    }

    /// The number of flows the table can hold.
    pub fn capacity(&self) -> usize {
        self.records.len()
    }

    /// Records in use: live flows plus the few being inserted or removed right now.
    pub fn len(&self) -> usize {
        self.occupied.load(Ordering::Relaxed)
    }

    /// Whether no record is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of table memory per flow of capacity: one record plus the index share.
    pub fn memory_per_flow(&self) -> usize {
        (self.records.len() * size_of::<Record<K, V>>() + self.index.memory_bytes())
            .div_ceil(self.records.len())
    }

    pub(crate) fn hash(&self, key: &K) -> KeyHash {
        KeyHash(self.hasher.hash_one(key))
    }

    /// Finds the live flow that has `key` as one of its keys. Wait-free: a bounded probe, no
    /// retries, no stores.
    pub fn lookup(&self, key: &K) -> Option<Found<V>> {
        self.lookup_hashed(key, self.hash(key))
    }

    pub(crate) fn lookup_hashed(&self, key: &K, hash: KeyHash) -> Option<Found<V>> {
        self.index.probe(hash, Ordering::Acquire, |word, _| {
            match self.live_match(word, key) {
                Some(found) => ControlFlow::Break(found),
                None => ControlFlow::Continue(()),
            }
        })
    }

    /// The flow behind `word` if it is live and its key on the slot's side is `key`.
    pub(crate) fn live_match(&self, word: SlotWord, key: &K) -> Option<Found<V>> {
        let record = &self.records[word.record() as usize];
        let (seq, body) = record.read_body(Ordering::Acquire)?;
        let side = word.side();
        (seq.status() == Status::Live && body.keys[side.index()] == *key).then_some(Found {
            handle: FlowHandle {
                record: word.record(),
                seq: seq.0,
            },
            side,
            value: body.value,
        })
    }

    /// The record behind a handle if the handle's incarnation is still live, with the tag that
    /// guards its mutable words.
    fn live_record(&self, handle: FlowHandle) -> Option<(&Record<K, V>, u64)> {
        let record = self.records.get(handle.record as usize)?;
        (record.seq.load(Ordering::Acquire) == handle.seq)
            .then(|| (record, tag_of(Seq(handle.seq).generation())))
    }

    /// Whether the handle's flow is still in the table.
    pub fn is_live(&self, handle: FlowHandle) -> bool {
        self.live_record(handle).is_some()
    }

    /// A consistent copy of the handle's value, if its flow is still live.
    pub fn value(&self, handle: FlowHandle) -> Option<V> {
        let record = self.records.get(handle.record as usize)?;
        let (seq, body) = record.read_body(Ordering::Acquire)?;
        (seq.0 == handle.seq).then_some(body.value)
    }

    /// Accounts one packet of `bytes` bytes that arrived on `side` at `now_ms`: refreshes the
    /// last-seen time and bumps that direction's counters (48-bit, wrapping). Returns `false` if
    /// the flow is gone; counters of a flow that reused the record are never touched. One store
    /// and two compare-and-swaps; no allocation, no lock.
    pub fn record_packet(&self, handle: FlowHandle, side: Side, bytes: u64, now_ms: u64) -> bool {
        let Some((record, tag)) = self.live_record(handle) else {
            return false;
        };
        record.last_seen.store(now_ms as u32, Ordering::Relaxed);
        record.packets[side.index()].add(tag, 1) && record.bytes[side.index()].add(tag, bytes)
    }

    /// Refreshes the last-seen time only. Returns `false` if the flow is gone.
    pub fn touch(&self, handle: FlowHandle, now_ms: u64) -> bool {
        let Some((record, _)) = self.live_record(handle) else {
            return false;
        };
        record.last_seen.store(now_ms as u32, Ordering::Relaxed);
        true
    }

    /// The flow's last-seen time in milliseconds, given the current time (see the crate docs on
    /// the 32-bit stamp).
    pub fn last_seen_ms(&self, handle: FlowHandle, now_ms: u64) -> Option<u64> {
        let (record, _) = self.live_record(handle)?;
        Some(expand_last_seen(
            now_ms,
            record.last_seen.load(Ordering::Relaxed),
        ))
    }

    /// The protocol-state word (48 bits; 0 when the flow was inserted).
    pub fn protocol_state(&self, handle: FlowHandle) -> Option<u64> {
        let (record, tag) = self.live_record(handle)?;
        record.protocol_state.load(tag)
    }

    /// Compare-and-swap of the protocol-state word: `None` if the flow is gone, otherwise
    /// `Ok(previous)` if the word was `current` and is now `new`, or `Err(actual)`. The word has
    /// 48 bits ([`PROTOCOL_STATE_MAX`](Self::PROTOCOL_STATE_MAX)); higher bits of `new` are
    /// dropped (a debug build panics on them). Never changes the state of a flow that reused the
    /// record.
    pub fn compare_exchange_protocol_state(
        &self,
        handle: FlowHandle,
        current: u64,
        new: u64,
    ) -> Option<Result<u64, u64>> {
        debug_assert!(
            new <= Self::PROTOCOL_STATE_MAX,
            "protocol state {new:#x} exceeds 48 bits"
        );
        let (record, tag) = self.live_record(handle)?;
        if current > Self::PROTOCOL_STATE_MAX {
            return Some(Err(record.protocol_state.load(tag)?));
        }
        record.protocol_state.compare_exchange(tag, current, new)
    }

    /// The flow's counters (48-bit, wrapping).
    pub fn counters(&self, handle: FlowHandle) -> Option<FlowCounters> {
        let (record, tag) = self.live_record(handle)?;
        read_counters(record, tag)
    }

    /// Removes the handle's flow (both keys). Returns its value if this call removed it, `None`
    /// if it was already gone (removed by someone else, expired, or a stale handle).
    pub fn remove(&self, handle: FlowHandle) -> Option<V> {
        let record = self.records.get(handle.record as usize)?;
        let live = Seq(handle.seq);
        record
            .transition(live, live.with_status(Status::Dead))
            .ok()?;
        let body = self.owned_body(record);
        self.retract_published(handle.record, &body);
        self.free_record(handle.record, live);
        Some(body.value)
    }

    /// The body of a record this thread owns (status `Writing`, `Dead`, `Aborted` or `Clashed`
    /// and moved there by this thread), which therefore cannot change under it.
    pub(crate) fn owned_body(&self, record: &Record<K, V>) -> Body<K, V> {
        match record.read_body(Ordering::Acquire) {
            Some((_, body)) => body,
            None => unreachable!("an owned, written record always has a readable body"),
        }
    }

    /// Clears both published slots of a record this thread owns.
    pub(crate) fn retract_published(&self, record: u32, body: &Body<K, V>) {
        for side in [Side::Lan, Side::Uplink] {
            let hash = self.hash(&body.keys[side.index()]);
            let word = SlotWord::new(hash, record, side);
            if let Some(position) = self.index.position_of(hash, word) {
                self.index.retract(hash, word, position);
            }
        }
    }

    /// Claims a free record for a new incarnation. The caller has already reserved one in
    /// `occupied`, and a record's reservation is released only after it is back on the free
    /// stack, so the stack holds a record for every outstanding reservation.
    pub(crate) fn claim_record(&self) -> (u32, Seq) {
        loop {
            let Some(number) = self.free.pop(&self.records) else {
                // Unreachable by the counting argument above; never spin on it.
                core::hint::spin_loop();
                continue;
            };
            let record = &self.records[number as usize];
            let seq = record.load_seq(Ordering::Relaxed);
            debug_assert_eq!(seq.status(), Status::Free);
            let claimed = seq.next_incarnation();
            record.seq.store(claimed.0, Ordering::SeqCst);
            let end = number as usize + 1;
            if end > self.used_extent.load(Ordering::Relaxed) {
                self.used_extent.fetch_max(end, Ordering::Relaxed);
            }
            return (number, claimed);
        }
    }

    /// Returns a record this thread owns to the free pool and releases its reservation.
    pub(crate) fn free_record(&self, record: u32, seq: Seq) {
        self.records[record as usize]
            .seq
            .store(seq.with_status(Status::Free).0, Ordering::SeqCst);
        self.free.push(&self.records, record);
        self.occupied.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The counters of the incarnation with `tag`, or `None` if the record moved on.
pub(crate) fn read_counters<K, V>(record: &Record<K, V>, tag: u64) -> Option<FlowCounters> {
    Some(FlowCounters {
        packets: [record.packets[0].load(tag)?, record.packets[1].load(tag)?],
        bytes: [record.bytes[0].load(tag)?, record.bytes[1].load(tag)?],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::{InsertError, Insertion};

    fn table(capacity: usize) -> FlowTable<u64, u64> {
        FlowTable::with_capacity(capacity).expect("valid capacity")
    }

    fn inserted(outcome: Result<Insertion<u64>, InsertError>) -> FlowHandle {
        match outcome {
            Ok(Insertion::Inserted(handle)) => handle,
            other => panic!("expected Inserted, got {other:?}"),
        }
    }

    #[test]
    fn capacity_bounds_are_enforced() {
        assert!(FlowTable::<u64, u64>::with_capacity(0).is_err());
        assert!(
            FlowTable::<u64, u64>::with_capacity(FlowTable::<u64, u64>::MAX_CAPACITY + 1).is_err()
        );
        assert_eq!(table(1000).capacity(), 1000);
    }

    #[test]
    fn both_keys_reach_one_record_and_report_their_side() {
        let t = table(16);
        let handle = inserted(t.insert_if_absent(10, 20, 77, 5));
        let lan = t.lookup(&10).expect("lan key");
        let uplink = t.lookup(&20).expect("uplink key");
        assert_eq!((lan.handle, lan.side, lan.value), (handle, Side::Lan, 77));
        assert_eq!(
            (uplink.handle, uplink.side, uplink.value),
            (handle, Side::Uplink, 77)
        );
        assert!(t.lookup(&30).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn per_packet_updates_land_on_the_flow() {
        let t = table(16);
        let handle = inserted(t.insert_if_absent(1, 2, 3, 1_000));
        assert!(t.record_packet(handle, Side::Lan, 60, 1_500));
        assert!(t.record_packet(handle, Side::Uplink, 1500, 2_000));
        assert!(t.record_packet(handle, Side::Uplink, 40, 2_100));
        let counters = t.counters(handle).expect("live");
        assert_eq!(counters.packets, [1, 2]);
        assert_eq!(counters.bytes, [60, 1540]);
        assert_eq!(counters.bytes_from(Side::Uplink), 1540);
        assert_eq!(t.last_seen_ms(handle, 3_000), Some(2_100));
        assert_eq!(t.protocol_state(handle), Some(0));
        assert_eq!(t.compare_exchange_protocol_state(handle, 0, 9), Some(Ok(0)));
        assert_eq!(
            t.compare_exchange_protocol_state(handle, 0, 5),
            Some(Err(9))
        );
        assert_eq!(t.value(handle), Some(3));
    }

    #[test]
    fn removed_flow_is_gone_and_its_stale_handle_is_inert() {
        let t = table(1);
        let old = inserted(t.insert_if_absent(1, 2, 3, 0));
        assert_eq!(t.remove(old), Some(3));
        assert_eq!(t.remove(old), None, "removed exactly once");
        assert!(t.lookup(&1).is_none() && t.lookup(&2).is_none());
        assert!(t.is_empty());
        // The single record is reused by the next flow: the old handle must not touch it.
        let new = inserted(t.insert_if_absent(4, 5, 6, 0));
        assert_eq!(new.record(), old.record());
        assert_ne!(new, old);
        assert!(!t.record_packet(old, Side::Lan, 100, 1));
        assert!(!t.touch(old, 1));
        assert_eq!(t.compare_exchange_protocol_state(old, 0, 1), None);
        assert_eq!(t.value(old), None);
        assert_eq!(t.remove(old), None);
        assert_eq!(t.counters(new), Some(FlowCounters::default()));
        assert_eq!(t.protocol_state(new), Some(0));
        assert_eq!(t.lookup(&4).map(|f| f.value), Some(6));
    }

    #[test]
    fn memory_per_flow_matches_the_documented_figure() {
        // 16-byte keys, 32-byte value: the configuration the crate docs quote.
        let t: FlowTable<[u32; 4], [u64; 4]> = FlowTable::with_capacity(1 << 16).expect("valid");
        assert_eq!(size_of::<Record<[u32; 4], [u64; 4]>>(), 112);
        assert!(
            t.memory_per_flow() <= 128,
            "{} B per flow",
            t.memory_per_flow()
        );
    }
}
