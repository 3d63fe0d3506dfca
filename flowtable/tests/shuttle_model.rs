//! Model check of the slot protocol's races with `shuttle`: the real table code, with its
//! atomics replaced by shuttle's (see `src/sync.rs`), run under randomised and PCT schedulers
//! that preempt at every atomic operation.
//!
//! Run with: `RUSTFLAGS="--cfg shuttle" cargo test -p flowpin-flowtable --release --test shuttle_model`
#![cfg(shuttle)]

use flowpin_flowtable::{FlowTable, InsertError, Insertion, Side};
use shuttle::thread;
use std::sync::Arc;

/// Random schedules per scenario, and PCT schedules (which find depth-3 bugs with a known
/// probability) per scenario.
const RANDOM_SCHEDULES: usize = 20_000;
const PCT_SCHEDULES: usize = 20_000;

fn check(scenario: fn()) {
    shuttle::check_random(scenario, RANDOM_SCHEDULES);
    shuttle::check_pct(scenario, PCT_SCHEDULES, 3);
}

/// Values name their LAN key so readers can check they got the right flow.
fn value_for(lan: u64, inserter: u64) -> (u64, u64) {
    (lan, inserter)
}

#[test]
fn first_packet_race_has_exactly_one_winner() {
    check(|| {
        let table = Arc::new(FlowTable::<u64, (u64, u64)>::with_capacity(4).expect("capacity"));
        // Inserters 0 and 1 computed the same mapping (EIM); inserter 2 picked another port.
        let inserters: Vec<_> = (0..3u64)
            .map(|inserter| {
                let table = Arc::clone(&table);
                thread::spawn(move || {
                    let uplink = if inserter == 2 { 201 } else { 200 };
                    table
                        .insert_if_absent(1, uplink, value_for(1, inserter), 0)
                        .expect("room")
                })
            })
            .collect();
        let reader = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                for key in [1, 200, 201] {
                    if let Some(found) = table.lookup(&key) {
                        assert_eq!(found.value.0, 1, "a lookup returned a foreign value");
                        let side = if key == 1 { Side::Lan } else { Side::Uplink };
                        assert_eq!(found.side, side);
                    }
                }
            })
        };
        let outcomes: Vec<Insertion<(u64, u64)>> = inserters
            .into_iter()
            .map(|inserter| inserter.join().expect("inserter"))
            .collect();
        reader.join().expect("reader");
        let winners: Vec<_> = outcomes
            .iter()
            .filter(|outcome| outcome.is_inserted())
            .collect();
        assert_eq!(winners.len(), 1, "exactly one inserter wins: {outcomes:?}");
        let winner = winners[0].handle();
        assert!(outcomes.iter().all(|outcome| outcome.handle() == winner));
        let winner_value = table.value(winner).expect("live");
        for outcome in &outcomes {
            if let Insertion::Existing(found) = outcome {
                assert_eq!(found.value, winner_value);
            }
        }
        assert_eq!(table.len(), 1);
        let uplink = if winner_value.1 == 2 { 201 } else { 200 };
        let loser_uplink = if uplink == 200 { 201 } else { 200 };
        assert_eq!(
            table.lookup(&uplink).map(|found| found.handle),
            Some(winner)
        );
        assert!(table.lookup(&loser_uplink).is_none());
    });
}

#[test]
fn uplink_key_clash_never_yields_two_owners() {
    check(|| {
        let table = Arc::new(FlowTable::<u64, (u64, u64)>::with_capacity(4).expect("capacity"));
        let inserters: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|lan| {
                let table = Arc::clone(&table);
                thread::spawn(move || table.insert_if_absent(lan, 300, value_for(lan, 0), 0))
            })
            .collect();
        let outcomes: Vec<_> = inserters
            .into_iter()
            .map(|inserter| inserter.join().expect("inserter"))
            .collect();
        let inserted: Vec<_> = outcomes.iter().filter(|outcome| outcome.is_ok()).collect();
        assert!(
            inserted.len() <= 1,
            "two flows own one uplink key: {outcomes:?}"
        );
        for outcome in &outcomes {
            if let Err(error) = outcome {
                assert_eq!(*error, InsertError::KeyClash);
            }
        }
        assert_eq!(
            table.len(),
            inserted.len(),
            "a clashing insert leaked its record"
        );
        match inserted.first() {
            Some(Ok(insertion)) => {
                assert_eq!(
                    table.lookup(&300).map(|found| found.handle),
                    Some(insertion.handle())
                );
            }
            _ => assert!(table.lookup(&300).is_none()),
        }
    });
}

#[test]
fn stale_handle_never_touches_the_flow_that_reused_its_record() {
    check(|| {
        // One record: removing the flow and inserting another reuses it at once.
        let table = Arc::new(FlowTable::<u64, (u64, u64)>::with_capacity(1).expect("capacity"));
        let old = table
            .insert_if_absent(1, 101, value_for(1, 0), 0)
            .expect("room")
            .handle();
        let datapath = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                // A worker still holding the old flow's handle.
                table.record_packet(old, Side::Lan, 1_000, 5);
                let _ = table.compare_exchange_protocol_state(old, 0, 7);
                if let Some(value) = table.value(old) {
                    assert_eq!(value, value_for(1, 0));
                }
            })
        };
        let control = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                assert_eq!(table.remove(old), Some(value_for(1, 0)));
                table
                    .insert_if_absent(2, 102, value_for(2, 0), 9)
                    .expect("room")
                    .handle()
            })
        };
        datapath.join().expect("datapath");
        let new = control.join().expect("control");
        assert_eq!(new.record(), old.record());
        let counters = table.counters(new).expect("live");
        assert_eq!((counters.packets, counters.bytes), ([0, 0], [0, 0]));
        assert_eq!(table.protocol_state(new), Some(0));
        assert_eq!(table.value(new), Some(value_for(2, 0)));
        assert!(table.lookup(&1).is_none());
    });
}

#[test]
fn sweep_races_lookups_and_reinserts_without_losing_track() {
    check(|| {
        let table = Arc::new(FlowTable::<u64, (u64, u64)>::with_capacity(2).expect("capacity"));
        table
            .insert_if_absent(1, 101, value_for(1, 0), 0)
            .expect("room");
        let sweeper = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                let mut released = Vec::new();
                table.sweep(10, 2, |_, _, _| true, |value| released.push(*value));
                released
            })
        };
        let reader = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                for key in [1, 101] {
                    if let Some(found) = table.lookup(&key) {
                        assert_eq!(found.value.0, 1);
                        table.record_packet(found.handle, found.side, 1, 10);
                    }
                }
            })
        };
        let inserter = {
            let table = Arc::clone(&table);
            thread::spawn(move || {
                table
                    .insert_if_absent(1, 101, value_for(1, 1), 10)
                    .expect("room")
            })
        };
        let released = sweeper.join().expect("sweeper");
        reader.join().expect("reader");
        let insertion = inserter.join().expect("inserter");
        let live: Vec<_> = table.live_flows(10).map(|flow| flow.value).collect();
        // Every flow ever inserted is either released exactly once or still live.
        let mut accounted = released.clone();
        accounted.extend(&live);
        accounted.sort_unstable();
        let mut expected = vec![value_for(1, 0)];
        if insertion.is_inserted() {
            expected.push(value_for(1, 1));
        }
        assert_eq!(accounted, expected, "released {released:?}, live {live:?}");
        assert!(live.len() <= 1, "one LAN key, one flow");
        assert_eq!(table.len(), live.len());
    });
}
