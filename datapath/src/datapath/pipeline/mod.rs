//! The sans-IO per-frame pipeline: parse → flow lookup → (first packet: policy → uplink → port →
//! insert) → rewrite → verdict.
//!
//! [`Pipeline::process`] is a pure function of (frame bytes, ingress port, `now`, snapshot, shared flow
//! state): no syscalls, clocks, allocation, locks or logging. Invariants it keeps:
//! - a frame leaves on an uplink only after the rewrite of a flow pinned to *that* uplink set its source
//!   to that uplink's address (nothing un-NATed, never another uplink's address);
//! - only a packet arriving from the LAN, from a LAN prefix, creates a flow; inbound packets without a
//!   flow are dropped and create nothing, except a first packet to a port forward of the uplink it
//!   arrived on (`forwarded`), which opens a flow pinned to that uplink;
//! - every frame not transmitted is counted under exactly one [`DropReason`];
//! - a full flow table makes room by early-dropping unconfirmed flows (not yet seen both ways,
//!   [`Flows::early_drop`]); when every flow it looks at is confirmed it refuses the new flow
//!   (`flow_table_full`): a confirmed flow is never evicted;
//! - viability guard: a new LAN flow that no uplink can take is dropped (`no_uplink`) and, within the
//!   worker's token bucket ([`Snapshot::net_unreachable`]), answered in place with an ICMP net unreachable
//!   to the host; nothing is evicted for it;
//! - a packet from an uplink too big for the LAN with DF set is answered with an ICMP fragmentation
//!   needed from that uplink's address, out of that uplink, within its own token bucket
//!   ([`Snapshot::frag_needed_to_uplink`]); it never carries another uplink's address; a LAN packet
//!   too big for its egress with DF set is answered to its host within another
//!   ([`Snapshot::frag_needed_to_lan`]);
//! - a new LAN flow from the router's own LAN address or a LAN prefix's network or broadcast address
//!   is dropped (`lan_reserved_source`) and creates nothing;
//! - a new LAN flow that gets no external port (range exhausted, host over its fair share or hard
//!   quota, host table full) is dropped under its NAT reason and, within its own token bucket
//!   ([`Snapshot::port_exhausted_icmp`]), answered with
//!   an ICMP administratively prohibited (3/13); nothing is evicted for it either;
//! - MSS clamping: a TCP SYN (or SYN-ACK) leaving through an uplink, or entering through it, announces
//!   at most that uplink's clamp ([`UplinkView::mss_clamp`](crate::datapath::UplinkView)), counted as
//!   `mss_clamped`; the check costs non-SYN packets one flag test;
//! - IPv4 fragments (`fragment_path`): a first fragment is translated like a whole packet and
//!   records the route of its datagram in the worker's [`Fragments`]; a later fragment follows that
//!   route (addresses only) or is held until its first comes, never forwarded un-translated; a
//!   fragment of an unknown datagram creates nothing;
//! - passive health signal: a new outbound TCP flow opened by a SYN counts as a handshake started on its
//!   uplink, and the first SYN-ACK that moves its tracker from "SYN sent" to established as answered
//!   (two workers racing on one retransmitted SYN-ACK may both count it: a rare overcount of answers).
//!
//! This file holds the path of a frame with a flow; `batch` the two-stage batch, `new_flow` a first
//! packet's placement and insertion, `answers` the ICMP answers sent instead of forwarding.

use std::cell::RefCell;

use flowpin_flowtable::{FlowHandle, Found, Side};
use flowpin_nat::{
    AllocError, Classified, Direction, FlowKey, IpProtocol, MacPair, MssClamp, ParsedFrame,
    Rewrite, TcpPhase, Transport, clamp_mss, classify_frame, icmp_error_flow_key,
    translate_icmp_error,
};

use crate::datapath::counters::{DatapathCounters, DropReason};
use crate::datapath::flows::Flows;
use crate::datapath::fragments::Fragments;
use crate::datapath::record::{FlowKind, FlowValue, Placement};
use crate::datapath::snapshot::Snapshot;
use crate::datapath::verdict::{PortId, Verdict};

mod answers;
mod batch;
mod forwarded;
mod fragment_path;
mod new_flow;

pub use batch::{BATCH, PreparedBatch};

/// Everything one batch's frames are processed against: read once per batch.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline<'a> {
    /// `now` in ms, read once per batch.
    pub now_ms: u64,
    /// The control plane's snapshot, loaded once per batch.
    pub snapshot: &'a Snapshot,
    /// The shared flow state.
    pub flows: &'a Flows,
    /// This worker's counters.
    pub counters: &'a DatapathCounters,
    /// This worker's IPv4 fragment state (borrowed by this worker alone).
    pub fragments: &'a RefCell<Fragments>,
}

