//! Property test: random operation sequences on one thread against a `HashMap` model of the
//! table's contract (insert-if-absent with uplink clashes and a full table, lookups by either key,
//! removal, packets, protocol state, a full expiry sweep).

use flowpin_flowtable::{FlowHandle, FlowTable, InsertError, Insertion, Side};
use proptest::prelude::*;
use std::collections::HashMap;

const CAPACITY: usize = 8;
/// LAN keys are 0..12 and uplink keys 100..112, so the two never collide with each other but
/// uplink keys do collide between flows (clashes) and LAN keys repeat (existing flows).
const LAN_KEYS: u32 = 12;
const UPLINK_BASE: u32 = 100;

#[derive(Clone, Debug)]
enum Operation {
    Insert { lan: u32, uplink: u32, value: u32 },
    Lookup { key: u32 },
    Remove { lan: u32 },
    Packet { key: u32, bytes: u16 },
    SetState { lan: u32, state: u64 },
    Advance { millis: u16 },
    Sweep { idle_limit: u16 },
}

fn operation() -> impl Strategy<Value = Operation> {
    let key = prop_oneof![0..LAN_KEYS, UPLINK_BASE..UPLINK_BASE + LAN_KEYS];
    prop_oneof![
        4 => (0..LAN_KEYS, UPLINK_BASE..UPLINK_BASE + LAN_KEYS, any::<u32>())
            .prop_map(|(lan, uplink, value)| Operation::Insert { lan, uplink, value }),
        3 => key.clone().prop_map(|key| Operation::Lookup { key }),
        2 => (0..LAN_KEYS).prop_map(|lan| Operation::Remove { lan }),
        2 => (key, any::<u16>()).prop_map(|(key, bytes)| Operation::Packet { key, bytes }),
        1 => (0..LAN_KEYS, 0..1u64 << 48).prop_map(|(lan, state)| Operation::SetState { lan, state }),
        1 => any::<u16>().prop_map(|millis| Operation::Advance { millis }),
        1 => any::<u16>().prop_map(|idle_limit| Operation::Sweep { idle_limit }),
    ]
}

#[derive(Clone, Copy, Debug)]
struct ModelFlow {
    uplink: u32,
    value: u32,
    handle: FlowHandle,
    last_seen: u64,
    state: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
}

/// Finds the model flow that owns `key` on either side.
fn owner(model: &HashMap<u32, ModelFlow>, key: u32) -> Option<(u32, Side)> {
    if key < UPLINK_BASE {
        model.contains_key(&key).then_some((key, Side::Lan))
    } else {
        model
            .iter()
            .find(|(_, flow)| flow.uplink == key)
            .map(|(lan, _)| (*lan, Side::Uplink))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn table_follows_the_model(operations in proptest::collection::vec(operation(), 1..120)) {
        let table: FlowTable<u32, u32> = FlowTable::with_capacity(CAPACITY).expect("capacity");
        let mut model: HashMap<u32, ModelFlow> = HashMap::new();
        let mut now = 1_000u64;
        for operation in operations {
            match operation {
                Operation::Insert { lan, uplink, value } => {
                    let outcome = table.insert_if_absent(lan, uplink, value, now);
                    let clash = model.iter().any(|(other, flow)| *other != lan && flow.uplink == uplink);
                    match (outcome, model.get(&lan)) {
                        (Ok(Insertion::Existing(found)), Some(flow)) => {
                            prop_assert_eq!((found.handle, found.value, found.side), (flow.handle, flow.value, Side::Lan));
                        }
                        (Err(InsertError::KeyClash), None) => prop_assert!(clash),
                        (Err(InsertError::Full), None) => prop_assert_eq!(model.len(), CAPACITY),
                        (Ok(Insertion::Inserted(handle)), None) => {
                            prop_assert!(!clash && model.len() < CAPACITY);
                            model.insert(lan, ModelFlow { uplink, value, handle, last_seen: now, state: 0, packets: [0; 2], bytes: [0; 2] });
                        }
                        (outcome, expected) => prop_assert!(false, "insert {lan}: {outcome:?} vs {expected:?}"),
                    }
                }
                Operation::Lookup { key } => {
                    let found = table.lookup(&key);
                    let expected = owner(&model, key).map(|(lan, side)| (model[&lan].handle, side, model[&lan].value));
                    prop_assert_eq!(found.map(|found| (found.handle, found.side, found.value)), expected);
                }
                Operation::Remove { lan } => {
                    if let Some(flow) = model.remove(&lan) {
                        prop_assert_eq!(table.remove(flow.handle), Some(flow.value));
                        prop_assert_eq!(table.remove(flow.handle), None);
                    }
                }
                Operation::Packet { key, bytes } => {
                    if let Some((lan, side)) = owner(&model, key) {
                        let found = table.lookup(&key).expect("model says present");
                        prop_assert!(table.record_packet(found.handle, side, u64::from(bytes), now));
                        let flow = model.get_mut(&lan).expect("present");
                        flow.last_seen = now;
                        flow.packets[side as usize] += 1;
                        flow.bytes[side as usize] += u64::from(bytes);
                    }
                }
                Operation::SetState { lan, state } => {
                    if let Some(flow) = model.get_mut(&lan) {
                        let swapped = table.compare_exchange_protocol_state(flow.handle, flow.state, state);
                        prop_assert_eq!(swapped, Some(Ok(flow.state)));
                        flow.state = state;
                    }
                }
                Operation::Advance { millis } => now += u64::from(millis),
                Operation::Sweep { idle_limit } => {
                    let mut released = Vec::new();
                    table.sweep(
                        now,
                        CAPACITY,
                        |_, _, last_seen| now - last_seen > u64::from(idle_limit),
                        |value| released.push(*value),
                    );
                    let mut expected: Vec<u32> = model.values()
                        .filter(|flow| now - flow.last_seen > u64::from(idle_limit))
                        .map(|flow| flow.value)
                        .collect();
                    model.retain(|_, flow| now - flow.last_seen <= u64::from(idle_limit));
                    released.sort_unstable();
                    expected.sort_unstable();
                    prop_assert_eq!(released, expected);
                }
            }
            prop_assert_eq!(table.len(), model.len());
        }
        // Final state: the listed live flows agree with the model, field by field.
        let mut listed: Vec<_> = table.live_flows(now).map(|flow| {
            (flow.lan_key, flow.uplink_key, flow.value, flow.handle, flow.last_seen_ms, flow.protocol_state, flow.counters.packets, flow.counters.bytes)
        }).collect();
        let mut expected: Vec<_> = model.iter().map(|(lan, flow)| {
            (*lan, flow.uplink, flow.value, flow.handle, flow.last_seen, flow.state, flow.packets, flow.bytes)
        }).collect();
        listed.sort_unstable_by_key(|entry| entry.0);
        expected.sort_unstable_by_key(|entry| entry.0);
        prop_assert_eq!(listed, expected);
    }
}
