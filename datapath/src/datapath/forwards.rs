//! Inbound port forwards (`[[forward]]`): which (uplink, protocol, external port) leads to which LAN
//! host and port, as the datapath reads it from the snapshot.
//!
//! Invariants:
//! - a rule belongs to one uplink slot; a forward on several uplinks is one rule per slot;
//! - external port ranges of two rules of one slot and protocol never overlap (validated), so the
//!   first match is the only match;
//! - a rule opens flows only while its uplink is open to new flows ([`ForwardTable::open`]: gateway
//!   resolved, healthy, not drained): a forward on a dead uplink is unreachable, nothing moves;
//! - looking a rule up reads a short vector and allocates nothing (first packets only).

use std::net::Ipv4Addr;

use flowpin_nat::IpProtocol;

/// One forward on one uplink: `protocol` to the uplink's address, ports `first..=last`, goes to
/// `to`, port `to_first + (port - first)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardRule {
    /// The index of the `[[forward]]` in the configuration (kept in the flow record).
    pub index: u8,
    /// The uplink slot whose address the forward listens on.
    pub slot: u8,
    /// TCP or UDP.
    pub protocol: IpProtocol,
    /// First external port, inclusive.
    pub first: u16,
    /// Last external port, inclusive.
    pub last: u16,
    /// The LAN host.
    pub to: Ipv4Addr,
    /// The LAN port of `first`; the range keeps its offsets.
    pub to_first: u16,
}

impl ForwardRule {
    /// The LAN endpoint of external port `port`, if the rule covers it.
    #[inline]
    pub fn target(&self, port: u16) -> Option<(Ipv4Addr, u16)> {
        (self.first..=self.last)
            .contains(&port)
            .then(|| (self.to, self.to_first.wrapping_add(port - self.first)))
    }
}

/// Every forward of the running configuration, and which uplinks may open forwarded flows now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardTable {
    rules: Vec<ForwardRule>,
    /// Bit `slot` set: uplink `slot` takes new flows.
    open_slots: u32,
}

impl ForwardTable {
    /// A table of `rules`; `open_slots` has bit `slot` set for every uplink open to new flows.
    pub fn new(rules: Vec<ForwardRule>, open_slots: u32) -> Self {
        Self { rules, open_slots }
    }

    /// Every rule, open uplink or not.
    pub fn rules(&self) -> &[ForwardRule] {
        &self.rules
    }

    /// Whether uplink `slot` may open forwarded flows now.
    #[inline]
    pub fn open(&self, slot: u8) -> bool {
        slot < 32 && self.open_slots & (1 << slot) != 0
    }

    /// The rule covering `protocol` port `port` on uplink `slot`, whether or not the uplink is open.
    #[inline]
    pub fn find(&self, slot: u8, protocol: IpProtocol, port: u16) -> Option<&ForwardRule> {
        self.rules.iter().find(|rule| {
            rule.slot == slot && rule.protocol == protocol && rule.target(port).is_some()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(slot: u8, first: u16, last: u16, to_first: u16) -> ForwardRule {
        ForwardRule {
            index: 0,
            slot,
            protocol: IpProtocol::Tcp,
            first,
            last,
            to: Ipv4Addr::new(10, 0, 0, 5),
            to_first,
        }
    }

    #[test]
    fn a_range_keeps_its_offsets() {
        let r = rule(0, 8000, 8009, 9000);
        assert_eq!(r.target(8000), Some((Ipv4Addr::new(10, 0, 0, 5), 9000)));
        assert_eq!(r.target(8009), Some((Ipv4Addr::new(10, 0, 0, 5), 9009)));
        assert_eq!(r.target(8010), None);
        assert_eq!(r.target(7999), None);
    }

    #[test]
    fn find_matches_slot_protocol_and_port_and_open_reads_the_mask() {
        let table = ForwardTable::new(vec![rule(0, 80, 80, 8080), rule(1, 443, 443, 443)], 0b10);
        assert!(table.find(0, IpProtocol::Tcp, 80).is_some());
        assert!(table.find(1, IpProtocol::Tcp, 80).is_none());
        assert!(table.find(0, IpProtocol::Udp, 80).is_none());
        assert!(table.find(1, IpProtocol::Tcp, 443).is_some());
        assert!(!table.open(0));
        assert!(table.open(1));
        assert!(!table.open(40));
    }
}
