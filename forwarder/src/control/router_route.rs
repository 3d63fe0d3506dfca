//! The router's own default route, following uplink state (`[router] default_route`).
//!
//! The router's resolver, NTP, package updates and VPN client use the kernel's default route, which
//! names one uplink: when that uplink dies they die with it, while flowpin carries the LAN's traffic
//! over the others. So flowpin keeps a default route of its own over the uplinks that take new flows
//! and replaces it on every state change.
//!
//! It never edits the main table (where an admin's static route or a DHCP client's default lives):
//! its default is in table 7399, reached by two rules placed just before the main table's,
//! `lookup main suppress_prefixlength 0` at priority 32764 (every route of the main table but its
//! default ones) and `lookup 7399` at 32765. The admin's own rules (priorities below 32764) still
//! decide first; a destination the main table routes specifically keeps that route; only what would
//! take the main table's default takes flowpin's instead. With no usable uplink the table is empty
//! and the lookup falls through to the main table's default as it was. On exit both rules and the
//! table go, so the main table's default is in force again, untouched.
//!
//! Invariants:
//! - the route is the pure [`choose`] of the published uplink state: the eligible uplinks (gateway
//!   resolved, health up, not drained) of the best tier that has one; `multipath` takes its weighted
//!   members (its standby members, weight 0, when it has no weighted one), `best` the one of highest
//!   weight (first in file order on a tie);
//! - `unmanaged` installs nothing, and switching to it (a reload) removes what was installed;
//! - the kernel is only asked when the chosen route changes, or when a check (every second) finds
//!   part of it gone; rules are removed by their full match, never by priority alone, so an admin's
//!   rule at the same priority stays.

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteNextHop};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};

use crate::config::DefaultRoute;
use crate::control::netinfo;
use crate::control::netinfo::rtnetlink::RouteSocket;
use crate::control::source_routes::{
    RoutingInventory, default_route, flush_table, main_without_default_rule, rule_at,
};

/// The routing table holding flowpin's default route for the router's own traffic.
pub const ROUTER_TABLE: u32 = 7399;
/// Priority of the rule that keeps the main table's routes but its defaults.
pub const MAIN_WITHOUT_DEFAULT_PRIORITY: u32 = 32764;
/// Priority of the rule that looks up [`ROUTER_TABLE`].
pub const ROUTER_RULE_PRIORITY: u32 = 32765;
/// The kernel's highest nexthop weight (`rtnh_hops` + 1).
const MAX_NEXTHOP_WEIGHT: u32 = 256;

/// One uplink as the route choice sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its interface.
    pub interface: String,
    /// Its gateway.
    pub gateway: Ipv4Addr,
    /// Its weight in force (the operator's override or the file's).
    pub weight: u32,
    /// Its tier (1 is the best).
    pub tier: u8,
    /// Whether it takes new flows now.
    pub eligible: bool,
}

/// One nexthop of the chosen default route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The uplink's interface.
    pub interface: String,
    /// The uplink's gateway.
    pub gateway: Ipv4Addr,
    /// The kernel's weight, 1..=256.
    pub weight: u32,
}

/// The default route `mode` asks for over `candidates` (in file order); empty: none is usable.
pub fn choose(mode: DefaultRoute, candidates: &[Candidate]) -> Vec<NextHop> {
    let usable = || candidates.iter().filter(|c| c.eligible);
    let Some(tier) = usable().map(|c| c.tier).min() else {
        return Vec::new();
    };
    let weighted = usable().any(|c| c.tier == tier && c.weight > 0);
    let members: Vec<(&Candidate, u32)> = usable()
        .filter(|c| c.tier == tier)
        .filter_map(|c| match (weighted, c.weight) {
            (true, 0) => None,
            (true, weight) => Some((c, weight)),
            (false, _) => Some((c, 1)),
        })
        .collect();
    let hop = |c: &Candidate, weight: u32| NextHop {
        interface: c.interface.clone(),
        gateway: c.gateway,
        weight,
    };
    match mode {
        DefaultRoute::Unmanaged => Vec::new(),
        DefaultRoute::Best => {
            let best = members
                .iter()
                .rev()
                .max_by_key(|(_, weight)| *weight)
                .expect("the best tier has a member");
            vec![hop(best.0, 1)]
        }
        DefaultRoute::Multipath => {
            let heaviest = members.iter().map(|(_, w)| *w).max().unwrap_or(1);
            members
                .iter()
                .map(|&(c, weight)| {
                    let scaled = if heaviest <= MAX_NEXTHOP_WEIGHT {
                        weight
                    } else {
                        (u64::from(weight) * u64::from(MAX_NEXTHOP_WEIGHT) / u64::from(heaviest))
                            .max(1) as u32
                    };
                    hop(c, scaled)
                })
                .collect()
        }
    }
}

