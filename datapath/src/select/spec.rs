//! What the control plane tells [`PolicyTable::build`](super::PolicyTable::build): the uplinks by
//! slot, the stickiness mode and the policy rules in order, each with its match and its group.
//!
//! Invariants the builder of a spec upholds (the configuration's validation does): every
//! [`GroupMember::uplink`] indexes [`PolicySpec::uplinks`]; a rule's group is not empty; a
//! [`FlowMatch::dst_port`] is only given together with a protocol that has ports, or none.

use flowpin_nat::{FlowKey, IpProtocol, PortRange};

use super::{Protocol, Stickiness};
use crate::Ipv4Prefix;

/// The inputs of a policy table, free of any file format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySpec {
    /// Uplink names by slot: rendezvous hashing mixes them in, so a rename moves keys.
    pub uplinks: Vec<String>,
    /// Which fields of a flow pin it to an uplink.
    pub stickiness: Stickiness,
    /// The rules, first match wins.
    pub rules: Vec<PolicyRule>,
}

/// One policy rule: what a new flow must match, and the group that then chooses its uplink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRule {
    /// What a new flow must match; an empty match matches every flow.
    pub matcher: FlowMatch,
    /// The group's uplinks, with their weights inside the group.
    pub group: Vec<GroupMember>,
}

/// One uplink of a rule's group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// The uplink's slot (index into [`PolicySpec::uplinks`]).
    pub uplink: usize,
    /// The weight inside the group; `None`: the uplink's own run-time weight.
    pub weight: Option<u32>,
    /// The tier inside the group (1 = best); `None`: the uplink's own tier.
    pub tier: Option<u8>,
}

/// The criteria of a rule; every one present must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowMatch {
    /// Source prefixes (any of them); empty = any source.
    pub src: Vec<Ipv4Prefix>,
    /// Destination prefixes (any of them); empty = any destination.
    pub dst: Vec<Ipv4Prefix>,
    /// Protocol; `None` = any.
    pub proto: Option<Protocol>,
    /// Destination port range (TCP and UDP flows only); `None` = any.
    pub dst_port: Option<PortRange>,
    /// DSCP code point (0..=63) of the flow's first packet; `None` = any.
    pub dscp: Option<u8>,
}

impl FlowMatch {
    /// Whether every criterion present holds for the flow `key` whose first packet carried `dscp`.
    #[inline]
    pub fn matches(&self, key: &FlowKey, dscp: u8) -> bool {
        let has_ports = matches!(key.protocol, IpProtocol::Tcp | IpProtocol::Udp);
        (self.src.is_empty() || self.src.iter().any(|prefix| prefix.contains(key.source)))
            && (self.dst.is_empty()
                || self
                    .dst
                    .iter()
                    .any(|prefix| prefix.contains(key.destination)))
            && self
                .proto
                .is_none_or(|proto| proto.ip_number() == key.protocol.number())
            && self
                .dst_port
                .is_none_or(|range| has_ports && range.contains(key.destination_port))
            && self.dscp.is_none_or(|code_point| code_point == dscp)
    }
}
