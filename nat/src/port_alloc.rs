//! Endpoint-independent external port allocation for one (uplink address, protocol), lock-free.
//!
//! # State
//! One `AtomicU64` per external port of the range (`slots`), encoded as:
//! - `0`: free;
//! - tag `00`, value `t > 0`: quarantined until `t` ms (free once `now >= t`) — RFC 6888 REQ-8;
//! - tag `10` + internal endpoint (address 32 bits, port 16 bits) + reference count (14 bits): owned;
//! - tag `11` + internal endpoint: being claimed (a short-lived state inside [`PortAllocator::acquire`]).
//!
//! A [`HostTable`] counts the mappings each internal address holds and forgets an address with its
//! last mapping.
//!
//! # Per-host limits: a fair share under pressure
//! A host may take ports freely while the pool is not under pressure. Once `pressure_percent` of the
//! range is mapped, a host holding its fair share or more is refused
//! ([`AllocError::FairShareExceeded`]) while hosts below it are still served. The fair share keeps
//! room for one more host: the range divided by (the hosts holding mappings + 1). So one busy host
//! (a downstream NAT, a server, a torrent client) takes up to `pressure_percent` of an idle pool
//! (half of it at least), and a host that comes later still finds ports; a flood from one host
//! cannot take the whole range. The CGN-style hard quota (RFC 6888 REQ-4, `per_host_quota`,
//! [`AllocError::QuotaExceeded`]) is off by default ([`NO_HARD_QUOTA`]). A host new to a full host
//! table gets [`AllocError::HostTableFull`].
//!
//! # Candidates
//! For internal endpoint `E = (address, port)` the candidate external ports are, in order: `E.port`
//! itself when it lies in the range (port preservation, RFC 4787 REQ-3), then `K` ports (rounded up to
//! whole blocks of 8) of `E.port`'s class (< 1024 or ≥ 1024, REQ-3a, falling back to the whole range when
//! the class has no port in it): the class is cut into blocks of 8 consecutive ports (one cache line of
//! slots), and the blocks are visited in the order `start + i·step (mod blocks)`, where `start` and `step`
//! (coprime with the number of blocks, so no block repeats) come from a keyed hash of `E` with a
//! per-allocator secret key: which ports an endpoint gets is unpredictable from outside (RFC 6056 §4) and
//! unrelated between endpoints, yet probing `K` candidates touches only about `K / 8` cache lines.
//!
//! # Invariants
//! - EIM (RFC 4787 REQ-1, RFC 5382 REQ-1): an endpoint owns at most one port; `acquire` returns it (and
//!   adds a reference) for as long as it is owned.
//! - A port is owned by at most one endpoint (REQ-3); an owned port is never taken away to make room
//!   ([`AllocError::Exhausted`] instead).
//! - The last `release` of a port quarantines it for `quarantine_ms` (default 120 s), until
//!   [`PortAllocator::end_quarantines`] ends every quarantine at once (the address changed).
//! - No global lock: `acquire` claims a port by CAS to "claiming", checks the endpoint's other candidates
//!   for a concurrent claim (the lowest candidate position wins, the others back out), takes the
//!   host's share (so racing first packets of one endpoint never refuse each other), then publishes
//!   ownership. Acquires for *different* endpoints never wait for each other; two acquires for the same
//!   endpoint may spin briefly until one of them publishes.
//! - Exhaustion is reported when all candidates of an endpoint are owned or quarantined. With `K`
//!   candidates this can happen before the whole range is used: at occupancy `q` the chance is `q^K`
//!   (`K` = 128: 0.14 % at 95 % occupancy, 2 % at 97 %). Setting `candidates >= range length` makes it exact.
//! - Cost: `acquire` of a new endpoint reads its `K` candidate slots twice (claim, then check), so it
//!   grows linearly with `K` (see `benches/datapath.rs`); `release` and `owner_of` are O(1).
//!
//! # Files
//! This file holds the allocator and its acquire / release; `slot_word` a port's state word,
//! `candidates` an endpoint's claim order, `host_table` the per-address counts, `host_share` the
//! fair share and hard quota, `errors` what acquire and release answer besides a port, `secret` the
//! candidate order's key, `restore` putting a restarted daemon's saved mappings and quarantines back.

use crate::port_range::PortRange;
use candidates::Candidates;
pub use errors::{AllocError, ReleaseError, Released};
pub use host_table::HostTable;
pub use restore::{RestoreError, SavedQuarantine};
pub use secret::AllocatorSecret;
pub use slot_word::MAX_REFERENCES;
use slot_word::{
    MAX_QUARANTINE_DEADLINE, OWNER_MASK, Slot, TAG_MASK, claiming, decode, endpoint_of, owned,
};
use std::net::Ipv4Addr;
use sync::{AtomicU64, Ordering, spin};

