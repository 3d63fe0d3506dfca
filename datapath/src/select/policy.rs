//! The policy table: first matching rule → its uplink group; no match → the default group (all
//! uplinks with their weights). Each group has its own [`UplinkChooser`].
//!
//! Classification runs once per *new* flow, over the rules in file order, each rule checking its
//! prefix lists linearly: a handful of rules with a few prefixes each costs tens of nanoseconds,
//! well below the rest of the first-packet work (port allocation, two flow table inserts). A
//! prefix trie would pay off only with hundreds of prefixes per rule.
//!
//! Invariants: the table is immutable once built; a rule's `dst_port` matches TCP and UDP flows
//! only (an ICMP flow never matches a rule with a port range); `dscp` is the 6-bit code point of
//! the flow's first packet (`tos >> 2`).

use flowpin_nat::FlowKey;

use super::{
    Candidate, FlowMatch, KeyHasher, PolicySpec, Stickiness, StickinessKey, UplinkChooser,
};

/// The run-time state of one configured uplink, as the control plane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UplinkStatus {
    /// Current weight (the configured one unless changed at run time).
    pub weight: u32,
    /// Its tier (1 = best): new flows use the best tier that has an eligible uplink.
    pub tier: u8,
    /// Whether it may take new flows (up and not draining).
    pub eligible: bool,
}

/// Which group a new flow falls into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupId {
    /// The rule at this index of [`PolicySpec::rules`] matched first.
    Policy(usize),
    /// No policy matched: all uplinks with their weights.
    Default,
}

/// Everything decided for a new flow, kept for `flowpin explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The group the flow fell into.
    pub group: GroupId,
    /// Its stickiness key.
    pub key: StickinessKey,
    /// The chosen uplink (index into [`PolicySpec::uplinks`]); `None` when the group has no eligible
    /// uplink.
    pub uplink: Option<usize>,
}

/// Policy rules and one chooser per group, built by the control plane, read by the datapath.
#[derive(Clone, Debug)]
pub struct PolicyTable {
    stickiness: Stickiness,
    hasher: KeyHasher,
    rules: Box<[FlowMatch]>,
    /// One per rule, in rule order, then the default group.
    groups: Box<[UplinkChooser]>,
}

impl PolicyTable {
    /// Builds the table of `spec` with the uplinks' run-time `status` (indexed like
    /// [`PolicySpec::uplinks`]). Group members without an explicit weight take the run-time weight,
    /// without an explicit tier the uplink's tier.
    ///
    /// # Panics
    /// When `status` does not hold one entry per uplink of `spec`.
    pub fn build(spec: &PolicySpec, status: &[UplinkStatus], hasher: KeyHasher) -> Self {
        assert_eq!(
            status.len(),
            spec.uplinks.len(),
            "one status per configured uplink"
        );
        let candidate = |uplink: usize, weight: u32, tier: u8| Candidate {
            uplink,
            name: &spec.uplinks[uplink],
            weight,
            tier,
            eligible: status[uplink].eligible,
        };
        let policy_groups = spec.rules.iter().map(|rule| {
            UplinkChooser::new(rule.group.iter().map(|member| {
                let own = status[member.uplink];
                candidate(
                    member.uplink,
                    member.weight.unwrap_or(own.weight),
                    member.tier.unwrap_or(own.tier),
                )
            }))
        });
        let default_group = UplinkChooser::new(
            (0..spec.uplinks.len())
                .map(|uplink| candidate(uplink, status[uplink].weight, status[uplink].tier)),
        );
        PolicyTable {
            stickiness: spec.stickiness,
            hasher,
            rules: spec.rules.iter().map(|rule| rule.matcher.clone()).collect(),
            groups: policy_groups.chain([default_group]).collect(),
        }
    }

    /// The group of a new flow: the first rule that matches, else the default group.
    #[inline]
    pub fn classify(&self, key: &FlowKey, dscp: u8) -> GroupId {
        self.rules
            .iter()
            .position(|rule| rule.matches(key, dscp))
            .map_or(GroupId::Default, GroupId::Policy)
    }

    /// The chooser of a group.
    pub fn group(&self, group: GroupId) -> &UplinkChooser {
        match group {
            GroupId::Policy(index) => &self.groups[index],
            GroupId::Default => &self.groups[self.rules.len()],
        }
    }

    /// The configured stickiness mode.
    pub fn stickiness(&self) -> Stickiness {
        self.stickiness
    }

    /// The stickiness key of a flow under the configured mode.
    #[inline]
    pub fn key(&self, key: &FlowKey) -> StickinessKey {
        self.hasher.key(self.stickiness, key)
    }

