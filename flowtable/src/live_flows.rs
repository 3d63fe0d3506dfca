//! A non-blocking iterator over copies of the live flows, for the control plane (`flowpin flows`,
//! failover walking one uplink's flows).
//!
//! It is weakly consistent: every flow live for the whole iteration is yielded exactly once;
//! flows inserted or removed meanwhile may or may not appear. Each yielded item is internally
//! consistent (keys and value of one incarnation; counters read while that incarnation was live).

use crate::guarded::tag_of;
use crate::handle::{FlowHandle, LiveFlow};
use crate::record::expand_last_seen;
use crate::status::Status;
use crate::sync::Ordering;
use crate::table::{FlowTable, read_counters};
use core::fmt;
use core::hash::Hash;

/// Iterator returned by [`FlowTable::live_flows`].
pub struct LiveFlows<'table, K, V> {
    table: &'table FlowTable<K, V>,
    next_record: usize,
    now_ms: u64,
}

impl<K, V> fmt::Debug for LiveFlows<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveFlows")
            .field("next_record", &self.next_record)
            .finish()
    }
}

impl<K, V> FlowTable<K, V>
where
    K: Copy + Eq + Hash,
    V: Copy,
{
    /// Iterates over copies of the live flows; `now_ms` is used to rebuild last-seen times.
    pub fn live_flows(&self, now_ms: u64) -> LiveFlows<'_, K, V> {
        LiveFlows {
            table: self,
            next_record: 0,
            now_ms,
        }
    }
}

impl<K, V> Iterator for LiveFlows<'_, K, V>
where
    K: Copy + Eq + Hash,
    V: Copy,
{
    type Item = LiveFlow<K, V>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(record) = self.table.records.get(self.next_record) {
            let number = self.next_record as u32;
            self.next_record += 1;
            let Some((seq, body)) = record.read_body(Ordering::Acquire) else {
                continue;
            };
            if seq.status() != Status::Live {
                continue;
            }
            let tag = tag_of(seq.generation());
            let last_seen = record.last_seen.load(Ordering::Relaxed);
            let (Some(protocol_state), Some(counters)) =
                (record.protocol_state.load(tag), read_counters(record, tag))
            else {
                continue; // removed and reused while we copied
            };
            let [lan_key, uplink_key] = body.keys;
            return Some(LiveFlow {
                handle: FlowHandle {
                    record: number,
                    seq: seq.0,
                },
                lan_key,
                uplink_key,
                value: body.value,
                protocol_state,
                last_seen_ms: expand_last_seen(self.now_ms, last_seen),
                counters,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::{FlowTable, Side};

    #[test]
    fn live_flows_lists_exactly_the_live_flows() {
        let t: FlowTable<u64, u64> = FlowTable::with_capacity(64).expect("valid");
        let mut handles = Vec::new();
        for flow in 0..10u64 {
            handles.push(
                t.insert_if_absent(flow, 100 + flow, 1_000 + flow, 7)
                    .expect("room")
                    .handle(),
            );
        }
        t.remove(handles[3]).expect("live");
        t.record_packet(handles[4], Side::Uplink, 99, 8);
        let mut seen: Vec<_> = t.live_flows(10).collect();
        seen.sort_by_key(|flow| flow.lan_key);
        assert_eq!(
            seen.iter().map(|flow| flow.lan_key).collect::<Vec<_>>(),
            [0, 1, 2, 4, 5, 6, 7, 8, 9]
        );
        for flow in &seen {
            assert_eq!(
                (flow.uplink_key, flow.value),
                (100 + flow.lan_key, 1_000 + flow.lan_key)
            );
        }
        let four = seen.iter().find(|flow| flow.lan_key == 4).expect("listed");
        assert_eq!(
            (four.last_seen_ms, four.counters.bytes, four.handle),
            (8, [0, 99], handles[4])
        );
    }
}
