//! Which rtnetlink events are worth a re-read of the kernel's tables.
//!
//! Link and address events always are. Neighbour events are many — every LAN host's ARP entry ages
//! `REACHABLE` → `STALE` → `DELAY` → `PROBE` → `REACHABLE`, each step an event — but only a few change
//! what the control plane reads: an IPv4 neighbour's usable MAC appearing, changing or going away. So
//! [`NeighbourChanges`] remembers the usable MAC (or its absence) of every IPv4 neighbour it has seen
//! and lets through only the events that change it; state churn with the same MAC is dropped.
//!
//! Invariants: when in doubt, look — an undecodable datagram, an unknown message type, the removal of
//! an entry never seen, all say "worth a look"; the memory holds at most [`MAX_REMEMBERED`] entries
//! (it is forgotten whole beyond that, and after lost events), so it cannot grow without bound.
//! Events of other families (IPv6, bridge FDB) are not worth a look: the control plane reads IPv4 only.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;

use crate::control::netinfo::Mac;
use crate::control::netinfo::entries::ipv4_neighbour;
use crate::control::netinfo::rtnetlink::messages;

/// Most IPv4 neighbours remembered (the kernel's default `gc_thresh3` is 1024 per table).
pub(crate) const MAX_REMEMBERED: usize = 64 * 1024;

/// The usable MAC (or `None`) last seen for each (interface index, IPv4 neighbour).
#[derive(Debug, Default)]
pub(crate) struct NeighbourChanges {
    seen: HashMap<(u32, Ipv4Addr), Option<Mac>>,
}

impl NeighbourChanges {
    /// Whether `datagram` (one read from the multicast socket) holds an event worth a re-read; remembers
    /// the neighbours it holds either way.
    pub(crate) fn worth_a_look(&mut self, datagram: &[u8]) -> bool {
        let mut worth = false;
        for message in messages(datagram) {
            worth |= match message.map(|m| m.payload) {
                Ok(NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m))) => {
                    match ipv4_neighbour(&m) {
                        Some(n) => self.remember((n.ifindex, n.address), n.mac),
                        None => false,
                    }
                }
                Ok(NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(m))) => {
                    match ipv4_neighbour(&m) {
                        // Gone: worth a look unless we knew it had no usable MAC anyway.
                        Some(n) => self.seen.remove(&(n.ifindex, n.address)) != Some(None),
                        None => false,
                    }
                }
                // Links, addresses, anything else, and what does not decode.
                _ => true,
            };
        }
        worth
    }

    /// Forgets every neighbour (after lost events: what is remembered may no longer be true).
    pub(crate) fn forget(&mut self) {
        self.seen.clear();
    }

    /// Records `mac` for `key`; whether that changed what was known.
    fn remember(&mut self, key: (u32, Ipv4Addr), mac: Option<Mac>) -> bool {
        if self.seen.len() >= MAX_REMEMBERED && !self.seen.contains_key(&key) {
            self.forget();
        }
        self.seen.insert(key, mac) != Some(mac)
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::neighbour::NeighbourState;

    use super::*;
    use crate::control::netinfo::test_messages as msg;

    const GW: Mac = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

    fn event(message: RouteNetlinkMessage) -> Vec<u8> {
        msg::dump_datagram(vec![message], 0, 0, false)
    }

    fn neighbour(mac: Option<Mac>, state: NeighbourState) -> RouteNetlinkMessage {
        RouteNetlinkMessage::NewNeighbour(msg::ipv4_neighbour(
            5,
            "198.51.100.1".parse().unwrap(),
            mac,
            state,
        ))
    }

    #[test]
    fn only_a_change_of_usable_mac_is_worth_a_look() {
        let mut changes = NeighbourChanges::default();
        assert!(changes.worth_a_look(&event(neighbour(None, NeighbourState::Incomplete))));
        assert!(!changes.worth_a_look(&event(neighbour(None, NeighbourState::Incomplete))));
        assert!(changes.worth_a_look(&event(neighbour(Some(GW), NeighbourState::Reachable))));
        // Ageing with the same MAC: no look.
        for state in [
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Probe,
            NeighbourState::Reachable,
        ] {
            assert!(
                !changes.worth_a_look(&event(neighbour(Some(GW), state))),
                "{state:?}"
            );
        }
        // A new MAC, then resolution failing: each worth a look.
        assert!(changes.worth_a_look(&event(neighbour(Some([1; 6]), NeighbourState::Reachable))));
        assert!(changes.worth_a_look(&event(neighbour(Some([1; 6]), NeighbourState::Failed))));
    }

    #[test]
    fn a_removal_is_worth_a_look_unless_the_entry_was_unusable() {
        let gw: Ipv4Addr = "198.51.100.1".parse().unwrap();
        let removal = || {
            event(RouteNetlinkMessage::DelNeighbour(msg::ipv4_neighbour(
                5,
                gw,
                None,
                NeighbourState::None,
            )))
        };
        let mut changes = NeighbourChanges::default();
        assert!(changes.worth_a_look(&removal()), "never seen: look");
        changes.worth_a_look(&event(neighbour(Some(GW), NeighbourState::Stale)));
        assert!(changes.worth_a_look(&removal()), "a usable MAC went away");
        changes.worth_a_look(&event(neighbour(None, NeighbourState::Failed)));
        assert!(
            !changes.worth_a_look(&removal()),
            "nothing usable went away"
        );
    }

    #[test]
    fn links_addresses_and_garbage_are_always_worth_a_look() {
        let mut changes = NeighbourChanges::default();
        let link = event(RouteNetlinkMessage::NewLink(msg::link(
            5, "wan1", GW, 1500, false,
        )));
        assert!(changes.worth_a_look(&link));
        assert!(changes.worth_a_look(&link), "every time");
        let address = event(RouteNetlinkMessage::NewAddress(msg::ipv4_address(
            5,
            "198.51.100.2".parse().unwrap(),
            29,
        )));
        assert!(changes.worth_a_look(&address));
        assert!(changes.worth_a_look(&[1, 2, 3]));
        // A burst holding one link event among neighbour churn is worth a look.
        changes.worth_a_look(&event(neighbour(Some(GW), NeighbourState::Stale)));
        let burst = [event(neighbour(Some(GW), NeighbourState::Delay)), link].concat();
        assert!(changes.worth_a_look(&burst));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut changes = NeighbourChanges::default();
        for i in 0..=MAX_REMEMBERED as u32 {
            changes.remember((1, Ipv4Addr::from(i)), Some(GW));
        }
        assert!(changes.seen.len() <= MAX_REMEMBERED);
    }
}
