//! The file as written: serde structures that keep the byte span of every value validation may
//! blame.
//!
//! Invariants: every key is optional here, so that validation names a missing key with its
//! table's line; unknown keys are refused at every level (`deny_unknown_fields`).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::model::{DefaultRoute, Filtering, ForwardProtocol, IdleStrategy, Workers, XdpMode};
use super::mss_clamp::RawMssClamp;
use super::resilience::{FailbackMode, FailoverAction, ProbeKind};
use super::{PortRange, Protocol, Stickiness};

/// A value with its byte span in the file. Only values whose errors are raised by validation
/// need one, and tables that can lack a required key (the error names the table's line); prefix
/// lists hold strings so that a bad element is named by its own index (`lan.prefixes[1]`).
pub(super) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub lan: Option<S<RawLan>>,
    #[serde(default)]
    pub uplink: Vec<S<RawUplink>>,
    pub nat: Option<RawNat>,
    #[serde(default)]
    pub policy: Vec<S<RawPolicy>>,
    pub datapath: Option<RawDatapath>,
    pub control: Option<RawControl>,
    pub health: Option<RawHealth>,
    pub failover: Option<RawFailover>,
    pub failback: Option<S<RawFailback>>,
    pub metrics: Option<RawMetrics>,
    pub router: Option<RawRouter>,
    #[serde(default)]
    pub forward: Vec<S<RawForward>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLan {
    pub interface: Option<S<String>>,
    pub prefixes: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUplink {
    pub name: Option<S<String>>,
    pub interface: Option<S<String>>,
    pub gateway: Option<S<Ipv4Addr>>,
    pub address: Option<S<Ipv4Addr>>,
    pub weight: Option<S<u32>>,
    pub tier: Option<S<u8>>,
    pub mss_clamp: Option<S<RawMssClamp>>,
    pub health: Option<RawHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNat {
    pub port_range: Option<S<PortRange>>,
    pub stickiness: Option<S<Stickiness>>,
    pub timeouts: Option<RawTimeouts>,
    pub udp_refresh_on_inbound: Option<S<bool>>,
    pub filtering: Option<S<Filtering>>,
    pub ports_per_host: Option<S<u32>>,
    pub early_drop_unanswered: Option<S<bool>>,
    pub port_exhausted_icmp_per_s: Option<S<u32>>,
    pub port_exhausted_icmp_burst: Option<S<u32>>,
    pub frag_needed_icmp_per_s: Option<S<u32>>,
    pub frag_needed_icmp_burst: Option<S<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub udp: Option<S<u32>>,
    pub tcp_established: Option<S<u32>>,
    pub tcp_transitory: Option<S<u32>>,
    pub icmp: Option<S<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub name: Option<S<String>>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub uplinks: Option<S<Vec<S<RawPolicyUplink>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    pub name: Option<S<String>>,
    pub uplinks: Option<S<RawForwardUplinks>>,
    pub protocol: Option<S<ForwardProtocol>>,
    pub port: Option<S<PortRange>>,
    pub to: Option<S<Ipv4Addr>>,
    pub to_port: Option<S<PortRange>>,
}

/// `uplinks = "all"` or a list of uplink names.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawForwardUplinks {
    Word(String),
    Names(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    pub src: Option<S<Vec<S<String>>>>,
    pub dst: Option<S<Vec<S<String>>>>,
    pub proto: Option<S<Protocol>>,
    pub dst_port: Option<S<PortRange>>,
    pub dscp: Option<S<u8>>,
}

/// A policy's uplink: `"isp1"` (weight and tier inherited from the uplink) or
/// `{ name = "isp1", weight = 3, tier = 2 }`.
#[derive(Debug)]
pub(super) struct RawPolicyUplink {
    pub name: String,
    pub weight: Option<u32>,
    pub tier: Option<u8>,
}

impl<'de> Deserialize<'de> for RawPolicyUplink {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PolicyUplinkVisitor)
    }
}