mod candidates;
mod errors;
mod host_share;
pub mod host_table;
mod restore;
mod secret;
#[cfg(all(test, shuttle))]
mod shuttle_tests;
mod slot_word;
#[cfg(test)]
mod tests;

/// The atomics and the spin hint, swapped for shuttle's under `--cfg shuttle` so its scheduler can
/// explore the interleavings of concurrent acquires (see the `shuttle_tests` module).
mod sync {
    #[cfg(all(test, shuttle))]
    pub use shuttle::sync::atomic::{AtomicU64, Ordering};
    #[cfg(not(all(test, shuttle)))]
    pub use std::sync::atomic::{AtomicU64, Ordering};

    /// Waits politely for a concurrent acquire of the same endpoint.
    pub fn spin() {
        #[cfg(all(test, shuttle))]
        shuttle::thread::yield_now();
        #[cfg(not(all(test, shuttle)))]
        std::hint::spin_loop();
    }
}

/// `per_host_quota` meaning "no hard quota": only the fair share under pressure limits a host.
pub const NO_HARD_QUOTA: u32 = u32::MAX;

/// Configuration of one allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortAllocatorConfig {
    /// External ports (or ICMP ids) to hand out.
    pub range: PortRange,
    /// Most mappings one internal address may hold (RFC 6888 REQ-4); [`NO_HARD_QUOTA`]: none.
    pub per_host_quota: u32,
    /// The pool is under pressure once this percentage of its range is mapped: then hosts holding
    /// their fair share or more are refused (see the module docs).
    pub pressure_percent: u8,
    /// How long a released port stays unused, in ms (RFC 6888 REQ-8: 120 s).
    pub quarantine_ms: u64,
    /// Hashed candidates probed per endpoint besides the preserved port (`K` in the module docs).
    pub candidates: u32,
    /// Distinct internal addresses the quota table can hold.
    pub max_hosts: usize,
    /// Keep the < 1024 / ≥ 1024 class of the internal port (RFC 4787 REQ-3a); off for ICMP ids.
    pub keep_port_class: bool,
}

impl PortAllocatorConfig {
    /// Defaults for TCP / UDP over `range`: no hard quota, fair shares once 75 % of the range is
    /// mapped, 120 s quarantine, 128 candidates, 4096 hosts, port class kept.
    #[must_use]
    pub const fn new(range: PortRange) -> Self {
        Self {
            range,
            per_host_quota: NO_HARD_QUOTA,
            pressure_percent: 75,
            quarantine_ms: 120_000,
            candidates: 128,
            max_hosts: 4096,
            keep_port_class: true,
        }
    }
}

/// The allocator. `Sync`: share it by reference or `Arc` among workers.
#[derive(Debug)]
pub struct PortAllocator {
    config: PortAllocatorConfig,
    slots: Box<[AtomicU64]>,
    hosts: HostTable,
    secret: AllocatorSecret,
    low_class: PortRange,
    high_class: PortRange,
}

impl PortAllocator {
    /// An allocator with a fresh random secret.
    #[must_use]
    pub fn new(config: PortAllocatorConfig) -> Self {
        Self::with_secret(config, AllocatorSecret::random())
    }

    /// An allocator with the given secret (a restarted daemon's saved one: the same endpoints get
    /// the same candidate ports).
    #[must_use]
    pub fn with_secret(config: PortAllocatorConfig, secret: AllocatorSecret) -> Self {
        let range = config.range;
        let low_class = range.intersect(1, 1023).unwrap_or(range);
        let high_class = range.intersect(1024, u16::MAX).unwrap_or(range);
        Self {
            config,
            slots: (0..range.len()).map(|_| AtomicU64::new(0)).collect(),
            hosts: HostTable::new(config.max_hosts),
            secret,
            low_class,
            high_class,
        }
    }

