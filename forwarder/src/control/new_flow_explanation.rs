//! `flowpin explain --new PROTO SRC DST`: which uplink a new flow from the LAN would take now, and
//! why — mwan3's traffic path simulator, asked of the running snapshot.
//!
//! Invariants:
//! - nothing is created: no flow, no mapping, no port; only the snapshot is read;
//! - the checks and the choice are the datapath's own, in its order: LAN source, reserved source,
//!   addressed to the router, hairpin to an uplink's address, then the policy decision and the
//!   live-mapping rule ([`Snapshot::new_flow_uplink`]);
//! - the DSCP is taken as 0 (a rule matching a DSCP is not matched), and the port allocation's share
//!   refusal (a host over its share spills to another member) is not simulated: the summary says so.

use std::net::SocketAddrV4;

use serde::{Deserialize, Serialize};

use super::api::{self, UplinkAtDecision};
use super::decision_history::{rule_text, stickiness_fields, uplink_name};
use crate::config::Config;
use crate::datapath::{Placement, Snapshot};
use crate::select::GroupId;

/// Answer to `flowpin explain --new`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewFlowExplanation {
    /// `tcp`, `udp`, `icmp`.
    pub proto: String,
    /// The LAN host's endpoint.
    pub internal: String,
    /// The remote endpoint.
    pub remote: String,
    /// `outbound` (leaves by `uplink`), `hairpin` (to another LAN host through `uplink`'s address),
    /// or `refused` (no flow; `summary` says why).
    pub verdict: String,
    /// The uplink it would take (or hairpin through).
    pub uplink: Option<String>,
    /// The address it would leave with.
    pub external_address: Option<String>,
    /// The policy rule it matches.
    pub rule: String,
    /// The stickiness mode, the fields it hashes and the key.
    pub stickiness: String,
    /// The fields the key hashes, with their values.
    pub stickiness_fields: String,
    /// The keyed hash (hex).
    pub stickiness_key: String,
    /// What the rule's group chooses for the key now.
    pub chooser_pick: Option<String>,
    /// The snapshot generation asked.
    pub generation: u64,
    /// Every uplink now: state, weight, whether it takes new flows.
    pub uplinks: Vec<UplinkAtDecision>,
    /// One sentence.
    pub summary: String,
}

