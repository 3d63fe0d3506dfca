//! Drop reasons and the per-worker counters the datapath keeps.
//!
//! Every frame the datapath does not transmit is dropped for exactly one [`DropReason`] and counted under
//! it. Each worker owns one [`DatapathCounters`]: only that worker writes it (plain load + store on
//! relaxed atomics, no read-modify-write), any thread may read it (the control plane sums the workers).
//!
//! The passive health signal is two of those per-uplink counters: new TCP flows opened by a SYN from the
//! LAN ([`UplinkCounters::tcp_handshakes_started`]) and those whose first SYN-ACK came back
//! ([`UplinkCounters::tcp_handshakes_answered`]). The control plane derives "unanswered within a window"
//! from the two sums over time (its passive health check); the datapath keeps no timer for it.

use std::sync::atomic::{AtomicU64, Ordering};

use flowpin_nat::{AllocError, ParseError, TranslateError};

use super::MAX_UPLINKS;
use super::rate_limit::TokenBucket;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The frame could not be parsed as a translatable packet.
    Malformed(ParseError),
    /// No port could be allocated for the flow's external endpoint.
    NatAllocation(AllocError),
    /// A rewrite of a known flow failed (the frame does not fit its flow).
    Translate(TranslateError),
    /// A LAN packet whose source is outside the LAN prefixes (spoofed or misrouted).
    SpoofedSource,
    /// A LAN packet opening a flow from the router's own LAN address, or a LAN prefix's network or
    /// broadcast address: no host sends from those, so it is spoofed and creates nothing.
    LanReservedSource,
    /// An inbound packet that belongs to no flow: unsolicited traffic creates no state.
    UnsolicitedInbound,
    /// An ICMP error that belongs to no flow.
    IcmpErrorWithoutFlow,
    /// A packet that matched a flow's key of the other direction (e.g. a LAN key arriving on an uplink).
    WrongDirection,
    /// A packet from the LAN addressed to the router's own address reached the datapath.
    AddressedToRouter,
    /// No uplink is eligible for a new flow.
    NoUplink,
    /// The flow table is full; live flows are never evicted.
    FlowTableFull,
    /// The new flow's uplink-side key already belongs to another flow.
    FlowKeyClash,
    /// The flow table is under pressure and the new flow's LAN host holds its fair share of it, with
    /// no unconfirmed flow of its own to give way ([`super::FlowShare`]).
    HostOverFlowShare,
    /// The new flow's LAN host holds no flow yet and the flow table's host counts are full.
    FlowHostTableFull,
    /// The flow's uplink has no resolved gateway MAC yet.
    GatewayUnresolved,
    /// The packet is larger than the egress MTU and has DF set: answered with ICMP fragmentation needed.
    FragmentationNeeded,
    /// The packet is larger than the egress MTU without DF: flowpin does not fragment.
    WouldFragment,
    /// A hairpin packet to an external endpoint that no LAN host holds.
    HairpinWithoutMapping,
    /// A hairpin packet whose target host's MAC is not known yet.
    HairpinNeighbourUnknown,
    /// An inbound packet admitted by endpoint-independent filtering, or opening a forwarded flow, whose
    /// LAN host's MAC is unknown.
    InboundNeighbourUnknown,
    /// An inbound packet to a port forward of an uplink that takes no new flows (down, drained or its
    /// gateway unresolved): a forward on a dead uplink is unreachable.
    ForwardUplinkClosed,
    /// The flow's uplink is no longer in the configuration.
    UplinkGone,
    /// The egress ring had no room.
    TxRingFull,
    /// The frame to transmit was shorter than an Ethernet header (the AF_XDP worker refuses it).
    TxRuntFrame,
    /// The verdict's length did not fit the frame's UMEM chunk (never expected: the pipeline only
    /// writes inside the buffer it is given).
    TxBeyondFrame,
    /// A later IPv4 fragment whose first had not come, refused a hold: every hold slot is taken.
    FragmentHoldFull,
    /// A later IPv4 fragment whose first had not come, longer than a hold slot.
    FragmentTooLongToHold,
    /// A held later fragment whose first fragment did not come (or was not translated) in time.
    FragmentExpired,
    /// A held fragment whose first came, released when the worker had no free frame to send it in.
    FragmentReleaseNoFrame,
}

