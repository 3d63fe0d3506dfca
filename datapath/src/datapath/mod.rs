//! The datapath: the sans-IO per-frame pipeline and the state it reads and writes.
//!
//! Depends on `flowpin-nat` and `flowpin-flowtable` and on nothing that does I/O. A worker reads `now`
//! once per batch, loads the control plane's [`Snapshot`] once per batch, parses the batch and looks all
//! its flows up at once ([`PreparedBatch`], [`Pipeline::look_up`]), decides and rewrites every frame
//! ([`Pipeline::process_prepared`]), and acts on the returned [`Verdict`]s.

pub mod counters;
pub mod flow_share;
pub mod flows;
pub mod forwards;
pub mod fragments;
pub mod pipeline;
pub mod rate_limit;
pub mod record;
pub mod restore;
pub mod snapshot;
pub mod verdict;

#[cfg(test)]
mod tests;

pub use counters::{DatapathCounters, DropReason, TranslatedTotals};
pub use flow_share::{FlowHosts, FlowShare};
pub use flows::Flows;
pub use forwards::{ForwardRule, ForwardTable};
pub use fragments::{FragmentRoute, Fragments};
pub use pipeline::{BATCH, Pipeline, PreparedBatch};
pub use rate_limit::{RateLimit, TokenBucket};
pub use record::{FlowKind, FlowValue, Mac, Placement};
pub use restore::{FlowRestoreError, SavedFlow};
pub use snapshot::{LanView, Snapshot, SnapshotCell, UplinkNat, UplinkView};
pub use verdict::{PortId, Verdict};

/// The most uplinks one router can have (slots in per-uplink tables and port ids).
pub const MAX_UPLINKS: usize = 16;
