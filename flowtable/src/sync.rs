//! The atomics the table is built from.
//!
//! Normal builds use `std`'s atomics. Under `--cfg shuttle` the same names come from the `shuttle`
//! model checker, so the whole slot protocol (not a re-implementation of it) runs under a
//! controlled scheduler in `tests/shuttle_model.rs`.

#[cfg(not(shuttle))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(shuttle)]
pub(crate) use shuttle::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
