//! Multi-threaded tests on the real table with OS threads: stress against a locked `HashMap`
//! oracle, the 128-thread first-packet race, a full table under concurrent inserts, and expiry
//! under concurrent lookups.

use flowpin_flowtable::{FlowHandle, FlowTable, InsertError, Insertion, Side};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// A datapath-shaped key: protocol, addresses and ports (13 bytes of data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FiveTuple {
    protocol: u8,
    source: [u8; 4],
    destination: [u8; 4],
    source_port: u16,
    destination_port: u16,
}

impl FiveTuple {
    fn lan(id: u64) -> Self {
        let [a, b, c, d, e, f, ..] = id.to_le_bytes();
        FiveTuple {
            protocol: 17,
            source: [10, a, b, c],
            destination: [198, 51, 100, 7],
            source_port: u16::from_le_bytes([d, e]),
            destination_port: u16::from(f) + 1,
        }
    }

    fn uplink(id: u64) -> Self {
        let mut key = Self::lan(id);
        key.destination = [key.source[1], key.source[2], key.source[3], 7];
        key.source = [203, 0, 113, 1];
        key
    }
}

/// A value that names its flow, so a reader can tell a right copy from a wrong or torn one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapping {
    flow: u64,
    version: u64,
    check: u64,
}

impl Mapping {
    fn new(flow: u64, version: u64) -> Self {
        Mapping {
            flow,
            version,
            check: flow.rotate_left(17) ^ version.wrapping_mul(0x9e37_79b9),
        }
    }

    fn is_intact(&self) -> bool {
        *self == Mapping::new(self.flow, self.version)
    }
}

type Table = FlowTable<FiveTuple, Mapping>;

#[test]
fn stress_matches_a_locked_hashmap_oracle() {
    const THREADS: u64 = 4;
    const FLOWS_PER_THREAD: u64 = 2_000;
    const OPERATIONS: usize = 60_000;
    // Room for every private and shared flow (4 x 2000 + 8) plus records in mid-removal.
    let table = Table::with_capacity(8 * 1024).expect("capacity");
    let oracle: Mutex<HashMap<u64, Mapping>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (table, oracle) = (&table, &oracle);
            scope.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(thread);
                let mut version = 0;
                for _ in 0..OPERATIONS {
                    // Private flows: results are deterministic, so each one is checked exactly.
                    let flow = thread * FLOWS_PER_THREAD + rng.random_range(0..FLOWS_PER_THREAD);
                    let expected = oracle.lock().expect("oracle").get(&flow).copied();
                    match rng.random_range(0..10) {
                        0..=3 => {
                            version += 1;
                            let mapping = Mapping::new(flow, version);
                            let outcome = table.insert_if_absent(
                                FiveTuple::lan(flow),
                                FiveTuple::uplink(flow),
                                mapping,
                                0,
                            );
                            match (outcome, expected) {
                                (Ok(Insertion::Inserted(_)), None) => {
                                    oracle.lock().expect("oracle").insert(flow, mapping);
                                }
                                (Ok(Insertion::Existing(found)), Some(old)) => {
                                    assert_eq!(found.value, old);
                                }
                                other => panic!("insert of {flow}: {other:?}"),
                            }
                        }
                        4..=5 => {
                            let found = table.lookup(&FiveTuple::lan(flow));
                            assert_eq!(found.map(|found| found.value), expected, "lookup {flow}");
                            if let Some(found) = found {
                                let removed = table.remove(found.handle);
                                assert_eq!(removed, expected);
                                oracle.lock().expect("oracle").remove(&flow);
                            }
                        }
                        _ => {
                            let side = if rng.random() {
                                Side::Lan
                            } else {
                                Side::Uplink
                            };
                            let key = match side {
                                Side::Lan => FiveTuple::lan(flow),
                                Side::Uplink => FiveTuple::uplink(flow),
                            };
                            let found = table.lookup(&key);
                            assert_eq!(found.map(|found| found.value), expected, "lookup {flow}");
                            if let Some(found) = found {
                                assert_eq!(found.side, side);
                                assert!(table.record_packet(found.handle, side, 64, 1));
                            }
                        }
                    }
                    // Shared flows: all threads race on the same few keys.
                    let shared = 1_000_000 + rng.random_range(0..8);
                    match table.insert_if_absent(
                        FiveTuple::lan(shared),
                        FiveTuple::uplink(shared),
                        Mapping::new(shared, thread),
                        0,
                    ) {
                        Ok(insertion) => {
                            let handle = insertion.handle();
                            if let Some(value) = table.value(handle) {
                                assert!(value.is_intact() && value.flow == shared);
                            }
                            if rng.random_range(0..4) == 0 {
                                table.remove(handle);
                            }
                        }
                        Err(error) => panic!("shared insert: {error}"),
                    }
                }
            });
        }
    });
    let oracle = oracle.into_inner().expect("oracle");
    let listed: HashMap<u64, Mapping> = table
        .live_flows(1)
        .filter(|flow| flow.value.flow < 1_000_000)
        .map(|flow| {
            assert_eq!(flow.lan_key, FiveTuple::lan(flow.value.flow));
            assert_eq!(flow.uplink_key, FiveTuple::uplink(flow.value.flow));
            (flow.value.flow, flow.value)
        })
        .collect();
    assert_eq!(listed, oracle);
    let shared_live = table
        .live_flows(1)
        .filter(|flow| flow.value.flow >= 1_000_000)
        .count();
    assert_eq!(
        table.len(),
        oracle.len() + shared_live,
        "no leaked or lost records"
    );
}

