//! The first packet of a flow: its uplink (policy, stickiness, a live mapping), its external port,
//! and its insertion under both keys.

use flowpin_flowtable::{InsertError, Insertion, Side};
use flowpin_nat::{FlowKey, IpProtocol, ParsedFrame, Rewrite, Transport};

use super::{Hit, Pipeline};
use crate::datapath::counters::DropReason;
use crate::datapath::flow_share::ShareRefusal;
use crate::datapath::flows::host_of;
use crate::datapath::record::{FlowKind, FlowValue, Mac, Placement};
use crate::select::Decision;

const ECHO_REQUEST: u8 = 8;

impl Pipeline<'_> {
    /// The external port of a new flow on uplink `slot`; when the host is refused there for its share
    /// (its fair share of a pool under pressure, or its hard quota), the first other member of the
    /// group that takes it, counted as a spill. Any other refusal, or a refusal everywhere, is the
    /// chosen uplink's. Returns the uplink, what placed the flow there and the port.
    fn external_port(
        &self,
        key: &FlowKey,
        slot: u8,
        placement: Placement,
        decision: &Decision,
    ) -> Result<(u8, Placement, u16), DropReason> {
        let acquire = |slot: u8| {
            let uplink = self.snapshot.uplink(slot).ok_or(DropReason::UplinkGone)?;
            uplink
                .nat
                .pool(key.protocol)
                .acquire(key.source, key.source_port, self.now_ms)
                .map_err(DropReason::NatAllocation)
        };
        let refused = match acquire(slot) {
            Ok(port) => return Ok((slot, placement, port)),
            Err(refused @ DropReason::NatAllocation(error)) if error.is_share_refusal() => refused,
            Err(other) => return Err(other),
        };
        let others = self.snapshot.policy.group(decision.group).members();
        for other in others.filter_map(|member| u8::try_from(member).ok()) {
            if other != slot
                && let Ok(port) = acquire(other)
            {
                self.counters.flows_spilled.add(1);
                return Ok((other, Placement::SpilledOverShare, port));
            }
        }
        Err(refused)
    }

    /// The first packet of a flow from the LAN: policy → uplink → external port → insert.
    pub(super) fn new_flow(&self, frame: &[u8], parsed: &ParsedFrame) -> Result<Hit, DropReason> {
        match parsed.transport {
            Transport::IcmpError(_) => return Err(DropReason::IcmpErrorWithoutFlow),
            // Only an echo request opens an ICMP query flow; a stray reply from the LAN opens nothing.
            Transport::IcmpQuery { message_type } if message_type != ECHO_REQUEST => {
                return Err(DropReason::UnsolicitedInbound);
            }
            _ => {}
        }
        let key = parsed.key;
        if self.snapshot.lan.is_reserved_source(key.source) {
            return Err(DropReason::LanReservedSource);
        }
        if key.destination == self.snapshot.lan.address {
            return Err(DropReason::AddressedToRouter);
        }
        let lan_host_mac = source_mac(frame);
        if let Some(slot) = self.snapshot.uplink_with_address(key.destination) {
            return self.new_hairpin_flow(parsed, slot, lan_host_mac);
        }
        let decision = self.snapshot.policy.decide(&key, dscp(frame, parsed));
        let (slot, placement) = self.snapshot.new_flow_uplink(&key, &decision)?;
        let policy = match decision.group {
            crate::select::GroupId::Policy(i) => u8::try_from(i).unwrap_or(u8::MAX - 1),
            crate::select::GroupId::Default => u8::MAX,
        };
        let (slot, placement, external_port) =
            self.external_port(&key, slot, placement, &decision)?;
        let uplink = self.snapshot.uplink(slot).ok_or(DropReason::UplinkGone)?;
        let pool = uplink.nat.pool(key.protocol);
        let translated = FlowKey {
            source: uplink.address,
            source_port: external_port,
            destination_port: if key.protocol == IpProtocol::Icmp {
                external_port
            } else {
                key.destination_port
            },
            ..key
        };
        let release = || {
            let _ = pool.release(external_port, key.source, key.source_port, self.now_ms);
        };
        let Ok(lan_side) = Rewrite::new(key, translated) else {
            release();
            return Err(DropReason::Malformed(
                flowpin_nat::ParseError::IcmpUnsupportedType,
            ));
        };
        let value = FlowValue {
            placement,
            ..FlowValue::new(
                lan_side,
                lan_host_mac,
                slot,
                policy,
                FlowKind::Outbound,
                self.snapshot.generation,
            )
        };
        let (hit, inserted) = self.pin(value, release)?;
        if inserted {
            let counters = &self.counters.uplinks[usize::from(slot)];
            counters.flows_created.add(1);
            if let Transport::Tcp(segment) = parsed.transport
                && segment.flags.syn()
                && !segment.flags.ack()
            {
                counters.tcp_handshakes_started.add(1);
            }
        }
        Ok(hit)
    }

    /// A LAN host sending to an external endpoint of the router (hairpinning, RFC 4787 REQ-9 / RFC 5382
    /// REQ-8): the target LAN host must see the sender's external endpoint as the source. The target
    /// is a port forward of the uplink whose address was addressed (the forward's LAN host and port),
    /// else the LAN endpoint holding that external port's mapping.
    fn new_hairpin_flow(
        &self,
        parsed: &ParsedFrame,
        target_slot: u8,
        lan_host_mac: Mac,
    ) -> Result<Hit, DropReason> {
        let key = parsed.key;
        let target_uplink = self
            .snapshot
            .uplink(target_slot)
            .ok_or(DropReason::UplinkGone)?;
        // A forward of the target uplink (while it takes new flows), else an internal endpoint's
        // mapping on it.
        let forwarded = (self.snapshot.forwards)
            .find(target_slot, key.protocol, key.destination_port)
            .filter(|_| self.snapshot.forwards.open(target_slot))
            .and_then(|rule| rule.target(key.destination_port));
        let (target_ip, target_port) = forwarded
            .or_else(|| {
                (target_uplink.nat)
                    .pool(key.protocol)
                    .owner_of(key.destination_port)
            })
            .ok_or(DropReason::HairpinWithoutMapping)?;
        let peer_mac = self
            .snapshot
            .lan_neighbour(target_ip)
            .ok_or(DropReason::HairpinNeighbourUnknown)?;
        // The sender's own external endpoint: its mapping on the uplink its endpoint is pinned to.
        let (slot, _) = self
            .snapshot
            .new_flow_uplink(&key, &self.snapshot.policy.decide(&key, 0))?;
        let uplink = self.snapshot.uplink(slot).ok_or(DropReason::UplinkGone)?;
        let pool = uplink.nat.pool(key.protocol);
        let external_port = pool
            .acquire(key.source, key.source_port, self.now_ms)
            .map_err(DropReason::NatAllocation)?;
        let translated = FlowKey {
            protocol: key.protocol,
            source: uplink.address,
            source_port: external_port,
            destination: target_ip,
            destination_port: target_port,
        };
        let release = || {
            let _ = pool.release(external_port, key.source, key.source_port, self.now_ms);
        };
        let Ok(lan_side) = Rewrite::new(key, translated) else {
            release();
            return Err(DropReason::HairpinWithoutMapping);
        };
        let value = FlowValue {
            peer_mac,
            ..FlowValue::new(
                lan_side,
                lan_host_mac,
                slot,
                u8::MAX,
                FlowKind::Hairpin,
                self.snapshot.generation,
            )
        };
        Ok(self.pin(value, release)?.0)
    }

    /// Pins a new flow: inserts it under both keys. `release` gives back the port reference taken for
    /// it; it runs when the insert fails, and when another worker's first packet of the same flow won
    /// the race (its flow is adopted). Returns the flow and whether this call created it.
    pub(super) fn pin(
        &self,
        value: FlowValue,
        release: impl Fn(),
    ) -> Result<(Hit, bool), DropReason> {
        let (hit, inserted) = self.insert(value).inspect_err(|_| release())?;
        if !inserted {
            release();
        }
        Ok((hit, inserted))
    }

    /// Inserts a new flow under both keys; `(hit, true)` if this call created it, `(winner, false)` if
    /// another worker's first packet of the same flow won the race. In outline:
    /// 1. the flow's LAN host takes its count: under its fair share of a table under pressure, or
    ///    in place of its own unconfirmed flows ([`Self::take_flow_share`]);
    /// 2. the flow is inserted, a full table making room by early drop ([`Self::insert_with_room`]);
    /// 3. a flow this call did not create gives its host's count back.
    fn insert(&self, value: FlowValue) -> Result<(Hit, bool), DropReason> {
        let host = host_of(&value);
        self.take_flow_share(host)?;
        let inserted = self.insert_with_room(value);
        if !matches!(inserted, Ok((_, true))) {
            self.flows.hosts.give(host);
        }
        inserted
    }

    /// Counts a new flow of `host` against its share of the table ([`crate::datapath::flow_share`]).
    /// A host over its share of a table under pressure gives way to itself: one of its own
    /// unconfirmed flows found in one early-drop scan is removed and the new flow takes its place;
    /// with none found it is refused (`host_over_flow_share`).
    fn take_flow_share(&self, host: std::net::Ipv4Addr) -> Result<(), DropReason> {
        let table = &self.flows.table;
        let share = &self.snapshot.flow_share;
        match self
            .flows
            .hosts
            .take(host, share, table.capacity(), table.len())
        {
            Ok(()) => return Ok(()),
            Err(ShareRefusal::HostTableFull) => return Err(DropReason::FlowHostTableFull),
            Err(ShareRefusal::OverShare) => {}
        }
        let dropped = self.flows.early_drop_of_host(self.now_ms, host, |removed| {
            self.release_early_dropped(removed);
        });
        if dropped == 0 {
            return Err(DropReason::HostOverFlowShare);
        }
        self.counters.flows_early_dropped.add(dropped as u64);
        self.flows
            .hosts
            .take_in_place(host)
            .map_err(|_| DropReason::FlowHostTableFull)
    }

    /// Inserts the flow; a full table gets one early drop of unconfirmed flows (see
    /// [`Flows::early_drop`]) and one more try; with none to drop it refuses the flow
    /// (`flow_table_full`): confirmed flows are never evicted.
    fn insert_with_room(&self, value: FlowValue) -> Result<(Hit, bool), DropReason> {
        match self.try_insert(value) {
            Err(DropReason::FlowTableFull) => {
                let dropped = self.flows.early_drop(self.now_ms, |removed| {
                    self.release_early_dropped(removed);
                });
                if dropped == 0 {
                    return Err(DropReason::FlowTableFull);
                }
                self.counters.flows_early_dropped.add(dropped as u64);
                self.try_insert(value)
            }
            result => result,
        }
    }

    /// Gives an early-dropped flow's port back: at once when [`Snapshot::early_drop_unanswered`]
    /// is on, else into quarantine.
    fn release_early_dropped(&self, removed: &FlowValue) {
        if self.snapshot.early_drop_unanswered {
            self.snapshot
                .release_unanswered_mapping(removed, self.now_ms);
        } else {
            self.snapshot.release_mapping(removed, self.now_ms);
        }
    }

    fn try_insert(&self, value: FlowValue) -> Result<(Hit, bool), DropReason> {
        match self.flows.table.insert_if_absent(
            value.lan_key(),
            value.uplink_key(),
            value,
            self.now_ms,
        ) {
            Ok(Insertion::Inserted(handle)) => {
                self.flows.on_inserted(
                    handle,
                    value.protocol(),
                    !matches!(
                        value.placement,
                        Placement::OpenedFromOutside | Placement::Forwarded
                    ),
                    self.now_ms,
                );
                let hit = Hit {
                    handle,
                    side: Side::Lan,
                    value,
                };
                Ok((hit, true))
            }
            Ok(Insertion::Existing(found)) => Ok((found.into(), false)),
            Err(InsertError::Full) => Err(DropReason::FlowTableFull),
            Err(InsertError::KeyClash) => Err(DropReason::FlowKeyClash),
        }
    }
}

/// The Ethernet source address of a frame that parsed (so it is at least 14 bytes long).
fn source_mac(frame: &[u8]) -> Mac {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[6..12]);
    mac
}

/// The DSCP of a parsed IPv4 packet (the upper six bits of the TOS byte).
fn dscp(frame: &[u8], parsed: &ParsedFrame) -> u8 {
    frame[usize::from(parsed.l3_offset) + 1] >> 2
}
