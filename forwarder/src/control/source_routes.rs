//! Source routes for the router's own traffic from each uplink address: what makes an answer from
//! uplink k's address leave by uplink k, whatever the main table's default route says. The router's own
//! services (SSH, a VPN endpoint, DNS) reached on uplink k's address answer out of uplink k, and probes
//! bound to uplink k leave by its gateway (with `SO_BINDTODEVICE` alone, the kernel finds no route
//! through the other interfaces and would ARP for the target on the link). They exist for every uplink
//! with an address, probes or not, follow its address, and are removed at shutdown.
//!
//! For uplink slot k, over rtnetlink (`RouteSocket`): the route `default via GATEWAY dev IFACE table
//! 7400+k`, and at priority 7400+k, in this order, the rules
//! `from ADDRESS/32 lookup main suppress_prefixlength 0` and `from ADDRESS/32 lookup 7400+k`. The first
//! keeps every route of the main table but its default ones: an answer from the uplink's address to a
//! LAN host (`ping UPLINK_ADDRESS` from the LAN), to another directly connected network or along an
//! admin's static route keeps its route; only what would take the main table's default route takes
//! uplink k's gateway instead.
//!
//! Invariants:
//! - installing first removes what slot k had, then replaces the route and adds the two rules: one
//!   route and two rules per slot;
//! - removing deletes every rule of priority 7400+k and every IPv4 route of table 7400+k; missing ones
//!   are fine;
//! - an installation error names the request (as `ip` would write it) and the kernel's errno;
//! - only packets *from an uplink's address* are affected; forwarded traffic never reaches the kernel.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::control::netinfo;
use crate::control::netinfo::rtnetlink::RouteSocket;

/// Routing table (and rule priority) of uplink slot 0; slot k uses `SOURCE_TABLE_BASE + k`.
pub const SOURCE_TABLE_BASE: u32 = 7400;

/// The main routing table's number.
pub(crate) const MAIN_TABLE: u32 = 254;

/// Why slot k's source route could not be installed. The message holds the whole cause.
#[derive(Debug, thiserror::Error)]
pub enum SourceRouteError {
    /// The uplink's interface (whose index the route names) could not be read.
    #[error("{0:#}")]
    Interface(anyhow::Error),
    /// The rtnetlink socket failed, or the kernel refused a request (named, with the errno).
    #[error("{0:#}")]
    Rtnetlink(anyhow::Error),
}

/// Which routing table (and rule priority) does slot `slot` use?
pub fn source_table(slot: u8) -> u32 {
    SOURCE_TABLE_BASE + u32::from(slot)
}

/// Installs (or replaces) slot `slot`'s source route and rules.
pub fn install(
    slot: u8,
    address: Ipv4Addr,
    gateway: Ipv4Addr,
    interface: &str,
) -> Result<(), SourceRouteError> {
    remove(slot);
    let ifindex = netinfo::interface(interface)
        .map_err(SourceRouteError::Interface)?
        .ifindex;
    let table = source_table(slot);
    let mut socket = RouteSocket::open().map_err(SourceRouteError::Rtnetlink)?;
    socket
        .change(
            &format!("route replace default via {gateway} dev {interface} table {table}"),
            RouteNetlinkMessage::NewRoute(default_route(table, gateway, ifindex)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(SourceRouteError::Rtnetlink)?;
    socket
        .change(
            &format!("rule add from {address}/32 lookup main suppress_prefixlength 0 pref {table}"),
            RouteNetlinkMessage::NewRule(main_without_default_rule(table, Some(address))),
            NLM_F_CREATE,
        )
        .map_err(SourceRouteError::Rtnetlink)?;
    socket
        .change(
            &format!("rule add from {address}/32 lookup {table} pref {table}"),
            RouteNetlinkMessage::NewRule(source_rule(table, address)),
            NLM_F_CREATE,
        )
        .map_err(SourceRouteError::Rtnetlink)
}

/// Removes slot `slot`'s rules and table (missing ones are fine).
pub fn remove(slot: u8) {
    let table = source_table(slot);
    let Ok(mut socket) = RouteSocket::open() else {
        return;
    };
    let what = format!("rule del pref {table}");
    while socket
        .change(&what, RouteNetlinkMessage::DelRule(rule_at(table)), 0)
        .is_ok()
    {}
    let _ = flush_table(&mut socket, table);
}

/// What the kernel holds of flowpin's routing now: the tables with an IPv4 default route, and the
/// priority of every IPv4 rule (one entry per rule).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoutingInventory {
    /// Tables holding an IPv4 default route.
    pub tables_with_default: Vec<u32>,
    /// Priorities of the IPv4 rules, one per rule.
    pub rule_priorities: Vec<u32>,
}

impl RoutingInventory {
    /// Reads both over rtnetlink (two dumps).
    pub fn read() -> anyhow::Result<Self> {
        let mut socket = RouteSocket::open()?;
        let mut routes = RouteMessage::default();
        routes.header.address_family = AddressFamily::Inet;
        let routes = socket.dump(
            "RTM_GETROUTE dump (IPv4)",
            RouteNetlinkMessage::GetRoute(routes),
        )?;
        let mut rules = RuleMessage::default();
        rules.header.family = AddressFamily::Inet;
        let rules = socket.dump(
            "RTM_GETRULE dump (IPv4)",
            RouteNetlinkMessage::GetRule(rules),
        )?;
        let tables_with_default = routes
            .iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewRoute(route)
                    if route.header.destination_prefix_length == 0 =>
                {
                    Some(table_of(route))
                }
                _ => None,
            })
            .collect();
        let rule_priorities = rules
            .iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewRule(rule) => Some(
                    rule.attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            RuleAttribute::Priority(priority) => Some(*priority),
                            _ => None,
                        })
                        .unwrap_or(0),
                ),
                _ => None,
            })
            .collect();
        Ok(Self {
            tables_with_default,
            rule_priorities,
        })
    }

    /// Whether uplink slot `slot`'s default route and both of its rules are there.
    pub fn has_source_routes(&self, slot: u8) -> bool {
        let table = source_table(slot);
        self.tables_with_default.contains(&table) && self.rules_at(table) == 2
    }

    /// How many rules have priority `priority`.
    pub fn rules_at(&self, priority: u32) -> usize {
        self.rule_priorities
            .iter()
            .filter(|p| **p == priority)
            .count()
    }
}

