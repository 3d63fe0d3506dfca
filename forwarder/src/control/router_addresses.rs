//! The router's own IPv4 addresses: every address of every interface in its network namespace.
//!
//! The XDP program hands packets to these addresses to the kernel (echo requests, SSH, DNS, ...),
//! except return and hairpin traffic of translated flows to an uplink's NAT address; without the
//! whole set, a LAN packet to a secondary LAN address or to a management interface's address would be
//! taken for transit and translated out of an uplink. The set is read at start and re-read on every
//! rtnetlink address event and every second, through [`netinfo::interface`] for each interface listed
//! in `/sys/class/net` (the process's namespace). Invariant: only the control plane reads it, never per
//! packet.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::netinfo;

/// Every IPv4 address of every interface of the namespace that [`netinfo::interface`] can read
/// (loopback included: the kernel drops 127/8 from the wire as martian anyway). An interface that
/// vanishes between the listing and its read, or that `netinfo` cannot describe (one without a
/// link-layer address, e.g. a tun or WireGuard device), contributes nothing; it is logged at debug.
/// `None` when the interfaces cannot be listed at all (the caller then keeps what it had).
pub fn read() -> Option<BTreeSet<Ipv4Addr>> {
    let entries = match std::fs::read_dir("/sys/class/net") {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(%error, "cannot list /sys/class/net: the router's addresses are not re-read");
            return None;
        }
    };
    let mut addresses = BTreeSet::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // Not interfaces: the bonding driver's control file.
        if !entry.path().join("ifindex").exists() {
            continue;
        }
        match netinfo::interface(name) {
            Ok(info) => addresses.extend(info.ipv4.iter().map(|(address, _)| *address)),
            Err(error) => {
                tracing::debug!(interface = name, error = %format!("{error:#}"), "addresses not read");
            }
        }
    }
    Some(addresses)
}