const PARSE_BASE: usize = 0;
const ALLOC_BASE: usize = PARSE_BASE + ParseError::ALL.len();
const TRANSLATE_BASE: usize = ALLOC_BASE + AllocError::ALL.len();
const OTHER_BASE: usize = TRANSLATE_BASE + TranslateError::ALL.len();

/// The reasons that carry no inner error, in counter order.
const OTHERS: [DropReason; 26] = [
    DropReason::SpoofedSource,
    DropReason::UnsolicitedInbound,
    DropReason::IcmpErrorWithoutFlow,
    DropReason::WrongDirection,
    DropReason::AddressedToRouter,
    DropReason::NoUplink,
    DropReason::FlowTableFull,
    DropReason::FlowKeyClash,
    DropReason::GatewayUnresolved,
    DropReason::FragmentationNeeded,
    DropReason::WouldFragment,
    DropReason::HairpinWithoutMapping,
    DropReason::HairpinNeighbourUnknown,
    DropReason::InboundNeighbourUnknown,
    DropReason::ForwardUplinkClosed,
    DropReason::UplinkGone,
    DropReason::TxRingFull,
    DropReason::TxRuntFrame,
    DropReason::TxBeyondFrame,
    DropReason::LanReservedSource,
    DropReason::HostOverFlowShare,
    DropReason::FlowHostTableFull,
    DropReason::FragmentHoldFull,
    DropReason::FragmentTooLongToHold,
    DropReason::FragmentExpired,
    DropReason::FragmentReleaseNoFrame,
];

impl DropReason {
    /// Number of distinct reasons (counters).
    pub const COUNT: usize = OTHER_BASE + OTHERS.len();

    /// Dense counter index in `0..COUNT`.
    pub fn index(self) -> usize {
        match self {
            Self::Malformed(e) => PARSE_BASE + e.index(),
            Self::NatAllocation(e) => {
                ALLOC_BASE
                    + AllocError::ALL
                        .iter()
                        .position(|a| *a == e)
                        .unwrap_or_default()
            }
            Self::Translate(e) => TRANSLATE_BASE + e.index(),
            other => OTHER_BASE + OTHERS.iter().position(|o| *o == other).unwrap_or_default(),
        }
    }

    /// The reason of counter `index`.
    pub fn from_index(index: usize) -> Option<Self> {
        if index < ALLOC_BASE {
            ParseError::ALL.get(index).map(|e| Self::Malformed(*e))
        } else if index < TRANSLATE_BASE {
            AllocError::ALL
                .get(index - ALLOC_BASE)
                .map(|e| Self::NatAllocation(*e))
        } else if index < OTHER_BASE {
            TranslateError::ALL
                .get(index - TRANSLATE_BASE)
                .map(|e| Self::Translate(*e))
        } else {
            OTHERS.get(index - OTHER_BASE).copied()
        }
    }

