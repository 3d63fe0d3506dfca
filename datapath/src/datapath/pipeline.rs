//! The sans-IO per-frame pipeline: parse → flow lookup → (first packet: policy → uplink → port →
//! insert) → rewrite → verdict.
//!
//! [`Pipeline::process`] is a pure function of (frame bytes, ingress port, `now`, snapshot, shared flow
//! state): no syscalls, clocks, allocation, locks or logging. Invariants it keeps:
//! - a frame leaves on an uplink only after the rewrite of a flow pinned to *that* uplink set its source
//!   to that uplink's address (nothing un-NATed, never another uplink's address);
//! - only a packet arriving from the LAN, from a LAN prefix, creates a flow; inbound packets without a
//!   flow are dropped and create nothing;
//! - every frame not transmitted is counted under exactly one [`DropReason`];
//! - a full flow table refuses a new flow (`flow_table_full`) and evicts nothing, unless the snapshot
//!   allows early drop of never-answered flows ([`Snapshot::early_drop_unanswered`]);
//! - viability guard: a new LAN flow that no uplink can take is dropped (`no_uplink`) and, within the
//!   worker's token bucket ([`Snapshot::net_unreachable`]), answered in place with an ICMP net unreachable
//!   to the host; nothing is evicted for it;
//! - a packet from an uplink too big for the LAN with DF set is answered with an ICMP fragmentation
//!   needed from that uplink's address, out of that uplink, within its own token bucket
//!   ([`Snapshot::frag_needed_to_uplink`]); it never carries another uplink's address;
//! - a new LAN flow that gets no external port (range exhausted, host quota reached) is dropped under
//!   its NAT reason and, within its own token bucket ([`Snapshot::port_exhausted_icmp`]), answered with
//!   an ICMP administratively prohibited (3/13); nothing is evicted for it either;
//! - passive health signal: a new outbound TCP flow opened by a SYN counts as a handshake started on its
//!   uplink, and the first SYN-ACK that moves its tracker from "SYN sent" to established as answered
//!   (two workers racing on one retransmitted SYN-ACK may both count it: a rare overcount of answers).
#![forbid(unsafe_code)]

use flowpin_flowtable::{FlowHandle, Found, InsertError, Insertion, Side};
use flowpin_nat::originate::{RouterIdentity, UnreachableKind, build_unreachable};
use flowpin_nat::{
    AllocError, Direction, FlowKey, IpProtocol, MacPair, ParseError, ParsedFrame, Rewrite,
    TcpPhase, Transport, icmp_error_flow_key, parse_frame, translate_icmp_error,
};

use super::counters::{DatapathCounters, DropReason, OwnedCounter};
use super::flows::Flows;
use super::rate_limit::{RateLimit, TokenBucket};
use super::record::{FlowKind, FlowValue, Mac, Placement};
use super::snapshot::Snapshot;
use super::verdict::{PortId, Verdict};
use crate::select::Decision;

/// The largest frame the in-place ICMP error builder quotes from (RFC 1812: at most 576 bytes of IP).
const QUOTE_BUFFER: usize = 14 + 4 + 576;

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
}

/// A worker's allowance of one kind of originated answer: its bucket, the snapshot's limit, and
/// what counts the answers the bucket refused.
struct Budget<'a> {
    bucket: &'a TokenBucket,
    limit: RateLimit,
    suppressed: &'a OwnedCounter,
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

/// The most frames one batch holds.
pub const BATCH: usize = 64;

/// A key no flow has (TCP from 0.0.0.0:0 to 0.0.0.0:0 is a martian that never parses): the lookup slot
/// of a frame that did not parse.
const NO_KEY: FlowKey = FlowKey {
    protocol: IpProtocol::Tcp,
    source: std::net::Ipv4Addr::UNSPECIFIED,
    destination: std::net::Ipv4Addr::UNSPECIFIED,
    source_port: 0,
    destination_port: 0,
};

/// The first stage of a batch: every frame parsed, and every frame's flow looked up at once, so the
/// table can hash the whole batch and prefetch its buckets and records before probing (the memory
/// misses of a batch overlap instead of queueing). Allocated once per worker.
#[derive(Debug)]
pub struct PreparedBatch {
    parsed: [Result<ParsedFrame, ParseError>; BATCH],
    keys: [FlowKey; BATCH],
    found: [Option<Found<FlowValue>>; BATCH],
    len: usize,
}

