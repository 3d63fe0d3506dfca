//! Incremental expiry: each call visits a bounded run of records and removes the expired flows.
//!
//! The cursor wraps within the records ever used (never-used ones are always free), so a bounded
//! run meets live flows in proportion to the table's fill however empty its tail.
//! Concurrent sweepers take disjoint runs (a shared cursor advanced by `fetch_add`); removal is
//! the same `Live -> Dead` compare-and-swap as [`FlowTable::remove`], so a flow removed by a
//! handle and by the sweeper at once is removed, and reported, exactly once.

use crate::guarded::tag_of;
use crate::handle::SweepStats;
use crate::record::expand_last_seen;
use crate::status::Status;
use crate::sync::Ordering;
use crate::table::FlowTable;
use core::hash::Hash;

impl<K, V> FlowTable<K, V>
where
    K: Copy + Eq + Hash,
    V: Copy,
{
    /// Visits the next `max_records` records (wrapping around the records ever used, so never more
    /// than those) and removes every live
    /// flow for which `is_expired(&value, protocol_state, last_seen_ms)` says so, handing each
    /// removed flow's value to `on_removed` (release its NAT port there). Bounded work: at most
    /// `max_records` records and, per removed flow, two short index probes.
    ///
    /// A packet that refreshes a flow between the verdict and the removal is lost with the flow;
    /// the next packet creates a new one.
    pub fn sweep(
        &self,
        now_ms: u64,
        max_records: usize,
        mut is_expired: impl FnMut(&V, u64, u64) -> bool,
        mut on_removed: impl FnMut(&V),
    ) -> SweepStats {
        let extent = self.used_extent.load(Ordering::Relaxed).max(1);
        let visits = max_records.min(extent);
        let start = self.sweep_cursor.fetch_add(visits, Ordering::Relaxed) % extent;
        let mut stats = SweepStats {
            visited: visits,
            removed: 0,
        };
        for step in 0..visits {
            let number = (start + step) % extent;
            let record = &self.records[number];
            let Some((seq, body)) = record.read_body(Ordering::Acquire) else {
                continue;
            };
            if seq.status() != Status::Live {
                continue;
            }
            let Some(protocol_state) = record.protocol_state.load(tag_of(seq.generation())) else {
                continue;
            };
            let last_seen = expand_last_seen(now_ms, record.last_seen.load(Ordering::Relaxed));
            if !is_expired(&body.value, protocol_state, last_seen) {
                continue;
            }
            if record
                .transition(seq, seq.with_status(Status::Dead))
                .is_err()
            {
                continue; // refreshed into another state or removed by someone else
            }
            self.retract_published(number as u32, &body);
            self.free_record(number as u32, seq);
            on_removed(&body.value);
            stats.removed += 1;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use crate::FlowTable;

    #[test]
    fn sweep_removes_only_expired_flows_with_bounded_work() {
        let t: FlowTable<u64, u64> = FlowTable::with_capacity(100).expect("valid");
        for flow in 0..100u64 {
            let handle = t
                .insert_if_absent(flow, flow + 1_000, flow, 0)
                .expect("room")
                .handle();
            // Even flows stay fresh.
            if flow % 2 == 0 {
                t.touch(handle, 50_000);
            }
        }
        let mut released = Vec::new();
        let expired = |_: &u64, _: u64, last_seen: u64| 60_000 - last_seen > 30_000;
        let first = t.sweep(60_000, 30, expired, |value| released.push(*value));
        assert_eq!(first.visited, 30);
        assert!(first.removed <= 30);
        let rest = t.sweep(60_000, 70, expired, |value| released.push(*value));
        assert_eq!(first.removed + rest.removed, 50);
        released.sort_unstable();
        assert_eq!(
            released,
            (0..100).filter(|flow| flow % 2 == 1).collect::<Vec<_>>()
        );
        for flow in 0..100u64 {
            assert_eq!(
                t.lookup(&flow).is_some(),
                flow % 2 == 0,
                "lan key of {flow}"
            );
            assert_eq!(
                t.lookup(&(flow + 1_000)).is_some(),
                flow % 2 == 0,
                "uplink key of {flow}"
            );
        }
        assert_eq!(t.len(), 50);
    }

    /// A table a quarter full: every bounded run meets live flows, never a stretch of records no
    /// flow has used yet, and a run never visits more records than were ever used.
    #[test]
    fn sweep_runs_stay_within_the_records_ever_used() {
        let t: FlowTable<u64, u64> = FlowTable::with_capacity(4_096).expect("valid");
        for flow in 0..1_024u64 {
            t.insert_if_absent(flow, flow + 100_000, flow, 0)
                .expect("room");
        }
        let never = |_: &u64, _: u64, _: u64| false;
        for _ in 0..100 {
            let stats = t.sweep(0, 64, never, |_| {});
            assert_eq!(stats.visited, 64);
        }
        let mut seen = 0;
        let stats = t.sweep(
            0,
            10_000,
            |_, _, _| {
                seen += 1;
                false
            },
            |_| {},
        );
        assert_eq!(stats.visited, 1_024);
        assert_eq!(seen, 1_024, "every visited record holds a live flow");
    }
}