#[test]
fn first_packet_race_of_128_threads_yields_one_flow_and_128_answers() {
    const THREADS: usize = 128;
    let table = Table::with_capacity(1 << 10).expect("capacity");
    for round in 0..8u64 {
        // Even rounds: every thread computed the same NAT mapping (EIM); odd rounds: each thread
        // allocated its own port, so the losers' uplink keys must vanish.
        let same_mapping = round % 2 == 0;
        let barrier = Barrier::new(THREADS);
        let outcomes: Vec<(usize, Insertion<Mapping>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let (table, barrier) = (&table, &barrier);
                    scope.spawn(move || {
                        let uplink = if same_mapping {
                            round
                        } else {
                            round * 1_000 + thread as u64
                        };
                        barrier.wait();
                        let outcome = table
                            .insert_if_absent(
                                FiveTuple::lan(round),
                                FiveTuple::uplink(uplink),
                                Mapping::new(round, thread as u64),
                                round,
                            )
                            .expect("room and no clash");
                        // "Answer" the packet: account it on whichever flow won.
                        assert!(table.record_packet(outcome.handle(), Side::Lan, 100, round));
                        (thread, outcome)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("worker"))
                .collect()
        });
        let winners: Vec<_> = outcomes
            .iter()
            .filter(|(_, outcome)| outcome.is_inserted())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one inserter wins");
        let (winner_thread, winner) = winners[0];
        let winner_value = Mapping::new(round, *winner_thread as u64);
        for (_, outcome) in &outcomes {
            assert_eq!(outcome.handle(), winner.handle());
            if let Insertion::Existing(found) = outcome {
                assert_eq!(found.value, winner_value, "losers get the winner's value");
            }
        }
        let counters = table.counters(winner.handle()).expect("live");
        assert_eq!(
            counters.packets_from(Side::Lan),
            THREADS as u64,
            "every packet answered"
        );
        assert_eq!(
            table.len() as u64,
            round + 1,
            "one record per flow, none leaked"
        );
        if !same_mapping {
            let reachable = (0..THREADS as u64)
                .filter(|thread| {
                    table
                        .lookup(&FiveTuple::uplink(round * 1_000 + thread))
                        .is_some()
                })
                .count();
            assert_eq!(reachable, 1, "only the winner's uplink key is published");
        }
    }
}

#[test]
fn concurrent_inserts_into_a_full_table_fail_cleanly_and_evict_nothing() {
    const CAPACITY: usize = 4096;
    let table = Table::with_capacity(CAPACITY).expect("capacity");
    let inserted: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2u64)
            .map(|thread| {
                let table = &table;
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for flow in (0..3_000).map(|index| thread * 10_000 + index) {
                        match table.insert_if_absent(
                            FiveTuple::lan(flow),
                            FiveTuple::uplink(flow),
                            Mapping::new(flow, 0),
                            0,
                        ) {
                            Ok(outcome) => {
                                assert!(outcome.is_inserted());
                                mine.push(flow);
                            }
                            Err(error) => assert_eq!(error, InsertError::Full),
                        }
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("worker"))
            .collect()
    });
    let all: Vec<u64> = inserted.into_iter().flatten().collect();
    assert_eq!(all.len(), CAPACITY, "every record used, no more");
    assert_eq!(table.len(), CAPACITY);
    for flow in all {
        assert_eq!(
            table
                .lookup(&FiveTuple::lan(flow))
                .map(|found| found.value.flow),
            Some(flow)
        );
        assert!(table.lookup(&FiveTuple::uplink(flow)).is_some());
    }
}

