//! The bounded history of published snapshots that `flowpin explain` reads.
//!
//! Every published snapshot is remembered, with the configuration, uplink states and weights it was
//! built from, as a [`Moment`] in a [`DecisionHistory`] (generation → moment, oldest forgotten first).
//! A flow record stores the generation it was decided under, so [`explain`] can reconstruct the
//! decision: the rule, the stickiness key, what the rule's group chose for that key, and the uplinks as
//! they were. Flows older than the history get what the record itself holds (rule, uplink, key) and a
//! note that the moment is forgotten.

use std::collections::VecDeque;
use std::sync::Arc;

use super::api::{FlowEntry, FlowExplanation, UplinkAtDecision};
use crate::config::{Config, Stickiness};
use crate::datapath::{FlowKind, FlowValue, Placement, Snapshot};
use crate::select::GroupId;

/// A published snapshot and what it was built from.
#[derive(Debug, Clone)]
pub struct Moment {
    /// Its daemon time of publication (ms).
    pub at_ms: u64,
    /// The configuration it was built from (operator weights applied; slots in slot order).
    pub config: Arc<Config>,
    /// The uplinks by slot (`None`: a retired slot).
    pub uplinks: Vec<Option<UplinkAtDecision>>,
    /// The snapshot itself (its policy table reproduces the decision).
    pub snapshot: Arc<Snapshot>,
}

/// The last published snapshots, oldest first, at most `capacity`.
#[derive(Debug)]
pub struct DecisionHistory {
    moments: VecDeque<Moment>,
    capacity: usize,
}

impl DecisionHistory {
    /// An empty history of at most `capacity` (≥ 1) moments.
    pub fn new(capacity: usize) -> Self {
        Self {
            moments: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        }
    }

    /// Remembers a published snapshot, forgetting the oldest beyond the capacity.
    pub fn record(&mut self, moment: Moment) {
        if self.moments.len() == self.capacity {
            self.moments.pop_front();
        }
        self.moments.push_back(moment);
    }

    /// The moment of the snapshot whose generation's low 32 bits are `generation` (as flow records
    /// store it), the newest such.
    pub fn find(&self, generation: u32) -> Option<&Moment> {
        self.moments
            .iter()
            .rev()
            .find(|m| m.snapshot.generation as u32 == generation)
    }

    /// How many moments are remembered.
    pub fn len(&self) -> usize {
        self.moments.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.moments.is_empty()
    }

    /// The oldest remembered generation (0: none).
    pub fn oldest_generation(&self) -> u64 {
        self.moments.front().map_or(0, |m| m.snapshot.generation)
    }
}

/// Reconstructs why the flow `value` (shown as `entry`) is on its uplink. `moment`: the snapshot it was
/// decided under, if still remembered; `current`: the running configuration (names when the moment is
/// forgotten); `now_ms`: daemon time.
///
/// 1. Which configuration names things: the moment's, else the running one.
/// 2. Which group placed it, and the rule that sent it there ([`rule_text`]).
/// 3. What the stickiness key hashed ([`stickiness_fields`]).
/// 4. What the chooser picks for that key under the remembered snapshot ([`chooser_pick`]).
/// 5. One sentence that reconciles the pick with where the flow is ([`summary`]).
pub fn explain(
    value: &FlowValue,
    entry: FlowEntry,
    moment: Option<&Moment>,
    current: &Config,
    now_ms: u64,
) -> FlowExplanation {
    let config = moment.map_or(current, |m| &*m.config);
    let lan = value.lan_key();
    let group = match value.policy {
        u8::MAX => GroupId::Default,
        index => GroupId::Policy(usize::from(index)),
    };
    let stickiness = config.nat.stickiness;
    let key = moment.map(|m| m.snapshot.policy.key(&lan));
    let chooser_pick = chooser_pick(config, moment, group, &lan);
    FlowExplanation {
        flow: entry,
        kind: match value.kind {
            FlowKind::Outbound => "outbound",
            FlowKind::Hairpin => "hairpin",
        }
        .to_owned(),
        rule: if value.placement == Placement::Forwarded {
            format!(
                "forward[{}] `{}` (no policy: a forward pins to its ingress uplink)",
                value.policy,
                forward_name(config, value.policy)
            )
        } else {
            rule_text(config, group)
        },
        stickiness: stickiness.to_string(),
        stickiness_fields: stickiness_fields(stickiness, &lan),
        stickiness_key: key.map_or_else(String::new, |k| format!("{:016x}", k.0)),
        generation: moment.map_or(u64::from(value.generation), |m| m.snapshot.generation),
        decision_known: moment.is_some(),
        decided_s_ago: moment.map(|m| now_ms.saturating_sub(m.at_ms) as f64 / 1000.0),
        summary: summary(value, config, group, chooser_pick.as_deref()),
        chooser_pick,
        uplinks: moment
            .map(|m| m.uplinks.iter().flatten().cloned().collect())
            .unwrap_or_default(),
    }
}