struct PolicyUplinkVisitor;

impl<'de> serde::de::Visitor<'de> for PolicyUplinkVisitor {
    type Value = RawPolicyUplink;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an uplink name or a table { name, weight }")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<RawPolicyUplink, E> {
        Ok(RawPolicyUplink {
            name: name.to_owned(),
            weight: None,
            tier: None,
        })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<RawPolicyUplink, A::Error> {
        use serde::de::Error;
        const FIELDS: &[&str] = &["name", "weight", "tier"];
        let (mut name, mut weight, mut tier) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value::<String>()?),
                "weight" => weight = Some(map.next_value::<u32>()?),
                "tier" => tier = Some(map.next_value::<u8>()?),
                other => return Err(A::Error::unknown_field(other, FIELDS)),
            }
        }
        let name = name.ok_or_else(|| A::Error::missing_field("name"))?;
        Ok(RawPolicyUplink { name, weight, tier })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatapath {
    pub workers: Option<S<Workers>>,
    pub mode: Option<S<XdpMode>>,
    pub idle: Option<S<IdleStrategy>>,
    pub flow_capacity: Option<S<u32>>,
    pub frames_per_worker: Option<S<u32>>,
    pub flow_share_pressure_percent: Option<S<u8>>,
    pub flow_share_floor: Option<S<u32>>,
    pub cpus: Option<S<Vec<S<u32>>>>,
    pub pin_name: Option<S<String>>,
    pub syn_per_host_per_s: Option<S<u32>>,
    pub syn_per_host_burst: Option<S<u32>>,
    pub syn_per_s: Option<S<u32>>,
    pub syn_burst: Option<S<u32>>,
    pub inbound_syn_per_s: Option<S<u32>>,
    pub inbound_syn_burst: Option<S<u32>>,
    pub fragment_datagrams: Option<S<u32>>,
    pub fragment_held: Option<S<u32>>,
    pub fragment_timeout: Option<S<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawControl {
    pub socket: Option<S<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub interval_ms: Option<S<u32>>,
    pub timeout_ms: Option<S<u32>>,
    pub min_answers: Option<S<u32>>,
    pub down_after: Option<S<u32>>,
    pub up_after: Option<S<u32>>,
    pub window: Option<S<u32>>,
    pub down_loss_percent: Option<S<u8>>,
    pub up_loss_percent: Option<S<u8>>,
    pub down_rtt_ms: Option<S<u32>>,
    pub up_rtt_ms: Option<S<u32>>,
    pub passive_down_after_unanswered: Option<S<u32>>,
    pub passive_answer_window_ms: Option<S<u32>>,
    pub probe_gateway: Option<S<bool>>,
    /// Global only: refused in `[uplink.health]`.
    pub hooks_dir: Option<S<PathBuf>>,
    /// Global only: refused in `[uplink.health]`.
    pub hook_timeout_ms: Option<S<u32>>,
    #[serde(default)]
    pub target: Vec<S<RawProbeTarget>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbeTarget {
    pub kind: Option<S<ProbeKind>>,
    pub address: Option<S<Ipv4Addr>>,
    pub port: Option<S<u16>>,
    pub query: Option<S<String>>,
    pub url: Option<S<String>>,
    pub expect_status: Option<S<String>>,
    pub expect_body: Option<S<String>>,
    pub ca_file: Option<S<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailover {
    pub tcp: Option<S<FailoverAction>>,
    pub udp: Option<S<FailoverAction>>,
    pub icmp: Option<S<FailoverAction>>,
    pub net_unreachable_per_s: Option<S<u32>>,
    pub net_unreachable_burst: Option<S<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailback {
    pub mode: Option<S<FailbackMode>>,
    pub after_s: Option<S<u32>>,
    pub udp_ports: Option<S<PortRange>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouter {
    pub default_route: Option<DefaultRoute>,
}
