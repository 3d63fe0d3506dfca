//! Randomised-scheduler exploration of the first-packet race (shuttle, random schedules):
//! `RUSTFLAGS="--cfg shuttle" cargo test -p flowpin-nat --lib shuttle_tests`.

use super::*;
use shuttle::sync::Arc;

/// Two ports, one block: every endpoint's candidates are 5000 then 5001. A third thread takes and
/// frees 5000 while two threads acquire the same endpoint, so one of them can see 5000 busy (and
/// pick 5001) while the other sees it free: only the claim check keeps them on one port.
fn race(iterations: usize) {
    shuttle::check_random(
        || {
            let mut config = PortAllocatorConfig::new(PortRange::new(5000, 5001).unwrap());
            config.quarantine_ms = 0;
            let allocator = Arc::new(PortAllocator::new(config));
            let host = Ipv4Addr::new(10, 0, 0, 1);
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let allocator = Arc::clone(&allocator);
                    shuttle::thread::spawn(move || {
                        if i == 2 {
                            let other = Ipv4Addr::new(10, 0, 0, 2);
                            if let Ok(p) = allocator.acquire(other, 7000, 0) {
                                allocator.release(p, other, 7000, 0).unwrap();
                            }
                            None
                        } else {
                            allocator.acquire(host, 7001, 0).ok()
                        }
                    })
                })
                .collect();
            let ports: Vec<u16> = handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect();
            assert_eq!(ports.len(), 2, "an acquire failed with a free port left");
            assert_eq!(ports[0], ports[1], "EIM broken: one endpoint got two ports");
            assert_eq!(allocator.references(ports[0]), 2);
            assert_eq!(allocator.owner_of(ports[0]), Some((host, 7001)));
            assert_eq!(allocator.mapped_ports(), 1);
        },
        iterations,
    );
}

#[test]
fn racing_acquires_of_one_endpoint_agree_under_every_explored_schedule() {
    race(20_000);
}