/// Which rule sent a flow of `group` where it is, in words.
pub(crate) fn rule_text(config: &Config, group: GroupId) -> String {
    match group {
        GroupId::Default => {
            "default group (no policy rule matched): every uplink by weight".to_owned()
        }
        GroupId::Policy(index) => match config.policies.get(index) {
            Some(policy) => format!(
                "policy[{index}] `{}`: {}",
                policy.name,
                serde_json::to_string(&policy.matcher).unwrap_or_default()
            ),
            None => format!("policy[{index}] (no longer configured)"),
        },
    }
}

/// What the stickiness key of `lan` is made of under `stickiness`, in words.
pub(crate) fn stickiness_fields(stickiness: Stickiness, lan: &flowpin_nat::FlowKey) -> String {
    let protocol = super::api::protocol_name(lan.protocol);
    match stickiness {
        Stickiness::Endpoint if lan.protocol == flowpin_nat::IpProtocol::Icmp => {
            format!("{protocol} {} echo id {}", lan.source, lan.source_port)
        }
        Stickiness::Endpoint => format!("{protocol} {} port {}", lan.source, lan.source_port),
        Stickiness::Host => format!("{}", lan.source),
        Stickiness::HostDest => format!("{} → {}", lan.source, lan.destination),
        Stickiness::Flow => format!(
            "{protocol} {}:{} → {}:{}",
            lan.source, lan.source_port, lan.destination, lan.destination_port
        ),
    }
}

/// The name of the uplink in `slot` under `config` (`slot N` when it has none).
pub(crate) fn uplink_name(config: &Config, slot: usize) -> String {
    config
        .uplinks
        .get(slot)
        .map_or_else(|| format!("slot {slot}"), |u| u.name.clone())
}

/// The name of `[[forward]]` number `index` under `config` (`forward[N]` when it has none).
pub(crate) fn forward_name(config: &Config, index: u8) -> String {
    config
        .forwards
        .get(usize::from(index))
        .map_or_else(|| format!("forward[{index}]"), |f| f.name.clone())
}

/// What `group`'s chooser picks for `lan`'s key under the remembered snapshot (`None`: forgotten).
fn chooser_pick(
    config: &Config,
    moment: Option<&Moment>,
    group: GroupId,
    lan: &flowpin_nat::FlowKey,
) -> Option<String> {
    let m = moment?;
    let key = m.snapshot.policy.key(lan);
    Some(m.snapshot.policy.group(group).choose(key).map_or_else(
        || "none (no eligible uplink)".to_owned(),
        |slot| uplink_name(config, slot),
    ))
}

