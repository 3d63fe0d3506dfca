//! Nothing allocates after construction: insert, both lookups, per-packet updates,
//! protocol-state changes, removal and the sweep run under a counting global allocator
//! (`allocation-counter`, which counts the measuring thread only, so the test harness's own
//! bookkeeping on its other threads cannot show up), and the allocation count must not move — including when the table is full and
//! an insert fails.

use flowpin_flowtable::{FlowTable, InsertError, Insertion, Side};

/// A 5-tuple-sized key: (protocol, source, destination, source port, destination port).
type Key = (u8, u32, u32, u16, u16);

fn lan(flow: u32) -> Key {
    (17, 0x0a00_0000 | flow, 0xc633_6407, 40_000, 53)
}

fn uplink(flow: u32) -> Key {
    (17, 0xc633_6407, 0xcb00_7101, 53, 10_000 + flow as u16)
}

#[test]
fn no_operation_allocates_after_construction() {
    const CAPACITY: u32 = 1024;
    let table: FlowTable<Key, [u8; 32]> =
        FlowTable::with_capacity(CAPACITY as usize).expect("capacity");
    let mut batch_keys = [lan(0); 16];
    let mut batch_found = [None; 16];

    let change = allocation_counter::measure(|| {
        for round in 0..3u64 {
            let now = 1_000 * (round + 1);
            for flow in 0..CAPACITY {
                let inserted = table
                    .insert_if_absent(lan(flow), uplink(flow), [flow as u8; 32], now)
                    .expect("insert");
                assert!(matches!(inserted, Insertion::Inserted(_)));
            }
            assert_eq!(
                table.insert_if_absent(lan(CAPACITY), uplink(CAPACITY), [0; 32], now),
                Err(InsertError::Full)
            );
            for flow in 0..CAPACITY {
                let found = table.lookup(&uplink(flow)).expect("hit");
                assert!(table.record_packet(found.handle, Side::Uplink, 64, now));
                let state = table.protocol_state(found.handle).expect("live");
                assert_eq!(
                    table.compare_exchange_protocol_state(found.handle, state, state + 1),
                    Some(Ok(state))
                );
            }
            for (index, key) in batch_keys.iter_mut().enumerate() {
                *key = lan(index as u32 * 7);
            }
            table.lookup_batch(&batch_keys, &mut batch_found);
            assert!(batch_found.iter().all(Option::is_some));
            let half = table.lookup(&lan(1)).expect("hit");
            assert_eq!(table.remove(half.handle), Some([1; 32]));
            let mut released = 0u32;
            while !table.is_empty() {
                table.sweep(now + 10_000, 128, |_, _, _| true, |_| released += 1);
            }
            assert_eq!(released, CAPACITY - 1);
        }
    });
    assert_eq!(
        change.count_total, 0,
        "the table allocated after construction: {change:?}"
    );
}
