//! Building the datapath's [`Snapshot`] from the configuration and what the kernel told us.
//!
//! Owns the translation of [`Config`] into the datapath's vocabulary (timeouts, port pools, the
//! [`PolicySpec`] of the policy table). Invariant: the per-uplink NAT pools are created once per
//! uplink *name* and carried from snapshot to snapshot, so reloads and neighbour changes never lose a
//! mapping.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use flowpin_nat::{AllocatorSecret, PortAllocator, PortAllocatorConfig, Timeouts};

use crate::config::{Config, PolicyMatch};
use crate::datapath::{ForwardRule, ForwardTable, LanView, Mac, Snapshot, UplinkNat, UplinkView};
use crate::select::{
    FlowMatch, GroupMember, KeyHasher, PolicyRule, PolicySpec, PolicyTable, UplinkStatus,
};

/// The per-worker limit on ICMP fragmentation needed answers sent out of an uplink (packets from the
/// internet too big for the LAN): the rate and burst of the other originated answers' defaults.
pub const FRAG_NEEDED_TO_UPLINK: crate::datapath::RateLimit = crate::datapath::RateLimit {
    per_second: 100,
    burst: 50,
};

/// The NAT timeouts of a configuration, in the datapath's units.
pub fn timeouts(config: &Config) -> Timeouts {
    config.nat.timeouts
}

/// Hosts each port pool can count at once: every address of the LAN prefixes, so that no source the
/// LAN may use (spoofed ones included) can fill the table, within 4,096..=65,536 (8 bytes twice
/// over per host and pool).
pub fn max_hosts(config: &Config) -> usize {
    let addresses: u64 = config
        .lan
        .prefixes
        .iter()
        .map(|prefix| 1u64 << (32 - u32::from(prefix.prefix_len())))
        .sum();
    usize::try_from(addresses.clamp(4096, 65_536)).unwrap_or(65_536)
}

/// The port pools of one uplink for the configured NAT range and per-host quota.
/// `secrets` (TCP, UDP, ICMP) are a restarted daemon's saved ones; `None` draws fresh ones.
pub fn uplink_nat(config: &Config, secrets: Option<[AllocatorSecret; 3]>) -> UplinkNat {
    let [tcp, udp, icmp] = secrets.unwrap_or_else(|| [(); 3].map(|()| AllocatorSecret::random()));
    let range = config.nat.port_range;
    let ports = PortAllocatorConfig {
        max_hosts: max_hosts(config),
        per_host_quota: config
            .nat
            .ports_per_host
            .unwrap_or(flowpin_nat::port_alloc::NO_HARD_QUOTA),
        ..PortAllocatorConfig::new(range)
    };
    UplinkNat {
        tcp: PortAllocator::with_secret(ports, tcp),
        udp: PortAllocator::with_secret(ports, udp),
        // Echo ids have no privileged class to keep.
        icmp: PortAllocator::with_secret(
            PortAllocatorConfig {
                keep_port_class: false,
                ..ports
            },
            icmp,
        ),
    }
}