/// What flowpin installed for the router's default route, kept across updates.
#[derive(Debug, Default)]
pub struct RouterRoute {
    /// Whether the two rules are installed.
    rules: bool,
    /// The route in [`ROUTER_TABLE`] (`Some(empty)`: the table is empty).
    route: Option<Vec<NextHop>>,
    /// Unmanaged, and what any earlier run left is removed: nothing to do until managed again.
    left_alone: bool,
}

impl RouterRoute {
    /// Makes the kernel hold `mode`'s route over `candidates`; asks it only when that changed.
    pub fn update(&mut self, mode: DefaultRoute, candidates: &[Candidate]) -> anyhow::Result<()> {
        if mode == DefaultRoute::Unmanaged {
            if !self.left_alone {
                self.remove();
                self.left_alone = true;
            }
            return Ok(());
        }
        self.left_alone = false;
        let hops = choose(mode, candidates);
        if self.rules && self.route.as_ref() == Some(&hops) {
            return Ok(());
        }
        let mut socket = RouteSocket::open()?;
        if !self.rules {
            remove_rules(&mut socket);
            socket.change(
                &format!(
                    "rule add lookup main suppress_prefixlength 0 pref {MAIN_WITHOUT_DEFAULT_PRIORITY}"
                ),
                RouteNetlinkMessage::NewRule(main_without_default_rule(
                    MAIN_WITHOUT_DEFAULT_PRIORITY,
                    None,
                )),
                NLM_F_CREATE,
            )?;
            socket.change(
                &format!("rule add lookup {ROUTER_TABLE} pref {ROUTER_RULE_PRIORITY}"),
                RouteNetlinkMessage::NewRule(router_rule()),
                NLM_F_CREATE,
            )?;
            self.rules = true;
        }
        self.route = None;
        if hops.is_empty() {
            flush_table(&mut socket, ROUTER_TABLE)?;
        } else {
            let route = route_over(&hops)?;
            socket.change(
                &describe(&hops),
                RouteNetlinkMessage::NewRoute(route),
                NLM_F_CREATE | NLM_F_REPLACE,
            )?;
        }
        self.route = Some(hops);
        Ok(())
    }

    /// Removes both rules and the table (also what a previous process left); missing ones are fine.
    pub fn remove(&mut self) {
        if let Ok(mut socket) = RouteSocket::open() {
            remove_rules(&mut socket);
            let _ = flush_table(&mut socket, ROUTER_TABLE);
        }
        self.rules = false;
        self.route = None;
    }

    /// Whether the kernel lost part of what is installed (`inventory` read just now): a rule, or the
    /// route (a link taken down makes the kernel delete a route whose only nexthop it was).
    pub fn lost_from(&self, inventory: &RoutingInventory) -> bool {
        let rules_lost = self.rules
            && (inventory.rules_at(MAIN_WITHOUT_DEFAULT_PRIORITY) == 0
                || inventory.rules_at(ROUTER_RULE_PRIORITY) == 0);
        let route_lost =
            self.installed().is_some() && !inventory.tables_with_default.contains(&ROUTER_TABLE);
        rules_lost || route_lost
    }

    /// Forgets what was installed, so the next [`RouterRoute::update`] installs it all again.
    pub fn forget(&mut self) {
        self.rules = false;
        self.route = None;
    }

    /// The route installed now (`None`: none, or unmanaged).
    pub fn installed(&self) -> Option<&[NextHop]> {
        self.route.as_deref().filter(|hops| !hops.is_empty())
    }
}

/// Deletes every copy of flowpin's two rules, matched in full.
fn remove_rules(socket: &mut RouteSocket) {
    let main = || main_without_default_rule(MAIN_WITHOUT_DEFAULT_PRIORITY, None);
    while socket
        .change(
            "rule del lookup main suppress_prefixlength 0",
            RouteNetlinkMessage::DelRule(main()),
            0,
        )
        .is_ok()
    {}
    while socket
        .change(
            "rule del lookup 7399",
            RouteNetlinkMessage::DelRule(router_rule()),
            0,
        )
        .is_ok()
    {}
}

