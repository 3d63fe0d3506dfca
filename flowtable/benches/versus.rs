//! Side-by-side benchmark: this flow table against `dashmap` and `papaya`, same keys (a 14-byte
//! 5-tuple), same 32-byte values, same hasher (foldhash with a random seed).
//!
//! Groups: `lookup_hit`, `lookup_miss`, `insert_remove` (insert a new key, then remove it, on a
//! table holding the given number of entries); each at 1 k, 100 k and 1 M entries, with 1 and 2
//! threads. One iteration is a batch of 64 operations per thread; throughput is in operations
//! (criterion's "elem/s"). The flow table is measured twice for lookups: one `lookup` per key,
//! and `lookup_batch` over the 64 keys (what the datapath calls).
//!
//! Run: `cargo bench -p flowpin-flowtable --bench versus` (about 5 minutes on 2 cores).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flowpin_flowtable::{FlowTable, Found};
use foldhash::fast::RandomState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH: usize = 64;
const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
const THREADS: [usize; 2] = [1, 2];
/// Pre-drawn random positions into the key set, so no RNG runs inside the timed loop.
const ORDER_LENGTH: usize = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FiveTuple {
    protocol: u8,
    source: [u8; 4],
    destination: [u8; 4],
    source_port: u16,
    destination_port: u16,
}

type Value = [u64; 4];

fn key(id: u64) -> FiveTuple {
    let [a, b, c, d, e, f, ..] = id.to_le_bytes();
    FiveTuple {
        protocol: 17,
        source: [10, a, b, c],
        destination: [198, 51, 100, f],
        source_port: u16::from_le_bytes([d, e]),
        destination_port: 443,
    }
}

fn uplink_key(id: u64) -> FiveTuple {
    let mut uplink = key(id);
    let last = uplink.destination[3];
    uplink.destination = [uplink.source[1], uplink.source[2], uplink.source[3], last];
    uplink.source = [203, 0, 113, 1];
    uplink
}

fn value(id: u64) -> Value {
    [id, !id, id << 1, id >> 1]
}

/// Keys to look up: positions `0..entries` (hits) or `entries..2*entries` (misses).
fn lookup_keys(entries: usize, hits: bool, seed: u64) -> Vec<FiveTuple> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let offset = if hits { 0 } else { entries as u64 };
    (0..ORDER_LENGTH)
        .map(|_| key(offset + rng.random_range(0..entries as u64)))
        .collect()
}

/// Runs `work(thread, batches)` on `threads` threads at once and returns the wall time.
fn timed_parallel(threads: usize, batches: u64, work: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        work(0, batches);
        return start.elapsed();
    }
    let barrier = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    work(thread, batches);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for handle in handles {
            handle.join().expect("bench thread");
        }
        start.elapsed()
    })
}

struct Maps {
    flowtable: FlowTable<FiveTuple, Value>,
    dashmap: dashmap::DashMap<FiveTuple, Value, RandomState>,
    papaya: papaya::HashMap<FiveTuple, Value, RandomState>,
}

fn build(entries: usize) -> Maps {
    let maps = Maps {
        flowtable: FlowTable::with_capacity(entries + 64).expect("capacity"),
        dashmap: dashmap::DashMap::with_capacity_and_hasher(entries, RandomState::default()),
        papaya: papaya::HashMap::builder()
            .capacity(entries)
            .hasher(RandomState::default())
            .build(),
    };
    let papaya = maps.papaya.pin();
    for id in 0..entries as u64 {
        maps.flowtable
            .insert_if_absent(key(id), uplink_key(id), value(id), 0)
            .expect("room");
        maps.dashmap.insert(key(id), value(id));
        papaya.insert(key(id), value(id));
    }
    drop(papaya);
    maps
}

