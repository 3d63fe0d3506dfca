//! Unit tests of the port allocator: mapping, classes, quarantine, per-host limits, races.

use super::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};

const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);

fn allocator(first: u16, last: u16, edit: impl FnOnce(&mut PortAllocatorConfig)) -> PortAllocator {
    let mut config = PortAllocatorConfig::new(PortRange::new(first, last).unwrap());
    edit(&mut config);
    PortAllocator::new(config)
}

#[test]
fn an_unanswered_release_frees_the_port_at_once_and_only_on_the_last_reference() {
    let a = allocator(1024, 65535, |_| {});
    assert_eq!(a.acquire(HOST, 40000, 0), Ok(40000));
    assert_eq!(a.acquire(HOST, 40000, 0), Ok(40000));
    assert_eq!(
        a.release_unanswered(40000, HOST, 40000, 10),
        Ok(Released::StillMapped(1))
    );
    assert_eq!(
        a.release_unanswered(40000, HOST, 40000, 10),
        Ok(Released::Freed)
    );
    assert!(!a.is_quarantined(40000, 10), "free at once");
    assert_eq!(a.host_mappings(HOST), 0, "quota given back");
    assert_eq!(
        a.acquire(OTHER, 40000, 11),
        Ok(40000),
        "the next owner may take it"
    );
    assert_eq!(
        a.release_unanswered(40000, HOST, 40000, 12),
        Err(ReleaseError::NotOwner)
    );
}

#[test]
fn mapping_of_finds_a_live_mapping_without_taking_a_reference() {
    let a = allocator(1024, 65535, |_| {});
    assert_eq!(a.mapping_of(HOST, 40000), None, "no mapping yet");
    // Not preserved: OTHER holds 40000, so HOST's mapping sits on an unpredictable candidate.
    assert_eq!(a.acquire(OTHER, 40000, 0), Ok(40000));
    let port = a.acquire(HOST, 40000, 0).unwrap();
    assert_ne!(port, 40000);
    assert_eq!(a.mapping_of(HOST, 40000), Some(port));
    assert_eq!(a.mapping_of(OTHER, 40000), Some(40000));
    assert_eq!(
        a.mapping_of(HOST, 40001),
        None,
        "another endpoint of the host"
    );
    assert_eq!(a.references(port), 1, "looking takes no reference");
    a.release(port, HOST, 40000, 10).unwrap();
    assert_eq!(a.mapping_of(HOST, 40000), None, "quarantined is not live");
}

#[test]
fn preserves_the_port_and_maps_endpoint_independently() {
    let a = allocator(1024, 65535, |_| {});
    assert_eq!(a.acquire(HOST, 40000, 0), Ok(40000));
    assert_eq!(
        a.acquire(HOST, 40000, 5),
        Ok(40000),
        "EIM: same endpoint, same port"
    );
    assert_eq!(a.references(40000), 2);
    assert_eq!(a.owner_of(40000), Some((HOST, 40000)));
    let other = a.acquire(OTHER, 40000, 0).unwrap();
    assert_ne!(other, 40000, "never two endpoints on one port");
    assert!(other >= 1024);
    assert_eq!(a.owner_of(other), Some((OTHER, 40000)));
    assert_eq!(a.host_mappings(HOST), 1);
}

#[test]
fn keeps_the_privileged_class() {
    let a = allocator(500, 3000, |_| {});
    assert_eq!(a.acquire(HOST, 700, 0), Ok(700));
    for i in 0..50 {
        let p = a.acquire(Ipv4Addr::new(10, 0, 0, i), 700, 0).unwrap();
        assert!((500..1024).contains(&p), "{p} left the < 1024 class");
        let q = a.acquire(Ipv4Addr::new(10, 0, 0, i), 2000, 0).unwrap();
        assert!((1024..=3000).contains(&q), "{q} left the >= 1024 class");
    }
    let no_low = allocator(2000, 3000, |_| {});
    assert!(
        (2000..=3000).contains(&no_low.acquire(HOST, 80, 0).unwrap()),
        "falls back to the range"
    );
}

#[test]
fn released_ports_are_quarantined_for_120_s() {
    let a = allocator(20000, 20000, |_| {});
    assert_eq!(a.acquire(HOST, 20000, 1000), Ok(20000));
    assert_eq!(a.acquire(HOST, 20000, 1000), Ok(20000));
    assert_eq!(
        a.release(20000, HOST, 20000, 2000),
        Ok(Released::StillMapped(1))
    );
    assert_eq!(
        a.release(20000, HOST, 20000, 3000),
        Ok(Released::Quarantined)
    );
    assert_eq!(a.owner_of(20000), None);
    assert!(a.is_quarantined(20000, 3000 + 119_999));
    assert_eq!(
        a.acquire(OTHER, 20000, 3000 + 119_999),
        Err(AllocError::Exhausted)
    );
    assert_eq!(a.acquire(OTHER, 20000, 3000 + 120_000), Ok(20000));
    assert_eq!(a.host_mappings(HOST), 0);
}

