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

use crate::port_range::PortRange;
pub use host_table::HostTable;
use host_table::TakeError;
use std::hash::{BuildHasher, RandomState};
use std::net::Ipv4Addr;
use sync::{AtomicU64, Ordering, spin};

pub mod host_table;

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

const TAG_MASK: u64 = 0b11 << 62;
const TAG_OWNED: u64 = 0b10 << 62;
const TAG_CLAIMING: u64 = 0b11 << 62;
const ENDPOINT_SHIFT: u32 = 14;
const ENDPOINT_MASK: u64 = ((1 << 48) - 1) << ENDPOINT_SHIFT;
const REFS_MASK: u64 = (1 << ENDPOINT_SHIFT) - 1;
/// Bits that say "owned or claimed, by this endpoint": the high tag bit and the endpoint.
const OWNER_MASK: u64 = (1 << 63) | ENDPOINT_MASK;
/// The most references one mapping can hold (flows sharing one internal endpoint).
pub const MAX_REFERENCES: u32 = (1 << ENDPOINT_SHIFT) - 1;
const MAX_QUARANTINE_DEADLINE: u64 = (1 << 62) - 1;
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

/// Why no port was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AllocError {
    /// Every candidate port of the endpoint is owned or quarantined.
    #[error("no external port left for this endpoint")]
    Exhausted,
    /// The internal host already holds its quota of mappings (RFC 6888 REQ-4).
    #[error("internal host reached its port quota")]
    QuotaExceeded,
    /// The quota table has no room for another internal address.
    #[error("too many internal hosts for the quota table")]
    HostTableFull,
    /// The endpoint's mapping already carries [`MAX_REFERENCES`] flows.
    #[error("mapping reference count at its maximum")]
    ReferencesExhausted,
    /// The pool is under pressure and the host already holds its fair share of it.
    #[error("internal host holds its fair share of a pool under pressure")]
    FairShareExceeded,
}

impl AllocError {
    /// Every variant, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Exhausted,
        Self::QuotaExceeded,
        Self::HostTableFull,
        Self::ReferencesExhausted,
        Self::FairShareExceeded,
    ];

    /// A stable snake_case counter name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Exhausted => "nat_ports_exhausted",
            Self::QuotaExceeded => "nat_host_quota_exceeded",
            Self::HostTableFull => "nat_host_table_full",
            Self::ReferencesExhausted => "nat_mapping_references_exhausted",
            Self::FairShareExceeded => "nat_host_over_fair_share",
        }
    }
}

impl AllocError {
    /// Whether the refusal is about the host's share (fair share under pressure, or the hard quota)
    /// rather than the pool: another pool may still serve the host.
    #[must_use]
    pub const fn is_share_refusal(self) -> bool {
        matches!(self, Self::QuotaExceeded | Self::FairShareExceeded)
    }
}

/// Why a release was refused (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The port is not owned by that internal endpoint.
    #[error("port not owned by that endpoint")]
    NotOwner,
}

/// What a successful release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Other flows still use the mapping; this many references remain.
    StillMapped(u32),
    /// That was the last reference: the port is quarantined.
    Quarantined,
    /// That was the last reference and no quarantine applies: the port is free at once.
    Freed,
}

/// The allocator. `Sync`: share it by reference or `Arc` among workers.
#[derive(Debug)]
pub struct PortAllocator {
    config: PortAllocatorConfig,
    slots: Box<[AtomicU64]>,
    hosts: HostTable,
    secret: RandomState,
    low_class: PortRange,
    high_class: PortRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    Quarantined(u64),
    Owned { endpoint: u64, refs: u32 },
    Claiming { endpoint: u64 },
}

fn decode(raw: u64) -> Slot {
    let endpoint = (raw & ENDPOINT_MASK) >> ENDPOINT_SHIFT;
    match raw & TAG_MASK {
        TAG_OWNED => Slot::Owned {
            endpoint,
            refs: u32::try_from(raw & REFS_MASK).unwrap_or(0),
        },
        TAG_CLAIMING => Slot::Claiming { endpoint },
        _ if raw == 0 => Slot::Free,
        _ => Slot::Quarantined(raw),
    }
}

const fn owned(endpoint: u64, refs: u32) -> u64 {
    TAG_OWNED | (endpoint << ENDPOINT_SHIFT) | refs as u64
}

const fn claiming(endpoint: u64) -> u64 {
    TAG_CLAIMING | (endpoint << ENDPOINT_SHIFT)
}

const fn endpoint_of(address: Ipv4Addr, port: u16) -> u64 {
    ((address.to_bits() as u64) << 16) | port as u64
}

const fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Candidate ports are visited in blocks of this many consecutive slots (one 64-byte cache line of
/// `AtomicU64`s), so probing `K` candidates touches about `K / 8` cache lines.
const BLOCK: usize = 8;

/// The candidate ports of one endpoint, in claim order (see the module docs). Cheap to copy.
#[derive(Debug, Clone, Copy)]
struct Candidates {
    preserved: Option<u16>,
    class: PortRange,
    start_block: usize,
    block_step: usize,
    blocks: usize,
    positions: usize,
}

impl Candidates {
    /// Every candidate in claim order as `(position, port)`, with `None` for a position to skip (past
    /// the class's last port, or the preserved port met again). Division-free: blocks advance by
    /// addition.
    fn iter(&self) -> CandidateIter {
        CandidateIter {
            candidates: *self,
            position: 0,
            hashed: 0,
            block: self.start_block,
        }
    }
}

/// Iterator of [`Candidates::iter`].
#[derive(Debug, Clone, Copy)]
struct CandidateIter {
    candidates: Candidates,
    position: usize,
    hashed: usize,
    block: usize,
}

impl Iterator for CandidateIter {
    type Item = (usize, Option<u16>);

    fn next(&mut self) -> Option<Self::Item> {
        let c = &self.candidates;
        let position = self.position;
        self.position += 1;
        if position == 0
            && let Some(port) = c.preserved
        {
            return Some((position, Some(port)));
        }
        if self.hashed >= c.positions {
            return None;
        }
        let within = self.hashed % BLOCK;
        let offset = self.block * BLOCK + within;
        self.hashed += 1;
        if within == BLOCK - 1 {
            self.block += c.block_step;
            if self.block >= c.blocks {
                self.block -= c.blocks;
            }
        }
        if offset >= c.class.len() {
            return Some((position, None));
        }
        let port = u16::try_from(usize::from(c.class.first()) + offset).ok();
        Some((position, port.filter(|&p| c.preserved != Some(p))))
    }
}

impl PortAllocator {
    /// An allocator with a fresh random secret.
    #[must_use]
    pub fn new(config: PortAllocatorConfig) -> Self {
        let range = config.range;
        let low_class = range.intersect(1, 1023).unwrap_or(range);
        let high_class = range.intersect(1024, u16::MAX).unwrap_or(range);
        Self {
            config,
            slots: (0..range.len()).map(|_| AtomicU64::new(0)).collect(),
            hosts: HostTable::new(config.max_hosts),
            secret: RandomState::new(),
            low_class,
            high_class,
        }
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &PortAllocatorConfig {
        &self.config
    }

    fn slot(&self, port: u16) -> Option<&AtomicU64> {
        if !self.config.range.contains(port) {
            return None;
        }
        self.slots
            .get(usize::from(port - self.config.range.first()))
    }

    fn candidates(&self, endpoint: u64, internal_port: u16) -> Candidates {
        let class = if !self.config.keep_port_class {
            self.config.range
        } else if internal_port >= 1024 {
            self.high_class
        } else {
            self.low_class
        };
        let blocks = class.len().div_ceil(BLOCK);
        let hash = self.secret.hash_one(endpoint);
        let start_block = usize::try_from(hash % blocks as u64).unwrap_or(0);
        let mut block_step = usize::try_from((hash >> 32) % blocks as u64)
            .unwrap_or(1)
            .max(1);
        while gcd(block_step, blocks) != 1 {
            block_step = block_step % blocks + 1;
        }
        let wanted = usize::try_from(self.config.candidates).unwrap_or(usize::MAX);
        let positions = wanted.div_ceil(BLOCK).min(blocks) * BLOCK;
        let preserved = class.contains(internal_port).then_some(internal_port);
        Candidates {
            preserved,
            class,
            start_block,
            block_step,
            blocks,
            positions,
        }
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

    /// Mappings held by internal `address`.
    #[must_use]
    pub fn host_mappings(&self, address: Ipv4Addr) -> u32 {
        self.hosts.held(address)
    }

    /// The per-host counts (hosts holding mappings, their sum, the table's size).
    #[must_use]
    pub const fn hosts(&self) -> &HostTable {
        &self.hosts
    }

    /// The most mappings a host may hold now: while the pool is under pressure, its fair share with
    /// room kept for one more host (the range divided by the hosts holding mappings plus one), else
    /// no limit (see the module docs).
    fn fair_share(&self) -> u32 {
        let range = self.config.range.len() as u64;
        let pressure = range * u64::from(self.config.pressure_percent) / 100;
        if self.hosts.total() < pressure {
            return u32::MAX;
        }
        let hosts = self.hosts.live() as u64 + 1;
        u32::try_from(range / hosts).unwrap_or(u32::MAX).max(1)
    }

    fn take_quota(&self, address: Ipv4Addr) -> Result<(), AllocError> {
        let hard = self.config.per_host_quota;
        let allowed = |held: u32| held < hard && held < self.fair_share();
        self.hosts
            .take(address, allowed)
            .map_err(|error| match error {
                TakeError::Full => AllocError::HostTableFull,
                TakeError::Refused if self.hosts.held(address) >= hard => AllocError::QuotaExceeded,
                TakeError::Refused => AllocError::FairShareExceeded,
            })
    }

    fn give_quota(&self, address: Ipv4Addr) {
        self.hosts.give(address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Barrier};

    const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);

    fn allocator(
        first: u16,
        last: u16,
        edit: impl FnOnce(&mut PortAllocatorConfig),
    ) -> PortAllocator {
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
}

/// Randomised-scheduler exploration of the first-packet race (shuttle, random schedules):
/// `RUSTFLAGS="--cfg shuttle" cargo test -p flowpin-nat --lib shuttle_tests`.
#[cfg(all(test, shuttle))]
mod shuttle_tests {
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
}