/// The policy table's inputs of a configuration: uplink names, stickiness, rules in file order.
pub fn policy_spec(config: &Config) -> PolicySpec {
    PolicySpec {
        uplinks: config.uplinks.iter().map(|u| u.name.clone()).collect(),
        stickiness: config.nat.stickiness,
        rules: config
            .policies
            .iter()
            .map(|policy| PolicyRule {
                matcher: flow_match(&policy.matcher),
                group: policy
                    .uplinks
                    .iter()
                    .map(|member| GroupMember {
                        uplink: member.index,
                        weight: member.weight,
                        tier: member.tier,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The datapath's form of a `[policy.match]`.
fn flow_match(matcher: &PolicyMatch) -> FlowMatch {
    FlowMatch {
        src: matcher.src.clone(),
        dst: matcher.dst.clone(),
        proto: matcher.proto,
        dst_port: matcher.dst_port,
        dscp: matcher.dscp,
    }
}

/// The datapath's rules of every `[[forward]]`: one per (forward, uplink, protocol).
pub fn forward_rules(config: &Config) -> Vec<ForwardRule> {
    let mut rules = Vec::new();
    for (index, forward) in config.forwards.iter().enumerate() {
        let Ok(index) = u8::try_from(index) else {
            break;
        };
        let slots = (config.uplinks.iter().enumerate())
            .filter(|(_, u)| forward.uplinks.contains(&u.name))
            .filter_map(|(slot, _)| u8::try_from(slot).ok());
        for slot in slots {
            for &protocol in forward.protocol.protocols() {
                rules.push(ForwardRule {
                    index,
                    slot,
                    protocol: match protocol {
                        crate::config::Protocol::Udp => flowpin_nat::IpProtocol::Udp,
                        _ => flowpin_nat::IpProtocol::Tcp,
                    },
                    first: forward.port.first(),
                    last: forward.port.last(),
                    to: forward.to,
                    to_first: forward.to_port.first(),
                });
            }
        }
    }
    rules
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
    seed: u64,
    saved_secrets: HashMap<String, [AllocatorSecret; 3]>,
    generation: u64,
}

impl SnapshotBuilder {
    /// A builder whose policy tables hash stickiness keys with the secret `seed` (one per process,
    /// or the saved one of a restarted daemon), and whose pools of an uplink named in
    /// `saved_secrets` get those secrets (so restored mappings keep their candidate order).
    pub fn new(seed: u64, saved_secrets: HashMap<String, [AllocatorSecret; 3]>) -> Self {
        Self {
            pools: HashMap::new(),
            hasher: KeyHasher::from_seed(seed),
            seed,
            saved_secrets,
            generation: 0,
        }
    }

    /// The stickiness hash's secret seed (saved with the daemon's state).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The pools created so far, by uplink name.
    pub fn all_pools(&self) -> impl Iterator<Item = (&str, &Arc<UplinkNat>)> {
        self.pools.iter().map(|(name, nat)| (name.as_str(), nat))
    }

    /// Forgets the pools of uplink `name` (removed by a reload, with its flows): an uplink added later
    /// under that name starts with empty pools.
    pub fn forget(&mut self, name: &str) {
        self.pools.remove(name);
    }

    /// The pools of uplink `name` (created on first use).
    pub fn pools(&mut self, config: &Config, name: &str) -> Arc<UplinkNat> {
        self.pools
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(uplink_nat(config, self.saved_secrets.remove(name))))
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
                tier: u.tier,
                eligible: f
                    .as_ref()
                    .is_some_and(|f| f.eligible && f.gateway_mac.is_some()),
            })
            .collect();
        let lan_mtu = lan.mtu;
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
                    mss_clamp: crate::config::MssClamp::limit(u.mss_clamp, f.mtu, lan_mtu),
                    nat: self.pools(config, &u.name),
                })
            })
            .collect();
        let open_slots = (status.iter().enumerate())
            .filter(|(slot, u)| u.eligible && *slot < 32)
            .fold(0u32, |mask, (slot, _)| mask | 1 << slot);
        let forwards = ForwardTable::new(forward_rules(config), open_slots);
        lan_neighbours.sort_unstable_by_key(|(a, _)| *a);
        lan_neighbours.dedup_by_key(|(a, _)| *a);
        self.generation += 1;
        Snapshot {
            generation: self.generation,
            lan,
            uplinks: views,
            policy: PolicyTable::build(&policy_spec(config), &status, self.hasher.clone()),
            timeouts: timeouts(config),
            lan_neighbours,
            endpoint_independent_filtering: config.nat.filtering
                == crate::config::Filtering::EndpointIndependent,
            net_unreachable: crate::datapath::RateLimit {
                per_second: config.failover.net_unreachable_per_s,
                burst: config.failover.net_unreachable_burst,
            },
            port_exhausted_icmp: crate::datapath::RateLimit {
                per_second: config.nat.port_exhausted_icmp_per_s,
                burst: config.nat.port_exhausted_icmp_burst,
            },
            frag_needed_to_uplink: FRAG_NEEDED_TO_UPLINK,
            frag_needed_to_lan: crate::datapath::RateLimit {
                per_second: config.nat.frag_needed_icmp_per_s,
                burst: config.nat.frag_needed_icmp_burst,
            },
            early_drop_unanswered: config.nat.early_drop_unanswered,
            flow_share: crate::datapath::FlowShare {
                pressure_percent: config.datapath.flow_share_pressure_percent,
                floor: config.datapath.flow_share_floor,
            },
            forwards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every address a LAN prefix allows can hold an entry, so spoofing sources inside the prefix
    /// cannot fill a pool's host table; small LANs keep 4,096, huge ones stop at 65,536.
    #[test]
    fn the_host_tables_hold_every_lan_address_within_bounds() {
        let with_prefixes = |prefixes: &str| {
            let text = format!(
                "[lan]\ninterface = \"lan0\"\nprefixes = [{prefixes}]\n[[uplink]]\nname = \"isp1\"\n\
                 interface = \"wan1\"\ngateway = \"192.0.2.1\"\n"
            );
            max_hosts(&crate::config::parse(&text, "t.toml", None).unwrap())
        };
        assert_eq!(with_prefixes("\"10.77.0.0/24\""), 4096);
        assert_eq!(with_prefixes("\"10.77.0.0/18\""), 16_384);
        assert_eq!(with_prefixes("\"10.77.0.0/18\", \"10.78.0.0/18\""), 32_768);
        assert_eq!(with_prefixes("\"10.0.0.0/8\""), 65_536);
    }

    #[test]
    fn the_policy_spec_carries_every_rule_criterion_and_member_in_file_order() {
        let config = crate::config::parse(
            r#"
[lan]
interface = "lan0"
prefixes = ["10.0.0.0/16"]
[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "192.0.2.1"
weight = 3
[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.1"
[[policy]]
name = "voice"
match = { proto = "udp", dst_port = "5060-5061", dscp = 46 }
uplinks = ["isp2"]
[[policy]]
name = "lab-web"
match = { src = ["10.0.9.0/24"], dst = ["203.0.113.0/24", "192.0.2.128/25"], proto = "tcp" }
uplinks = [{ name = "isp1", weight = 1 }, { name = "isp2", weight = 2 }]
[nat]
stickiness = "host"
"#,
            "t.toml",
            None,
        )
        .unwrap();
        let prefixes = |list: &[&str]| -> Vec<crate::config::Ipv4Prefix> {
            list.iter().map(|text| text.parse().unwrap()).collect()
        };
        let spec = policy_spec(&config);
        assert_eq!(spec.uplinks, ["isp1", "isp2"]);
        assert_eq!(spec.stickiness, crate::config::Stickiness::Host);
        assert_eq!(
            spec.rules,
            [
                PolicyRule {
                    matcher: FlowMatch {
                        proto: Some(crate::config::Protocol::Udp),
                        dst_port: flowpin_nat::PortRange::new(5060, 5061).ok(),
                        dscp: Some(46),
                        ..FlowMatch::default()
                    },
                    group: vec![GroupMember {
                        uplink: 1,
                        weight: None,
                        tier: None,
                    }],
                },
                PolicyRule {
                    matcher: FlowMatch {
                        src: prefixes(&["10.0.9.0/24"]),
                        dst: prefixes(&["203.0.113.0/24", "192.0.2.128/25"]),
                        proto: Some(crate::config::Protocol::Tcp),
                        ..FlowMatch::default()
                    },
                    group: vec![
                        GroupMember {
                            uplink: 0,
                            weight: Some(1),
                            tier: None,
                        },
                        GroupMember {
                            uplink: 1,
                            weight: Some(2),
                            tier: None,
                        },
                    ],
                },
            ]
        );
    }
}
