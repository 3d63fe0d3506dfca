//! Lock-free concurrent flow table (design notes follow in the final docs).
#![deny(unsafe_op_in_unsafe_fn)]

mod batch;
mod guarded;
mod handle;
mod index;
mod insert;
mod record;
mod slot;
mod snapshot;
mod status;
mod sweep;
mod sync;
mod table;

pub use handle::{
    FlowCounters, FlowHandle, FlowSnapshot, Found, InsertError, Insertion, Side, SweepStats,
};
pub use snapshot::Snapshots;
pub use table::{CapacityError, FlowTable};
