//! How many mappings each internal address holds: a fixed, lock-free table that forgets an address
//! when its count returns to 0.
//!
//! # State
//! One `AtomicU64` per entry: the address in the high 32 bits, its count in the low 32 bits. `0`
//! is an entry never used; an address with count 0 is an entry free for any address to take. An
//! address lives in the [`WINDOW`] entries that follow its keyed hash; lookups stop at the first
//! never-used entry (entries never return to `0`, so nothing of the address lies beyond it).
//!
//! # Invariants
//! - The counts of every entry keyed by an address sum to the mappings it holds. Two first mappings
//!   of one address racing may each take an entry; the sum stays exact, and each entry is forgotten
//!   when its own count reaches 0.
//! - At most `max_hosts` entries hold a count above 0 (checked before an entry is taken; racing
//!   takes may pass it by one per racing thread). [`HostTable::live`] is that number: the hosts the
//!   fair share divides the pool among.
//! - Nothing is ever removed by force: an address leaves when its last mapping is released.
//! - [`HostTable::total`] is the sum of every count (the pool's mappings), kept beside the entries.
//! - Cost: a lookup reads at most [`WINDOW`] consecutive entries (4 cache lines), usually one.

use std::hash::{BuildHasher, RandomState};
use std::net::Ipv4Addr;

use super::sync::{AtomicU64, Ordering};

/// Entries an address may live in, from its hash on: a full window refuses a new address.
pub const WINDOW: usize = 32;
const COUNT_MASK: u64 = 0xFFFF_FFFF;

/// Why an address got no count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeError {
    /// `allowed` said no to the address's current count.
    Refused,
    /// The address is new and `max_hosts` addresses are live, or its window has no free entry.
    Full,
}

/// The per-address counts of one port pool.
#[derive(Debug)]
pub struct HostTable {
    entries: Box<[AtomicU64]>,
    live: AtomicU64,
    total: AtomicU64,
    max_hosts: usize,
    secret: RandomState,
}

/// What one pass over an address's window found.
struct Scan {
    /// The sum of the address's counts.
    held: u32,
    /// An entry of the address with a count above 0, and its raw value.
    own: Option<(usize, u64)>,
    /// The first entry free to take (count 0, any address, or never used), and its raw value.
    free: Option<(usize, u64)>,
}

impl HostTable {
    /// A table for `max_hosts` live addresses (twice as many entries, a power of two).
    #[must_use]
    pub fn new(max_hosts: usize) -> Self {
        let capacity = max_hosts
            .max(1)
            .saturating_mul(2)
            .next_power_of_two()
            .max(WINDOW);
        Self {
            entries: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            live: AtomicU64::new(0),
            total: AtomicU64::new(0),
            max_hosts: max_hosts.max(1),
            secret: RandomState::new(),
        }
    }

    /// Mappings `address` holds.
    #[must_use]
    pub fn held(&self, address: Ipv4Addr) -> u32 {
        self.scan(address).held
    }