    /// The secret key of the candidate order (saved with the daemon's state).
    #[must_use]
    pub const fn secret(&self) -> AllocatorSecret {
        self.secret
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &PortAllocatorConfig {
        &self.config
    }

    pub(super) fn slot(&self, port: u16) -> Option<&AtomicU64> {
        if !self.config.range.contains(port) {
            return None;
        }
        self.slots
            .get(usize::from(port - self.config.range.first()))
    }

    /// The external port for internal endpoint `(address, port)`: its existing mapping with one more
    /// reference (EIM), else the preserved port if claimable, else an unpredictable claimable
    /// candidate. `now_ms` is daemon time in ms.
    ///
    /// # Errors
    /// [`AllocError::Exhausted`], [`AllocError::QuotaExceeded`], [`AllocError::HostTableFull`],
    /// [`AllocError::ReferencesExhausted`]. Nothing changes on error.
    pub fn acquire(&self, address: Ipv4Addr, port: u16, now_ms: u64) -> Result<u16, AllocError> {
        let endpoint = endpoint_of(address, port);
        let candidates = self.candidates(endpoint, port);
        'attempt: loop {
            // Phase 1: an existing mapping, or the first claimable candidate.
            let mine = owned(endpoint, 0);
            let mut claimable: Option<(usize, u16, u64)> = None;
            for (current, candidate) in candidates.iter() {
                let Some(candidate) = candidate else {
                    continue;
                };
                let Some(slot) = self.slot(candidate) else {
                    continue;
                };
                let raw = slot.load(Ordering::SeqCst);
                if raw & OWNER_MASK != mine {
                    // Neither owned nor claimed by this endpoint: only claimability matters.
                    let claimable_now = raw == 0 || (raw & TAG_MASK == 0 && raw <= now_ms);
                    if claimable_now && claimable.is_none() {
                        claimable = Some((current, candidate, raw));
                    }
                    continue;
                }
                match decode(raw) {
                    Slot::Owned { refs, .. } => {
                        if refs >= MAX_REFERENCES {
                            return Err(AllocError::ReferencesExhausted);
                        }
                        if slot
                            .compare_exchange(raw, raw + 1, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                        {
                            return Ok(candidate);
                        }
                        continue 'attempt;
                    }
                    _ => {
                        // Claimed by a concurrent acquire for this endpoint: wait for it to publish.
                        spin();
                        continue 'attempt;
                    }
                }
            }
            let Some((claim_position, claim_port, observed)) = claimable else {
                return Err(AllocError::Exhausted);
            };
            let Some(slot) = self.slot(claim_port) else {
                return Err(AllocError::Exhausted);
            };
            if slot
                .compare_exchange(
                    observed,
                    claiming(endpoint),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_err()
            {
                continue 'attempt;
            }
            // Phase 2: back out if another claim or mapping for this endpoint exists.
            if self.conflicting_claim(endpoint, &candidates, claim_position) {
                slot.store(observed, Ordering::SeqCst);
                spin();
                continue 'attempt;
            }
            // Only the endpoint's one surviving claim counts against the host: two first packets
            // of one endpoint never refuse each other its share.
            if let Err(error) = self.take_quota(address) {
                slot.store(observed, Ordering::SeqCst);
                return Err(error);
            }
            slot.store(owned(endpoint, 1), Ordering::SeqCst);
            return Ok(claim_port);
        }
    }

    /// True when `endpoint` owns another candidate, or claims one at a lower position. A claim at a
    /// higher position is waited for (it backs out when it sees ours, or publishes first).
    fn conflicting_claim(&self, endpoint: u64, candidates: &Candidates, mine: usize) -> bool {
        for (current, candidate) in candidates.iter() {
            let Some(candidate) = candidate else {
                continue;
            };
            if current == mine {
                continue;
            }
            let Some(slot) = self.slot(candidate) else {
                continue;
            };
            loop {
                match decode(slot.load(Ordering::SeqCst)) {
                    Slot::Owned { endpoint: e, .. } if e == endpoint => return true,
                    Slot::Claiming { endpoint: e } if e == endpoint => {
                        if current < mine {
                            return true;
                        }
                        spin();
                    }
                    _ => break,
                }
            }
        }
        false
    }

    /// Drops one reference of `(address, port)`'s mapping on `external_port`; the last one quarantines
    /// the port until `now + quarantine_ms`.
    ///
    /// # Errors
    /// [`ReleaseError::NotOwner`] when the port is not owned by that endpoint (nothing changes).
    pub fn release(
        &self,
        external_port: u16,
        address: Ipv4Addr,
        port: u16,
        now_ms: u64,
    ) -> Result<Released, ReleaseError> {
        self.release_for(
            external_port,
            address,
            port,
            now_ms,
            self.config.quarantine_ms,
        )
    }

    /// Like [`Self::release`] for a reference whose flow never got an answer from the far side (an
    /// early-dropped SYN or unanswered datagram): the last one frees the port at once. Quarantine keeps
    /// a remote's late packets of an old conversation from reaching the port's next owner; a remote that
    /// never answered holds no such conversation, and a SYN flood or a scan would otherwise park every
    /// port of the range in quarantine for 120 s and starve every host of new mappings.
    ///
    /// # Errors
    /// [`ReleaseError::NotOwner`] when the port is not owned by that endpoint (nothing changes).
    pub fn release_unanswered(
        &self,
        external_port: u16,
        address: Ipv4Addr,
        port: u16,
        now_ms: u64,
    ) -> Result<Released, ReleaseError> {
        self.release_for(external_port, address, port, now_ms, 0)
    }

    fn release_for(
        &self,
        external_port: u16,
        address: Ipv4Addr,
        port: u16,
        now_ms: u64,
        quarantine_ms: u64,
    ) -> Result<Released, ReleaseError> {
        let endpoint = endpoint_of(address, port);
        let slot = self.slot(external_port).ok_or(ReleaseError::NotOwner)?;
        loop {
            let raw = slot.load(Ordering::SeqCst);
            let Slot::Owned { endpoint: e, refs } = decode(raw) else {
                return Err(ReleaseError::NotOwner);
            };
            if e != endpoint {
                return Err(ReleaseError::NotOwner);
            }
            if refs > 1 {
                if slot
                    .compare_exchange(raw, raw - 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    return Ok(Released::StillMapped(refs - 1));
                }
                continue;
            }
            let until = now_ms
                .saturating_add(quarantine_ms)
                .min(MAX_QUARANTINE_DEADLINE);
            let quarantined = if quarantine_ms == 0 { 0 } else { until.max(1) };
            if slot
                .compare_exchange(raw, quarantined, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                self.give_quota(address);
                return Ok(if quarantined == 0 {
                    Released::Freed
                } else {
                    Released::Quarantined
                });
            }
        }
    }

    /// The external port of internal endpoint `(address, port)`'s live mapping, if it has one; changes
    /// nothing. O(1) when the host holds no mapping here, else one pass over the endpoint's candidates
    /// (as [`Self::acquire`] makes). The answer can be stale by the time it is used: a caller that then
    /// acquires gets the same port (one more reference) or, if the mapping was released meanwhile, a
    /// new one.
    #[must_use]
    pub fn mapping_of(&self, address: Ipv4Addr, port: u16) -> Option<u16> {
        if self.host_mappings(address) == 0 {
            return None;
        }
        let endpoint = endpoint_of(address, port);
        let mine = owned(endpoint, 0);
        self.candidates(endpoint, port)
            .iter()
            .filter_map(|(_, candidate)| candidate)
            .find(|&candidate| {
                self.slot(candidate).is_some_and(|slot| {
                    let raw = slot.load(Ordering::SeqCst);
                    raw & OWNER_MASK == mine && matches!(decode(raw), Slot::Owned { .. })
                })
            })
    }

    /// The internal endpoint owning `external_port`, in O(1) (for hairpinning and endpoint-independent
    /// filtering).
    #[must_use]
    pub fn owner_of(&self, external_port: u16) -> Option<(Ipv4Addr, u16)> {
        match decode(self.slot(external_port)?.load(Ordering::SeqCst)) {
            Slot::Owned { endpoint, .. } => {
                let address = Ipv4Addr::from_bits(u32::try_from(endpoint >> 16).unwrap_or(0));
                Some((address, u16::try_from(endpoint & 0xFFFF).unwrap_or(0)))
            }
            _ => None,
        }
    }

    /// How many flows reference the mapping on `external_port` (0 when not owned).
    #[must_use]
    pub fn references(&self, external_port: u16) -> u32 {
        match self
            .slot(external_port)
            .map(|s| decode(s.load(Ordering::SeqCst)))
        {
            Some(Slot::Owned { refs, .. }) => refs,
            _ => 0,
        }
    }

    /// Frees every quarantined port at once; returns how many were still quarantined at `now`.
    ///
    /// Quarantine protects one external *address*:port. When the address the allocator hands ports
    /// out for changes (an uplink renumbered by DHCP), no remote can reach the old address through
    /// the NAT any more, so the ports it quarantined only keep the new address from using them. Owned
    /// and claiming ports are not touched; a port quarantined concurrently is either freed or kept.
    pub fn end_quarantines(&self, now_ms: u64) -> usize {
        let mut ended = 0;
        for slot in &*self.slots {
            let raw = slot.load(Ordering::SeqCst);
            if let Slot::Quarantined(until) = decode(raw)
                && slot
                    .compare_exchange(raw, 0, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                && until > now_ms
            {
                ended += 1;
            }
        }
        ended
    }

    /// True when `external_port` is quarantined at `now`.
    #[must_use]
    pub fn is_quarantined(&self, external_port: u16, now_ms: u64) -> bool {
        matches!(self.slot(external_port).map(|s| decode(s.load(Ordering::SeqCst))), Some(Slot::Quarantined(t)) if t > now_ms)
    }

    /// Number of owned ports (O(range); for metrics, not the per-packet path).
    #[must_use]
    pub fn mapped_ports(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(decode(s.load(Ordering::Relaxed)), Slot::Owned { .. }))
            .count()
    }
}
