//! Policy classification and weighted, sticky, minimally disruptive uplink choice for new flows.
//!
//! A new flow (a LAN-side flow table miss), seen as the [`FlowKey`](flowpin_nat::FlowKey) parsed
//! from its first packet, is placed in three steps, all without allocation:
//! 1. [`PolicyTable::classify`]: the first [`PolicyRule`] that matches picks an uplink group;
//!    no match picks the default group (every uplink with its weight);
//! 2. [`KeyHasher::key`]: the flow's [`StickinessKey`] is the secret-keyed hash of the fields the
//!    configured [`Stickiness`] mode selects (default: protocol,
//!    source address, source port — the internal endpoint, which keeps RFC 4787 EIM);
//! 3. [`UplinkChooser::choose`]: weighted rendezvous hashing over the group's eligible uplinks.
//!
//! Once placed, a flow is pinned by the flow table: nothing here is consulted again for it, so
//! weight changes and reloads never move established flows, only new ones.
//!
//! # Why weighted rendezvous hashing and not a Maglev table
//! Rendezvous hashing is exactly minimally disruptive: removing an uplink moves only its keys,
//! and a weight change moves keys only to or from the changed uplink, in proportion to the
//! change of its share. Maglev's lookup table is close to that but not exact (a rebuild reshuffles
//! a few percent of keys between uplinks that did not change) and quantises weights to table
//! slots. Maglev's advantage, O(1) lookup, matters for per-packet choice (load balancers without
//! per-flow state); flowpin chooses once per new flow and keeps the result in the flow table, and
//! with the handful of uplinks a router has, rendezvous costs a few `ln` evaluations (tens of
//! nanoseconds) per new flow. There is no table to rebuild either: the control plane builds an
//! immutable [`PolicyTable`] (a few boxed slices) per change, from a [`PolicySpec`], and the
//! workers read it.

mod key;
mod policy;
mod protocol;
mod rendezvous;
mod spec;
mod stickiness;

pub use key::{KeyHasher, StickinessKey};
pub use policy::{Decision, GroupId, PolicyTable, UplinkStatus};
pub use protocol::Protocol;
pub use rendezvous::{Candidate, UplinkChooser};
pub use spec::{FlowMatch, GroupMember, PolicyRule, PolicySpec};
pub use stickiness::Stickiness;