/// Deletes every IPv4 route of `table` (`ip route flush table TABLE`).
pub(crate) fn flush_table(socket: &mut RouteSocket, table: u32) -> anyhow::Result<()> {
    let mut request = RouteMessage::default();
    request.header.address_family = AddressFamily::Inet;
    let routes = socket
        .dump(
            "RTM_GETROUTE dump (IPv4)",
            RouteNetlinkMessage::GetRoute(request),
        )
        .context("listing the routes to flush")?;
    let what = format!("route flush table {table}");
    for route in routes {
        if let RouteNetlinkMessage::NewRoute(route) = route
            && table_of(&route) == table
        {
            socket.change(&what, RouteNetlinkMessage::DelRoute(route), 0)?;
        }
    }
    Ok(())
}

/// Which table does `route` belong to? (`RTA_TABLE` when present: the header holds only 8 bits.)
pub(crate) fn table_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

/// `default via GATEWAY dev IFINDEX table TABLE`, as `ip route replace` builds it.
pub(crate) fn default_route(table: u32, gateway: Ipv4Addr, ifindex: u32) -> RouteMessage {
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    route.header.table = RouteHeader::RT_TABLE_UNSPEC;
    route.header.protocol = RouteProtocol::Boot;
    route.header.scope = RouteScope::Universe;
    route.header.kind = RouteType::Unicast;
    route.attributes = vec![
        RouteAttribute::Table(table),
        RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
        RouteAttribute::Oif(ifindex),
    ];
    route
}

/// `from ADDRESS/32 lookup TABLE pref TABLE`, as `ip rule add` builds it.
pub(crate) fn source_rule(table: u32, address: Ipv4Addr) -> RuleMessage {
    let mut rule = rule_at(table);
    rule.header.src_len = 32;
    rule.header.action = RuleAction::ToTable;
    rule.attributes
        .insert(0, RuleAttribute::Source(IpAddr::V4(address)));
    rule.attributes.insert(1, RuleAttribute::Table(table));
    rule
}

/// `[from ADDRESS/32] lookup main suppress_prefixlength 0 pref PRIORITY`, as `ip rule add` builds
/// it: the main table without its default routes.
pub(crate) fn main_without_default_rule(priority: u32, from: Option<Ipv4Addr>) -> RuleMessage {
    let mut rule = rule_at(priority);
    rule.header.action = RuleAction::ToTable;
    let mut attributes = Vec::new();
    if let Some(address) = from {
        rule.header.src_len = 32;
        attributes.push(RuleAttribute::Source(IpAddr::V4(address)));
    }
    attributes.push(RuleAttribute::Table(MAIN_TABLE));
    attributes.push(RuleAttribute::Priority(priority));
    attributes.push(RuleAttribute::SuppressPrefixLen(0));
    rule.attributes = attributes;
    rule
}

