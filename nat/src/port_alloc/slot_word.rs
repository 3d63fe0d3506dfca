//! The state word of one external port: free, quarantined until a deadline, owned by an internal
//! endpoint with a reference count, or being claimed by one (see the allocator's module docs).

use std::net::Ipv4Addr;

pub(super) const TAG_MASK: u64 = 0b11 << 62;
pub(super) const TAG_OWNED: u64 = 0b10 << 62;
pub(super) const TAG_CLAIMING: u64 = 0b11 << 62;
pub(super) const ENDPOINT_SHIFT: u32 = 14;
pub(super) const ENDPOINT_MASK: u64 = ((1 << 48) - 1) << ENDPOINT_SHIFT;
pub(super) const REFS_MASK: u64 = (1 << ENDPOINT_SHIFT) - 1;
/// Bits that say "owned or claimed, by this endpoint": the high tag bit and the endpoint.
pub(super) const OWNER_MASK: u64 = (1 << 63) | ENDPOINT_MASK;
/// The most references one mapping can hold (flows sharing one internal endpoint).
pub const MAX_REFERENCES: u32 = (1 << ENDPOINT_SHIFT) - 1;
pub(super) const MAX_QUARANTINE_DEADLINE: u64 = (1 << 62) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Free,
    Quarantined(u64),
    Owned { endpoint: u64, refs: u32 },
    Claiming { endpoint: u64 },
}

pub(super) fn decode(raw: u64) -> Slot {
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

pub(super) const fn owned(endpoint: u64, refs: u32) -> u64 {
    TAG_OWNED | (endpoint << ENDPOINT_SHIFT) | refs as u64
}

pub(super) const fn claiming(endpoint: u64) -> u64 {
    TAG_CLAIMING | (endpoint << ENDPOINT_SHIFT)
}

pub(super) const fn endpoint_of(address: Ipv4Addr, port: u16) -> u64 {
    ((address.to_bits() as u64) << 16) | port as u64
}
