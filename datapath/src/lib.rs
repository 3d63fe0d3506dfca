//! flowpin's datapath without I/O: what a worker does to a frame, and how a new flow gets its uplink.
//!
//! - [`datapath`]: the per-frame pipeline, flow records, counters, verdicts, rate limits and the
//!   [`Snapshot`](datapath::Snapshot) of the world a worker reads once per batch;
//! - [`select`]: the policy table, stickiness keys and weighted rendezvous choice of an uplink;
//! - [`Ipv4Prefix`]: the prefixes both of them match addresses against.
//!
//! Invariants: nothing here does I/O, reads a clock or knows the configuration file — the caller
//! passes `now`, the frames and a [`Snapshot`](datapath::Snapshot) built from a
//! [`PolicySpec`](select::PolicySpec); no code here is `unsafe`. The `serde` feature adds
//! (de)serialization of the vocabulary the configuration file spells.
#![deny(unsafe_code)]

pub mod datapath;
mod prefix;
pub mod select;

pub use prefix::{Ipv4Prefix, PrefixError};
pub use select::{Protocol, Stickiness};