/// `lookup 7399 pref 32765`, as `ip rule add` builds it.
pub(crate) fn router_rule() -> RuleMessage {
    let mut rule = rule_at(ROUTER_RULE_PRIORITY);
    rule.header.action = RuleAction::ToTable;
    rule.attributes
        .insert(0, RuleAttribute::Table(ROUTER_TABLE));
    rule
}

/// The route over `hops` (one: a plain default; several: a multipath one), interfaces resolved now.
fn route_over(hops: &[NextHop]) -> anyhow::Result<RouteMessage> {
    let ifindex = |hop: &NextHop| netinfo::interface(&hop.interface).map(|i| i.ifindex);
    if let [hop] = hops {
        return Ok(default_route(ROUTER_TABLE, hop.gateway, ifindex(hop)?));
    }
    let mut next_hops = Vec::with_capacity(hops.len());
    for hop in hops {
        next_hops.push(next_hop(hop, ifindex(hop)?));
    }
    Ok(multipath_route(ROUTER_TABLE, next_hops))
}

/// One `nexthop via GATEWAY dev IFINDEX weight W`.
pub(crate) fn next_hop(hop: &NextHop, ifindex: u32) -> RouteNextHop {
    let mut next_hop = RouteNextHop::default();
    next_hop.interface_index = ifindex;
    next_hop.hops = u8::try_from(hop.weight.clamp(1, MAX_NEXTHOP_WEIGHT) - 1).unwrap_or(u8::MAX);
    next_hop.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(hop.gateway))];
    next_hop
}

/// `default table TABLE nexthop ... nexthop ...`, as `ip route replace` builds it.
pub(crate) fn multipath_route(table: u32, next_hops: Vec<RouteNextHop>) -> RouteMessage {
    let mut route = default_route(table, Ipv4Addr::UNSPECIFIED, 0);
    route.attributes = vec![
        RouteAttribute::Table(table),
        RouteAttribute::MultiPath(next_hops),
    ];
    route
}

