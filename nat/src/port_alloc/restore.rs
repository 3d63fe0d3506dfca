//! Putting a restarted daemon's saved mappings and quarantines back into a fresh allocator.
//!
//! - Runs on the control plane before any worker starts; the atomics are still used as everywhere
//!   else, so a concurrent acquire could only make a restore fail, never corrupt a slot.
//! - A mapping is restored onto exactly its saved port: free (or quarantined, whose deadline the
//!   saved state then supersedes) becomes owned by the endpoint with one reference; owned by the
//!   same endpoint gains one; owned by another endpoint is refused ([`RestoreError::OwnedByAnother`]):
//!   two saved flows disagreeing about a port is damage, never a second owner.
//! - The host's count is taken without its fair share or quota (the mapping existed before).
//! - A quarantine is restored only on a free port, and only while it still runs.

use std::net::Ipv4Addr;

use super::slot_word::{MAX_QUARANTINE_DEADLINE, Slot, decode, endpoint_of, owned};
use super::sync::Ordering;
use super::{MAX_REFERENCES, PortAllocator};

/// Why a saved mapping was not restored (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The port lies outside this allocator's range (the range changed between runs).
    #[error("port outside the NAT range")]
    OutOfRange,
    /// Another internal endpoint owns the port.
    #[error("port owned by another endpoint")]
    OwnedByAnother,
    /// The mapping already carries the most references a port can hold.
    #[error("mapping reference count at its maximum")]
    ReferencesExhausted,
    /// The host table has no room for the endpoint's address.
    #[error("too many internal hosts for the quota table")]
    HostTableFull,
}

/// One port's running quarantine: the port and when it ends (daemon ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedQuarantine {
    /// The external port.
    pub port: u16,
    /// Daemon time (ms) the quarantine ends at.
    pub until_ms: u64,
}

impl PortAllocator {
    /// Gives internal endpoint `(address, port)` one more reference on exactly `external_port`.
    ///
    /// # Errors
    /// [`RestoreError`]; nothing changes on error.
    pub fn restore_mapping(
        &self,
        external_port: u16,
        address: Ipv4Addr,
        port: u16,
    ) -> Result<(), RestoreError> {
        let endpoint = endpoint_of(address, port);
        let slot = self.slot(external_port).ok_or(RestoreError::OutOfRange)?;
        loop {
            let raw = slot.load(Ordering::SeqCst);
            let next = match decode(raw) {
                Slot::Owned { endpoint: e, refs } if e == endpoint => {
                    if refs >= MAX_REFERENCES {
                        return Err(RestoreError::ReferencesExhausted);
                    }
                    raw + 1
                }
                Slot::Owned { .. } | Slot::Claiming { .. } => {
                    return Err(RestoreError::OwnedByAnother);
                }
                Slot::Free | Slot::Quarantined(_) => {
                    self.hosts
                        .take(address, |_| true)
                        .map_err(|_| RestoreError::HostTableFull)?;
                    if slot
                        .compare_exchange(
                            raw,
                            owned(endpoint, 1),
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        )
                        .is_err()
                    {
                        self.give_quota(address);
                        continue;
                    }
                    return Ok(());
                }
            };
            if slot
                .compare_exchange(raw, next, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Ok(());
            }
        }
    }

    /// Quarantines the free port `saved.port` until `saved.until_ms` when that is after `now_ms`;
    /// returns whether it did.
    pub fn restore_quarantine(&self, saved: SavedQuarantine, now_ms: u64) -> bool {
        let Some(slot) = self.slot(saved.port) else {
            return false;
        };
        if saved.until_ms <= now_ms {
            return false;
        }
        let until = saved.until_ms.min(MAX_QUARANTINE_DEADLINE);
        slot.compare_exchange(0, until, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// The quarantines still running at `now_ms` (O(range); for the state file, not the packet path).
    #[must_use]
    pub fn quarantines(&self, now_ms: u64) -> Vec<SavedQuarantine> {
        let first = self.config.range.first();
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(offset, slot)| match decode(slot.load(Ordering::SeqCst)) {
                Slot::Quarantined(until) if until > now_ms => Some(SavedQuarantine {
                    port: first.wrapping_add(u16::try_from(offset).unwrap_or(0)),
                    until_ms: until,
                }),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port_alloc::{AllocatorSecret, PortAllocatorConfig, Released};
    use crate::port_range::PortRange;

    const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn allocator(secret: AllocatorSecret) -> PortAllocator {
        PortAllocator::with_secret(
            PortAllocatorConfig::new(PortRange::new(20_000, 20_999).expect("range")),
            secret,
        )
    }

    #[test]
    fn a_restored_mapping_is_found_again_by_acquire_under_the_same_secret() {
        let secret = AllocatorSecret([7, 9]);
        let before = allocator(secret);
        // Preserved port taken by someone else, so the endpoint gets a hashed candidate.
        before
            .acquire(Ipv4Addr::new(10, 0, 0, 9), 20_500, 1)
            .expect("port");
        let port = before.acquire(HOST, 20_500, 1).expect("port");
        assert_ne!(port, 20_500);
        let after = allocator(secret);
        after.restore_mapping(port, HOST, 20_500).expect("restored");
        assert_eq!(after.mapping_of(HOST, 20_500), Some(port));
        assert_eq!(after.acquire(HOST, 20_500, 2), Ok(port));
        assert_eq!(after.references(port), 2);
        assert_eq!(after.host_mappings(HOST), 1);
    }

    #[test]
    fn a_port_owned_by_another_endpoint_is_refused() {
        let a = allocator(AllocatorSecret([1, 2]));
        a.restore_mapping(20_100, HOST, 40_000).expect("restored");
        assert_eq!(
            a.restore_mapping(20_100, Ipv4Addr::new(10, 0, 0, 3), 40_000),
            Err(RestoreError::OwnedByAnother)
        );
        assert_eq!(
            a.restore_mapping(30_000, HOST, 40_000),
            Err(RestoreError::OutOfRange)
        );
        assert_eq!(a.owner_of(20_100), Some((HOST, 40_000)));
        assert_eq!(a.references(20_100), 1);
    }

    #[test]
    fn quarantines_round_trip_and_expired_ones_are_not_restored() {
        let a = allocator(AllocatorSecret([3, 4]));
        let port = a.acquire(HOST, 20_010, 1_000).expect("port");
        assert_eq!(
            a.release(port, HOST, 20_010, 1_000),
            Ok(Released::Quarantined)
        );
        let saved = a.quarantines(2_000);
        assert_eq!(
            saved,
            [SavedQuarantine {
                port,
                until_ms: 121_000
            }]
        );
        let b = allocator(AllocatorSecret([3, 4]));
        assert!(!b.restore_quarantine(saved[0], 121_000));
        assert!(b.restore_quarantine(saved[0], 5_000));
        assert!(b.is_quarantined(port, 120_999));
        assert!(!b.is_quarantined(port, 121_000));
    }
}
