//! `[[policy]]`: names unique, members existing uplinks listed once with a positive total weight,
//! match criteria that can match (sources inside the LAN, ports only for TCP and UDP).

use std::collections::HashMap;

use super::super::model::{Lan, Policy, PolicyMatch, PolicyUplink, Uplink};
use super::super::raw::{RawMatch, RawPolicy, RawPolicyUplink, S};
use super::{Checker, MAX_WEIGHT};

impl Checker<'_> {
    /// What do the `[[policy]]` rules say, in file order?
    pub(super) fn policies(
        &mut self,
        raw: Vec<S<RawPolicy>>,
        lan: &Lan,
        uplinks: &[Uplink],
    ) -> Vec<Policy> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut policies = Vec::with_capacity(raw.len());
        for (index, raw) in raw.into_iter().enumerate() {
            let span = raw.span();
            let raw = raw.into_inner();
            let field = |key: &str| format!("policy[{index}].{key}");
            let mut policy = Policy {
                name: String::new(),
                matcher: PolicyMatch::default(),
                uplinks: Vec::new(),
            };
            if let Some(name) = self.required(raw.name, &span, &field("name")) {
                self.check_name(&name, &field("name"));
                if let Some(other) = names.insert(name.get_ref().clone(), index) {
                    let message = format!(
                        "duplicate policy name `{}` (also policy[{other}])",
                        name.get_ref()
                    );
                    self.fail(name.span(), &field("name"), message);
                }
                policy.name = name.into_inner();
            }
            if let Some(matcher) = raw.matcher {
                policy.matcher = self.policy_match(matcher, &field("match"), lan);
            }
            if let Some(members) = self.required(raw.uplinks, &span, &field("uplinks")) {
                policy.uplinks = self.policy_uplinks(members, &field("uplinks"), uplinks);
            }
            policies.push(policy);
        }
        policies
    }

    /// What must a new flow match (`policy[i].match`)?
    fn policy_match(&mut self, raw: RawMatch, field: &str, lan: &Lan) -> PolicyMatch {
        let mut matcher = PolicyMatch::default();
        if let Some(src) = raw.src {
            let src = self.prefixes(src, &format!("{field}.src"));
            for (index, prefix) in src.iter().enumerate() {
                let overlaps_lan = lan.prefixes.iter().any(|lan_prefix| {
                    lan_prefix.covers(prefix.get_ref()) || prefix.get_ref().covers(lan_prefix)
                });
                if !overlaps_lan && !lan.prefixes.is_empty() {
                    let message = format!(
                        "{} lies outside every [lan] prefix, so it would never match (other \
                         sources are dropped as spoofed)",
                        prefix.get_ref()
                    );
                    self.fail(prefix.span(), &format!("{field}.src[{index}]"), message);
                }
            }
            matcher.src = src.into_iter().map(S::into_inner).collect();
        }
        if let Some(dst) = raw.dst {
            let dst = self.prefixes(dst, &format!("{field}.dst"));
            matcher.dst = dst.into_iter().map(S::into_inner).collect();
        }
        matcher.proto = raw.proto.map(S::into_inner);
        if let Some(dst_port) = raw.dst_port {
            if matcher.proto.is_some_and(|proto| !proto.has_ports()) {
                self.fail(
                    dst_port.span(),
                    &format!("{field}.dst_port"),
                    "ICMP has no ports; remove dst_port or match tcp/udp",
                );
            }
            matcher.dst_port = Some(dst_port.into_inner());
        }
        if let Some(dscp) = raw.dscp {
            if *dscp.get_ref() > 63 {
                self.fail(
                    dscp.span(),
                    &format!("{field}.dscp"),
                    format!("{} is not a DSCP code point (0-63)", dscp.get_ref()),
                );
            }
            matcher.dscp = Some(dscp.into_inner());
        }
        matcher
    }

    /// Which uplinks form the policy's group, with which weights?
    fn policy_uplinks(
        &mut self,
        members: S<Vec<S<RawPolicyUplink>>>,
        field: &str,
        uplinks: &[Uplink],
    ) -> Vec<PolicyUplink> {
        let list_span = members.span();
        let members = members.into_inner();
        if members.is_empty() {
            self.fail(list_span.clone(), field, "needs at least one uplink");
        }
        let mut group: Vec<PolicyUplink> = Vec::with_capacity(members.len());
        for (position, member) in members.into_iter().enumerate() {
            let span = member.span();
            let member_field = format!("{field}[{position}]");
            let RawPolicyUplink { name, weight, tier } = member.into_inner();
            if let Some(tier) = tier {
                self.check_tier(tier, span.clone(), &format!("{member_field}.tier"));
            }
            if let Some(weight) = weight.filter(|weight| *weight > MAX_WEIGHT) {
                self.fail(
                    span.clone(),
                    &format!("{member_field}.weight"),
                    format!("{weight} is above the maximum of {MAX_WEIGHT}"),
                );
            }
            let Some(index) = uplinks.iter().position(|uplink| uplink.name == name) else {
                let known: Vec<&str> = uplinks.iter().map(|uplink| uplink.name.as_str()).collect();
                let message = format!("unknown uplink `{name}` (uplinks: {})", known.join(", "));
                self.fail(span, &member_field, message);
                continue;
            };
            if group.iter().any(|member| member.index == index) {
                self.fail(
                    span,
                    &member_field,
                    format!("uplink `{name}` is listed twice"),
                );
                continue;
            }
            group.push(PolicyUplink {
                name,
                index,
                weight,
                tier,
            });
        }
        let total: u64 = group
            .iter()
            .map(|member| u64::from(member.weight.unwrap_or(uplinks[member.index].weight)))
            .sum();
        if !group.is_empty() && total == 0 {
            self.fail(
                list_span,
                field,
                "total weight is 0 (standby uplinks inherit weight 0): give a member a weight, \
                 e.g. { name = \"...\", weight = 1 }",
            );
        }
        group
    }
}