/// Explains the new flow `proto internal → remote` under `snapshot` (built from `config`);
/// `uplinks` are the uplinks as they are now.
pub fn explain_new(
    snapshot: &Snapshot,
    config: &Config,
    uplinks: Vec<UplinkAtDecision>,
    proto: flowpin_nat::IpProtocol,
    internal: SocketAddrV4,
    remote: SocketAddrV4,
) -> NewFlowExplanation {
    let key = flowpin_nat::FlowKey {
        protocol: proto,
        source: *internal.ip(),
        source_port: internal.port(),
        destination: *remote.ip(),
        destination_port: match proto {
            flowpin_nat::IpProtocol::Icmp => internal.port(),
            _ => remote.port(),
        },
    };
    let stickiness = config.nat.stickiness;
    let mut e = NewFlowExplanation {
        proto: api::protocol_name(proto).to_owned(),
        internal: internal.to_string(),
        remote: remote.to_string(),
        stickiness: stickiness.to_string(),
        stickiness_fields: stickiness_fields(stickiness, &key),
        generation: snapshot.generation,
        uplinks,
        ..Default::default()
    };
    let refused = |mut e: NewFlowExplanation, why: String| {
        e.verdict = "refused".to_owned();
        e.summary = why;
        e
    };
    if !snapshot.lan.owns(key.source) {
        return refused(
            e,
            format!(
                "{} is not in the LAN prefixes: the datapath drops the packet (spoofed_source)",
                key.source
            ),
        );
    }
    if snapshot.lan.is_reserved_source(key.source) {
        return refused(
            e,
            format!(
                "{} is the router's LAN address or a prefix's network or broadcast address: dropped (lan_reserved_source)",
                key.source
            ),
        );
    }
    if key.destination == snapshot.lan.address {
        return refused(
            e,
            "addressed to the router itself: the kernel answers it, no flow is made".to_owned(),
        );
    }
    if let Some(slot) = snapshot.uplink_with_address(key.destination) {
        e.verdict = "hairpin".to_owned();
        e.uplink = Some(uplink_name(config, usize::from(slot)));
        e.external_address = Some(key.destination.to_string());
        e.summary = format!(
            "addressed to {}'s external address: a hairpin flow to the LAN host holding that mapping (if any); no uplink is chosen",
            uplink_name(config, usize::from(slot))
        );
        return e;
    }
    let decision = snapshot.policy.decide(&key, 0);
    e.rule = rule_text(config, decision.group);
    e.stickiness_key = format!("{:016x}", decision.key.0);
    e.chooser_pick = Some(decision.uplink.map_or_else(
        || "none (no eligible uplink)".to_owned(),
        |slot| uplink_name(config, slot),
    ));
    let group = match decision.group {
        GroupId::Default => "default group".to_owned(),
        GroupId::Policy(i) => format!("group of policy[{i}]"),
    };
    match snapshot.new_flow_uplink(&key, &decision) {
        Err(_) => refused(
            e,
            format!(
                "the {group} has no eligible uplink now: the flow is refused and the host gets ICMP net unreachable (no_uplink)"
            ),
        ),
        Ok((slot, placement)) => {
            let name = uplink_name(config, usize::from(slot));
            e.verdict = "outbound".to_owned();
            e.external_address = snapshot.uplink(slot).map(|u| u.address.to_string());
            e.summary = match placement {
                Placement::JoinedLiveMapping => format!(
                    "the internal endpoint already holds a live mapping on {name}, so the flow would join it there \
                     (one external endpoint per internal endpoint, RFC 4787 REQ-1) instead of the {group}'s choice ({})",
                    e.chooser_pick.as_deref().unwrap_or("-")
                ),
                _ => format!(
                    "the {group} chooses {name} for this stickiness key among the eligible uplinks below \
                     (unless the host is over its port share there, when it would spill to another member)"
                ),
            };
            e.uplink = Some(name);
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::control::snapshot::{SnapshotBuilder, UplinkFacts};
    use crate::datapath::LanView;

    const CONFIG: &str = r#"
[lan]
interface = "lan0"
prefixes = ["10.77.0.0/24"]
[[uplink]]
name = "isp1"
interface = "wan1"
gateway = "198.51.100.1"
[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.9"
[[policy]]
name = "dns-on-isp2"
match = { proto = "udp", dst_port = "53" }
uplinks = ["isp2"]
[nat]
port_range = "20000-29999"
"#;

    /// The snapshot of `CONFIG` with `eligible` uplinks (isp1, isp2).
    fn snapshot(config: &Config, eligible: [bool; 2]) -> Snapshot {
        let facts: Vec<Option<UplinkFacts>> = [
            Ipv4Addr::new(198, 51, 100, 2),
            Ipv4Addr::new(198, 51, 100, 10),
        ]
        .iter()
        .enumerate()
        .map(|(i, &address)| {
            Some(UplinkFacts {
                address,
                mac: [2, 0, 0, 0, 0, i as u8],
                gateway_mac: Some([2, 0, 0, 0, 1, i as u8]),
                mtu: 1500,
                eligible: eligible[i],
            })
        })
        .collect();
        let lan = LanView {
            mac: [2, 0, 0, 0, 9, 9],
            address: Ipv4Addr::new(10, 77, 0, 1),
            mtu: 1500,
            prefixes: config.lan.prefixes.clone(),
        };
        SnapshotBuilder::new(1, Default::default()).build(config, lan, &facts, Vec::new())
    }

    fn ask(
        snapshot: &Snapshot,
        config: &Config,
        proto: &str,
        src: &str,
        dst: &str,
    ) -> NewFlowExplanation {
        explain_new(
            snapshot,
            config,
            Vec::new(),
            api::protocol_named(proto).unwrap(),
            src.parse().unwrap(),
            dst.parse().unwrap(),
        )
    }

    #[test]
    fn a_policy_rule_sends_dns_to_isp2_and_says_so() {
        let config = crate::config::parse(CONFIG, "t.toml", None).unwrap();
        let s = snapshot(&config, [true, true]);
        let e = ask(&s, &config, "udp", "10.77.0.11:5353", "203.0.113.10:53");
        assert_eq!(e.verdict, "outbound");
        assert_eq!(e.uplink.as_deref(), Some("isp2"));
        assert_eq!(e.external_address.as_deref(), Some("198.51.100.10"));
        assert!(e.rule.starts_with("policy[0] `dns-on-isp2`"), "{}", e.rule);
        assert_eq!(e.chooser_pick.as_deref(), Some("isp2"));
        // The same flow on another port falls to the default group, which both uplinks serve.
        let e = ask(&s, &config, "udp", "10.77.0.11:5353", "203.0.113.10:54");
        assert!(e.rule.starts_with("default group"), "{}", e.rule);
        assert_eq!(e.uplink, e.chooser_pick);
    }

    #[test]
    fn with_no_eligible_uplink_in_its_group_the_flow_is_refused() {
        let config = crate::config::parse(CONFIG, "t.toml", None).unwrap();
        let s = snapshot(&config, [true, false]);
        let e = ask(&s, &config, "udp", "10.77.0.11:5353", "203.0.113.10:53");
        assert_eq!(e.verdict, "refused");
        assert_eq!(e.uplink, None);
        assert!(e.summary.contains("no eligible uplink"), "{}", e.summary);
        // The default group still has isp1.
        let e = ask(&s, &config, "tcp", "10.77.0.11:40000", "203.0.113.10:443");
        assert_eq!(e.uplink.as_deref(), Some("isp1"));
    }

    #[test]
    fn sources_outside_the_lan_the_router_and_hairpins_are_told_apart() {
        let config = crate::config::parse(CONFIG, "t.toml", None).unwrap();
        let s = snapshot(&config, [true, true]);
        let e = ask(&s, &config, "tcp", "192.0.2.1:1000", "203.0.113.10:80");
        assert_eq!(e.verdict, "refused");
        assert!(e.summary.contains("spoofed_source"), "{}", e.summary);
        let e = ask(&s, &config, "tcp", "10.77.0.0:1000", "203.0.113.10:80");
        assert!(e.summary.contains("lan_reserved_source"), "{}", e.summary);
        let e = ask(&s, &config, "tcp", "10.77.0.11:1000", "10.77.0.1:22");
        assert!(
            e.summary.contains("addressed to the router"),
            "{}",
            e.summary
        );
        let e = ask(&s, &config, "tcp", "10.77.0.11:1000", "198.51.100.10:8080");
        assert_eq!(e.verdict, "hairpin");
        assert_eq!(e.uplink.as_deref(), Some("isp2"));
    }

    #[test]
    fn nothing_is_created() {
        let config = crate::config::parse(CONFIG, "t.toml", None).unwrap();
        let s = snapshot(&config, [true, true]);
        for _ in 0..3 {
            ask(&s, &config, "tcp", "10.77.0.11:40000", "203.0.113.10:443");
        }
        for slot in 0..2 {
            let nat = &s.uplink(slot).unwrap().nat;
            assert_eq!(nat.tcp.mapped_ports(), 0);
            assert_eq!(
                nat.tcp.mapping_of(Ipv4Addr::new(10, 77, 0, 11), 40000),
                None
            );
        }
    }
}
