//! The synthetic flow population every benchmark draws from: flow `i` of a set of `n` flows.
//!
//! One definition, used by the in-memory datapath benches, the AF_XDP generator and the trafgen
//! configuration writer, so "1 k flows" means the same 5-tuples everywhere.
//!
//! Invariants:
//! - sources are `source_hosts` consecutive addresses from [`Addressing::first_source`] (private),
//!   destinations `destinations` consecutive addresses from [`Addressing::first_destination`]
//!   (TEST-NET) — a leaked private source on an uplink is therefore recognisable;
//! - flows `0..n` of a set are pairwise distinct 5-tuples (the length is clamped to keep them so);
//! - the number of distinct *internal endpoints* (source address, source port) is at most
//!   [`Addressing::max_endpoints`]: NAT maps each endpoint to one external port per uplink (endpoint-
//!   independent mapping), so more endpoints than a port range holds would measure port exhaustion
//!   instead of forwarding. Beyond that many flows, endpoints repeat with new destinations.

use std::net::Ipv4Addr;

/// The LAN prefix the in-memory rig's synthetic sources live in.
pub const LAN_PREFIX: &str = "10.0.0.0/8";

/// The first destination port of synthetic flows (UDP discard).
pub const DESTINATION_PORT: u16 = 9;

/// First source port used by synthetic endpoints.
const FIRST_SOURCE_PORT: u16 = 10_000;
/// Source ports per synthetic host (spaced 390 apart over 10000..=59530).
pub const PORTS_PER_HOST: u32 = 128;

/// One synthetic flow's LAN-side 5-tuple (the protocol is chosen by whoever builds the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyntheticFlow {
    /// LAN host address.
    pub source: Ipv4Addr,
    /// LAN host port.
    pub source_port: u16,
    /// Server address.
    pub destination: Ipv4Addr,
    /// Server port.
    pub destination_port: u16,
}

/// Where synthetic flows come from and go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Addressing {
    /// The first source host; hosts are consecutive addresses from here.
    pub first_source: Ipv4Addr,
    /// How many source hosts (each with [`PORTS_PER_HOST`] ports).
    pub source_hosts: u32,
    /// The first destination; destinations are consecutive addresses from here.
    pub first_destination: Ipv4Addr,
    /// How many destination addresses.
    pub destinations: u32,
}

impl Addressing {
    /// The in-memory rig's addressing: 128 hosts from 10.1.0.1 (16384 endpoints), 254 servers from
    /// 203.0.113.1.
    pub const RIG: Addressing = Addressing {
        first_source: Ipv4Addr::new(10, 1, 0, 1),
        source_hosts: 128,
        first_destination: Ipv4Addr::new(203, 0, 113, 1),
        destinations: 254,
    };

    /// Distinct internal endpoints available.
    pub fn max_endpoints(&self) -> u32 {
        self.source_hosts.max(1) * PORTS_PER_HOST
    }
}

/// A population of `len` flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSet {
    len: u32,
    addressing: Addressing,
}

impl FlowSet {
    /// At most this many flows in a set of the rig's addressing.
    pub const MAX_FLOWS: u32 = 128 * PORTS_PER_HOST * 254 * 256;

    /// `len` flows of the rig's addressing, clamped to `1..=MAX_FLOWS`.
    pub fn new(len: u32) -> Self {
        Self::with_addressing(len, Addressing::RIG)
    }

    /// `len` flows of `addressing` (clamped so that 5-tuples stay distinct).
    pub fn with_addressing(len: u32, addressing: Addressing) -> Self {
        let addressing = Addressing {
            source_hosts: addressing.source_hosts.max(1),
            destinations: addressing.destinations.max(1),
            ..addressing
        };
        let max = u64::from(addressing.max_endpoints()) * u64::from(addressing.destinations) * 256;
        Self {
            len: u64::from(len).clamp(1, max.min(u64::from(u32::MAX))) as u32,
            addressing,
        }
    }

    /// How many flows.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Never true (a set has at least one flow); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Distinct internal endpoints in this set.
    pub fn endpoints(&self) -> u32 {
        self.len.min(self.addressing.max_endpoints())
    }

    /// Flow `index` (taken modulo the set's length).
    pub fn flow(&self, index: u32) -> SyntheticFlow {
        let a = &self.addressing;
        let index = index % self.len;
        let endpoints = self.endpoints();
        let endpoint = index % endpoints;
        let round = index / endpoints;
        let host = endpoint / PORTS_PER_HOST;
        let port = endpoint % PORTS_PER_HOST;
        SyntheticFlow {
            source: Ipv4Addr::from(u32::from(a.first_source).wrapping_add(host)),
            source_port: FIRST_SOURCE_PORT + (port * 390) as u16,
            destination: Ipv4Addr::from(
                u32::from(a.first_destination).wrapping_add(round % a.destinations),
            ),
            destination_port: DESTINATION_PORT + (round / a.destinations) as u16,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn flows_are_distinct_and_endpoints_bounded() {
        let set = FlowSet::new(100_000);
        let mut tuples = HashSet::new();
        let mut endpoints = HashSet::new();
        for i in 0..set.len() {
            let f = set.flow(i);
            assert!(tuples.insert(f), "flow {i} repeats {f:?}");
            endpoints.insert((f.source, f.source_port));
            assert_eq!(&f.source.octets()[..3], &[10, 1, 0]);
            assert_eq!(&f.destination.octets()[..3], &[203, 0, 113]);
        }
        assert_eq!(endpoints.len() as u32, Addressing::RIG.max_endpoints());
    }

    #[test]
    fn small_sets_use_one_endpoint_per_flow() {
        let set = FlowSet::new(1000);
        let endpoints: HashSet<_> = (0..1000)
            .map(|i| {
                let f = set.flow(i);
                (f.source, f.source_port)
            })
            .collect();
        assert_eq!(endpoints.len(), 1000);
        assert_eq!(set.flow(1000), set.flow(0), "indices wrap");
    }

    #[test]
    fn lab_addressing_stays_inside_its_ranges() {
        let lab = Addressing {
            first_source: Ipv4Addr::new(10, 77, 0, 100),
            source_hosts: 100,
            first_destination: Ipv4Addr::new(203, 0, 113, 10),
            destinations: 1,
        };
        let set = FlowSet::with_addressing(u32::MAX, lab);
        assert_eq!(set.len(), 100 * PORTS_PER_HOST * 256);
        for i in (0..set.len()).step_by(997) {
            let f = set.flow(i);
            let last = f.source.octets()[3];
            assert!((100..200).contains(&last), "{f:?}");
            assert_eq!(f.destination, Ipv4Addr::new(203, 0, 113, 10));
            assert!(f.destination_port >= DESTINATION_PORT);
        }
    }

    #[test]
    fn largest_set_stays_distinct_at_its_end() {
        let set = FlowSet::new(FlowSet::MAX_FLOWS);
        let n = set.len();
        let tail: HashSet<_> = (n - 50_000..n).map(|i| set.flow(i)).collect();
        assert_eq!(tail.len(), 50_000);
        assert_ne!(set.flow(0), set.flow(n - 1));
    }
}