    /// Stable snake_case counter name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed(e) => e.name(),
            Self::NatAllocation(e) => e.name(),
            Self::Translate(e) => e.name(),
            Self::SpoofedSource => "spoofed_source",
            Self::LanReservedSource => "lan_reserved_source",
            Self::UnsolicitedInbound => "unsolicited_inbound",
            Self::IcmpErrorWithoutFlow => "icmp_error_without_flow",
            Self::WrongDirection => "wrong_direction",
            Self::AddressedToRouter => "addressed_to_router",
            Self::NoUplink => "no_uplink",
            Self::FlowTableFull => "flow_table_full",
            Self::FlowKeyClash => "flow_key_clash",
            Self::HostOverFlowShare => "host_over_flow_share",
            Self::FlowHostTableFull => "flow_host_table_full",
            Self::GatewayUnresolved => "gateway_unresolved",
            Self::FragmentationNeeded => "fragmentation_needed",
            Self::WouldFragment => "would_fragment",
            Self::HairpinWithoutMapping => "hairpin_without_mapping",
            Self::HairpinNeighbourUnknown => "hairpin_neighbour_unknown",
            Self::InboundNeighbourUnknown => "inbound_neighbour_unknown",
            Self::ForwardUplinkClosed => "forward_uplink_closed",
            Self::UplinkGone => "uplink_gone",
            Self::TxRingFull => "tx_ring_full",
            Self::TxRuntFrame => "tx_runt_frame",
            Self::TxBeyondFrame => "tx_beyond_frame",
            Self::FragmentHoldFull => "fragment_hold_full",
            Self::FragmentTooLongToHold => "fragment_too_long_to_hold",
            Self::FragmentExpired => "fragment_expired",
            Self::FragmentReleaseNoFrame => "fragment_release_no_frame",
        }
    }
}

/// A counter written by one thread only.
#[derive(Debug, Default)]
pub struct OwnedCounter(AtomicU64);

impl OwnedCounter {
    /// Adds `n`. Only the owning worker may call this (load + store, not a read-modify-write).
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Current value (any thread).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per-uplink traffic counters of one worker.
#[derive(Debug, Default)]
pub struct UplinkCounters {
    /// Packets sent out of the uplink.
    pub tx_packets: OwnedCounter,
    /// Bytes sent out of the uplink.
    pub tx_bytes: OwnedCounter,
    /// Packets received on the uplink and delivered to the LAN.
    pub rx_packets: OwnedCounter,
    /// Bytes received on the uplink and delivered to the LAN.
    pub rx_bytes: OwnedCounter,
    /// Flows this worker pinned to the uplink.
    pub flows_created: OwnedCounter,
    /// Of those, flows opened from outside through a port forward of the uplink.
    pub forwarded_flows_created: OwnedCounter,
    /// New outbound TCP flows this worker pinned to the uplink whose first packet was a SYN.
    pub tcp_handshakes_started: OwnedCounter,
    /// Outbound TCP flows on the uplink whose first SYN-ACK from outside this worker saw (the tracker
    /// moved from "SYN sent" to established on it).
    pub tcp_handshakes_answered: OwnedCounter,
    /// TCP SYNs leaving and SYN-ACKs entering through the uplink whose MSS option was lowered to its
    /// clamp.
    pub mss_clamped: OwnedCounter,
}

/// One worker's [`UplinkCounters`] summed over every uplink slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranslatedTotals {
    /// Packets received on the LAN and sent out of an uplink.
    pub outbound_packets: u64,
    /// Packets received on an uplink and delivered to the LAN.
    pub inbound_packets: u64,
    /// Flows created.
    pub flows_created: u64,
}