/// A flow found or created for a frame, with the side its key matched.
struct Hit {
    handle: FlowHandle,
    side: Side,
    value: FlowValue,
}

impl From<Found<FlowValue>> for Hit {
    fn from(f: Found<FlowValue>) -> Self {
        Hit {
            handle: f.handle,
            side: f.side,
            value: f.value,
        }
    }
}

impl Pipeline<'_> {
    /// Processes one frame received on `ingress` on its own (parse, look up, decide); the same result as
    /// a batch of one.
    pub fn process(&self, ingress: PortId, frame: &mut [u8], len: usize) -> Verdict {
        let len = len.min(frame.len());
        let classified = classify_frame(&frame[..len]).map_err(DropReason::Malformed);
        let found = match &classified {
            Ok(Classified::Packet(p)) => {
                let key = icmp_error_flow_key(p).unwrap_or(p.key);
                self.flows.table.lookup(&key)
            }
            _ => None,
        };
        self.finish(ingress, frame, len, classified, found)
    }

    fn finish(
        &self,
        ingress: PortId,
        frame: &mut [u8],
        len: usize,
        classified: Result<Classified, DropReason>,
        found: Option<Found<FlowValue>>,
    ) -> Verdict {
        self.counters.frames.add(1);
        let len = len.min(frame.len());
        let verdict = classified
            .and_then(|classified| match classified {
                Classified::Packet(parsed) => {
                    let found = found.map(Hit::from);
                    match ingress.uplink_slot() {
                        None => self.arrived_on_lan(frame, len, &parsed, found),
                        Some(_) => self.arrived_on_uplink(frame, len, &parsed, found),
                    }
                }
                Classified::LaterFragment(view) => self.later_fragment(ingress, frame, &view),
            })
            .unwrap_or_else(Verdict::Drop);
        self.count_verdict(verdict);
        verdict
    }

    /// Counts a verdict: a drop under its reason, a transmit verdict as forwarded (the worker takes
    /// it back off the count if the egress refuses it, `DatapathCounters::count_tx_refused`); a held
    /// fragment is counted when it is released or expires.
    #[inline]
    fn count_verdict(&self, verdict: Verdict) {
        match verdict {
            Verdict::Drop(reason) => self.counters.count_drop(reason),
            Verdict::Transmit { .. } => self.counters.forwarded.add(1),
            Verdict::Held => {}
        }
    }

    fn arrived_on_lan(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        found: Option<Hit>,
    ) -> Result<Verdict, DropReason> {
        if !self.snapshot.lan.owns(parsed.key.source) {
            return Err(DropReason::SpoofedSource);
        }
        let hit = match found {
            Some(hit) if hit.side == Side::Lan => hit,
            // A hairpin flow's reply comes from the LAN with the flow's second key.
            Some(hit) if hit.value.kind == FlowKind::Hairpin => {
                return self.forward_uplink_side(PortId::LAN, frame, len, parsed, &hit);
            }
            Some(_) => return Err(DropReason::WrongDirection),
            None => match self.new_flow(frame, parsed) {
                Ok(hit) => hit,
                Err(DropReason::NoUplink) => return self.no_uplink(frame, len, parsed),
                Err(DropReason::NatAllocation(error))
                    if error != AllocError::ReferencesExhausted =>
                {
                    return self.port_exhausted(frame, len, parsed, error);
                }
                Err(reason) => return Err(reason),
            },
        };
        self.forward_lan_side(frame, len, parsed, &hit)
    }

    /// A frame from an uplink interface. Several uplinks may share the interface, so the uplink it
    /// came in by is the one it is addressed to: its flow's, or (no flow) the uplink whose address
    /// is its destination (the XDP program only redirects traffic to an address of an uplink on the
    /// ingress interface).
    fn arrived_on_uplink(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        found: Option<Hit>,
    ) -> Result<Verdict, DropReason> {
        match found {
            Some(hit) if hit.side == Side::Uplink && hit.value.kind == FlowKind::Outbound => {
                let ingress = PortId::uplink(hit.value.uplink);
                self.forward_uplink_side(ingress, frame, len, parsed, &hit)
            }
            Some(_) => Err(DropReason::WrongDirection),
            None if matches!(parsed.transport, Transport::IcmpError(_)) => {
                Err(DropReason::IcmpErrorWithoutFlow)
            }
            None => {
                let hit = match self.forward_of(parsed) {
                    Some((slot, rule)) => self.open_forwarded(slot, rule, parsed)?,
                    None => self.admit_inbound(parsed)?,
                };
                let ingress = PortId::uplink(hit.value.uplink);
                self.forward_uplink_side(ingress, frame, len, parsed, &hit)
            }
        }
    }

    /// An inbound TCP/UDP packet that belongs to no flow. With endpoint-independent filtering (RFC 4787
    /// REQ-8, RFC 5382) it opens a flow when its destination is a live mapping of an internal endpoint
    /// of the uplink owning that address; otherwise (the default) it is unsolicited and creates nothing.
    fn admit_inbound(&self, parsed: &ParsedFrame) -> Result<Hit, DropReason> {
        let key = parsed.key;
        if !self.snapshot.endpoint_independent_filtering || key.protocol == IpProtocol::Icmp {
            return Err(DropReason::UnsolicitedInbound);
        }
        let (slot, uplink) = self
            .snapshot
            .uplink_addressed(key.destination)
            .ok_or(DropReason::UnsolicitedInbound)?;
        let pool = uplink.nat.pool(key.protocol);
        let (internal, internal_port) = pool
            .owner_of(key.destination_port)
            .ok_or(DropReason::UnsolicitedInbound)?;
        let lan_host_mac = self
            .snapshot
            .lan_neighbour(internal)
            .ok_or(DropReason::InboundNeighbourUnknown)?;
        // One more reference on the existing mapping (EIM returns the same external port).
        let external_port = pool
            .acquire(internal, internal_port, self.now_ms)
            .map_err(DropReason::NatAllocation)?;
        let release = || {
            let _ = pool.release(external_port, internal, internal_port, self.now_ms);
        };
        if external_port != key.destination_port {
            release();
            return Err(DropReason::UnsolicitedInbound);
        }
        let lan_key = FlowKey {
            protocol: key.protocol,
            source: internal,
            source_port: internal_port,
            destination: key.source,
            destination_port: key.source_port,
        };
        let Ok(lan_side) = Rewrite::new(lan_key, key.reversed()) else {
            release();
            return Err(DropReason::UnsolicitedInbound);
        };
        let value = FlowValue {
            placement: Placement::OpenedFromOutside,
            ..FlowValue::new(
                lan_side,
                lan_host_mac,
                slot,
                u8::MAX,
                FlowKind::Outbound,
                self.snapshot.generation,
            )
        };
        let (hit, _) = self.pin(value, release)?;
        // The caller matched this packet's key, which is the flow's uplink-side key.
        Ok(Hit {
            side: Side::Uplink,
            ..hit
        })
    }

    /// LAN-side packet of a flow: translate and send out of the flow's uplink (or, hairpinned, back to
    /// the LAN).
    fn forward_lan_side(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        hit: &Hit,
    ) -> Result<Verdict, DropReason> {
        let v = &hit.value;
        let (macs, port, mtu, mss_clamp) = match v.kind {
            FlowKind::Outbound => {
                let uplink = self
                    .snapshot
                    .uplink(v.uplink)
                    .ok_or(DropReason::UplinkGone)?;
                let gateway = uplink.gateway_mac.ok_or(DropReason::GatewayUnresolved)?;
                (
                    MacPair {
                        source: uplink.mac,
                        destination: gateway,
                    },
                    PortId::uplink(v.uplink),
                    uplink.mtu,
                    uplink.mss_clamp,
                )
            }
            FlowKind::Hairpin => (
                MacPair {
                    source: self.snapshot.lan.mac,
                    destination: v.peer_mac,
                },
                PortId::LAN,
                self.snapshot.lan.mtu,
                None,
            ),
        };
        if parsed.ip_total_len > mtu {
            return self.too_big(frame, len, parsed, mtu);
        }
        translate(frame, parsed, &v.lan_side, macs)?;
        if parsed.first_fragment_ident.is_some() {
            self.record_fragment_route(frame, parsed, PortId::LAN, port);
        }
        if let Some(limit) = mss_clamp.filter(|_| is_syn(parsed)) {
            self.clamp_mss(frame, parsed, limit, v.uplink);
        }
        Ok(self.account(hit, parsed, Side::Lan, port))
    }

    /// Uplink-side packet of a flow (arrived on `ingress`: an uplink, or the LAN for a hairpin flow's
    /// reply): reverse-translate and deliver to the LAN host.
    fn forward_uplink_side(
        &self,
        ingress: PortId,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        hit: &Hit,
    ) -> Result<Verdict, DropReason> {
        let v = &hit.value;
        let macs = MacPair {
            source: self.snapshot.lan.mac,
            destination: v.lan_host_mac,
        };
        let mtu = self.snapshot.lan.mtu;
        if parsed.ip_total_len > mtu {
            return match ingress.uplink_slot() {
                Some(slot) => self.too_big_from_uplink(slot, frame, len, parsed, mtu),
                None => self.too_big(frame, len, parsed, mtu),
            };
        }
        translate(frame, parsed, &v.uplink_side, macs)?;
        if parsed.first_fragment_ident.is_some() {
            self.record_fragment_route(frame, parsed, ingress, PortId::LAN);
        }
        if v.kind == FlowKind::Outbound && is_syn(parsed) {
            let limit = self.snapshot.uplink(v.uplink).and_then(|u| u.mss_clamp);
            if let Some(limit) = limit {
                self.clamp_mss(frame, parsed, limit, v.uplink);
            }
        }
        Ok(self.account(hit, parsed, Side::Uplink, PortId::LAN))
    }

    /// Lowers a translated SYN's (or SYN-ACK's) MSS to `limit`, counted on uplink `slot`.
    #[inline]
    fn clamp_mss(&self, frame: &mut [u8], parsed: &ParsedFrame, limit: u16, slot: u8) {
        if clamp_mss(frame, parsed, limit) != MssClamp::Unchanged {
            self.counters.uplinks[usize::from(slot)].mss_clamped.add(1);
        }
    }

    /// After a successful translation of a packet that arrived on `side`: the flow's counters and
    /// protocol state, the uplink's counters, and the verdict to send it out of `egress`.
    #[inline]
    fn account(&self, hit: &Hit, parsed: &ParsedFrame, side: Side, egress: PortId) -> Verdict {
        let bytes = u64::from(parsed.ip_total_len);
        self.flows
            .table
            .record_packet(hit.handle, side, bytes, self.now_ms);
        let direction = match side {
            Side::Lan => Direction::Outbound,
            Side::Uplink => Direction::Inbound,
        };
        self.track(hit, parsed, direction);
        match (hit.value.kind, side) {
            (FlowKind::Outbound, Side::Lan) => {
                let c = &self.counters.uplinks[usize::from(hit.value.uplink)];
                c.tx_packets.add(1);
                c.tx_bytes.add(bytes);
            }
            (FlowKind::Outbound, Side::Uplink) => {
                let c = &self.counters.uplinks[usize::from(hit.value.uplink)];
                c.rx_packets.add(1);
                c.rx_bytes.add(bytes);
            }
            (FlowKind::Hairpin, _) => self.counters.hairpinned.add(1),
        }
        Verdict::Transmit {
            port: egress,
            len: parsed.ip_end(),
        }
    }

    /// Protocol state after a translated packet: the TCP tracker, or the outbound refresh stamp.
    #[inline]
    fn track(&self, hit: &Hit, parsed: &ParsedFrame, direction: Direction) {
        match parsed.transport {
            Transport::Tcp(segment) => {
                if let Some(tracker) = self.flows.tracker(hit.handle) {
                    let syn_ack = direction == Direction::Inbound
                        && segment.flags.syn()
                        && segment.flags.ack();
                    let before = syn_ack.then(|| {
                        TcpPhase::from_phase_word(
                            tracker
                                .phase_word
                                .load(std::sync::atomic::Ordering::Acquire),
                        )
                    });
                    let after = tracker.observe(direction, &segment);
                    if before == Some(TcpPhase::SynOut)
                        && after == TcpPhase::Established
                        && hit.value.kind == FlowKind::Outbound
                    {
                        self.counters.uplinks[usize::from(hit.value.uplink)]
                            .tcp_handshakes_answered
                            .add(1);
                    }
                    let word = tracker
                        .phase_word
                        .load(std::sync::atomic::Ordering::Acquire);
                    self.flows.publish_tcp_phase(hit.handle, word);
                }
            }
            Transport::Udp { .. } | Transport::IcmpQuery { .. } => {
                if direction == Direction::Outbound {
                    self.flows.stamp_outbound(hit.handle, self.now_ms);
                } else {
                    self.flows.mark_replied(hit.handle);
                }
            }
            Transport::IcmpError(_) => {}
        }
    }
}

/// Whether `parsed` is a TCP segment with SYN set.
#[inline]
fn is_syn(parsed: &ParsedFrame) -> bool {
    matches!(parsed.transport, Transport::Tcp(segment) if segment.flags.syn())
}

fn translate(
    frame: &mut [u8],
    parsed: &ParsedFrame,
    rewrite: &Rewrite,
    macs: MacPair,
) -> Result<(), DropReason> {
    let result = match parsed.transport {
        Transport::IcmpError(_) => translate_icmp_error(frame, parsed, rewrite, macs),
        _ => rewrite.apply(frame, parsed, macs),
    };
    result.map_err(DropReason::Translate)
}