#[test]
fn expiry_under_concurrent_lookups_never_shows_a_wrong_or_torn_flow() {
    const FLOWS: u64 = 256;
    // A record is counted until its remover has retracted its keys; the slack covers the few
    // that a concurrent sweep holds at any instant.
    let table = Table::with_capacity(FLOWS as usize + 4).expect("capacity");
    let clock = AtomicU64::new(1);
    let stop = AtomicBool::new(false);
    let inserted = AtomicU64::new(0);
    let released: Mutex<HashSet<(u64, u64)>> = Mutex::new(HashSet::new());
    let deadline = Instant::now() + Duration::from_millis(1_500);
    let stale_candidates: Mutex<Vec<FlowHandle>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        // Readers: every hit must be the flow looked up, intact, on the right side; packets
        // through possibly stale handles must never land on another flow.
        for reader in 0..2u64 {
            let (table, stop) = (&table, &stop);
            scope.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(100 + reader);
                let mut batch_keys = [FiveTuple::lan(0); 32];
                let mut batch_found = [None; 32];
                while !stop.load(Ordering::Relaxed) {
                    for key in batch_keys.iter_mut() {
                        let flow = rng.random_range(0..FLOWS);
                        *key = if rng.random() {
                            FiveTuple::lan(flow)
                        } else {
                            FiveTuple::uplink(flow)
                        };
                    }
                    table.lookup_batch(&batch_keys, &mut batch_found);
                    for (key, found) in batch_keys.iter().zip(&batch_found) {
                        let Some(found) = found else { continue };
                        assert!(found.value.is_intact(), "torn value {:?}", found.value);
                        let expected = match found.side {
                            Side::Lan => FiveTuple::lan(found.value.flow),
                            Side::Uplink => FiveTuple::uplink(found.value.flow),
                        };
                        assert_eq!(*key, expected, "a lookup returned another flow");
                        table.record_packet(found.handle, found.side, 1, 1);
                    }
                }
            });
        }
        // Writer: keeps re-creating the flows the sweeper removes, each with a new version.
        {
            let (table, stop, clock, inserted) = (&table, &stop, &clock, &inserted);
            scope.spawn(move || {
                let mut version = 0;
                while !stop.load(Ordering::Relaxed) {
                    for flow in 0..FLOWS {
                        version += 1;
                        let now = clock.load(Ordering::Relaxed);
                        match table.insert_if_absent(
                            FiveTuple::lan(flow),
                            FiveTuple::uplink(flow),
                            Mapping::new(flow, version),
                            now,
                        ) {
                            Ok(Insertion::Inserted(_)) => {
                                inserted.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Insertion::Existing(found)) => assert_eq!(found.value.flow, flow),
                            Err(error) => panic!("insert: {error}"),
                        }
                    }
                }
            });
        }
        // Sweeper (this thread): time advances, anything not seen this millisecond expires.
        // The guard stops the other threads even if an assertion here panics.
        let _stop_on_exit = StopOnDrop(&stop);
        let mut handles_seen: Vec<FlowHandle> = Vec::new();
        while Instant::now() < deadline {
            let now = clock.fetch_add(1, Ordering::Relaxed) + 1;
            table.sweep(
                now,
                64,
                |_, _, last_seen| last_seen + 1 < now,
                |value| {
                    assert!(value.is_intact());
                    let fresh = released
                        .lock()
                        .expect("released")
                        .insert((value.flow, value.version));
                    assert!(fresh, "flow {value:?} released twice");
                },
            );
            handles_seen.extend(table.live_flows(now).take(4).map(|flow| flow.handle));
        }
        *stale_candidates.lock().expect("handles") = handles_seen;
    });
    // Handles of flows swept during the run now point at records that were freed and, mostly,
    // re-used by the writer's next incarnation of a flow: none of them may reach that new flow.
    let mut stale = 0;
    for handle in stale_candidates.into_inner().expect("handles") {
        match table.value(handle) {
            Some(value) => {
                let current = table
                    .lookup(&FiveTuple::lan(value.flow))
                    .expect("live flow");
                assert_eq!(current.handle, handle, "a handle reached a later flow");
            }
            None => {
                stale += 1;
                assert!(
                    !table.record_packet(handle, Side::Lan, 1, 1),
                    "stale update landed"
                );
                assert_eq!(table.remove(handle), None, "stale handle removed a flow");
            }
        }
    }
    assert!(stale > 0, "the run produced no stale handle to check");
    let released = released.into_inner().expect("released").len() as u64;
    let live = table.live_flows(0).count() as u64;
    assert!(
        released > FLOWS,
        "the sweeper did expire flows ({released})"
    );
    assert_eq!(
        inserted.load(Ordering::Relaxed),
        released + live,
        "every flow accounted for"
    );
    assert_eq!(table.len() as u64, live);
}

/// Sets the flag when dropped, so worker threads end even if the test thread panics.
struct StopOnDrop<'flag>(&'flag AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