fn bench_lookups(c: &mut Criterion, maps: &Maps, entries: usize, hits: bool) {
    let name = if hits { "lookup_hit" } else { "lookup_miss" };
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    group.sample_size(10);
    let key_sets: Vec<Vec<FiveTuple>> = (0..2)
        .map(|thread| lookup_keys(entries, hits, thread as u64 + 1))
        .collect();
    for threads in THREADS {
        group.throughput(Throughput::Elements((BATCH * threads) as u64));
        let parameter = format!("{entries}/{threads}t");
        let batches_of = |thread: usize, batch: u64| {
            let start = (batch as usize * BATCH) % ORDER_LENGTH;
            &key_sets[thread][start..start + BATCH]
        };
        group.bench_function(BenchmarkId::new("flowtable", &parameter), |b| {
            b.iter_custom(|iterations| {
                timed_parallel(threads, iterations, &|thread, batches| {
                    for batch in 0..batches {
                        for key in batches_of(thread, batch) {
                            black_box(maps.flowtable.lookup(key));
                        }
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("flowtable_batch", &parameter), |b| {
            b.iter_custom(|iterations| {
                timed_parallel(threads, iterations, &|thread, batches| {
                    let mut found: [Option<Found<Value>>; BATCH] = [None; BATCH];
                    for batch in 0..batches {
                        maps.flowtable
                            .lookup_batch(batches_of(thread, batch), &mut found);
                        black_box(&found);
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("dashmap", &parameter), |b| {
            b.iter_custom(|iterations| {
                timed_parallel(threads, iterations, &|thread, batches| {
                    for batch in 0..batches {
                        for key in batches_of(thread, batch) {
                            black_box(maps.dashmap.get(key).map(|entry| *entry));
                        }
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("papaya", &parameter), |b| {
            b.iter_custom(|iterations| {
                timed_parallel(threads, iterations, &|thread, batches| {
                    for batch in 0..batches {
                        let map = maps.papaya.pin();
                        for key in batches_of(thread, batch) {
                            black_box(map.get(key).copied());
                        }
                    }
                })
            })
        });
    }
    group.finish();
}

fn bench_insert_remove(c: &mut Criterion, maps: &Maps, entries: usize) {
    let mut group = c.benchmark_group("insert_remove");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    group.sample_size(10);
    for threads in THREADS {
        group.throughput(Throughput::Elements((BATCH * threads) as u64));
        let parameter = format!("{entries}/{threads}t");
        // Fresh keys per thread, far from the resident ones, reused cyclically.
        let fresh = |thread: usize, batch: u64, slot: usize| {
            (1u64 << 40) + ((thread as u64) << 32) + (batch % 1024) * BATCH as u64 + slot as u64
        };
        group.bench_function(BenchmarkId::new("flowtable", &parameter), |b| {
            b.iter_custom(|iterations| {
                timed_parallel(threads, iterations, &|thread, batches| {
                    for batch in 0..batches {
                        for slot in 0..BATCH {
                            let id = fresh(thread, batch, slot);
                            let insertion = maps
                                .flowtable
                                .insert_if_absent(key(id), uplink_key(id), value(id), 0)
                                .expect("room");
                            black_box(maps.flowtable.remove(insertion.handle()));
                        }
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("dashmap", &parameter), |b| {
            b.iter_custom(|iterations| {
                timed_parallel(threads, iterations, &|thread, batches| {
                    for batch in 0..batches {
                        for slot in 0..BATCH {
                            let id = fresh(thread, batch, slot);
                            maps.dashmap.insert(key(id), value(id));
                            black_box(maps.dashmap.remove(&key(id)));
                        }
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("papaya", &parameter), |b| {
            b.iter_custom(|iterations| {
                timed_parallel(threads, iterations, &|thread, batches| {
                    for batch in 0..batches {
                        let map = maps.papaya.pin();
                        for slot in 0..BATCH {
                            let id = fresh(thread, batch, slot);
                            map.insert(key(id), value(id));
                            black_box(map.remove(&key(id)).copied());
                        }
                    }
                })
            })
        });
    }
    group.finish();
}

fn versus(c: &mut Criterion) {
    for entries in SIZES {
        let maps = build(entries);
        bench_lookups(c, &maps, entries, true);
        bench_lookups(c, &maps, entries, false);
        bench_insert_remove(c, &maps, entries);
    }
}

criterion_group!(benches, versus);
criterion_main!(benches);