    /// Classifies a new flow and chooses its uplink. No allocation.
    #[inline]
    pub fn decide(&self, flow: &FlowKey, dscp: u8) -> Decision {
        let group = self.classify(flow, dscp);
        let key = self.key(flow);
        Decision {
            group,
            key,
            uplink: self.group(group).choose(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use flowpin_nat::IpProtocol;

    use super::*;
    use crate::select::{GroupMember, PolicyRule, Protocol};

    fn prefixes(list: &[&str]) -> Vec<crate::Ipv4Prefix> {
        list.iter().map(|text| text.parse().unwrap()).collect()
    }

    fn member(uplink: usize, weight: Option<u32>) -> GroupMember {
        GroupMember {
            uplink,
            weight,
            tier: None,
        }
    }

    /// isp1 (weight 3) and isp2 (weight 1), and four rules in order: `voice` (UDP to 5060-5061 with
    /// DSCP 46, on isp2), `lab-web` (10.0.9.0/24 to two prefixes on TCP 443, isp1 and isp2 at weight
    /// 1 each), `lab-rest` (10.0.9.0/24, on isp1), `never` (10.0.9.7, on isp2: shadowed by lab-rest).
    fn spec() -> PolicySpec {
        let rule = |matcher: FlowMatch, group: Vec<GroupMember>| PolicyRule { matcher, group };
        PolicySpec {
            uplinks: vec!["isp1".to_owned(), "isp2".to_owned()],
            stickiness: Stickiness::Endpoint,
            rules: vec![
                rule(
                    FlowMatch {
                        proto: Some(Protocol::Udp),
                        dst_port: flowpin_nat::PortRange::new(5060, 5061).ok(),
                        dscp: Some(46),
                        ..FlowMatch::default()
                    },
                    vec![member(1, None)],
                ),
                rule(
                    FlowMatch {
                        src: prefixes(&["10.0.9.0/24"]),
                        dst: prefixes(&["203.0.113.0/24", "192.0.2.128/25"]),
                        proto: Some(Protocol::Tcp),
                        dst_port: flowpin_nat::PortRange::new(443, 443).ok(),
                        dscp: None,
                    },
                    vec![member(0, Some(1)), member(1, Some(1))],
                ),
                rule(
                    FlowMatch {
                        src: prefixes(&["10.0.9.0/24"]),
                        ..FlowMatch::default()
                    },
                    vec![member(0, None)],
                ),
                rule(
                    FlowMatch {
                        src: prefixes(&["10.0.9.7"]),
                        ..FlowMatch::default()
                    },
                    vec![member(1, None)],
                ),
            ],
        }
    }

    /// Both uplinks eligible with their configured weights (3 and 1).
    fn configured() -> Vec<UplinkStatus> {
        [3, 1]
            .map(|weight| UplinkStatus {
                weight,
                tier: 1,
                eligible: true,
            })
            .to_vec()
    }

    fn table_with(status: &[UplinkStatus]) -> PolicyTable {
        PolicyTable::build(&spec(), status, KeyHasher::from_seed(3))
    }

    fn table() -> PolicyTable {
        table_with(&configured())
    }

    fn flow(protocol: IpProtocol, src: [u8; 4], dst: [u8; 4], dst_port: u16) -> FlowKey {
        FlowKey {
            protocol,
            source: Ipv4Addr::from(src),
            destination: Ipv4Addr::from(dst),
            source_port: 40000,
            destination_port: dst_port,
        }
    }

    #[test]
    fn first_match_wins_in_file_order() {
        let table = table();
        // 10.0.9.7 matches lab-rest and never; lab-rest comes first.
        assert_eq!(
            table.classify(&flow(IpProtocol::Tcp, [10, 0, 9, 7], [8, 8, 8, 8], 80), 0),
            GroupId::Policy(2)
        );
        // The same host to a lab-web destination on 443 matches lab-web before lab-rest.
        assert_eq!(
            table.classify(
                &flow(IpProtocol::Tcp, [10, 0, 9, 7], [203, 0, 113, 1], 443),
                0
            ),
            GroupId::Policy(1)
        );
        // Voice from that host still matches voice first.
        assert_eq!(
            table.classify(
                &flow(IpProtocol::Udp, [10, 0, 9, 7], [8, 8, 8, 8], 5060),
                46
            ),
            GroupId::Policy(0)
        );
        // Nothing matches an ordinary host's web flow.
        assert_eq!(
            table.classify(
                &flow(IpProtocol::Tcp, [10, 0, 1, 1], [203, 0, 113, 1], 443),
                0
            ),
            GroupId::Default
        );
    }

    #[test]
    fn every_criterion_must_hold() {
        let table = table();
        let voice = flow(IpProtocol::Udp, [10, 0, 1, 1], [8, 8, 8, 8], 5061);
        assert_eq!(table.classify(&voice, 46), GroupId::Policy(0));
        assert_eq!(table.classify(&voice, 0), GroupId::Default, "dscp");
        assert_eq!(
            table.classify(
                &FlowKey {
                    protocol: IpProtocol::Tcp,
                    ..voice
                },
                46
            ),
            GroupId::Default,
            "proto"
        );
        assert_eq!(
            table.classify(
                &FlowKey {
                    destination_port: 5062,
                    ..voice
                },
                46
            ),
            GroupId::Default,
            "port"
        );
        let web = flow(IpProtocol::Tcp, [10, 0, 9, 1], [192, 0, 2, 200], 443);
        assert_eq!(table.classify(&web, 0), GroupId::Policy(1));
        assert_eq!(
            table.classify(
                &FlowKey {
                    destination: Ipv4Addr::new(192, 0, 2, 100),
                    ..web
                },
                0
            ),
            GroupId::Policy(2),
            "dst"
        );
        assert_eq!(
            table.classify(
                &FlowKey {
                    source: Ipv4Addr::new(10, 0, 8, 1),
                    ..web
                },
                0
            ),
            GroupId::Default,
            "src"
        );
    }

    #[test]
    fn port_ranges_never_match_icmp() {
        let mut spec = spec();
        spec.rules[0].matcher.proto = None;
        let table = PolicyTable::build(&spec, &configured(), KeyHasher::from_seed(1));
        let udp = flow(IpProtocol::Udp, [10, 0, 1, 1], [8, 8, 8, 8], 5060);
        assert_eq!(table.classify(&udp, 46), GroupId::Policy(0));
        // An ICMP echo flow carries its id in both port fields, here one inside the range.
        let icmp = FlowKey {
            protocol: IpProtocol::Icmp,
            source_port: 5060,
            ..udp
        };
        assert_eq!(table.classify(&icmp, 46), GroupId::Default);
    }

    #[test]
    fn groups_choose_among_their_own_members() {
        let table = table();
        let hosts = (0..2000u16).map(|port| FlowKey {
            source_port: 1024 + port,
            ..flow(IpProtocol::Udp, [10, 0, 1, 1], [8, 8, 8, 8], 5060)
        });
        let mut per_uplink = [0; 2];
        for key in hosts {
            let decision = table.decide(&key, 46);
            assert_eq!(decision.group, GroupId::Policy(0));
            assert_eq!(decision.key, table.key(&key));
            per_uplink[decision.uplink.unwrap()] += 1;
        }
        assert_eq!(per_uplink, [0, 2000], "voice only uses isp2");

        let mut default_split = [0usize; 2];
        for port in 0..20_000u16 {
            let key = FlowKey {
                source_port: 1024 + port,
                ..flow(IpProtocol::Tcp, [10, 0, 1, 1], [8, 8, 8, 8], 80)
            };
            default_split[table.decide(&key, 0).uplink.unwrap()] += 1;
        }
        let share = default_split[0] as f64 / 20_000.0;
        assert!(
            (share - 0.75).abs() < 0.02,
            "default group 3:1, got {share:.3}"
        );

        let mut lab_split = [0usize; 2];
        for port in 0..20_000u16 {
            let key = FlowKey {
                source_port: 1024 + port,
                ..flow(IpProtocol::Tcp, [10, 0, 9, 1], [203, 0, 113, 9], 443)
            };
            lab_split[table.decide(&key, 0).uplink.unwrap()] += 1;
        }
        let share = lab_split[0] as f64 / 20_000.0;
        assert!(
            (share - 0.5).abs() < 0.02,
            "lab-web group 1:1, got {share:.3}"
        );
    }

    #[test]
    fn status_drives_eligibility_and_inherited_weights() {
        let isp2_down = table_with(&[
            UplinkStatus {
                weight: 3,
                tier: 1,
                eligible: true,
            },
            UplinkStatus {
                weight: 1,
                tier: 1,
                eligible: false,
            },
        ]);
        let voice = flow(IpProtocol::Udp, [10, 0, 1, 1], [8, 8, 8, 8], 5060);
        assert_eq!(
            isp2_down.decide(&voice, 46).uplink,
            None,
            "voice's only uplink is down"
        );
        let web = flow(IpProtocol::Tcp, [10, 0, 9, 1], [203, 0, 113, 9], 443);
        assert_eq!(isp2_down.decide(&web, 0).uplink, Some(0));

        // A run-time weight of 0 for isp1 makes it standby in the default group.
        let isp1_standby = table_with(&[
            UplinkStatus {
                weight: 0,
                tier: 1,
                eligible: true,
            },
            UplinkStatus {
                weight: 1,
                tier: 1,
                eligible: true,
            },
        ]);
        assert_eq!(
            isp1_standby
                .group(GroupId::Default)
                .members()
                .collect::<Vec<_>>(),
            vec![1]
        );
        // lab-web's explicit weights ignore it.
        assert_eq!(
            isp1_standby
                .group(GroupId::Policy(1))
                .members()
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
    }

    #[test]
    fn stickiness_mode_comes_from_the_spec() {
        let spec = PolicySpec {
            stickiness: Stickiness::Host,
            ..spec()
        };
        let table = PolicyTable::build(&spec, &configured(), KeyHasher::from_seed(5));
        let one = flow(IpProtocol::Tcp, [10, 0, 1, 1], [8, 8, 8, 8], 80);
        let other = FlowKey {
            source_port: 1,
            destination: Ipv4Addr::new(1, 1, 1, 1),
            protocol: IpProtocol::Udp,
            ..one
        };
        assert_eq!(table.key(&one), table.key(&other));
        assert_eq!(table.decide(&one, 0).uplink, table.decide(&other, 0).uplink);
    }
}