impl PreparedBatch {
    /// An empty batch (boxed: it is a few KiB).
    pub fn new() -> Box<Self> {
        Box::new(Self {
            parsed: [Err(ParseError::RuntFrame); BATCH],
            keys: [NO_KEY; BATCH],
            found: [None; BATCH],
            len: 0,
        })
    }

    /// Forgets the previous batch.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Number of frames parsed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame was parsed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Parses the next frame (frame `self.len()` of the batch). Returns `false`, doing nothing, when the
    /// batch is full.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if self.len == BATCH {
            return false;
        }
        let parsed = parse_frame(frame);
        self.keys[self.len] = match &parsed {
            Ok(p) => icmp_error_flow_key(p).unwrap_or(p.key),
            Err(_) => NO_KEY,
        };
        self.parsed[self.len] = parsed;
        self.len += 1;
        true
    }
}

impl Pipeline<'_> {
    /// Looks up the flows of every frame of `batch` at once (stage one, after the frames were pushed).
    pub fn look_up(&self, batch: &mut PreparedBatch) {
        let n = batch.len;
        self.flows
            .table
            .lookup_batch(&batch.keys[..n], &mut batch.found[..n]);
    }

    /// Stage two: decides frame `index` of a prepared batch and rewrites it in place. `frame` is the
    /// whole frame buffer (its first `len` bytes are the received frame — the bytes that were pushed; the
    /// rest is tailroom the pipeline may use for a longer reply).
    pub fn process_prepared(
        &self,
        batch: &PreparedBatch,
        index: usize,
        ingress: PortId,
        frame: &mut [u8],
        len: usize,
    ) -> Verdict {
        let parsed = batch.parsed[index].map_err(DropReason::Malformed);
        self.finish(ingress, frame, len, parsed, batch.found[index])
    }

    /// Processes one frame received on `ingress` on its own (parse, look up, decide); the same result as
    /// a batch of one.
    pub fn process(&self, ingress: PortId, frame: &mut [u8], len: usize) -> Verdict {
        let len = len.min(frame.len());
        let parsed = parse_frame(&frame[..len]).map_err(DropReason::Malformed);
        let found = parsed.as_ref().ok().and_then(|p| {
            let key = icmp_error_flow_key(p).unwrap_or(p.key);
            self.flows.table.lookup(&key)
        });
        self.finish(ingress, frame, len, parsed, found)
    }

    fn finish(
        &self,
        ingress: PortId,
        frame: &mut [u8],
        len: usize,
        parsed: Result<ParsedFrame, DropReason>,
        found: Option<Found<FlowValue>>,
    ) -> Verdict {
        self.counters.frames.add(1);
        let verdict = parsed
            .and_then(|parsed| {
                let len = len.min(frame.len());
                let found = found.map(Hit::from);
                match ingress.uplink_slot() {
                    None => self.arrived_on_lan(frame, len, &parsed, found),
                    Some(slot) => self.arrived_on_uplink(slot, frame, len, &parsed, found),
                }
            })
            .unwrap_or_else(Verdict::Drop);
        match verdict {
            Verdict::Drop(reason) => self.counters.count_drop(reason),
            // A transmit verdict; the worker takes it back off the count if the egress refuses it
            // (`DatapathCounters::count_tx_refused`).
            Verdict::Transmit { .. } => self.counters.forwarded.add(1),
        }
        verdict
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
                Err(DropReason::NatAllocation(
                    error @ (AllocError::Exhausted | AllocError::QuotaExceeded),
                )) => return self.port_exhausted(frame, len, parsed, error),
                Err(reason) => return Err(reason),
            },
        };
        self.forward_lan_side(frame, len, parsed, &hit)
    }

    fn arrived_on_uplink(
        &self,
        ingress_slot: u8,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        found: Option<Hit>,
    ) -> Result<Verdict, DropReason> {
        let ingress = PortId::uplink(ingress_slot);
        match found {
            Some(hit) if hit.side == Side::Uplink && hit.value.kind == FlowKind::Outbound => {
                self.forward_uplink_side(ingress, frame, len, parsed, &hit)
            }
            Some(_) => Err(DropReason::WrongDirection),
            None if matches!(parsed.transport, Transport::IcmpError(_)) => {
                Err(DropReason::IcmpErrorWithoutFlow)
            }
            None => {
                let hit = self.admit_inbound(ingress_slot, parsed)?;
                self.forward_uplink_side(ingress, frame, len, parsed, &hit)
            }
        }
    }

    /// An inbound TCP/UDP packet that belongs to no flow. With endpoint-independent filtering (RFC 4787
    /// REQ-8, RFC 5382) it opens a flow when its destination is a live mapping of an internal endpoint;
    /// otherwise (the default) it is unsolicited and creates nothing.
    fn admit_inbound(&self, slot: u8, parsed: &ParsedFrame) -> Result<Hit, DropReason> {
        let key = parsed.key;
        if !self.snapshot.endpoint_independent_filtering || key.protocol == IpProtocol::Icmp {
            return Err(DropReason::UnsolicitedInbound);
        }
        let uplink = self.snapshot.uplink(slot).ok_or(DropReason::UplinkGone)?;
        if key.destination != uplink.address {
            return Err(DropReason::UnsolicitedInbound);
        }
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
        let (macs, port, mtu) = match v.kind {
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
                )
            }
            FlowKind::Hairpin => (
                MacPair {
                    source: self.snapshot.lan.mac,
                    destination: v.peer_mac,
                },
                PortId::LAN,
                self.snapshot.lan.mtu,
            ),
        };
        if parsed.ip_total_len > mtu {
            return self.too_big(frame, len, parsed, mtu);
        }
        translate(frame, parsed, &v.lan_side, macs)?;
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
        Ok(self.account(hit, parsed, Side::Uplink, PortId::LAN))
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

    /// A LAN packet too big for its egress: ICMP fragmentation needed back to the host when DF is set
    /// (RFC 1191), built in place of the offending frame; otherwise a counted drop (flowpin does not
    /// fragment).
    fn too_big(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        mtu: u16,
    ) -> Result<Verdict, DropReason> {
        if !parsed.dont_fragment {
            return Err(DropReason::WouldFragment);
        }
        self.answer_unreachable(
            frame,
            len,
            parsed,
            UnreachableKind::FragmentationNeeded { next_hop_mtu: mtu },
            DropReason::FragmentationNeeded,
        )
    }

    /// A packet from uplink `slot` too big for the LAN: with DF set, an ICMP fragmentation needed
    /// carrying the LAN MTU (RFC 1191, RFC 1812 §5.2.7.1) back out of that uplink to the remote sender,
    /// from the uplink's address and MAC to the gateway the frame came from, quoting the packet as
    /// received — so path MTU discovery works inbound too. Rate limited per worker
    /// ([`Snapshot::frag_needed_to_uplink`]): the remote side is not trusted to keep it rare. Without
    /// DF, or beyond the budget, a counted drop.
    fn too_big_from_uplink(
        &self,
        slot: u8,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        mtu: u16,
    ) -> Result<Verdict, DropReason> {
        if !parsed.dont_fragment {
            return Err(DropReason::WouldFragment);
        }
        let uplink = self
            .snapshot
            .uplink(slot)
            .ok_or(DropReason::FragmentationNeeded)?;
        if !self
            .counters
            .frag_needed_to_uplink_budget
            .take(self.now_ms, self.snapshot.frag_needed_to_uplink)
        {
            self.counters.frag_needed_to_uplink_suppressed.add(1);
            return Err(DropReason::FragmentationNeeded);
        }
        let router = RouterIdentity {
            mac: uplink.mac,
            address: uplink.address,
        };
        self.answer_unreachable_from(
            frame,
            len,
            parsed,
            (router, PortId::uplink(slot)),
            UnreachableKind::FragmentationNeeded { next_hop_mtu: mtu },
            DropReason::FragmentationNeeded,
        )
    }

    /// Viability guard: a new LAN flow no uplink can take. Nothing is evicted; the frame is dropped
    /// (`no_uplink`) and, while the worker's budget lasts, answered with an ICMP net unreachable so the
    /// host fails at once instead of retransmitting into the void.
    fn no_uplink(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
    ) -> Result<Verdict, DropReason> {
        let budget = Budget {
            bucket: &self.counters.net_unreachable_budget,
            limit: self.snapshot.net_unreachable,
            suppressed: &self.counters.net_unreachable_suppressed,
        };
        self.refuse_new_flow(
            frame,
            len,
            parsed,
            budget,
            UnreachableKind::NetUnreachable,
            DropReason::NoUplink,
        )
    }

    /// A new LAN flow that got no external port: its uplink's range has no candidate left, or its host
    /// holds its quota (RFC 6888 REQ-4). Nothing is evicted; the frame stays counted under its NAT
    /// reason and, while the worker's budget lasts, is answered with an ICMP administratively
    /// prohibited (3/13, RFC 1812 §5.2.7.1), which RFC 4787 and RFC 5382 allow a NAT to send when it
    /// cannot create a mapping: the host gives up at once instead of retransmitting.
    fn port_exhausted(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        error: AllocError,
    ) -> Result<Verdict, DropReason> {
        let budget = Budget {
            bucket: &self.counters.port_exhausted_icmp_budget,
            limit: self.snapshot.port_exhausted_icmp,
            suppressed: &self.counters.port_exhausted_icmp_suppressed,
        };
        self.refuse_new_flow(
            frame,
            len,
            parsed,
            budget,
            UnreachableKind::AdministrativelyProhibited,
            DropReason::NatAllocation(error),
        )
    }

    /// A new LAN flow refused for `reason`: answered in place with an ICMP unreachable of `kind` to
    /// its host while `budget` has a token, else a plain drop counted as suppressed.
    fn refuse_new_flow(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        budget: Budget<'_>,
        kind: UnreachableKind,
        reason: DropReason,
    ) -> Result<Verdict, DropReason> {
        if !budget.bucket.take(self.now_ms, budget.limit) {
            budget.suppressed.add(1);
            return Err(reason);
        }
        self.answer_unreachable(frame, len, parsed, kind, reason)
    }

    /// Replaces the offending LAN frame (its first `len` bytes) by an ICMP destination unreachable of
    /// `kind` to its sender, from the router's LAN side, sent back on the LAN; the offending packet
    /// still counts as dropped for `reason`. When no error can be built (RFC 1812 §4.3.2.7 forbids it,
    /// or no room), a plain drop.
    fn answer_unreachable(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        kind: UnreachableKind,
        reason: DropReason,
    ) -> Result<Verdict, DropReason> {
        let router = RouterIdentity {
            mac: self.snapshot.lan.mac,
            address: self.snapshot.lan.address,
        };
        self.answer_unreachable_from(frame, len, parsed, (router, PortId::LAN), kind, reason)
    }

    /// Replaces the offending frame (its first `len` bytes) by an ICMP destination unreachable of
    /// `kind` to its sender (Ethernet destination: the frame's source), from `router`, sent out of
    /// `egress` (the port the frame came in by); the offending packet still counts as dropped for
    /// `reason`. When no error can be built (RFC 1812 §4.3.2.7 forbids it, or no room), a plain drop.
    fn answer_unreachable_from(
        &self,
        frame: &mut [u8],
        len: usize,
        parsed: &ParsedFrame,
        (router, egress): (RouterIdentity, PortId),
        kind: UnreachableKind,
        reason: DropReason,
    ) -> Result<Verdict, DropReason> {
        let mut quote = [0u8; QUOTE_BUFFER];
        let copied = len.min(QUOTE_BUFFER).min(frame.len());
        quote[..copied].copy_from_slice(&frame[..copied]);
        let mut truncated = *parsed;
        // The builder quotes at most 576 bytes; it reads only what lies inside `copied`.
        let max_ip = copied.saturating_sub(usize::from(parsed.l3_offset));
        truncated.ip_total_len = parsed
            .ip_total_len
            .min(u16::try_from(max_ip).unwrap_or(u16::MAX));
        match build_unreachable(frame, &quote[..copied], &truncated, router, kind) {
            Ok(out_len) => {
                self.counters.originated.add(1);
                self.counters.count_drop(reason);
                Ok(Verdict::Transmit {
                    port: egress,
                    len: out_len,
                })
            }
            Err(_) => Err(reason),
        }
    }

    /// The uplink of a new flow whose policy decision is `decision`, and what decided it. Under a
    /// stickiness that keeps endpoint-independent mapping (`endpoint`, `host`): the group's member on
    /// which the flow's internal endpoint already has a live mapping, else the group's choice. A
    /// mapping outlives the weights and states it was chosen under (a reload, `set-weight`, an uplink
    /// coming back would otherwise send the endpoint's next flow elsewhere with a second mapping), so
    /// this keeps one external endpoint per internal endpoint (RFC 4787 REQ-1, RFC 5382 REQ-1) for as
    /// long as the mapping lives on an uplink the group may use. When the endpoint holds mappings on
    /// two members, the group's choice wins. Costs one quota-table probe per other member, plus a
    /// candidate scan where the host holds mappings. Under `host-dest` and `flow`, which are
    /// documented to break EIM, the group's choice always decides: those modes spread one endpoint's
    /// flows by their own key.
    fn uplink_for(
        &self,
        key: &FlowKey,
        decision: &Decision,
    ) -> Result<(u8, Placement), DropReason> {
        let chosen = decision
            .uplink
            .and_then(|i| u8::try_from(i).ok())
            .ok_or(DropReason::NoUplink)?;
        if !self.snapshot.policy.stickiness().keeps_eim() {
            return Ok((chosen, Placement::Chosen));
        }
        let has_mapping = |slot: u8| {
            self.snapshot.uplink(slot).is_some_and(|uplink| {
                uplink
                    .nat
                    .pool(key.protocol)
                    .mapping_of(key.source, key.source_port)
                    .is_some()
            })
        };
        let elsewhere = self
            .snapshot
            .policy
            .group(decision.group)
            .members()
            .filter_map(|member| u8::try_from(member).ok())
            .find(|&member| member != chosen && has_mapping(member));
        Ok(match elsewhere {
            Some(mapped) if !has_mapping(chosen) => (mapped, Placement::JoinedLiveMapping),
            _ => (chosen, Placement::Chosen),
        })
    }

    /// The first packet of a flow from the LAN: policy → uplink → external port → insert.
    fn new_flow(&self, frame: &[u8], parsed: &ParsedFrame) -> Result<Hit, DropReason> {
        match parsed.transport {
            Transport::IcmpError(_) => return Err(DropReason::IcmpErrorWithoutFlow),
            // Only an echo request opens an ICMP query flow; a stray reply from the LAN opens nothing.
            Transport::IcmpQuery { message_type } if message_type != ECHO_REQUEST => {
                return Err(DropReason::UnsolicitedInbound);
            }
            _ => {}
        }
        let key = parsed.key;
        if key.destination == self.snapshot.lan.address {
            return Err(DropReason::AddressedToRouter);
        }
        let lan_host_mac = source_mac(frame);
        if let Some(slot) = self.snapshot.uplink_with_address(key.destination) {
            return self.new_hairpin_flow(parsed, slot, lan_host_mac);
        }
        let decision = self.snapshot.policy.decide(&key, dscp(frame, parsed));
        let (slot, placement) = self.uplink_for(&key, &decision)?;
        let policy = match decision.group {
            crate::select::GroupId::Policy(i) => u8::try_from(i).unwrap_or(u8::MAX - 1),
            crate::select::GroupId::Default => u8::MAX,
        };
        let uplink = self.snapshot.uplink(slot).ok_or(DropReason::UplinkGone)?;
        let pool = uplink.nat.pool(key.protocol);
        let external_port = pool
            .acquire(key.source, key.source_port, self.now_ms)
            .map_err(DropReason::NatAllocation)?;
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
    /// REQ-8): the target LAN host must see the sender's external endpoint as the source.
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
        let (target_ip, target_port) = target_uplink
            .nat
            .pool(key.protocol)
            .owner_of(key.destination_port)
            .ok_or(DropReason::HairpinWithoutMapping)?;
        let peer_mac = self
            .snapshot
            .lan_neighbour(target_ip)
            .ok_or(DropReason::HairpinNeighbourUnknown)?;
        // The sender's own external endpoint: its mapping on the uplink its endpoint is pinned to.
        let (slot, _) = self.uplink_for(&key, &self.snapshot.policy.decide(&key, 0))?;
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
    fn pin(&self, value: FlowValue, release: impl Fn()) -> Result<(Hit, bool), DropReason> {
        let (hit, inserted) = self.insert(value).inspect_err(|_| release())?;
        if !inserted {
            release();
        }
        Ok((hit, inserted))
    }

    /// Inserts a new flow under both keys; `(hit, true)` if this call created it, `(winner, false)` if
    /// another worker's first packet of the same flow won the race. A full table refuses the flow
    /// (`flow_table_full`, nothing evicted) unless [`Snapshot::early_drop_unanswered`] is on: then it
    /// gets one early drop of never-answered flows (see [`Flows::early_drop`]) and one more try.
    fn insert(&self, value: FlowValue) -> Result<(Hit, bool), DropReason> {
        match self.try_insert(value) {
            Err(DropReason::FlowTableFull) if self.snapshot.early_drop_unanswered => {
                let dropped = self.flows.early_drop(self.now_ms, |removed| {
                    self.snapshot
                        .release_unanswered_mapping(removed, self.now_ms);
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

    fn try_insert(&self, value: FlowValue) -> Result<(Hit, bool), DropReason> {
        match self.flows.table.insert_if_absent(
            value.lan_key(),
            value.uplink_key(),
            value,
            self.now_ms,
        ) {
            Ok(Insertion::Inserted(handle)) => {
                self.flows
                    .on_inserted(handle, value.protocol(), self.now_ms);
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

const ECHO_REQUEST: u8 = 8;

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
