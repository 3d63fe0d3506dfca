//! What the kernel says about the LAN and the uplinks, read over rtnetlink (see
//! [`crate::control::netinfo`]).
//!
//! Invariants: an uplink's `eligible` fact here is only "carries packets" (carrier and operational);
//! health and drain are applied at publish. A gateway is solicited only on a link that carries
//! packets: a request sent earlier is dropped and the kernel asks again only a second later.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::config::{self, Config};
use crate::control::netinfo;
use crate::control::router_addresses;
use crate::control::snapshot::UplinkFacts;
use crate::datapath::Mac;

/// Learns every uplink's interface and gateway MAC, waiting up to `wait` for the gateways to resolve.
pub(super) fn resolve_uplinks(config: &Config, wait: Duration) -> Result<Vec<Option<UplinkFacts>>> {
    let deadline = Instant::now() + wait;
    loop {
        let facts = config
            .uplinks
            .iter()
            .map(uplink_facts)
            .collect::<Result<Vec<_>>>()?;
        let unresolved: Vec<_> = config
            .uplinks
            .iter()
            .zip(&facts)
            .filter(|(_, f)| f.gateway_mac.is_none())
            .map(|(u, _)| u)
            .collect();
        if unresolved.is_empty() || Instant::now() >= deadline {
            for u in unresolved {
                tracing::warn!(uplink = %u.name, gateway = %u.gateway, "gateway not resolved yet; the uplink takes no flows until it is");
            }
            return Ok(facts.into_iter().map(Some).collect());
        }
        for u in unresolved {
            let _ = netinfo::solicit_neighbour_on(&u.interface, u.gateway);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Uplink `u`'s address, MACs, MTU and whether its link carries packets.
pub(super) fn uplink_facts(u: &config::Uplink) -> Result<UplinkFacts> {
    let info = netinfo::interface(&u.interface)
        .with_context(|| format!("uplink {}: interface {}", u.name, u.interface))?;
    let address = match u.address {
        Some(a) => a,
        None => match info.ipv4.first() {
            Some((a, _)) => *a,
            None => bail!(
                "uplink {}: interface {} has no IPv4 address and none is configured",
                u.name,
                u.interface
            ),
        },
    };
    // A device without a link layer has no neighbours: the gateway (the link's peer) needs no MAC,
    // and the frames' Ethernet header, all zero, is cut off at transmit (`crate::link_kind`).
    let gateway_mac = if info.layer3 {
        Some([0; 6])
    } else {
        netinfo::neighbour(&u.interface, u.gateway)?
    };
    Ok(UplinkFacts {
        address,
        mac: info.mac,
        gateway_mac,
        mtu: u16::try_from(info.mtu).unwrap_or(u16::MAX),
        eligible: info.carrier,
    })
}

/// Uplink `u`'s facts now, its gateway solicited when unresolved on a link that carries packets
/// (`None`: unreadable, logged).
pub(super) fn refreshed_uplink_facts(u: &config::Uplink) -> Option<UplinkFacts> {
    match uplink_facts(u) {
        Ok(f) => {
            // Only a link that carries packets: a request sent earlier is dropped and the kernel
            // asks again only a second later.
            if f.gateway_mac.is_none() && f.eligible {
                let _ = netinfo::solicit_neighbour_on(&u.interface, u.gateway);
            }
            Some(f)
        }
        Err(e) => {
            tracing::warn!(uplink = %u.name, error = %e, "uplink unavailable");
            None
        }
    }
}

/// The LAN neighbours with a usable MAC (hairpin and originated packets find LAN hosts by them), over
/// rtnetlink; an unreadable table reads as empty until the next refresh.
pub(super) fn lan_neighbours(interface: &str) -> Vec<(Ipv4Addr, Mac)> {
    netinfo::neighbours(interface).unwrap_or_else(|error| {
        tracing::debug!(%error, interface, "reading the LAN's neighbour table failed");
        Vec::new()
    })
}

/// Whether interface `name` carries packets now (carrier and operational, over rtnetlink; see
/// `netinfo::entries::operational`; unreadable = no carrier).
pub(super) fn carrier(name: &str) -> bool {
    netinfo::interface(name).is_ok_and(|info| info.carrier)
}

/// The router's host addresses for the XDP program: every address of its namespace
/// ([`router_addresses::read`]), and always the LAN address the snapshot uses (`None` when the
/// interfaces cannot be listed).
pub(super) fn host_addresses(lan_address: Ipv4Addr) -> Option<BTreeSet<Ipv4Addr>> {
    let mut addresses = router_addresses::read()?;
    addresses.insert(lan_address);
    Some(addresses)
}

/// Whether two readings of the uplinks' facts are the same.
pub(super) fn same_facts(a: &[Option<UplinkFacts>], b: &[Option<UplinkFacts>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => {
                x.address == y.address
                    && x.mac == y.mac
                    && x.gateway_mac == y.gateway_mac
                    && x.mtu == y.mtu
                    && x.eligible == y.eligible
            }
            (None, None) => true,
            _ => false,
        })
}
