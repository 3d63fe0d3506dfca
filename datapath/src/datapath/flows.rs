//! The shared flow state: the lock-free flow table plus the per-record TCP trackers, and expiry.
//!
//! One [`Flows`] is shared (by `Arc`) by every worker and the control plane's sweeper.
//!
//! The flow table's per-record protocol-state word (48 bits) holds:
//! - TCP: the tracker's phase word ([`TcpTracker::phase_word`](flowpin_nat::TcpTracker)), so expiry can pick
//!   the established or transitory timeout without touching the tracker;
//! - UDP and ICMP: the time (ms) of the last *outbound* packet, because by default only outbound traffic
//!   refreshes those mappings (RFC 4787 REQ-6), while the table's own last-seen stamp is refreshed both ways;
//!   bit 47 ([`REPLIED`]) is set once a packet came back from the far side, bit 46 ([`SENT`]) once one
//!   went out from the LAN host (times stay far below both).
//!
//! # Unconfirmed flows
//! A flow is confirmed (conntrack's "assured") once traffic was seen both ways ([`is_unconfirmed`]):
//! TCP once both sides sent a non-RST segment, UDP/ICMP once [`SENT`] and [`REPLIED`] are both set. A
//! flow opened from outside (endpoint-independent filtering) is unconfirmed until its LAN host
//! answers. Unconfirmed flows:
//! - are the candidates when a new flow finds the table full ([`Flows::early_drop`], Linux
//!   conntrack's `early_drop` of unassured entries), always; confirmed flows are never evicted;
//! - when TCP past the handshake (a first segment that was not a SYN: bare ACKs, FINs, a pickup
//!   mid-stream), expire after the transitory timeout (240 s), not the established one (2 h 4 min).
//!
//! # Removal and per-host counts
//! Every flow is counted against its LAN host ([`super::flow_share`]); flows leave the table only
//! through [`Flows::remove`], [`Flows::sweep`] and the early drops, which give the host back, so the
//! counts stay right whatever removes a flow (expiry, early drop, failover, reload). Nothing else
//! may call the table's own `remove` or `sweep`.
//!
//! The TCP sequence words of each record live beside the table in `tcp`, indexed by record number. They are
//! reset when a flow is inserted into the record. A worker holding a handle of a flow that has just been
//! removed could, in a tiny window, fold one segment into the new occupant's tracker: that can only make
//! the tracker judge one RST too strictly or leniently, which changes a timeout, never a translation.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use flowpin_flowtable::{FlowHandle, FlowTable, SweepStats};
use flowpin_nat::{
    AtomicTcpTracker, FlowActivity, FlowKey, FlowState, IpProtocol, TcpPhase, TcpTracker, Timeouts,
};

use super::flow_share::FlowHosts;
use super::record::{FlowKind, FlowValue};

/// The bit of a UDP/ICMP flow's state word that says a packet came back from the far side.
pub const REPLIED: u64 = 1 << 47;

/// The bit of a UDP/ICMP flow's state word that says a packet went out from the LAN host.
pub const SENT: u64 = 1 << 46;

/// The time bits of a UDP/ICMP flow's state word (the last outbound packet, ms).
const STAMP: u64 = SENT - 1;

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
    /// Flows held per LAN host.
    pub hosts: FlowHosts,
}

impl Flows {
    /// A table for `capacity` flows.
    pub fn with_capacity(capacity: usize) -> Result<Self, flowpin_flowtable::CapacityError> {
        let table = FlowTable::with_capacity(capacity)?;
        let tcp = (0..capacity).map(|_| AtomicTcpTracker::default()).collect();
        let hosts = FlowHosts::for_capacity(capacity);
        Ok(Self { table, tcp, hosts })
    }

    /// The tracker of `handle`'s record.
    #[inline]
    pub fn tracker(&self, handle: FlowHandle) -> Option<&AtomicTcpTracker> {
        self.tcp.get(handle.record() as usize)
    }

    /// Prepares the per-record state of a flow this worker just inserted; `from_lan` when its first
    /// packet came from the LAN host (not opened from outside).
    #[inline]
    pub fn on_inserted(
        &self,
        handle: FlowHandle,
        protocol: IpProtocol,
        from_lan: bool,
        now_ms: u64,
    ) {
        match protocol {
            IpProtocol::Tcp => {
                if let Some(t) = self.tracker(handle) {
                    t.inside.store(0, Ordering::Relaxed);
                    t.outside.store(0, Ordering::Relaxed);
                    t.phase_word.store(0, Ordering::Release);
                }
            }
            IpProtocol::Udp | IpProtocol::Icmp => {
                let sent = if from_lan { SENT } else { 0 };
                let _ = self
                    .table
                    .compare_exchange_protocol_state(handle, 0, now_ms | sent);
            }
        }
    }

