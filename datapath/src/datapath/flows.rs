//! The shared flow state: the lock-free flow table plus the per-record TCP trackers, and expiry.
//!
//! One [`Flows`] is shared (by `Arc`) by every worker and the control plane's sweeper.
//!
//! The flow table's per-record protocol-state word (48 bits) holds:
//! - TCP: the tracker's phase word ([`TcpTracker::phase_word`](flowpin_nat::TcpTracker)), so expiry can pick
//!   the established or transitory timeout without touching the tracker;
//! - UDP and ICMP: the time (ms) of the last *outbound* packet, because by default only outbound traffic
//!   refreshes those mappings (RFC 4787 REQ-6), while the table's own last-seen stamp is refreshed both ways;
//!   bit 47 ([`REPLIED`]) is set once a packet came back from the far side (times stay far below it).
//!
//! When `[nat] early_drop_unanswered` is on, a flow that never got a reply (TCP still in `SynOut`,
//! UDP/ICMP without [`REPLIED`]) may be removed early to make room when the table is full
//! ([`Flows::early_drop`]): Linux conntrack's `early_drop` of unassured entries. The table itself never
//! evicts; this is the forwarder's opt-in expiry policy under pressure, and flows that were answered
//! keep their RFC timeouts. Off (the default), a full table only refuses new flows.
//!
//! The TCP sequence words of each record live beside the table in `tcp`, indexed by record number. They are
//! reset when a flow is inserted into the record. A worker holding a handle of a flow that has just been
//! removed could, in a tiny window, fold one segment into the new occupant's tracker: that can only make
//! the tracker judge one RST too strictly or leniently, which changes a timeout, never a translation.

use std::sync::atomic::Ordering;

use flowpin_flowtable::{FlowHandle, FlowTable};
use flowpin_nat::{
    AtomicTcpTracker, FlowActivity, FlowKey, FlowState, IpProtocol, TcpPhase, TcpTracker, Timeouts,
};

use super::record::{FlowKind, FlowValue};

/// The bit of a UDP/ICMP flow's state word that says a packet came back from the far side.
pub const REPLIED: u64 = 1 << 47;

/// Records a table-full early drop visits at most per attempt (bounded work on the packet path).
pub const EARLY_DROP_SCAN: usize = 64;

/// Outbound-refresh stamps of UDP/ICMP flows are rewritten at most this often (ms): one compare-and-swap
/// per second per flow instead of one per packet.
pub const OUTBOUND_STAMP_GRANULARITY_MS: u64 = 1_000;

/// The flow table shared by all workers.
#[derive(Debug)]
pub struct Flows {
    /// The table: LAN-side and uplink-side keys of each flow reach one [`FlowValue`].
    pub table: FlowTable<FlowKey, FlowValue>,
    /// TCP trackers by record number.
    pub tcp: Box<[AtomicTcpTracker]>,
}

impl Flows {
    /// A table for `capacity` flows.
    pub fn with_capacity(capacity: usize) -> Result<Self, flowpin_flowtable::CapacityError> {
        let table = FlowTable::with_capacity(capacity)?;
        let tcp = (0..capacity).map(|_| AtomicTcpTracker::default()).collect();
        Ok(Self { table, tcp })
    }

    /// The tracker of `handle`'s record.
    #[inline]
    pub fn tracker(&self, handle: FlowHandle) -> Option<&AtomicTcpTracker> {
        self.tcp.get(handle.record() as usize)
    }

    /// Prepares the per-record state of a flow this worker just inserted.
    #[inline]
    pub fn on_inserted(&self, handle: FlowHandle, protocol: IpProtocol, now_ms: u64) {
        match protocol {
            IpProtocol::Tcp => {
                if let Some(t) = self.tracker(handle) {
                    t.inside.store(0, Ordering::Relaxed);
                    t.outside.store(0, Ordering::Relaxed);
                    t.phase_word.store(0, Ordering::Release);
                }
            }
            IpProtocol::Udp | IpProtocol::Icmp => {
                let _ = self
                    .table
                    .compare_exchange_protocol_state(handle, 0, now_ms);
            }
        }
    }

    /// Stamps an outbound UDP/ICMP packet (at most once per [`OUTBOUND_STAMP_GRANULARITY_MS`]), keeping
    /// the [`REPLIED`] bit.
    #[inline]
    pub fn stamp_outbound(&self, handle: FlowHandle, now_ms: u64) {
        if let Some(word) = self.table.protocol_state(handle)
            && now_ms >= (word & !REPLIED) + OUTBOUND_STAMP_GRANULARITY_MS
        {
            let _ =
                self.table
                    .compare_exchange_protocol_state(handle, word, now_ms | (word & REPLIED));
        }
    }

    /// Marks a UDP/ICMP flow answered (its first inbound packet; later ones only read the word). A lost
    /// race with an outbound stamp leaves the mark to the next inbound packet.
    #[inline]
    pub fn mark_replied(&self, handle: FlowHandle) {
        if let Some(word) = self.table.protocol_state(handle)
            && word & REPLIED == 0
        {
            let _ = self
                .table
                .compare_exchange_protocol_state(handle, word, word | REPLIED);
        }
    }

    /// Makes room in a full table: removes the never-answered outbound flows among the next
    /// [`EARLY_DROP_SCAN`] records (shared cursor with the sweeper, so workers scan disjoint runs),
    /// giving their mappings back through `release`. Returns how many were removed.
    pub fn early_drop(&self, now_ms: u64, release: impl FnMut(&FlowValue)) -> usize {
        self.table
            .sweep(
                now_ms,
                EARLY_DROP_SCAN,
                |value, state, _| value.kind == FlowKind::Outbound && is_unreplied(value, state),
                release,
            )
            .removed
    }

    /// Publishes a TCP tracker's new phase word into the table's state word (used by expiry).
    #[inline]
    pub fn publish_tcp_phase(&self, handle: FlowHandle, phase_word: u32) {
        if let Some(current) = self.table.protocol_state(handle)
            && current != u64::from(phase_word)
        {
            let _ =
                self.table
                    .compare_exchange_protocol_state(handle, current, u64::from(phase_word));
        }
    }
}

/// The expiry deadline of a flow from its value, state word and last-seen time.
pub fn deadline(timeouts: &Timeouts, value: &FlowValue, state_word: u64, last_seen_ms: u64) -> u64 {
    let (state, activity) = match value.protocol() {
        IpProtocol::Tcp => {
            let phase = TcpTracker {
                phase_word: state_word as u32,
                inside: 0,
                outside: 0,
            }
            .phase();
            (
                FlowState::Tcp(phase),
                FlowActivity {
                    last_outbound_ms: last_seen_ms,
                    last_inbound_ms: last_seen_ms,
                },
            )
        }
        protocol => (
            if protocol == IpProtocol::Udp {
                FlowState::Udp
            } else {
                FlowState::IcmpQuery
            },
            FlowActivity {
                last_outbound_ms: state_word & !REPLIED,
                last_inbound_ms: last_seen_ms,
            },
        ),
    };
    timeouts.deadline(state, activity)
}

/// Whether a flow never got an answer from the far side: TCP still in `SynOut` (its SYN unanswered),
/// UDP/ICMP without [`REPLIED`].
pub fn is_unreplied(value: &FlowValue, state_word: u64) -> bool {
    match value.protocol() {
        IpProtocol::Tcp => {
            TcpTracker {
                phase_word: state_word as u32,
                inside: 0,
                outside: 0,
            }
            .phase()
                == TcpPhase::SynOut
        }
        IpProtocol::Udp | IpProtocol::Icmp => state_word & REPLIED == 0,
    }
}
