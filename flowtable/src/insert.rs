//! `insert_if_absent`: the first-packet race and the NAT-key clash, decided without locks.
//!
//! Protocol for one attempt (the crate docs carry the correctness argument):
//! 1. claim a free record (`Free -> Writing`, new generation), write both keys and the value;
//! 2. publish the LAN-side and the uplink-side slot words in the index;
//! 3. `Writing -> Pending` (sequentially consistent);
//! 4. *resolve* the record: scan the LAN key's probe path for other records with the same LAN key
//!    and the uplink key's path for other records with the same uplink key, then decide
//!    `Pending -> Live | Aborted | Clashed` by compare-and-swap. Priority between two pending
//!    records of one LAN key goes to the higher record number: a resolver aborts lower pending
//!    rivals and *helps* (resolves) higher ones instead of waiting for them, so the highest pending
//!    record always decides in a bounded number of steps: lock-free.
//!
//! The owner of an `Aborted` record retracts its slots, then returns the winner (`Existing`), or
//! retries with a new generation of the same record if the winner vanished in the meantime.

use crate::handle::{FlowHandle, Found, InsertError, Insertion, Side};
use crate::index::SlotPosition;
use crate::record::Body;
use crate::slot::{KeyHash, SlotWord};
use crate::status::{Seq, Status};
use crate::sync::Ordering;
use crate::table::FlowTable;
use core::hash::Hash;
use core::ops::ControlFlow;

/// What a resolver saw on a LAN-key probe path.
enum LanRival {
    /// A live flow owns the LAN key: the resolved record loses.
    Live,
    /// A pending record of higher priority: resolve it first.
    Higher(u32, Seq),
    /// A lower pending record could not be aborted because its status moved: rescan.
    Moved,
}

/// The decision taken for the incarnation `pending`, given the record's sequence word `now`
/// (which differs from `pending`). Only `Aborted` and `Clashed` mean "lost": `Dead`, `Free` or a
/// newer generation mean the flow went live and has been removed since, which can happen before
/// its inserter even returns (its record is then no longer the inserter's to touch).
fn decided_status(now: Seq, pending: Seq) -> Status {
    match now.status() {
        Status::Aborted | Status::Clashed if now.same_generation(pending) => now.status(),
        _ => Status::Live,
    }
}

