//! Building the datapath's [`Snapshot`] from the configuration and what the kernel told us.
//!
//! The per-uplink NAT pools are created once per uplink *name* and carried from snapshot to snapshot, so
//! reloads and neighbour changes never lose a mapping.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use flowpin_nat::{PortAllocator, PortAllocatorConfig, RefreshPolicy, Timeouts};

use crate::config::Config;
use crate::datapath::{LanView, Mac, Snapshot, UplinkNat, UplinkView};
use crate::select::{KeyHasher, PolicyTable, UplinkStatus};

/// The NAT timeouts of a configuration, in the datapath's units.
pub fn timeouts(config: &Config) -> Timeouts {
    let t = &config.nat.timeouts;
    let refresh = if config.nat.udp_refresh_on_inbound {
        RefreshPolicy::Bidirectional
    } else {
        RefreshPolicy::OutboundOnly
    };
    Timeouts {
        udp_ms: u64::from(t.udp) * 1000,
        tcp_established_ms: u64::from(t.tcp_established) * 1000,
        tcp_transitory_ms: u64::from(t.tcp_transitory) * 1000,
        icmp_ms: u64::from(t.icmp) * 1000,
        udp_refresh: refresh,
        icmp_refresh: RefreshPolicy::OutboundOnly,
    }
}

/// The port pools of one uplink address for the configured NAT range.
pub fn uplink_nat(config: &Config) -> UplinkNat {
    let range = config.nat.port_range;
    let range = flowpin_nat::PortRange::new(range.first(), range.last())
        .expect("a validated configuration has a non-empty port range");
    let ports = PortAllocatorConfig::new(range);
    UplinkNat {
        tcp: PortAllocator::new(ports),
        udp: PortAllocator::new(ports),
        // Echo ids have no privileged class to keep.
        icmp: PortAllocator::new(PortAllocatorConfig {
            keep_port_class: false,
            ..ports
        }),
    }
}

/// What the kernel told the control plane about one uplink.
#[derive(Debug, Clone)]
pub struct UplinkFacts {
    /// External address (configured, or the interface's).
    pub address: Ipv4Addr,
    /// Interface MAC.
    pub mac: Mac,
    /// Gateway MAC, once resolved.
    pub gateway_mac: Option<Mac>,
    /// Interface MTU.
    pub mtu: u16,
    /// Whether it may take new flows (carrier up, not drained, health ok).
    pub eligible: bool,
}

/// Builds snapshots; keeps the NAT pools by uplink name across them.
#[derive(Debug)]
pub struct SnapshotBuilder {
    pools: HashMap<String, Arc<UplinkNat>>,
    hasher: KeyHasher,
    generation: u64,
}

impl SnapshotBuilder {
    /// A builder with a fresh random stickiness-hash secret.
    pub fn new(hasher: KeyHasher) -> Self {
        Self {
            pools: HashMap::new(),
            hasher,
            generation: 0,
        }
    }

    /// The pools of uplink `name` (created on first use).
    pub fn pools(&mut self, config: &Config, name: &str) -> Arc<UplinkNat> {
        self.pools
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(uplink_nat(config)))
            .clone()
    }

    /// A new snapshot: `uplinks[i]` are the facts of `config.uplinks[i]` (`None`: not usable at all).
    pub fn build(
        &mut self,
        config: &Config,
        lan: LanView,
        uplinks: &[Option<UplinkFacts>],
        mut lan_neighbours: Vec<(Ipv4Addr, Mac)>,
    ) -> Snapshot {
        assert_eq!(uplinks.len(), config.uplinks.len(), "one fact per uplink");
        let status: Vec<UplinkStatus> = config
            .uplinks
            .iter()
            .zip(uplinks)
            .map(|(u, f)| UplinkStatus {
                weight: u.weight,
                eligible: f
                    .as_ref()
                    .is_some_and(|f| f.eligible && f.gateway_mac.is_some()),
            })
            .collect();
        let views = config
            .uplinks
            .iter()
            .zip(uplinks)
            .map(|(u, f)| {
                f.as_ref().map(|f| UplinkView {
                    name: u.name.clone(),
                    address: f.address,
                    mac: f.mac,
                    gateway_mac: f.gateway_mac,
                    mtu: f.mtu,
                    nat: self.pools(config, &u.name),
                })
            })
            .collect();
        lan_neighbours.sort_unstable_by_key(|(a, _)| *a);
        lan_neighbours.dedup_by_key(|(a, _)| *a);
        self.generation += 1;
        Snapshot {
            generation: self.generation,
            lan,
            uplinks: views,
            policy: PolicyTable::build(config, &status, self.hasher.clone()),
            timeouts: timeouts(config),
            lan_neighbours,
            endpoint_independent_filtering: config.nat.filtering
                == crate::config::Filtering::EndpointIndependent,
            net_unreachable: crate::datapath::RateLimit {
                per_second: config.failover.net_unreachable_per_s,
                burst: config.failover.net_unreachable_burst,
            },
        }
    }
}