/// One sentence: how the flow came to be on its uplink, given what the chooser picks now (`pick`).
fn summary(value: &FlowValue, config: &Config, group: GroupId, pick: Option<&str>) -> String {
    let pinned = uplink_name(config, usize::from(value.uplink));
    let stickiness = config.nat.stickiness;
    let group_name = match group {
        GroupId::Default => "default group".to_owned(),
        GroupId::Policy(i) => format!("group of policy[{i}]"),
    };
    match (value.kind, value.placement, pick) {
        (FlowKind::Hairpin, _, _) => format!(
            "hairpin flow between two LAN hosts through {pinned}'s external address; no uplink was chosen"
        ),
        (FlowKind::Outbound, Placement::JoinedLiveMapping, pick) => format!(
            "the flow's internal endpoint already held a live mapping on {pinned}, so the flow joined it there \
             (one external endpoint per internal endpoint, RFC 4787 REQ-1; stickiness {stickiness} keeps it) \
             instead of the {group_name}'s choice{}",
            pick.map_or_else(String::new, |pick| format!(" ({pick})"))
        ),
        (FlowKind::Outbound, Placement::SpilledOverShare, pick) => format!(
            "the host held its fair share (or its ports_per_host quota) of the ports of the {group_name}'s \
             choice{}, so the flow spilled to {pinned}, another eligible member of the group",
            pick.as_ref()
                .map_or_else(String::new, |pick| format!(" ({pick})"))
        ),
        (FlowKind::Outbound, Placement::OpenedFromOutside, _) => format!(
            "opened from outside on {pinned}: endpoint-independent filtering admitted an inbound packet to a \
             live mapping there, on the uplink it arrived on; no uplink was chosen"
        ),
        (FlowKind::Outbound, Placement::Forwarded, _) => format!(
            "opened from outside through forward `{}` on {pinned}, and pinned to the uplink it arrived on \
             (replies leave by {pinned} whatever weights and policies say); no uplink was chosen",
            forward_name(config, value.policy)
        ),
        (FlowKind::Outbound, Placement::Chosen, None) => format!(
            "pinned to {pinned} under snapshot {}, which is no longer remembered: the states and weights of that moment are unknown",
            value.generation
        ),
        (FlowKind::Outbound, Placement::Chosen, Some(pick)) if pick == pinned => format!(
            "the {group_name} chose {pinned} for this stickiness key among the eligible uplinks below; the flow stays there for its whole life"
        ),
        (FlowKind::Outbound, Placement::Chosen, Some(pick)) => format!(
            "the {group_name} chooses {pick} for this key under the remembered snapshot, but the flow is on {pinned}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use flowpin_nat::{FlowKey, IpProtocol, Rewrite};

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
weight = 1
[[uplink]]
name = "isp2"
interface = "wan2"
gateway = "198.51.100.9"
weight = 3
[[policy]]
name = "dns"
uplinks = ["isp2"]
match = { proto = "udp", dst_port = 53 }
[nat]
port_range = "20000-29999"
"#;

    fn facts(eligible: [bool; 2]) -> Vec<Option<UplinkFacts>> {
        eligible
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Some(UplinkFacts {
                    address: Ipv4Addr::new(198, 51, 100, 2 + 8 * i as u8),
                    mac: [2, 0, 0, 0, 0, i as u8],
                    gateway_mac: Some([2, 0, 0, 0, 1, i as u8]),
                    mtu: 1500,
                    eligible: *e,
                })
            })
            .collect()
    }

    /// Publishes a snapshot with `eligible` and remembers it, as the daemon does.
    fn publish(
        builder: &mut SnapshotBuilder,
        history: &mut DecisionHistory,
        config: &Config,
        eligible: [bool; 2],
        at_ms: u64,
    ) -> Arc<Snapshot> {
        let lan = LanView {
            mac: [2, 0, 0, 0, 9, 9],
            address: Ipv4Addr::new(10, 77, 0, 1),
            mtu: 1500,
            prefixes: config.lan.prefixes.clone(),
        };
        let snapshot = Arc::new(builder.build(config, lan, &facts(eligible), Vec::new()));
        history.record(Moment {
            at_ms,
            config: Arc::new(config.clone()),
            uplinks: config
                .uplinks
                .iter()
                .zip(eligible)
                .map(|(u, e)| {
                    Some(UplinkAtDecision {
                        name: u.name.clone(),
                        state: if e { "up" } else { "down" }.to_owned(),
                        weight: u.weight,
                        eligible: e,
                    })
                })
                .collect(),
            snapshot: snapshot.clone(),
        });
        snapshot
    }

    /// The flow the datapath would pin for `key` under `snapshot`.
    fn pin(snapshot: &Snapshot, key: FlowKey) -> FlowValue {
        let decision = snapshot.policy.decide(&key, 0);
        let slot = decision.uplink.expect("an eligible uplink") as u8;
        let policy = match decision.group {
            GroupId::Policy(i) => i as u8,
            GroupId::Default => u8::MAX,
        };
        let translated = FlowKey {
            source: snapshot.uplink(slot).unwrap().address,
            source_port: 20000 + key.source_port % 1000,
            ..key
        };
        FlowValue::new(
            Rewrite::new(key, translated).unwrap(),
            [2, 0, 0, 0, 0, 7],
            slot,
            policy,
            FlowKind::Outbound,
            snapshot.generation,
        )
    }

    fn key(protocol: IpProtocol, source_port: u16, destination_port: u16) -> FlowKey {
        FlowKey {
            protocol,
            source: Ipv4Addr::new(10, 77, 0, 11),
            destination: Ipv4Addr::new(203, 0, 113, 10),
            source_port,
            destination_port,
        }
    }

    #[test]
    fn explain_reconstructs_the_decision_of_the_flows_own_snapshot() {
        let config = crate::config::parse(CONFIG, "t.toml", None).unwrap();
        let mut builder = SnapshotBuilder::new(3, Default::default());
        let mut history = DecisionHistory::new(8);
        // Generation 1: isp2 down. A TCP flow decided then can only be on isp1.
        let first = publish(&mut builder, &mut history, &config, [true, false], 1000);
        let early = pin(&first, key(IpProtocol::Tcp, 40000, 443));
        assert_eq!(early.uplink, 0);
        // Generation 2: both up; a DNS flow matches the policy and goes to isp2.
        let second = publish(&mut builder, &mut history, &config, [true, true], 5000);
        let dns = pin(&second, key(IpProtocol::Udp, 5353, 53));
        assert_eq!(dns.uplink, 1);

        let e = explain(
            &early,
            FlowEntry::default(),
            history.find(early.generation),
            &config,
            7000,
        );
        assert!(e.decision_known);
        assert_eq!(e.generation, first.generation);
        assert!(e.rule.starts_with("default group"), "{}", e.rule);
        assert_eq!(e.chooser_pick.as_deref(), Some("isp1"));
        assert_eq!(e.decided_s_ago, Some(6.0));
        // The uplinks as they were then, not as they are now.
        let states: Vec<_> = e
            .uplinks
            .iter()
            .map(|u| (u.name.as_str(), u.state.as_str(), u.weight, u.eligible))
            .collect();
        assert_eq!(
            states,
            [("isp1", "up", 1, true), ("isp2", "down", 3, false)]
        );
        assert_eq!(e.stickiness, "endpoint");
        assert_eq!(e.stickiness_fields, "tcp 10.77.0.11 port 40000");
        assert_eq!(
            e.stickiness_key,
            format!("{:016x}", first.policy.key(&early.lan_key()).0)
        );
        assert!(e.summary.contains("chose isp1"), "{}", e.summary);

        let e = explain(
            &dns,
            FlowEntry::default(),
            history.find(dns.generation),
            &config,
            7000,
        );
        assert!(e.rule.starts_with("policy[0] `dns`"), "{}", e.rule);
        assert!(e.rule.contains("\"dst_port\""), "{}", e.rule);
        assert_eq!(e.chooser_pick.as_deref(), Some("isp2"));
        assert!(e.uplinks.iter().all(|u| u.eligible));
    }

    #[test]
    fn a_flow_opened_from_outside_is_called_inbound() {
        let config = crate::config::parse(CONFIG, "t.toml", None).unwrap();
        let mut builder = SnapshotBuilder::new(3, Default::default());
        let mut history = DecisionHistory::new(8);
        let snapshot = publish(&mut builder, &mut history, &config, [true, false], 0);
        let mut value = pin(&snapshot, key(IpProtocol::Udp, 4000, 9999));
        // Admitted inbound on isp2 (the datapath stores the default group).
        value.uplink = 1;
        value.placement = Placement::OpenedFromOutside;
        let e = explain(
            &value,
            FlowEntry::default(),
            history.find(value.generation),
            &config,
            0,
        );
        assert_eq!(e.chooser_pick.as_deref(), Some("isp1"));
        assert!(
            e.summary.contains("opened from outside on isp2"),
            "{}",
            e.summary
        );
    }

    #[test]
    fn a_forwarded_flow_names_its_forward_and_its_ingress_uplink() {
        let text = format!(
            "{CONFIG}[[forward]]\nname = \"web\"\nuplinks = \"all\"\nprotocol = \"tcp\"\n\
             port = 8080\nto = \"10.77.0.12\"\n"
        );
        let config = crate::config::parse(&text, "t.toml", None).unwrap();
        let mut builder = SnapshotBuilder::new(3, Default::default());
        let mut history = DecisionHistory::new(8);
        let snapshot = publish(&mut builder, &mut history, &config, [true, true], 0);
        let mut value = pin(&snapshot, key(IpProtocol::Tcp, 8080, 40000));
        value.uplink = 1;
        value.policy = 0;
        value.placement = Placement::Forwarded;
        let e = explain(
            &value,
            FlowEntry::default(),
            history.find(value.generation),
            &config,
            0,
        );
        assert!(
            e.summary
                .contains("opened from outside through forward `web` on isp2"),
            "{}",
            e.summary
        );
        assert!(e.summary.contains("replies leave by isp2"), "{}", e.summary);
        assert!(e.rule.starts_with("forward[0] `web`"), "{}", e.rule);
    }

    #[test]
    fn a_flow_that_joined_its_endpoints_live_mapping_says_so() {
        let config = crate::config::parse(CONFIG, "t.toml", None).unwrap();
        let mut builder = SnapshotBuilder::new(3, Default::default());
        let mut history = DecisionHistory::new(8);
        let snapshot = publish(&mut builder, &mut history, &config, [true, true], 0);
        let mut value = pin(&snapshot, key(IpProtocol::Udp, 4000, 9999));
        let pick = value.uplink;
        value.uplink = 1 - pick;
        value.placement = Placement::JoinedLiveMapping;
        let e = explain(
            &value,
            FlowEntry::default(),
            history.find(value.generation),
            &config,
            0,
        );
        let (pinned, chosen) = (
            &config.uplinks[usize::from(1 - pick)].name,
            &config.uplinks[usize::from(pick)].name,
        );
        assert!(
            e.summary
                .contains(&format!("already held a live mapping on {pinned}")),
            "{}",
            e.summary
        );
        assert!(
            e.summary
                .contains(&format!("instead of the default group's choice ({chosen})")),
            "{}",
            e.summary
        );
        assert!(!e.summary.contains("opened from outside"), "{}", e.summary);
    }

    #[test]
    fn the_history_is_bounded_and_forgotten_decisions_say_so() {
        let config = crate::config::parse(CONFIG, "t.toml", None).unwrap();
        let mut builder = SnapshotBuilder::new(3, Default::default());
        let mut history = DecisionHistory::new(2);
        let first = publish(&mut builder, &mut history, &config, [true, true], 0);
        let value = pin(&first, key(IpProtocol::Tcp, 1234, 80));
        for at in 1..=2 {
            publish(&mut builder, &mut history, &config, [true, true], at);
        }
        assert_eq!(history.len(), 2);
        assert_eq!(history.oldest_generation(), first.generation + 1);
        assert!(history.find(value.generation).is_none());
        let e = explain(&value, FlowEntry::default(), None, &config, 10);
        assert!(!e.decision_known);
        assert_eq!(e.generation, first.generation);
        assert!(e.uplinks.is_empty() && e.chooser_pick.is_none());
        assert!(e.summary.contains("no longer remembered"), "{}", e.summary);
    }
}