impl<K, V> FlowTable<K, V>
where
    K: Copy + Eq + Hash,
    V: Copy,
{
    /// Inserts the flow `(lan_key, uplink_key) -> value` unless a live flow already has
    /// `lan_key`, in which case that flow is returned (`Existing`, with its value). Concurrent
    /// calls with one `lan_key` yield exactly one `Inserted`; the others get that flow.
    ///
    /// Errors: [`InsertError::Full`] when no record is free (nothing is evicted);
    /// [`InsertError::KeyClash`] when a flow with a different LAN key owns `uplink_key`.
    /// The new flow starts with last-seen `now_ms`, protocol state 0 and zero counters.
    pub fn insert_if_absent(
        &self,
        lan_key: K,
        uplink_key: K,
        value: V,
        now_ms: u64,
    ) -> Result<Insertion<V>, InsertError> {
        let lan_hash = self.hash(&lan_key);
        if let Some(found) = self.lookup_lan(&lan_key, lan_hash) {
            return Ok(Insertion::Existing(found));
        }
        if self.occupied.fetch_add(1, Ordering::SeqCst) >= self.capacity() {
            self.occupied.fetch_sub(1, Ordering::SeqCst);
            return Err(InsertError::Full);
        }
        let uplink_hash = self.hash(&uplink_key);
        let (number, mut seq) = self.claim_record();
        let record = &self.records[number as usize];
        record.write_flow(
            Body {
                keys: [lan_key, uplink_key],
                value,
            },
            now_ms,
        );
        let lan_word = SlotWord::new(lan_hash, number, Side::Lan);
        let uplink_word = SlotWord::new(uplink_hash, number, Side::Uplink);
        loop {
            let Some(positions) =
                self.publish_both((lan_hash, lan_word), (uplink_hash, uplink_word))
            else {
                self.free_record(number, seq);
                return Err(InsertError::Full);
            };
            record
                .seq
                .store(seq.with_status(Status::Pending).0, Ordering::SeqCst);
            let outcome = self.resolve(number, seq.with_status(Status::Pending));
            if outcome == Status::Live {
                return Ok(Insertion::Inserted(FlowHandle {
                    record: number,
                    seq: seq.with_status(Status::Live).0,
                }));
            }
            self.index.retract(lan_hash, lan_word, positions.0);
            self.index.retract(uplink_hash, uplink_word, positions.1);
            if outcome == Status::Clashed {
                self.free_record(number, seq);
                return Err(InsertError::KeyClash);
            }
            // Lost the LAN-key race. The winner is live, or was pending with priority and has
            // been resolved by now (possibly aborted in turn, then we try again).
            if let Some(found) = self.lookup_lan(&lan_key, lan_hash) {
                self.free_record(number, seq);
                return Ok(Insertion::Existing(found));
            }
            let retry = seq.next_incarnation();
            record.seq.store(retry.0, Ordering::SeqCst);
            record.reset_mutable(now_ms);
            seq = retry;
        }
    }

    /// A lookup that accepts only matches on the LAN side.
    fn lookup_lan(&self, key: &K, hash: KeyHash) -> Option<Found<V>> {
        self.index.probe(hash, Ordering::SeqCst, |word, _| {
            match (word.side(), self.live_match(word, key)) {
                (Side::Lan, Some(found)) => ControlFlow::Break(found),
                _ => ControlFlow::Continue(()),
            }
        })
    }

    fn publish_both(
        &self,
        (lan_hash, lan_word): (KeyHash, SlotWord),
        (uplink_hash, uplink_word): (KeyHash, SlotWord),
    ) -> Option<(SlotPosition, SlotPosition)> {
        let lan = self.index.publish(lan_hash, lan_word).ok()?;
        match self.index.publish(uplink_hash, uplink_word) {
            Ok(uplink) => Some((lan, uplink)),
            Err(_) => {
                self.index.retract(lan_hash, lan_word, lan);
                None
            }
        }
    }

    /// Decides the pending incarnation `pending` of record `number` (any thread may call this)
    /// and returns the decision: `Live`, `Aborted` or `Clashed`.
    fn resolve(&self, number: u32, pending: Seq) -> Status {
        let record = &self.records[number as usize];
        let Some((_, body)) = record.read_body(Ordering::SeqCst) else {
            return decided_status(record.load_seq(Ordering::SeqCst), pending);
        };
        loop {
            let now = record.load_seq(Ordering::SeqCst);
            if now != pending {
                return decided_status(now, pending);
            }
            match self.scan_lan_rivals(number, &body) {
                Some(LanRival::Live) => {
                    let _ = record.transition(pending, pending.with_status(Status::Aborted));
                    continue;
                }
                Some(LanRival::Higher(rival, rival_seq)) => {
                    self.resolve(rival, rival_seq);
                    continue;
                }
                Some(LanRival::Moved) => continue,
                None => {}
            }
            let decided = if self.uplink_key_taken(number, &body) {
                Status::Clashed
            } else {
                Status::Live
            };
            let _ = record.transition(pending, pending.with_status(decided));
        }
    }

    /// Scans the LAN key's probe path for other records with the same LAN key, aborting lower
    /// pending ones; reports the first reason the resolved record cannot go live yet.
    fn scan_lan_rivals(&self, number: u32, body: &Body<K, V>) -> Option<LanRival> {
        let lan_key = &body.keys[Side::Lan.index()];
        let hash = self.hash(lan_key);
        self.index.probe(hash, Ordering::SeqCst, |word, _| {
            let rival = word.record();
            if word.side() != Side::Lan || rival == number {
                return ControlFlow::Continue(());
            }
            let Some((seq, rival_body)) = self.records[rival as usize].read_body(Ordering::SeqCst)
            else {
                return ControlFlow::Continue(());
            };
            if rival_body.keys[Side::Lan.index()] != *lan_key {
                return ControlFlow::Continue(());
            }
            match seq.status() {
                Status::Live => ControlFlow::Break(LanRival::Live),
                Status::Pending if rival > number => {
                    ControlFlow::Break(LanRival::Higher(rival, seq))
                }
                Status::Pending => {
                    let aborted = seq.with_status(Status::Aborted);
                    match self.records[rival as usize].transition(seq, aborted) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(LanRival::Moved),
                    }
                }
                _ => ControlFlow::Continue(()),
            }
        })
    }

    /// Whether a pending or live record with a different LAN key owns the uplink key.
    fn uplink_key_taken(&self, number: u32, body: &Body<K, V>) -> bool {
        let [lan_key, uplink_key] = &body.keys;
        let hash = self.hash(uplink_key);
        self.index
            .probe(hash, Ordering::SeqCst, |word, _| {
                let rival = word.record();
                if word.side() != Side::Uplink || rival == number {
                    return ControlFlow::Continue(());
                }
                let taken = self.records[rival as usize]
                    .read_body(Ordering::SeqCst)
                    .is_some_and(|(seq, rival_body)| {
                        matches!(seq.status(), Status::Pending | Status::Live)
                            && rival_body.keys[Side::Uplink.index()] == *uplink_key
                            && rival_body.keys[Side::Lan.index()] != *lan_key
                    });
                if taken {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_insert_of_a_lan_key_returns_the_first_flow() {
        let t: FlowTable<u64, u64> = FlowTable::with_capacity(8).expect("valid");
        let first = t.insert_if_absent(1, 100, 11, 0).expect("room");
        assert!(first.is_inserted());
        match t.insert_if_absent(1, 200, 22, 0) {
            Ok(Insertion::Existing(found)) => {
                assert_eq!(
                    (found.handle, found.side, found.value),
                    (first.handle(), Side::Lan, 11)
                );
            }
            other => panic!("expected Existing, got {other:?}"),
        }
        assert!(
            t.lookup(&200).is_none(),
            "the loser's uplink key was not published"
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn uplink_key_owned_by_another_flow_is_a_clash() {
        let t: FlowTable<u64, u64> = FlowTable::with_capacity(8).expect("valid");
        t.insert_if_absent(1, 100, 11, 0).expect("room");
        assert_eq!(
            t.insert_if_absent(2, 100, 22, 0),
            Err(InsertError::KeyClash)
        );
        assert!(t.lookup(&2).is_none());
        assert_eq!(t.lookup(&100).map(|found| found.value), Some(11));
        assert_eq!(t.len(), 1, "the clashing insert released its record");
    }

    #[test]
    fn full_table_refuses_without_evicting() {
        let t: FlowTable<u64, u64> = FlowTable::with_capacity(1024).expect("valid");
        for flow in 0..1024u64 {
            t.insert_if_absent(flow, flow + 1_000_000, flow, 0)
                .expect("room");
        }
        assert_eq!(
            t.insert_if_absent(5_000, 6_000, 0, 0),
            Err(InsertError::Full)
        );
        for flow in 0..1024u64 {
            assert_eq!(
                t.lookup(&flow).map(|found| found.value),
                Some(flow),
                "flow {flow}"
            );
        }
        // An existing flow is still found when full.
        assert!(matches!(
            t.insert_if_absent(7, 8, 9, 0),
            Ok(Insertion::Existing(_))
        ));
        let handle = t.lookup(&3).expect("live").handle;
        t.remove(handle).expect("removed");
        assert!(
            t.insert_if_absent(5_000, 6_000, 0, 0)
                .expect("room again")
                .is_inserted()
        );
    }
}