#[test]
fn ending_quarantines_frees_quarantined_ports_and_leaves_owned_ones() {
    let a = allocator(20000, 20002, |c| c.pressure_percent = 100);
    assert_eq!(a.acquire(HOST, 20000, 0), Ok(20000));
    assert_eq!(a.acquire(HOST, 20001, 0), Ok(20001));
    assert_eq!(a.acquire(HOST, 20002, 0), Ok(20002));
    assert_eq!(a.release(20000, HOST, 20000, 0), Ok(Released::Quarantined));
    assert_eq!(a.release(20001, HOST, 20001, 0), Ok(Released::Quarantined));
    assert_eq!(a.end_quarantines(1000), 2);
    assert!(!a.is_quarantined(20000, 1000) && !a.is_quarantined(20001, 1000));
    assert_eq!(a.acquire(OTHER, 20000, 1000), Ok(20000));
    assert_eq!(a.owner_of(20002), Some((HOST, 20002)), "owned ports stay");
    assert_eq!(a.references(20002), 1);
    assert_eq!(
        a.release(20000, OTHER, 20000, 1000),
        Ok(Released::Quarantined)
    );
    assert_eq!(
        a.end_quarantines(200_000),
        0,
        "a quarantine already over is not counted"
    );
}

#[test]
fn release_by_a_stranger_changes_nothing() {
    let a = allocator(1024, 2047, |_| {});
    let p = a.acquire(HOST, 5000, 0).unwrap();
    assert_eq!(a.release(p, OTHER, 5000, 0), Err(ReleaseError::NotOwner));
    assert_eq!(a.release(p, HOST, 5001, 0), Err(ReleaseError::NotOwner));
    assert_eq!(a.release(80, HOST, 5000, 0), Err(ReleaseError::NotOwner));
    assert_eq!(a.references(p), 1);
}

#[test]
fn quota_and_exhaustion_are_distinct_and_never_steal() {
    let a = allocator(1024, 1031, |c| {
        c.per_host_quota = 3;
        c.candidates = 8;
    });
    for port in 1..=3 {
        a.acquire(HOST, port, 0).unwrap();
    }
    assert_eq!(a.acquire(HOST, 4, 0), Err(AllocError::QuotaExceeded));
    assert_eq!(
        a.acquire(HOST, 1, 0).map(|p| a.owner_of(p)),
        Ok(Some((HOST, 1))),
        "existing mapping still served"
    );
    let mut taken: HashSet<u16> = (1..=3).map(|p| a.acquire(HOST, p, 0).unwrap()).collect();
    for i in 0..5 {
        taken.insert(a.acquire(Ipv4Addr::new(10, 0, 0, i + 1), 9, 0).unwrap());
    }
    assert_eq!(taken.len(), 8);
    assert_eq!(
        a.acquire(Ipv4Addr::new(10, 0, 0, 99), 9, 0),
        Err(AllocError::Exhausted)
    );
    assert_eq!(a.mapped_ports(), 8);
    assert_eq!(
        a.host_mappings(Ipv4Addr::new(10, 0, 0, 99)),
        0,
        "a failed acquire holds no quota"
    );
}

#[test]
fn exact_mode_fills_an_odd_sized_range_completely() {
    let a = allocator(2000, 2012, |c| {
        c.candidates = 13;
        c.pressure_percent = 100;
    });
    let ports: HashSet<u16> = (0..13)
        .map(|i| a.acquire(Ipv4Addr::new(10, 0, 0, 1), 40000 + i, 0).unwrap())
        .collect();
    assert_eq!(ports, (2000..=2012).collect());
    assert_eq!(
        a.acquire(Ipv4Addr::new(10, 0, 0, 1), 50000, 0),
        Err(AllocError::Exhausted)
    );
}