/// Everything one worker's datapath counts.
#[derive(Debug)]
pub struct DatapathCounters {
    /// Drops by [`DropReason::index`].
    pub drops: Box<[OwnedCounter]>,
    /// Per uplink slot.
    pub uplinks: Box<[UplinkCounters]>,
    /// Frames handed to the datapath.
    pub frames: OwnedCounter,
    /// Frames the pipeline decided to transmit (forwarded or replaced by an answer it originated).
    /// Some may still be refused at the egress ([`Self::tx_refused`]); [`Self::transmitted`] is the
    /// exact count of frames queued for TX.
    pub forwarded: OwnedCounter,
    /// Frames the pipeline decided to transmit that the egress refused (no socket for the port, TX
    /// queue full, runt frame, length beyond the frame): each also counted under its drop reason.
    pub tx_refused: OwnedCounter,
    /// ICMP errors and resets the datapath originated.
    pub originated: OwnedCounter,
    /// Hairpinned packets (LAN to LAN through an external mapping).
    pub hairpinned: OwnedCounter,
    /// Later IPv4 fragments translated by their first fragment's route (on arrival or released).
    pub fragments_followed: OwnedCounter,
    /// Later IPv4 fragments held because they came before their first.
    pub fragments_held: OwnedCounter,
    /// Batches processed.
    pub batches: OwnedCounter,
    /// The worker's budget of ICMP net unreachable answers (viability guard), refilled per
    /// [`Snapshot::net_unreachable`](super::Snapshot::net_unreachable). Kept here because it is
    /// per-worker state written only by its worker, like the counters.
    pub net_unreachable_budget: TokenBucket,
    /// New flows refused for want of an uplink whose host got no net unreachable (rate limit).
    pub net_unreachable_suppressed: OwnedCounter,
    /// The worker's budget of ICMP administratively prohibited answers to new flows that got no
    /// external port, refilled per [`Snapshot::port_exhausted_icmp`](super::Snapshot::port_exhausted_icmp).
    pub port_exhausted_icmp_budget: TokenBucket,
    /// New flows refused for want of an external port whose host got no answer (rate limit).
    pub port_exhausted_icmp_suppressed: OwnedCounter,
    /// The worker's budget of ICMP fragmentation needed answers sent out of an uplink to remote
    /// senders of packets too big for the LAN, refilled per
    /// [`Snapshot::frag_needed_to_uplink`](super::Snapshot::frag_needed_to_uplink).
    pub frag_needed_to_uplink_budget: TokenBucket,
    /// Packets from an uplink too big for the LAN (DF set) whose sender got no answer (rate limit).
    pub frag_needed_to_uplink_suppressed: OwnedCounter,
    /// The worker's budget of ICMP fragmentation needed answers to LAN hosts, refilled per
    /// [`Snapshot::frag_needed_to_lan`](super::Snapshot::frag_needed_to_lan).
    pub frag_needed_to_lan_budget: TokenBucket,
    /// LAN packets too big for their egress (DF set) whose host got no answer (rate limit).
    pub frag_needed_to_lan_suppressed: OwnedCounter,
    /// Flows that never got a reply, removed to make room for a new flow while the table was full
    /// (early drop, as conntrack does for unassured entries).
    pub flows_early_dropped: OwnedCounter,
    /// New flows the group's choice refused for the host's share that another member took.
    pub flows_spilled: OwnedCounter,
}

impl Default for DatapathCounters {
    fn default() -> Self {
        Self {
            drops: (0..DropReason::COUNT)
                .map(|_| OwnedCounter::default())
                .collect(),
            uplinks: (0..MAX_UPLINKS)
                .map(|_| UplinkCounters::default())
                .collect(),
            frames: OwnedCounter::default(),
            forwarded: OwnedCounter::default(),
            tx_refused: OwnedCounter::default(),
            originated: OwnedCounter::default(),
            hairpinned: OwnedCounter::default(),
            fragments_followed: OwnedCounter::default(),
            fragments_held: OwnedCounter::default(),
            batches: OwnedCounter::default(),
            net_unreachable_budget: TokenBucket::default(),
            net_unreachable_suppressed: OwnedCounter::default(),
            port_exhausted_icmp_budget: TokenBucket::default(),
            port_exhausted_icmp_suppressed: OwnedCounter::default(),
            frag_needed_to_uplink_budget: TokenBucket::default(),
            frag_needed_to_uplink_suppressed: OwnedCounter::default(),
            frag_needed_to_lan_budget: TokenBucket::default(),
            frag_needed_to_lan_suppressed: OwnedCounter::default(),
            flows_early_dropped: OwnedCounter::default(),
            flows_spilled: OwnedCounter::default(),
        }
    }
}