    /// Addresses holding at least one mapping.
    #[must_use]
    pub fn live(&self) -> usize {
        usize::try_from(self.live.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Mappings held by all addresses together.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The most addresses the table holds at once.
    #[must_use]
    pub const fn max_hosts(&self) -> usize {
        self.max_hosts
    }

    /// Counts one more mapping of `address` if `allowed(held)` says yes to its current count.
    ///
    /// # Errors
    /// [`TakeError::Refused`] from `allowed`, [`TakeError::Full`] for a new address with no room.
    /// Nothing changes on error.
    pub fn take(&self, address: Ipv4Addr, allowed: impl Fn(u32) -> bool) -> Result<(), TakeError> {
        let key = key_of(address);
        if key == 0 {
            // 0.0.0.0 would read as a never-used entry; it is a martian and never translated.
            return Err(TakeError::Full);
        }
        loop {
            let scan = self.scan(address);
            if !allowed(scan.held) {
                return Err(TakeError::Refused);
            }
            if let Some((index, raw)) = scan.own {
                if self.entries[index]
                    .compare_exchange(raw, raw + 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.total.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                continue;
            }
            let live = self.live.load(Ordering::SeqCst);
            let (Some((index, raw)), true) = (scan.free, live < self.max_hosts as u64) else {
                return Err(TakeError::Full);
            };
            if self.entries[index]
                .compare_exchange(raw, key | 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                self.live.fetch_add(1, Ordering::SeqCst);
                self.total.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
    }

    /// Counts one mapping of `address` less; the address is forgotten with its last one. Returns
    /// false (nothing changed) when it held none.
    pub fn give(&self, address: Ipv4Addr) -> bool {
        loop {
            let Some((index, raw)) = self.scan(address).own else {
                return false;
            };
            if self.entries[index]
                .compare_exchange(raw, raw - 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                if raw & COUNT_MASK == 1 {
                    self.live.fetch_sub(1, Ordering::SeqCst);
                }
                self.total.fetch_sub(1, Ordering::Relaxed);
                return true;
            }
        }
    }

    fn scan(&self, address: Ipv4Addr) -> Scan {
        let key = key_of(address);
        let mask = self.entries.len() - 1;
        let start = usize::try_from(self.secret.hash_one(address.to_bits())).unwrap_or(0);
        let mut scan = Scan {
            held: 0,
            own: None,
            free: None,
        };
        for step in 0..WINDOW {
            let index = (start + step) & mask;
            let raw = self.entries[index].load(Ordering::SeqCst);
            let count = raw & COUNT_MASK;
            if count == 0 && scan.free.is_none() {
                scan.free = Some((index, raw));
            }
            if raw == 0 {
                break;
            }
            if raw & !COUNT_MASK == key && count > 0 {
                scan.held = scan
                    .held
                    .saturating_add(u32::try_from(count).unwrap_or(u32::MAX));
                scan.own.get_or_insert((index, raw));
            }
        }
        scan
    }
}

const fn key_of(address: Ipv4Addr) -> u64 {
    (address.to_bits() as u64) << 32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(i: u32) -> Ipv4Addr {
        Ipv4Addr::from_bits(0x0A00_0000 | i)
    }

    #[test]
    fn counts_per_address_and_forgets_an_address_with_its_last_mapping() {
        let table = HostTable::new(4);
        assert_eq!(table.take(host(1), |_| true), Ok(()));
        assert_eq!(table.take(host(1), |_| true), Ok(()));
        assert_eq!(table.take(host(2), |_| true), Ok(()));
        assert_eq!(
            (table.held(host(1)), table.held(host(2)), table.live()),
            (2, 1, 2)
        );
        assert_eq!(table.total(), 3);
        assert!(table.give(host(1)));
        assert_eq!((table.held(host(1)), table.live()), (1, 2));
        assert!(table.give(host(1)));
        assert_eq!((table.held(host(1)), table.live()), (0, 1), "forgotten");
        assert_eq!(table.total(), 1);
        assert!(!table.give(host(1)), "nothing left to give");
    }

    #[test]
    fn a_full_table_refuses_new_addresses_until_one_leaves() {
        let table = HostTable::new(3);
        for i in 1..=3 {
            table.take(host(i), |_| true).unwrap();
        }
        assert_eq!(table.take(host(4), |_| true), Err(TakeError::Full));
        assert_eq!(
            table.take(host(1), |_| true),
            Ok(()),
            "a live address still counts"
        );
        assert!(table.give(host(2)));
        assert_eq!(table.take(host(4), |_| true), Ok(()), "room again");
        assert_eq!(table.live(), 3);
    }

    /// The bug this table replaces: entries were never removed, so after `max_hosts` distinct
    /// sources since start every new address was refused until a restart.
    #[test]
    fn many_more_addresses_than_max_hosts_pass_through_one_at_a_time() {
        let table = HostTable::new(16);
        for i in 1..=100_000 {
            table.take(host(i), |_| true).unwrap();
            assert!(table.give(host(i)));
        }
        assert_eq!(table.live(), 0);
        for i in 1..=16 {
            table.take(host(i), |_| true).unwrap();
        }
        assert_eq!(table.live(), 16);
    }

    #[test]
    fn a_refusal_changes_nothing() {
        let table = HostTable::new(4);
        table.take(host(1), |_| true).unwrap();
        assert_eq!(
            table.take(host(1), |held| held < 1),
            Err(TakeError::Refused)
        );
        assert_eq!(
            table.take(host(2), |held| held > 0),
            Err(TakeError::Refused)
        );
        assert_eq!(
            (table.held(host(1)), table.held(host(2)), table.live()),
            (1, 0, 1)
        );
        assert_eq!(
            table.take(Ipv4Addr::UNSPECIFIED, |_| true),
            Err(TakeError::Full)
        );
    }
}