#[test]
fn the_default_candidates_fill_most_of_a_range_before_exhaustion() {
    let a = allocator(10240, 11263, |c| c.pressure_percent = 100);
    let mut mapped = 0u32;
    for i in 0.. {
        let host = Ipv4Addr::from_bits(0x0A00_0000 | (i >> 10));
        match a.acquire(host, 20000 + (i & 0x3FF) as u16, 0) {
            Ok(_) => mapped += 1,
            Err(AllocError::Exhausted) => break,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(
        mapped >= 1024 * 9 / 10,
        "only {mapped} of 1024 ports mapped before the first exhaustion"
    );
    assert_eq!(usize::try_from(mapped).unwrap(), a.mapped_ports());
}

#[test]
fn a_full_host_table_is_reported_and_forgets_a_host_with_its_last_mapping() {
    let a = allocator(1024, 65535, |c| c.max_hosts = 2);
    let first = a.acquire(Ipv4Addr::new(10, 0, 0, 1), 5000, 0).unwrap();
    a.acquire(Ipv4Addr::new(10, 0, 0, 2), 5000, 0).unwrap();
    assert_eq!(
        a.acquire(Ipv4Addr::new(10, 0, 1, 1), 5000, 0),
        Err(AllocError::HostTableFull)
    );
    assert_eq!(a.hosts().live(), 2);
    a.release(first, Ipv4Addr::new(10, 0, 0, 1), 5000, 0)
        .unwrap();
    assert_eq!(a.hosts().live(), 1, "the host left with its last mapping");
    assert!(a.acquire(Ipv4Addr::new(10, 0, 1, 1), 5000, 0).is_ok());
}

/// Distinct sources far beyond `max_hosts` over time (spoofed, or hosts coming and going) never
/// lock the table: each leaves with its last mapping.
#[test]
fn hosts_coming_and_going_never_fill_the_host_table() {
    let a = allocator(1024, 65535, |c| {
        c.max_hosts = 64;
        c.quarantine_ms = 0;
    });
    for i in 0..20_000u32 {
        let host = Ipv4Addr::from_bits(0x0A00_0000 | i);
        let port = a.acquire(host, 4000, 0).unwrap();
        a.release(port, host, 4000, 0).unwrap();
    }
    assert_eq!((a.hosts().live(), a.hosts().total()), (0, 0));
}

/// The weight test that found the old default quota (4096): one host, 8192 endpoints, one pool
/// nobody else uses, below the pressure mark: no limit.
#[test]
fn one_host_alone_may_use_the_pool_beyond_the_old_quota() {
    let a = allocator(1024, 65535, |_| {});
    for port in 1024..1024 + 8192 {
        assert!(a.acquire(HOST, port, 0).is_ok(), "endpoint {port}");
    }
    assert_eq!(a.host_mappings(HOST), 8192);
}

#[test]
fn under_pressure_a_host_over_its_fair_share_is_refused_first() {
    // 100 ports, pressure from 75 mapped; every candidate probed, so only the share refuses.
    let a = allocator(2000, 2099, |c| {
        c.candidates = 100;
        c.quarantine_ms = 0;
    });
    for port in 0..75 {
        a.acquire(HOST, 10_000 + port, 0).unwrap();
    }
    // Alone under pressure, HOST's share keeps room for one more host: 100 / 2.
    assert_eq!(
        a.acquire(HOST, 20_000, 0),
        Err(AllocError::FairShareExceeded),
        "a lone host stops at the pressure mark"
    );
    assert!(
        a.acquire(HOST, 10_000, 0).is_ok(),
        "an existing mapping still takes references"
    );
    for port in 0..25 {
        assert!(
            a.acquire(OTHER, 10_000 + port, 0).is_ok(),
            "a newcomer finds ports: {port}"
        );
    }
    assert_eq!(a.mapped_ports(), 100);
    assert_eq!(
        a.acquire(Ipv4Addr::new(10, 0, 0, 3), 1, 0),
        Err(AllocError::Exhausted),
        "the range, not a share, runs out last"
    );
    a.release(port_of(&a, HOST, 10_000), HOST, 10_000, 0)
        .unwrap();
    for port in 0..45 {
        a.release(port_of(&a, HOST, 10_000 + port), HOST, 10_000 + port, 0)
            .unwrap();
    }
    // HOST holds 30, OTHER 25: 55 mapped, no pressure, no limit.
    assert!(a.acquire(HOST, 20_000, 0).is_ok(), "no pressure again");
    assert!(!AllocError::Exhausted.is_share_refusal());
    assert!(AllocError::FairShareExceeded.is_share_refusal());
}

fn port_of(a: &PortAllocator, address: Ipv4Addr, port: u16) -> u16 {
    a.mapping_of(address, port).expect("a live mapping")
}

#[test]
fn the_hard_quota_is_opt_in() {
    assert_eq!(
        PortAllocatorConfig::new(PortRange::new(1024, 65535).unwrap()).per_host_quota,
        NO_HARD_QUOTA
    );
    let a = allocator(2000, 2099, |c| c.per_host_quota = 2);
    a.acquire(HOST, 1, 0).unwrap();
    a.acquire(HOST, 2, 0).unwrap();
    assert_eq!(a.acquire(HOST, 3, 0), Err(AllocError::QuotaExceeded));
}

#[test]
fn unpreserved_ports_are_not_sequential_and_depend_on_the_secret() {
    let a = allocator(10000, 60000, |_| {});
    let b = allocator(10000, 60000, |_| {});
    let ports_a: Vec<u16> = (0..200)
        .map(|i| a.acquire(Ipv4Addr::new(10, 0, 1, 1), 1024 + i, 0).unwrap())
        .collect();
    let ports_b: Vec<u16> = (0..200)
        .map(|i| b.acquire(Ipv4Addr::new(10, 0, 1, 1), 1024 + i, 0).unwrap())
        .collect();
    let sequential = ports_a
        .windows(2)
        .filter(|w| w[1].wrapping_sub(w[0]) == 1)
        .count();
    assert!(sequential < 5, "{sequential} sequential picks");
    let same = ports_a.iter().zip(&ports_b).filter(|(x, y)| x == y).count();
    assert!(same < 5, "{same} identical picks under different secrets");
}

/// The first-packet race: several threads acquire the same endpoints at once; every endpoint ends up
/// with exactly one port, shared by all threads (EIM), and no port serves two endpoints.
#[test]
fn concurrent_acquires_of_one_endpoint_agree() {
    const THREADS: usize = 4;
    const ENDPOINTS: u16 = 24;
    for round in 0..150 {
        let a = Arc::new(allocator(30000, 30063, |c| {
            c.quarantine_ms = 0;
            c.candidates = 64;
        }));
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (a, barrier) = (Arc::clone(&a), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..ENDPOINTS)
                        .map(|i| {
                            let e = (i + t as u16 * 7 + round) % ENDPOINTS;
                            (
                                e,
                                a.acquire(
                                    Ipv4Addr::new(10, 0, 0, 1 + (e % 3) as u8),
                                    30000 + e * 2,
                                    0,
                                )
                                .unwrap(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut by_endpoint: HashMap<u16, HashSet<u16>> = HashMap::new();
        for handle in handles {
            for (e, port) in handle.join().unwrap() {
                by_endpoint.entry(e).or_default().insert(port);
            }
        }
        let mut ports = HashSet::new();
        for (e, set) in &by_endpoint {
            assert_eq!(
                set.len(),
                1,
                "round {round}: endpoint {e} got ports {set:?}"
            );
            let port = *set.iter().next().unwrap();
            assert!(
                ports.insert(port),
                "round {round}: port {port} serves two endpoints"
            );
            assert_eq!(a.references(port), THREADS as u32);
            assert_eq!(
                a.owner_of(port),
                Some((Ipv4Addr::new(10, 0, 0, 1 + (e % 3) as u8), 30000 + e * 2))
            );
        }
    }
}

/// Churn from several threads: acquires and releases interleave; every reference taken is released
/// exactly once, owners are always consistent, and nothing leaks.
#[test]
fn concurrent_churn_leaks_nothing() {
    let a = Arc::new(allocator(40000, 40255, |c| {
        c.quarantine_ms = 0;
        c.per_host_quota = 1000;
    }));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let a = Arc::clone(&a);
            std::thread::spawn(move || {
                let mut held: Vec<(u16, Ipv4Addr, u16)> = Vec::new();
                let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                for _ in 0..20_000 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let address = Ipv4Addr::new(10, 0, 0, 1 + (state % 4) as u8);
                    let port = 1024 + ((state >> 8) % 64) as u16;
                    if state.is_multiple_of(3) && !held.is_empty() {
                        let (p, addr, iport) =
                            held.swap_remove(((state >> 20) as usize) % held.len());
                        assert!(a.release(p, addr, iport, 0).is_ok());
                    } else if let Ok(p) = a.acquire(address, port, 0) {
                        assert_eq!(a.owner_of(p), Some((address, port)));
                        held.push((p, address, port));
                    }
                }
                for (p, addr, iport) in held {
                    assert!(a.release(p, addr, iport, 0).is_ok());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(a.mapped_ports(), 0);
    for i in 1..=4 {
        assert_eq!(a.host_mappings(Ipv4Addr::new(10, 0, 0, i)), 0);
    }
}