    /// Stamps an outbound UDP/ICMP packet (at most once per [`OUTBOUND_STAMP_GRANULARITY_MS`], and at
    /// once when it is the first), setting [`SENT`] and keeping [`REPLIED`].
    #[inline]
    pub fn stamp_outbound(&self, handle: FlowHandle, now_ms: u64) {
        if let Some(word) = self.table.protocol_state(handle)
            && (now_ms >= (word & STAMP) + OUTBOUND_STAMP_GRANULARITY_MS || word & SENT == 0)
        {
            let _ = self.table.compare_exchange_protocol_state(
                handle,
                word,
                now_ms | SENT | (word & REPLIED),
            );
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

    /// Removes the flow of `handle` (once: a second call, or a flow already gone, returns `None`) and
    /// gives its host back.
    pub fn remove(&self, handle: FlowHandle) -> Option<FlowValue> {
        let value = self.table.remove(handle)?;
        self.hosts.give(host_of(&value));
        Some(value)
    }

    /// The table's [`FlowTable::sweep`], giving each removed flow's host back before `on_removed`.
    pub fn sweep(
        &self,
        now_ms: u64,
        max_records: usize,
        is_expired: impl FnMut(&FlowValue, u64, u64) -> bool,
        mut on_removed: impl FnMut(&FlowValue),
    ) -> SweepStats {
        self.table
            .sweep(now_ms, max_records, is_expired, |value: &FlowValue| {
                self.hosts.give(host_of(value));
                on_removed(value);
            })
    }

    /// Makes room in a full table: removes the unconfirmed outbound flows among the next
    /// [`EARLY_DROP_SCAN`] records (shared cursor with the sweeper, so workers scan disjoint runs),
    /// giving their mappings back through `release`. Returns how many were removed.
    pub fn early_drop(&self, now_ms: u64, release: impl FnMut(&FlowValue)) -> usize {
        self.sweep(
            now_ms,
            EARLY_DROP_SCAN,
            |value, state, _| value.kind == FlowKind::Outbound && is_unconfirmed(value, state),
            release,
        )
        .removed
    }

    /// Makes room for `host`'s new flow among its own flows: removes the first unconfirmed outbound
    /// flow of `host` among the next [`EARLY_DROP_SCAN`] records (one for one: the host's count does
    /// not grow, and no more of its handshakes in progress are lost than the new flow needs).
    /// Returns how many were removed (0 or 1).
    pub fn early_drop_of_host(
        &self,
        now_ms: u64,
        host: Ipv4Addr,
        release: impl FnMut(&FlowValue),
    ) -> usize {
        let mut room = 1usize;
        self.sweep(
            now_ms,
            EARLY_DROP_SCAN,
            |value, state, _| {
                let candidate = room > 0
                    && value.kind == FlowKind::Outbound
                    && host_of(value) == host
                    && is_unconfirmed(value, state);
                room -= usize::from(candidate);
                candidate
            },
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
            // Unconfirmed past the handshake (a first segment that was not a SYN): transitory.
            let phase = if phase.is_transitory()
                || flowpin_nat::tcp_state::confirmed_phase_word(state_word as u32)
            {
                phase
            } else {
                TcpPhase::Closed
            };
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
                last_outbound_ms: state_word & STAMP,
                last_inbound_ms: last_seen_ms,
            },
        ),
    };
    timeouts.deadline(state, activity)
}

/// The LAN host a flow is counted against: its internal endpoint's address.
#[inline]
pub fn host_of(value: &FlowValue) -> Ipv4Addr {
    value.internal_endpoint().0
}

/// Whether a flow has not yet seen traffic both ways (see the module docs): TCP until both sides sent a
/// non-RST segment, UDP/ICMP until [`SENT`] and [`REPLIED`] are both set.
pub fn is_unconfirmed(value: &FlowValue, state_word: u64) -> bool {
    match value.protocol() {
        IpProtocol::Tcp => !flowpin_nat::tcp_state::confirmed_phase_word(state_word as u32),
        IpProtocol::Udp | IpProtocol::Icmp => state_word & (SENT | REPLIED) != SENT | REPLIED,
    }
}
