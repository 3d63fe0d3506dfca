//! The first packet of a forwarded flow: an inbound packet to a `[[forward]]` of the uplink it
//! arrived on opens a flow pinned to that uplink, DNATed to the forward's LAN host and port.
//!
//! Invariants:
//! - only a packet to the ingress uplink's own address and a forwarded (protocol, port) of *that*
//!   uplink opens one; TCP only with a SYN without ACK, UDP with any packet;
//! - the flow is [`FlowKind::Outbound`] pinned to the ingress uplink: the LAN host's replies leave
//!   by that uplink with its address, whatever weights and policies say (split access);
//! - the LAN host sees the remote's real address; its port too, unless another flow of the same LAN
//!   host and port already uses that remote endpoint (the same remote through two uplinks): then a
//!   derived port stands in for it, as the kernel's NAT does on a clash;
//! - an uplink closed to new flows opens nothing (`forward_uplink_closed`); the flow counts against
//!   the LAN host's share of the table and stays unconfirmed (early-droppable) until it answers.

use flowpin_flowtable::Side;
use flowpin_nat::{FlowKey, ParsedFrame, Rewrite, Transport};

use super::{Hit, Pipeline};
use crate::datapath::counters::DropReason;
use crate::datapath::forwards::ForwardRule;
use crate::datapath::record::{FlowKind, FlowValue, Placement};

/// How many remote ports a forwarded flow tries on its LAN side before giving up on a clash.
const CLASH_TRIES: u16 = 8;

impl Pipeline<'_> {
    /// The forward an inbound packet is addressed to, if any, with the slot of the uplink whose
    /// address it is (several uplinks may share the ingress interface).
    #[inline]
    pub(super) fn forward_of(&self, parsed: &ParsedFrame) -> Option<(u8, &ForwardRule)> {
        let key = parsed.key;
        if matches!(parsed.transport, Transport::IcmpError(_)) {
            return None;
        }
        let (slot, _) = self.snapshot.uplink_addressed(key.destination)?;
        self.snapshot
            .forwards
            .find(slot, key.protocol, key.destination_port)
            .map(|rule| (slot, rule))
    }

    /// Opens the flow of an inbound first packet to `rule` on uplink `slot`. In outline:
    /// 1. the uplink must take new flows, and a TCP segment must be a SYN without ACK;
    /// 2. the LAN host's MAC must be known;
    /// 3. the flow is pinned under the remote's own port, or a derived one on a clash.
    pub(super) fn open_forwarded(
        &self,
        slot: u8,
        rule: &ForwardRule,
        parsed: &ParsedFrame,
    ) -> Result<Hit, DropReason> {
        if !self.snapshot.forwards.open(slot) {
            return Err(DropReason::ForwardUplinkClosed);
        }
        if let Transport::Tcp(segment) = parsed.transport
            && (!segment.flags.syn() || segment.flags.ack())
        {
            return Err(DropReason::UnsolicitedInbound);
        }
        let key = parsed.key;
        let (to, to_port) = rule
            .target(key.destination_port)
            .ok_or(DropReason::UnsolicitedInbound)?;
        let lan_host_mac = self
            .snapshot
            .lan_neighbour(to)
            .ok_or(DropReason::InboundNeighbourUnknown)?;
        let translated = key.reversed();
        for attempt in 0..CLASH_TRIES {
            let lan_key = FlowKey {
                protocol: key.protocol,
                source: to,
                source_port: to_port,
                destination: key.source,
                destination_port: stand_in_port(key.source_port, attempt),
            };
            let lan_side =
                Rewrite::new(lan_key, translated).map_err(|_| DropReason::UnsolicitedInbound)?;
            let value = FlowValue {
                placement: Placement::Forwarded,
                ..FlowValue::new(
                    lan_side,
                    lan_host_mac,
                    slot,
                    rule.index,
                    FlowKind::Outbound,
                    self.snapshot.generation,
                )
            };
            match self.pin(value, || {}) {
                Err(DropReason::FlowKeyClash) => continue,
                Err(other) => return Err(other),
                // Another flow holds this LAN-side key (the same remote through another uplink).
                Ok((hit, false)) if hit.value.uplink_key() != value.uplink_key() => continue,
                Ok((hit, inserted)) => {
                    if inserted {
                        let counters = &self.counters.uplinks[usize::from(slot)];
                        counters.flows_created.add(1);
                        counters.forwarded_flows_created.add(1);
                    }
                    // The caller matched this packet's key, which is the flow's uplink-side key.
                    return Ok(Hit {
                        side: Side::Uplink,
                        ..hit
                    });
                }
            }
        }
        Err(DropReason::FlowKeyClash)
    }
}

/// The remote port the LAN host sees on try `attempt`: the real one first, then ports spread over
/// 1024-65535 by a fixed odd step (deterministic, so every worker derives the same sequence).
#[inline]
fn stand_in_port(port: u16, attempt: u16) -> u16 {
    if attempt == 0 {
        return port;
    }
    let spread = u32::from(port) + u32::from(attempt) * 40_503;
    1024 + (spread % 64_512) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stand_in_is_the_real_port_and_the_others_differ_and_are_unprivileged() {
        assert_eq!(stand_in_port(40000, 0), 40000);
        let others: Vec<u16> = (1..CLASH_TRIES).map(|a| stand_in_port(40000, a)).collect();
        assert!(others.iter().all(|&p| p >= 1024 && p != 40000));
        let mut unique = others.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), others.len());
    }
}
