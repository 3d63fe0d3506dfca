//! A lock-free concurrent flow table: fixed capacity, two keys per flow, seqlocked immutable
//! values, atomically updated per-packet state, and incremental expiry.
//!
//! Every datapath worker looks up every packet here, and a flow's return traffic may arrive on any
//! worker's queue, so one table is shared by all workers and nothing on the read path waits.
//!
//! ```
//! use flowpin_flowtable::{FlowTable, Insertion, Side};
//!
//! // Keys: any `Copy + Eq + Hash` type (the datapath uses its 5-tuple); values: any `Copy` type.
//! let table: FlowTable<(u8, u32, u32, u16, u16), [u8; 32]> = FlowTable::with_capacity(1024)?;
//! let lan = (17, 0x0a00_0002, 0xc633_6407, 40000, 53);
//! let uplink = (17, 0xc633_6407, 0xcb00_7101, 53, 61000);
//! let inserted = table.insert_if_absent(lan, uplink, [7; 32], 1_000)?;
//! assert!(matches!(inserted, Insertion::Inserted(_)));
//! let reply = table.lookup(&uplink).expect("reachable by its uplink-side key");
//! assert_eq!((reply.side, reply.value), (Side::Uplink, [7; 32]));
//! assert!(table.record_packet(reply.handle, Side::Uplink, 120, 1_005));
//! let mut released = Vec::new();
//! table.sweep(400_000, 1024, |_, _, last_seen| 400_000 - last_seen > 300_000, |value| released.push(*value));
//! assert_eq!(released, vec![[7; 32]]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Design
//!
//! **Records.** All `capacity` records are allocated at construction, inline in one array, and
//! never freed while the table lives. A record holds a 32-bit *sequence word* (a 29-bit generation
//! and a 3-bit status: `Free`, `Writing`, `Pending`, `Live`, `Dead`, `Aborted`, `Clashed`), the
//! low 32 bits of the last-seen time, the protocol-state word, packet and byte counters per
//! direction, and the *body*: both keys and the value `V`. The body is written only in status
//! `Writing` by the thread that claimed the record, and read with a seqlock: read the sequence
//! word, copy the body, fence, re-read; the copy counts only if the generation did not move (a
//! torn copy is dropped while still `MaybeUninit`). So a reader copies `V` out and knows it is the
//! value of the flow it looked up, never a torn one and never one of a later flow in that record.
//!
//! **Index.** Keys are found through an index of 64-byte buckets (one cache line): 15 slot words
//! of 32 bits plus an overflow counter. A slot word packs a 6-bit tag of the key's hash, the
//! record number (25 bits) and the key's side (LAN or uplink). A key lives in its home bucket or,
//! if that is full, in a following one; every bucket passed over counts the overflowing keys, so a
//! probe stops at the first bucket whose counter is zero (almost always the home bucket: the index
//! is sized for an average of 9 keys per bucket at full capacity). Hashing is foldhash with a
//! random seed per table (and per process), so nobody outside can aim collisions; the home bucket
//! comes from a multiply-shift of the hash's low bits, the tag from its top bits. Slots never move.
//!
//! **Lookups** (`lookup`, `lookup_batch`) are wait-free: they scan a bounded probe path, compare
//! tags, and for each tag match copy the record's body with the seqlock and compare the key on the
//! slot's side; no stores, no retries (a record that changed generation mid-copy is no longer the
//! flow, so skipping it is a correct miss). `lookup_batch` hashes a round of 16 keys and prefetches
//! their home buckets, then finds each first tag match and prefetches its record, then verifies.
//!
//! **Inserts** (`insert_if_absent`) are lock-free. The inserter claims a free record (a reservation
//! counter makes `Full` a fast, exact answer; the free records form a lock-free tagged Treiber
//! stack threaded through the records themselves, so claiming is O(1) even when nearly full),
//! writes the body, publishes both slot words, moves the
//! record to `Pending`, and *resolves* it: it scans the LAN key's probe path for other records
//! with the same LAN key and the uplink key's path for records with the same uplink key, then
//! decides `Pending -> Live | Aborted | Clashed` by compare-and-swap of the sequence word.
//! - a `Live` rival with the same LAN key: this record is `Aborted`; the inserter retracts its
//!   slots and returns `Existing(winner)` (with the winner's value);
//! - a `Pending` rival with the same LAN key: priority goes to the higher record number. A lower
//!   rival is aborted by compare-and-swap; a higher rival is *helped*: the resolver runs the same
//!   resolution for it first. So nobody waits for anybody: the highest pending record is decided in
//!   a bounded number of steps by whichever thread gets there, which is what makes inserts
//!   lock-free and not merely obstruction-free;
//! - a `Pending` or `Live` rival with the same uplink key and a different LAN key: `Clashed`, and
//!   the insert fails with [`InsertError::KeyClash`] (a NAT port collision is never merged);
//! - otherwise `Live`.
//!
//! *Why two records with one LAN key cannot both go live.* Each goes live only after a scan that
//! started after both its slots were published and it became `Pending`; slot publication, status
//! stores and scans are sequentially consistent. By the store-buffering argument, of two such
//! records A and B at least one's scan sees the other's slot while the other is at least
//! `Pending`. If A's scan sees B `Live`, A aborts. If it sees B `Pending` with lower priority, A
//! aborts B by compare-and-swap before going live (if that fails because B went live first, A
//! rescans and aborts itself). If B has higher priority, A does not go live in that pass. So the
//! first-packet race yields exactly one flow, and the losers get it. The same argument, with
//! "abort myself on any pending or live rival", gives at most one owner per uplink key.
//!
//! **Removal** (`remove`, `sweep`) is one compare-and-swap `Live -> Dead` of the exact sequence
//! word the handle carries (so a flow is removed, and its value handed back, exactly once), then
//! the remover retracts both slot words (clearing a slot it owns, then lowering the overflow
//! counters on its path) and only then stores `Free`. `sweep(now, max_records, is_expired,
//! on_removed)` visits at most `max_records` records from a shared cursor (concurrent sweepers get
//! disjoint runs) and gives every removed flow's value to `on_removed`, where the datapath releases
//! its NAT port.
//!
//! # Reclamation: why no use-after-free and no ABA
//!
//! - *No use-after-free*: memory is never freed while the table exists; a stale record number
//!   (from a slot read just before it was retracted, or from an old handle) always points at a
//!   valid record, at worst holding another flow.
//! - *No ABA on reads*: every read of a record is validated by its generation; the generation
//!   changes whenever a record starts a new incarnation, so a reader can never take the body of a
//!   later flow for the one it found (the 29-bit generation would have to wrap, i.e. the record be
//!   reused 2^29 times, during one copy of a few dozen bytes).
//! - *No ABA on updates*: a handle is the record number plus the full sequence word of the live
//!   incarnation. Removal is a compare-and-swap on that word. The per-packet words (protocol state,
//!   counters) carry the low 16 bits of the generation in their top bits and are updated only by
//!   compare-and-swap against that tag, so an update through a stale handle, even one preempted
//!   between its check and its update while the record was freed and reused, is dropped instead of
//!   landing on the new flow (a reuse count that is an exact multiple of 65,536 during that
//!   preemption is the only alias). The last-seen store is not guarded: the worst a stale handle
//!   can do is make a new flow look seen a moment ago.
//! - *No ABA in the index*: a record owns at most one slot per side; its owner retracts its own
//!   slots before the record can be freed, so a slot word is never cleared by anyone but the owner
//!   of the incarnation that published it.
//!
//! # Memory per flow
//!
//! `size_of::<Record>() = 48 + 2 * size_of::<K>() + size_of::<V>()` (rounded to the alignment),
//! plus the index: 64 bytes per bucket, `ceil(2 * capacity / 9)` buckets, i.e. 14.2 bytes per flow
//! for both keys. With the datapath's 14-byte 5-tuple key:
//!
//! | value size | record | index | per flow |
//! |---|---|---|---|
//! | 32 B | 112 B | 14.2 B | **126.2 B** (the ≤ 128 B target; checked by a unit test) |
//! | 48 B | 128 B | 14.2 B | 142.2 B |
//! | 84 B (flowpin's `FlowValue` today) | 160 B | 14.2 B | 174.2 B |
//!
//! [`FlowTable::memory_per_flow`] reports the figure for the actual `K` and `V`. Nothing allocates
//! after construction.
//!
//! # Limits and contracts
//!
//! - Capacity 1 ..= 2^25 flows ([`FlowTable::MAX_CAPACITY`]). When every record is in use, insert
//!   fails with [`InsertError::Full`]; live flows are never evicted. A record is counted until its
//!   remover has retracted its keys (microseconds), so a table at exactly full capacity can answer
//!   `Full` for that instant; size it with a little slack. Far rarer: if every bucket on a key's
//!   probe path were full the insert also answers `Full` (it cannot happen at the sizing above
//!   without a hash collision attack, which the random seed prevents).
//! - Time is an argument everywhere (`now_ms`, milliseconds since any epoch). Last-seen is stored
//!   as its low 32 bits and rebuilt relative to `now`; ages up to 2^31 ms (24.8 days) are exact.
//! - The protocol-state word has 48 bits ([`FlowTable::PROTOCOL_STATE_MAX`]) and starts at 0;
//!   counters have 48 bits and wrap.
//! - Lookups of a key that is one flow's LAN key and another flow's uplink key return whichever
//!   is found first; the datapath's keys of the two directions do not overlap.
//! - The seqlock copies bodies with volatile reads that may overlap a write. That is the standard
//!   seqlock technique (as in crossbeam's `AtomicCell` fallback); Rust's memory model formally
//!   calls such a race undefined, which is why the copy stays `MaybeUninit` until validated.
//! - `unsafe` code lives in three places, each block with its `// SAFETY:` argument: the record
//!   body's volatile write and seqlocked read (`record.rs`, plus `Sync` for the record), the
//!   fixed array all records and buckets live in (`memory.rs`: one allocation at construction,
//!   its initialisation, slice access, deallocation, the huge-page `madvise` hint and `Send` /
//!   `Sync`), and the prefetch hint of `lookup_batch` (`batch.rs`).
//!
//! # Tests
//!
//! - `cargo test -p flowpin-flowtable`: unit tests beside the code; `tests/concurrency.rs`
//!   (stress against a locked `HashMap` oracle, the 128-thread first-packet race, full table under
//!   concurrent inserts, expiry under concurrent batch lookups with stale-handle checks);
//!   `tests/operations.rs` (proptest over random operation sequences against a model);
//!   `tests/no_allocation.rs` (no operation allocates after construction, under a counting
//!   allocator).
//! - `RUSTFLAGS="--cfg shuttle" cargo test -p flowpin-flowtable --release --test shuttle_model`:
//!   the real table code with shuttle's atomics, under random and PCT schedulers (insert races,
//!   uplink clashes, stale handles after reuse, sweep vs lookups vs re-insert).
//! - `cargo bench -p flowpin-flowtable --bench versus`: side-by-side with dashmap and papaya.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

#[allow(unsafe_code)] // the raw core: see the crate doc's list of unsafe places
mod batch;
mod free_list;
mod guarded;
mod handle;
mod index;
mod insert;
mod live_flows;
#[allow(unsafe_code)] // the raw core: see the crate doc's list of unsafe places
mod memory;
#[allow(unsafe_code)] // the raw core: see the crate doc's list of unsafe places
mod record;
mod slot;
mod status;
mod sweep;
mod sync;
mod table;

pub use handle::{
    FlowCounters, FlowHandle, Found, InsertError, Insertion, LiveFlow, Side, SweepStats,
};
pub use live_flows::LiveFlows;
pub use table::{CapacityError, FlowTable};