impl DatapathCounters {
    /// Counts one drop.
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].add(1);
    }

    /// A frame with a transmit verdict that did not leave: counted under `reason` and taken off the
    /// transmitted count.
    #[inline]
    pub fn count_tx_refused(&self, reason: DropReason) {
        self.count_drop(reason);
        self.tx_refused.add(1);
    }

    /// Frames queued for TX: transmit verdicts less those the egress refused.
    pub fn transmitted(&self) -> u64 {
        self.forwarded.get().saturating_sub(self.tx_refused.get())
    }

    /// By kind of originated answer: how many its token bucket refused, as (name, count), every
    /// kind listed.
    pub fn answers_suppressed(&self) -> [(&'static str, u64); 4] {
        [
            ("net_unreachable", self.net_unreachable_suppressed.get()),
            ("port_exhausted", self.port_exhausted_icmp_suppressed.get()),
            (
                "frag_needed_to_uplink",
                self.frag_needed_to_uplink_suppressed.get(),
            ),
            (
                "frag_needed_to_lan",
                self.frag_needed_to_lan_suppressed.get(),
            ),
        ]
    }

    /// This worker's translated packets summed over every uplink slot: LAN to uplink (outbound) and
    /// uplink to LAN (inbound), and the flows it created (control plane; reads only).
    pub fn translated(&self) -> TranslatedTotals {
        self.uplinks
            .iter()
            .fold(TranslatedTotals::default(), |t, c| TranslatedTotals {
                outbound_packets: t.outbound_packets + c.tx_packets.get(),
                inbound_packets: t.inbound_packets + c.rx_packets.get(),
                flows_created: t.flows_created + c.flows_created.get(),
            })
    }

    /// Non-zero drop counters as (name, count).
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.drops.iter().enumerate().filter_map(|(i, c)| {
            let n = c.get();
            (n > 0).then(|| (DropReason::from_index(i).map_or("unknown", |r| r.name()), n))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_reason_has_a_distinct_index_and_name_that_round_trip() {
        let mut names = HashSet::new();
        for i in 0..DropReason::COUNT {
            let r = DropReason::from_index(i).expect("dense indices");
            assert_eq!(r.index(), i, "{r:?}");
            assert!(
                names.insert(r.name()),
                "duplicate counter name {}",
                r.name()
            );
        }
        assert_eq!(DropReason::from_index(DropReason::COUNT), None);
    }

    #[test]
    fn a_refused_transmission_is_a_drop_and_not_a_transmitted_frame() {
        let c = DatapathCounters::default();
        c.forwarded.add(3);
        c.count_tx_refused(DropReason::TxRuntFrame);
        assert_eq!(c.transmitted(), 2);
        assert_eq!(
            c.forwarded.get(),
            3,
            "the pipeline's decisions stay counted"
        );
        let d: Vec<_> = c.nonzero_drops().collect();
        assert_eq!(d, vec![("tx_runt_frame", 1)]);
    }

    #[test]
    fn drops_are_counted_under_their_reason() {
        let c = DatapathCounters::default();
        c.count_drop(DropReason::UnsolicitedInbound);
        c.count_drop(DropReason::UnsolicitedInbound);
        c.count_drop(DropReason::Malformed(ParseError::Ipv4BadHeaderChecksum));
        let d: Vec<_> = c.nonzero_drops().collect();
        assert_eq!(
            d,
            vec![("ipv4_bad_header_checksum", 1), ("unsolicited_inbound", 2)]
        );
    }

    #[test]
    fn translated_totals_sum_every_uplink_slot() {
        let c = DatapathCounters::default();
        c.uplinks[0].tx_packets.add(3);
        c.uplinks[5].tx_packets.add(4);
        c.uplinks[5].rx_packets.add(2);
        c.uplinks[1].flows_created.add(1);
        assert_eq!(
            c.translated(),
            TranslatedTotals {
                outbound_packets: 7,
                inbound_packets: 2,
                flows_created: 1,
            }
        );
    }
}