/// Any IPv4 rule of priority `priority`, as `ip rule del pref PRIORITY` names it.
pub(crate) fn rule_at(priority: u32) -> RuleMessage {
    let mut rule = RuleMessage::default();
    rule.header.family = AddressFamily::Inet;
    rule.attributes = vec![RuleAttribute::Priority(priority)];
    rule
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NLM_F_REQUEST;

    use super::*;
    use crate::control::netinfo::rtnetlink::{change_flags, encode_request};

    /// A netlink header: length, type, flags, sequence 7, port 0.
    fn header(length: u32, kind: u16, flags: u16) -> Vec<u8> {
        let mut bytes = length.to_ne_bytes().to_vec();
        bytes.extend(kind.to_ne_bytes());
        bytes.extend(flags.to_ne_bytes());
        bytes.extend(7u32.to_ne_bytes());
        bytes.extend(0u32.to_ne_bytes());
        bytes
    }

    /// A 4-byte attribute.
    fn attribute(kind: u16, value: [u8; 4]) -> Vec<u8> {
        let mut bytes = 8u16.to_ne_bytes().to_vec();
        bytes.extend(kind.to_ne_bytes());
        bytes.extend(value);
        bytes
    }

    #[test]
    fn each_slot_gets_its_own_table_and_rules() {
        assert_eq!(source_table(0), 7400);
        assert_eq!(source_table(1), 7401);
    }

    #[test]
    fn the_route_is_encoded_as_ip_route_replace_sends_it() {
        let route = default_route(7401, Ipv4Addr::new(100, 64, 2, 1), 5);
        let flags = change_flags(NLM_F_CREATE | NLM_F_REPLACE);
        let bytes = encode_request(RouteNetlinkMessage::NewRoute(route), flags, 7);
        // RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE.
        let mut expected = header(52, 24, 0x0505);
        // rtmsg: AF_INET, /0, /0, tos 0, table in RTA_TABLE, RTPROT_BOOT, universe, unicast, no flags.
        expected.extend([2, 0, 0, 0, 0, 3, 0, 1, 0, 0, 0, 0]);
        expected.extend(attribute(15, 7401u32.to_ne_bytes())); // RTA_TABLE
        expected.extend(attribute(5, [100, 64, 2, 1])); // RTA_GATEWAY
        expected.extend(attribute(4, 5u32.to_ne_bytes())); // RTA_OIF
        assert_eq!(bytes, expected);
    }

    #[test]
    fn the_rule_is_encoded_as_ip_rule_add_sends_it() {
        let rule = source_rule(7401, Ipv4Addr::new(100, 64, 2, 2));
        let flags = change_flags(NLM_F_CREATE);
        let bytes = encode_request(RouteNetlinkMessage::NewRule(rule), flags, 7);
        // RTM_NEWRULE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE.
        let mut expected = header(52, 32, 0x0405);
        // fib_rule_hdr: AF_INET, dst /0, src /32, tos 0, table in FRA_TABLE, FR_ACT_TO_TBL, no flags.
        expected.extend([2, 0, 32, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        expected.extend(attribute(2, [100, 64, 2, 2])); // FRA_SRC
        expected.extend(attribute(15, 7401u32.to_ne_bytes())); // FRA_TABLE
        expected.extend(attribute(6, 7401u32.to_ne_bytes())); // FRA_PRIORITY
        assert_eq!(bytes, expected);
    }

    #[test]
    fn the_main_table_rule_suppresses_only_default_routes() {
        let rule = main_without_default_rule(7401, Some(Ipv4Addr::new(100, 64, 2, 2)));
        let bytes = encode_request(RouteNetlinkMessage::NewRule(rule), change_flags(0), 7);
        let mut expected = header(60, 32, NLM_F_REQUEST | 0x0004);
        expected.extend([2, 0, 32, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        expected.extend(attribute(2, [100, 64, 2, 2])); // FRA_SRC
        expected.extend(attribute(15, 254u32.to_ne_bytes())); // FRA_TABLE main
        expected.extend(attribute(6, 7401u32.to_ne_bytes())); // FRA_PRIORITY
        expected.extend(attribute(14, 0u32.to_ne_bytes())); // FRA_SUPPRESS_PREFIXLEN 0
        assert_eq!(bytes, expected);
        // Without a source: every packet's lookup.
        let rule = main_without_default_rule(32764, None);
        let bytes = encode_request(RouteNetlinkMessage::NewRule(rule), change_flags(0), 7);
        assert_eq!(bytes.len(), 16 + 12 + 3 * 8);
        assert_eq!(bytes[16 + 2], 0, "no source prefix");
    }

    #[test]
    fn a_rule_removal_names_only_the_priority() {
        let bytes = encode_request(
            RouteNetlinkMessage::DelRule(rule_at(7400)),
            change_flags(0),
            7,
        );
        // RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK.
        let mut expected = header(36, 33, NLM_F_REQUEST | 0x0004);
        expected.extend([2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend(attribute(6, 7400u32.to_ne_bytes())); // FRA_PRIORITY
        assert_eq!(bytes, expected);
    }

    #[test]
    fn a_route_belongs_to_its_rta_table_else_to_its_header_table() {
        let route = default_route(7401, Ipv4Addr::new(100, 64, 2, 1), 5);
        assert_eq!(table_of(&route), 7401);
        let mut main = RouteMessage::default();
        main.header.table = RouteHeader::RT_TABLE_MAIN;
        assert_eq!(table_of(&main), 254);
    }
}