/// The request as `ip` would write it, for errors.
fn describe(hops: &[NextHop]) -> String {
    let mut text = format!("route replace default table {ROUTER_TABLE}");
    for hop in hops {
        text.push_str(&format!(
            " nexthop via {} dev {} weight {}",
            hop.gateway, hop.interface, hop.weight
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::netinfo::rtnetlink::{change_flags, encode_request};

    fn candidate(interface: &str, weight: u32, tier: u8, eligible: bool) -> Candidate {
        Candidate {
            interface: interface.into(),
            gateway: Ipv4Addr::new(198, 51, 100, interface.len() as u8),
            weight,
            tier,
            eligible,
        }
    }

    fn names(hops: &[NextHop]) -> Vec<(&str, u32)> {
        hops.iter()
            .map(|h| (h.interface.as_str(), h.weight))
            .collect()
    }

    #[test]
    fn multipath_spans_the_eligible_weighted_uplinks_of_the_best_tier() {
        let uplinks = [
            candidate("wan1", 3, 1, true),
            candidate("wan2", 1, 1, true),
            candidate("wan3", 5, 2, true),
            candidate("wan4", 0, 1, true),
        ];
        let hops = choose(DefaultRoute::Multipath, &uplinks);
        assert_eq!(names(&hops), [("wan1", 3), ("wan2", 1)]);
        assert_eq!(hops[0].gateway, uplinks[0].gateway);
    }

    #[test]
    fn a_dead_uplink_leaves_the_route_and_a_dead_tier_hands_over() {
        let mut uplinks = [
            candidate("wan1", 1, 1, false),
            candidate("wan2", 1, 1, true),
            candidate("wan3", 1, 2, true),
        ];
        assert_eq!(
            names(&choose(DefaultRoute::Multipath, &uplinks)),
            [("wan2", 1)]
        );
        uplinks[1].eligible = false;
        assert_eq!(
            names(&choose(DefaultRoute::Multipath, &uplinks)),
            [("wan3", 1)]
        );
        uplinks[2].eligible = false;
        assert!(choose(DefaultRoute::Multipath, &uplinks).is_empty());
        assert!(choose(DefaultRoute::Best, &uplinks).is_empty());
    }

    #[test]
    fn standby_uplinks_carry_the_route_only_when_their_tier_has_no_weighted_one() {
        let mut uplinks = [candidate("wan1", 2, 1, true), candidate("wan2", 0, 1, true)];
        assert_eq!(
            names(&choose(DefaultRoute::Multipath, &uplinks)),
            [("wan1", 2)]
        );
        uplinks[0].eligible = false;
        assert_eq!(
            names(&choose(DefaultRoute::Multipath, &uplinks)),
            [("wan2", 1)]
        );
    }

    #[test]
    fn best_takes_the_heaviest_and_the_first_on_a_tie() {
        let uplinks = [
            candidate("wan1", 1, 1, true),
            candidate("wan2", 4, 1, true),
            candidate("wan3", 4, 1, true),
            candidate("wan4", 9, 2, true),
        ];
        assert_eq!(names(&choose(DefaultRoute::Best, &uplinks)), [("wan2", 1)]);
    }

    #[test]
    fn unmanaged_chooses_nothing() {
        let uplinks = [candidate("wan1", 1, 1, true)];
        assert!(choose(DefaultRoute::Unmanaged, &uplinks).is_empty());
    }

    #[test]
    fn heavy_weights_are_scaled_into_the_kernels_range() {
        let uplinks = [
            candidate("wan1", 1_000_000, 1, true),
            candidate("wan2", 1_000, 1, true),
        ];
        assert_eq!(
            names(&choose(DefaultRoute::Multipath, &uplinks)),
            [("wan1", 256), ("wan2", 1)]
        );
    }

    #[test]
    fn a_lost_rule_or_route_is_noticed_only_when_installed() {
        let installed = RouterRoute {
            rules: true,
            route: Some(vec![NextHop {
                interface: "wan1".into(),
                gateway: Ipv4Addr::new(192, 0, 2, 1),
                weight: 1,
            }]),
            left_alone: false,
        };
        let whole = RoutingInventory {
            tables_with_default: vec![254, ROUTER_TABLE],
            rule_priorities: vec![
                0,
                MAIN_WITHOUT_DEFAULT_PRIORITY,
                ROUTER_RULE_PRIORITY,
                32766,
            ],
        };
        assert!(!installed.lost_from(&whole));
        let no_route = RoutingInventory {
            tables_with_default: vec![254],
            ..whole.clone()
        };
        assert!(installed.lost_from(&no_route));
        let no_rule = RoutingInventory {
            rule_priorities: vec![0, MAIN_WITHOUT_DEFAULT_PRIORITY, 32766],
            ..whole.clone()
        };
        assert!(installed.lost_from(&no_rule));
        assert!(!RouterRoute::default().lost_from(&no_rule));
        let mut forgotten = installed;
        forgotten.forget();
        assert!(!forgotten.lost_from(&no_route));
    }

    #[test]
    fn a_nexthop_encodes_its_weight_less_one() {
        let hop = NextHop {
            interface: "wan2".into(),
            gateway: Ipv4Addr::new(198, 51, 100, 9),
            weight: 3,
        };
        let next_hop = next_hop(&hop, 7);
        assert_eq!((next_hop.hops, next_hop.interface_index), (2, 7));
        let route = multipath_route(ROUTER_TABLE, vec![next_hop.clone(), next_hop]);
        let bytes = encode_request(
            RouteNetlinkMessage::NewRoute(route),
            change_flags(NLM_F_CREATE | NLM_F_REPLACE),
            7,
        );
        // header 16 + rtmsg 12 + RTA_TABLE 8 + RTA_MULTIPATH 4 + 2 × (rtnexthop 8 + RTA_GATEWAY 8).
        assert_eq!(bytes.len(), 16 + 12 + 8 + 4 + 2 * 16);
    }

    #[test]
    fn the_router_rule_looks_up_its_table_at_its_priority() {
        let rule = router_rule();
        assert!(
            rule.attributes
                .contains(&RuleAttribute::Table(ROUTER_TABLE))
        );
        assert!(
            rule.attributes
                .contains(&RuleAttribute::Priority(ROUTER_RULE_PRIORITY))
        );
        assert_eq!(rule.header.action, RuleAction::ToTable);
    }
}
