//! flowpin's XDP program and the Rust mirror of its map layout.
//!
//! The program (`c/flowpin_xdp.c`) is built by `build.rs` with `clang -O2 -g -target bpf`; its
//! object bytes are exported by [`program_object`], aligned for aya's ELF parser. The maps' keys,
//! values, names and sizes live in ONE C header (`c/flowpin_maps.h`); this crate mirrors them with
//! `#[repr(C)]` types whose sizes, field offsets and constants are asserted at compile time
//! against a host-compiled probe of that header ([`c_layout`]), so the two can never drift apart.
//!
//! Values cross into the maps as byte arrays (`to_bytes`/`from_bytes`, native endian, laid out at
//! the asserted offsets), which keeps this crate free of `unsafe` (no `Pod` impls needed).
#![deny(unsafe_code)]

mod admission;
mod counter;
mod decision;
mod forward_key;
mod iface_config;
mod local_addr;
mod object;

/// The constants of `c/flowpin_maps.h`, as printed by the host layout probe at build time.
pub mod c_layout {
    include!(concat!(env!("OUT_DIR"), "/c_layout.rs"));
}

pub use admission::{Admission, Budget, lan_prefix_key};
pub use counter::Counter;
pub use decision::{Action, Decision};
pub use forward_key::{ForwardKey, ForwardKeyBytes};
pub use iface_config::{IFACE_L3, IfaceConfig, Role};
pub use local_addr::LocalAddr;
pub use object::program_object;

/// Name of the XDP program (its function/section symbol) in the object.
pub const PROGRAM_NAME: &str = c_layout::PROGRAM_NAME;
/// Hash map: ifindex (`u32`) → [`IfaceConfig`].
pub const MAP_IFACES: &str = c_layout::MAP_IFACES;
/// Hash map: IPv4 address (`u32` in network order, see [`LocalAddr::key`]) → [`LocalAddr`].
pub const MAP_LOCAL_ADDRS: &str = c_layout::MAP_LOCAL_ADDRS;
/// XSKMAP: [`xsk_key`] → AF_XDP socket.
pub const MAP_XSKS: &str = c_layout::MAP_XSKS;
/// Per-CPU array: [`Decision`] → [`Counter`].
pub const MAP_COUNTERS: &str = c_layout::MAP_COUNTERS;

/// Array of one entry (key 0): [`Admission`], the budgets of packets that can only open a flow.
pub const MAP_ADMISSION: &str = c_layout::MAP_ADMISSION;
/// Array: the shared buckets (LAN, inbound), kept by the program.
pub const MAP_BUCKETS: &str = c_layout::MAP_BUCKETS;
/// LRU hash: a LAN sender's source MAC → its bucket, kept by the program.
pub const MAP_HOST_BUCKETS: &str = c_layout::MAP_HOST_BUCKETS;
/// LPM trie: the LAN's prefixes ([`lan_prefix_key`]); an uplink packet to one is dropped.
pub const MAP_LAN_PREFIXES: &str = c_layout::MAP_LAN_PREFIXES;
/// Hash: [`ForwardKey`] → `1u32`, the forwarded ports of the uplinks' NAT addresses.
pub const MAP_FORWARDS: &str = c_layout::MAP_FORWARDS;

/// Interface slots (LAN + uplinks) the program can tell apart.
pub const MAX_IFACES: u32 = c_layout::MAX_IFACES;
/// Receive queues per interface that can have a socket.
pub const MAX_QUEUES: u32 = c_layout::MAX_QUEUES;
/// Entries of the XSKMAP (`MAX_IFACES * MAX_QUEUES`).
pub const XSKMAP_SIZE: u32 = c_layout::XSKMAP_SIZE;
/// Entries of the router's-own-addresses map.
pub const MAX_LOCAL_ADDRS: u32 = c_layout::MAX_LOCAL_ADDRS;
/// LAN senders (source MACs) with a bucket of their own; the least recently used goes first.
pub const MAX_ADMISSION_HOSTS: u32 = c_layout::MAX_ADMISSION_HOSTS;
/// Entries of the LAN-prefix trie.
pub const MAX_LAN_PREFIXES: u32 = c_layout::MAX_LAN_PREFIXES;
/// Entries of the forwarded-ports map (one per uplink address, protocol and port).
pub const MAX_FORWARD_PORTS: u32 = c_layout::MAX_FORWARD_PORTS;

const _: () = assert!(XSKMAP_SIZE == MAX_IFACES * MAX_QUEUES);

/// The XSKMAP key of the socket serving receive queue `queue` of the interface in `slot`,
/// or `None` when either is out of range.
pub const fn xsk_key(slot: u32, queue: u32) -> Option<u32> {
    if slot < MAX_IFACES && queue < MAX_QUEUES {
        Some(slot * MAX_QUEUES + queue)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsk_keys_are_distinct_per_slot_and_queue() {
        let mut seen = std::collections::HashSet::new();
        for slot in 0..MAX_IFACES {
            for queue in 0..MAX_QUEUES {
                let key = xsk_key(slot, queue).expect("in range");
                assert!(key < XSKMAP_SIZE);
                assert!(seen.insert(key), "key {key} reused");
            }
        }
        assert_eq!(xsk_key(MAX_IFACES, 0), None);
        assert_eq!(xsk_key(0, MAX_QUEUES), None);
    }
}
