//! The public vocabulary of the table: sides, handles, lookup and insert results, errors and
//! copies of live flows.

/// Which of a flow's two keys a lookup matched, and which direction a packet travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The LAN-side key (packets arriving from the LAN).
    Lan = 0,
    /// The uplink-side key (packets arriving from an uplink).
    Uplink = 1,
}

impl Side {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A reference to one incarnation of a flow record: the record number and its sequence word at
/// the time the flow was found. Operations through a handle whose flow has since been removed
/// (and whose record may have been reused) do nothing and report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowHandle {
    pub(crate) record: u32,
    pub(crate) seq: u32,
}

impl FlowHandle {
    /// The record number, stable for the life of the flow (useful as a flow id in listings).
    pub fn record(self) -> u32 {
        self.record
    }
}

/// A successful lookup: the flow, the key side that matched, and a consistent copy of its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found<V> {
    /// The flow.
    pub handle: FlowHandle,
    /// Which of the flow's keys equals the key looked up.
    pub side: Side,
    /// The flow's value, copied while the record was this flow (never torn, never another flow's).
    pub value: V,
}

/// The outcome of [`FlowTable::insert_if_absent`](crate::FlowTable::insert_if_absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insertion<V> {
    /// This call created the flow.
    Inserted(FlowHandle),
    /// A flow with this LAN-side key already existed (or won a concurrent insert): use it. The
    /// caller's value was not stored (release whatever it allocated for it, e.g. a NAT port).
    Existing(Found<V>),
}

impl<V> Insertion<V> {
    /// The handle of the flow now in the table.
    pub fn handle(&self) -> FlowHandle {
        match self {
            Insertion::Inserted(handle) => *handle,
            Insertion::Existing(found) => found.handle,
        }
    }

    /// Whether this call created the flow.
    pub fn is_inserted(&self) -> bool {
        matches!(self, Insertion::Inserted(_))
    }
}

/// Why an insert failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Every record is in use (or, far rarer, every index bucket on the key's probe path is full).
    /// Live flows are never evicted to make room.
    #[error("flow table is full")]
    Full,
    /// Another flow (with a different LAN-side key) already owns the uplink-side key: a NAT
    /// mapping collision. Nothing was inserted.
    #[error("the uplink-side key already belongs to another flow")]
    KeyClash,
}

/// Per-direction packet and byte counters of a flow, indexed by [`Side`]
/// (`[lan, uplink]`, the side the packets arrived on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Packets per arrival side.
    pub packets: [u64; 2],
    /// Bytes per arrival side.
    pub bytes: [u64; 2],
}

impl FlowCounters {
    /// Packets that arrived on `side`.
    pub fn packets_from(&self, side: Side) -> u64 {
        self.packets[side.index()]
    }

    /// Bytes that arrived on `side`.
    pub fn bytes_from(&self, side: Side) -> u64 {
        self.bytes[side.index()]
    }
}

/// A copy of one live flow, as produced by [`FlowTable::live_flows`](crate::FlowTable::live_flows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveFlow<K, V> {
    /// The flow (operations through it fail once the flow is gone).
    pub handle: FlowHandle,
    /// The LAN-side key.
    pub lan_key: K,
    /// The uplink-side key.
    pub uplink_key: K,
    /// The immutable value.
    pub value: V,
    /// The protocol-state word.
    pub protocol_state: u64,
    /// Last-seen time in milliseconds (same epoch as the `now` passed in).
    pub last_seen_ms: u64,
    /// Counters at the time of the copy.
    pub counters: FlowCounters,
}

/// What one [`FlowTable::sweep`](crate::FlowTable::sweep) call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Records looked at.
    pub visited: usize,
    /// Flows removed as expired.
    pub removed: usize,
}
